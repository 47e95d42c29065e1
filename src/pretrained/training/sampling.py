"""Which examples make up each batch: a seeded permutation per epoch (so a resumed run replays the same
batches), optionally grouped by length (group_by_length) so that a batch pads its rows to similar lengths."""

from __future__ import annotations

import torch

from ..errors import InputError

MEGABATCH_BATCHES = 50  # group_by_length sorts within windows of this many batches, as Transformers does


def index_batches(n: int, batch_size: int, seed: int | None, drop_last: bool, lengths: list[int] | None = None,
                  megabatch: int | None = None) -> list[list[int]]:
    """Batches of example indices: in order when `seed` is None, else a permutation drawn from `seed`.

    With `lengths`, the permutation is cut into windows of `megabatch` examples, each sorted longest first,
    and the window holding the longest example swaps its head with the first window's, so the largest batch
    comes first (an out-of-memory error shows at once, not hours in)."""
    if seed is None:
        order = list(range(n))
    else:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    if lengths is not None and seed is not None:
        windows = [sorted(order[i:i + megabatch], key=lambda j: -lengths[j]) for i in range(0, n, megabatch)]
        longest = max(range(len(windows)), key=lambda w: lengths[windows[w][0]])
        windows[0][0], windows[longest][0] = windows[longest][0], windows[0][0]
        order = [i for window in windows for i in window]
    batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    return batches


def example_lengths(dataset, column: str, input_name: str) -> list[int]:
    """Each example's length: the dataset's `column` (length_column_name) when it has one, else the length
    of the example's `input_name` (the model's main input)."""
    if column in (getattr(dataset, "column_names", None) or []):
        return [int(x) for x in dataset[column]]
    lengths = []
    for i in range(len(dataset)):
        example = dataset[i]
        if not isinstance(example, dict) or (column not in example and input_name not in example):
            raise InputError(f"TrainingArguments.group_by_length: train_dataset[{i}] has neither {column!r} "
                             f"(length_column_name) nor {input_name!r} to measure")
        lengths.append(int(example[column]) if column in example else len(example[input_name]))
    return lengths


def is_streamed(dataset) -> bool:
    """An iterable dataset without a length (torch IterableDataset, datasets.IterableDataset, ...)."""
    return not hasattr(dataset, "__len__") and hasattr(dataset, "__iter__")


def stream_rows(dataset, epoch: int, batch_size: int, rank: int, world: int, drop_last: bool):
    """One pass over an iterable dataset, in its own order, as this process's rows of each global batch of
    `batch_size` examples. `set_epoch(epoch)` is called first where the dataset has it (so its own shuffling
    changes each pass, as with datasets.IterableDataset.shuffle)."""
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    rows = []
    for example in dataset:
        rows.append(example)
        if len(rows) == batch_size:
            yield rows[rank::world]
            rows = []
    if rows and not drop_last:
        yield rows[rank::world]
