"""Phi-3 against transformers: fused qkv_proj / gate_up_proj checkpoints, partial rotary, LongRoPE
(short factors within the pretraining length, long ones past it, in one forward and while generating
across the boundary), its older "su" name, sliding windows, and the classification head."""

from __future__ import annotations

import json

import pytest
import torch

import pretrained
from decoder_parity import (assert_forward_equal, assert_generate_equal, assert_save_round_trip,
                            assert_sequence_classification_equal, left_padded, load_pair)

TINY = dict(vocab_size=99, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0, eos_token_id=2, bos_token_id=1)
LONGROPE = {"rope_type": "longrope", "rope_theta": 10000.0, "partial_rotary_factor": 0.5,
            "short_factor": [1.2, 1.7], "long_factor": [2.5, 3.1]}  # rotary dim 4: two frequencies
CASES = {
    "plain": TINY,
    "longrope-partial": dict(TINY, original_max_position_embeddings=8, partial_rotary_factor=0.5,
                             rope_parameters=LONGROPE),
    "sliding-mha": dict(TINY, num_key_value_heads=4, sliding_window=5),
}


@pytest.fixture(scope="module")
def phi3(tmp_path_factory):
    loaded = {}

    def get(name):
        if name not in loaded:
            loaded[name] = load_pair(tmp_path_factory.mktemp(name), "Phi3Config", "Phi3ForCausalLM", **CASES[name])
        return loaded[name]

    return get


@pytest.mark.parametrize("name", CASES)
def test_logits_hidden_states_and_greedy_tokens(phi3, name):
    ours, theirs, _ = phi3(name)
    assert type(ours).__name__ == "Phi3ForCausalLM"
    ids, mask = left_padded()  # 13 positions: past LongRoPE's 8 and the window of 5
    assert_forward_equal(ours, theirs, ids, mask)
    short_ids, short_mask = left_padded(lengths=(6, 4))  # within 8, then generating past it
    assert_forward_equal(ours, theirs, short_ids, short_mask)
    assert_generate_equal(ours, theirs, short_ids, short_mask, max_new_tokens=8)


def test_longrope_switches_factors_at_the_pretraining_length(phi3):
    ours, _, _ = phi3("longrope-partial")
    rotary = ours.model.rotary_emb
    assert ours.config.rotary_dim() == 4
    positions = torch.arange(8)[None]
    cos_short, _ = rotary(positions, torch.float32)
    cos_long, _ = rotary(torch.arange(9)[None], torch.float32)
    assert torch.equal(rotary.long_inv_freq, 1.0 / (torch.tensor([2.5, 3.1]) * 10000.0 ** torch.tensor([0.0, 0.5])))
    assert not torch.allclose(cos_short, cos_long[:, :8])


def test_save_round_trip_keeps_fused_projections(phi3, tmp_path):
    ours, theirs, folder = phi3("longrope-partial")
    assert set(ours.state_dict()) == set(theirs.state_dict())  # model.layers.0.self_attn.qkv_proj.weight, ...
    ids, _ = left_padded(lengths=(11,))
    assert_save_round_trip(ours, folder, tmp_path, ids)


def test_older_su_rope_scaling_loads_as_longrope(phi3, tmp_path):
    import transformers

    _, _, folder = phi3("longrope-partial")
    config = json.loads(open(f"{folder}/config.json").read())
    del config["rope_parameters"]
    # (transformers needs the pretraining length inside rope_scaling when the type says "su")
    config.update(rope_theta=10000.0, rope_scaling={"type": "su", "short_factor": [1.2, 1.7], "long_factor": [2.5, 3.1],
                                                    "original_max_position_embeddings": 8})
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes(open(f"{folder}/model.safetensors", "rb").read())
    ours = pretrained.AutoModelForCausalLM.from_pretrained(tmp_path)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert ours.model.rotary_emb.params["rope_type"] == "longrope"
    ids, mask = left_padded()
    assert_forward_equal(ours, theirs, ids, mask)


def test_sequence_classification(tmp_path):
    assert_sequence_classification_equal(tmp_path, "Phi3Config", "Phi3ForSequenceClassification", **TINY)
