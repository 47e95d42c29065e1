"""report_to: TensorBoard receives every logged number under Transformers' names (read back from the event
files with TensorBoard's own reader); trackers not installed or not supported are refused by name."""

from __future__ import annotations

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
    with pytest.raises(UnsupportedOptionError, match="'wandb' is not supported yet"):
        reporter_callbacks(["wandb"])
    with pytest.raises(ConfigError, match="unknown tracker 'tensorbored'"):
        reporter_callbacks(["tensorbored"])


def test_logging_dir_is_where_events_go(tmp_path):
    pytest.importorskip("tensorboard")
    args = TrainingArguments(output_dir=str(tmp_path / "out"), logging_dir=str(tmp_path / "tb"),
                             **dict(COMMON, report_to="all", max_steps=2))
    Trainer(model=pretrained.BertForSequenceClassification(pretrained.BertConfig(**BERT)), args=args,
            train_dataset=classification_data(n=8)).train()
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert not (tmp_path / "out" / "runs").exists()
