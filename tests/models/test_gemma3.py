"""Gemma 3 text (Gemma3ForCausalLM) against transformers: sliding and global layers with their own rope
bases, exercised by sequences longer than the window; rope scaling on the global layers; final logit
soft-capping; older config.json fields; the classification head."""

from __future__ import annotations

import json

import pytest
import torch

import pretrained
from decoder_parity import (assert_forward_equal, assert_generate_equal, assert_save_round_trip,
                            assert_sequence_classification_equal, left_padded, load_pair)

TINY = dict(vocab_size=99, hidden_size=32, intermediate_size=40, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, max_position_embeddings=64, query_pre_attn_scalar=12,
            sliding_window=4, layer_types=["sliding_attention", "full_attention"] * 2,
            pad_token_id=0, eos_token_id=1, bos_token_id=2)
CASES = {
    "plain": TINY,
    "softcap-linear-rope": dict(TINY, final_logit_softcapping=3.0, rope_parameters={
        "sliding_attention": {"rope_type": "default", "rope_theta": 100.0},
        "full_attention": {"rope_type": "linear", "factor": 4.0, "rope_theta": 50000.0}}),
    "pattern-yarn-gqa1": dict(TINY, layer_types=None, sliding_window_pattern=2, num_key_value_heads=1,
                              rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10.0},
                                               "full_attention": {"rope_type": "yarn", "factor": 2.0,
                                                                  "rope_theta": 1000.0,
                                                                  "original_max_position_embeddings": 16}}),
}


@pytest.fixture(scope="module")
def gemma(tmp_path_factory):
    loaded = {}

    def get(name):
        if name not in loaded:
            folder = tmp_path_factory.mktemp(name)
            loaded[name] = load_pair(folder, "Gemma3TextConfig", "Gemma3ForCausalLM", **CASES[name])
        return loaded[name]

    return get


@pytest.mark.parametrize("name", CASES)
def test_logits_hidden_states_and_greedy_tokens(gemma, name):
    ours, theirs, _ = gemma(name)
    assert type(ours).__name__ == "Gemma3ForCausalLM"
    ids, mask = left_padded()  # 13 > the window of 4: sliding layers see only their window
    assert_forward_equal(ours, theirs, ids, mask)
    assert_generate_equal(ours, theirs, ids, mask)


def test_window_changes_sliding_layers():
    """A guard on the test itself: with the window the outputs differ from full attention everywhere."""
    config = pretrained.AutoConfig.for_model("gemma3_text", **TINY)
    torch.manual_seed(0)
    model = pretrained.AutoModelForCausalLM.from_config(config).eval()
    ids, _ = left_padded(lengths=(10,))
    with torch.no_grad():
        windowed = model(ids).logits
        model.config.sliding_window = 64
        assert not torch.allclose(model(ids).logits[:, 4:], windowed[:, 4:])


def test_save_round_trip(gemma, tmp_path):
    ours, theirs, folder = gemma("softcap-linear-rope")
    assert set(ours.state_dict()) == set(theirs.state_dict())
    ids, _ = left_padded(lengths=(7,))
    assert_save_round_trip(ours, folder, tmp_path, ids)


def test_older_config_fields_load_as_transformers_reads_them(gemma, tmp_path):
    """rope_theta (global), rope_local_base_freq (sliding), rope_scaling (global) and sliding_window_pattern."""
    import transformers

    _, _, folder = gemma("plain")
    config = json.loads(open(f"{folder}/config.json").read())
    del config["rope_parameters"], config["layer_types"]
    config.update(rope_theta=20000.0, rope_local_base_freq=30.0, sliding_window_pattern=3,
                  rope_scaling={"rope_type": "linear", "factor": 2.0})
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes(open(f"{folder}/model.safetensors", "rb").read())
    ours = pretrained.AutoModelForCausalLM.from_pretrained(tmp_path)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert ours.config.layer_types == theirs.config.layer_types == ["sliding_attention", "sliding_attention",
                                                                    "full_attention", "sliding_attention"]
    assert ours.config.rope_parameters["full_attention"]["rope_theta"] == 20000.0
    ids, mask = left_padded()
    assert_forward_equal(ours, theirs, ids, mask)


def test_sequence_classification(tmp_path):
    assert_sequence_classification_equal(tmp_path, "Gemma3TextConfig", "Gemma3TextForSequenceClassification", **TINY)


def test_bidirectional_mode_is_refused():
    with pytest.raises(pretrained.errors.UnsupportedOptionError, match="use_bidirectional_attention"):
        pretrained.AutoConfig.for_model("gemma3_text", **TINY, use_bidirectional_attention=True)
