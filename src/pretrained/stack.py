"""The per-layer loop every model runs, written once: hidden states, attentions (self and cross),
gradient checkpointing and layer drop come with it for every family.

A layer is called as `layer(x, *args, output_attentions=..., **kwargs)` and returns a tuple
`(x, self-attention weights[, cross-attention weights])`. The owner (the module holding the
layers) has a `gradient_checkpointing` flag, set by `PreTrainedModel.gradient_checkpointing_enable`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


@dataclass
class StackOutput:
    last_hidden_state: torch.Tensor
    hidden_states: tuple | None  # the input of every layer; the caller appends the final output
    attentions: tuple | None
    cross_attentions: tuple | None


def recomputes(owner: nn.Module) -> bool:
    """Whether `owner`'s layers run under gradient checkpointing now (training, with gradients). A cache
    cannot be kept then: recomputation would write every token twice (Transformers turns it off too)."""
    return getattr(owner, "gradient_checkpointing", False) and owner.training and torch.is_grad_enabled()


def run_layers(owner: nn.Module, layers, x: torch.Tensor, *args, output_attentions: bool = False,
               output_hidden_states: bool = False, layerdrop: float = 0.0, **kwargs) -> StackOutput:
    """Run `layers` over x (B, T, C). With `owner.gradient_checkpointing` in training, each layer's
    activations are recomputed in the backward pass instead of stored (PyTorch's non-reentrant
    checkpoint; `owner.gradient_checkpointing_kwargs` are passed to it). `layerdrop`: in training, each
    layer is skipped with that probability (its attentions are then None, as in Transformers)."""
    recompute = recomputes(owner)
    checkpoint_kwargs = {"use_reentrant": False, **(getattr(owner, "gradient_checkpointing_kwargs", None) or {})}
    hidden_states = () if output_hidden_states else None
    attentions = () if output_attentions else None
    cross_attentions = None
    for layer in layers:
        if output_hidden_states:
            hidden_states += (x,)
        if layerdrop and owner.training and float(torch.rand([])) < layerdrop:
            out = (x, None, None)
        elif recompute:
            out = checkpoint(layer, x, *args, output_attentions=output_attentions, **kwargs, **checkpoint_kwargs)
        else:
            out = layer(x, *args, output_attentions=output_attentions, **kwargs)
        x = out[0]
        if output_attentions:
            attentions += (out[1],)
            if len(out) > 2:
                cross_attentions = (cross_attentions or ()) + (out[2],)
    return StackOutput(x, hidden_states, attentions, cross_attentions)
