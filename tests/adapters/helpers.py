"""Tiny base checkpoints and adapters built by transformers + peft (the oracles), shared by the adapter tests.

A plain module, not conftest: `from conftest import` would pick whichever conftest was imported first."""

from __future__ import annotations

import torch

TINY_LLAMA = dict(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=False)
TINY_BERT = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                 max_position_embeddings=64, num_labels=3)


def build_base(folder, config_name: str, model_name: str, **config) -> str:
    import transformers

    torch.manual_seed(0)
    getattr(transformers, model_name)(getattr(transformers, config_name)(**config)).eval().save_pretrained(folder)
    return str(folder)


def hf_base(folder, model_name: str):
    import transformers

    return getattr(transformers, model_name).from_pretrained(folder).eval()


def perturb_trainable(model, seed: int = 1) -> None:
    """Stand-in for training: every trainable parameter moves by noise, so nothing saved is at its init value."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.1)


def ids(vocab: int, batch: int = 2, length: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(1, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))
