"""Wrong types and shapes in checkpoint files: our error types, naming the file and the field, instead
of a TypeError / KeyError / RecursionError from deep inside."""

from __future__ import annotations

import json
import os
import struct

import pytest

from hardening_files import bert_folder, read_json, tokenizer_folder, write_json
from pretrained import AutoModel, AutoTokenizer, GenerationConfig
from pretrained.errors import CheckpointError, ConfigError, PretrainedError


@pytest.fixture(scope="module")
def clean_bert(tmp_path_factory):
    return bert_folder(tmp_path_factory.mktemp("bert"))


@pytest.fixture
def folder(clean_bert, tmp_path):
    import shutil

    return shutil.copytree(clean_bert, tmp_path / "bert")


@pytest.mark.parametrize("changes,field", [
    ({"model_type": {"a": 1}}, "model_type"),
    ({"id2label": {"x": "A"}}, "id2label"),
    ({"id2label": ["A", "B"]}, "id2label"),
    ({"id2label": {"0": "A"}, "label2id": {"A": "zero"}}, "label2id"),
    ({"hidden_size": "32"}, "hidden_size"),
    ({"hidden_dropout_prob": 10**12}, "hidden_dropout_prob"),
])
def test_config_field_types(folder, changes, field):
    path = os.path.join(folder, "config.json")
    write_json(path, {**read_json(path), **changes})
    with pytest.raises(ConfigError, match=rf"config\.json.*{field}"):
        AutoModel.from_pretrained(folder)


@pytest.mark.parametrize("file,changes,field", [
    ("tokenizer_config.json", {"cls_token": {"content": 5}}, "cls_token"),
    ("tokenizer_config.json", {"cls_token": {}}, "cls_token"),
    ("special_tokens_map.json", {"sep_token": 7}, "sep_token"),
    ("tokenizer_config.json", {"additional_special_tokens": 5}, "additional_special_tokens"),
    ("tokenizer_config.json", {"model_input_names": 5}, "model_input_names"),
    ("tokenizer_config.json", {"added_tokens_decoder": {"x": {"content": "a"}}}, "added_tokens_decoder"),
    ("tokenizer_config.json", {"model_max_length": "long"}, "model_max_length"),
    ("tokenizer_config.json", {"chat_template": 5}, "chat_template"),
    ("tokenizer_config.json", {"tokenizer_class": 5}, "tokenizer_class"),
])
@pytest.mark.parametrize("fast", [True, False])
def test_tokenizer_config_field_types(tmp_path, file, changes, field, fast):
    folder = tokenizer_folder(tmp_path / "tok")
    if not fast:
        os.remove(os.path.join(folder, "tokenizer.json"))
    path = os.path.join(folder, file)
    write_json(path, {**read_json(path), **changes})
    with pytest.raises(CheckpointError, match=rf"{file}: {field}"):
        AutoTokenizer.from_pretrained(folder)


def test_vocab_missing_the_cls_token_names_the_file(tmp_path):
    folder = tokenizer_folder(tmp_path / "tok")
    os.remove(os.path.join(folder, "tokenizer.json"))
    path = os.path.join(folder, "vocab.txt")
    with open(path) as f:
        lines = [line for line in f if line.strip() != "[CLS]"]
    with open(path, "w") as f:
        f.writelines(lines)
    with pytest.raises(CheckpointError, match=r"vocab\.txt: cls_token '\[CLS\]' is not in the vocabulary"):
        AutoTokenizer.from_pretrained(folder)


def test_safetensors_dtype_of_the_wrong_type_is_our_error(folder):
    path = os.path.join(folder, "model.safetensors")  # damaged in its header only
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    name = next(k for k in header if k != "__metadata__")
    header[name]["dtype"] = {"F32": 1}
    text = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + raw[8 + n:])
    with pytest.raises(CheckpointError, match="unknown dtype"):
        AutoModel.from_pretrained(folder)


def deep(levels: int = 100_000) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize("file", ["config.json", "generation_config.json", "model.safetensors.index.json",
                                  "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"])
def test_deeply_nested_json_is_our_error_naming_the_file(folder, file):
    tokenizer_folder(folder)
    if file == "model.safetensors.index.json":
        os.remove(os.path.join(folder, "model.safetensors"))
    with open(os.path.join(folder, file), "w") as f:
        f.write('{"a": ' + deep() + "}")
    load = AutoTokenizer.from_pretrained if file.startswith(("tokenizer", "special")) else AutoModel.from_pretrained
    if file == "generation_config.json":
        load = GenerationConfig.from_pretrained
    with pytest.raises(PretrainedError, match=file.replace(".", r"\.")):
        load(folder)


def test_deeply_nested_safetensors_header_is_our_error(folder):
    header = ('{"a": ' + deep(50_000) + "}").encode()
    with open(os.path.join(folder, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: safetensors header is not valid JSON"):
        AutoModel.from_pretrained(folder)


def test_tf4_oracle_venv_comes_from_the_environment(monkeypatch, tmp_path):
    from checkpoints import tf4_python

    monkeypatch.setenv("PRETRAINED_TF4_VENV", str(tmp_path / "venv"))
    assert tf4_python() == str(tmp_path / "venv" / "bin" / "python")
    monkeypatch.delenv("PRETRAINED_TF4_VENV")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert tf4_python() == str(tmp_path / "cache" / "pretrained" / "tf4" / "bin" / "python")


@pytest.mark.parametrize("settings,field", [
    ({"forced_eos_token_id": 500}, "forced_eos_token_id"),
    ({"forced_eos_token_id": [4, 500]}, "forced_eos_token_id"),
    ({"forced_bos_token_id": 99}, "forced_bos_token_id"),
    ({"bad_words_ids": [[3], [4, 1000]]}, "bad_words_ids"),
])
def test_forced_and_banned_ids_outside_the_vocabulary_are_our_error(settings, field):
    """Transformers raises an IndexError from inside its ForcedEOS processor (or silently forces nothing)."""
    import torch

    from pretrained import LlamaConfig, LlamaForCausalLM
    from pretrained.errors import InputError

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2)).eval()
    with pytest.raises(InputError, match=rf"{field}=.*outside the model's vocabulary of 50"):
        model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=3, **settings)
    forced = model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=2, forced_eos_token_id=4)
    assert forced[0, -1].item() == 4


def test_merges_naming_tokens_outside_the_vocabulary_name_the_file(tmp_path):
    from hardening_files import byte_level_bpe_folder

    folder = byte_level_bpe_folder(tmp_path / "bpe")
    with open(os.path.join(folder, "merges.txt"), "a", encoding="utf-8") as f:
        f.write("zz qq\n")
    for use_fast in (True, False):
        with pytest.raises(CheckpointError, match=r"merges.txt: merge 'zz' 'qq' needs 'zz'.*vocab.json"):
            AutoTokenizer.from_pretrained(folder, use_fast=use_fast)


@pytest.mark.parametrize("vocab,expected", [
    ({"a": 0, "b": "1"}, "token 'b' has id '1'"),
    ({"a": 0, "b": 0}, "id 0 is given to more than one token"),
    ({"a": 0, "b": 10**12}, "far past the 2 tokens"),
    ([["a", 0]], "must map tokens to integer ids"),
])
def test_bpe_vocabulary_ids_are_checked(tmp_path, vocab, expected):
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    (tmp_path / "tokenizer_config.json").write_text('{"tokenizer_class": "GPT2Tokenizer"}')
    for use_fast in (True, False):
        with pytest.raises(CheckpointError, match=f"vocab.json.*{expected}"):
            AutoTokenizer.from_pretrained(str(tmp_path), use_fast=use_fast)
