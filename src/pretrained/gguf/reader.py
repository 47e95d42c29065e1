"""A GGUF file opened with llama.cpp's own reader (the `gguf` package), behind a small interface:
metadata values by key, tensors as (name, ggml type, torch shape, raw bytes). Every failure names
the file and, where there is one, the metadata key or tensor."""

from __future__ import annotations

import os
import warnings

from ..errors import CheckpointError
from . import quants


class GGUFError(CheckpointError):
    """A GGUF file is unreadable, truncated, or uses an architecture, tokenizer or type we do not support."""


class GGUFFile:
    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        try:
            from gguf import GGUFReader
        except ImportError as e:
            raise ImportError("reading .gguf files needs the `gguf` package: pip install 'pretrained[gguf]'") from e
        if not os.path.isfile(self.path):
            raise GGUFError(f"{self.path}: no such GGUF file")
        try:
            self._reader = GGUFReader(self.path, "r")
        except Exception as e:  # the reader raises ValueError, IndexError, struct/numpy errors on bad input
            size = os.path.getsize(self.path)
            raise GGUFError(f"{self.path} ({size} bytes) is not a readable GGUF file (truncated or corrupt?): "
                            f"{type(e).__name__}: {e}") from e
        self._fields = self._reader.fields
        self._check_tensors()

    # --- metadata ---

    def has(self, key: str) -> bool:
        return key in self._fields

    def get(self, key: str, default=None):
        """A metadata value as Python data (str, int, float, bool, list); `default` when absent."""
        field = self._fields.get(key)
        if field is None:
            return default
        try:
            return field.contents()
        except Exception as e:
            raise GGUFError(f"{self.path}: metadata field {key!r} cannot be decoded: {e}") from e

    def require(self, key: str):
        if key not in self._fields:
            raise GGUFError(f"{self.path}: required metadata field {key!r} is missing")
        return self.get(key)

    def array(self, key: str):
        """A numeric metadata array as a numpy array (tokens' scores and types are 100k+ long)."""
        import numpy as np

        field = self._fields[key]
        return np.concatenate([field.parts[i] for i in field.data]) if field.data else np.zeros(0)

    @property
    def architecture(self) -> str:
        return self.require("general.architecture")

    # --- tensors ---

    def _check_tensors(self) -> None:
        size = os.path.getsize(self.path)
        for t in self._reader.tensors:
            name = t.tensor_type.name
            if name not in quants.SUPPORTED:
                raise GGUFError(f"{self.path}: tensor {t.name!r} has ggml type {name}, which is not supported "
                                f"(supported: {', '.join(quants.SUPPORTED)})")
            if t.data_offset + t.n_bytes > size or t.data.nbytes != t.n_bytes:
                raise GGUFError(f"{self.path}: tensor {t.name!r} ({t.n_bytes} bytes at offset {t.data_offset}) "
                                f"runs past the end of the file ({size} bytes); truncated?")

    def tensors(self):
        """Yield (name, ggml type name, torch-order shape, raw bytes as a uint8 torch tensor)."""
        import numpy as np
        import torch

        for t in self._reader.tensors:
            shape = tuple(int(d) for d in reversed(t.shape.tolist()))  # ggml lists the fastest dimension first
            raw = np.asarray(t.data).view(np.uint8)
            with warnings.catch_warnings():  # the map is read-only; nothing writes through this view
                warnings.simplefilter("ignore", UserWarning)
                yield t.name, t.tensor_type.name, shape, torch.from_numpy(raw)

    def tensor_names(self) -> list[str]:
        return [t.name for t in self._reader.tensors]
