"""Keys/values of the running batch, in one of two layouts the engine can use (`--kv-cache`).

- `SlotKV` (default): per layer one preallocated buffer (slots, Hkv, capacity, D). A request owns one
  slot and writes its tokens at its own positions 0, 1, 2, ...; a decode step writes each row's new
  key at that row's length and the attention masks each row past its own length. A request that
  finishes hands its slot on: the last running row moves into the hole (one row's copy), so running
  rows are always slots 0..n-1 and the step reads the buffers as views, never concatenated.
- `PaddedKV`: the running batch as one DynamicCache, left-padded so every row ends at the last
  column; a new request's keys are padded and concatenated in, a finished row is cut out (both copy
  the whole batch). Needed for sliding-window attention, whose window counts key columns back from
  the query and so assumes every row ends at the same column.

Both hand the model an object with the cache interface (`update(k, v, layer_idx)`, `get_seq_length`,
`key_length`), so the model code is the same one generate() runs.
"""

from __future__ import annotations

import torch

from ..cache import Cache, DynamicCache
from ..errors import InputError


class _SlotView(Cache):
    """The cache one forward sees: `rows` consecutive slots from `first`, each writing its T new tokens
    at `starts` (a tensor for decode rows of different lengths, an int for a one-row prefill chunk)."""

    def __init__(self, store: "SlotKV", first: int, rows: int, starts, key_length: int):
        super().__init__()
        self.store, self.first, self.rows, self.starts, self._key_length = store, first, rows, starts, key_length

    def update(self, k, v, layer_idx, cache_position=None):
        keys, values = self.store.layer(layer_idx, k, v)
        lo, hi = self.first, self.first + self.rows
        if isinstance(self.starts, int):  # a prefill chunk: (1, Hkv, T, D) at starts..starts+T
            keys[lo:hi, :, self.starts:self.starts + k.shape[2]] = k
            values[lo:hi, :, self.starts:self.starts + k.shape[2]] = v
        else:  # a decode step: (B, Hkv, 1, D), row i at its own position starts[i]
            rows = torch.arange(lo, hi, device=keys.device)
            keys[rows, :, self.starts] = k[:, :, 0]
            values[rows, :, self.starts] = v[:, :, 0]
        return keys[lo:hi, :, :self._key_length], values[lo:hi, :, :self._key_length]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self._key_length - 1 if not isinstance(self.starts, int) else self.starts

    def key_length(self, query_length: int) -> int:
        return self._key_length

    def __len__(self) -> int:
        return len(self.store.keys)


class SlotKV:
    """`slots` rows of per-layer key/value buffers; the length axis grows (doubling, up to `max_len`)
    when a row needs more, so memory follows the longest running request, not the context size."""

    def __init__(self, slots: int, max_len: int, device=None):
        self.slots, self.max_len, self.device = slots, max_len, device
        self.capacity = min(256, max_len)
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.lengths = [0] * slots  # tokens stored per slot

    def layer(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer `layer_idx`'s buffers, allocated on its first write (heads, head size and dtype come
        from the model's keys). Zeros: masked slots still meet the values, and 0 * NaN is NaN."""
        if layer_idx == len(self.keys):
            shape = (self.slots, k.shape[1], self.capacity, k.shape[3])
            self.keys.append(torch.zeros(shape, dtype=k.dtype, device=k.device))
            self.values.append(torch.zeros(shape, dtype=v.dtype, device=v.device))
        return self.keys[layer_idx], self.values[layer_idx]

    def reserve(self, length: int) -> None:
        """Room for `length` tokens in every slot (grown by doubling, existing tokens kept)."""
        if length <= self.capacity:
            return
        if length > self.max_len:
            raise InputError(f"a request needs {length} cached tokens; the context holds {self.max_len}")
        capacity = min(self.max_len, max(length, 2 * self.capacity))
        for store in (self.keys, self.values):
            for i, old in enumerate(store):
                new = old.new_zeros(*old.shape[:2], capacity, old.shape[3])
                new[:, :, :self.capacity] = old
                store[i] = new
        self.capacity = capacity

    def prefill(self, slot: int, start: int, length: int) -> _SlotView:
        """The cache for prefilling `length` prompt tokens of `slot` after the `start` already stored."""
        self.reserve(start + length)
        self.lengths[slot] = start + length
        return _SlotView(self, slot, 1, start, start + length)

    def decode(self, rows: int) -> tuple[_SlotView, torch.Tensor, torch.Tensor]:
        """The cache, attention mask (rows, S) and position ids (rows, 1) of one decode step of slots
        0..rows-1, each adding one token after its own."""
        lengths = torch.tensor(self.lengths[:rows])
        key_length = int(lengths.max()) + 1
        self.reserve(key_length)
        mask = (torch.arange(key_length)[None] <= lengths[:, None]).long()
        for i in range(rows):
            self.lengths[i] += 1
        device = self.keys[0].device if self.keys else self.device
        return (_SlotView(self, 0, rows, lengths.to(device), key_length), mask.to(device),
                lengths[:, None].to(device))

    def move(self, src: int, dst: int) -> None:
        """Slot `src`'s tokens become slot `dst`'s (a finished row's slot goes to a running one)."""
        n = self.lengths[src]
        for store in (self.keys, self.values):
            for buffer in store:
                buffer[dst, :, :n] = buffer[src, :, :n]
        self.lengths[dst], self.lengths[src] = n, 0

    def release(self, slot: int) -> None:
        self.lengths[slot] = 0


class PaddedKV:
    """The running batch as one left-padded DynamicCache (the layout sliding windows need)."""

    def __init__(self):
        self.cache: DynamicCache | None = None
        self.mask: torch.Tensor | None = None  # (B, S) 1 for real tokens, 0 for left padding

    def join(self, layers: tuple, length: int) -> None:
        """Append a prefilled row, left-padding whichever side is shorter so the columns line up."""
        if self.cache is None:
            self.cache, self.mask = DynamicCache.from_legacy_cache(layers), torch.ones(1, length, dtype=torch.long)
            return
        width = max(self.mask.shape[1], length)
        merged = [(torch.cat([_pad_left(k, width), _pad_left(nk, width)]), torch.cat([_pad_left(v, width), _pad_left(nv, width)]))
                  for (k, v), (nk, nv) in zip(self.cache.to_legacy_cache(), layers)]
        row = torch.ones(1, length, dtype=torch.long)
        self.mask = torch.cat([_pad_left(self.mask, width, dim=1), _pad_left(row, width, dim=1)])
        self.cache = DynamicCache.from_legacy_cache(merged)

    def decode(self, device) -> tuple[DynamicCache, torch.Tensor, torch.Tensor]:
        self.mask = torch.cat([self.mask, torch.ones(self.mask.shape[0], 1, dtype=torch.long)], dim=1)
        positions = self.mask.sum(-1, keepdim=True) - 1  # left padding: each row counts its own tokens
        return self.cache, self.mask.to(device), positions.to(device)

    def keep(self, rows: list[int]) -> None:
        """Keep only `rows`, and drop the padding columns none of them needs."""
        if not rows:
            self.cache, self.mask = None, None
            return
        index = torch.tensor(rows)
        mask = self.mask[index]
        first = int((mask.sum(0) > 0).nonzero()[0])
        layers = [(k[index.to(k.device), :, first:], v[index.to(v.device), :, first:]) for k, v in self.cache.to_legacy_cache()]
        self.mask = mask[:, first:]
        self.cache = DynamicCache.from_legacy_cache(layers)


def _pad_left(t: torch.Tensor, width: int, dim: int = 2) -> torch.Tensor:
    missing = width - t.shape[dim]
    if missing == 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim=dim)
