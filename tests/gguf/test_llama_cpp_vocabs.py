"""Every tokenizer vocabulary llama.cpp tests itself with (`models/ggml-vocab-*.gguf` in the llama-cpp-python
sdist) loads through AutoTokenizer and gives llama.cpp's own expected ids on its `.inp` / `.out` cases
(encoded as llama.cpp's test-tokenizer-0 does: no BOS/EOS, special-token text not parsed)."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile

import pytest

from pretrained import AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SDIST = "llama-cpp-python==0.3.36"
FOLDER = os.path.join(ROOT, ".assets", "llama_cpp")  # ignored by git; .ci/run downloads the sdist here
MODELS = "vendor/llama.cpp/models/"
SEPARATOR = "\n__ggml_vocab_test__\n"

# the vocabularies in 0.3.36 (test_folder_holds_these checks the list is complete); the ones without
# .inp/.out cases must still load and round-trip text
VOCABS = ["aquila", "baichuan", "bert-bge", "command-r", "deepseek-coder", "deepseek-llm", "falcon", "gemma-4",
          "gpt-2", "gpt-neox", "llama-bpe", "llama-spm", "mpt", "nomic-bert-moe", "phi-3", "qwen2", "qwen35",
          "refact", "starcoder"]


@pytest.fixture(scope="module")
def models_dir():
    """The sdist's vendor/llama.cpp/models/ggml-vocab-* files, unpacked once; skipped when pip cannot fetch it."""
    pytest.importorskip("gguf")
    target = os.path.join(FOLDER, "models")
    done = os.path.join(target, ".complete")
    if not os.path.exists(done):
        os.makedirs(FOLDER, exist_ok=True)
        sdists = [f for f in os.listdir(FOLDER) if f.startswith("llama_cpp_python-0.3.36") and f.endswith(".tar.gz")]
        if not sdists:
            try:
                subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", SDIST,
                                "-d", FOLDER], check=True, capture_output=True, timeout=600)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                pytest.skip(f"pip could not download the {SDIST} sdist (no access to the package index)")
            sdists = [f for f in os.listdir(FOLDER) if f.endswith(".tar.gz")]
        os.makedirs(target, exist_ok=True)
        with tarfile.open(os.path.join(FOLDER, sdists[0])) as tar:
            for member in tar.getmembers():
                name = os.path.basename(member.name)
                if MODELS in member.name and member.isfile() and name.startswith("ggml-vocab-"):
                    with tar.extractfile(member) as src, open(os.path.join(target, name + ".tmp"), "wb") as dst:
                        dst.write(src.read())
                    os.replace(os.path.join(target, name + ".tmp"), os.path.join(target, name))
        open(done, "w").close()
    return target


def read_cases(path: str) -> list[tuple[str, list[int]]]:
    """(text, expected ids) as test-tokenizer-0.cpp reads them: inputs split at the separator, one id line each."""
    with open(path + ".inp", encoding="utf-8", newline="") as f:
        texts = f.read().split(SEPARATOR)
    with open(path + ".out", encoding="utf-8", newline="") as f:
        lines = f.read().split("\n")
    assert len(lines) >= len(texts), f"{path}.out has fewer lines than {path}.inp has cases"
    return [(text, [int(t) for t in line.split()]) for text, line in zip(texts, lines)]


def test_folder_holds_these(models_dir):
    found = sorted(f[len("ggml-vocab-"):-len(".gguf")] for f in os.listdir(models_dir) if f.endswith(".gguf"))
    assert found == sorted(VOCABS)


@pytest.mark.parametrize("vocab", VOCABS)
def test_vocab_gives_llama_cpp_ids(models_dir, vocab):
    name = f"ggml-vocab-{vocab}.gguf"
    tokenizer = AutoTokenizer.from_pretrained(models_dir, gguf_file=name)
    path = os.path.join(models_dir, name)
    if not os.path.exists(path + ".inp"):
        text = "Hello world, this is a test."
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert ids and all(0 <= i < len(tokenizer) for i in ids)
        assert tokenizer.decode(ids).strip() == text
        return
    cases = read_cases(path)
    assert len(cases) >= 40
    wrong = [(text, expected, got) for text, expected in cases
             if (got := tokenizer.encode(text, add_special_tokens=False)) != expected]
    assert not wrong, f"{len(wrong)}/{len(cases)} cases differ from llama.cpp's ids; first: {wrong[0]!r}"


@pytest.mark.parametrize("vocab", ["bert-bge", "llama-spm"])
def test_reader_agrees_with_the_gguf_package(models_dir, vocab):
    """Our header parser gives every metadata value the `gguf` package's reader gives."""
    import gguf
    import numpy as np

    from pretrained.gguf.reader import GGUFFile

    path = os.path.join(models_dir, f"ggml-vocab-{vocab}.gguf")
    ours, theirs = GGUFFile(path), gguf.GGUFReader(path, "r")
    keys = [k for k in theirs.fields if not k.startswith("GGUF.")]
    assert keys and all(ours.has(k) for k in keys)
    for key in keys:
        assert ours.get(key) == theirs.fields[key].contents(), key
    types = theirs.fields["tokenizer.ggml.token_type"]
    np.testing.assert_array_equal(ours.array("tokenizer.ggml.token_type"),
                                  np.concatenate([types.parts[i] for i in types.data]))


def test_tokenizer_cache_of_an_older_builder_is_not_served(models_dir, tmp_path, monkeypatch):
    """Entries written before the current TOKENIZER_FORMAT (e.g. WordPiece without llama.cpp's lower-casing)
    sit elsewhere in the cache folder and are never read."""
    from tokenizers import Tokenizer, models

    from pretrained.gguf.loading import GGUFCheckpoint

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    path = os.path.join(models_dir, "ggml-vocab-bert-bge.gguf")
    folder = GGUFCheckpoint(path).folder
    os.makedirs(folder)
    Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]")).save(os.path.join(folder, "tokenizer.json"))
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        f.write("{}")
    tokenizer = AutoTokenizer.from_pretrained(models_dir, gguf_file="ggml-vocab-bert-bge.gguf")
    assert tokenizer.encode("Hello world", add_special_tokens=False) == [7592, 2088]


def test_every_known_pre_tokenizer_builds():
    """Each tokenizer.ggml.pre we map (most have no vocabulary in the folder) compiles and splits text."""
    from tokenizers import Regex, pre_tokenizers

    from pretrained.gguf.tokenizer import PRE_TOKENIZERS

    for name, regexes in PRE_TOKENIZERS.items():
        split = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(r), behavior="isolated") for r in regexes])
        pieces = split.pre_tokenize_str("Hello World's 12345 camelCase  \n\n x")
        assert "".join(p for p, _ in pieces) == "Hello World's 12345 camelCase  \n\n x", name
