"""ONNX export: a model and a task -> a folder with model.onnx, validated in ONNX Runtime.

    export(model, "out/", task="text-classification")   # or: pretrained export onnx --model M --task T out/

The folder holds model.onnx (weights inline, or in model.onnx.data past 2 GB), config.json, the
tokenizer files and generation_config.json when the model has them, and export.json: the task,
the exporter that produced the graph (torch.onnx's dynamo exporter, or TorchScript when dynamo
fails), the opset, and the largest difference measured against PyTorch.

Every graph has dynamic batch and sequence axes. Validation runs the graph in ONNX Runtime on
sample inputs of other shapes than the export's (so a baked-in shape fails) and compares each
output with the PyTorch model's; past `atol` the export fails and model.onnx is removed.

Decoders (text-generation) export one merged graph: the past keys and values are inputs
`past_key_values.{i}.key/value` (B, kv_heads, P, head_dim), P = 0 on the first step, and the
updated ones are outputs `present.{i}.key/value`; see `ORTModelForCausalLM`.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from ..errors import ConfigError, InputError, PretrainedError, UnknownModelError

DEFAULT_OPSET = 18  # dynamo's own opset; >= 17 keeps LayerNormalization one node for TensorRT and others
DEFAULT_ATOL = 1e-4
EXPORT_FILE = "export.json"
# tokenizer files copied from the source folder when present
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                   "vocab.json", "merges.txt", "added_tokens.json", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model")

# task -> (Auto class, the graph's outputs)
TASKS = {
    "feature-extraction": ("AutoModel", ("last_hidden_state",)),
    "fill-mask": ("AutoModelForMaskedLM", ("logits",)),
    "text-classification": ("AutoModelForSequenceClassification", ("logits",)),
    "token-classification": ("AutoModelForTokenClassification", ("logits",)),
    "question-answering": ("AutoModelForQuestionAnswering", ("start_logits", "end_logits")),
    "text-generation": ("AutoModelForCausalLM", ("logits",)),
}
TASK_ALIASES = {"sentiment-analysis": "text-classification", "ner": "token-classification",
                "default": "feature-extraction", "causal-lm": "text-generation"}
# model_type -> the graph's text inputs; a family absent here is refused by name
ENCODER_INPUTS = {
    "bert": ("input_ids", "attention_mask", "token_type_ids"),
    "roberta": ("input_ids", "attention_mask"),
    "distilbert": ("input_ids", "attention_mask"),
}
DECODER_INPUTS = {
    "gpt2": ("input_ids", "attention_mask", "position_ids"),
    "llama": ("input_ids", "attention_mask", "position_ids"),
}
# a loaded model's class name suffix -> its task, when export() is not told
_CLASS_SUFFIXES = (("ForMaskedLM", "fill-mask"), ("ForSequenceClassification", "text-classification"),
                   ("ForTokenClassification", "token-classification"), ("ForQuestionAnswering", "question-answering"),
                   ("ForCausalLM", "text-generation"), ("LMHeadModel", "text-generation"),
                   ("Model", "feature-extraction"))


class ExportError(PretrainedError, ValueError):
    """An export that cannot be done, or whose graph does not match the PyTorch model."""


def check_task(task: str) -> str:
    name = TASK_ALIASES.get(task, task)
    if name not in TASKS:
        raise UnknownModelError(f"task={task!r} cannot be exported to ONNX; supported tasks: {', '.join(TASKS)}")
    return name


def graph_inputs(model_type: str, task: str) -> tuple[str, ...]:
    """The graph's input names for a family and task; refuses a pair that has no export."""
    table = DECODER_INPUTS if task == "text-generation" else ENCODER_INPUTS
    if model_type not in table:
        kind = "decoder" if task == "text-generation" else "encoder"
        raise UnknownModelError(f"model_type={model_type!r} has no ONNX export for task {task!r}; "
                                f"supported {kind} families: {', '.join(table)}")
    return table[model_type]


def require(module: str):
    """Import an optional dependency of the `onnx` extra, or say how to install it."""
    from importlib import import_module

    try:
        return import_module(module)
    except ImportError as e:
        raise ImportError(f"ONNX export and runtime need {module!r}: pip install 'pretrained[onnx]' "
                          "(onnx, onnxruntime, onnxscript)") from e


def export(model, output_dir: str | os.PathLike, task: str | None = None, opset: int = DEFAULT_OPSET,
           exporter: str = "auto", atol: float = DEFAULT_ATOL, tokenizer=None, validate: bool = True) -> Path:
    """Export `model` (a loaded model, or a folder / hub id loaded with the task's Auto class) to
    `output_dir`/model.onnx with its config and tokenizer; returns the folder.

    exporter: "dynamo", "torchscript", or "auto" (dynamo, then TorchScript if dynamo fails).
    Raises ExportError when an output differs from PyTorch's by more than `atol`."""
    import torch

    require("onnx")
    if exporter not in ("auto", "dynamo", "torchscript"):
        raise InputError(f"exporter={exporter!r}; expected 'auto', 'dynamo' or 'torchscript'")
    if not isinstance(opset, int) or opset < 14:
        raise InputError(f"opset={opset!r}; expected an int >= 14 (scaled dot-product attention needs 14)")
    if isinstance(model, (str, os.PathLike)):
        model = load_for_task(model, task)
    if not isinstance(model, torch.nn.Module) or not hasattr(model, "config"):
        raise ExportError(f"export() needs a pretrained model (a torch module with a config), "
                          f"got {type(model).__name__}")
    task = check_task(task or _task_of(model))
    names = graph_inputs(model.config.model_type, task)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    graph = _graph_module(model, task, names).eval()
    sample = sample_inputs(model.config, task, names, batch=2, length=8)
    path = out / "model.onnx"
    with torch.no_grad():
        used = _run_exporter(graph, sample, path, opset, exporter, model)
    record = {"task": task, "exporter": used, "opset": opset, "torch_version": torch.__version__,
              "inputs": list(graph.input_names), "outputs": list(graph.output_names)}
    if validate:
        record["atol"] = atol
        record["max_abs_diff"] = validate_graph(graph, path, model.config, task, names, atol)
    _copy_companions(model, out, tokenizer, task)
    (out / EXPORT_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return out


def load_for_task(name_or_path, task: str | None):
    """The PyTorch model of a folder or hub id with the Auto class of `task` (from config.json when None)."""
    import pretrained.auto as auto

    if task is None:
        from ..pipelines.registry import task_from_config

        task = task_from_config(auto.AutoConfig.from_pretrained(name_or_path))
    return getattr(auto, TASKS[check_task(task)][0]).from_pretrained(name_or_path)


def _task_of(model) -> str:
    name = type(model).__name__
    for suffix, task in _CLASS_SUFFIXES:
        if name.endswith(suffix):
            return task
    raise ExportError(f"cannot tell the task of a {name}; pass task= (one of {', '.join(TASKS)})")


def _graph_module(model, task: str, input_names: tuple[str, ...]):
    from .graphs import DecoderGraph, EncoderGraph

    if task == "text-generation":
        return DecoderGraph(model, input_names)
    return EncoderGraph(model, input_names, TASKS[task][1])


def sample_inputs(config, task: str, input_names, batch: int, length: int, past: int = 0, seed: int = 0) -> dict:
    """Random token ids with the second row left-padded by two (padding is exercised), as torch tensors."""
    import torch

    from .graphs import past_shapes

    g = torch.Generator().manual_seed(seed)
    vocab = getattr(config, "vocab_size", None)
    if not isinstance(vocab, int) or vocab < 4:
        raise ConfigError(f"config.vocab_size={vocab!r}; an export needs the vocabulary size to build sample inputs")
    total = past + length
    mask = torch.ones(batch, total, dtype=torch.long)
    if batch > 1:
        mask[1, :2] = 0
    inputs = {"input_ids": torch.randint(3, vocab, (batch, length), generator=g), "attention_mask": mask}
    if "token_type_ids" in input_names:
        inputs["token_type_ids"] = torch.zeros(batch, length, dtype=torch.long)
    if "position_ids" in input_names:
        inputs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)[:, past:]
    if task == "text-generation":
        for name, shape in past_shapes(config, batch, past):
            inputs[name] = torch.randn(shape, generator=g)
    return inputs


def _run_exporter(graph, sample: dict, path: Path, opset: int, exporter: str, model) -> str:
    """Export with dynamo (or TorchScript); returns the name of the exporter that produced the graph."""
    import torch

    args = tuple(sample[n] for n in graph.input_names)
    errors = []
    large = sum(p.numel() * p.element_size() for p in model.parameters()) > 1_800_000_000
    if exporter in ("auto", "dynamo"):
        try:
            dims = {}  # one Dim per axis name: inputs sharing an axis share its symbol
            for axes in graph.dynamic_axes.values():
                for axis in axes.values():
                    dims.setdefault(axis, torch.export.Dim(axis, min=0 if axis.startswith("past") else 1))
            dynamic_shapes = tuple({i: dims[axis] for i, axis in graph.dynamic_axes[name].items()}
                                   for name in graph.input_names)
            torch.onnx.export(graph, args, str(path), dynamo=True, opset_version=opset,
                              input_names=list(graph.input_names), output_names=list(graph.output_names),
                              dynamic_shapes={"inputs": dynamic_shapes}, external_data=large, verbose=False)
            return "dynamo"
        except Exception as e:  # the dynamo exporter fails in many ways; the message is kept for the user
            if exporter == "dynamo":
                raise ExportError(f"torch.onnx.export(dynamo=True) failed: {e}") from e
            errors.append(f"dynamo: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    try:
        with _eager_attention(model):  # tracing turns sdpa's shape checks into tensors; eager is plain ops
            torch.onnx.export(graph, args, str(path), dynamo=False, opset_version=opset,
                              input_names=list(graph.input_names), output_names=list(graph.output_names),
                              dynamic_axes={**graph.dynamic_axes, **graph.output_axes})
        return "torchscript"
    except Exception as e:
        errors.append(f"torchscript: {type(e).__name__}: {e}")
        raise ExportError("ONNX export failed with every exporter tried; " + " | ".join(errors)) from e


@contextmanager
def _eager_attention(model):
    config = model.config
    before = config.attn_implementation
    config.attn_implementation = "eager"
    try:
        yield
    finally:
        config.attn_implementation = before


def validate_graph(graph, path: Path, config, task: str, input_names, atol: float) -> float:
    """Largest |ONNX Runtime - PyTorch| over every output on two input shapes unseen at export;
    past `atol`, removes the graph and raises ExportError naming the output."""
    import numpy as np
    import torch

    ort = require("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    cases = [(3, 11, 0), (1, 5, 0)] if task != "text-generation" else [(3, 1, 6), (1, 7, 0)]
    for batch, length, past in cases:
        sample = sample_inputs(config, task, input_names, batch, length, past=past, seed=1)
        feeds = {n: sample[n].numpy() for n in graph.input_names}
        got = session.run(list(graph.output_names), feeds)
        with torch.no_grad():
            expected = graph(*(sample[n] for n in graph.input_names))
        for name, g, e in zip(graph.output_names, got, expected):
            e = e.numpy()
            if g.shape != e.shape:
                _discard(path)
                raise ExportError(f"the exported graph's {name!r} has shape {g.shape}, PyTorch's {e.shape} "
                                  f"(batch {batch}, length {length}, past {past}); the export was removed")
            diff = float(np.abs(g.astype(np.float64) - e).max()) if g.size else 0.0
            if not diff <= atol:
                _discard(path)
                raise ExportError(f"the exported graph's {name!r} differs from PyTorch by {diff:.3g} > atol={atol} "
                                  f"(batch {batch}, length {length}, past {past}); the export was removed")
            worst = max(worst, diff)
    return worst


def _discard(path: Path) -> None:
    for p in (path, path.with_name(path.name + ".data")):
        if p.exists():
            p.unlink()


def _copy_companions(model, out: Path, tokenizer, task: str) -> None:
    """config.json, generation_config.json (models that generate) and the tokenizer beside the graph."""
    model.config.save_pretrained(out)
    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None and task == "text-generation":
        generation_config.save_pretrained(out)
    if tokenizer is not None:
        if isinstance(tokenizer, (str, os.PathLike)):
            _copy_tokenizer_files(Path(tokenizer), out)
        else:
            tokenizer.save_pretrained(out)
        return
    source = getattr(model, "name_or_path", None)
    if source and os.path.isdir(source):
        _copy_tokenizer_files(Path(source), out)


def _copy_tokenizer_files(source: Path, out: Path) -> None:
    for name in TOKENIZER_FILES:
        if (source / name).is_file() and source.resolve() != out.resolve():
            shutil.copyfile(source / name, out / name)


def read_export_record(folder: str | os.PathLike) -> dict:
    """export.json of an exported folder ({} for a graph exported elsewhere)."""
    path = Path(folder) / EXPORT_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
