"""Reading and writing weight files: safetensors (single or sharded with an index), and
`pytorch_model.bin` only through torch's weights-only unpickler.

Safetensors headers are validated here before the library maps the file, so a malformed or
hostile file is refused with a message naming it. A shard then hands out tensors two ways: `get`,
a view of its memory map (no copy), and `take`, a copy in memory of the caller's own. Model
loading takes (modeling.py): the parameters own their memory and the mapped pages are dropped as
they are copied, so the weights sit in memory about once and the file is only read.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import pickle
import re
import shutil
from typing import Iterable

from .errors import CheckpointError, InputError, UnsafeCheckpointError
from .files import fsync_dir, new_temp_dir, seal

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
WEIGHTS_NAME = "pytorch_model.bin"
WEIGHTS_INDEX_NAME = "pytorch_model.bin.index.json"

MAX_HEADER_BYTES = 100 * 1024 * 1024
DTYPE_SIZES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}


# --- safetensors ---

def read_safetensors_header(path: str) -> dict:
    """Validate a .safetensors file's framing and header; return {name: {dtype, shape, data_offsets}}."""
    return safetensors_layout(path)[0]


def safetensors_layout(path: str) -> tuple[dict, int, dict]:
    """(validated header, byte offset where tensor data starts, the header's string metadata)."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            prefix = f.read(8)
            if size < 8 or len(prefix) < 8:
                raise CheckpointError(f"{path}: {size} bytes is too short for a safetensors file (needs >= 8)")
            n = int.from_bytes(prefix, "little")
            if n > MAX_HEADER_BYTES:
                raise CheckpointError(f"{path}: safetensors header length {n} exceeds the 100 MB limit")
            if 8 + n > size:
                raise CheckpointError(f"{path}: header length {n} runs past the end of the file ({size} bytes); truncated?")
            raw = f.read(n)
    except OSError as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"cannot read weights file {path}: {e}") from e

    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        if len(keys) != len(set(keys)):
            dup = next(k for k in keys if keys.count(k) > 1)
            raise CheckpointError(f"{path}: safetensors header has the key {dup!r} twice")
        return dict(pairs)

    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=no_duplicates)
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{path}: safetensors header is not UTF-8") from e
    except (json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"{path}: safetensors header is not valid JSON ({str(e) or type(e).__name__})") from e
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: safetensors header must be a JSON object")

    metadata = header.pop("__metadata__", None)
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())
    ):
        raise CheckpointError(f"{path}: __metadata__ must map strings to strings")

    spans = []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) - {"dtype", "shape", "data_offsets"}:
            raise CheckpointError(f"{path}: entry {name!r} must have exactly dtype, shape, data_offsets")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
            raise CheckpointError(f"{path}: tensor {name!r} has unknown dtype {dtype!r}; expected one of {sorted(DTYPE_SIZES)}")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise CheckpointError(f"{path}: tensor {name!r} has invalid shape {shape!r}")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)
                or offsets[0] > offsets[1]):
            raise CheckpointError(f"{path}: tensor {name!r} has invalid data_offsets {offsets!r}")
        expected = math.prod(shape) * DTYPE_SIZES[dtype]
        if offsets[1] - offsets[0] != expected:
            raise CheckpointError(
                f"{path}: tensor {name!r} spans {offsets[1] - offsets[0]} bytes but shape {shape} x {dtype} "
                f"needs {expected}"
            )
        spans.append((offsets[0], offsets[1], name))

    data_size = size - 8 - n
    position = 0
    for start, end, name in sorted(spans):
        if start != position:
            kind = "overlaps the previous tensor" if start < position else "leaves a hole before it"
            raise CheckpointError(f"{path}: tensor {name!r} at byte {start} {kind} (expected {position})")
        position = end
    if position != data_size:
        if position > data_size:
            raise CheckpointError(f"{path}: tensors need {position} data bytes but the file holds {data_size}; truncated?")
        raise CheckpointError(f"{path}: {data_size - position} trailing bytes after the last tensor")
    return header, 8 + n, metadata or {}


_TORCH_DTYPES = {"BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16", "U16": "uint16", "F16": "float16",
                 "BF16": "bfloat16", "I32": "int32", "U32": "uint32", "F32": "float32", "I64": "int64",
                 "U64": "uint64", "F64": "float64", "F8_E5M2": "float8_e5m2", "F8_E4M3": "float8_e4m3fn",
                 "F8_E8M0": "float8_e8m0fnu"}
_MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)  # Linux >= 5.14


class SafetensorsShard:
    """An open, validated .safetensors file behind one private memory map.

    `get` returns a view of the map (a copy only when the tensor's offset is misaligned for its
    dtype), pre-faulted in one madvise call (touching pages one fault at a time costs more than
    reading the file, ~0.2 s per 100 MB); it suits a tensor about to be converted anyway. `take`
    returns a copy in the caller's own memory, made in chunks whose mapped pages are dropped as soon
    as they are copied, so loading holds the weights about once. The map is copy-on-write: writing
    through a view changes this process's pages, never the file.
    """

    CHUNK = 16 * 1024 * 1024

    def __init__(self, path: str):
        self.path = path
        self.header, self.data_start, self.metadata = safetensors_layout(path)
        with open(path, "rb") as f:
            self._map = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)

    def keys(self) -> list[str]:
        return list(self.header)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.header[name]["shape"])

    def dtype(self, name: str):
        import torch

        return getattr(torch, _TORCH_DTYPES[self.header[name]["dtype"]])

    def _span(self, name: str) -> tuple[int, int]:
        start, end = self.header[name]["data_offsets"]
        return self.data_start + start, self.data_start + end

    def _advise(self, advice: int, lo: int, hi: int, whole_pages_only: bool = False) -> None:
        page = mmap.PAGESIZE
        if whole_pages_only:  # never drop a page a neighbouring tensor still uses
            lo, hi = -(-lo // page) * page, hi // page * page
        else:
            lo, hi = lo // page * page, hi
        if hi <= lo:
            return
        try:
            self._map.madvise(advice, lo, hi - lo)
        except (OSError, ValueError):  # kernels without MADV_POPULATE_READ: pages fault in on use
            pass

    def get(self, name: str):
        import torch

        lo, hi = self._span(name)
        dtype = self.dtype(name)
        if hi == lo:
            return torch.empty(self.shape(name), dtype=dtype)
        self._advise(_MADV_POPULATE_READ, lo, hi)
        raw = torch.frombuffer(self._map, dtype=torch.uint8, count=hi - lo, offset=lo)
        if lo % DTYPE_SIZES[self.header[name]["dtype"]]:
            raw = raw.clone()  # misaligned for its dtype: copy into aligned memory
        return raw.view(dtype).view(self.shape(name))

    def take(self, name: str):
        """`name` copied into freshly allocated memory, chunk by chunk, releasing the mapped pages."""
        import torch

        lo, hi = self._span(name)
        out = torch.empty(self.shape(name), dtype=self.dtype(name))
        dst = out.view(-1).view(torch.uint8) if out.numel() else out
        for a in range(lo, hi, self.CHUNK):
            b = min(a + self.CHUNK, hi)
            self._advise(_MADV_POPULATE_READ, a, b)
            dst[a - lo:b - lo].copy_(torch.frombuffer(self._map, dtype=torch.uint8, count=b - a, offset=a))
            self._advise(mmap.MADV_DONTNEED, a, b, whole_pages_only=True)
        return out

    def release(self, name: str) -> None:
        """Drop the resident pages of `name` once its data was copied into the model's own memory.
        Only whole pages inside the tensor go; a later read faults them back in from the file."""
        self._advise(mmap.MADV_DONTNEED, *self._span(name), whole_pages_only=True)


class TensorDict:
    """An in-memory state dict behind the same interface as the file shards: `get` returns the
    caller's tensor itself, `take` a clone (the caller keeps its tensors)."""

    def __init__(self, tensors: dict):
        self.tensors = tensors

    def keys(self) -> list[str]:
        return list(self.tensors)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.tensors[name].shape)

    def get(self, name: str):
        return self.tensors[name]

    def dtype(self, name: str):
        return self.tensors[name].dtype

    def take(self, name: str):
        return self.tensors[name].clone()

    def release(self, name: str) -> None:
        """Nothing to free: the tensors belong to the caller."""


class BinShard(TensorDict):
    """A pytorch_model.bin read with torch's weights-only unpickler (no code can run). A zip-format
    file is memory-mapped by torch, so `get` is a view of that map and `take` a copy."""

    def __init__(self, path: str):
        self.path = path
        super().__init__(load_torch_bin(path))


MAX_PICKLE_BYTES = 1 << 30  # a data.pkl holds tensor metadata only: megabytes even for large models
MAX_INFLATION = 100  # torch writes zip members stored; a deflated member many times its packed size is a bomb


def check_zip_members(path: str) -> None:
    """Refuse a zip-format checkpoint whose members would inflate without bound: torch extracts a
    compressed member whole into memory, so a small file could claim gigabytes."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as z:
            members = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable zip archive: {e}") from e
    for m in members:
        pickled = m.filename.endswith(".pkl")
        if pickled and m.file_size > MAX_PICKLE_BYTES:
            raise CheckpointError(f"{path}: {m.filename} would inflate to {m.file_size:,} bytes, over the "
                                  f"{MAX_PICKLE_BYTES:,} a pickle of tensor metadata can need")
        if m.compress_type != 0 and m.file_size > MAX_INFLATION * max(m.compress_size, 1) + (1 << 20):
            raise CheckpointError(f"{path}: {m.filename} inflates from {m.compress_size:,} to {m.file_size:,} "
                                  "bytes (a zip bomb); refused")


def load_torch_bin(path: str) -> dict:
    import torch

    check_zip_members(path)
    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):  # legacy (non-zip) format cannot be mapped; read it instead
                raise
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpointError(
            f"{path} was refused: loading it would run code, not just read tensors. "
            f"torch's weights-only unpickler reported: {str(e).splitlines()[0] if str(e) else e}. "
            "Convert the checkpoint to safetensors from a trusted environment."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {e}") from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, expected a dict of tensors")
    return state


# --- shard indexes ---

def confine(path: str, folder: str) -> str:
    """`path`, a weight file of the checkpoint in `folder`; refused when a symlink leads it outside
    the folder (and, for a hub snapshot, outside its repo's cache, where snapshots link to blobs)."""
    real = os.path.realpath(path)
    roots = [os.path.realpath(folder)]
    parts = os.path.abspath(folder).split(os.sep)
    if "snapshots" in parts[1:]:
        at = len(parts) - 1 - parts[::-1].index("snapshots")
        if re.match(r"(models|datasets|spaces)--", parts[at - 1]):
            roots.append(os.path.realpath(os.sep.join(parts[:at])))
    if not any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in roots):
        raise UnsafeCheckpointError(
            f"weight file {path} is a link to {real}, outside the checkpoint folder {folder}: "
            "refused (copy the file into the folder, or load the folder it belongs to)")
    return path


def read_index(index_path: str) -> dict[str, str]:
    """weight name -> shard path, from a *.index.json; shard names may not leave the folder."""
    try:
        with open(index_path, encoding="utf-8") as f:
            index = json.load(f)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise CheckpointError(f"shard index {index_path} is unreadable: {str(e) or type(e).__name__}") from e
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict):
        raise CheckpointError(f"shard index {index_path} has no 'weight_map' object")
    folder = os.path.dirname(index_path)
    out = {}
    for name, shard in weight_map.items():
        if not isinstance(shard, str) or not shard or os.path.isabs(shard) or ".." in re.split(r"[\\/]", shard):
            raise CheckpointError(f"shard index {index_path}: shard name {shard!r} for {name!r} escapes the folder")
        out[name] = os.path.join(folder, shard)
    return out


# --- writing ---

def parse_size(size: int | str) -> int:
    """'5GB' -> 5_000_000_000, '500MiB' -> 524_288_000; ints pass through."""
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?I?B)?\s*", size.upper())
    if not match:
        raise InputError(f"max_shard_size={size!r} is not a size like '5GB', '500MB' or a number of bytes")
    number, unit = float(match.group(1)), (match.group(2) or "B")
    scale = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
             "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}[unit]
    return int(number * scale)


def shard_state_dict(state_dict: dict, max_shard_size: int) -> list[dict]:
    """Split into consecutive groups whose byte size stays under the limit (a bigger tensor goes alone)."""
    shards: list[dict] = [{}]
    current = 0
    for name, tensor in state_dict.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and current + nbytes > max_shard_size:
            shards.append({})
            current = 0
        shards[-1][name] = tensor
        current += nbytes
    return shards


def save_state_dict(
    state_dict: dict,
    folder: str,
    max_shard_size: int | str = "5GB",
    metadata: dict | None = None,
    safe_serialization: bool = True,
) -> list[str]:
    """Write weights into `folder`, sharded with an index if needed; returns the file names written.

    A save over an earlier one switches from the old weights to the new in one atomic step, so a
    save killed at any moment leaves a folder that loads entirely old or entirely new weights:
    files are written into a temporary folder beside the target and moved in by rename; new shards
    never take the name of a file in place (the old index still names only old shards), the index
    (or the single file) is renamed in last, and only then are the old weight files removed.
    """
    import torch

    state_dict = {k: v.detach().contiguous() for k, v in state_dict.items()}
    shards = shard_state_dict(state_dict, parse_size(max_shard_size))
    base, ext = (SAFE_WEIGHTS_NAME if safe_serialization else WEIGHTS_NAME).rsplit(".", 1)
    index_name = SAFE_WEIGHTS_INDEX_NAME if safe_serialization else WEIGHTS_INDEX_NAME
    os.makedirs(folder, exist_ok=True)
    names = [f"{base}.{ext}"] if len(shards) == 1 else _fresh_shard_names(folder, base, ext, len(shards))
    staging = new_temp_dir(folder, ".saving-")
    try:
        for name, shard in zip(names, shards):
            tmp = os.path.join(staging, name)
            if safe_serialization:
                from safetensors.torch import save_file

                save_file(shard, tmp, metadata={"format": "pt", **(metadata or {})})
            else:
                torch.save(shard, tmp)
            seal(tmp)
        written = list(names)
        if len(shards) > 1:
            index = {
                "metadata": {"total_size": sum(t.numel() * t.element_size() for t in state_dict.values())},
                "weight_map": {k: name for name, shard in zip(names, shards) for k in shard},
            }
            with open(os.path.join(staging, index_name), "w", encoding="utf-8") as f:
                json.dump(index, f, indent=2, sort_keys=True)
                f.write("\n")
            seal(os.path.join(staging, index_name))
            written.append(index_name)
        for name in written:  # the last rename (index, or the single file) is the switch
            os.replace(os.path.join(staging, name), os.path.join(folder, name))
        fsync_dir(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _remove_stale_weights(folder, base, ext, keep=set(written))
    return written


def _fresh_shard_names(folder: str, base: str, ext: str, count: int) -> list[str]:
    """Transformers' shard names, or with a random tag when one is taken: an old shard is never overwritten."""
    plain = [f"{base}-{i + 1:05d}-of-{count:05d}.{ext}" for i in range(count)]
    while any(os.path.lexists(os.path.join(folder, name)) for name in plain):
        tag = os.urandom(4).hex()
        plain = [f"{base}-{i + 1:05d}-of-{count:05d}-{tag}.{ext}" for i in range(count)]
    return plain


def _remove_stale_weights(folder: str, base: str, ext: str, keep: Iterable[str]) -> None:
    """Drop the weight files of an earlier save in the same format that this save did not write.

    A single file is removed first: the loader prefers it to an index, so until it goes an
    interrupted switch from single file to shards still loads the old weights whole."""
    pattern = re.compile(rf"^{re.escape(base)}(-\d{{5}}-of-\d{{5}}(-[0-9a-f]{{8}})?)?\.{ext}(\.index\.json)?$")
    stale = [name for name in os.listdir(folder) if pattern.match(name) and name not in keep]
    single, index = f"{base}.{ext}", f"{base}.{ext}.index.json"
    for name in sorted(stale, key=lambda n: (n != single, n != index)):
        os.remove(os.path.join(folder, name))
