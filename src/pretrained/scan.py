"""`pretrained scan`: what a checkpoint folder holds, read without running anything in it.

Per file: its kind (safetensors, pickle, shard index, config, tokenizer, ...), size, and for
weights the dtypes and parameter count. Safetensors headers are validated by `weights`; pickle
files (.bin/.pt/.pth/.ckpt/.pkl) are listed with the globals their pickle imports (read from the
opcodes, not executed) and judged by torch's weights-only unpickler, as loading would.
"""

from __future__ import annotations

import os
import pickletools
import stat
import zipfile

from .errors import CheckpointError, UnsafeCheckpointError
from .hub import card_metadata
from .weights import MAX_PICKLE_BYTES, read_index, read_safetensors_header

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
_KINDS = {"config.json": "config", "generation_config.json": "config", "tokenizer.json": "tokenizer",
          "tokenizer_config.json": "tokenizer", "special_tokens_map.json": "tokenizer", "vocab.txt": "tokenizer",
          "vocab.json": "tokenizer", "merges.txt": "tokenizer", "tokenizer.model": "tokenizer",
          "spiece.model": "tokenizer", "sentencepiece.bpe.model": "tokenizer"}


def pickle_globals(path: str) -> list[str]:
    """module.name of every GLOBAL / STACK_GLOBAL in the file's pickle(s), without unpickling."""
    found: set[str] = set()

    def scan(data: bytes) -> None:
        strings: list[str] = []
        try:
            for op, arg, _ in pickletools.genops(data):
                if op.name in ("GLOBAL", "INST"):
                    found.add(str(arg).replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.add(f"{strings[-2]}.{strings[-1]}")
                elif isinstance(arg, str):
                    strings.append(arg)
        except Exception:  # a truncated or odd stream: report what was read
            pass

    # reads are capped: a zip member can claim to inflate to gigabytes (a zip bomb), and a legacy
    # .bin holds its tensor data after the pickle
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if info.filename.endswith(".pkl"):
                    with z.open(info) as f:
                        scan(f.read(MAX_PICKLE_BYTES))
    else:
        with open(path, "rb") as f:
            scan(f.read(MAX_PICKLE_BYTES))
    return sorted(found)


def _safetensors_entry(path: str) -> dict:
    header = read_safetensors_header(path)
    params, dtypes = 0, set()
    for info in header.values():
        n = 1
        for d in info["shape"]:
            n *= d
        params += n
        dtypes.add(info["dtype"])
    return {"kind": "safetensors", "tensors": len(header), "parameters": params, "dtypes": sorted(dtypes), "safe": True}


def _pickle_entry(path: str) -> dict:
    from .weights import check_zip_members, load_torch_bin

    check_zip_members(path)  # before any read inflates a member
    entry = {"kind": "pickle", "globals": pickle_globals(path)}
    try:
        state = load_torch_bin(path)
    except UnsafeCheckpointError as e:
        entry.update(safe=False, reason=str(e).split(". ")[1] if ". " in str(e) else str(e))
        return entry
    tensors = [v for v in state.values() if hasattr(v, "numel")]
    entry.update(safe=True, tensors=len(tensors), parameters=sum(int(t.numel()) for t in tensors),
                 dtypes=sorted({str(t.dtype).removeprefix("torch.") for t in tensors}))
    return entry


def scan_folder(path: str) -> dict:
    """A report {path, files: [...], formats, parameters, safe, summary} of a folder (or one file)."""
    if not os.path.exists(path):
        raise CheckpointError(f"{path} does not exist")
    if os.path.isfile(path):
        root, names = os.path.dirname(path) or ".", [os.path.basename(path)]
    else:
        root = path
        names = sorted(os.path.relpath(os.path.join(d, f), path) for d, _, files in os.walk(path) for f in files
                       if ".cache" not in os.path.relpath(d, path).split(os.sep))
    files = []
    for name in names:
        full = os.path.join(root, name)
        try:
            info = os.stat(full)
        except OSError as e:  # a dangling link
            files.append({"name": name, "kind": "unreadable", "safe": False, "error": str(e)})
            continue
        if not stat.S_ISREG(info.st_mode):  # a FIFO would block the read, a link to /dev/zero never end
            files.append({"name": name, "kind": "not a regular file", "safe": False,
                          "error": f"{name} is not a regular file (or a link to one): not read"})
            continue
        entry = {"name": name, "bytes": info.st_size}
        base = os.path.basename(name)
        try:
            if base.endswith(".safetensors"):
                entry.update(_safetensors_entry(full))
            elif base.endswith(PICKLE_SUFFIXES):
                entry.update(_pickle_entry(full))
            elif base.endswith(".index.json"):
                entry.update(kind="shard index", shards=len(set(read_index(full).values())))
            elif base.endswith(".gguf"):
                entry.update(kind="gguf")
            elif base.endswith(".onnx"):
                entry.update(kind="onnx")
            else:
                entry["kind"] = _KINDS.get(base, "other")
        except CheckpointError as e:
            entry.update(kind=entry.get("kind", "invalid"), safe=False, error=str(e))
        files.append(entry)
    weights = [f for f in files if f.get("kind") in ("safetensors", "pickle")]
    safe = all(f.get("safe", True) for f in files)
    # parameters: safetensors when present (a .bin beside them is usually the same weights)
    counted = [f for f in weights if f["kind"] == "safetensors"] or [f for f in weights if f.get("safe")]
    parameters = sum(f.get("parameters", 0) for f in counted)
    formats = sorted({f["kind"] for f in weights})
    unsafe = [f["name"] for f in files if f.get("safe") is False]
    summary = (f"{len(files)} files, weights: {', '.join(formats) or 'none'}, {parameters:,} parameters; "
               + (f"UNSAFE or invalid: {', '.join(unsafe)}" if unsafe else "nothing unsafe"))
    report = {"path": os.path.abspath(path), "files": files, "formats": formats, "parameters": parameters,
              "safe": safe, "summary": summary}
    if os.path.isdir(path) and "README.md" in names:
        try:
            report["card"] = card_metadata(path)
        except CheckpointError as e:
            report["card_error"] = str(e)
    return report
