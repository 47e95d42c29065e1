"""Atomic file writes: write next to the target, fsync, then rename over it, so a killed
process leaves either the old file or the new one, never a torn one. And the one reader of JSON-object
files (configs, vocabularies), whose errors name the file."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile

from .errors import CheckpointError


def read_json_object(path: str | os.PathLike, what: str = "", error: type[Exception] = CheckpointError) -> dict:
    """The object a JSON file holds; `what` names the file's role in errors ("config file")."""
    where = f"{what} {os.fspath(path)!r}" if what else repr(os.fspath(path))
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError as e:
        raise error(f"{where} does not exist") from e
    except OSError as e:
        raise error(f"cannot read {where}: {e}") from e
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:  # RecursionError: absurd nesting
        raise error(f"{where} is not valid JSON: {str(e) or type(e).__name__}") from e
    if not isinstance(data, dict):
        raise error(f"{where} must hold a JSON object, found {type(data).__name__}")
    return data


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path in the target's folder; on success it replaces `path` in one rename."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
