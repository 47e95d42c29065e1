"""question-answering against transformers 4.57.6 (5.x dropped the pipeline), run in its own venv."""

from __future__ import annotations

import pytest
from pipeline_helpers import assert_close, tf4_pipeline

from pretrained import pipeline

CONTEXT = ("My name is Wolfgang and I live in Berlin. I work as an engineer at a small company that builds "
           "bicycles. On weekends I go hiking in the mountains with my dog, whose name is Rex.")
LONG_CONTEXT = " ".join([CONTEXT] * 6)
CALLS = [
    {"kwargs": {"question": "Where do I live?", "context": CONTEXT}},
    {"kwargs": {"question": "What is the dog called?", "context": CONTEXT, "top_k": 3}},
    {"kwargs": {"question": "Who am I?", "context": CONTEXT, "handle_impossible_answer": True, "top_k": 2}},
    {"kwargs": {"question": "What do I build?", "context": CONTEXT, "max_answer_len": 3, "top_k": 4}},
    {"kwargs": {"question": "What do I build?", "context": LONG_CONTEXT, "max_seq_len": 48, "doc_stride": 16,
                "top_k": 3}},
    {"kwargs": {"question": ["Where do I live?", "Who is Rex?"], "context": CONTEXT}},
    {"args": [{"question": "Where do I live?", "context": CONTEXT}], "kwargs": {"align_to_words": False}},
]


@pytest.mark.slow
def test_question_answering_matches_transformers_4(ckpt):
    path = ckpt("qa")
    theirs = tf4_pipeline("question-answering", path, CALLS)
    pipe = pipeline("question-answering", model=path)
    for call, expected in zip(CALLS, theirs):
        assert_close(pipe(*call.get("args", []), **call.get("kwargs", {})), expected)


def test_question_answering_batched_and_windows_equal_single(ckpt):
    pipe = pipeline("question-answering", model=ckpt("qa"))
    questions = ["Where do I live?", "What is the dog called?", "What do I build?"]
    contexts = [CONTEXT, LONG_CONTEXT, CONTEXT]
    kwargs = dict(max_seq_len=48, doc_stride=16, top_k=2)
    single = [pipe(question=q, context=c, **kwargs) for q, c in zip(questions, contexts)]
    assert_close(pipe(question=questions, context=contexts, batch_size=5, **kwargs), single, atol=1e-5)
    for answers, context in zip(single, contexts):
        for a in answers:
            assert context[a["start"]:a["end"]] == a["answer"]


@pytest.mark.parametrize("bad, message", [
    ({"question": "Where?", "context": ""}, "`context` cannot be empty"),
    ({"question": "", "context": CONTEXT}, "`question` cannot be empty"),
    ({"question": None, "context": CONTEXT}, "must be a string"),
    ({"question": "Where?"}, "keys 'question' and 'context'"),
])
def test_question_answering_bad_inputs(ckpt, bad, message):
    pipe = pipeline("question-answering", model=ckpt("qa"))
    with pytest.raises(ValueError, match=message):
        pipe(bad)
