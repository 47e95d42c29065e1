"""Declarative key transforms between checkpoint names and module paths.

Most architectures need none: module attribute paths are the checkpoint keys. What cannot be is a
short table per architecture (`PreTrainedModel.checkpoint_rules`) that runs forwards on load and
backwards on save, so a saved checkpoint has the names the original format uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Rename:
    """Checkpoint regex `old` -> model replacement `new`; `save` (a replacement over model keys) undoes it."""

    old: str
    new: str
    save_old: str | None = None  # regex over model keys; None: the rename is load-only (legacy names)
    save_new: str | None = None


@dataclass(frozen=True)
class Transpose:
    """2-D weights whose model key matches `pattern` are stored transposed in the checkpoint (Conv1D)."""

    pattern: str


# Old TF-era LayerNorm names, accepted by every architecture on load; never written.
LEGACY_RENAMES = (Rename(r"\.gamma$", ".weight"), Rename(r"\.beta$", ".bias"))


def to_model_key(key: str, rules) -> str:
    for rule in (*LEGACY_RENAMES, *rules):
        if isinstance(rule, Rename):
            key = re.sub(rule.old, rule.new, key)
    return key


def to_checkpoint_key(key: str, rules) -> str:
    for rule in reversed(rules):
        if isinstance(rule, Rename) and rule.save_old is not None:
            key = re.sub(rule.save_old, rule.save_new, key)
    return key


def is_transposed(model_key: str, rules) -> bool:
    return any(isinstance(r, Transpose) and re.search(r.pattern, model_key) for r in rules)
