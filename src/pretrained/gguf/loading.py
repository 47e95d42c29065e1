"""GGUF files as checkpoints: locate the file, and read its config, tokenizer and weights through a
cache of the converted results.

The first use of a file converts what is asked for and stores it under
`<hub cache>/../pretrained-gguf/<sha256 of the file>/`: config.json, tokenizer.json and
tokenizer_config.json, and per dtype `<dtype>/model.safetensors` (the dequantized weights).
Later uses read those (the weights memory-mapped) without parsing the GGUF file at all. Every
write is atomic, so a killed conversion leaves no half-written cache entry.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os

from ..errors import CheckpointError
from ..files import atomic_write_text
from ..hub import HubOptions, resolve_file

GGUF_CACHE_DIRNAME = "pretrained-gguf"


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
    """sha256 of the file, remembered per (path, size, mtime) so a warm start does not re-hash it."""
    real = os.path.realpath(path)
    stat = os.stat(real)
    stamp = {"path": real, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
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

        kwargs = _read_json(os.path.join(self.folder, "tokenizer_config.json"))
        tokenizer_path = os.path.join(self.folder, "tokenizer.json")
        if kwargs is not None and os.path.isfile(tokenizer_path):
            with contextlib.suppress(Exception):  # an unreadable cache entry is rebuilt below
                return Tokenizer.from_file(tokenizer_path), kwargs
        from .tokenizer import build_tokenizer

        tok, kwargs = build_tokenizer(self.gguf)
        self._store_text("tokenizer.json", tok.to_str())
        self._store_text("tokenizer_config.json", json.dumps(kwargs, indent=2, sort_keys=True) + "\n")
        return tok, kwargs

    def shards(self, dtype) -> list:
        """Weight shards for `dtype`: the cached safetensors if present, else dequantized now (and cached)."""
        from ..weights import SAFE_WEIGHTS_NAME, SafetensorsShard, TensorDict, save_state_dict

        name = str(dtype).removeprefix("torch.")
        weights = os.path.join(self.folder, name, SAFE_WEIGHTS_NAME)
        if os.path.isfile(weights):
            try:
                return [SafetensorsShard(weights)]
            except CheckpointError:
                pass  # a damaged cache entry: convert again
        from .mapping import state_dict

        with _single_thread():
            tensors = state_dict(self.gguf, self.config_dict(), dtype)
        try:
            save_state_dict(tensors, os.path.dirname(weights), max_shard_size="1000GB",
                            metadata={"source": "gguf", "gguf_file": os.path.basename(self.path)})
        except OSError:
            pass  # a read-only cache still loads, it only converts again next time
        return [TensorDict(tensors)]

    def _store_text(self, filename: str, text: str) -> None:
        with contextlib.suppress(OSError):  # a read-only cache only costs a conversion next time
            atomic_write_text(os.path.join(self.folder, filename), text)


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
