"""report_to: TensorBoard, Weights & Biases and MLflow receive every logged number under Transformers' names
(read back from what each tracker wrote: TensorBoard's event reader, the offline W&B run file, MLflow's client
over a file store); trackers not installed or not supported are refused by name."""

from __future__ import annotations

import glob
import importlib.util
import json
import struct

import pytest

import pretrained
from pretrained.errors import ConfigError, UnsupportedOptionError
from pretrained.training import TrainingArguments
from pretrained.training.reporters import reporter_callbacks, tracker_name
from pretrained.training.trainer import Trainer

from test_trainer import BERT, COMMON, classification_data


def test_tensorboard_gets_train_and_eval_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    args = TrainingArguments(output_dir=str(tmp_path / "out"), **dict(
        COMMON, report_to="tensorboard", eval_strategy="steps", eval_steps=2, num_train_epochs=1))
    trainer = Trainer(model=pretrained.BertForSequenceClassification(pretrained.BertConfig(**BERT)), args=args,
                      train_dataset=classification_data(n=12), eval_dataset=classification_data(n=5, seed=3))
    trainer.train()
    runs = list((tmp_path / "out" / "runs").iterdir())
    assert len(runs) == 1
    events = EventAccumulator(str(runs[0]))
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert {"train/loss", "train/learning_rate", "train/grad_norm", "eval/loss", "train/train_loss"} <= set(scalars)
    logged = [(e["step"], e["loss"]) for e in trainer.state.log_history if "loss" in e]
    written = [(s.step, s.value) for s in events.Scalars("train/loss")]
    assert [s for s, _ in written] == [s for s, _ in logged]
    assert [v for _, v in written] == pytest.approx([v for _, v in logged], rel=1e-6)  # stored as float32
    evals = [(e["step"], e["eval_loss"]) for e in trainer.state.log_history if "eval_loss" in e]
    assert [(s.step, pytest.approx(s.value, rel=1e-6)) for s in events.Scalars("eval/loss")] == evals
    assert "args" in " ".join(events.Tags()["tensors"])  # the arguments as text


def test_names_and_refusals(tmp_path):
    assert [tracker_name(k) for k in ("loss", "eval_loss", "test_f1")] == ["train/loss", "eval/loss", "test/f1"]
    assert reporter_callbacks([]) == []
    with pytest.raises(UnsupportedOptionError, match="'comet_ml' is not supported yet"):
        reporter_callbacks(["comet_ml"])
    with pytest.raises(ConfigError, match="unknown tracker 'tensorbored'"):
        reporter_callbacks(["tensorbored"])


def test_logging_dir_is_where_events_go(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    # "all" takes every tracker installed: the others write under tmp_path, W&B offline
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    if importlib.util.find_spec("wandb"):
        import wandb

        wandb.teardown()  # wandb keeps the settings of its first run in the process
    args = TrainingArguments(output_dir=str(tmp_path / "out"), logging_dir=str(tmp_path / "tb"),
                             **dict(COMMON, report_to="all", max_steps=2))
    Trainer(model=pretrained.BertForSequenceClassification(pretrained.BertConfig(**BERT)), args=args,
            train_dataset=classification_data(n=8)).train()
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert not (tmp_path / "out" / "runs").exists()


def train_with(tmp_path, report_to: str, run_name: str = "tiny-run"):
    args = TrainingArguments(output_dir=str(tmp_path / "out"), run_name=run_name, **dict(
        COMMON, report_to=report_to, eval_strategy="steps", eval_steps=2, num_train_epochs=1))
    trainer = Trainer(model=pretrained.BertForSequenceClassification(pretrained.BertConfig(**BERT)), args=args,
                      train_dataset=classification_data(n=12), eval_dataset=classification_data(n=5, seed=3))
    trainer.train()
    return trainer


def wandb_records(path: str):
    """The records of an offline W&B run file: LevelDB's log format (32 KiB blocks of crc, length, type chunks)
    after a 7-byte ':W&B' header, each record a wandb_internal Record protobuf."""
    from wandb.proto import wandb_internal_pb2

    data = open(path, "rb").read()
    assert data[:4] == b":W&B"
    pos, block, pending, records = 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a whole record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


@pytest.fixture
def fresh_wandb():
    """wandb keeps its settings (WANDB_DIR, ...) for the whole process after its first run: start clean."""
    wandb = pytest.importorskip("wandb")
    wandb.teardown()
    yield wandb
    wandb.teardown()


def test_wandb_offline_run_gets_config_and_history(tmp_path, monkeypatch, fresh_wandb):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_PROJECT", "pretrained-tests")
    trainer = train_with(tmp_path, "wandb")
    fresh_wandb.teardown()  # the W&B service writes the run file on its own thread; this waits for it
    (run_file,) = glob.glob(str(tmp_path / "wandb" / "offline-run-*" / "*.wandb"))
    records = wandb_records(run_file)
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run.project == "pretrained-tests" and run.display_name == "tiny-run"
    config = {}
    for r in records:
        if r.WhichOneof("record_type") == "config":
            config.update({item.key: json.loads(item.value_json) for item in r.config.update})
    assert config["learning_rate"] == trainer.args.learning_rate and config["hidden_size"] == BERT["hidden_size"]
    history = [{"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in r.history.item}
               for r in records if r.WhichOneof("record_type") == "history"]
    losses = [(h["train/global_step"], h["train/loss"]) for h in history if "train/loss" in h]
    assert losses == [(e["step"], pytest.approx(e["loss"])) for e in trainer.state.log_history if "loss" in e]
    evals = [(h["train/global_step"], h["eval/loss"]) for h in history if "eval/loss" in h]
    assert evals == [(e["step"], pytest.approx(e["eval_loss"])) for e in trainer.state.log_history if "eval_loss" in e]


def test_mlflow_run_gets_params_and_metrics(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 wants a database; a folder suffices here
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "pretrained-tests")
    monkeypatch.setenv("MLFLOW_TAGS", json.dumps({"team": "core"}))
    trainer = train_with(tmp_path, "mlflow")
    assert mlflow.active_run() is None  # the callback ended the run it started
    client = mlflow.tracking.MlflowClient()
    experiment = client.get_experiment_by_name("pretrained-tests")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "tiny-run" and run.data.tags["team"] == "core"
    assert run.data.params["learning_rate"] == str(trainer.args.learning_rate)
    assert run.data.params["hidden_size"] == str(BERT["hidden_size"])
    for key in ("loss", "eval_loss"):
        written = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
        assert written == [(e["step"], pytest.approx(e[key])) for e in trainer.state.log_history if key in e]
