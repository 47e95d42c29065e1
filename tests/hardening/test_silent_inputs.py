"""Inputs that used to load silently wrong: sizes disagreeing with the checkpoint, a stale GGUF cache,
weight links leading outside the checkpoint, invalid generation_config.json values."""

from __future__ import annotations

import json
import logging
import os

import pytest
import torch

from hardening_files import bert_folder, read_json, write_json
from pretrained import BertModel
from pretrained.errors import CheckpointError, ConfigError, UnsafeCheckpointError


@pytest.fixture
def folder(tmp_path):
    return bert_folder(tmp_path / "bert")


def set_config(folder, **changes):
    path = os.path.join(folder, "config.json")
    write_json(path, {**read_json(path), **changes})


def test_missing_weights_are_reported_by_name(folder, caplog):
    set_config(folder, num_hidden_layers=3)  # a layer the checkpoint lacks: randomly initialised
    with caplog.at_level(logging.WARNING, logger="pretrained"):
        model, info = BertModel.from_pretrained(folder, output_loading_info=True)
    assert "encoder.layer.2.attention.self.query.weight" in info["missing_keys"]
    text = caplog.text
    assert "missing from the checkpoint" in text and "encoder.layer.2.attention.self.query.weight" in text


def test_unused_checkpoint_weights_are_reported_by_name(folder, caplog):
    set_config(folder, num_hidden_layers=1)  # the checkpoint's second layer is dropped
    with caplog.at_level(logging.WARNING, logger="pretrained"):
        BertModel.from_pretrained(folder)
    assert "does not use" in caplog.text and "encoder.layer.1.output.dense.weight" in caplog.text


def test_matching_checkpoint_loads_without_a_report(folder, caplog):
    with caplog.at_level(logging.WARNING, logger="pretrained"):
        BertModel.from_pretrained(folder)
    assert "missing" not in caplog.text and "does not use" not in caplog.text


def test_mismatched_sizes_are_an_error_naming_the_weight(folder):
    set_config(folder, intermediate_size=41)
    with pytest.raises(CheckpointError, match="encoder.layer.0.intermediate.dense.weight"):
        BertModel.from_pretrained(folder)


def test_gguf_file_replaced_with_same_size_and_mtime_is_hashed_again(tmp_path):
    from pretrained.gguf.loading import file_digest

    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF" + b"\0" * 60)
    before = os.stat(path)
    first = file_digest(str(path), str(tmp_path / "cache"))
    path.write_bytes(b"GGUF" + b"\1" * 60)  # other weights, same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the same mtime, as `cp -p` or `touch -r`
    assert os.stat(path).st_size == before.st_size and os.stat(path).st_mtime_ns == before.st_mtime_ns
    second = file_digest(str(path), str(tmp_path / "cache"))
    assert second != first
    assert file_digest(str(path), str(tmp_path / "cache")) == second  # the memo still spares a re-hash


@pytest.mark.parametrize("sharded", [False, True])
def test_weight_link_outside_the_folder_is_refused(tmp_path, sharded):
    outside = tmp_path / "elsewhere"
    bert_folder(outside)
    folder = tmp_path / "bert"
    BertModel.from_pretrained(outside).save_pretrained(folder, **({"max_shard_size": "20KB"} if sharded else {}))
    names = sorted(n for n in os.listdir(folder) if n.endswith(".safetensors"))
    victim = folder / names[-1]
    os.replace(victim, tmp_path / "secret.safetensors")
    os.symlink(tmp_path / "secret.safetensors", victim)
    with pytest.raises(UnsafeCheckpointError, match="outside the checkpoint folder"):
        BertModel.from_pretrained(folder)


def test_weight_link_inside_the_folder_or_hub_cache_loads(tmp_path):
    # the hub cache's layout: snapshots/<rev>/<file> -> ../../blobs/<sha>
    repo = tmp_path / "hub" / "models--org--tiny"
    snapshot = repo / "snapshots" / "abc123"
    bert_folder(snapshot)
    (repo / "blobs").mkdir()
    os.replace(snapshot / "model.safetensors", repo / "blobs" / "0f1e")
    os.symlink(os.path.join("..", "..", "blobs", "0f1e"), snapshot / "model.safetensors")
    reference = BertModel.from_pretrained(tmp_path / "hub" / "models--org--tiny" / "snapshots" / "abc123")
    local = tmp_path / "local"
    bert_folder(local)
    os.replace(local / "model.safetensors", local / "real.safetensors")
    os.symlink("real.safetensors", local / "model.safetensors")
    assert torch.equal(BertModel.from_pretrained(local).embeddings.word_embeddings.weight,
                       reference.embeddings.word_embeddings.weight)


@pytest.mark.parametrize("field,value", [("typical_p", float("nan")), ("do_sample", "yes"), ("eos_token_id", []),
                                         ("repetition_penalty", "x"), ("temperature", float("inf")),
                                         ("top_k", 1.5), ("max_length", -1)])
def test_invalid_generation_config_is_an_error_naming_file_and_field(tmp_path, field, value):
    from pretrained import GenerationConfig

    path = tmp_path / "generation_config.json"
    path.write_text(json.dumps({field: value}))  # NaN and Infinity as Python's json writes (and reads) them
    with pytest.raises(ConfigError, match=rf"generation_config.json.*{field}"):
        GenerationConfig.from_pretrained(tmp_path)


@pytest.mark.parametrize("changes,named", [
    ({"num_hidden_layers": 3}, "missing from the checkpoint.*encoder.layer.2.attention.self.query.weight"),
    ({"num_hidden_layers": 1}, "does not use.*encoder.layer.1.output.dense.weight"),
])
def test_strict_turns_the_report_into_an_error(folder, changes, named):
    set_config(folder, **changes)
    with pytest.raises(CheckpointError, match=f"strict=True.*{named}"):
        BertModel.from_pretrained(folder, strict=True)
    BertModel.from_pretrained(folder)  # the default only warns, as Transformers does


def test_strict_accepts_a_matching_checkpoint(folder):
    assert BertModel.from_pretrained(folder, strict=True).config.num_hidden_layers == 2
