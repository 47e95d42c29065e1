"""Data collators: a list of examples in, one padded batch of tensors out, as Transformers' collators build it.

Padding goes through the tokenizer's `pad()`; labels are padded here with `label_pad_token_id` (-100, which
the loss ignores) on the tokenizer's padding side. Masking for MLM draws from torch's global generator unless
`seed` is given, with Transformers' draw order, so `torch.manual_seed` reproduces its masks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import InputError, UnsupportedOptionError


def _check_tensors(return_tensors) -> None:
    if return_tensors != "pt":
        raise UnsupportedOptionError(f"return_tensors={return_tensors!r}: this collator returns torch tensors ('pt')")


def _as_dicts(features) -> list:
    return [f if isinstance(f, Mapping) else vars(f) for f in features]


def _as_list(values) -> list:
    return values.tolist() if hasattr(values, "tolist") else list(values)


def default_data_collator(features, return_tensors="pt") -> dict[str, Any]:
    """Stack examples that are already the same length. `label` (one number) or `label_ids` (a list) becomes
    `labels`, int64 for integers and float32 otherwise; None and string fields are dropped."""
    _check_tensors(return_tensors)
    features = _as_dicts(features)
    first = features[0]
    batch = {}
    if first.get("label") is not None:
        label = first["label"].item() if isinstance(first["label"], torch.Tensor) else first["label"]
        dtype = torch.long if isinstance(label, (int, np.integer)) else torch.float
        batch["labels"] = torch.tensor([f["label"] for f in features], dtype=dtype)
    elif first.get("label_ids") is not None:
        if isinstance(first["label_ids"], torch.Tensor):
            batch["labels"] = torch.stack([f["label_ids"] for f in features])
        else:
            dtype = torch.long if isinstance(first["label_ids"][0], (int, np.integer)) else torch.float
            batch["labels"] = torch.tensor([f["label_ids"] for f in features], dtype=dtype)
    for key, value in first.items():
        if key in ("label", "label_ids") or value is None or isinstance(value, str):
            continue
        if isinstance(value, torch.Tensor):
            batch[key] = torch.stack([f[key] for f in features])
        elif isinstance(value, np.ndarray):
            batch[key] = torch.from_numpy(np.stack([f[key] for f in features]))
        else:
            batch[key] = torch.tensor([f[key] for f in features])
    return batch


def _pad(tokenizer, features, padding, max_length, pad_to_multiple_of, return_tensors):
    """`tokenizer.pad` over the sequence fields. One-number fields (a class label) are batched here, since the
    tokenizer's `pad` pads sequences only."""
    features = _as_dicts(features)
    scalars = [k for k, v in features[0].items()
               if isinstance(v, (int, float, np.number)) or getattr(v, "ndim", 1) == 0]
    sequences = [{k: v for k, v in f.items() if k not in scalars} for f in features]
    batch = tokenizer.pad(sequences, padding=padding, max_length=max_length, pad_to_multiple_of=pad_to_multiple_of,
                          return_tensors=return_tensors)
    for key in scalars:
        values = [f[key].item() if hasattr(f[key], "item") else f[key] for f in features]
        if return_tensors in ("pt", "np"):
            values = torch.tensor(values) if return_tensors == "pt" else np.array(values)
        batch[key] = values
    return batch


def _pad_labels(labels, length: int, pad_id: int, side: str) -> list[list[int]]:
    rows = [_as_list(label) for label in labels]
    if side == "left":
        return [[pad_id] * (length - len(row)) + row for row in rows]
    return [row + [pad_id] * (length - len(row)) for row in rows]


@dataclass
class DataCollatorWithPadding:
    """Pad `input_ids` (and the tokenizer's other fields) to the batch's longest row, or `max_length`; `label` and
    `label_ids` are renamed `labels`."""

    tokenizer: Any
    padding: bool | str = True
    max_length: int | None = None
    pad_to_multiple_of: int | None = None
    return_tensors: str = "pt"

    def __call__(self, features) -> dict[str, Any]:
        batch = _pad(self.tokenizer, features, self.padding, self.max_length, self.pad_to_multiple_of,
                     self.return_tensors)
        for name in ("label", "label_ids"):
            if name in batch:
                batch["labels"] = batch.pop(name)
        return batch


def _split_labels(features: list[dict]) -> tuple[str, list | None, list[dict]]:
    """(the label key, "label" or "labels"; each feature's labels or None; the features without them)."""
    name = "label" if "label" in features[0] else "labels"
    labels = [f[name] for f in features] if name in features[0] else None
    return name, labels, [{k: v for k, v in f.items() if k != name} for f in features]


@dataclass
class DataCollatorForTokenClassification:
    """Pad the inputs, then pad the per-token labels to the same length with `label_pad_token_id` on the
    tokenizer's padding side."""

    tokenizer: Any
    padding: bool | str = True
    max_length: int | None = None
    pad_to_multiple_of: int | None = None
    label_pad_token_id: int = -100
    return_tensors: str = "pt"

    def __call__(self, features, return_tensors=None) -> dict[str, Any]:
        _check_tensors(return_tensors or self.return_tensors)
        label_name, labels, inputs = _split_labels(_as_dicts(features))
        batch = _pad(self.tokenizer, inputs, self.padding, self.max_length, self.pad_to_multiple_of, "pt")
        if labels is None:
            return batch
        length = batch["input_ids"].shape[1]
        rows = _pad_labels(labels, length, self.label_pad_token_id, self.tokenizer.padding_side)
        batch[label_name] = torch.tensor(rows, dtype=torch.int64)
        return batch


@dataclass
class DataCollatorForSeq2Seq:
    """Pad encoder inputs and target `labels` separately (labels with `label_pad_token_id`); with a `model` that has
    `prepare_decoder_input_ids_from_labels`, add the shifted `decoder_input_ids` too. Without labels, `labels` is
    None in the batch, as in Transformers."""

    tokenizer: Any
    model: Any | None = None
    padding: bool | str = True
    max_length: int | None = None
    pad_to_multiple_of: int | None = None
    label_pad_token_id: int = -100
    return_tensors: str = "pt"

    def __call__(self, features, return_tensors=None) -> dict[str, Any]:
        _check_tensors(return_tensors or self.return_tensors)
        label_name, labels, inputs = _split_labels(_as_dicts(features))
        if labels is not None and all(label is None for label in labels):
            labels = None
        batch = _pad(self.tokenizer, inputs, self.padding, self.max_length, self.pad_to_multiple_of, "pt")
        if labels is None:
            batch["labels"] = None
            return batch
        if self.padding is False or self.padding == "do_not_pad":
            rows = [_as_list(label) for label in labels]
            if len({len(row) for row in rows}) > 1:
                raise InputError("DataCollatorForSeq2Seq(padding=False) got labels of different lengths; "
                                 "they cannot form one tensor: pass padding=True")
        else:
            pad_to_max = self.padding == "max_length" and self.max_length is not None
            length = self.max_length if pad_to_max else max(len(label) for label in labels)
            if self.pad_to_multiple_of:
                length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
            rows = _pad_labels(labels, length, self.label_pad_token_id, self.tokenizer.padding_side)
        batch["labels"] = torch.tensor(rows, dtype=torch.int64)
        if self.model is not None and hasattr(self.model, "prepare_decoder_input_ids_from_labels"):
            batch["decoder_input_ids"] = self.model.prepare_decoder_input_ids_from_labels(labels=batch["labels"])
        return batch


def _collate_ids(examples, tokenizer, pad_to_multiple_of) -> torch.Tensor:
    """Rows of token ids (lists or tensors) -> one (B, T) tensor, padded on the tokenizer's side when needed."""
    rows = [e if isinstance(e, torch.Tensor) else torch.tensor(_as_list(e), dtype=torch.long) for e in examples]
    longest = max(row.size(0) for row in rows)
    same = all(row.size(0) == longest for row in rows)
    if same and (pad_to_multiple_of is None or longest % pad_to_multiple_of == 0):
        return torch.stack(rows)
    if tokenizer.pad_token is None:
        raise InputError(f"the examples need padding but the tokenizer ({type(tokenizer).__name__}) has no pad_token")
    if pad_to_multiple_of and longest % pad_to_multiple_of:
        longest += pad_to_multiple_of - longest % pad_to_multiple_of
    out = rows[0].new_full((len(rows), longest), tokenizer.pad_token_id)
    for i, row in enumerate(rows):
        if tokenizer.padding_side == "right":
            out[i, : row.size(0)] = row
        else:
            out[i, longest - row.size(0):] = row
    return out


@dataclass
class DataCollatorForLanguageModeling:
    """Batches for masked (`mlm=True`) or causal (`mlm=False`) language modelling.

    MLM picks each non-special, non-padding token with `mlm_probability`; of those, `mask_replace_prob` become the
    mask token, `random_replace_prob` a random token, the rest stay; labels are -100 except at picked tokens.
    CLM: labels are the input ids with padding (any id equal to `pad_token_id`) set to -100.
    """

    tokenizer: Any
    mlm: bool = True
    whole_word_mask: bool = False
    mlm_probability: float | None = 0.15
    mask_replace_prob: float = 0.8
    random_replace_prob: float = 0.1
    pad_to_multiple_of: int | None = None
    return_tensors: str = "pt"
    seed: int | None = None
    generator: torch.Generator | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        _check_tensors(self.return_tensors)
        if self.whole_word_mask:
            raise UnsupportedOptionError("DataCollatorForLanguageModeling(whole_word_mask=True) is not implemented")
        if self.mlm:
            if self.tokenizer.mask_token is None:
                raise InputError(f"mlm=True needs a tokenizer with a mask_token; {type(self.tokenizer).__name__} has "
                                 "none: pass mlm=False for causal language modelling")
            if self.mlm_probability is None or not 0 <= self.mlm_probability <= 1:
                raise InputError(f"mlm_probability must be in [0, 1], got {self.mlm_probability!r}")
            self.mlm_probability = float(self.mlm_probability)
        for name in ("mask_replace_prob", "random_replace_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise InputError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        if self.mask_replace_prob + self.random_replace_prob > 1:
            raise InputError(f"mask_replace_prob + random_replace_prob must not exceed 1, got "
                             f"{self.mask_replace_prob} + {self.random_replace_prob}")

    def _make_generator(self) -> torch.Generator:
        # each DataLoader worker gets seed + its id, so workers do not repeat each other's masks
        info = torch.utils.data.get_worker_info()
        return torch.Generator().manual_seed(self.seed + (info.id if info is not None else 0))

    def __call__(self, examples, return_tensors=None) -> dict[str, Any]:
        _check_tensors(return_tensors or self.return_tensors)
        if self.seed is not None and self.generator is None:
            self.generator = self._make_generator()
        if isinstance(examples[0], Mapping):
            batch = self.tokenizer.pad(list(examples), return_tensors="pt", pad_to_multiple_of=self.pad_to_multiple_of)
        else:
            batch = {"input_ids": _collate_ids(examples, self.tokenizer, self.pad_to_multiple_of)}
        special_tokens_mask = batch.pop("special_tokens_mask", None)
        batch.pop("offset_mapping", None)  # only whole-word masking reads it
        if self.mlm:
            batch["input_ids"], batch["labels"] = self.torch_mask_tokens(batch["input_ids"], special_tokens_mask)
        else:
            labels = batch["input_ids"].clone()
            if self.tokenizer.pad_token_id is not None:
                labels[labels == self.tokenizer.pad_token_id] = -100
            batch["labels"] = labels
        return batch

    def torch_mask_tokens(self, inputs: torch.Tensor, special_tokens_mask=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask `inputs` (B, T) in place; return (inputs, labels). Draws: pick, [MASK] share, random share, ids."""
        labels = inputs.clone()
        if special_tokens_mask is None:
            special_tokens_mask = [self.tokenizer.get_special_tokens_mask(row, already_has_special_tokens=True)
                                   for row in labels.tolist()]
        keep = torch.as_tensor(special_tokens_mask, dtype=torch.bool)
        probability = torch.full(labels.shape, self.mlm_probability).masked_fill_(keep, 0.0)
        picked = torch.bernoulli(probability, generator=self.generator).bool()
        labels[~picked] = -100
        replaced = torch.bernoulli(torch.full(labels.shape, self.mask_replace_prob), generator=self.generator).bool()
        replaced &= picked
        inputs[replaced] = self.tokenizer.convert_tokens_to_ids(self.tokenizer.mask_token)
        if self.mask_replace_prob == 1 or self.random_replace_prob == 0:
            return inputs, labels
        # the random share is drawn among the picked tokens not already masked
        share = self.random_replace_prob / (1 - self.mask_replace_prob)
        randomised = torch.bernoulli(torch.full(labels.shape, share), generator=self.generator).bool()
        randomised &= picked & ~replaced
        words = torch.randint(len(self.tokenizer), labels.shape, dtype=torch.long, generator=self.generator)
        inputs[randomised] = words[randomised]
        return inputs, labels
