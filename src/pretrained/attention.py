"""One attention signature, backends chosen by name (`config.attn_implementation`).

    fn(q, k, v, mask, scale, dropout, is_causal, bias=None, softcap=None) -> (out, weights | None)
    q: (B, H, T, D)   k, v: (B, Hkv, S, D) with H % Hkv == 0 (grouped-query attention)
    mask: additive float mask broadcastable to (B, H, T, S), or None
    is_causal: mask is None and position t may only see keys <= t (only used when T == S)
    bias: additive score bias broadcastable to (B, H, T, S): relative positions (T5, ALiBi, ...)
    softcap: scores become softcap * tanh(scores / softcap) before bias and mask (Gemma 2/3)
    out: (B, H, T, D); weights: (B, H, T, S) when the backend computes them

Model code never branches on the backend; `eager` is the reference and the only one that returns
weights, so `output_attentions=True` runs eager for that call. Faster kernels for inference are
chosen by `pretrained.optimize`, not here.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .errors import ConfigError, InputError

AttentionFunction = Callable[..., tuple[torch.Tensor, "torch.Tensor | None"]]


def _repeat_kv(x: torch.Tensor, n: int) -> torch.Tensor:
    """(B, Hkv, S, D) -> (B, Hkv*n, S, D), each kv head serving n query heads."""
    return x if n == 1 else x.repeat_interleave(n, dim=1)


def eager_attention(q, k, v, mask=None, scale=None, dropout=0.0, is_causal=False, bias=None, softcap=None):
    n_rep = q.shape[1] // k.shape[1]
    k, v = _repeat_kv(k, n_rep), _repeat_kv(v, n_rep)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale  # (B, H, T, S)
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap  # layers.softcap (not imported: layers imports nothing here)
    if bias is not None:
        scores = scores + bias
    if mask is not None:
        scores = scores + mask
    elif is_causal:
        T, S = scores.shape[-2:]
        future = torch.ones(T, S, dtype=torch.bool, device=q.device).triu(S - T + 1)
        scores = scores.masked_fill(future, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
    if dropout:
        weights = F.dropout(weights, p=dropout, training=True)
    return torch.matmul(weights, v), weights


def sdpa_attention(q, k, v, mask=None, scale=None, dropout=0.0, is_causal=False, bias=None, softcap=None):
    if softcap is not None:  # the fused kernel has no soft-capping
        return eager_attention(q, k, v, mask, scale, dropout, is_causal, bias, softcap)[0], None
    if bias is not None:
        mask = bias if mask is None else bias + mask
    gqa = q.shape[1] != k.shape[1]
    out = F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=dropout, scale=scale,
        is_causal=is_causal and mask is None and q.shape[2] == k.shape[2] and q.shape[2] > 1,
        enable_gqa=gqa,
    )
    return out, None


ATTENTION_FUNCTIONS: dict[str, AttentionFunction] = {"eager": eager_attention, "sdpa": sdpa_attention}


def register_attention(name: str, fn: AttentionFunction) -> None:
    """Add a backend (e.g. a custom kernel) selectable with attn_implementation=name."""
    ATTENTION_FUNCTIONS[name] = fn


def attend(fn: AttentionFunction, q, k, v, mask=None, **options):
    """`fn(q, k, v, mask, **options)`, where q may hold g consecutive rows per row of k and v: generate()
    keeps one encoder output per prompt for its g beams (or samples). Those g rows attend as g * T query
    positions of one row, so cross-attention reads each prompt's keys once, not once per beam."""
    Bq, Bk = q.shape[0], k.shape[0]
    if Bq == Bk:
        return fn(q, k, v, mask, **options)
    g = Bq // Bk
    if options.get("bias") is not None:  # folded with the mask: both are added to the scores
        bias = options.pop("bias")
        mask = bias if mask is None else bias + mask
    if g * Bk != Bq or options.get("is_causal"):
        raise InputError(f"attention: {Bq} query rows cannot share {Bk} rows of keys (need a multiple, not causal)")
    _, H, T, D = q.shape
    S = k.shape[2]
    q = q.view(Bk, g, H, T, D).transpose(1, 2).reshape(Bk, H, g * T, D)
    if mask is not None and mask.shape[0] == Bq:  # a mask per query row: its g rows follow each other too
        mask = mask.expand(Bq, mask.shape[1], T, S).reshape(Bk, g, -1, T, S).transpose(1, 2).reshape(Bk, -1, g * T, S)
    elif mask is not None and mask.shape[2] == T > 1:  # one mask per key row, repeated for each of the g rows
        mask = mask[:, :, None].expand(mask.shape[0], mask.shape[1], g, T, S).reshape(mask.shape[0], -1, g * T, S)
    out, weights = fn(q, k, v, mask, **options)  # (Bk, H, g * T, D)
    out = out.view(Bk, H, g, T, D).transpose(1, 2).reshape(Bq, H, T, D)
    if weights is not None:
        weights = weights.view(Bk, H, g, T, S).transpose(1, 2).reshape(Bq, H, T, S)
    return out, weights


def attention_function(name: str | None, need_weights: bool = False) -> AttentionFunction:
    if need_weights:
        return eager_attention
    name = name or "sdpa"
    if name not in ATTENTION_FUNCTIONS:
        raise ConfigError(f"attn_implementation={name!r} is not registered; expected one of {sorted(ATTENTION_FUNCTIONS)}")
    return ATTENTION_FUNCTIONS[name]
