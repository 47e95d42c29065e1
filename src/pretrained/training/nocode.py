"""`pretrained train TASK --model M --data FILE ... --output DIR`: fine-tuning without a script.

Each task is a recipe: which columns it reads and checks, the model class, how rows become tokens and labels,
the collator, and the metrics of its evaluation report. Everything in the data is checked before the model
loads; a validation split is held out when none is given; batch size and learning rate default by model size;
the output folder holds the model, tokenizer, model card and eval_report.{json,txt} (+ confusion_matrix.png for
classification when matplotlib is installed), ready for `pretrained run` and `pipeline()`. With `--lora R`,
LoRA adapters of rank R on every linear layer are trained instead (the head in full) and the folder holds the
adapter in PEFT's format (loaded on its base model by `pipeline()`), or with `--merge` the merged model.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from . import datafiles
from .chat_data import chat_example

TASKS = ("text-classification", "token-classification", "causal-lm", "seq2seq")


@dataclass
class Options:
    task: str
    model: str
    data: str
    output: str
    valid: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    tokens_column: str = "tokens"
    tags_column: str = "tags"
    messages_column: str = "messages"
    source_column: str = "source"
    target_column: str = "target"
    epochs: float = 3.0
    lr: float | None = None
    batch_size: int | None = None
    max_length: int = 256
    valid_fraction: float = 0.1
    seed: int = 42
    search: int = 0
    lora: int = 0  # LoRA rank; 0 trains every weight
    lora_alpha: float | None = None  # default: twice the rank
    lora_dropout: float = 0.05
    merge: bool = False  # with lora: save the merged model instead of the adapter
    progress: bool = True
    extra: dict = field(default_factory=dict)


# --- data: read and check everything before loading a model ---

def _tables(options: Options):
    train = datafiles.read_table(options.data)
    valid = datafiles.read_table(options.valid) if options.valid else None
    return train, valid


def _split(rows: list, valid_rows: list | None, options: Options):
    if valid_rows is not None:
        return rows, valid_rows
    kept, held = datafiles.split(len(rows), options.valid_fraction, options.seed)
    return [rows[i] for i in kept], [rows[i] for i in held]


def _classification_data(options: Options):
    train, valid = _tables(options)
    columns = (options.text_column, options.label_column)
    parts = []
    for table in filter(None, (train, valid)):
        datafiles.require_columns(table, *columns)
        parts.append(list(zip(datafiles.texts(table, columns[0]), datafiles.labels(table, columns[1]))))
    names = sorted({label for _, label in parts[0]})
    if len(names) < 2:
        raise InputError(f"{options.data}: column {options.label_column!r} has one label only ({names[0]!r}); "
                         "a classifier needs at least two")
    if valid is not None:
        unseen = sorted({label for _, label in parts[1]} - set(names))
        if unseen:
            raise InputError(f"{options.valid}: labels {unseen} never occur in {options.data}")
    train_rows, valid_rows = _split(parts[0], parts[1] if valid is not None else None, options)
    return train_rows, valid_rows, names


def _token_data(options: Options):
    train, valid = _tables(options)
    parts = []
    for table in filter(None, (train, valid)):
        tokens_column, tags_column = ("tokens", "tags") if table.path.endswith((".conll", ".txt")) \
            else (options.tokens_column, options.tags_column)
        datafiles.require_columns(table, tokens_column, tags_column)
        tokens, tags = datafiles.sequences(table, tokens_column), datafiles.sequences(table, tags_column)
        for i, (words, word_tags) in enumerate(zip(tokens, tags)):
            if len(words) != len(word_tags):
                raise InputError(f"{table.where(i, tags_column)}: {len(word_tags)} tags for {len(words)} tokens")
        parts.append(list(zip(tokens, tags)))
    names = sorted({t for _, tags in parts[0] for t in tags})
    if len(names) < 2:
        raise InputError(f"{options.data}: the tags column has one tag only ({names[0]!r})")
    train_rows, valid_rows = _split(parts[0], parts[1] if valid is not None else None, options)
    return train_rows, valid_rows, names


def _lm_data(options: Options):
    train, valid = _tables(options)
    parts = []
    for table in filter(None, (train, valid)):
        if options.messages_column in table.columns():
            datafiles.require_columns(table, options.messages_column)
            for i, row in enumerate(table.rows):
                messages = row[options.messages_column]
                if not isinstance(messages, list) or not messages or not all(
                        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                        for m in messages):
                    raise InputError(f"{table.where(i, options.messages_column)}: expected a list of "
                                     "{'role': ..., 'content': ...} messages")
            parts.append([("chat", row[options.messages_column]) for row in table.rows])
        else:
            datafiles.require_columns(table, options.text_column)
            parts.append([("text", t) for t in datafiles.texts(table, options.text_column)])
    train_rows, valid_rows = _split(parts[0], parts[1] if valid is not None else None, options)
    return train_rows, valid_rows, None


def _seq2seq_data(options: Options):
    train, valid = _tables(options)
    parts = []
    for table in filter(None, (train, valid)):
        datafiles.require_columns(table, options.source_column, options.target_column)
        parts.append(list(zip(datafiles.texts(table, options.source_column),
                              datafiles.texts(table, options.target_column))))
    train_rows, valid_rows = _split(parts[0], parts[1] if valid is not None else None, options)
    return train_rows, valid_rows, None


# --- rows -> model inputs ---

def _encode_classification(tokenizer, rows, names, options):
    index = {name: i for i, name in enumerate(names)}
    encoded = tokenizer([t for t, _ in rows], truncation=True, max_length=options.max_length)
    return [{"input_ids": encoded["input_ids"][i], "attention_mask": encoded["attention_mask"][i],
             "labels": index[label]} for i, (_, label) in enumerate(rows)]


def _encode_tokens(tokenizer, rows, names, options):
    index = {name: i for i, name in enumerate(names)}
    encoded = tokenizer([words for words, _ in rows], is_split_into_words=True, truncation=True,
                        max_length=options.max_length)
    out = []
    for i, (_, tags) in enumerate(rows):
        labels, previous = [], None
        for word in encoded.word_ids(i):  # the first piece of each word carries its tag
            labels.append(-100 if word is None or word == previous else index.get(tags[word], -100))
            previous = word
        out.append({"input_ids": encoded["input_ids"][i], "attention_mask": encoded["attention_mask"][i],
                    "labels": labels})
    return out


def _encode_lm(tokenizer, rows, names, options):
    out = []
    for kind, value in rows:
        if kind == "chat":  # the loss on the assistant's replies only
            if not getattr(tokenizer, "chat_template", None):
                raise InputError(f"{options.data}: chat messages need a tokenizer with a chat template; "
                                 f"{options.model} has none")
            out.append(chat_example(tokenizer, value, options.max_length))
            continue
        ids = tokenizer(value, truncation=True, max_length=options.max_length)["input_ids"]
        if tokenizer.eos_token_id is not None and len(ids) < options.max_length:
            ids = ids + [tokenizer.eos_token_id]  # so the model learns where a text ends
        out.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": list(ids)})
    return out


def _encode_seq2seq(tokenizer, rows, names, options):
    encoded = tokenizer([s for s, _ in rows], text_target=[t for _, t in rows], truncation=True,
                        max_length=options.max_length)
    return [{"input_ids": encoded["input_ids"][i], "attention_mask": encoded["attention_mask"][i],
             "labels": encoded["labels"][i]} for i in range(len(rows))]


# --- metrics ---

def _classification_metrics(names):
    def compute(prediction):
        predicted, gold = prediction.predictions.argmax(-1), prediction.label_ids
        return {"accuracy": float((predicted == gold).mean()), "f1_macro": _macro_f1(predicted, gold, len(names))}
    return compute


def _macro_f1(predicted, gold, n: int) -> float:
    scores = []
    for c in range(n):
        tp = int(((predicted == c) & (gold == c)).sum())
        fp, fn = int(((predicted == c) & (gold != c)).sum()), int(((predicted != c) & (gold == c)).sum())
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


def _token_metrics(names):
    def compute(prediction):
        predicted, gold = prediction.predictions.argmax(-1), prediction.label_ids
        keep = gold != -100
        found = expected = hit = 0
        for p_row, g_row, k_row in zip(predicted, gold, keep):
            p_spans = _spans([names[i] for i in p_row[k_row]])
            g_spans = _spans([names[i] for i in g_row[k_row]])
            found, expected, hit = found + len(p_spans), expected + len(g_spans), hit + len(p_spans & g_spans)
        precision, recall = hit / found if found else 0.0, hit / expected if expected else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"accuracy": float((predicted[keep] == gold[keep]).mean()), "precision": precision, "recall": recall,
                "f1": f1}
    return compute


def _spans(tags: list[str]) -> set[tuple[int, int, str]]:
    """Entity spans (start, end, type) of a BIO / IOB2 tag sequence; a tag without a prefix is its own type."""
    spans, start, kind = set(), None, None
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, name = tag.partition("-") if "-" in tag else ("B" if tag != "O" else "O", "", tag)
        if start is not None and (prefix in ("B", "O") or name != kind):
            spans.add((start, i, kind))
            start = None
        if prefix == "B" or (prefix == "I" and start is None):
            start, kind = i, name
    return spans


@dataclass
class Recipe:
    auto_class: str
    peft_task: str  # LoraConfig.task_type of the recipe's model (its head is trained in full with --lora)
    read: object
    encode: object
    metrics: object = None
    collator: str = "padding"


RECIPES = {
    "text-classification": Recipe("AutoModelForSequenceClassification", "SEQ_CLS", _classification_data,
                                  _encode_classification, _classification_metrics),
    "token-classification": Recipe("AutoModelForTokenClassification", "TOKEN_CLS", _token_data, _encode_tokens,
                                   _token_metrics, "tokens"),
    "causal-lm": Recipe("AutoModelForCausalLM", "CAUSAL_LM", _lm_data, _encode_lm, None, "seq2seq"),
    "seq2seq": Recipe("AutoModelForSeq2SeqLM", "SEQ_2_SEQ_LM", _seq2seq_data, _encode_seq2seq, None, "seq2seq"),
}


def size_defaults(parameters: int, lora: bool = False) -> tuple[int, float]:
    """(batch size, learning rate) for a model of this many parameters: smaller models take larger steps, and
    low-rank adapters larger ones than full fine-tuning."""
    if parameters < 60_000_000:
        batch, lr = 32, 1e-4
    elif parameters < 400_000_000:
        batch, lr = 16, 5e-5
    else:
        batch, lr = 8, 2e-5
    return batch, lr * 5 if lora else lr


def train(options: Options) -> dict:
    """Run the whole job; returns the evaluation report (also written to the output folder)."""
    import pretrained

    from .arguments import TrainingArguments
    from .collators import DataCollatorForSeq2Seq, DataCollatorForTokenClassification, DataCollatorWithPadding
    from .trainer import Trainer

    if options.task not in RECIPES:
        raise InputError(f"pretrained train: unknown task {options.task!r}; expected one of {list(RECIPES)}")
    recipe = RECIPES[options.task]
    train_rows, valid_rows, names = recipe.read(options)  # every row checked before the model loads
    tokenizer = pretrained.AutoTokenizer.from_pretrained(options.model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # decoders often have no pad token; padding is masked anyway
    model_kwargs = {}
    if names is not None:
        # a head trained for other labels is replaced (as Transformers' example scripts do)
        model_kwargs = dict(num_labels=len(names), id2label=dict(enumerate(names)),
                            label2id={n: i for i, n in enumerate(names)}, ignore_mismatched_sizes=True)
    auto = getattr(pretrained, recipe.auto_class)

    if options.lora < 0:
        raise InputError(f"pretrained train: --lora is a LoRA rank >= 1 (0 trains every weight), got {options.lora}")

    def model_init():
        model = auto.from_pretrained(options.model, **model_kwargs)
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        if options.lora:  # adapters on every linear layer; a classification head is trained in full
            from ..adapters import LoraConfig, get_peft_model

            model = get_peft_model(model, LoraConfig(
                r=options.lora, lora_alpha=options.lora_alpha or 2 * options.lora, lora_dropout=options.lora_dropout,
                target_modules="all-linear", task_type=recipe.peft_task, base_model_name_or_path=options.model))
        return model

    model = model_init()
    batch, lr = size_defaults(sum(p.numel() for p in model.parameters()), lora=bool(options.lora))
    if recipe.collator == "padding":
        collator = DataCollatorWithPadding(tokenizer)
    elif recipe.collator == "tokens":
        collator = DataCollatorForTokenClassification(tokenizer)
    else:  # labels padded with -100; for seq2seq the model's decoder inputs made from them
        collator = DataCollatorForSeq2Seq(tokenizer, model=model if options.task == "seq2seq" else None)
    args = TrainingArguments(
        output_dir=options.output, num_train_epochs=options.epochs, learning_rate=options.lr or lr,
        per_device_train_batch_size=options.batch_size or batch, per_device_eval_batch_size=options.batch_size or batch,
        eval_strategy="epoch", save_strategy="no", logging_strategy="epoch", seed=options.seed, warmup_steps=0.1,
        weight_decay=0.01, disable_tqdm=not options.progress, report_to="none", **options.extra)
    trainer = Trainer(model=None if options.search else model, model_init=model_init if options.search else None,
                      args=args, data_collator=collator, processing_class=tokenizer,
                      train_dataset=recipe.encode(tokenizer, train_rows, names, options),
                      eval_dataset=recipe.encode(tokenizer, valid_rows, names, options),
                      compute_metrics=recipe.metrics(names) if recipe.metrics else None)
    search = None
    if options.search:  # trials around the size defaults; the best trial's model is the result
        search = trainer.hyperparameter_search(
            hp_space=lambda trial: {"learning_rate": trial.suggest_float("learning_rate", lr / 10, lr * 10, log=True),
                                    "per_device_train_batch_size": trial.suggest_categorical(
                                        "per_device_train_batch_size", [max(batch // 2, 1), batch])},
            n_trials=options.search, direction="minimize", backend="random")
        best_folder = os.path.join(options.output, f"run-{search.run_id}")
        trainer.model = auto.from_pretrained(best_folder)
        for name, value in search.hyperparameters.items():
            setattr(trainer.args, name, value)  # what the model card reports
    else:
        trainer.train()
    prediction = trainer.predict(trainer.eval_dataset, metric_key_prefix="eval")
    report = {"task": options.task, "model": options.model, "train_rows": len(train_rows),
              "validation_rows": len(valid_rows), **prediction.metrics}
    if options.lora:
        trainable, total = trainer.model.get_nb_trainable_parameters()
        report.update(lora_rank=options.lora, trainable_parameters=trainable, all_parameters=total)
    if "eval_loss" in report and options.task in ("causal-lm", "seq2seq"):
        report["eval_perplexity"] = math.exp(min(report["eval_loss"], 50))
    if search is not None:
        report["search"] = [{"run": r, "objective": o, **s} for r, o, s in search.run_summary]
    if options.lora and options.merge:  # a plain model folder: the adapter folded into the base weights
        trainer.model = trainer.model.merge_and_unload()
    trainer.save_model(options.output)
    if options.lora and not options.merge and names is not None:  # the labels, which the adapter files do not hold
        trainer.model.get_base_model().config.save_pretrained(options.output)
    if search is not None:
        shutil.rmtree(os.path.join(options.output, f"run-{search.run_id}"), ignore_errors=True)  # saved above
    _write_report(options.output, report, prediction, names if options.task == "text-classification" else None)
    return report


def confusion_matrix(predicted, gold, n: int) -> np.ndarray:
    matrix = np.zeros((n, n), dtype=np.int64)  # rows: true label, columns: predicted
    np.add.at(matrix, (gold, predicted), 1)
    return matrix


def _write_report(folder: str, report: dict, prediction, names: list[str] | None) -> None:
    from ..files import atomic_write_text

    lines = [f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}" for k, v in report.items() if k != "search"]
    if names is not None:
        matrix = confusion_matrix(prediction.predictions.argmax(-1), prediction.label_ids, len(names))
        report["confusion_matrix"] = {"labels": names, "rows_true_columns_predicted": matrix.tolist()}
        width = max(len(n) for n in names) + 2
        lines += ["", "confusion matrix (rows: true label, columns: predicted)",
                  " " * width + "".join(f"{n:>{width}}" for n in names)]
        lines += [f"{name:<{width}}" + "".join(f"{v:>{width}}" for v in row) for name, row in zip(names, matrix)]
        _plot(folder, matrix, names)
    atomic_write_text(os.path.join(folder, "eval_report.json"), json.dumps(report, indent=2) + "\n")
    atomic_write_text(os.path.join(folder, "eval_report.txt"), "\n".join(lines) + "\n")


def _plot(folder: str, matrix, names) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return  # the text matrix in eval_report.txt says the same
    figure, axes = plt.subplots(figsize=(1 + 0.6 * len(names), 1 + 0.6 * len(names)))
    axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(names)), names, rotation=45, ha="right")
    axes.set_yticks(range(len(names)), names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    for (i, j), v in np.ndenumerate(matrix):
        axes.text(j, i, str(v), ha="center", va="center")
    figure.tight_layout()
    figure.savefig(os.path.join(folder, "confusion_matrix.png"))
    plt.close(figure)
