"""report_to: experiment trackers fed from the Trainer's logs, each a callback, each only when its package is
installed. The jsonl log (trainer_log.jsonl) is written whatever report_to says.

Metric names follow Transformers' layout in the tracker: `train/loss`, `eval/loss`, `test/accuracy`.
"""

from __future__ import annotations

import importlib.util
import os
import socket
from datetime import datetime

from ..errors import ConfigError, UnsupportedOptionError
from .callbacks import TrainerCallback

# report_to name -> the module it needs
TRACKERS = {"tensorboard": "tensorboard"}
NOT_YET = ("wandb", "mlflow", "comet_ml", "neptune", "clearml", "dagshub", "dvclive", "swanlab", "trackio")


def reporter_callbacks(report_to: list[str]) -> list[TrainerCallback]:
    """The callbacks for TrainingArguments.report_to ("all": every tracker installed)."""
    names = [n for n in TRACKERS if importlib.util.find_spec(TRACKERS[n]) is not None] if "all" in report_to \
        else list(report_to)
    callbacks = []
    for name in names:
        if name in NOT_YET:
            raise UnsupportedOptionError(f"TrainingArguments.report_to={name!r} is not supported yet; supported: "
                                         f"{sorted(TRACKERS)} (every log entry is also in trainer_log.jsonl)")
        if name not in TRACKERS:
            raise ConfigError(f"TrainingArguments.report_to: unknown tracker {name!r}; expected 'none', 'all' or one "
                              f"of {sorted(TRACKERS)}")
        if importlib.util.find_spec(TRACKERS[name]) is None:
            raise ConfigError(f"TrainingArguments.report_to={name!r} needs the {TRACKERS[name]} package: "
                              f"pip install {TRACKERS[name]}")
        callbacks.append(TensorBoardCallback())
    return callbacks


def tracker_name(key: str) -> str:
    """'eval_loss' -> 'eval/loss', 'test_f1' -> 'test/f1', 'loss' -> 'train/loss'."""
    for prefix in ("eval_", "test_"):
        if key.startswith(prefix):
            return f"{prefix[:-1]}/{key[len(prefix):]}"
    return f"train/{key}"


class TensorBoardCallback(TrainerCallback):
    """Scalars to TensorBoard event files under logging_dir (default: output_dir/runs/<date>_<host>), written by
    process 0; the training arguments as text."""

    def __init__(self, tb_writer=None):
        self.tb_writer = tb_writer

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        if self.tb_writer is None:
            from torch.utils.tensorboard import SummaryWriter

            run = f"{datetime.now():%b%d_%H-%M-%S}_{socket.gethostname()}"
            log_dir = getattr(args, "logging_dir", None) or os.path.join(args.output_dir, "runs", run)
            self.tb_writer = SummaryWriter(log_dir=log_dir)
        self.tb_writer.add_text("args", args.to_json_string())

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.tb_writer is None or not state.is_world_process_zero:
            return
        for key, value in (logs or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.tb_writer.add_scalar(tracker_name(key), value, state.global_step)
        self.tb_writer.flush()

    def on_train_end(self, args, state, control, **kwargs):
        if self.tb_writer is not None:
            self.tb_writer.close()
            self.tb_writer = None
