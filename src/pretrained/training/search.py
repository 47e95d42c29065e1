"""Trainer.hyperparameter_search: trials of model_init + train + evaluate with settings drawn from `hp_space`.

`hp_space(trial)` returns a dict of TrainingArguments fields and is written against optuna's trial API
(suggest_float / suggest_int / suggest_categorical). With backend="optuna" (when installed) optuna's study picks
the values; with backend="random" our RandomTrial draws them uniformly (log-uniformly where asked) from a
seeded generator, so the same hp_space serves both. Every trial's settings and objective are appended to
output_dir/hyperparameter_search.jsonl; the best trial's model is kept in output_dir/run-<id>.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import random
import shutil
from typing import Any, Callable, NamedTuple

from ..errors import ConfigError, InputError

RESULTS_FILE = "hyperparameter_search.jsonl"


class BestRun(NamedTuple):
    """The best trial: its id (its model is in output_dir/run-<id>), objective and settings; run_summary
    holds every trial as (id, objective, settings)."""

    run_id: str
    objective: float
    hyperparameters: dict[str, Any]
    run_summary: Any = None


def default_hp_space(trial) -> dict[str, Any]:
    """Transformers' default search space."""
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-6, 1e-4, log=True),
        "num_train_epochs": trial.suggest_int("num_train_epochs", 1, 5),
        "seed": trial.suggest_int("seed", 1, 40),
        "per_device_train_batch_size": trial.suggest_categorical("per_device_train_batch_size", [4, 8, 16, 32, 64]),
    }


def default_compute_objective(metrics: dict[str, float]) -> float:
    """The evaluation loss when there are no other metrics, else the sum of the metrics (speeds and epoch aside)."""
    kept = {k: v for k, v in metrics.items() if k not in ("eval_loss", "epoch")
            and not k.endswith(("_runtime", "_per_second"))}
    return metrics.get("eval_loss") if not kept else sum(kept.values())


class RandomTrial:
    """The part of optuna's Trial that search spaces use, drawing each value at random."""

    def __init__(self, number: int, rng: random.Random):
        self.number, self.params, self._rng = number, {}, rng

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False):
        if log:
            value = math.exp(self._rng.uniform(math.log(low), math.log(high)))
        elif step:
            value = low + step * self._rng.randint(0, int(round((high - low) / step)))
        else:
            value = self._rng.uniform(low, high)
        self.params[name] = value
        return value

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False):
        if log:
            value = int(round(math.exp(self._rng.uniform(math.log(low), math.log(high)))))
        else:
            value = low + step * self._rng.randint(0, (high - low) // step)
        self.params[name] = value
        return value

    def suggest_categorical(self, name: str, choices):
        value = self._rng.choice(list(choices))
        self.params[name] = value
        return value


def run_search(trainer, hp_space: Callable | None, compute_objective: Callable | None, n_trials: int,
               direction: str, backend: str | None, hp_name: Callable | None, **backend_kwargs) -> BestRun:
    if trainer.model_init is None:
        raise InputError("hyperparameter_search needs a Trainer built with model_init= (each trial starts from a "
                         "fresh model)")
    if direction not in ("minimize", "maximize"):
        raise ConfigError(f"hyperparameter_search: direction={direction!r}; expected 'minimize' or 'maximize'")
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise ConfigError(f"hyperparameter_search: n_trials={n_trials!r} must be a positive integer")
    if backend is None:
        backend = "optuna" if importlib.util.find_spec("optuna") is not None else "random"
    if backend not in ("optuna", "random"):
        raise ConfigError(f"hyperparameter_search: backend={backend!r}; expected 'optuna' or 'random' "
                          "(ray, sigopt and wandb are not supported)")
    if backend == "optuna" and importlib.util.find_spec("optuna") is None:
        raise ConfigError("hyperparameter_search(backend='optuna') needs optuna: pip install optuna")
    if backend == "random" and backend_kwargs:
        raise ConfigError(f"hyperparameter_search(backend='random') takes no backend arguments, got "
                          f"{sorted(backend_kwargs)}")
    search = _Search(trainer, hp_space or default_hp_space, compute_objective or default_compute_objective,
                     direction, hp_name)
    if backend == "optuna":
        import optuna

        study = optuna.create_study(direction=direction, **backend_kwargs)
        study.optimize(search.trial, n_trials=n_trials)
    else:
        rng = random.Random(trainer.args.seed)
        for number in range(n_trials):
            search.trial(RandomTrial(number, rng))
    return search.best()


class _Search:
    def __init__(self, trainer, hp_space, compute_objective, direction: str, hp_name):
        self.trainer, self.hp_space, self.compute_objective = trainer, hp_space, compute_objective
        self.direction, self.hp_name = direction, hp_name
        self.original_args = trainer.args
        self.results: list[tuple[str, float, dict]] = []
        self.best_index: int | None = None
        os.makedirs(self.original_args.output_dir, exist_ok=True)

    def trial(self, trial) -> float:
        settings = self.hp_space(trial)
        if not isinstance(settings, dict):
            raise InputError(f"hp_space must return a dict of TrainingArguments fields, got {type(settings).__name__}")
        known = {f.name for f in dataclasses.fields(self.original_args)}
        unknown = set(settings) - known
        if unknown:
            raise InputError(f"hp_space returned {sorted(unknown)}, which are not TrainingArguments fields")
        run_id = self.hp_name(trial) if self.hp_name is not None else str(trial.number)
        folder = os.path.join(self.original_args.output_dir, f"run-{run_id}")  # the trial's checkpoints
        # a new TrainingArguments: every value derived from the changed fields is derived and checked again
        args = dataclasses.replace(self.original_args, output_dir=folder, **settings)
        trainer = self.trainer
        trainer.args, trainer.optimizer, trainer.lr_scheduler = args, None, None
        try:
            trainer.train()
            objective = float(self.compute_objective(trainer.evaluate()))
        finally:
            trainer.args = self.original_args
        self.results.append((run_id, objective, dict(settings)))
        with open(os.path.join(self.original_args.output_dir, RESULTS_FILE), "a", encoding="utf-8") as f:
            f.write(json.dumps({"run_id": run_id, "objective": objective, "hyperparameters": settings}) + "\n")
        if self.best_index is None or self._better(objective, self.results[self.best_index][1]):
            previous = None if self.best_index is None else self.results[self.best_index][0]
            self.best_index = len(self.results) - 1
            trainer.save_model(folder, _internal_call=True)
            if previous is not None:
                shutil.rmtree(os.path.join(self.original_args.output_dir, f"run-{previous}"), ignore_errors=True)
        else:
            shutil.rmtree(folder, ignore_errors=True)
        return objective

    def _better(self, a: float, b: float) -> bool:
        return a < b if self.direction == "minimize" else a > b

    def best(self) -> BestRun:
        run_id, objective, settings = self.results[self.best_index]
        return BestRun(run_id, objective, settings, run_summary=list(self.results))


def results_table(run_summary: list[tuple[str, float, dict]]) -> str:
    """Every trial as a text table: id, objective, settings."""
    names = sorted({k for _, _, s in run_summary for k in s})
    lines = ["\t".join(["run", "objective", *names])]
    for run_id, objective, settings in run_summary:
        lines.append("\t".join([run_id, f"{objective:.6g}", *(str(settings.get(n, "")) for n in names)]))
    return "\n".join(lines)
