"""A GGUF file behind a small interface: metadata values by key, tensors as (name, ggml type, torch
shape, raw bytes). We parse the header ourselves over a memory map (the `gguf` package's reader builds
a numpy view per array element: 70 s for a 262k-token vocabulary, against well under a second here)
and take the ggml type names and block sizes from the `gguf` package. Every failure names the file
and, where there is one, the metadata key or tensor."""

from __future__ import annotations

import mmap
import os
import struct
import warnings

from ..errors import CheckpointError
from . import quants


class GGUFError(CheckpointError):
    """A GGUF file is unreadable, truncated, or uses an architecture, tokenizer or type we do not support."""


# GGUF value types: id -> (struct format, numpy dtype); 8 is a string, 9 an array
_SCALARS = {0: ("<B", "u1"), 1: ("<b", "i1"), 2: ("<H", "<u2"), 3: ("<h", "<i2"), 4: ("<I", "<u4"), 5: ("<i", "<i4"),
            6: ("<f", "<f4"), 7: ("<?", "?"), 10: ("<Q", "<u8"), 11: ("<q", "<i8"), 12: ("<d", "<f8")}
_STRING, _ARRAY = 8, 9
_DEFAULT_ALIGNMENT = 32


class _Tensor:
    __slots__ = ("name", "shape", "type_name", "offset", "n_bytes")

    def __init__(self, name, shape, type_name, offset, n_bytes):
        self.name, self.shape, self.type_name, self.offset, self.n_bytes = name, shape, type_name, offset, n_bytes


class _Cursor:
    """Reads little-endian GGUF values from a buffer; running off its end raises GGUFError."""

    def __init__(self, buf, path: str):
        self.buf, self.pos, self.path = buf, 0, path

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise GGUFError(f"{self.path} ({len(self.buf)} bytes) is not a readable GGUF file: it ends inside its "
                            f"header (needed {n} bytes at offset {self.pos}); truncated?")
        view = memoryview(self.buf)[self.pos:self.pos + n]
        self.pos += n
        return view

    def scalar(self, fmt: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self, what: str) -> str:
        raw = self.take(self.scalar("<Q"))
        try:
            return str(raw, "utf-8")
        except UnicodeDecodeError as e:
            raise GGUFError(f"{self.path}: {what} is not valid UTF-8: {e}") from e

    def value(self, kind: int, key: str):
        """A metadata value: Python scalar or str; an array as ('array', element kind, list or numpy array)."""
        if kind in _SCALARS:
            return self.scalar(_SCALARS[kind][0])
        if kind == _STRING:
            return self.string(f"metadata field {key!r}")
        if kind == _ARRAY:
            import numpy as np

            inner, count = self.scalar("<I"), self.scalar("<Q")
            if inner in _SCALARS:
                dtype = np.dtype(_SCALARS[inner][1])
                return _Array(inner, np.frombuffer(self.take(count * dtype.itemsize), dtype=dtype))
            if inner == _STRING:
                return _Array(inner, [self.string(f"metadata field {key!r}[{i}]") for i in range(count)])
            if inner == _ARRAY:
                return _Array(inner, [self.value(_ARRAY, key) for _ in range(count)])
        raise GGUFError(f"{self.path}: metadata field {key!r} has unknown GGUF value type {kind}")


class _Array:
    __slots__ = ("kind", "items")

    def __init__(self, kind, items):
        self.kind, self.items = kind, items

    def python(self):
        if self.kind == _ARRAY:
            return [item.python() for item in self.items]
        return self.items if isinstance(self.items, list) else self.items.tolist()


class GGUFFile:
    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        try:
            import gguf  # noqa: F401  (type names and block sizes)
        except ImportError as e:
            raise ImportError("reading .gguf files needs the `gguf` package: pip install 'pretrained[gguf]'") from e
        if not os.path.isfile(self.path):
            raise GGUFError(f"{self.path}: no such GGUF file")
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        try:
            self._fields, self._tensors = self._parse()
        except GGUFError:
            raise
        except (struct.error, ValueError, OverflowError, MemoryError) as e:
            raise GGUFError(f"{self.path} ({size} bytes) is not a readable GGUF file (truncated or corrupt?): "
                            f"{type(e).__name__}: {e}") from e
        self._check_tensors()

    def _parse(self):
        from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

        cur = _Cursor(self._map, self.path)
        magic = bytes(cur.take(4))
        if magic != b"GGUF":
            raise GGUFError(f"{self.path} is not a GGUF file: it starts with {magic!r}, expected b'GGUF'")
        version = cur.scalar("<I")
        if version not in (2, 3):
            raise GGUFError(f"{self.path}: GGUF version {version} is not supported (supported: 2, 3; "
                            "big-endian files are not supported either)")
        n_tensors, n_fields = cur.scalar("<Q"), cur.scalar("<Q")
        fields = {}
        for _ in range(n_fields):
            key = cur.string("a metadata key")
            fields[key] = cur.value(cur.scalar("<I"), key)
        infos = []
        for _ in range(n_tensors):
            name = cur.string("a tensor name")
            dims = [cur.scalar("<Q") for _ in range(cur.scalar("<I"))]
            kind, offset = cur.scalar("<I"), cur.scalar("<Q")
            infos.append((name, dims, kind, offset))
        alignment = fields.get("general.alignment", _DEFAULT_ALIGNMENT)
        if not isinstance(alignment, int) or alignment <= 0:
            raise GGUFError(f"{self.path}: general.alignment is {alignment!r}, expected a positive integer")
        start = -(-cur.pos // alignment) * alignment
        tensors = []
        for name, dims, kind, offset in infos:
            try:
                qtype = GGMLQuantizationType(kind)
            except ValueError:
                raise GGUFError(f"{self.path}: tensor {name!r} has unknown ggml type {kind}") from None
            block, type_size = GGML_QUANT_SIZES[qtype]
            count = 1
            for d in dims:
                count *= d
            shape = tuple(int(d) for d in reversed(dims))  # ggml lists the fastest dimension first
            tensors.append(_Tensor(name, shape, qtype.name, start + offset, count // block * type_size))
        return fields, tensors

    # --- metadata ---

    def has(self, key: str) -> bool:
        return key in self._fields

    def get(self, key: str, default=None):
        """A metadata value as Python data (str, int, float, bool, list); `default` when absent."""
        value = self._fields.get(key, default)
        return value.python() if isinstance(value, _Array) else value

    def require(self, key: str):
        if key not in self._fields:
            raise GGUFError(f"{self.path}: required metadata field {key!r} is missing")
        return self.get(key)

    def array(self, key: str):
        """A numeric metadata array as a numpy array (tokens' scores and types are 100k+ long)."""
        import numpy as np

        value = self._fields[key]
        if not isinstance(value, _Array) or isinstance(value.items, list):
            raise GGUFError(f"{self.path}: metadata field {key!r} is not an array of numbers")
        return np.asarray(value.items)

    @property
    def architecture(self) -> str:
        return self.require("general.architecture")

    # --- tensors ---

    def _check_tensors(self) -> None:
        size = len(self._map)
        for t in self._tensors:
            if t.type_name not in quants.SUPPORTED:
                raise GGUFError(f"{self.path}: tensor {t.name!r} has ggml type {t.type_name}, which is not supported "
                                f"(supported: {', '.join(quants.SUPPORTED)})")
            if t.offset + t.n_bytes > size:
                raise GGUFError(f"{self.path}: tensor {t.name!r} ({t.n_bytes} bytes at offset {t.offset}) "
                                f"runs past the end of the file ({size} bytes); truncated?")

    def tensors(self):
        """Yield (name, ggml type name, torch-order shape, raw bytes as a uint8 torch tensor)."""
        import numpy as np
        import torch

        for t in self._tensors:
            raw = np.frombuffer(self._map, dtype=np.uint8, count=t.n_bytes, offset=t.offset)
            with warnings.catch_warnings():  # the map is read-only; nothing writes through this view
                warnings.simplefilter("ignore", UserWarning)
                yield t.name, t.type_name, t.shape, torch.from_numpy(raw)

    def tensor_names(self) -> list[str]:
        return [t.name for t in self._tensors]
