"""Encoder tasks against transformers' pipeline on the same checkpoints: same labels, entities,
tokens and scores (1e-4); batched results equal one-at-a-time results."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pretrained import pipeline
from pipeline_helpers import assert_close

TEXTS = [
    "Hello world!",
    "My name is Wolfgang and I live in Berlin.",
    "Sarah works at the United Nations in New York, near Central Park.",
    "unaffable antidisestablishmentarianism",
    "a",
]


@pytest.fixture(scope="module")
def hf():
    import transformers

    transformers.logging.set_verbosity_error()
    return transformers.pipeline


def test_feature_extraction_minilm(hf, minilm_path):
    ours = pipeline("feature-extraction", model=minilm_path)
    theirs = hf("feature-extraction", model=minilm_path)
    for text in TEXTS[:3]:
        a, b = np.array(ours(text)), np.array(theirs(text))
        assert a.shape == b.shape and a.shape[:2] == (1, len(ours.tokenizer(text)["input_ids"]))
        np.testing.assert_allclose(a, b, atol=1e-4)
    assert torch.is_tensor(ours(TEXTS[0], return_tensors=True))


def test_feature_extraction_batched_equals_single(minilm_path):
    pipe = pipeline("feature-extraction", model=minilm_path)
    single = [pipe(t) for t in TEXTS]
    batched = pipe(TEXTS, batch_size=3)
    for a, b in zip(single, batched):
        np.testing.assert_allclose(np.array(a), np.array(b), atol=1e-5)  # padding is cut back off


def test_default_model_is_embedded_minilm_and_pools_like_sentence_transformers(minilm_path):
    pipe = pipeline("feature-extraction")
    assert pipe.model_path == minilm_path
    vec = torch.tensor(pipe("A man is eating food.", pooling="auto", normalize="auto"))
    tokens = torch.tensor(pipe("A man is eating food."))[0]
    expected = torch.nn.functional.normalize(tokens.mean(0), dim=-1)  # MiniLM: mean pooling, then Normalize
    torch.testing.assert_close(vec, expected, atol=1e-5, rtol=0)
    assert abs(vec.norm().item() - 1) < 1e-5


def test_sentence_similarity_ranks_by_cosine():
    pipe = pipeline("sentence-similarity")
    candidates = ["The stock market fell sharply.", "A kitten naps on the sofa.", "The cat sits on the mat."]
    ranked = pipe("Where is the cat sitting?", sentences=candidates)
    assert [r["sentence"] for r in ranked][-1] == "The stock market fell sharply."
    feature = pipeline("feature-extraction")
    q = torch.tensor(feature("Where is the cat sitting?", pooling="auto", normalize=True))
    for r in ranked:
        c = torch.tensor(feature(r["sentence"], pooling="auto", normalize=True))
        assert abs(r["score"] - float(q @ c)) < 1e-5
        assert candidates[r["corpus_id"]] == r["sentence"]
    same = pipe({"source_sentence": "Where is the cat sitting?", "sentences": candidates}, top_k=1)
    assert same == ranked[:1]


@pytest.mark.parametrize("kwargs", [{}, {"top_k": 2}, {"top_k": None}, {"function_to_apply": "sigmoid"},
                                    {"function_to_apply": "none", "top_k": None}])
def test_text_classification(hf, ckpt, kwargs):
    path = ckpt("seqcls")
    ours, theirs = pipeline("sentiment-analysis", model=path), hf("text-classification", model=path)
    for inputs in (TEXTS[1], TEXTS, {"text": "I love it", "text_pair": "It is great"}):
        assert_close(ours(inputs, **kwargs), theirs(inputs, **kwargs))
    assert_close(ours(TEXTS, batch_size=4, **kwargs), ours(TEXTS, **kwargs), atol=1e-5)


@pytest.mark.parametrize("strategy", ["none", "simple", "first", "average", "max"])
def test_token_classification(hf, ckpt, strategy):
    path = ckpt("tokcls")
    ours = pipeline("ner", model=path, aggregation_strategy=strategy)
    theirs = hf("token-classification", model=path, aggregation_strategy=strategy)
    results = ours(TEXTS)
    assert any(results), "the checkpoint predicts no entity at all: the test would prove little"
    assert_close(results, theirs(TEXTS))
    assert_close(ours(TEXTS, batch_size=4), results, atol=1e-5)
    assert_close(ours(TEXTS[2], ignore_labels=[]), theirs(TEXTS[2], ignore_labels=[]))


def test_token_classification_stride_and_split_words(hf, ckpt):
    path = ckpt("tokcls")
    long_text = " ".join(TEXTS[1:3]) * 8
    ours = pipeline("ner", model=path, aggregation_strategy="first")
    theirs = hf("token-classification", model=path, aggregation_strategy="first")
    ours.tokenizer.model_max_length = theirs.tokenizer.model_max_length = 32
    assert_close(ours(long_text, stride=8), theirs(long_text, stride=8))
    words = TEXTS[2].split()
    assert_close(ours(words, is_split_into_words=True), theirs(words, is_split_into_words=True))


@pytest.mark.parametrize("kwargs", [{}, {"top_k": 3}, {"targets": ["paris", "berlin", "dog"]}, {"targets": "zzyzx"}])
def test_fill_mask(hf, ckpt, kwargs):
    path = ckpt("mlm")
    ours, theirs = pipeline("fill-mask", model=path), hf("fill-mask", model=path)
    inputs = ["Paris is the [MASK] of France.", "The [MASK] fox [MASK] over the dog.", "[MASK]"]
    assert_close(ours(inputs, **kwargs), theirs(inputs, **kwargs))
    assert_close(ours(inputs[:1], **kwargs), theirs(inputs[:1], **kwargs))
    assert_close(ours(inputs, batch_size=3, **kwargs), ours(inputs, **kwargs), atol=1e-5)


@pytest.mark.parametrize("multi_label", [False, True])
def test_zero_shot(hf, ckpt, multi_label):
    path = ckpt("nli")
    ours, theirs = pipeline("zero-shot-classification", model=path), hf("zero-shot-classification", model=path)
    labels = ["politics", "sports", "cooking"]
    kwargs = dict(candidate_labels=labels, multi_label=multi_label, hypothesis_template="This text is about {}.")
    assert_close(ours(TEXTS[1:4], **kwargs), theirs(TEXTS[1:4], **kwargs))
    assert_close(ours(TEXTS[2], "politics, sports"), theirs(TEXTS[2], "politics, sports"))
    assert_close(ours(TEXTS[2], candidate_labels="sports"), theirs(TEXTS[2], candidate_labels="sports"))
    assert_close(ours(TEXTS[1:4], batch_size=4, **kwargs), ours(TEXTS[1:4], **kwargs), atol=1e-5)
