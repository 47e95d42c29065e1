"""report_to: experiment trackers fed from the Trainer's logs, each a callback, each only when its package is
installed. The jsonl log (trainer_log.jsonl) is written whatever report_to says.

Metric names follow Transformers' layout in each tracker: `train/loss`, `eval/loss`, `test/accuracy` in
TensorBoard and Weights & Biases; the log's own keys (`loss`, `eval_loss`) in MLflow. Every tracker gets the
run's parameters (training arguments and model config) and writes from process 0 only. Configuration comes
from each tracker's own environment variables, as with Transformers: WANDB_PROJECT / WANDB_MODE / ...,
MLFLOW_TRACKING_URI / MLFLOW_EXPERIMENT_NAME / MLFLOW_RUN_ID / MLFLOW_NESTED_RUN / MLFLOW_TAGS.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
from datetime import datetime

from ..errors import ConfigError, UnsupportedOptionError
from .callbacks import TrainerCallback

# report_to name -> the module it needs
TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}
NOT_YET = ("comet_ml", "neptune", "clearml", "dagshub", "dvclive", "swanlab", "trackio")


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
        callbacks.append({"tensorboard": TensorBoardCallback, "wandb": WandbCallback, "mlflow": MLflowCallback}[name]())
    return callbacks


def run_parameters(args, model) -> dict:
    """The training arguments and the model's config, as one flat dict (what Transformers sends trackers)."""
    config = getattr(model, "config", None)
    return {**(config.to_dict() if config is not None else {}), **args.to_dict()}


def scalars(logs: dict | None) -> dict:
    return {k: v for k, v in (logs or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


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
        for key, value in scalars(logs).items():
            self.tb_writer.add_scalar(tracker_name(key), value, state.global_step)
        self.tb_writer.flush()

    def on_train_end(self, args, state, control, **kwargs):
        if self.tb_writer is not None:
            self.tb_writer.close()
            self.tb_writer = None


class WandbCallback(TrainerCallback):
    """Weights & Biases: a run started on train begin (unless one is active), its config the arguments and model
    config, each log under `train/...` / `eval/...` with `train/global_step` as its step metric."""

    def __init__(self):
        import wandb

        self._wandb = wandb
        self._owns_run = False

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if not state.is_world_process_zero:
            return
        if self._wandb.run is None:
            default_name = args.run_name is None or args.run_name == args.output_dir
            self._wandb.init(project=os.getenv("WANDB_PROJECT", "huggingface"),
                             name=None if default_name else args.run_name)
            self._owns_run = True
        self._wandb.config.update(run_parameters(args, model), allow_val_change=True)
        self._wandb.define_metric("train/global_step")
        self._wandb.define_metric("*", step_metric="train/global_step", step_sync=True)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or self._wandb.run is None:
            return
        numbers = {tracker_name(k): v for k, v in scalars(logs).items()}
        self._wandb.log({**numbers, "train/global_step": state.global_step})

    def on_train_end(self, args, state, control, **kwargs):
        if self._owns_run and self._wandb.run is not None:
            self._wandb.finish()
            self._owns_run = False


class MLflowCallback(TrainerCallback):
    """MLflow: a run started on train begin (or the active one / MLFLOW_RUN_ID's), the arguments and model
    config as parameters (values cut to MLflow's length limit), each log's numbers as metrics at the global step."""

    def __init__(self):
        import mlflow

        self._mlflow = mlflow
        self._owns_run = False

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if not state.is_world_process_zero:
            return
        mlflow = self._mlflow
        if os.getenv("MLFLOW_EXPERIMENT_NAME"):
            mlflow.set_experiment(os.environ["MLFLOW_EXPERIMENT_NAME"])
        nested = os.getenv("MLFLOW_NESTED_RUN", "false").lower() in ("1", "true", "yes")
        if mlflow.active_run() is None or nested:
            mlflow.start_run(run_name=args.run_name, run_id=os.getenv("MLFLOW_RUN_ID"), nested=nested)
            self._owns_run = True
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

        params = {k: str(v)[:MAX_PARAM_VAL_LENGTH] for k, v in run_parameters(args, model).items()}
        items = list(params.items())
        for start in range(0, len(items), MAX_PARAMS_TAGS_PER_BATCH):
            mlflow.log_params(dict(items[start:start + MAX_PARAMS_TAGS_PER_BATCH]))
        if os.getenv("MLFLOW_TAGS"):
            try:
                tags = json.loads(os.environ["MLFLOW_TAGS"])
            except json.JSONDecodeError as e:
                raise ConfigError(f"MLFLOW_TAGS must be a JSON object of tags, got {os.environ['MLFLOW_TAGS']!r}") from e
            mlflow.set_tags(tags)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self._mlflow.active_run() is not None:
            self._mlflow.log_metrics(scalars(logs), step=state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        if self._owns_run and self._mlflow.active_run() is not None:
            self._mlflow.end_run()
            self._owns_run = False
