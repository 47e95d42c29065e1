"""Trainer.hyperparameter_search: trials from one hp_space with our random backend and with optuna, a results
file with every trial, the best trial's model kept, the objective as Transformers computes it."""

from __future__ import annotations

import json

import pytest

import pretrained
from pretrained.errors import ConfigError, InputError
from pretrained.training import TrainingArguments
from pretrained.training.search import RandomTrial, default_compute_objective, results_table
from pretrained.training.trainer import Trainer

from test_trainer import BERT, COMMON, classification_data


def accuracy(prediction):
    logits, labels = prediction
    return {"accuracy": float((logits.argmax(-1) == labels).mean())}


def space(trial):
    return {"learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-1, log=True),
            "per_device_train_batch_size": trial.suggest_categorical("per_device_train_batch_size", [2, 4])}


def make_trainer(tmp_path, **kwargs):
    args = TrainingArguments(output_dir=str(tmp_path / "search"), **dict(COMMON, num_train_epochs=1, **kwargs))
    return Trainer(model_init=lambda: pretrained.BertForSequenceClassification(pretrained.BertConfig(**BERT)),
                   args=args, train_dataset=classification_data(n=8), eval_dataset=classification_data(n=6, seed=5),
                   compute_metrics=accuracy)


@pytest.mark.parametrize("backend", ["random", "optuna"])
def test_three_trials_keep_the_best(tmp_path, backend):
    if backend == "optuna":
        optuna = pytest.importorskip("optuna")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    trainer = make_trainer(tmp_path)
    best = trainer.hyperparameter_search(hp_space=space, n_trials=3, direction="maximize", backend=backend)
    lines = [json.loads(line) for line in (tmp_path / "search" / "hyperparameter_search.jsonl").read_text().splitlines()]
    assert [r["run_id"] for r in lines] == ["0", "1", "2"]
    assert len({r["hyperparameters"]["learning_rate"] for r in lines}) == 3  # different draws
    assert all(1e-4 <= r["hyperparameters"]["learning_rate"] <= 1e-1 for r in lines)
    assert best.objective == max(r["objective"] for r in lines)
    assert best.hyperparameters == next(r["hyperparameters"] for r in lines if r["run_id"] == best.run_id)
    kept = sorted(p.name for p in (tmp_path / "search").glob("run-*"))
    assert kept == [f"run-{best.run_id}"]
    model = pretrained.AutoModelForSequenceClassification.from_pretrained(tmp_path / "search" / f"run-{best.run_id}")
    assert model.config.num_labels == 3
    assert trainer.args.learning_rate == COMMON["learning_rate"]  # the trainer's own arguments are back
    assert "learning_rate" in results_table(best.run_summary).splitlines()[0]


def test_random_trials_are_seeded_and_respect_bounds():
    import random

    draws = []
    for _ in range(2):
        trial = RandomTrial(0, random.Random(3))
        draws.append((trial.suggest_float("a", 1.0, 2.0), trial.suggest_int("b", 1, 9, step=2),
                      trial.suggest_float("c", 0.0, 1.0, step=0.25), trial.suggest_categorical("d", ["x", "y"])))
    assert draws[0] == draws[1]
    a, b, c, d = draws[0]
    assert 1.0 <= a <= 2.0 and b in (1, 3, 5, 7, 9) and c in (0.0, 0.25, 0.5, 0.75, 1.0) and d in ("x", "y")


def test_objective_and_refusals(tmp_path):
    assert default_compute_objective({"eval_loss": 0.5, "eval_runtime": 3.0, "epoch": 1}) == 0.5
    assert default_compute_objective({"eval_loss": 0.5, "eval_accuracy": 0.75, "eval_f1": 0.25}) == 1.0
    trainer = make_trainer(tmp_path)
    with pytest.raises(InputError, match="not TrainingArguments fields"):
        trainer.hyperparameter_search(hp_space=lambda t: {"lr": 0.1}, n_trials=1, backend="random")
    with pytest.raises(ConfigError, match="backend='ray'"):
        trainer.hyperparameter_search(n_trials=1, backend="ray")
    with pytest.raises(ConfigError, match="direction"):
        trainer.hyperparameter_search(n_trials=1, direction="up", backend="random")
    plain = Trainer(model=pretrained.BertForSequenceClassification(pretrained.BertConfig(**BERT)),
                    args=TrainingArguments(output_dir=str(tmp_path / "p"), **COMMON))
    with pytest.raises(InputError, match="model_init"):
        plain.hyperparameter_search(n_trials=1, backend="random")
