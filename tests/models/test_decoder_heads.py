"""Task heads of the 2026 decoder families against transformers on tiny random checkpoints: sequence
classification (last real token of a left-padded batch), token classification and question answering
where transformers has them (Gemma 3 text has only sequence classification, Phi-3 no QA), reached
through the AutoModelFor* classes; logits and losses within 1e-5."""

from __future__ import annotations

import pytest
import torch

import pretrained
from decoder_parity import ATOL, left_padded, load_pair

BASE = dict(vocab_size=99, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0, eos_token_id=2, bos_token_id=1)
FAMILIES = {
    "Qwen3": ("Qwen3Config", dict(BASE, head_dim=16)),
    "Mixtral": ("MixtralConfig", dict(BASE, num_local_experts=4, num_experts_per_tok=2)),
    "Qwen3Moe": ("Qwen3MoeConfig", dict(BASE, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=24)),
    "Phi3": ("Phi3Config", BASE),
    "Gemma3Text": ("Gemma3TextConfig", dict(BASE, head_dim=8, sliding_window=4)),
}
HEADS = {
    "ForSequenceClassification": ["Qwen3", "Mixtral", "Qwen3Moe", "Phi3", "Gemma3Text"],
    "ForTokenClassification": ["Qwen3", "Mixtral", "Qwen3Moe", "Phi3"],
    "ForQuestionAnswering": ["Qwen3", "Mixtral", "Qwen3Moe"],
}
CASES = [(family, head) for head, families in HEADS.items() for family in families]


def test_heads_match_what_transformers_has():
    import transformers

    for family in FAMILIES:
        for head, families in HEADS.items():
            assert hasattr(transformers, family + head) == (family in families), family + head
            assert hasattr(pretrained, family + head) == (family in families), family + head


@pytest.mark.parametrize("family,head", CASES, ids=[f + h for f, h in CASES])
def test_head_equals_transformers(tmp_path, family, head):
    config_name, kwargs = FAMILIES[family]
    num_labels = 2 if head == "ForQuestionAnswering" else 3
    ours, theirs, _ = load_pair(tmp_path, config_name, family + head, auto="AutoModel" + head,
                                num_labels=num_labels, **kwargs)
    assert type(ours).__name__ == family + head
    assert set(ours.state_dict()) <= set(theirs.state_dict()) | {
        k.replace("gate_up_proj", p) for k in theirs.state_dict() for p in ("gate_proj", "up_proj")}
    ids, mask = left_padded()
    real = mask.bool()
    with torch.no_grad():
        if head == "ForSequenceClassification":
            labels = dict(labels=torch.tensor([0, 2, 1]))
        elif head == "ForTokenClassification":
            labels = dict(labels=torch.randint(0, 3, ids.shape, generator=torch.Generator().manual_seed(1))
                          .masked_fill(~real, -100))
        else:
            labels = dict(start_positions=torch.tensor([1, 5, 10]), end_positions=torch.tensor([3, 7, 12]))
        a = ours(input_ids=ids, attention_mask=mask, **labels)
        b = theirs(input_ids=ids, attention_mask=mask, **labels)
    if head == "ForSequenceClassification":
        torch.testing.assert_close(a.logits, b.logits, atol=ATOL, rtol=0)
    elif head == "ForTokenClassification":
        torch.testing.assert_close(a.logits[real], b.logits[real], atol=ATOL, rtol=0)
    else:
        torch.testing.assert_close(a.start_logits[real], b.start_logits[real], atol=ATOL, rtol=0)
        torch.testing.assert_close(a.end_logits[real], b.end_logits[real], atol=ATOL, rtol=0)
    if head == "ForQuestionAnswering":  # padding positions enter the span loss: compare on a full batch
        full = torch.ones_like(mask)
        with torch.no_grad():
            a = ours(input_ids=ids, attention_mask=full, **labels)
            b = theirs(input_ids=ids, attention_mask=full, **labels)
    torch.testing.assert_close(a.loss, b.loss, atol=ATOL, rtol=0)


@pytest.mark.parametrize("family", ["Qwen3", "Qwen3Moe"])
def test_question_answering_base_is_named_transformer(tmp_path, family):
    """Transformers keeps `transformer.` as these QA heads' prefix; the saved names round-trip."""
    config_name, kwargs = FAMILIES[family]
    ours, _, folder = load_pair(tmp_path / "in", config_name, family + "ForQuestionAnswering",
                                auto="AutoModelForQuestionAnswering", **kwargs)
    assert ours.base_model_prefix == "transformer" and ours.base_model is ours.transformer
    ours.save_pretrained(tmp_path / "out")
    again = pretrained.AutoModelForQuestionAnswering.from_pretrained(tmp_path / "out")
    ids, _ = left_padded(lengths=(6,))
    with torch.no_grad():
        torch.testing.assert_close(again(ids).start_logits, ours(ids).start_logits, atol=0, rtol=0)
