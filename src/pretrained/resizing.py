"""Resizing the vocabulary of a loaded model (`model.resize_token_embeddings`), as Transformers does:
kept rows copied, added rows drawn around the old rows' mean (or from the model's init with
`mean_resizing=False`), an untied output projection and its bias resized alike, vocab_size updated.

Tensors are replaced in place (`param.data`), so every module sharing a tied parameter sees the new size.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from .errors import InputError

logger = logging.getLogger(__name__)


def new_vocab_size(current: int, new_num_tokens: int | None, pad_to_multiple_of: int | None) -> int:
    if pad_to_multiple_of is not None:
        if not isinstance(pad_to_multiple_of, int) or isinstance(pad_to_multiple_of, bool) or pad_to_multiple_of < 1:
            raise InputError(f"resize_token_embeddings(pad_to_multiple_of={pad_to_multiple_of!r}): expected a "
                             "positive integer")
    if new_num_tokens is None:
        new_num_tokens = current
    if not isinstance(new_num_tokens, int) or isinstance(new_num_tokens, bool) or new_num_tokens < 1:
        raise InputError(f"resize_token_embeddings(new_num_tokens={new_num_tokens!r}): expected a positive integer")
    if pad_to_multiple_of:
        new_num_tokens = -(-new_num_tokens // pad_to_multiple_of) * pad_to_multiple_of
    return new_num_tokens


def _mean_rows(old: torch.Tensor, added: int) -> torch.Tensor:
    """`added` rows from N(mean, 1e-9 * covariance) of the old rows (the mean alone when that is not positive
    definite): new tokens start where the model expects an average token. (added, D)"""
    w = old.float()
    mean = w.mean(0)
    centered = w - mean
    covariance = 1e-9 * (centered.T @ centered) / w.shape[0]
    if torch.distributions.constraints.positive_definite.check(covariance).all():
        rows = torch.distributions.MultivariateNormal(mean, covariance_matrix=covariance).sample((added,))
    else:
        rows = mean[None, :].repeat(added, 1)
    return rows.to(old.dtype)


def resize_rows(model, param: nn.Parameter, n: int, mean_resizing: bool) -> None:
    """Give `param` ((V, D) rows or a (V,) bias) n rows in place: the first min(V, n) kept, the rest new."""
    old = param.data
    v = old.shape[0]
    if v == n:
        return
    new = torch.empty((n, *old.shape[1:]), dtype=old.dtype, device=old.device)
    if n > v:
        if old.dim() == 1:  # a bias: around the old mean, or zero as a Linear's init
            mean, std = old.float().mean().item(), old.float().std().item()
            new[v:] = torch.empty(n - v, device=old.device).normal_(mean, 1e-9 * std) if mean_resizing else 0
        elif mean_resizing:
            new[v:] = _mean_rows(old, n - v)
        else:  # the model's own init of an embedding of the new rows
            probe = nn.Embedding(n - v, old.shape[1], device=old.device, dtype=old.dtype)
            model._init_weights(probe)
            new[v:] = probe.weight.data
    new[:min(v, n)] = old[:min(v, n)]
    param.data = new


def resize_token_embeddings(model, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None,
                            mean_resizing: bool = True) -> nn.Embedding:
    embeddings = model.get_input_embeddings()
    if new_num_tokens is None and pad_to_multiple_of is None:
        return embeddings
    if not isinstance(embeddings, nn.Embedding):
        raise InputError(f"resize_token_embeddings: {type(model).__name__}'s input embeddings are a "
                         f"{type(embeddings).__name__}, not an nn.Embedding")
    n = new_vocab_size(embeddings.weight.shape[0], new_num_tokens, pad_to_multiple_of)
    if mean_resizing and n > embeddings.weight.shape[0]:
        logger.info("resize_token_embeddings: new rows drawn around the old rows' mean (mean_resizing=False "
                    "draws them from the model's init instead)")
    shared = embeddings.weight
    resize_rows(model, shared, n, mean_resizing)
    head = model.get_output_embeddings()
    if head is not None:
        tied = head.weight is shared
        if not tied:  # an untied projection (V, D)
            resize_rows(model, head.weight, n, mean_resizing)
        if getattr(head, "bias", None) is not None:  # (V,): zeros for new tokens under a tied weight
            resize_rows(model, head.bias, n, mean_resizing and not tied)
        if hasattr(head, "out_features"):
            head.out_features = n
    for module in model.modules():
        if isinstance(module, nn.Embedding) and module.weight is shared:
            module.num_embeddings = n
            if module.padding_idx is not None and module.padding_idx >= n:
                module.padding_idx = None
    bias = getattr(model, "final_logits_bias", None)  # BART: (1, V), zeros for new tokens
    if isinstance(bias, torch.Tensor) and bias.shape[-1] != n:
        grown = bias.new_zeros((1, n))
        grown[:, :min(n, bias.shape[-1])] = bias[:, :n]
        model.final_logits_bias = grown
    model.config.vocab_size = n
    model.vocab_size = n
    model.tie_weights()
    return embeddings
