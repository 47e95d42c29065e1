"""Trainer: the training loop with Transformers' API (train / evaluate / predict, callbacks, checkpoints).

One optimizer step = `gradient_accumulation_steps` micro-batches whose losses are weighted by their share of
the step's loss items (label tokens, or examples for sequence-level losses), so accumulating k batches
equals one batch k times larger. The training order is a permutation seeded by (data_seed or seed) +
epoch, so resuming from a checkpoint replays exactly the batches and random state of the uninterrupted run.

Under torchrun (WORLD_SIZE > 1) the model runs in PyTorch's DistributedDataParallel (gloo on CPU, nccl on
GPUs): each global batch of per_device_train_batch_size x world rows is the single-process batch, split
between the processes, and the item weights count every process's items, so N processes at per-device batch
b train exactly as one process at batch N x b. Process 0 logs and saves; evaluation splits the batches between the processes and gathers the results.
"""

from __future__ import annotations

import inspect
import itertools
import json
import math
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, InputError, UnsupportedOptionError
from ..files import atomic_write_text
from ..utils import set_seed
from .arguments import TrainingArguments
from .callbacks import (
    CallbackHandler, DefaultFlowCallback, ExportableState, PrinterCallback, ProgressCallback, TrainerCallback, TrainerControl,
    TrainerState,
)
from .checkpoints import PREFIX_CHECKPOINT_DIR, get_last_checkpoint, load_checkpoint, restore_rng_state, rotate_checkpoints, save_checkpoint
from .collators import DataCollatorWithPadding, default_data_collator
from . import distributed
from .optim import create_optimizer
from .reporters import reporter_callbacks
from .sampling import MEGABATCH_BATCHES, example_lengths, index_batches, is_streamed, stream_rows
from .schedules import get_scheduler

LOG_FILE = "trainer_log.jsonl"
CARD_FIELDS = ("language", "license", "tags", "model_name", "finetuned_from", "tasks", "dataset_tags", "dataset",
               "dataset_args")  # Trainer.create_model_card's, accepted by push_to_hub  # every log entry, one JSON object per line, whatever report_to says


@dataclass
class EvalPrediction:
    """What compute_metrics receives: predictions (logits, or what preprocess_logits_for_metrics made of
    them) and label_ids, numpy arrays concatenated over the evaluation set."""

    predictions: Any
    label_ids: Any
    inputs: Any = None

    def __iter__(self):
        return iter((self.predictions, self.label_ids))

    def __getitem__(self, index):
        return (self.predictions, self.label_ids)[index]


@dataclass
class PredictionOutput:
    predictions: Any
    label_ids: Any
    metrics: dict | None


@dataclass
class TrainOutput:
    global_step: int
    training_loss: float
    metrics: dict


def _loss_items(labels: torch.Tensor | None, causal: bool) -> int:
    """How many terms a batch's mean loss averages: label tokens (shifted for causal LMs), else examples."""
    if labels is None:
        return 1
    if labels.dim() <= 1 or labels.is_floating_point():
        return labels.shape[0]
    return int((labels[:, 1:] if causal else labels).ne(-100).sum())


def label_smoothed_loss(logits: torch.Tensor, labels: torch.Tensor, epsilon: float, shift: bool) -> torch.Tensor:
    """(1 - eps) * cross-entropy + eps * mean negative log-probability over the vocabulary, over labels != -100."""
    if shift:
        logits, labels = logits[..., :-1, :], labels[..., 1:]
    log_probs = -torch.log_softmax(logits.float(), dim=-1)
    ignored = labels.eq(-100)
    nll = log_probs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1).masked_fill(ignored, 0.0)
    smooth = log_probs.sum(-1).masked_fill(ignored, 0.0)
    active = ignored.numel() - int(ignored.sum())
    return (1 - epsilon) * nll.sum() / active + epsilon * smooth.sum() / (active * log_probs.shape[-1])


class Trainer:
    """Transformers' Trainer for `pretrained` models (and any nn.Module returning a loss)."""

    def __init__(self, model: nn.Module | None = None, args: TrainingArguments | None = None, data_collator=None,
                 train_dataset=None, eval_dataset=None, processing_class=None, model_init: Callable | None = None,
                 compute_loss_func: Callable | None = None, compute_metrics: Callable | None = None,
                 callbacks: list | None = None, optimizers=(None, None),
                 preprocess_logits_for_metrics: Callable | None = None, tokenizer=None):
        self.args = args if args is not None else TrainingArguments(output_dir="trainer_output")
        self._check_args()
        set_seed(self.args.seed, self.args.full_determinism)
        if model is None and model_init is None:
            raise InputError("Trainer needs a model or a model_init")
        if model is not None and model_init is not None:
            raise InputError("pass either model or model_init to Trainer, not both")
        self.model_init = model_init
        self.model = model if model is not None else self._call_model_init()
        if model is not None and self.args.gradient_checkpointing:
            self.model.gradient_checkpointing_enable(self.args.gradient_checkpointing_kwargs)
        self.processing_class = processing_class if processing_class is not None else tokenizer
        if data_collator is None:
            data_collator = (DataCollatorWithPadding(self.processing_class) if hasattr(self.processing_class, "pad")
                             else default_data_collator)
        self.data_collator = data_collator
        self.train_dataset, self.eval_dataset = train_dataset, eval_dataset
        self.compute_loss_func, self.compute_metrics = compute_loss_func, compute_metrics
        self.preprocess_logits_for_metrics = preprocess_logits_for_metrics
        self.optimizer, self.lr_scheduler = optimizers
        default = [DefaultFlowCallback, *reporter_callbacks(self.args.report_to),
                   PrinterCallback if self.args.disable_tqdm else ProgressCallback]
        self.callback_handler = CallbackHandler(default + list(callbacks or []), self.model, self.processing_class,
                                                self.optimizer, self.lr_scheduler)
        self.state = TrainerState(is_local_process_zero=True, is_world_process_zero=True)
        self.control = TrainerControl()
        self._signature_columns = None
        self._best_pending = False  # the last evaluation was the best so far: the next checkpoint is the best
        self._pusher = None
        self._card_fields = {}  # what push_to_hub(**kwargs) asked the model card to say
        if self.args.push_to_hub and self.args.should_save:
            self._hub()  # the repo is created now: a wrong token or name fails before training
        self.control = self.callback_handler.on_init_end(self.args, self.state, self.control)

    # --- settings we refuse rather than ignore ---

    def _check_args(self) -> None:
        args = self.args
        if getattr(args, "predict_with_generate", False) and args.fsdp:
            raise UnsupportedOptionError("Seq2SeqTrainingArguments.predict_with_generate with fsdp: generation runs "
                                         "a different number of steps on each process; evaluate unsharded")
        if args.output_dir:
            try:
                os.makedirs(args.output_dir, exist_ok=True)
            except OSError as e:
                raise ConfigError(f"TrainingArguments.output_dir={args.output_dir!r} cannot be created: {e}") from e
            if not os.access(args.output_dir, os.W_OK):
                raise ConfigError(f"TrainingArguments.output_dir={args.output_dir!r} is not writable")

    def _call_model_init(self):
        model = self.model_init()
        if model is None:
            raise InputError("model_init returned None; it must return a model")
        if self.args.gradient_checkpointing:
            model.gradient_checkpointing_enable(self.args.gradient_checkpointing_kwargs)
        return model

    # --- callbacks ---

    def add_callback(self, callback) -> None:
        self.callback_handler.add_callback(callback)

    def pop_callback(self, callback):
        return self.callback_handler.pop_callback(callback)

    def remove_callback(self, callback) -> None:
        self.callback_handler.remove_callback(callback)

    # --- data ---

    def _columns(self) -> set[str]:
        if self._signature_columns is None:
            model = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model  # a PeftModel
            params = inspect.signature(model.forward).parameters
            self._signature_columns = set(params) | {"label", "label_ids", "labels", *(self.args.label_names or [])}
        return self._signature_columns

    def _examples(self, dataset, indices) -> list[dict]:
        return self._inputs([dataset[int(i)] for i in indices])

    def _inputs(self, examples: list) -> list:
        """The examples without the columns the model does not take (remove_unused_columns)."""
        if self.args.remove_unused_columns and examples and isinstance(examples[0], dict):
            keep = self._columns()
            examples = [{k: v for k, v in ex.items() if k in keep} for ex in examples]
        return examples

    def _check_dataset(self, dataset, name: str, needs_labels: bool) -> None:
        if dataset is None:
            raise InputError(f"Trainer needs a {name}")
        if is_streamed(dataset) and name == "train_dataset":
            self._check_stream(dataset)
            head = list(itertools.islice(iter(dataset), 2))
        elif not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise InputError(f"{name} must be a sized, indexable dataset (a list of dicts, a torch Dataset or a "
                             f"datasets.Dataset){' or an iterable one' if name == 'train_dataset' else ''}, got "
                             f"{type(dataset).__name__}")
        else:
            head = [dataset[i] for i in range(min(2, len(dataset)))]
        if not head:
            raise InputError(f"{name} is empty")
        first = head[0]
        if isinstance(first, dict):
            keys = set(first)
            if self.args.remove_unused_columns and not keys & (self._columns() - {"label", "label_ids", "labels"}):
                raise InputError(f"{name}: none of its columns {sorted(keys)} is an input of "
                                 f"{type(self.model).__name__}.forward ({sorted(self._columns())})")
            label_names = set(self.args.label_names or ["labels", "label", "label_ids"])
            if needs_labels and self.compute_loss_func is None and not keys & label_names:
                with torch.random.fork_rng(devices=[]):  # a collator may add labels (MLM, CLM): ask it, drawing nothing
                    batch = self.data_collator(self._inputs(head))
                if not set(batch) & label_names:
                    raise InputError(f"{name} has no labels: its columns are {sorted(keys)} and the data collator "
                                     f"adds none; expected one of {sorted(label_names)} (or set "
                                     "TrainingArguments.label_names)")

    def _check_stream(self, dataset) -> None:
        args = self.args
        if iter(dataset) is dataset:
            raise InputError("train_dataset is an iterator, which one pass exhausts: pass an iterable that starts "
                             "over on each iter() (a torch IterableDataset, a datasets.IterableDataset)")
        if args.max_steps <= 0:
            raise ConfigError("TrainingArguments.max_steps must be set when train_dataset has no length (an "
                              "iterable dataset): the number of steps cannot be derived from num_train_epochs")
        if args.group_by_length:
            raise ConfigError("TrainingArguments.group_by_length needs every example's length up front; "
                              "train_dataset is an iterable dataset")
        if args.dataloader_num_workers:
            raise ConfigError("TrainingArguments.dataloader_num_workers > 0 with an iterable train_dataset would "
                              "read every example once per worker; use 0")

    def _batches(self, dataset, batch_size: int, epoch: int | None, drop_last: bool):
        """Index batches: a permutation seeded by (data_seed or seed) + epoch (grouped by length with
        group_by_length), or in order (epoch None)."""
        if epoch is None or self.args.train_sampling_strategy == "sequential":
            return index_batches(len(dataset), batch_size, None, drop_last)
        lengths = None
        if self.args.group_by_length:
            if getattr(self, "_lengths", (None,))[0] is not dataset:
                input_name = getattr(self.model, "main_input_name", "input_ids")
                self._lengths = (dataset, example_lengths(dataset, self.args.length_column_name, input_name))
            lengths = self._lengths[1]
        return index_batches(len(dataset), batch_size, (self.args.data_seed or self.args.seed) + epoch, drop_last,
                             lengths, MEGABATCH_BATCHES * batch_size * self.args.gradient_accumulation_steps)

    def _loader(self, dataset, batches):
        return torch.utils.data.DataLoader(
            batches, batch_size=None, collate_fn=lambda idx: self.data_collator(self._examples(dataset, idx)),
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory and torch.cuda.is_available())  # pinning helps GPU copies only

    def _to_device(self, batch: dict) -> dict:
        device = next(self.model.parameters()).device
        return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    # --- loss ---

    def compute_loss(self, model, inputs: dict, return_outputs: bool = False, num_items_in_batch=None):
        """The batch's mean loss (model's own, compute_loss_func's, or label-smoothed)."""
        labels = inputs.get("labels")
        smoothing = self.args.label_smoothing_factor
        if (smoothing or self.compute_loss_func is not None) and labels is not None:
            inputs = {k: v for k, v in inputs.items() if k != "labels"}
        outputs = model(**inputs)
        if self.compute_loss_func is not None:
            loss = self.compute_loss_func(outputs, labels, num_items_in_batch=num_items_in_batch)
        elif smoothing and labels is not None:
            loss = label_smoothed_loss(outputs.logits, labels, smoothing, shift=self._is_causal(model))
        else:
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs[0]
            if loss is None:
                raise InputError(f"{type(model).__name__} returned no loss: the batch has no labels (keys: "
                                 f"{sorted(inputs)})")
        return (loss, outputs) if return_outputs else loss

    @staticmethod
    def _is_causal(model) -> bool:
        return type(model).__name__.endswith(("ForCausalLM", "LMHeadModel"))

    def _autocast(self):
        if self.args.bf16:
            return torch.autocast(device_type=next(self.model.parameters()).device.type, dtype=torch.bfloat16)
        return torch.autocast(device_type="cpu", enabled=False)

    # --- training ---

    def create_optimizer_and_scheduler(self, num_training_steps: int) -> None:
        if self.optimizer is None:
            self.optimizer = create_optimizer(self.model, self.args)
        if self.lr_scheduler is None:
            self.lr_scheduler = get_scheduler(self.args.lr_scheduler_type, self.optimizer,
                                              num_warmup_steps=self.args.get_warmup_steps(num_training_steps),
                                              num_training_steps=num_training_steps,
                                              scheduler_specific_kwargs=self.args.lr_scheduler_kwargs or {})
        self.callback_handler.optimizer, self.callback_handler.lr_scheduler = self.optimizer, self.lr_scheduler

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        if kwargs:
            raise InputError(f"Trainer.train() got unexpected arguments {sorted(kwargs)}")
        args = self.args
        resume_from_checkpoint = resume_from_checkpoint if resume_from_checkpoint is not None else args.resume_from_checkpoint
        if resume_from_checkpoint is True:
            resume_from_checkpoint = get_last_checkpoint(args.output_dir)
            if resume_from_checkpoint is None:
                raise InputError(f"resume_from_checkpoint=True but {args.output_dir!r} holds no checkpoint")
        if self.model_init is not None:
            set_seed(args.seed, args.full_determinism)
            self.model = self._call_model_init()
            self.callback_handler.model = self.model
            self.optimizer = self.lr_scheduler = None
        self._check_dataset(self.train_dataset, "train_dataset", needs_labels=True)
        if args.load_best_model_at_end and self.eval_dataset is None:
            raise ConfigError("TrainingArguments.load_best_model_at_end needs an eval_dataset")
        if args.eval_strategy != "no":
            for name, dataset in self._eval_sets(None).items():
                self._check_dataset(dataset, name, needs_labels=False)

        rank, world = distributed.start(args, self.model)
        batch_size = args.per_device_train_batch_size * world  # the global batch; each process takes its share
        drop_last = args.dataloader_drop_last or world > 1
        streamed = is_streamed(self.train_dataset)
        accumulation = args.gradient_accumulation_steps
        if streamed:  # passes over the stream until max_steps (checked above)
            updates_per_epoch = None
            max_steps, num_epochs = args.max_steps, sys.maxsize
        else:
            batches_per_epoch = len(self._batches(self.train_dataset, batch_size, 0, drop_last))
            updates_per_epoch = max(math.ceil(batches_per_epoch / accumulation), 1)
            if args.max_steps > 0:
                max_steps, num_epochs = args.max_steps, math.ceil(args.max_steps / updates_per_epoch)
            else:
                max_steps = math.ceil(args.num_train_epochs * updates_per_epoch)
                num_epochs = math.ceil(args.num_train_epochs)
        self.state = TrainerState(max_steps=max_steps, num_train_epochs=num_epochs, train_batch_size=batch_size,
                                  is_local_process_zero=args.local_process_index == 0, is_world_process_zero=rank == 0)
        self.state.compute_steps(args, max_steps)
        model = self.model
        model.train()
        if distributed.is_sharded(model) or (self.optimizer is not None and args.fsdp):
            raise InputError("Trainer with fsdp: the model is sharded once, by train(), and the optimizer built over "
                             "its sharded parameters; pass an unsharded model and no optimizer")
        train_model = distributed.wrap(model, args, world)  # FSDP shards `model` in place: before the optimizer
        if args.torch_compile:  # the training forward and backward; evaluation runs the model as it is
            train_model = torch.compile(train_model, backend=args.torch_compile_backend, mode=args.torch_compile_mode)
        self.create_optimizer_and_scheduler(max_steps)

        start_epoch, skip_batches = 0, 0
        if resume_from_checkpoint:
            saved_state = load_checkpoint(resume_from_checkpoint, self.model, self.optimizer, self.lr_scheduler,
                                          load_rng=False)
            # which process this is comes from this run, not from the process 0 that wrote the checkpoint
            saved_state.is_local_process_zero = self.state.is_local_process_zero
            saved_state.is_world_process_zero = self.state.is_world_process_zero
            self.state = saved_state
            for callback in self.callback_handler.callbacks:
                saved = self.state.stateful_callbacks.get(type(callback).__name__)
                if isinstance(callback, ExportableState) and isinstance(saved, dict):
                    for name, value in saved.get("attributes", {}).items():
                        setattr(callback, name, value)
            if streamed:  # passes are replayed from the first, skipping what was trained
                skip_batches = self.state.global_step * accumulation
            else:
                start_epoch = self.state.global_step // updates_per_epoch
                skip_batches = (self.state.global_step % updates_per_epoch) * accumulation

        self._last_logged = self.state.global_step
        self.control = self.callback_handler.on_train_begin(args, self.state, self.control)
        causal = self._is_causal(model)
        total_loss, logged_loss = 0.0, torch.zeros(())
        grad_norm = None
        start = time.time()
        resuming = bool(resume_from_checkpoint) and self.state.global_step > 0
        for epoch in range(start_epoch, num_epochs):
            if streamed:
                rows = stream_rows(self.train_dataset, epoch, batch_size, rank, world, drop_last)
                skip = sum(1 for _ in itertools.islice(rows, skip_batches))
                skip_batches -= skip
                if skip_batches:  # a whole pass trained before the checkpoint
                    continue
                if resuming:
                    restore_rng_state(resume_from_checkpoint)
                iterator = (self.data_collator(self._inputs(r)) for r in rows)
                epoch_length = max_steps * accumulation  # as Transformers counts a pass of unknown length
            else:
                epoch_batches = self._batches(self.train_dataset, batch_size, epoch, drop_last)
                epoch_batches = [b[rank::world] for b in epoch_batches]  # this process's rows of each global batch
                skip, skip_batches = skip_batches, 0
                if resuming and not skip:  # at an epoch boundary the saved state precedes this epoch's loader
                    restore_rng_state(resume_from_checkpoint)
                iterator = iter(self._loader(self.train_dataset, epoch_batches[skip:]))
                if resuming and skip:  # mid-epoch it follows the loader's creation (which draws a seed)
                    restore_rng_state(resume_from_checkpoint)
                epoch_length = len(epoch_batches)
            resuming = False
            self.control = self.callback_handler.on_epoch_begin(args, self.state, self.control)
            done = skip
            while micro := list(itertools.islice(iterator, accumulation)):
                items = [_loss_items(b.get("labels"), causal) for b in micro]
                total_items = distributed.all_sum(sum(items), world)
                step_loss = torch.zeros(())
                self.control = self.callback_handler.on_step_begin(args, self.state, self.control)
                for i, (batch, n) in enumerate(zip(micro, items)):
                    batch = self._to_device(batch)
                    # DDP and FSDP average gradients over processes: scale by world so they add up instead
                    with distributed.gradient_sync(train_model, i == len(micro) - 1), self._autocast():
                        loss = self.compute_loss(train_model, batch, num_items_in_batch=total_items)
                        (loss * (n * world / total_items)).backward()
                    step_loss += loss.detach().float().cpu() * (n / total_items)
                    if batch is not micro[-1]:
                        self.control = self.callback_handler.on_substep_end(args, self.state, self.control)
                step_loss = distributed.all_sum(step_loss, world)
                if args.max_grad_norm and args.max_grad_norm > 0:
                    grad_norm = distributed.full_tensor(torch.nn.utils.clip_grad_norm_(model.parameters(),
                                                                                       args.max_grad_norm))
                self.control = self.callback_handler.on_pre_optimizer_step(args, self.state, self.control)
                self.optimizer.step()
                self.control = self.callback_handler.on_optimizer_step(args, self.state, self.control)
                self._step_lr = self.lr_scheduler.get_last_lr()[0]  # the rate this step used (what is logged)
                self.lr_scheduler.step()
                model.zero_grad(set_to_none=True)
                if args.logging_nan_inf_filter and not torch.isfinite(step_loss):  # as Transformers: the mean so far
                    step_loss = logged_loss / max(self.state.global_step - self._last_logged, 1)
                logged_loss += step_loss
                total_loss += float(step_loss)
                self.state.global_step += 1
                done += len(micro)
                self.state.epoch = epoch + done / epoch_length
                self.control = self.callback_handler.on_step_end(args, self.state, self.control)
                logged_loss = self._maybe_log_save_evaluate(logged_loss, grad_norm)
                if self.control.should_epoch_stop or self.control.should_training_stop:
                    break
            if done == skip and streamed:
                raise InputError(f"train_dataset yielded no batch of {batch_size} examples in pass {epoch}")
            self.control = self.callback_handler.on_epoch_end(args, self.state, self.control)
            logged_loss = self._maybe_log_save_evaluate(logged_loss, grad_norm)
            if self.control.should_training_stop:
                break

        if args.load_best_model_at_end and self.state.best_model_checkpoint is not None:
            load_checkpoint(self.state.best_model_checkpoint, self.model, load_rng=False)
        runtime = time.time() - start
        train_loss = total_loss / max(self.state.global_step, 1)
        samples = (max_steps * batch_size * accumulation if args.max_steps > 0
                   else len(self.train_dataset) * args.num_train_epochs)
        metrics = {"train_runtime": runtime, "train_samples_per_second": samples / runtime,
                   "train_steps_per_second": self.state.global_step / runtime, "train_loss": train_loss,
                   "epoch": self.state.epoch}
        self.log(metrics)
        if self._pusher is not None:
            self._pusher.wait()
        self.control = self.callback_handler.on_train_end(args, self.state, self.control)
        return TrainOutput(self.state.global_step, train_loss, metrics)

    def _maybe_log_save_evaluate(self, logged_loss: torch.Tensor, grad_norm) -> torch.Tensor:
        if self.control.should_log and self.state.global_step > self._last_logged:
            logs = {"loss": float(logged_loss) / (self.state.global_step - self._last_logged)}
            if grad_norm is not None:
                logs["grad_norm"] = float(grad_norm)
            logs["learning_rate"] = self._step_lr
            self._last_logged = self.state.global_step
            self.log(logs)
            logged_loss = torch.zeros(())
        metrics = None
        if self.control.should_evaluate:
            metrics = self.evaluate()
            self._update_best(metrics)
        if self.control.should_save:
            self._save_checkpoint()
            self.control = self.callback_handler.on_save(self.args, self.state, self.control)
        return logged_loss

    def _update_best(self, metrics: dict) -> None:
        args = self.args
        if not args.metric_for_best_model:
            return
        name = args.metric_for_best_model if args.metric_for_best_model.startswith("eval_") \
            else f"eval_{args.metric_for_best_model}"
        if name not in metrics:
            raise ConfigError(f"TrainingArguments.metric_for_best_model={args.metric_for_best_model!r} is not among "
                              f"the evaluation metrics {sorted(metrics)}")
        value = metrics[name]
        better = np.greater if args.greater_is_better else np.less
        if self.state.best_metric is None or better(value, self.state.best_metric):
            self.state.best_metric, self.state.best_global_step = value, self.state.global_step
            self._best_pending = True

    def _save_checkpoint(self) -> None:
        args = self.args
        path = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        if self._best_pending:  # every process records it; process 0 writes the checkpoint
            self.state.best_model_checkpoint, self._best_pending = path, False
        # callbacks with counters (early stopping's patience) resume where they were
        self.state.stateful_callbacks = {type(c).__name__: c.state() for c in self.callback_handler.callbacks
                                         if isinstance(c, ExportableState)}
        model_state = distributed.model_state(self.model)  # a sharded model: every process gathers
        optimizer_state = None if args.save_only_model else distributed.optimizer_state(self.model, self.optimizer)
        if self.state.is_world_process_zero:
            save_checkpoint(args.output_dir, self.state.global_step, self.model, self.optimizer, self.lr_scheduler,
                            self.state, args, self.processing_class, save_only_model=args.save_only_model,
                            model_state_dict=model_state, optimizer_state_dict=optimizer_state)
            if args.push_to_hub:
                self._hub().push_checkpoint(path, self.state.global_step)
            rotate_checkpoints(args.output_dir, args.save_total_limit, self.state.best_model_checkpoint)
        distributed.barrier()

    def log(self, logs: dict, start_time: float | None = None) -> None:
        if self.state.epoch is not None:
            logs["epoch"] = self.state.epoch
        entry = {**logs, "step": self.state.global_step}
        self.state.log_history.append(entry)
        if self.args.output_dir and self.state.is_world_process_zero:
            os.makedirs(self.args.output_dir, exist_ok=True)  # args may have changed since __init__ checked it
            with open(os.path.join(self.args.output_dir, LOG_FILE), "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")
        self.control = self.callback_handler.on_log(self.args, self.state, self.control, logs)

    # --- evaluation and prediction ---

    def _eval_sets(self, eval_dataset) -> dict:
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if isinstance(dataset, dict):
            return {f"eval_dataset[{k!r}]": v for k, v in dataset.items()}
        return {"eval_dataset": dataset}

    def evaluate(self, eval_dataset=None, ignore_keys: list[str] | None = None, metric_key_prefix: str = "eval") -> dict:
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if isinstance(dataset, dict):
            metrics = {}
            for name, part in dataset.items():
                metrics.update(self.evaluate(part, ignore_keys, f"{metric_key_prefix}_{name}"))
            return metrics
        self._check_dataset(dataset, "eval_dataset", needs_labels=False)
        output = self._prediction_loop(dataset, ignore_keys, metric_key_prefix)
        self.log(output.metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, output.metrics)
        return output.metrics

    def predict(self, test_dataset, ignore_keys: list[str] | None = None, metric_key_prefix: str = "test"):
        self._check_dataset(test_dataset, "test_dataset", needs_labels=False)
        output = self._prediction_loop(test_dataset, ignore_keys, metric_key_prefix)
        self.control = self.callback_handler.on_predict(self.args, self.state, self.control, output.metrics)
        return output

    def prediction_step(self, model, inputs: dict, prediction_loss_only: bool, ignore_keys=None):
        """(loss, logits, labels) of one batch, without gradients."""
        labels = inputs.get("labels")
        with torch.no_grad(), self._autocast():
            if labels is not None:
                loss, outputs = self.compute_loss(model, inputs, return_outputs=True)
                loss = loss.detach()
            else:
                loss, outputs = None, model(**inputs)
        if prediction_loss_only:
            return loss, None, None
        ignore = set(ignore_keys or []) | {"loss", "past_key_values"}
        if isinstance(outputs, Mapping):  # ModelOutput: the fields that are set, minus loss and caches
            values = [v for k, v in outputs.items() if k not in ignore]
        else:
            values = list(outputs[1:] if loss is not None else outputs)
        logits = values[0] if len(values) == 1 else tuple(values)
        return loss, logits, labels

    def _prediction_loop(self, dataset, ignore_keys, prefix: str) -> PredictionOutput:
        model = self.model
        was_training = model.training
        model.eval()
        batches = self._batches(dataset, self.args.per_device_eval_batch_size, None, False)
        rank, world = distributed.rank_and_world()
        mine = list(range(rank, len(batches), world))  # processes take turns over the batches
        turns = len(mine)
        if distributed.is_sharded(model):  # every process must run as many forwards (each one gathers weights)
            mine += [mine[-1] if mine else 0] * (math.ceil(len(batches) / world) - turns)
        records = []  # (batch number, loss, rows, logits, labels) on the CPU
        start = time.time()
        for j, (number, batch) in enumerate(zip(mine, self._loader(dataset, [batches[i] for i in mine]))):
            batch = self._to_device(batch)
            loss, logits, labels = self.prediction_step(model, batch, prediction_loss_only=False, ignore_keys=ignore_keys)
            if j >= turns:
                continue  # a repeat that kept a sharded model's processes in step
            if logits is not None and self.preprocess_logits_for_metrics is not None:
                logits = self.preprocess_logits_for_metrics(logits, labels)
            records.append((number, None if loss is None else float(loss), len(batches[number]), _to_cpu(logits),
                            _to_cpu(labels)))
            self.control = self.callback_handler.on_prediction_step(self.args, self.state, self.control)
        model.train(was_training)
        if world > 1:  # every process gets every batch's results, in dataset order
            import torch.distributed as dist

            gathered = [None] * world
            dist.all_gather_object(gathered, records)
            records = sorted((r for part in gathered for r in part), key=lambda r: r[0])
        losses = [(loss, n) for _, loss, n, _, _ in records if loss is not None]
        all_logits = [r[3] for r in records]
        all_labels = [r[4] for r in records if r[4] is not None]
        predictions = _concat(all_logits)
        label_ids = _concat(all_labels) if all_labels else None
        metrics = {}
        if self.compute_metrics is not None and predictions is not None and label_ids is not None:
            metrics = dict(self.compute_metrics(EvalPrediction(predictions, label_ids)))
        if losses:
            metrics["loss"] = sum(l * n for l, n in losses) / sum(n for _, n in losses)
        runtime = time.time() - start
        metrics.update(runtime=runtime, samples_per_second=len(dataset) / runtime,
                       steps_per_second=len(batches) / runtime)
        metrics = {k if k.startswith(f"{prefix}_") else f"{prefix}_{k}": v for k, v in metrics.items()}
        return PredictionOutput(predictions, label_ids, metrics)

    # --- saving ---

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """The model (whole, when training sharded it) and processing class, written by process 0; pushed to
        the hub too when push_to_hub is set."""
        output_dir = output_dir or self.args.output_dir
        model_state = distributed.model_state(self.model)
        if distributed.rank_and_world()[0] == 0:
            self.model.save_pretrained(output_dir, state_dict=model_state)
            if self.processing_class is not None and hasattr(self.processing_class, "save_pretrained"):
                self.processing_class.save_pretrained(output_dir)
            self.create_model_card(output_dir=output_dir, **self._card_fields)
        distributed.barrier()
        if self.args.push_to_hub and not _internal_call:
            self.push_to_hub(commit_message="Model save")

    def hyperparameter_search(self, hp_space: Callable | None = None, compute_objective: Callable | None = None,
                              n_trials: int = 20, direction: str = "minimize", backend: str | None = None,
                              hp_name: Callable | None = None, **kwargs):
        """Train n_trials models (model_init) with settings from hp_space(trial) and return the BestRun; optuna
        when installed (backend="optuna", kwargs go to optuna.create_study), else backend="random". See
        training/search.py."""
        from .search import run_search

        return run_search(self, hp_space, compute_objective, n_trials, direction, backend, hp_name, **kwargs)

    def create_model_card(self, language=None, license=None, tags=None, model_name=None, finetuned_from=None,
                          tasks=None, dataset_tags=None, dataset=None, dataset_args=None, output_dir=None) -> str:
        """Write output_dir/README.md: the hub's YAML metadata and a summary of this training (see
        training/model_card.py); returns its path."""
        from .model_card import README_NAME, build_model_card

        card = build_model_card(self.model, self.args, self.state.log_history, model_name=model_name,
                                language=language, license=license, tags=tags, finetuned_from=finetuned_from,
                                tasks=tasks, dataset_tags=dataset_tags, dataset=dataset, dataset_args=dataset_args)
        path = os.path.join(output_dir or self.args.output_dir, README_NAME)
        atomic_write_text(path, str(card))
        return path

    def _hub(self):
        if self._pusher is None:
            from .pushing import HubPusher

            self._pusher = HubPusher(self.args)
        return self._pusher

    def push_to_hub(self, commit_message: str | None = "End of training", blocking: bool = True, token: str | None = None,
                    revision: str | None = None, **kwargs):
        """Save the model into output_dir and upload it (not its checkpoints) to hub_model_id (default: the
        output folder's name); the commit info, or a Future when not blocking. Process 0 uploads."""
        unknown = set(kwargs) - set(CARD_FIELDS)
        if unknown:
            raise InputError(f"Trainer.push_to_hub: unexpected arguments {sorted(unknown)}; model card fields are "
                             f"{list(CARD_FIELDS)}")
        self._card_fields = {**self._card_fields, **kwargs}
        if token is not None or revision is not None:
            self.args.hub_token = token if token is not None else self.args.hub_token
            self.args.hub_revision = revision if revision is not None else self.args.hub_revision
            self._pusher = None
        self.save_model(_internal_call=True)
        if not self.args.should_save:
            return None
        return self._hub().push_output(self.args.output_dir, commit_message or "End of training", blocking)


def _to_cpu(value):
    if isinstance(value, tuple):
        return tuple(_to_cpu(v) for v in value)
    return value.detach().cpu() if isinstance(value, torch.Tensor) else value


def _concat(parts: list):
    """Per-batch tensors (or tuples of them) -> one numpy array each, padded with -100 where lengths differ."""
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    if isinstance(parts[0], tuple):
        return tuple(_concat([p[i] for p in parts]) for i in range(len(parts[0])))
    arrays = [p.detach().float().cpu().numpy() if p.is_floating_point() else p.detach().cpu().numpy() for p in parts]
    if arrays[0].ndim > 1 and len({a.shape[1] for a in arrays}) > 1:
        width = max(a.shape[1] for a in arrays)
        arrays = [np.pad(a, [(0, 0), (0, width - a.shape[1])] + [(0, 0)] * (a.ndim - 2), constant_values=-100)
                  for a in arrays]
    return np.concatenate(arrays)


class Seq2SeqTrainer(Trainer):
    """Trainer for encoder-decoder models; with `predict_with_generate`, evaluate() and predict() return
    generated token ids (generate() with generation_max_length / generation_num_beams, or keyword arguments)."""

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval", **gen_kwargs):
        self._gen_kwargs = gen_kwargs
        return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)

    def predict(self, test_dataset, ignore_keys=None, metric_key_prefix: str = "test", **gen_kwargs):
        self._gen_kwargs = gen_kwargs
        return super().predict(test_dataset, ignore_keys, metric_key_prefix)

    def _generation_kwargs(self) -> dict:
        kwargs = dict(getattr(self, "_gen_kwargs", None) or {})
        if kwargs.get("max_length") is None and kwargs.get("max_new_tokens") is None \
                and getattr(self.args, "generation_max_length", None) is not None:
            kwargs["max_length"] = self.args.generation_max_length
        if kwargs.get("num_beams") is None and getattr(self.args, "generation_num_beams", None) is not None:
            kwargs["num_beams"] = self.args.generation_num_beams
        return kwargs

    def prediction_step(self, model, inputs: dict, prediction_loss_only: bool, ignore_keys=None):
        if not getattr(self.args, "predict_with_generate", False) or prediction_loss_only:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        labels = inputs.get("labels")
        encoder_inputs = {k: v for k, v in inputs.items() if not k.startswith("decoder_") and k != "labels"}
        kwargs = self._generation_kwargs()
        with torch.no_grad(), self._autocast():
            generated = model.generate(**encoder_inputs, **kwargs)
            loss = self.compute_loss(model, inputs).detach() if labels is not None else None
        # every batch as wide as the longest generation allowed, padded with the pad token (as Transformers 4)
        config = model.generation_config
        width = (kwargs["max_new_tokens"] + 1 if kwargs.get("max_new_tokens") is not None
                 else kwargs.get("max_length") or config.max_length)
        if generated.shape[-1] < width:
            pad = config.pad_token_id if config.pad_token_id is not None else config.eos_token_id
            pad = pad[0] if isinstance(pad, (list, tuple)) else pad
            generated = torch.nn.functional.pad(generated, (0, width - generated.shape[-1]), value=pad)
        return loss, generated, labels
