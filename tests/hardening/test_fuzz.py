"""Seeded mutations of every checkpoint file kind, each loaded in a forked child under a time and
memory limit. Each case must end in a correct load or in one of our errors naming the file: never a
crash, a hang, an unbounded allocation or a raw Python error from deep inside."""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import signal
import struct
import time
import traceback

import pytest

from hardening_files import bert_folder, byte_level_bpe_folder, sentencepiece_folder, tokenizer_folder

SEED = 19
TIME_LIMIT_S = 20
MEMORY_HEADROOM = 1 << 30  # address space a case may add to the forked parent's
# (file kind, cases): a few hundred in all
KINDS = {"config.json": 60, "model.safetensors": 40, "model.safetensors.index.json": 30, "tokenizer.json": 50,
         "tokenizer_config.json": 40, "special_tokens_map.json": 20, "generation_config.json": 40, "vocab.txt": 20,
         "spiece.model": 40, "tokenizer.model": 40, "vocab.json": 30, "merges.txt": 30}
# where each kind's originals live: the BERT checkpoint, or a tokenizer of another backend
SOURCE = {"model.safetensors.index.json": "sharded", "spiece.model": "unigram", "tokenizer.model": "sentencepiece_bpe",
          "vocab.json": "byte_level_bpe", "merges.txt": "byte_level_bpe"}
ODD_VALUES = [None, True, -1, 0, 1.5, 10**12, -(10**9), float("nan"), float("inf"), "", "x", "[CLS]", [], [5], ["a"],
              {}, {"content": 5}, {"content": "[CLS]"}, {"a": {"b": [1, {}]}}, [[[[]]]], "\u0000\ud7ff", 2**63]


DEEP = "<deep>"


def dumps(data) -> bytes:
    return json.dumps(data).replace(json.dumps(DEEP), "[" * 100_000 + "]" * 100_000).encode()


def mutate_json(data, rng: random.Random):
    """One structural change: replace, delete or add a value somewhere in the tree, or nest it deeply."""
    containers = []

    def walk(node, depth=0):
        if isinstance(node, (dict, list)) and node and depth < 8:
            containers.append(node)
            for value in (node.values() if isinstance(node, dict) else node):
                walk(value, depth + 1)

    walk(data)
    target = rng.choice(containers) if containers else data
    keys = list(target.keys()) if isinstance(target, dict) else list(range(len(target)))
    op = rng.random()
    value = rng.choice(ODD_VALUES) if rng.random() < 0.9 else DEEP  # nested deeper than json can read back
    if not keys or op < 0.1:
        if isinstance(target, dict):
            target[rng.choice(["model_type", "vocab_size", "eos_token_id", "bos_token", "weight_map", "zz"])] = value
        else:
            target.append(value)
    elif op < 0.25:
        del target[rng.choice(keys)]
    else:
        target[rng.choice(keys)] = value
    return data


def mutate_bytes(raw: bytes, rng: random.Random) -> bytes:
    data = bytearray(raw)
    op = rng.random()
    if op < 0.3:
        return bytes(data[: rng.randrange(len(data))])
    if op < 0.6:
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    at = rng.randrange(len(data))
    return bytes(data[:at] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 16))) + data[at:])


def mutate_safetensors(raw: bytes, rng: random.Random) -> bytes:
    (n,) = struct.unpack("<Q", raw[:8])
    if rng.random() < 0.3:  # raw damage anywhere in the header or its length
        return mutate_bytes(raw[: 8 + n], rng) + raw[8 + n:]
    header = mutate_json(json.loads(raw[8: 8 + n]), rng)
    text = dumps(header)
    return struct.pack("<Q", len(text)) + text + raw[8 + n:]


def mutate_lines(raw: bytes, rng: random.Random) -> bytes:
    """A line-level change to a vocabulary or merges file: a line replaced by odd tokens, dropped or repeated."""
    lines = raw.decode("utf-8").split("\n")
    at = rng.randrange(len(lines))
    op = rng.random()
    if op < 0.5:
        lines[at] = " ".join(rng.choice(["zz", "qq", "", " ", "[CLS]", "\u0120x", "#version: 0.2", "a b c"])
                             for _ in range(rng.randint(1, 3)))
    elif op < 0.75:
        del lines[at]
    else:
        lines.insert(at, lines[rng.randrange(len(lines))])
    return "\n".join(lines).encode("utf-8")


def mutate(folder: str, kind: str, rng: random.Random) -> None:
    path = os.path.join(folder, kind)
    with open(path, "rb") as f:
        raw = f.read()
    if kind == "model.safetensors":
        raw = mutate_safetensors(raw, rng)
    elif kind.endswith(".json") and rng.random() < 0.85:
        raw = dumps(mutate_json(json.loads(raw), rng))
    elif kind.endswith(".txt") and rng.random() < 0.6:
        raw = mutate_lines(raw, rng)
    else:
        raw = mutate_bytes(raw, rng)
    with open(path, "wb") as f:
        f.write(raw)


def load(folder: str, kind: str, use_fast: bool = True) -> None:
    """Load what `kind` belongs to and use it, checking that what loaded is sound."""
    import torch

    import pretrained

    if kind in ("config.json", "model.safetensors", "model.safetensors.index.json"):
        model = pretrained.AutoModel.from_pretrained(folder)
        ids = torch.tensor([[2, 5, 6, 3]])
        if ids.max() < model.config.vocab_size:
            out = model(input_ids=ids).last_hidden_state
            assert out.shape[:2] == (1, 4)
    elif kind == "generation_config.json":
        config = pretrained.GenerationConfig.from_pretrained(folder)
        config.validate()
    else:
        tok = pretrained.AutoTokenizer.from_pretrained(folder, use_fast=use_fast)
        encoded = tok("hello worlds", "the a b")["input_ids"]
        size = len(tok)
        assert all(0 <= i < size for i in encoded), (encoded, size)
        tok.decode(encoded)


def run_case(folder: str, kind: str, use_fast: bool = True) -> dict:
    """Load in a forked child under rlimits: {'outcome': 'ok' | 'error' | 'crash' | 'hang', ...}."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: limits, load, report, and never return into pytest
        os.close(read)
        # a thread pool the parent used (earlier tests in this worker) does not survive fork: OpenMP would wait
        # forever for its lost threads; one thread runs every parallel loop inline
        import torch

        torch.set_num_threads(1)
        result = {"outcome": "ok"}
        try:
            with open("/proc/self/statm") as f:
                used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            resource.setrlimit(resource.RLIMIT_AS, (used + MEMORY_HEADROOM, used + MEMORY_HEADROOM))
            signal.alarm(TIME_LIMIT_S)  # SIGALRM's default action ends a hung child
            load(folder, kind, use_fast)
        except BaseException as e:  # noqa: BLE001 (a panic is a BaseException: report it too)
            from pretrained.errors import PretrainedError

            result = {"outcome": "error" if isinstance(e, PretrainedError) else "crash",
                      "type": f"{type(e).__module__}.{type(e).__name__}", "message": str(e)[:500],
                      "where": traceback.format_exc()[-700:]}
        os.write(write, json.dumps(result).encode())
        os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return {"outcome": "hang" if sig == signal.SIGALRM else "crash", "type": signal.Signals(sig).name}
    return json.loads(b"".join(chunks) or b'{"outcome": "crash", "type": "no report"}')


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    single = bert_folder(root / "single")
    tokenizer_folder(single)
    sharded = root / "sharded"
    shutil.copytree(single, sharded)
    os.remove(sharded / "model.safetensors")
    import pretrained

    pretrained.AutoModel.from_pretrained(single).save_pretrained(sharded, max_shard_size="20KB")
    return {"single": single, "sharded": str(sharded), "unigram": sentencepiece_folder(root / "unigram", "unigram"),
            "sentencepiece_bpe": sentencepiece_folder(root / "sentencepiece_bpe", "bpe"),
            "byte_level_bpe": byte_level_bpe_folder(root / "byte_level_bpe")}


@pytest.mark.parametrize("kind", list(KINDS))
def test_fuzzed_files_load_or_fail_cleanly(originals, tmp_path, kind):
    rng = random.Random(f"{SEED}-{kind}")
    source = originals[SOURCE.get(kind, "single")]
    failures, outcomes = [], {}
    start = time.monotonic()
    for case in range(KINDS[kind]):
        folder = tmp_path / f"case{case}"
        shutil.copytree(source, folder)
        if kind == "vocab.txt":  # the vocabulary file is read only without tokenizer.json
            os.remove(folder / "tokenizer.json")
        mutate(str(folder), kind, rng)
        result = run_case(str(folder), kind, use_fast=case % 2 == 0)  # both backends read these files
        outcomes[result["outcome"]] = outcomes.get(result["outcome"], 0) + 1
        named = result["outcome"] != "error" or os.path.basename(kind) in result["message"] or (
            kind == "vocab.txt" and "vocab" in result["message"])
        if result["outcome"] not in ("ok", "error") or not named:
            failures.append((case, result))
        shutil.rmtree(folder)
    print(kind, outcomes, f"{time.monotonic() - start:.1f} s")
    assert not failures, f"{kind}: {len(failures)} of {KINDS[kind]} cases\n" + "\n".join(map(str, failures[:10]))
