"""GGUF files as checkpoints: locate the file, and read its config, tokenizer and weights through a
cache of the converted results.

The first use of a file converts what is asked for and stores it under
`<hub cache>/../pretrained-gguf/<sha256 of the file>/`: config.json,
`tokenizer-v2/` (tokenizer.json, tokenizer_config.json), and `int8-codes/model.safetensors`: the weights at the file's precision
(see WEIGHTS_FORMAT), expanded to the dtype asked for while the model loads. Later uses read those
without parsing the GGUF file at all. Every write is atomic, so a killed conversion leaves no
half-written cache entry.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil

from ..errors import CheckpointError
from ..files import atomic_write_text
from ..hub import HubOptions, resolve_file

GGUF_CACHE_DIRNAME = "pretrained-gguf"
# The weights cache keeps the file's precision: float tensors in their own dtype, quantized ones as
# int8 codes plus float32 per-group scale and offset (quants.codes), 1.25-1.5 bytes a weight instead
# of float32's 4, which expand to exactly the float32 values of ggml's reference. float16 (bfloat16 is
# coarser still) would round most of them: on SmolLM2's Q4_1 file 32% of Q4_1 and 79% of Q8_0
# weights, by up to 4.9e-4 relative, moving logits by up to 0.03. The folder name is the cache key,
# so entries of earlier formats (per-dtype folders) are never read as this one.
WEIGHTS_FORMAT = "int8-codes"
# The tokenizer cache's folder: a new name whenever the tokenizer builder gives different ids, so an
# entry written by an older version is never served (v2: llama.cpp's WordPiece normaliser, default regexes).
TOKENIZER_FORMAT = "tokenizer-v2"


def is_gguf_path(name) -> bool:
    name = os.fspath(name)
    return name.endswith(".gguf") and os.path.isfile(name)


def resolve_gguf(name_or_path, gguf_file: str | None, options: HubOptions | None = None) -> str:
    """Local path of the GGUF file: `gguf_file` inside a folder or hub repo, or a direct .gguf path."""
    name = os.fspath(name_or_path)
    if gguf_file is None:
        if is_gguf_path(name):
            return name
        raise CheckpointError(f"{name!r} is not a .gguf file; pass gguf_file= to pick one inside a folder or repo")
    if os.path.isabs(gguf_file) and os.path.isfile(gguf_file):
        return gguf_file
    return resolve_file(name, gguf_file, options)


def hub_cache_dir(options: HubOptions | None = None) -> str:
    """The hub cache folder, resolved from the environment at call time as huggingface_hub does."""
    if options is not None and options.cache_dir:
        return os.fspath(options.cache_dir)
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface")
    return os.path.join(home, "hub")


def cache_root(options: HubOptions | None = None) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(hub_cache_dir(options))), GGUF_CACHE_DIRNAME)


def file_digest(path: str, root: str) -> str:
    """sha256 of the file, remembered per (path, inode, size, mtime, ctime) so a warm start does not
    re-hash it. ctime cannot be set back by hand: a file replaced by another of the same size and
    mtime (copied with its times, or `touch -r`) is hashed again, never served the old weights."""
    real = os.path.realpath(path)
    stat = os.stat(real)
    stamp = {"path": real, "device": stat.st_dev, "inode": stat.st_ino, "size": stat.st_size,
             "mtime_ns": stat.st_mtime_ns, "ctime_ns": stat.st_ctime_ns}
    memo = os.path.join(root, "digests", hashlib.sha1(real.encode()).hexdigest() + ".json")
    with contextlib.suppress(OSError, ValueError, KeyError):
        with open(memo, encoding="utf-8") as f:
            known = json.load(f)
        if all(known.get(k) == v for k, v in stamp.items()):
            return known["sha256"]
    digest = hashlib.sha256()
    with open(real, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    stamp["sha256"] = digest.hexdigest()
    with contextlib.suppress(OSError):
        atomic_write_text(memo, json.dumps(stamp))
    return stamp["sha256"]


class GGUFCheckpoint:
    """One GGUF file and its cache entry."""

    def __init__(self, path: str, options: HubOptions | None = None):
        self.path = path
        root = cache_root(options)
        self.folder = os.path.join(root, file_digest(path, root))

    @functools.cached_property
    def gguf(self):
        return _open(self.path)

    def config_dict(self) -> dict:
        cached = os.path.join(self.folder, "config.json")
        data = _read_json(cached)
        if data is None:
            from .mapping import config_dict

            data = config_dict(self.gguf)
            self._store_text("config.json", json.dumps(data, indent=2, sort_keys=True) + "\n")
        return data

    def tokenizer(self):
        """(tokenizers.Tokenizer, tokenizer_config kwargs)."""
        from tokenizers import Tokenizer

        kwargs = _read_json(os.path.join(self.folder, TOKENIZER_FORMAT, "tokenizer_config.json"))
        tokenizer_path = os.path.join(self.folder, TOKENIZER_FORMAT, "tokenizer.json")
        if kwargs is not None and os.path.isfile(tokenizer_path):
            with contextlib.suppress(Exception):  # an unreadable cache entry is rebuilt below
                return Tokenizer.from_file(tokenizer_path), kwargs
        from .tokenizer import build_tokenizer

        tok, kwargs = build_tokenizer(self.gguf)
        self._store_text(os.path.join(TOKENIZER_FORMAT, "tokenizer.json"), tok.to_str())
        self._store_text(os.path.join(TOKENIZER_FORMAT, "tokenizer_config.json"),
                         json.dumps(kwargs, indent=2, sort_keys=True) + "\n")
        return tok, kwargs

    def shards(self, dtype=None) -> list:
        """The weights as one checkpoint shard whose quantized tensors expand to `dtype` (float32 if
        None): the cached safetensors if present, else converted now (and cached)."""
        from ..weights import SAFE_WEIGHTS_NAME, SafetensorsShard, TensorDict, save_state_dict

        folder = os.path.join(self.folder, WEIGHTS_FORMAT)
        weights = os.path.join(folder, SAFE_WEIGHTS_NAME)
        if os.path.isfile(weights):
            try:
                cached = SafetensorsShard(weights)
                return [CachedWeights(cached, json.loads(cached.metadata["transpose_on_load"]), dtype)]
            except (CheckpointError, KeyError, ValueError):
                pass  # a damaged cache entry: convert again
        from .mapping import cache_tensors

        with _single_thread():
            tensors, transpose_on_load = cache_tensors(self.gguf, self.config_dict())
        try:
            save_state_dict(tensors, folder, max_shard_size="1000GB",
                            metadata={"source": "gguf", "gguf_file": os.path.basename(self.path),
                                      "transpose_on_load": json.dumps(transpose_on_load)})
        except OSError:
            pass  # a read-only cache still loads, it only converts again next time
        else:
            for entry in os.scandir(self.folder):  # earlier formats' weights (float32 ones are 4 bytes a weight)
                if entry.is_dir() and entry.name not in (WEIGHTS_FORMAT, TOKENIZER_FORMAT):
                    shutil.rmtree(entry.path, ignore_errors=True)
        return [CachedWeights(TensorDict(tensors), transpose_on_load, dtype)]

    def _store_text(self, filename: str, text: str) -> None:
        with contextlib.suppress(OSError):  # a read-only cache only costs a conversion next time
            atomic_write_text(os.path.join(self.folder, filename), text)


class CachedWeights:
    """The cached weights behind the checkpoint-shard interface: float tensors as stored, quantized
    ones expanded from their codes into new `dtype` memory on every read (never a view of the file)."""

    def __init__(self, source, transpose_on_load, dtype=None):
        import torch

        self.source = source  # a SafetensorsShard of the cache file, or the tensors just converted
        names = set(source.keys())
        self.names = [k for k in source.keys() if ":" not in k]
        self.quantized = {k for k in self.names if f"{k}:scale" in names}
        self.offsets = {k for k in self.quantized if f"{k}:offset" in names}
        self.transposed = set(transpose_on_load)
        self.expand_dtype = dtype or torch.float32

    def keys(self) -> list[str]:
        return self.names

    def shape(self, name: str) -> tuple[int, ...]:
        shape = self.source.shape(name)
        return tuple(reversed(shape)) if name in self.transposed else shape

    def dtype(self, name: str):
        return self.expand_dtype if name in self.quantized else self.source.dtype(name)

    def get(self, name: str):
        if name not in self.quantized:
            return self.source.get(name)
        from .quants import expand

        offset = self.source.get(f"{name}:offset") if name in self.offsets else None
        values = expand(self.source.get(name), self.source.get(f"{name}:scale"), offset)
        if name in self.transposed:
            values = values.t().contiguous()
        return values.to(self.expand_dtype)

    def take(self, name: str):
        if name not in self.quantized:
            return self.source.take(name)
        values = self.get(name)
        self.release(name)
        return values

    def release(self, name: str) -> None:
        self.source.release(name)
        if name in self.quantized:
            self.source.release(f"{name}:scale")
            if name in self.offsets:
                self.source.release(f"{name}:offset")


@functools.lru_cache(maxsize=1)
def _open_cached(path: str, size: int, mtime_ns: int):
    from .reader import GGUFFile

    return GGUFFile(path)


def _open(path: str):
    """The parsed file, kept for the next call in this process (config, tokenizer and model load one
    after the other; parsing a large vocabulary's metadata takes seconds)."""
    stat = os.stat(path)
    return _open_cached(path, stat.st_size, stat.st_mtime_ns)


def _read_json(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@contextlib.contextmanager
def _single_thread():
    """Dequantization is many small memory-bound ops: on a busy machine intra-op threads wait on each
    other far longer than they save (measured 4.2 s vs 0.6 s for SmolLM2 on 2 shared cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def load_config_dict(name_or_path, gguf_file=None, options: HubOptions | None = None) -> dict:
    path = resolve_gguf(name_or_path, gguf_file, options)
    data = GGUFCheckpoint(path, options).config_dict()
    data.setdefault("_name_or_path", os.fspath(name_or_path))
    return data
