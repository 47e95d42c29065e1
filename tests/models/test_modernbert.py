"""ModernBERT against transformers: every head with a padded batch (rotary with a rope base per layer type,
local layers' bidirectional window shorter than the batch, GeGLU, first-token or mean pooling), state_dict
keys, save round trips, gradient checkpointing, sparse masked-LM prediction, and the older config.json
(global_attn_every_n_layers, global/local_rope_theta instead of layer_types and rope_parameters)."""

from __future__ import annotations

import json

import pytest
import torch

import pretrained
from encoder_parity import (HEADS, assert_gradient_checkpointing, assert_head_parity, assert_outputs_close,
                            assert_saved_by_us_loads_in_transformers, build, head_inputs, head_labels, padded_batch)

BASE = dict(vocab_size=99, hidden_size=32, intermediate_size=40, num_hidden_layers=4, num_attention_heads=4,
            pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2, local_attention=4,
            max_position_embeddings=64)
CASES = {
    "cls": BASE,  # layers: full, sliding, sliding, full; the window reaches 2 tokens either side
    "mean-biases": dict(BASE, classifier_pooling="mean", norm_bias=True, attention_bias=True, mlp_bias=True,
                        classifier_bias=True, decoder_bias=False, hidden_activation="gelu_pytorch_tanh",
                        rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 5000.0},
                                         "sliding_attention": {"rope_type": "default", "rope_theta": 300.0}}),
}
PAD = 0


@pytest.fixture(scope="module")
def modernbert(tmp_path_factory):
    cache = {}

    def get(case, head, **overrides):
        key = (case, head, tuple(sorted(overrides.items())))
        if key not in cache:
            cache[key] = build(tmp_path_factory.mktemp(case + head), "ModernBert", head, **CASES[case], **overrides)
        return cache[key]

    return get


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("head", HEADS)
def test_parity_with_transformers(modernbert, case, head):
    for attn in ("eager", "sdpa"):
        assert_head_parity(modernbert(case, head), "ModernBert", head, PAD, attn)


@pytest.mark.parametrize("case", CASES)
def test_saved_by_us_loads_in_transformers(modernbert, case, tmp_path):
    assert_saved_by_us_loads_in_transformers(modernbert(case, "ForMaskedLM"), "ModernBert", "ForMaskedLM", PAD, tmp_path)


def test_gradient_checkpointing(modernbert):
    assert_gradient_checkpointing(modernbert("cls", "ForTokenClassification"), "ModernBert", "ForTokenClassification", PAD)


def test_sparse_prediction_scores_labelled_positions_only(modernbert):
    import transformers

    folder = modernbert("cls", "ForMaskedLM", sparse_prediction=True)
    inputs, labels = head_inputs("ForMaskedLM", PAD), head_labels("ForMaskedLM")
    theirs = transformers.ModernBertForMaskedLM.from_pretrained(folder, attn_implementation="eager").eval()
    ours = pretrained.ModernBertForMaskedLM.from_pretrained(folder)
    with torch.no_grad():
        a, b = ours(**inputs, **labels), theirs(**inputs, **labels)
    assert a.logits.shape == (int((labels["labels"] != -100).sum()), 99)
    assert_outputs_close(a, b)


def test_older_config_json_loads(modernbert, tmp_path):
    """ModernBERT-base's config.json predates layer_types / rope_parameters."""
    import transformers

    folder = modernbert("cls", "Model")
    config = json.loads(open(f"{folder}/config.json").read())
    del config["layer_types"], config["rope_parameters"]
    config.update(global_attn_every_n_layers=2, global_rope_theta=20000.0, local_rope_theta=500.0)
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes(open(f"{folder}/model.safetensors", "rb").read())
    ours = pretrained.AutoModel.from_pretrained(tmp_path)
    assert ours.config.layer_types == ["full_attention", "sliding_attention"] * 2
    theirs = transformers.AutoModel.from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert theirs.config.layer_types == ours.config.layer_types
    inputs = padded_batch(PAD)
    with torch.no_grad():
        assert_outputs_close(ours(**inputs, output_hidden_states=True), theirs(**inputs, output_hidden_states=True))


def test_inputs_embeds_position_ids_and_errors(modernbert):
    import transformers

    folder = modernbert("cls", "Model")
    theirs = transformers.ModernBertModel.from_pretrained(folder).eval()
    ours = pretrained.ModernBertModel.from_pretrained(folder)
    ids = padded_batch(PAD, lengths=(7, 7))["input_ids"]
    embeds = theirs.embeddings.tok_embeddings(ids).detach()
    positions = torch.arange(3, 10)[None].expand(2, -1)
    with torch.no_grad():
        assert_outputs_close(ours(inputs_embeds=embeds, position_ids=positions),
                             theirs(inputs_embeds=embeds, position_ids=positions))
    with pytest.raises(pretrained.errors.InputError, match="exactly one of input_ids or inputs_embeds"):
        ours(ids, inputs_embeds=embeds)
    with pytest.raises(pretrained.ConfigError, match="classifier_pooling"):
        pretrained.ModernBertConfig(classifier_pooling="max")


def test_new_classifier_gets_the_reference_init(modernbert):
    """A head loaded from a base checkpoint: its classifier is drawn from a normal of std hidden_size**-0.5,
    truncated at initializer_cutoff_factor standard deviations, with a zero bias."""
    head, info = pretrained.ModernBertForSequenceClassification.from_pretrained(
        modernbert("cls", "Model"), num_labels=200, output_loading_info=True)
    assert set(info["missing_keys"]) >= {"classifier.weight", "head.dense.weight"}
    weight, std = head.classifier.weight, 32**-0.5
    assert weight.abs().max() <= 2.0 * std and weight.std().item() == pytest.approx(0.8 * std, rel=0.15)
    assert torch.equal(head.classifier.bias, torch.zeros(200))
