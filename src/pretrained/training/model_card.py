"""The README.md model card a trained model's folder carries: YAML metadata the hub reads (library_name,
pipeline_tag, base_model, license, datasets, tags, model-index with the evaluation results), then a short
human part (what it was fine-tuned from, results, hyperparameters, the training log as a table).

Rendered and parsed by huggingface_hub's ModelCard / ModelCardData, so the hub and `ModelCard.load` read it.
The checkpoint is in Transformers' format, which is what `library_name: transformers` tells the hub; the
`pretrained` tag says which library trained it.
"""

from __future__ import annotations

import os

README_NAME = "README.md"

TEMPLATE = """---
{{ card_data }}
---

# {{ model_name }}

{{ summary }}

## Results
{{ results }}

## Training hyperparameters
{{ hyperparameters }}

## Training log
{{ log_table }}

## Framework versions
{{ versions }}
"""


def _base_model(model) -> str | None:
    """The hub id the model was loaded from (None for a local folder or a model built from a config)."""
    name = getattr(model, "name_or_path", None) or getattr(getattr(model, "config", None), "name_or_path", None)
    if not name or os.path.exists(name) or name.startswith((".", "/", "~")):
        return None
    return name


def _pipeline_tag(model) -> str | None:
    from ..errors import UnknownModelError
    from ..modeling import own_class
    from ..pipelines.registry import task_from_config

    config = getattr(model, "config", None)
    if config is None:
        return None
    probe = type("Probe", (), {"architectures": [own_class(model).__name__],
                               "model_type": getattr(config, "model_type", "")})
    try:
        return task_from_config(probe)
    except UnknownModelError:
        return None


def _pretty(name: str) -> str:
    return name.removeprefix("eval_").replace("_", " ").title()


def _results(log_history: list[dict]) -> tuple[dict, list[dict]]:
    """(the last evaluation's metrics, one row per logged step: training loss and the evaluation that followed)."""
    last_eval = next((e for e in reversed(log_history) if "eval_loss" in e or any(k.startswith("eval_") and
                      k not in ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second") for k in e)), {})
    metrics = {k: v for k, v in sorted(last_eval.items(), key=lambda kv: kv[0] != "eval_loss")  # loss first
               if k.startswith("eval_") and k not in ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second")}
    rows, pending_loss = [], None
    for entry in log_history:
        if "loss" in entry:
            pending_loss = entry["loss"]
        elif any(k in entry for k in metrics):
            rows.append({"Training Loss": pending_loss if pending_loss is not None else "No log",
                         "Epoch": round(entry.get("epoch", 0), 4), "Step": entry.get("step"),
                         **{"Validation Loss" if k == "eval_loss" else _pretty(k): entry.get(k) for k in metrics}})
    return metrics, rows


def _table(rows: list[dict]) -> str:
    if not rows:
        return "No evaluation during training."
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(":---:" for _ in header) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row.values()) + " |")
    return "\n".join(lines)


def build_model_card(model, args, log_history: list[dict], model_name: str | None = None, language=None,
                     license: str | None = None, tags=None, finetuned_from: str | None = None, tasks=None,
                     dataset_tags=None, dataset=None, dataset_args=None):
    """A huggingface_hub ModelCard for a model trained with `args`; Transformers' create_model_card arguments."""
    import torch
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    from .. import __version__

    base = finetuned_from if finetuned_from is not None else _base_model(model)
    task = tasks[0] if isinstance(tasks, list) and tasks else (tasks or _pipeline_tag(model))
    datasets = [dataset_tags] if isinstance(dataset_tags, str) else list(dataset_tags or [])
    dataset_name = dataset if isinstance(dataset, str) else (datasets[0] if datasets else None)
    metrics, rows = _results(log_history)
    name = model_name or os.path.basename(os.path.abspath(args.output_dir))
    eval_results = [EvalResult(task_type=task, dataset_type=datasets[0] if datasets else dataset_name,
                               dataset_name=dataset_name, dataset_args=dataset_args, metric_type=k.removeprefix("eval_"),
                               metric_name=_pretty(k), metric_value=v)
                    for k, v in metrics.items() if task and dataset_name and isinstance(v, (int, float))]
    card_data = ModelCardData(
        library_name="transformers", pipeline_tag=task, base_model=base, license=license, language=language,
        datasets=datasets or None, tags=sorted(set(["pretrained", "generated_from_trainer", *(tags or [])])),
        model_name=name, eval_results=eval_results or None, metrics=[k.removeprefix("eval_") for k in metrics] or None)
    summary = (f"This model is a fine-tuned version of [{base}](https://huggingface.co/{base})" if base
               else "This model was trained from a local checkpoint")
    summary += f" on the {dataset_name} dataset." if dataset_name else " on an unnamed dataset."
    results = "\n".join(f"- {_pretty(k)}: {v:.4f}" if isinstance(v, float) else f"- {_pretty(k)}: {v}"
                        for k, v in metrics.items()) or "No evaluation results."
    hyper = {"learning_rate": args.learning_rate, "train_batch_size": args.per_device_train_batch_size,
             "eval_batch_size": args.per_device_eval_batch_size, "seed": args.seed,
             "gradient_accumulation_steps": args.gradient_accumulation_steps, "optimizer": str(getattr(args.optim, "value", args.optim)),
             "lr_scheduler_type": str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)),
             "weight_decay": args.weight_decay}
    hyper.update({"training_steps": args.max_steps} if args.max_steps > 0 else {"num_epochs": args.num_train_epochs})
    hyperparameters = "\n".join(f"- {k}: {v}" for k, v in hyper.items())
    versions = f"- pretrained {__version__}\n- PyTorch {torch.__version__}"
    return ModelCard.from_template(card_data, template_str=TEMPLATE, model_name=name, summary=summary,
                                   results=results, hyperparameters=hyperparameters, log_table=_table(rows),
                                   versions=versions)

