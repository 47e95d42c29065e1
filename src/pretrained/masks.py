"""Attention masks, built once per forward at model level.

Masks are additive floats broadcastable to (B, H, T, S): 0 where a query may attend, the dtype's
minimum where it may not (a fully masked row then softmaxes to uniform instead of NaN, as in
Transformers). A builder returns None when the kernel's fast path is exact: no mask at all for a
bidirectional encoder without padding, `is_causal` for a decoder without padding or window.
"""

from __future__ import annotations

import torch


def _additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    zero = torch.zeros((), dtype=dtype, device=allowed.device)
    return torch.where(allowed, zero, torch.finfo(dtype).min)


def padding_mask(attention_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """(B, S) 1/0 keep-mask -> (B, 1, 1, S) additive mask for bidirectional attention, or None.
    A traced graph cannot branch on the mask's values: it always gets the mask."""
    if attention_mask is None or (not torch.compiler.is_compiling() and bool(attention_mask.all())):
        return None
    return _additive(attention_mask[:, None, None, :].bool(), dtype)


def causal_mask(
    attention_mask: torch.Tensor | None,
    query_length: int,
    key_length: int,
    dtype: torch.dtype,
    device: torch.device,
    sliding_window: int | None = None,
    past_length: int | None = None,
    cache_position: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """(B, 1, T, S) additive mask: causal, key padding, optional sliding window; None when
    `is_causal` alone is exact (no padding, no active window, T == S or a single query).
    `past_length`: slot of the first query among the keys (default S - T); a preallocated
    cache has S > past_length + T and its unwritten slots are masked. `cache_position` (T,): the
    queries' slots as a tensor instead; the mask is then always built, from tensors only, so a
    compiled decode step reads no Python number that changes from step to step."""
    if cache_position is not None:
        q_pos = cache_position[:, None]  # (T, 1)
    else:
        past_length = key_length - query_length if past_length is None else past_length
        has_padding = attention_mask is not None and not bool(attention_mask.all())
        window_active = sliding_window is not None and past_length + query_length > sliding_window
        keys_filled = past_length + query_length == key_length
        if not has_padding and not window_active and keys_filled and (query_length == key_length or query_length == 1):
            return None
        q_pos = torch.arange(past_length, past_length + query_length, device=device)[:, None]  # (T, 1)
    k_pos = torch.arange(key_length, device=device)[None, :]  # (1, S)
    allowed = k_pos <= q_pos
    if sliding_window is not None:
        allowed = allowed & (k_pos > q_pos - sliding_window)
    allowed = allowed[None, None]  # (1, 1, T, S)
    if attention_mask is not None:
        keep = attention_mask[:, :key_length].bool()
        if keep.shape[1] < key_length:  # mask shorter than a preallocated cache: slots past it are empty
            keep = torch.nn.functional.pad(keep, (0, key_length - keep.shape[1]), value=False)
        allowed = allowed & keep[:, None, None, :]
    return _additive(allowed, dtype)
