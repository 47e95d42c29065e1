"""Encodings and BatchEncoding: what every backend returns.

`Encoding` mirrors the attribute names of the Rust `tokenizers.Encoding`, so BatchEncoding's
helpers (word_ids, sequence_ids, char_to_token) read both the same way. The Python backends
build `Encoding`s; the fast backend hands back the Rust ones untouched.
"""

from __future__ import annotations

from collections import UserDict

from ..errors import InputError, UnsupportedOptionError


class Encoding:
    """One encoded row: ids plus the per-token side tables, and the windows cut off by truncation."""

    __slots__ = (
        "ids", "type_ids", "tokens", "offsets", "special_tokens_mask", "attention_mask",
        "word_ids", "sequence_ids", "overflowing",
    )

    def __init__(self, ids, type_ids, tokens, offsets, special_tokens_mask, word_ids, sequence_ids):
        self.ids = ids
        self.type_ids = type_ids
        self.tokens = tokens
        self.offsets = offsets
        self.special_tokens_mask = special_tokens_mask
        self.attention_mask = [1] * len(ids)
        self.word_ids = word_ids
        self.sequence_ids = sequence_ids
        self.overflowing = []

    def __len__(self):
        return len(self.ids)

    @property
    def n_sequences(self) -> int:
        return len({s for s in self.sequence_ids if s is not None}) or 1

    @property
    def words(self):
        return self.word_ids

    def char_to_token(self, char_pos: int, sequence_index: int = 0):
        for i, ((start, end), seq) in enumerate(zip(self.offsets, self.sequence_ids)):
            if seq == sequence_index and start <= char_pos < end and self.special_tokens_mask[i] == 0:
                return i
        return None

    def token_to_chars(self, token_index: int):
        if self.sequence_ids[token_index] is None:
            return None
        return self.offsets[token_index]

    def token_to_word(self, token_index: int):
        return self.word_ids[token_index]

    def word_to_tokens(self, word_index: int, sequence_index: int = 0):
        hits = [i for i, (w, s) in enumerate(zip(self.word_ids, self.sequence_ids)) if w == word_index and s == sequence_index]
        return (hits[0], hits[-1] + 1) if hits else None

    def pad(self, length: int, pad_id: int, pad_type_id: int, pad_token: str, direction: str) -> None:
        """Pad in place (and every overflow window), as the Rust Encoding.pad does."""
        for window in self.overflowing:
            window.pad(length, pad_id, pad_type_id, pad_token, direction)
        n = length - len(self.ids)
        if n <= 0:
            return
        if direction == "right":
            self.ids = self.ids + [pad_id] * n
            self.type_ids = self.type_ids + [pad_type_id] * n
            self.tokens = self.tokens + [pad_token] * n
            self.offsets = self.offsets + [(0, 0)] * n
            self.special_tokens_mask = self.special_tokens_mask + [1] * n
            self.attention_mask = self.attention_mask + [0] * n
            self.word_ids = self.word_ids + [None] * n
            self.sequence_ids = self.sequence_ids + [None] * n
        else:
            self.ids = [pad_id] * n + self.ids
            self.type_ids = [pad_type_id] * n + self.type_ids
            self.tokens = [pad_token] * n + self.tokens
            self.offsets = [(0, 0)] * n + self.offsets
            self.special_tokens_mask = [1] * n + self.special_tokens_mask
            self.attention_mask = [0] * n + self.attention_mask
            self.word_ids = [None] * n + self.word_ids
            self.sequence_ids = [None] * n + self.sequence_ids


def to_tensor(value, tensor_type: str | None):
    """A (nested) list as a torch tensor or numpy array; torch/numpy imported only here."""
    if tensor_type is None:
        return value
    try:
        if tensor_type == "pt":
            import torch

            if isinstance(value, torch.Tensor):
                return value
            return torch.tensor(value)
        if tensor_type == "np":
            import numpy as np

            return np.asarray(value)
    except ValueError as e:
        raise InputError(
            f"return_tensors={tensor_type!r}: unable to create tensor, you should probably activate truncation "
            "and/or padding with 'padding=True' 'truncation=True' to have batched tensors with the same length."
        ) from e
    if tensor_type == "mlx":
        raise UnsupportedOptionError("return_tensors='mlx' is not supported: use 'pt', 'np' or None")
    raise InputError(f"return_tensors={tensor_type!r} is not a tensor type: use 'pt', 'np' or None")


class BatchEncoding(UserDict):
    """The dict returned by a tokenizer call: key and attribute access, tensors, token/char/word maps."""

    def __init__(self, data=None, encoding=None, tensor_type=None, prepend_batch_axis=False, n_sequences=None):
        super().__init__(data or {})
        if encoding is not None and not isinstance(encoding, (list, tuple)):
            encoding = [encoding]
        self._encodings = encoding
        if n_sequences is None and encoding:
            n_sequences = encoding[0].n_sequences
        self._n_sequences = n_sequences
        self.convert_to_tensors(tensor_type, prepend_batch_axis)

    def __getitem__(self, item):
        if isinstance(item, str):
            return self.data[item]
        if self._encodings is not None:
            return self._encodings[item]
        if isinstance(item, slice):
            return {key: self.data[key][item] for key in self.data}
        raise KeyError("Indexing with integers is only available on a fast tokenizer's output")

    def __getattr__(self, item):
        if item.startswith("_") or item == "data":
            raise AttributeError(item)
        try:
            return self.data[item]
        except KeyError:
            raise AttributeError(item) from None

    def __getstate__(self):
        return {"data": self.data, "encodings": self._encodings}

    def __setstate__(self, state):
        self.data = state["data"]
        self._encodings = state["encodings"]
        self._n_sequences = None

    @property
    def encodings(self):
        return self._encodings

    @property
    def is_fast(self) -> bool:
        return self._encodings is not None

    @property
    def n_sequences(self):
        return self._n_sequences

    def _encoding(self, batch_index: int):
        if self._encodings is None:
            raise InputError("This BatchEncoding has no token alignment data (it was built by pad() or from a "
                             "dict); tokens(), word_ids() and the char/token maps need a tokenizer call's output")
        return self._encodings[batch_index]

    def tokens(self, batch_index: int = 0):
        return self._encoding(batch_index).tokens

    def word_ids(self, batch_index: int = 0):
        return self._encoding(batch_index).word_ids

    def words(self, batch_index: int = 0):
        return self.word_ids(batch_index)

    def sequence_ids(self, batch_index: int = 0):
        return self._encoding(batch_index).sequence_ids

    def char_to_token(self, batch_or_char_index: int, char_index: int | None = None, sequence_index: int = 0):
        if char_index is None:
            batch_index, char_index = 0, batch_or_char_index
        else:
            batch_index = batch_or_char_index
        return self._encoding(batch_index).char_to_token(char_index, sequence_index)

    def token_to_chars(self, batch_or_token_index: int, token_index: int | None = None):
        if token_index is None:
            batch_index, token_index = 0, batch_or_token_index
        else:
            batch_index = batch_or_token_index
        return self._encoding(batch_index).token_to_chars(token_index)

    def token_to_word(self, batch_or_token_index: int, token_index: int | None = None):
        if token_index is None:
            batch_index, token_index = 0, batch_or_token_index
        else:
            batch_index = batch_or_token_index
        return self._encoding(batch_index).word_ids[token_index]

    def word_to_tokens(self, batch_or_word_index: int, word_index: int | None = None, sequence_index: int = 0):
        if word_index is None:
            batch_index, word_index = 0, batch_or_word_index
        else:
            batch_index = batch_or_word_index
        return self._encoding(batch_index).word_to_tokens(word_index, sequence_index)

    def convert_to_tensors(self, tensor_type=None, prepend_batch_axis: bool = False):
        if tensor_type is None:
            return self
        for key, value in self.data.items():
            if key == "overflowing_tokens":
                continue
            if prepend_batch_axis:
                value = [value]
            self.data[key] = to_tensor(value, tensor_type)
        return self

    def to(self, device, non_blocking: bool = False) -> "BatchEncoding":
        """Move every tensor to `device` (str, int or torch.device); lists are left as they are."""
        import torch

        if not isinstance(device, (str, int, torch.device)):
            raise InputError(f"BatchEncoding.to(device) takes a str, int or torch.device, not {type(device).__name__}")
        self.data = {
            k: v.to(device=device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v
            for k, v in self.data.items()
        }
        return self
