"""Pipeline: one task as preprocess -> _forward -> postprocess, with batching, chunking and device.

A task class writes three methods and `_sanitize_parameters`, which splits the call's keyword
arguments into the three stages. The base does the rest:
- one item, a list, a generator or a `datasets.Dataset` column in; one result per item out, in order;
- `batch_size`: model inputs of several items are padded into one batch, run once, and cut back
  to each item's length, so batched results equal one-at-a-time results;
- chunking: a task whose `preprocess` returns a list (QA windows, zero-shot pairs) gets the
  list of their model outputs in `postprocess`; chunks of different items share batches;
- the model runs on `device` under `torch.inference_mode()`, outputs come back on the CPU.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from ..errors import PretrainedError


class PipelineError(PretrainedError, ValueError):
    """A pipeline got an input or option it cannot use; the message says what was expected."""


_SAMPLING_PARAMS = {"temperature", "top_k", "top_p", "min_p", "typical_p", "epsilon_cutoff", "eta_cutoff"}
# padding values of model-input keys; any other padded key pads with 0
_PAD_VALUES = {"attention_mask": 0, "token_type_ids": 0, "p_mask": 1, "special_tokens_mask": 1}


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Probabilities along `axis`; the max is subtracted first so large logits cannot overflow exp."""
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def resolve_device(device) -> torch.device | None:
    """Transformers' device argument: -1 or 'cpu', an int GPU index, 'cuda:1', 'mps' or a torch.device."""
    if device is None:
        return None
    if isinstance(device, torch.device):
        return device
    if isinstance(device, int):
        return torch.device("cpu") if device < 0 else torch.device("cuda", device)
    if isinstance(device, str):
        try:
            return torch.device(device)
        except RuntimeError as e:
            raise PipelineError(f"device={device!r} is not a device; expected 'cpu', 'cuda', 'cuda:0', 'mps' or an int") from e
    raise PipelineError(f"device={device!r} is not a device; expected an int, a string or a torch.device")


class Pipeline:
    """Base of every task pipeline; subclasses implement preprocess, _forward and postprocess."""

    task: str = ""
    chunked: bool = False  # preprocess returns a list of model inputs; postprocess gets a list of outputs
    token_outputs: tuple[str, ...] = ()  # _forward output keys with a sequence axis (dim 1) to cut back after padding
    padding_side: str | None = None  # None: the tokenizer's side
    generation_defaults: dict = {}  # generate() defaults of generating tasks, below the model's own

    def __init__(self, model, tokenizer=None, task: str = "", device=None, batch_size: int | None = None,
                 feature_extractor=None, image_processor=None, processor=None, binary_output: bool = False,
                 model_path: str | None = None, **kwargs: Any):
        self.model = model
        self.model_path = model_path or getattr(model, "name_or_path", None)  # the folder or id it came from
        self.tokenizer = tokenizer
        self.feature_extractor = feature_extractor
        self.image_processor = image_processor
        self.processor = processor
        self.task = task or self.task
        self.binary_output = binary_output
        self.batch_size = batch_size
        target = resolve_device(device)
        if model is not None:
            if target is not None and not getattr(model, "hf_device_map", None):
                model.to(target)
            if hasattr(model, "eval"):
                model.eval()
        self.device = target if target is not None else (model.device if model is not None else torch.device("cpu"))
        self._apply_task_specific_params()
        self._preprocess_params, self._forward_params, self._postprocess_params = self._sanitize_parameters(**kwargs)

    def _apply_task_specific_params(self) -> None:
        """config.task_specific_params[task] (T5's "summarize: " prefix, lengths) become this pipeline's
        prefix and generation defaults; the model and its config are left untouched."""
        config = getattr(self.model, "config", None)
        params = dict((getattr(config, "task_specific_params", None) or {}).get(self.task, {}))
        self.prefix = params.pop("prefix", getattr(config, "prefix", None))
        self.task_generation_params = params

    def generate_kwargs(self, kwargs: dict) -> dict:
        """generate() keywords: the call's, then the task's, then the pipeline's `generation_defaults`
        for what neither the call nor the model's generation config sets (Transformers' priority)."""
        model_config = getattr(self.model, "generation_config", None)
        set_params = dict(model_config.to_diff_dict()) if model_config is not None else {}
        if set_params.get("max_length") == 20:  # the global default counts as unset
            set_params.pop("max_length")
        set_params.update(self.task_generation_params)
        set_params.update(kwargs)
        added = {k: v for k, v in self.generation_defaults.items()
                 if k not in set_params and not (k == "max_new_tokens" and "max_length" in set_params)}
        if not {**set_params, **added}.get("do_sample"):  # a default do_sample=True brings its temperature
            added = {k: v for k, v in added.items() if k not in _SAMPLING_PARAMS}
        return {**self.task_generation_params, **kwargs, **added}

    # --- what a task implements ---

    def _sanitize_parameters(self, **kwargs) -> tuple[dict, dict, dict]:
        raise NotImplementedError

    def preprocess(self, inputs, **params) -> dict | list[dict]:
        raise NotImplementedError

    def _forward(self, model_inputs: dict, **params) -> dict:
        raise NotImplementedError

    def postprocess(self, model_outputs, **params):
        raise NotImplementedError

    # --- calling ---

    def __call__(self, inputs=None, *args, batch_size: int | None = None, num_workers: int | None = None, **kwargs):
        if args:
            raise PipelineError(f"{type(self).__name__} takes one positional input (an item, a list or a generator); "
                                f"got {1 + len(args)} positional arguments")
        pre, fwd, post = self._sanitize_parameters(**kwargs)
        pre = {**self._preprocess_params, **pre}
        fwd = {**self._forward_params, **fwd}
        post = {**self._postprocess_params, **post}
        if batch_size is None:
            batch_size = self.batch_size or 1
        if not isinstance(batch_size, int) or batch_size < 1:
            raise PipelineError(f"batch_size={batch_size!r}; expected a positive int")
        if isinstance(inputs, (list, tuple)):
            return list(self._run(list(inputs), batch_size, pre, fwd, post, window=batch_size * 8))
        if _is_stream(inputs):
            return self._run(iter(inputs), batch_size, pre, fwd, post, window=batch_size)
        return next(self._run([inputs], 1, pre, fwd, post, window=1))

    def run_single(self, inputs, preprocess_params: dict, forward_params: dict, postprocess_params: dict):
        return next(self._run([inputs], 1, preprocess_params, forward_params, postprocess_params, window=1))

    def _run(self, items: Iterable, batch_size: int, pre: dict, fwd: dict, post: dict, window: int) -> Iterator:
        """Results of `items` in order: preprocess a window of items, run their model inputs in
        length-sorted batches (less padding), then postprocess item by item."""
        iterator = iter(items)
        while True:
            chunk = [x for _, x in zip(range(window), iterator)]
            if not chunk:
                return
            per_item = []
            for item in chunk:
                model_inputs = self.preprocess(item, **pre)
                per_item.append(list(model_inputs) if self.chunked else [model_inputs])
            flat = [(i, j) for i, inputs in enumerate(per_item) for j in range(len(inputs))]
            outputs: dict = {}
            if batch_size > 1:
                flat.sort(key=lambda ij: _length(per_item[ij[0]][ij[1]]))
            for start in range(0, len(flat), batch_size):
                group = flat[start:start + batch_size]
                batch = [per_item[i][j] for i, j in group]
                for key, out in zip(group, self._forward_batch(batch, fwd)):
                    outputs[key] = out
            for i, inputs in enumerate(per_item):
                item_outputs = [outputs[(i, j)] for j in range(len(inputs))]
                yield self.postprocess(item_outputs if self.chunked else item_outputs[0], **post)

    def _forward_batch(self, batch: list[dict], fwd: dict) -> list[dict]:
        lengths = [_length(x) for x in batch]
        side = self.padding_side or getattr(self.tokenizer, "padding_side", "right")
        collated = self._collate(batch, side)
        with torch.inference_mode():
            collated = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in collated.items()}
            out = self._forward(collated, **fwd)
        return _unbatch(out, len(batch), lengths, self.token_outputs, side)

    def _collate(self, batch: list[dict], side: str) -> dict:
        pad_id = self.pad_token_id
        collated = {}
        for key in batch[0]:
            values = [x[key] for x in batch]
            if not isinstance(values[0], torch.Tensor):
                collated[key] = values  # side data (offsets, texts): one entry per row
                continue
            if values[0].dim() < 2 or len({v.shape[1:] for v in values}) == 1:
                collated[key] = torch.cat(values)
                continue
            if key == "input_ids":
                if pad_id is None:
                    raise PipelineError("batching needs padding but the tokenizer has no pad_token; "
                                        "set tokenizer.pad_token (e.g. to its eos_token) or use batch_size=1")
                value = pad_id
            else:
                value = _PAD_VALUES.get(key, 0)
            longest = max(v.shape[1] for v in values)
            padded = []
            for v in values:
                fill = v.new_full((v.shape[0], longest - v.shape[1], *v.shape[2:]), value)
                padded.append(torch.cat([v, fill] if side == "right" else [fill, v], dim=1))
            collated[key] = torch.cat(padded)
        return collated

    # --- conveniences shared by tasks ---

    @property
    def pad_token_id(self) -> int | None:
        return getattr(self.tokenizer, "pad_token_id", None)

    def ensure_tensor_on_device(self, **inputs):
        return {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}

    def check_text(self, text, what: str = "input") -> str:
        if not isinstance(text, str):
            raise PipelineError(f"{self.task} expects a string {what}, got {type(text).__name__}")
        return text

    def check_length(self, model_inputs: dict) -> dict:
        """A clear error, instead of an index error deep in the model, for a text longer than the model takes."""
        limits = [getattr(self.tokenizer, "model_max_length", None),
                  getattr(getattr(self.model, "config", None), "max_position_embeddings", None)]
        limits = [n for n in limits if isinstance(n, int) and 0 < n < 1_000_000]
        n = model_inputs["input_ids"].shape[-1]
        if limits and n > min(limits):
            raise PipelineError(f"{self.task}: the input is {n} tokens, the model takes at most {min(limits)}; "
                                "pass truncation=True to cut it, or split the text")
        return model_inputs

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs) -> None:
        os.makedirs(save_directory, exist_ok=True)
        self.model.save_pretrained(save_directory, **kwargs)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(save_directory)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(task={self.task!r}, model={getattr(self.model, 'name_or_path', '?')!r}, device={self.device})"


def _is_stream(inputs) -> bool:
    """A generator, iterator or dataset column: anything iterable that is not one item."""
    if isinstance(inputs, (str, bytes, dict)) or inputs is None:
        return False
    return hasattr(inputs, "__iter__") and not isinstance(inputs, torch.Tensor)


def _length(model_inputs: dict) -> int:
    ids = model_inputs.get("input_ids")
    return ids.shape[-1] if isinstance(ids, torch.Tensor) else 0


def _unbatch(out: dict, n: int, lengths: list[int], token_keys: tuple, side: str) -> list[dict]:
    longest = max(lengths)
    items = [{} for _ in range(n)]
    for key, value in out.items():
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == n:
            for i in range(n):
                row = value[i:i + 1]
                if key in token_keys and value.dim() > 1 and value.shape[1] == longest and lengths[i] < longest:
                    row = row[:, :lengths[i]] if side == "right" else row[:, longest - lengths[i]:]
                items[i][key] = row
        elif isinstance(value, list) and len(value) == n:
            for i in range(n):
                items[i][key] = value[i]
        else:
            for i in range(n):
                items[i][key] = value
    return items
