"""DeBERTa-v2/v3 against transformers: every head with a padded batch in three layouts (v3: shared
position projections, log buckets, normalised distance table, no absolute positions; v2 xlarge: separate
position projections, clamped distances, the convolution after layer 0, token types, a factorised
embedding; no relative attention at all), state_dict keys, save round trips, gradient checkpointing,
the loss the reference computes while problem_type is unset."""

from __future__ import annotations

import pytest
import torch

import pretrained
from encoder_parity import (HEADS, assert_gradient_checkpointing, assert_head_parity, assert_outputs_close,
                            assert_saved_by_us_loads_in_transformers, build, head_inputs)

BASE = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, pad_token_id=0)
CASES = {
    "v3": dict(BASE, relative_attention=True, position_buckets=6, pos_att_type="p2c|c2p", share_att_key=True,
               norm_rel_ebd="layer_norm", position_biased_input=False, max_relative_positions=-1),
    "v2-xlarge": dict(BASE, relative_attention=True, max_relative_positions=4, pos_att_type=["c2p", "p2c"],
                      conv_kernel_size=3, conv_act="gelu", type_vocab_size=2, embedding_size=24),
    "absolute": dict(BASE, type_vocab_size=2, pos_att_type="c2p"),  # the term still counts in the scale
}
PAD = 0


def token_types(inputs):
    return {"token_type_ids": (torch.arange(9) >= 4).long().expand(3, 9) * inputs["attention_mask"]}


@pytest.fixture(scope="module")
def deberta(tmp_path_factory):
    cache = {}

    def get(case, head, **overrides):
        key = (case, head, tuple(sorted(overrides.items())))
        if key not in cache:
            cache[key] = build(tmp_path_factory.mktemp(case + head), "DebertaV2", head, **CASES[case], **overrides)
        return cache[key]

    return get


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("head", HEADS)
def test_parity_with_transformers(deberta, case, head):
    for attn in ("eager", "sdpa"):
        assert_head_parity(deberta(case, head), "DebertaV2", head, PAD, attn, extra=token_types)


def test_masked_lm_without_legacy_head(deberta):
    folder = deberta("v3", "ForMaskedLM", legacy=False)
    assert_head_parity(folder, "DebertaV2", "ForMaskedLM", PAD, "eager")
    model = pretrained.DebertaV2ForMaskedLM.from_pretrained(folder)
    assert "lm_predictions.lm_head.bias" in model.state_dict() and not hasattr(model, "cls")


@pytest.mark.parametrize("case", ["v3", "v2-xlarge"])
def test_saved_by_us_loads_in_transformers(deberta, case, tmp_path):
    assert_saved_by_us_loads_in_transformers(deberta(case, "ForMaskedLM"), "DebertaV2", "ForMaskedLM", PAD, tmp_path,
                                             extra=token_types)


@pytest.mark.parametrize("case", ["v3", "v2-xlarge"])
def test_gradient_checkpointing(deberta, case):
    assert_gradient_checkpointing(deberta(case, "ForSequenceClassification"), "DebertaV2", "ForSequenceClassification",
                                  PAD, extra=token_types)


def test_long_sequence_buckets_and_clamps(deberta):
    import transformers

    for case in ("v3", "v2-xlarge"):
        folder = deberta(case, "Model")
        ids = torch.randint(3, 99, (2, 60), generator=torch.Generator().manual_seed(4))
        theirs = transformers.DebertaV2Model.from_pretrained(folder).eval()
        ours = pretrained.DebertaV2Model.from_pretrained(folder)
        with torch.no_grad():
            assert_outputs_close(ours(ids, output_hidden_states=True), theirs(ids, output_hidden_states=True))


def test_classification_losses_while_problem_type_is_unset(deberta):
    """The reference drops rows labelled < 0, takes soft labels as distributions, and records no problem_type."""
    import transformers

    folder = deberta("v3", "ForSequenceClassification")
    inputs = head_inputs("ForSequenceClassification", PAD)
    theirs = transformers.DebertaV2ForSequenceClassification.from_pretrained(folder).eval()
    ours = pretrained.DebertaV2ForSequenceClassification.from_pretrained(folder)
    soft = torch.tensor([[0.2, 0.3, 0.5], [1.0, 0, 0], [0, 0.5, 0.5]])
    for labels in (torch.tensor([2, -1, 0]), soft, torch.tensor([-1, -1, -1])):
        with torch.no_grad():
            torch.testing.assert_close(ours(**inputs, labels=labels).loss, theirs(**inputs, labels=labels).loss,
                                       atol=1e-5, rtol=0)
    assert ours.config.problem_type is None


def test_unknown_position_terms_are_refused():
    with pytest.raises(pretrained.errors.UnsupportedOptionError, match="pos_att_type"):
        pretrained.DebertaV2Config(relative_attention=True, pos_att_type="c2p|p2p")
