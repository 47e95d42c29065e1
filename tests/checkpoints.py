"""Tiny random checkpoints written by transformers (the oracle), for parity tests to load.

A plain module, not conftest: several test folders have a conftest, and `from conftest import`
would pick whichever was imported first."""

from __future__ import annotations

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


def tf4_python() -> str:
    """The python of transformers 4.57.6's venv, the oracle for what 5.x dropped (pipelines).

    The venv folder is $PRETRAINED_TF4_VENV, by default <user cache>/pretrained/tf4; .ci/run builds it there."""
    import os

    default = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pretrained", "tf4")
    return os.path.join(os.environ.get("PRETRAINED_TF4_VENV") or default, "bin", "python")


def vit_classifier_checkpoint(folder, labels: list[str]) -> str:
    """A tiny random ViT image classifier (32 px, patch 8) with widely spread classifier weights (so the
    scores' order is meaningful) and transformers' ViT image processor, saved in `folder`."""
    import torch
    import transformers
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    torch.manual_seed(0)
    config = transformers.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                                    image_size=32, patch_size=8, id2label=dict(enumerate(labels)))
    model = transformers.ViTForImageClassification(config)
    with torch.no_grad():
        model.classifier.weight.normal_(std=1.0)
    model.save_pretrained(folder)
    ViTImageProcessorPil(size=32).save_pretrained(folder)
    return str(folder)
