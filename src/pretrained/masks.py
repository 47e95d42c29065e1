"""Attention masks, built once per forward at model level from composable predicates.

A predicate maps query positions (T, 1) and key positions (1, S) to a boolean "may attend" grid;
`and_masks` combines them (causal ∧ sliding window ∧ key padding, or a bidirectional window for
local encoder layers). Masks are additive floats broadcastable to (B, H, T, S): 0 where a query may
attend, the dtype's minimum where it may not (a fully masked row then softmaxes to uniform instead
of NaN, as in Transformers). A builder returns None when the kernel's fast path is exact: no mask at
all for a bidirectional encoder without padding, `is_causal` for a decoder without padding or window.
"""

from __future__ import annotations

from typing import Callable

import torch
from .errors import InputError

Predicate = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (q_pos (T, 1), k_pos (1, S)) -> bool grid


def causal(q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
    return k_pos <= q_pos


def in_window(window: int) -> Predicate:
    """Keys among the last `window` positions up to the query (with `causal`: Mistral's window)."""
    return lambda q_pos, k_pos: k_pos > q_pos - window


def in_bidirectional_window(window: int) -> Predicate:
    """Keys within `window // 2` positions on either side of the query (ModernBERT's local layers)."""
    return lambda q_pos, k_pos: (q_pos - k_pos).abs() <= window // 2


def and_masks(*predicates: Predicate) -> Predicate:
    def combined(q_pos, k_pos):
        allowed = predicates[0](q_pos, k_pos)
        for predicate in predicates[1:]:
            allowed = allowed & predicate(q_pos, k_pos)
        return allowed

    return combined


def additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean "may attend" -> 0 / the dtype's minimum."""
    zero = torch.zeros((), dtype=dtype, device=allowed.device)
    return torch.where(allowed, zero, torch.finfo(dtype).min)


def _key_padding(attention_mask: torch.Tensor, key_length: int) -> torch.Tensor:
    """(B, S') 1/0 keep-mask -> (B, 1, 1, S) bool; slots past its end (a preallocated cache) are empty."""
    keep = attention_mask[:, :key_length].bool()
    if keep.shape[1] < key_length:
        keep = torch.nn.functional.pad(keep, (0, key_length - keep.shape[1]), value=False)
    return keep[:, None, None, :]


def build_mask(predicate: Predicate, q_pos: torch.Tensor, key_length: int, attention_mask: torch.Tensor | None,
               dtype: torch.dtype) -> torch.Tensor:
    """(B or 1, 1, T, S) additive mask from `predicate` over the queries' positions `q_pos` (T,)
    and keys 0..S-1, and'ed with the key padding of `attention_mask` (B, S) when given."""
    k_pos = torch.arange(key_length, device=q_pos.device)[None, :]  # (1, S)
    allowed = predicate(q_pos[:, None], k_pos)[None, None]  # (1, 1, T, S)
    if attention_mask is not None:
        allowed = allowed & _key_padding(attention_mask, key_length)
    return additive(allowed, dtype)


def padding_mask(attention_mask: torch.Tensor | None, dtype: torch.dtype, window: int | None = None
                 ) -> torch.Tensor | None:
    """Bidirectional attention: (B, 1, 1, S) additive key-padding mask, or None when nothing is masked
    (a traced graph cannot branch on the mask's values: it always gets the mask). With `window`,
    (B, 1, S, S) restricted to a bidirectional window."""
    if window is not None:
        if attention_mask is None:
            raise InputError("padding_mask(window=...) needs the attention_mask to know the sequence length")
        S = attention_mask.shape[1]
        return build_mask(in_bidirectional_window(window), torch.arange(S, device=attention_mask.device), S,
                          attention_mask, dtype)
    if attention_mask is None or (not torch.compiler.is_compiling() and bool(attention_mask.all())):
        return None
    return additive(attention_mask[:, None, None, :].bool(), dtype)


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
        q_pos = cache_position
    else:
        past_length = key_length - query_length if past_length is None else past_length
        # traced (torch.compile, ONNX export): no branch on the mask's values, it is applied as given
        has_padding = attention_mask is not None and (torch.compiler.is_compiling() or not bool(attention_mask.all()))
        window_active = sliding_window is not None and past_length + query_length > sliding_window
        keys_filled = past_length + query_length == key_length
        if not has_padding and not window_active and keys_filled and (query_length == key_length or query_length == 1):
            return None
        q_pos = torch.arange(past_length, past_length + query_length, device=device)
    predicate = causal if sliding_window is None else and_masks(causal, in_window(sliding_window))
    return build_mask(predicate, q_pos, key_length, attention_mask, dtype)

