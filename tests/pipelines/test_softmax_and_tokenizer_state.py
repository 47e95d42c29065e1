"""The pipelines' one softmax is stable for large logits; pipelines leave the caller's tokenizer as
they found it and use only its public API."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pretrained import pipeline
from pretrained.pipelines.base import softmax

LARGE = [1000.0, 1001.0]
EXPECTED = [1 / (1 + math.e), math.e / (1 + math.e)]


def test_softmax_of_large_logits_is_finite_and_exact():
    probs = softmax(np.array([LARGE, [-1000.0, -1001.0]], dtype=np.float32))
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs, [EXPECTED, EXPECTED[::-1]], rtol=1e-6)
    np.testing.assert_allclose(softmax(np.array(LARGE), axis=0), EXPECTED, rtol=1e-12)


def test_text_classification_postprocess_with_large_logits(ckpt):
    pipe = pipeline("text-classification", model=ckpt("seqcls"))
    scores = pipe.postprocess({"logits": torch.tensor([[1000.0, 1001.0, -1000.0]])}, top_k=None)
    assert [s["label"] for s in scores] == ["NEU", "NEG", "POS"]
    np.testing.assert_allclose([s["score"] for s in scores], [*EXPECTED[::-1], 0.0], rtol=1e-6, atol=1e-30)


@pytest.mark.parametrize("multi_label", [False, True])
def test_zero_shot_postprocess_with_large_logits(ckpt, multi_label):
    pipe = pipeline("zero-shot-classification", model=ckpt("nli"))  # labels: contradiction, neutral, entailment
    outputs = [{"logits": torch.tensor([[1000.0, 0.0, entail]]), "candidate_label": label, "sequence": "s"}
               for label, entail in (("a", 1000.0), ("b", 1001.0))]
    result = pipe.postprocess(outputs, multi_label=multi_label)
    assert result["labels"] == ["b", "a"]
    # across labels: softmax(1001, 1000); per label: softmax(contradiction 1000, entailment 1001 / 1000)
    expected = EXPECTED[::-1] if not multi_label else [EXPECTED[1], 0.5]
    np.testing.assert_allclose(result["scores"], expected, rtol=1e-6)


def _tokenizer_state(tok) -> dict:
    names = ("pad_token", "pad_token_id", "eos_token", "padding_side", "truncation_side", "model_max_length")
    return {**{n: getattr(tok, n) for n in names}, "special_tokens_map": dict(tok.special_tokens_map)}


def test_zero_shot_leaves_a_tokenizer_without_pad_token_unchanged(ckpt):
    pipe = pipeline("zero-shot-classification", model=ckpt("nli"))
    pipe.tokenizer.pad_token = None  # an NLI tokenizer with eos and no pad: batches pad with eos instead
    pipe.tokenizer.eos_token = "[SEP]"
    before = _tokenizer_state(pipe.tokenizer)
    text, labels = "Paris is the capital of France.", ["politics", "sports", "a much longer label about cooking"]
    single = pipe(text, candidate_labels=labels)
    batched = pipe(text, candidate_labels=labels, batch_size=3)
    assert _tokenizer_state(pipe.tokenizer) == before
    assert batched["labels"] == single["labels"]
    np.testing.assert_allclose(batched["scores"], single["scores"], atol=1e-5)


class PublicOnly:
    """A tokenizer seen through its public attributes only: reaching for a private one fails."""

    def __init__(self, tokenizer):
        self._wrapped = tokenizer

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(f"the pipeline read the tokenizer's private attribute {name!r}")
        return getattr(self._wrapped, name)

    def __call__(self, *args, **kwargs):
        return self._wrapped(*args, **kwargs)


@pytest.mark.parametrize("strategy", ["simple", "first", "average", "max"])
def test_token_classification_uses_the_tokenizer_public_api(ckpt, strategy):
    pipe = pipeline("ner", model=ckpt("tokcls"), aggregation_strategy=strategy)
    # punctuation glued to a word ("Berlin.") is a word of its own for WordPiece, not a subword
    texts = ["My name is Wolfgang and I live in Berlin.", "unaffable antidisestablishmentarianism, Sarah!"]
    expected = pipe(texts, ignore_labels=[])
    pipe.tokenizer = PublicOnly(pipe.tokenizer)
    assert pipe(texts, ignore_labels=[]) == expected
