"""Key/value caches: explicit objects passed through a decoder's forward as `past_key_values`.

Each layer calls `cache.update(k, v, layer_idx) -> (k, v)`: the new keys/values (B, Hkv, T, D) are
stored after the ones already there, and the keys/values the attention must see come back. The
model reads `get_seq_length()` (the offset: tokens already stored) once before its layers run and
`key_length(T)` (how many keys the attention will see) to build its mask.

- `DynamicCache` grows as tokens arrive. Storage is a buffer with spare room (doubling when full),
  so a decode step writes one slot instead of re-concatenating the whole history; it returns views.
- `StaticCache` preallocates `max_cache_len` slots: shapes never change, which is what lets
  `torch.compile` capture the decode step. Unwritten slots are masked out by the model.

An encoder-decoder cache is two of these (self-attention and cross-attention) side by side.
"""

from __future__ import annotations

import torch
from .errors import InputError


class Cache:
    """Interface shared by the caches; `layers[i]` is the (keys, values) pair of layer i."""

    is_static = False

    def __init__(self):
        self._keys: list[torch.Tensor] = []
        self._values: list[torch.Tensor] = []
        self._lengths: list[int] = []
        self._spares: list[tuple[torch.Tensor, torch.Tensor]] = []  # reorder_cache's second buffers

    def update(self, k: torch.Tensor, v: torch.Tensor, layer_idx: int, cache_position=None):
        raise NotImplementedError

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self._lengths[layer_idx] if layer_idx < len(self._lengths) else 0

    def key_length(self, query_length: int) -> int:
        """Keys the attention sees once `query_length` new tokens are stored."""
        return self.get_seq_length() + query_length

    def get_max_cache_shape(self) -> int | None:
        return None

    def __len__(self) -> int:
        return len(self._lengths)

    def __getitem__(self, layer_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = self._visible(layer_idx)
        return self._keys[layer_idx][:, :, :n], self._values[layer_idx][:, :, :n]

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def _visible(self, layer_idx: int) -> int:
        return self._lengths[layer_idx]

    @property
    def layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return list(self)

    def reorder_cache(self, beam_idx: torch.Tensor) -> None:
        """Beam search: row i of the batch becomes row beam_idx[i]. Only the written slots move, in one
        copy into a second buffer of the same shape that then takes the first one's place (in place,
        a reorder costs two copies, and beam search reorders every layer at every step)."""
        for i in range(len(self._keys)):
            keys, values = self._keys[i], self._values[i]
            index, n = beam_idx.to(keys.device), keys.shape[2] if self.is_static else self._lengths[i]
            spare_keys, spare_values = self._spares[i] if i < len(self._spares) else (None, None)
            if spare_keys is None or spare_keys.shape != keys.shape:
                # zeros: a static cache hands its unwritten (masked) slots to the attention, and 0 * NaN is NaN
                spare_keys, spare_values = torch.zeros_like(keys), torch.zeros_like(values)
            torch.index_select(keys[:, :, :n], 0, index, out=spare_keys[:, :, :n])
            torch.index_select(values[:, :, :n], 0, index, out=spare_values[:, :, :n])
            self._keys[i], self._values[i] = spare_keys, spare_values
            if i < len(self._spares):
                self._spares[i] = (keys, values)
            else:
                self._spares.append((keys, values))

    def batch_repeat_interleave(self, repeats: int) -> None:
        for i in range(len(self._keys)):
            self._keys[i] = self._keys[i].repeat_interleave(repeats, dim=0)
            self._values[i] = self._values[i].repeat_interleave(repeats, dim=0)

    def reset(self) -> None:
        self._lengths = [0] * len(self._lengths)


class DynamicCache(Cache):
    """Grows with the sequence; buffers keep spare room so appending one token is one small copy."""

    def __init__(self, config=None, *_, **__):  # Transformers passes config= ; nothing to preallocate
        super().__init__()

    def update(self, k, v, layer_idx, cache_position=None):
        T = k.shape[2]
        if layer_idx == len(self._keys):
            capacity = max(2 * T, 64)
            self._keys.append(k.new_empty(*k.shape[:2], capacity, k.shape[3]))
            self._values.append(v.new_empty(*v.shape[:2], capacity, v.shape[3]))
            self._lengths.append(0)
        n = self._lengths[layer_idx]
        keys, values = self._keys[layer_idx], self._values[layer_idx]
        if n + T > keys.shape[2]:  # full: double the room
            capacity = max(2 * keys.shape[2], n + T)
            keys = torch.cat([keys[:, :, :n], keys.new_empty(*keys.shape[:2], capacity - n, keys.shape[3])], dim=2)
            values = torch.cat([values[:, :, :n], values.new_empty(*values.shape[:2], capacity - n, values.shape[3])], dim=2)
            self._keys[layer_idx], self._values[layer_idx] = keys, values
        keys[:, :, n:n + T] = k
        values[:, :, n:n + T] = v
        self._lengths[layer_idx] = n + T
        return keys[:, :, :n + T], values[:, :, :n + T]

    def crop(self, max_length: int) -> None:
        """Forget everything after the first `max_length` tokens (negative: drop that many)."""
        if max_length < 0:
            max_length = self.get_seq_length() + max_length
        self._lengths = [min(n, max_length) for n in self._lengths]

    def to_legacy_cache(self) -> tuple:
        return tuple((k.contiguous(), v.contiguous()) for k, v in self)

    @classmethod
    def from_legacy_cache(cls, past: tuple | None) -> "DynamicCache":
        cache = cls()
        for layer_idx, (k, v) in enumerate(past or ()):
            cache.update(k, v, layer_idx)
        return cache


class StaticCache(Cache):
    """`max_cache_len` preallocated slots per layer, allocated on the first update (batch size,
    heads and dtype come from the first keys). `update` returns the whole buffers.

    Written at tensor `cache_position`s, it reads no Python count, so one compiled decode step
    serves every position; a traced step cannot keep the count either, so generate() records it
    (`mark_written`) after each call."""

    is_static = True

    def __init__(self, config=None, max_cache_len: int | None = None, max_batch_size: int | None = None,
                 device=None, dtype=None, **_):
        super().__init__()
        if max_cache_len is None or max_cache_len <= 0:
            raise InputError(f"StaticCache needs max_cache_len > 0, got {max_cache_len!r}")
        self.max_cache_len = max_cache_len
        self.max_batch_size = max_batch_size
        self.device, self.dtype = device, dtype

    def update(self, k, v, layer_idx, cache_position=None):
        T = k.shape[2]
        if layer_idx == len(self._keys):
            shape = (k.shape[0], k.shape[1], self.max_cache_len, k.shape[3])
            self._keys.append(torch.zeros(shape, dtype=self.dtype or k.dtype, device=self.device or k.device))
            self._values.append(torch.zeros(shape, dtype=self.dtype or v.dtype, device=self.device or v.device))
            self._lengths.append(0)
        keys, values = self._keys[layer_idx], self._values[layer_idx]
        if cache_position is None:
            n = self._lengths[layer_idx]
            if n + T > self.max_cache_len:
                raise InputError(f"StaticCache holds {self.max_cache_len} tokens; writing {T} more after {n} overflows "
                                 "it. Create it with a larger max_cache_len.")
            keys[:, :, n:n + T] = k
            values[:, :, n:n + T] = v
            self._lengths[layer_idx] = n + T
        else:
            keys.index_copy_(2, cache_position, k.to(keys.dtype))
            values.index_copy_(2, cache_position, v.to(values.dtype))
        return keys, values

    def mark_written(self, length: int) -> None:
        """Record that the first `length` slots of every layer hold tokens."""
        self._lengths = [length] * len(self._keys)

    def key_length(self, query_length: int) -> int:
        return self.max_cache_len

    def get_max_cache_shape(self) -> int:
        return self.max_cache_len

    def reset(self) -> None:
        super().reset()
        for k, v in zip(self._keys, self._values):
            k.zero_()
            v.zero_()


class EncoderDecoderCache(Cache):
    """The cache of an encoder-decoder model: `self_attention_cache` grows with the decoder's tokens,
    `cross_attention_cache` holds each layer's keys/values of the encoder output, projected once on
    the first step (`cross`) and read on every later one.

    `reorder_cache` moves only the self-attention rows: generate() repeats the encoder output over
    a prompt's beams and beam search reorders within a prompt, so cross rows stay valid."""

    def __init__(self, self_attention_cache: Cache | None = None, cross_attention_cache: Cache | None = None):
        self.self_attention_cache = DynamicCache() if self_attention_cache is None else self_attention_cache
        self.cross_attention_cache = DynamicCache() if cross_attention_cache is None else cross_attention_cache

    @property
    def is_static(self) -> bool:
        return self.self_attention_cache.is_static

    def update(self, k, v, layer_idx, cache_position=None):
        return self.self_attention_cache.update(k, v, layer_idx, cache_position)

    def mark_written(self, length: int) -> None:
        self.self_attention_cache.mark_written(length)

    def cross(self, layer_idx: int, project) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer `layer_idx`'s cross-attention (keys, values): stored ones, else `project()` stored."""
        if layer_idx < len(self.cross_attention_cache):
            return self.cross_attention_cache[layer_idx]
        k, v = project()
        return self.cross_attention_cache.update(k, v, layer_idx)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.self_attention_cache.get_seq_length(layer_idx)

    def key_length(self, query_length: int) -> int:
        return self.self_attention_cache.key_length(query_length)

    def get_max_cache_shape(self) -> int | None:
        return self.self_attention_cache.get_max_cache_shape()

    def __len__(self) -> int:
        return len(self.self_attention_cache)

    def __getitem__(self, layer_idx: int) -> tuple:
        """(self keys, self values, cross keys, cross values) of layer `layer_idx`, as Transformers' legacy tuples."""
        cross = self.cross_attention_cache[layer_idx] if layer_idx < len(self.cross_attention_cache) else (None, None)
        return (*self.self_attention_cache[layer_idx], *cross)

    def reorder_cache(self, beam_idx: torch.Tensor) -> None:
        self.self_attention_cache.reorder_cache(beam_idx)

    def batch_repeat_interleave(self, repeats: int) -> None:
        self.self_attention_cache.batch_repeat_interleave(repeats)
        self.cross_attention_cache.batch_repeat_interleave(repeats)

    def crop(self, max_length: int) -> None:
        self.self_attention_cache.crop(max_length)

    def reset(self) -> None:
        self.self_attention_cache.reset()
        self.cross_attention_cache = DynamicCache()  # a new encoder output needs new projections

    def to_legacy_cache(self) -> tuple:
        return tuple(tuple(t.contiguous() for t in self[i]) for i in range(len(self)))

    @classmethod
    def from_legacy_cache(cls, past: tuple | None) -> "EncoderDecoderCache":
        cache = cls()
        for layer_idx, (k, v, *cross) in enumerate(past or ()):
            cache.self_attention_cache.update(k, v, layer_idx)
            if cross:
                cache.cross_attention_cache.update(*cross, layer_idx)
        return cache


def forward_cache(past_key_values: Cache | None, use_cache: bool,
                  cache_position: torch.Tensor | None = None) -> tuple[Cache | None, int | None]:
    """The cache a decoder forward writes into (the one passed, or a new DynamicCache when use_cache
    asks for one) and the number of positions it already holds; None when `cache_position` tells
    where the new tokens go (a compiled step must not read a count that changes every step)."""
    cache = DynamicCache() if use_cache and past_key_values is None else past_key_values
    if cache_position is not None:
        return cache, None
    return cache, cache.get_seq_length() if cache is not None else 0


def encoder_decoder_cache(past_key_values, use_cache: bool) -> EncoderDecoderCache | None:
    """An encoder-decoder's decoder cache: the one given (a plain cache becomes its self-attention
    part, legacy tuples are converted), a new one when caching, else None."""
    if isinstance(past_key_values, EncoderDecoderCache):
        return past_key_values
    if isinstance(past_key_values, Cache):
        return EncoderDecoderCache(past_key_values)
    if isinstance(past_key_values, (tuple, list)):
        return EncoderDecoderCache.from_legacy_cache(past_key_values)
    return EncoderDecoderCache() if use_cache else None


def attention_kv(x, encoder_states, project, cache, layer_idx: int, cache_position=None):
    """Keys and values for one attention call. Self-attention (no encoder_states) projects `x` and
    appends to the cache; cross-attention projects the encoder states, once per cache."""
    if encoder_states is None:
        k, v = project(x)
        return cache.update(k, v, layer_idx, cache_position) if cache is not None else (k, v)
    return cache.cross(layer_idx, lambda: project(encoder_states)) if cache is not None else project(encoder_states)
