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


@dataclass(frozen=True)
class Fuse:
    """Checkpoint modules `parts` (e.g. q_proj, k_proj, v_proj) are one model module `fused` (qkv_proj)
    whose weight and bias are theirs concatenated along dim 0, in order: one matmul instead of
    several. Load concatenates; save splits by `sizes` (rows of each part), restoring the names."""

    parts: tuple[str, ...]
    fused: str
    sizes: tuple[int, ...]

    def part_of(self, model_key: str) -> tuple[str, int] | None:
        """(fused model key, part index) when `model_key` is one part's weight or bias."""
        module, _, leaf = model_key.rpartition(".")
        parent, _, name = module.rpartition(".")
        if name not in self.parts:
            return None
        return f"{parent}.{self.fused}.{leaf}".lstrip("."), self.parts.index(name)

    def split(self, model_key: str, tensor) -> dict | None:
        """{part model key: rows} when `model_key` is the fused module's weight or bias."""
        module, _, leaf = model_key.rpartition(".")
        parent, _, name = module.rpartition(".")
        if name != self.fused:
            return None
        keys = [f"{parent}.{part}.{leaf}".lstrip(".") for part in self.parts]
        return dict(zip(keys, tensor.split(list(self.sizes), dim=0)))


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


def fused_part(model_key: str, rules) -> tuple[str, int | None, int]:
    """(model key, part index, number of parts): the fused key for one part of a Fuse rule, else (key, None, 1)."""
    for rule in rules:
        if isinstance(rule, Fuse) and (hit := rule.part_of(model_key)) is not None:
            return hit[0], hit[1], len(rule.parts)
    return model_key, None, 1


def unfuse(model_key: str, tensor, rules) -> dict:
    """{model key: tensor} with a fused weight split back into its parts' keys."""
    for rule in rules:
        if isinstance(rule, Fuse) and (parts := rule.split(model_key, tensor)) is not None:
            return parts
    return {model_key: tensor}
