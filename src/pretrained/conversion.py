"""Declarative key transforms between checkpoint names and module paths.

Most architectures need none: module attribute paths are the checkpoint keys. What cannot be is a
short table per architecture (`PreTrainedModel.checkpoint_rules`) that runs forwards on load and
backwards on save, so a saved checkpoint has the names the original format uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch


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
    """Checkpoint modules `parts` (e.g. Phi-3's q/k/v stored apart) are one model module `fused`
    whose weight and bias are theirs concatenated along dim 0, in order. Load concatenates; save
    splits by `sizes` (rows of each part), restoring the names."""

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

    def count(self, shape) -> int:
        return len(self.parts)

    def combine(self, tensors):
        return torch.cat(tensors)

    def combined_shape(self, shapes) -> tuple:
        return (sum(s[0] for s in shapes), *shapes[0][1:])

    def split(self, model_key: str, tensor) -> dict | None:
        """{part model key: rows} when `model_key` is the fused module's weight or bias."""
        module, _, leaf = model_key.rpartition(".")
        parent, _, name = module.rpartition(".")
        if name != self.fused:
            return None
        keys = [f"{parent}.{part}.{leaf}".lstrip(".") for part in self.parts]
        return dict(zip(keys, tensor.split(list(self.sizes), dim=0)))


@dataclass(frozen=True)
class Stack:
    """Numbered checkpoint tensors `{container}.{i}.{leaf}` (one per expert of a mixture) are one model
    parameter `{container}.{stacked}` of shape (count, *their shape), so the experts run as batched
    matmuls. Load stacks them in order; save unstacks, restoring the names. E.g. Mixtral:
    Stack("experts", "w1.weight", "w1") maps `...experts.3.w1.weight` to row 3 of `...experts.w1`."""

    container: str
    leaf: str
    stacked: str

    def part_of(self, model_key: str) -> tuple[str, int] | None:
        m = re.fullmatch(rf"(.*?){re.escape(self.container)}\.(\d+)\.{re.escape(self.leaf)}", model_key)
        return (f"{m[1]}{self.container}.{self.stacked}", int(m[2])) if m else None

    def count(self, shape) -> int:
        return shape[0]

    def combine(self, tensors):
        return torch.stack(tensors)

    def combined_shape(self, shapes) -> tuple:
        return (len(shapes), *shapes[0])

    def split(self, model_key: str, tensor) -> dict | None:
        suffix = f"{self.container}.{self.stacked}"
        if not (model_key == suffix or model_key.endswith("." + suffix)):
            return None
        prefix = model_key[: -len(suffix)]
        return {f"{prefix}{self.container}.{i}.{self.leaf}": t for i, t in enumerate(tensor.unbind(0))}


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


def combined_part(model_key: str, rules):
    """(combined model key, part index, rule) when `model_key` names one part of a Fuse or Stack rule, else None."""
    for rule in rules:
        if isinstance(rule, (Fuse, Stack)) and (hit := rule.part_of(model_key)) is not None:
            return (*hit, rule)
    return None


def split_combined(model_key: str, tensor, rules) -> dict:
    """{model key: tensor} with a fused or stacked tensor split back into its parts' keys."""
    for rule in rules:
        if isinstance(rule, (Fuse, Stack)) and (parts := rule.split(model_key, tensor)) is not None:
            return parts
    return {model_key: tensor}
