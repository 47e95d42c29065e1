"""What a training loop shares with its callbacks: `TrainerState` (progress, saved as trainer_state.json),
`TrainerControl` (the flags callbacks set), the `TrainerCallback` events and the handler that fires them.

`args` is duck-typed: Transformers' `TrainingArguments`, ours, or any object with the same attribute names.
Strategies compare as strings ("no", "steps", "epoch"), which Transformers' str enums also are.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass

from ..errors import ConfigError, InputError
from ..files import atomic_write_text

logger = logging.getLogger(__name__)


class ExportableState:
    """A callback whose settings and counters are saved in `TrainerState.stateful_callbacks` for resuming."""

    def state(self) -> dict:
        """{"args": constructor keywords, "attributes": counters to restore}."""
        raise NotImplementedError(f"{type(self).__name__} must define state() to be saved with the trainer state")

    @classmethod
    def from_state(cls, state: dict):
        instance = cls(**state["args"])
        for name, value in state["attributes"].items():
            setattr(instance, name, value)
        return instance


@dataclass
class TrainerState:
    """Training progress; the trainer writes it to trainer_state.json in every checkpoint. Field names and the
    JSON layout are Transformers'."""

    epoch: float = 0
    global_step: int = 0
    max_steps: int = 0
    logging_steps: int = 500
    eval_steps: int = 500
    save_steps: int = 500
    train_batch_size: int | None = None
    num_train_epochs: int = 0
    num_input_tokens_seen: int = 0
    total_flos: float = 0
    log_history: list[dict[str, float]] = None
    best_metric: float | None = None
    best_global_step: int | None = None
    best_model_checkpoint: str | None = None
    is_local_process_zero: bool = True
    is_world_process_zero: bool = True
    is_hyper_param_search: bool = False
    trial_name: str | None = None
    trial_params: dict[str, str | float | int | bool] | None = None
    stateful_callbacks: dict | list | None = None

    def __post_init__(self):
        if self.log_history is None:
            self.log_history = []
        if self.stateful_callbacks is None:
            self.stateful_callbacks = {}
        elif not isinstance(self.stateful_callbacks, dict):
            # callback objects -> {class name: state, or a list of states when a class occurs more than once}
            saved = {}
            for callback in self.stateful_callbacks:
                if not isinstance(callback, ExportableState):
                    raise InputError(f"stateful_callbacks must be ExportableState callbacks, got {type(callback)}")
                name = type(callback).__name__
                if name not in saved:
                    saved[name] = callback.state()
                else:
                    if not isinstance(saved[name], list):
                        saved[name] = [saved[name]]
                    saved[name].append(callback.state())
            self.stateful_callbacks = saved

    def save_to_json(self, json_path: str) -> None:
        """Write atomically: a crash mid-write leaves the previous file whole."""
        atomic_write_text(json_path, json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load_from_json(cls, json_path: str) -> TrainerState:
        with open(json_path, encoding="utf-8") as f:
            return cls(**json.load(f))

    def compute_steps(self, args, max_steps: int) -> None:
        """Copy args' logging/eval/save steps; a value below 1 is a fraction of `max_steps`, rounded up."""
        for kind in ("logging", "eval", "save"):
            steps = getattr(args, f"{kind}_steps")
            if steps is not None:
                setattr(self, f"{kind}_steps", math.ceil(max_steps * steps) if steps < 1 else steps)


@dataclass
class TrainerControl(ExportableState):
    """Flags callbacks set to steer the loop; the loop clears them when it acts on them."""

    should_training_stop: bool = False
    should_epoch_stop: bool = False
    should_save: bool = False
    should_evaluate: bool = False
    should_log: bool = False

    def _new_training(self):
        self.should_training_stop = False

    def _new_epoch(self):
        self.should_epoch_stop = False

    def _new_step(self):
        self.should_save = False
        self.should_evaluate = False
        self.should_log = False

    def state(self) -> dict:
        return {"args": dataclasses.asdict(self), "attributes": {}}


class TrainerCallback:
    """Base class: override the events you need. Each gets (args, state, control, **kwargs) with kwargs model,
    processing_class, optimizer, lr_scheduler, train_dataloader, eval_dataloader (and metrics/logs where noted);
    it may change `control` in place or return a new one."""

    def on_init_end(self, args, state, control, **kwargs):
        """End of the trainer's __init__."""

    def on_train_begin(self, args, state, control, **kwargs):
        """Start of training."""

    def on_train_end(self, args, state, control, **kwargs):
        """End of training."""

    def on_epoch_begin(self, args, state, control, **kwargs):
        """Start of an epoch."""

    def on_epoch_end(self, args, state, control, **kwargs):
        """End of an epoch."""

    def on_step_begin(self, args, state, control, **kwargs):
        """Start of an optimizer step (before its first gradient-accumulation substep)."""

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        """After gradient clipping, before `optimizer.step()`."""

    def on_optimizer_step(self, args, state, control, **kwargs):
        """After `optimizer.step()`, before the gradients are zeroed."""

    def on_substep_end(self, args, state, control, **kwargs):
        """End of a gradient-accumulation substep that did not step the optimizer."""

    def on_step_end(self, args, state, control, **kwargs):
        """End of an optimizer step."""

    def on_evaluate(self, args, state, control, **kwargs):
        """After an evaluation; kwargs hold `metrics`."""

    def on_predict(self, args, state, control, metrics, **kwargs):
        """After a successful prediction."""

    def on_save(self, args, state, control, **kwargs):
        """After a checkpoint was saved."""

    def on_log(self, args, state, control, **kwargs):
        """After logging; kwargs hold `logs`."""

    def on_prediction_step(self, args, state, control, **kwargs):
        """After one prediction (evaluation) batch."""


class CallbackHandler(TrainerCallback):
    """Holds the callbacks and fires each event on all of them in order, passing the trainer's objects along.
    Before an event it clears the control flags that event consumes (e.g. `should_log` before `on_log`)."""

    def __init__(self, callbacks=(), model=None, processing_class=None, optimizer=None, lr_scheduler=None):
        self.callbacks = []
        for callback in callbacks:
            self.add_callback(callback)
        self.model = model
        self.processing_class = processing_class
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.train_dataloader = None
        self.eval_dataloader = None
        if not any(isinstance(cb, DefaultFlowCallback) for cb in self.callbacks):
            logger.warning("No DefaultFlowCallback among the callbacks (%s): nothing will decide when to log, "
                           "evaluate or save", self.callback_list)

    @property
    def callback_list(self) -> str:
        return "\n".join(type(cb).__name__ for cb in self.callbacks)

    def add_callback(self, callback) -> None:
        """Add a callback instance, or a class to instantiate with no arguments."""
        cls = callback if isinstance(callback, type) else type(callback)
        if any(type(cb) is cls for cb in self.callbacks):
            logger.warning("Adding a second %s; the callbacks are now:\n%s", cls.__name__, self.callback_list)
        self.callbacks.append(callback() if isinstance(callback, type) else callback)

    def _find(self, callback):
        for cb in self.callbacks:
            if (isinstance(cb, callback) if isinstance(callback, type) else cb == callback):
                return cb
        return None

    def pop_callback(self, callback):
        """Remove and return the first callback of that class, or that instance; None if absent."""
        found = self._find(callback)
        if found is not None:
            self.callbacks.remove(found)
        return found

    def remove_callback(self, callback) -> None:
        """Remove the first callback of that class (nothing if absent), or that instance (ValueError if absent)."""
        found = self._find(callback)
        if found is None and not isinstance(callback, type):
            raise InputError(f"remove_callback: {callback!r} is not among the callbacks:\n{self.callback_list}")
        if found is not None:
            self.callbacks.remove(found)

    def call_event(self, event: str, args, state, control, **kwargs):
        for callback in self.callbacks:
            result = getattr(callback, event)(
                args, state, control, model=self.model, processing_class=self.processing_class,
                optimizer=self.optimizer, lr_scheduler=self.lr_scheduler, train_dataloader=self.train_dataloader,
                eval_dataloader=self.eval_dataloader, **kwargs,
            )
            if result is not None:
                control = result
        return control

    def on_init_end(self, args, state, control, **kwargs):
        return self.call_event("on_init_end", args, state, control, **kwargs)

    def on_train_begin(self, args, state, control, **kwargs):
        control.should_training_stop = False
        return self.call_event("on_train_begin", args, state, control, **kwargs)

    def on_train_end(self, args, state, control, **kwargs):
        return self.call_event("on_train_end", args, state, control, **kwargs)

    def on_epoch_begin(self, args, state, control, **kwargs):
        control.should_epoch_stop = False
        return self.call_event("on_epoch_begin", args, state, control, **kwargs)

    def on_epoch_end(self, args, state, control, **kwargs):
        return self.call_event("on_epoch_end", args, state, control, **kwargs)

    def on_step_begin(self, args, state, control, **kwargs):
        control.should_log = control.should_evaluate = control.should_save = False
        return self.call_event("on_step_begin", args, state, control, **kwargs)

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        return self.call_event("on_pre_optimizer_step", args, state, control, **kwargs)

    def on_optimizer_step(self, args, state, control, **kwargs):
        return self.call_event("on_optimizer_step", args, state, control, **kwargs)

    def on_substep_end(self, args, state, control, **kwargs):
        return self.call_event("on_substep_end", args, state, control, **kwargs)

    def on_step_end(self, args, state, control, **kwargs):
        return self.call_event("on_step_end", args, state, control, **kwargs)

    def on_evaluate(self, args, state, control, metrics, **kwargs):
        control.should_evaluate = False
        return self.call_event("on_evaluate", args, state, control, metrics=metrics, **kwargs)

    def on_predict(self, args, state, control, metrics, **kwargs):
        return self.call_event("on_predict", args, state, control, metrics=metrics, **kwargs)

    def on_save(self, args, state, control, **kwargs):
        control.should_save = False
        return self.call_event("on_save", args, state, control, **kwargs)

    def on_log(self, args, state, control, logs, **kwargs):
        control.should_log = False
        return self.call_event("on_log", args, state, control, logs=logs, **kwargs)

    def on_prediction_step(self, args, state, control, **kwargs):
        return self.call_event("on_prediction_step", args, state, control, **kwargs)


class DefaultFlowCallback(TrainerCallback):
    """Decides when to log, evaluate and save from args' strategies ("no" / "steps" / "epoch") and the step
    counts in `state` (see `TrainerState.compute_steps`); stops training at `state.max_steps`."""

    def on_step_end(self, args, state, control, **kwargs):
        step = state.global_step
        eval_due = args.eval_strategy == "steps" and getattr(args, "eval_delay", 0) <= step
        if step == 1 and getattr(args, "logging_first_step", False):
            control.should_log = True
        if args.logging_strategy == "steps" and step % state.logging_steps == 0:
            control.should_log = True
        if eval_due and step % state.eval_steps == 0:
            control.should_evaluate = True
        if args.save_strategy == "steps" and state.save_steps > 0 and step % state.save_steps == 0:
            control.should_save = True
        if step >= state.max_steps:
            # the last step always evaluates and saves under "steps", even off the interval
            control.should_training_stop = True
            if eval_due and step % state.eval_steps != 0:
                control.should_evaluate = True
            if args.save_strategy == "steps":
                control.should_save = True
        return control

    def on_epoch_end(self, args, state, control, **kwargs):
        if args.logging_strategy == "epoch":
            control.should_log = True
        if args.eval_strategy == "epoch" and getattr(args, "eval_delay", 0) <= state.epoch:
            control.should_evaluate = True
        if args.save_strategy == "epoch":
            control.should_save = True
        return control


def _format_logs(logs: dict, max_str_len: int | None = None) -> dict:
    """Floats to 4 significant digits, over-long strings elided, total_flos dropped (it is in the state)."""
    shown = {}
    for key, value in logs.items():
        if key == "total_flos":
            continue
        if isinstance(value, float):
            value = f"{value:.4g}"
        elif isinstance(value, str) and max_str_len is not None and len(value) > max_str_len:
            value = (f"[String too long to display, length: {len(value)} > {max_str_len}. "
                     "Consider increasing `max_str_len` if needed.]")
        shown[key] = value
    return shown


class PrinterCallback(TrainerCallback):
    """Prints each log dict on the local main process."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_local_process_zero and logs is not None:
            print(_format_logs(logs))


class ProgressCallback(TrainerCallback):
    """tqdm bars for training steps and evaluation batches; logs are written under the bar. Silent when tqdm is
    not installed or `args.disable_tqdm` is set."""

    def __init__(self, max_str_len: int = 100):
        self.training_bar = None
        self.prediction_bar = None
        self.max_str_len = max_str_len
        self.current_step = 0

    @staticmethod
    def _tqdm(args):
        from ..logging import is_progress_bar_enabled

        if getattr(args, "disable_tqdm", False) or not is_progress_bar_enabled():
            return None
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return None
        return tqdm

    def on_train_begin(self, args, state, control, **kwargs):
        tqdm = self._tqdm(args)
        if state.is_world_process_zero and tqdm is not None:
            self.training_bar = tqdm(total=state.max_steps, dynamic_ncols=True)
        self.current_step = 0

    def on_step_end(self, args, state, control, **kwargs):
        if self.training_bar is not None:
            self.training_bar.update(state.global_step - self.current_step)
        self.current_step = state.global_step

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        tqdm = self._tqdm(args)
        if not state.is_world_process_zero or tqdm is None or not _has_length(eval_dataloader):
            return
        if self.prediction_bar is None:
            self.prediction_bar = tqdm(total=len(eval_dataloader), leave=self.training_bar is None,
                                       dynamic_ncols=True)
        self.prediction_bar.update(1)

    def _close_prediction_bar(self):
        if self.prediction_bar is not None:
            self.prediction_bar.close()
        self.prediction_bar = None

    def on_evaluate(self, args, state, control, **kwargs):
        self._close_prediction_bar()

    def on_predict(self, args, state, control, **kwargs):
        self._close_prediction_bar()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.training_bar is not None and logs is not None:
            self.training_bar.write(str(_format_logs(logs, self.max_str_len)))

    def on_train_end(self, args, state, control, **kwargs):
        if self.training_bar is not None:
            self.training_bar.close()
        self.training_bar = None


def _has_length(loader) -> bool:
    try:
        return len(loader) is not None
    except TypeError:  # an iterable dataset has no length
        return False


class EarlyStoppingCallback(TrainerCallback, ExportableState):
    """Stop training after `early_stopping_patience` evaluations in a row whose `args.metric_for_best_model` did not
    beat `state.best_metric` by more than `early_stopping_threshold` (direction from `args.greater_is_better`).
    The trainer updates `state.best_metric` after each `on_evaluate`."""

    def __init__(self, early_stopping_patience: int = 1, early_stopping_threshold: float = 0.0):
        self.early_stopping_patience = early_stopping_patience
        self.early_stopping_threshold = early_stopping_threshold or 0.0
        self.early_stopping_patience_counter = 0

    def on_train_begin(self, args, state, control, **kwargs):
        if args.metric_for_best_model is None:
            raise ConfigError("EarlyStoppingCallback needs args.metric_for_best_model (e.g. 'loss'), got None")
        if args.eval_strategy == "no":
            raise ConfigError("EarlyStoppingCallback needs args.eval_strategy 'steps' or 'epoch', got 'no'")
        if not getattr(args, "load_best_model_at_end", False):
            logger.warning("EarlyStoppingCallback without load_best_model_at_end=True: the best model will not be "
                           "loaded when training ends")

    def check_metric_value(self, args, state, control, metric_value) -> None:
        greater = getattr(args, "greater_is_better", None)
        if greater is None:  # Transformers' default: every metric but a loss improves upwards
            greater = not args.metric_for_best_model.endswith("loss")
        best = state.best_metric
        improved = best is None or (
            (metric_value > best if greater else metric_value < best)
            and abs(metric_value - best) > self.early_stopping_threshold
        )
        self.early_stopping_patience_counter = 0 if improved else self.early_stopping_patience_counter + 1

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        name = args.metric_for_best_model
        name = name if name.startswith("eval_") else f"eval_{name}"
        value = (metrics or {}).get(name)
        if value is None:
            logger.warning("EarlyStoppingCallback: no %r in the evaluation metrics; early stopping is off for this "
                           "evaluation", name)
            return
        self.check_metric_value(args, state, control, value)
        if self.early_stopping_patience_counter >= self.early_stopping_patience:
            control.should_training_stop = True

    def state(self) -> dict:
        return {
            "args": {"early_stopping_patience": self.early_stopping_patience,
                     "early_stopping_threshold": self.early_stopping_threshold},
            "attributes": {"early_stopping_patience_counter": self.early_stopping_patience_counter},
        }
