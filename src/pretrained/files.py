"""Atomic file writes: write next to the target, fsync, then rename over it, so a killed
process leaves either the old file or the new one, never a torn one. And the one reader of JSON-object
files (configs, vocabularies), whose errors name the file.

Temporary files and folders are created with the modes a plain open() / mkdir() gives under the user's
umask (not mkstemp's 0600 / mkdtemp's 0700): they are renamed into place and become the saved model."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
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


def new_temp_file(folder: str, prefix: str, suffix: str = "") -> str:
    """Create an empty file with a fresh random name in `folder` (mode 0666 less the umask); its path."""
    while True:
        path = os.path.join(folder, f"{prefix}{secrets.token_hex(6)}{suffix}")
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return path
        except FileExistsError:
            continue


def new_temp_dir(folder: str, prefix: str) -> str:
    """Create an empty folder with a fresh random name in `folder` (mode 0777 less the umask); its path."""
    while True:
        path = os.path.join(folder, f"{prefix}{secrets.token_hex(6)}")
        try:
            os.mkdir(path, 0o777)
            return path
        except FileExistsError:
            continue


def umask() -> int:
    """The process's umask, read without setting it (os.umask can only read by writing: a race with threads);
    where /proc is missing, a probe file gives its read/write bits, all that file modes use."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    probe = new_temp_file(tempfile.gettempdir(), ".umask-probe-")  # created with 0666 less the umask
    try:
        return 0o666 & ~os.stat(probe).st_mode
    finally:
        os.unlink(probe)


def seal(path: str, mode: int | None = None) -> None:
    """Ready a finished temporary file for the rename that publishes it: the mode a plain open() gives
    (safetensors, like mkstemp, writes 0600) unless `mode` is given, and its bytes flushed to disk."""
    os.chmod(path, 0o666 & ~umask() if mode is None else mode)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def seal_tree(folder: str) -> None:
    """seal() every file under `folder`, and flush the folders themselves."""
    mode = 0o666 & ~umask()  # read once for the whole tree
    for root, _, names in os.walk(folder):
        for name in names:
            seal(os.path.join(root, name), mode)
        fsync_dir(root)


def fsync_dir(folder: str) -> None:
    """Flush a folder's entries (the renames into it) to disk; a no-op where folders cannot be opened (Windows)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path in the target's folder; on success it replaces `path` in one rename."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = new_temp_file(folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        yield tmp
        seal(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
