"""Files that crashed the process, hung it or made it allocate without bound: each is now a prompt
error of ours naming the file and field."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
import zlib

import pytest

from hardening_files import bert_folder, read_json, tokenizer_folder, write_json
from pretrained import AutoModel, AutoTokenizer, BertModel
from pretrained.errors import CheckpointError, ConfigError, InputError
from pretrained.scan import scan_folder


def test_post_processor_naming_a_missing_special_token_is_our_error_not_a_panic(tmp_path):
    # run in a child: a Rust panic is a BaseException that would abort pytest's own handling
    folder = tokenizer_folder(tmp_path / "tok")
    path = os.path.join(folder, "tokenizer.json")
    data = read_json(path)
    data["post_processor"]["single"][0] = {"SpecialToken": {"id": "[BOS]", "type_id": 0}}
    write_json(path, data)
    code = ("import pretrained, sys\n"
            "try:\n    pretrained.AutoTokenizer.from_pretrained(sys.argv[1])('hello')\n"
            "except pretrained.errors.CheckpointError as e:\n    print('ERROR', e)\n")
    run = subprocess.run([sys.executable, "-c", code, folder], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "ERROR" in run.stdout and "tokenizer.json" in run.stdout and "'[BOS]'" in run.stdout


@pytest.mark.parametrize("damage", ["empty ids", "id outside vocab", "bert processing id"])
def test_post_processor_ids_outside_the_vocabulary_are_refused(tmp_path, damage):
    folder = tokenizer_folder(tmp_path / "tok")
    path = os.path.join(folder, "tokenizer.json")
    data = read_json(path)
    if damage == "empty ids":  # [CLS] would silently vanish from every encoding
        data["post_processor"]["special_tokens"]["[CLS]"].update(ids=[], tokens=[])
    elif damage == "id outside vocab":  # an id the model's embedding does not have
        data["post_processor"]["special_tokens"]["[CLS]"]["ids"] = [4000]
    else:
        data["post_processor"] = {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 777]}
    write_json(path, data)
    with pytest.raises(CheckpointError, match=r"tokenizer\.json: post_processor"):
        AutoTokenizer.from_pretrained(folder)


def test_scan_skips_a_fifo_instead_of_hanging(tmp_path):
    folder = bert_folder(tmp_path / "bert")
    os.mkfifo(os.path.join(folder, "pytorch_model.bin"))
    os.symlink("/dev/zero", os.path.join(folder, "zeros.pkl"))
    start = time.monotonic()
    report = scan_folder(folder)
    assert time.monotonic() - start < 10
    entries = {f["name"]: f for f in report["files"]}
    assert entries["pytorch_model.bin"]["kind"] == "not a regular file"
    assert entries["zeros.pkl"]["kind"] == "not a regular file"
    assert entries["model.safetensors"]["kind"] == "safetensors"
    assert report["safe"] is False


def zip_bomb(path, member="archive/data.pkl", blocks=128) -> None:
    """A zip of ~2 MB whose pickle member inflates to `blocks` x 16 MiB of zeros (2 GiB), written by hand:
    after a full flush deflate starts afresh, so every block of zeros compresses to the same bytes."""
    block = bytes(16 << 20)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    packed = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    data = packed * blocks + comp.flush()
    crc = 0
    for _ in range(blocks):
        crc = zlib.crc32(block, crc)
    name, size = member.encode(), len(block) * blocks
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 33, crc, len(data), size, len(name), 0) + name
    central = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 33, crc, len(data), size, len(name),
                          0, 0, 0, 0, 0, 0) + name
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central), len(local) + len(data), 0)
    with open(path, "wb") as f:
        f.write(local + data + central + end)


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bomb")
    zip_bomb(folder / "pytorch_model.bin")
    return folder


def run_limited(code: str, *args, memory=2 << 30, timeout=60):
    """Run `code` in a child under an address-space limit: unbounded allocation fails there, not here."""
    prelude = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({memory}, {memory}))\n"
    return subprocess.run([sys.executable, "-c", prelude + code, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def test_the_bomb_is_one(bomb):
    import zipfile

    with zipfile.ZipFile(bomb / "pytorch_model.bin") as z, z.open("archive/data.pkl") as f:
        assert len(f.read(1 << 20)) == 1 << 20 and z.getinfo("archive/data.pkl").file_size == 2 << 30
    assert os.path.getsize(bomb / "pytorch_model.bin") < (8 << 20)


def test_scan_refuses_a_zip_bomb(bomb):
    # 768 MiB of address space: enough for the scan (which needs no torch here), not for the inflated pickle
    run = run_limited("import sys, json; from pretrained.scan import scan_folder\n"
                      "print(json.dumps(scan_folder(sys.argv[1])['files']))", bomb, memory=768 << 20)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "zip bomb" in run.stdout or "would inflate" in run.stdout


def test_loading_a_zip_bomb_is_refused_before_inflating(bomb):
    from pretrained.weights import load_torch_bin

    with pytest.raises(CheckpointError, match="pytorch_model.bin: archive/data.pkl"):
        load_torch_bin(str(bomb / "pytorch_model.bin"))


@pytest.mark.parametrize("sizes", [{"num_hidden_layers": 10**9}, {"num_attention_heads": 10**12},
                                   {"max_position_embeddings": 10**12}, {"vocab_size": 10**12},
                                   {"hidden_size": 2**20, "num_attention_heads": 1}])
def test_absurd_config_sizes_fail_fast(tmp_path, sizes):
    folder = bert_folder(tmp_path / "bert")
    path = os.path.join(folder, "config.json")
    write_json(path, {**read_json(path), **sizes})
    field = next(iter(sizes))
    start = time.monotonic()
    with pytest.raises(ConfigError, match=rf"{field}|implies at least"):
        AutoModel.from_pretrained(folder)
    assert time.monotonic() - start < 5


def test_bigger_config_within_bounds_still_loads(tmp_path):
    folder = bert_folder(tmp_path / "bert")
    path = os.path.join(folder, "config.json")
    write_json(path, {**read_json(path), "num_hidden_layers": 4})  # two layers missing: a warning, not an error
    assert len(BertModel.from_pretrained(folder).encoder.layer) == 4


@pytest.mark.parametrize("template,expected", [
    ("{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}", "loop iterations"),
    ("{% macro f(x) %}{{ f(x) }}{% endmacro %}{{ f(1) }}", "recursion"),
    ("{% for m in [1] recursive %}{{ loop([1]) }}{% endfor %}", "recursion"),
    ("{{ 'a' * 10**12 }}", "repetition"),
    ("{% for i in range(99999) %}{{ 'x' * 200 }}{% endfor %}", "exceeds"),
])
def test_chat_template_runaways_hit_the_sandbox_bounds(tmp_path, template, expected):
    tok = AutoTokenizer.from_pretrained(tokenizer_folder(tmp_path / "tok"))
    start = time.monotonic()
    with pytest.raises(InputError, match=expected):
        tok.apply_chat_template([{"role": "user", "content": "hi"}], chat_template=template, tokenize=False)
    assert time.monotonic() - start < 20


def test_ordinary_chat_template_renders_as_before(tmp_path):
    tok = AutoTokenizer.from_pretrained(tokenizer_folder(tmp_path / "tok"))
    template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                "{% if add_generation_prompt %}assistant:{% endif %}")
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
                                   chat_template=template, tokenize=False, add_generation_prompt=True)
    assert text == "user: hi\nassistant: yo\nassistant:"
