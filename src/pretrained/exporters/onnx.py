"""ONNX export: a model and a task -> a folder with model.onnx, validated in ONNX Runtime.

    export(model, "out/", task="text-classification")   # or: pretrained export onnx --model M --task T out/

The folder holds model.onnx (weights inline, or in model.onnx.data past 2 GB), config.json, the
tokenizer files and generation_config.json when the model has them, and export.json: the task,
the exporter that produced the graph (torch.onnx's dynamo exporter, or TorchScript when dynamo
fails), the opset, and the largest difference measured against PyTorch.

Encoder graphs trace eager attention (MatMul, Softmax, MatMul, which ONNX Runtime fuses; the dynamo
exporter lowers scaled_dot_product_attention with two extra reshapes and copies of the keys per layer),
and every graph is rewritten into the forms ONNX Runtime's fusions recognise (rewrites.py); both keep
standard operators.

Every graph has a dynamic batch axis and, over text, a dynamic sequence axis (images and audio features
have the config's size). Validation runs the graph in ONNX Runtime on sample inputs of other shapes than
the export's (so a baked-in shape fails) and compares each output with the PyTorch model's; past `atol`
times the output's largest |value| (at least 1: float32 rounding grows with the values) the export fails
and model.onnx is removed.

Decoders (text-generation) export one merged graph: the past keys and values are inputs
`past_key_values.{i}.key/value` (B, kv_heads, P, head_dim), P = 0 on the first step, and the
updated ones are outputs `present.{i}.key/value`; see `ORTModelForCausalLM`.

Seq2seq models (text2text-generation; aliases summarization, translation) export two graphs:
encoder_model.onnx, (input_ids, attention_mask) -> last_hidden_state and every decoder layer's
cross-attention keys/values `cross.{i}.key/value` (B, H, S, D), projected once per prompt; and
decoder_model.onnx, one merged step like a decoder's (past self-attention keys/values in, P = 0 on
the first step, `present.*` out) that also takes `cross.*` and the encoder's mask. The cross keys
never change while decoding, so computing them in the encoder graph keeps the decoder one graph
with no If node and no recomputation; see `ORTModelForSeq2SeqLM`.

`static_shapes=(batch, sequence)` fixes both axes in an encoder task's graph (TensorRT engines and
CoreML want fixed shapes); validation then runs that shape only.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager, nullcontext
from pathlib import Path

from ..errors import ConfigError, InputError, PretrainedError, UnknownModelError, UnsupportedOptionError
from ..files import atomic_write_text
from .rewrites import rewrite_file

DEFAULT_OPSET = 18  # dynamo's own opset; >= 17 keeps LayerNormalization one node for TensorRT and others
DEFAULT_ATOL = 1e-4
EXPORT_FILE = "export.json"
# copied beside the graphs: the tokenizer, and the image / audio processor (transformers 5 writes
# processor_config.json, 4.x preprocessor_config.json)
COMPANION_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                   "vocab.json", "merges.txt", "added_tokens.json", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model", "source.spm", "target.spm", "preprocessor_config.json", "processor_config.json")

# task -> (Auto class, the graph's outputs)
TASKS = {
    "feature-extraction": ("AutoModel", ("last_hidden_state",)),
    "fill-mask": ("AutoModelForMaskedLM", ("logits",)),
    "text-classification": ("AutoModelForSequenceClassification", ("logits",)),
    "token-classification": ("AutoModelForTokenClassification", ("logits",)),
    "question-answering": ("AutoModelForQuestionAnswering", ("start_logits", "end_logits")),
    "image-classification": ("AutoModelForImageClassification", ("logits",)),
    "zero-shot-image-classification": ("AutoModel", ("logits_per_image", "logits_per_text", "text_embeds",
                                                      "image_embeds")),
    "text-generation": ("AutoModelForCausalLM", ("logits",)),
    "text2text-generation": ("AutoModelForSeq2SeqLM", ("logits",)),
    "automatic-speech-recognition": ("AutoModelForSpeechSeq2Seq", ("logits",)),
}
SEQ2SEQ_TASK = "text2text-generation"
SPEECH_TASK = "automatic-speech-recognition"  # Whisper: a seq2seq export whose encoder reads log-mel features
ENCODER_DECODER_TASKS = (SEQ2SEQ_TASK, SPEECH_TASK)
GENERATING_TASKS = ("text-generation", *ENCODER_DECODER_TASKS)
ONNX_FILE = "model.onnx"
# a seq2seq export's two graphs; see graphs.Seq2SeqEncoderGraph / Seq2SeqDecoderGraph
SEQ2SEQ_FILES = ("encoder_model.onnx", "decoder_model.onnx")
TASK_ALIASES = {"sentiment-analysis": "text-classification", "ner": "token-classification",
                "default": "feature-extraction", "causal-lm": "text-generation", "summarization": SEQ2SEQ_TASK,
                "translation": SEQ2SEQ_TASK, "seq2seq-lm": SEQ2SEQ_TASK, "asr": SPEECH_TASK}
# model_type -> the graph's inputs; a family absent here is refused by name
ENCODER_INPUTS = {
    "bert": ("input_ids", "attention_mask", "token_type_ids"),
    "deberta-v2": ("input_ids", "attention_mask", "token_type_ids"),
    **{family: ("input_ids", "attention_mask") for family in ("roberta", "xlm-roberta", "distilbert", "mpnet",
                                                              "modernbert")},
    "vit": ("pixel_values",),  # feature-extraction and image-classification
}
IMAGE_TASKS = ("image-classification",)
ZERO_SHOT_IMAGE_TASK = "zero-shot-image-classification"
IMAGE_TEXT_INPUTS = {"clip": ("input_ids", "attention_mask", "pixel_values")}  # captions and images, own batches
DECODER_INPUTS = {family: ("input_ids", "attention_mask", "position_ids") for family in (
    "gpt2", "llama", "mistral", "qwen2", "qwen3", "phi3", "gemma3_text", "mixtral", "qwen3_moe")}
SEQ2SEQ_INPUTS = {family: ("input_ids", "attention_mask") for family in ("t5", "mt5", "bart", "marian")}
SPEECH_INPUTS = {"whisper": ("input_features",)}  # (B, mel bins, 2 x max_source_positions): 30 s of audio
# a loaded model's class name suffix -> its task, when export() is not told
_CLASS_SUFFIXES = (("ForMaskedLM", "fill-mask"), ("ForSequenceClassification", "text-classification"),
                   ("ForImageClassification", "image-classification"),
                   ("ForTokenClassification", "token-classification"), ("ForQuestionAnswering", "question-answering"),
                   ("ForCausalLM", "text-generation"), ("LMHeadModel", "text-generation"),
                   ("ForConditionalGeneration", SEQ2SEQ_TASK), ("MTModel", SEQ2SEQ_TASK),
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
    kind = {"text-generation": "decoder", SEQ2SEQ_TASK: "encoder-decoder", SPEECH_TASK: "speech",
            ZERO_SHOT_IMAGE_TASK: "image-text"}.get(task, "encoder")
    table = {"decoder": DECODER_INPUTS, "encoder-decoder": SEQ2SEQ_INPUTS, "speech": SPEECH_INPUTS,
             "image-text": IMAGE_TEXT_INPUTS, "encoder": ENCODER_INPUTS}[kind]
    if model_type not in table:
        raise UnknownModelError(f"model_type={model_type!r} has no ONNX export for task {task!r}; "
                                f"supported {kind} families: {', '.join(table)}")
    inputs = table[model_type]
    images = inputs == ("pixel_values",)
    if kind == "encoder" and (task in IMAGE_TASKS) != images and not (images and task == "feature-extraction"):
        wanted = "an image" if task in IMAGE_TASKS else "a text"
        raise UnknownModelError(f"model_type={model_type!r} has no ONNX export for task {task!r}: the task takes "
                                f"{wanted} model, {model_type!r} reads {'images' if images else 'text'}")
    return inputs


def require(module: str):
    """Import an optional dependency of the `onnx` extra, or say how to install it."""
    from importlib import import_module

    try:
        return import_module(module)
    except ImportError as e:
        raise ImportError(f"ONNX export and runtime need {module!r}: pip install 'pretrained[onnx]' "
                          "(onnx, onnxruntime, onnxscript)") from e


def export(model, output_dir: str | os.PathLike, task: str | None = None, opset: int = DEFAULT_OPSET,
           exporter: str = "auto", atol: float = DEFAULT_ATOL, tokenizer=None, validate: bool = True,
           static_shapes: tuple[int, int] | None = None) -> Path:
    """Export `model` (a loaded model, or a folder / hub id loaded with the task's Auto class) to
    `output_dir`/model.onnx (seq2seq: encoder_model.onnx and decoder_model.onnx) with its config and
    tokenizer; returns the folder.

    exporter: "dynamo", "torchscript", or "auto" (dynamo, then TorchScript if dynamo fails).
    static_shapes: (batch, sequence) fixed in the graph instead of dynamic axes (encoder tasks only),
    for targets that want fixed shapes (TensorRT engines, CoreML).
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
    static = _check_static_shapes(static_shapes, task)
    if static and names == ("pixel_values",):
        raise UnsupportedOptionError(f"static_shapes={static_shapes!r}: (batch, sequence) fixes a text graph; an "
                                     "image graph's size is fixed by its config and its batch stays dynamic")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    record = {"task": task, "opset": opset, "torch_version": torch.__version__,
              "static_shapes": list(static) if static else None}
    worst = worst_scaled = 0.0
    graphs = {}
    for file, graph in _graph_modules(model, task, names):
        graph.eval()
        if static:
            graph.dynamic_axes, graph.output_axes = {}, {}
        sample = _sample(graph, model.config, task, names, *(static or (2, 8)), past=0, seed=0)
        # encoder graphs trace eager attention; decoders keep sdpa (their eager step was no faster)
        attention = _eager_attention(model) if task not in GENERATING_TASKS else nullcontext()
        with torch.no_grad(), attention:
            used = _run_exporter(graph, sample, out / file, opset, exporter, model)
        rewrite_file(out / file)
        graphs[file] = {"exporter": used, "inputs": list(graph.input_names), "outputs": list(graph.output_names)}
        if validate:
            diff, scaled = validate_graph(graph, out / file, model.config, task, names, atol, static)
            worst, worst_scaled = max(worst, diff), max(worst_scaled, scaled)
    if list(graphs) == [ONNX_FILE]:
        record.update(graphs[ONNX_FILE])
    else:
        record["exporter"] = "+".join(sorted({g["exporter"] for g in graphs.values()}))
        record["graphs"] = graphs
    if validate:
        record["atol"], record["max_abs_diff"], record["max_scaled_diff"] = atol, worst, worst_scaled
    _copy_companions(model, out, tokenizer, task)
    atomic_write_text(out / EXPORT_FILE, json.dumps(record, indent=2) + "\n")
    return out


def graph_files(task: str) -> tuple[str, ...]:
    """The ONNX files an export of `task` writes."""
    return SEQ2SEQ_FILES if check_task(task) in ENCODER_DECODER_TASKS else (ONNX_FILE,)


def _check_static_shapes(static_shapes, task: str):
    if static_shapes is None:
        return None
    if task in GENERATING_TASKS:
        raise UnsupportedOptionError(f"static_shapes={static_shapes!r} with task {task!r}: a decoder's past length "
                                     "grows every step, so its graph keeps dynamic axes; static shapes are for the "
                                     "encoder tasks")
    if (not isinstance(static_shapes, (tuple, list)) or len(static_shapes) != 2
            or not all(isinstance(n, int) and n >= 1 for n in static_shapes)):
        raise InputError(f"static_shapes={static_shapes!r}; expected (batch, sequence), two ints >= 1")
    return tuple(static_shapes)


def load_for_task(name_or_path, task: str | None):
    """The PyTorch model of a folder or hub id with the Auto class of `task` (from config.json when None)."""
    import pretrained.auto as auto

    if task is None:
        from ..pipelines.registry import task_from_config

        task = task_from_config(auto.AutoConfig.from_pretrained(name_or_path))
    return getattr(auto, TASKS[check_task(task)][0]).from_pretrained(name_or_path)


def _task_of(model) -> str:
    name = type(model).__name__
    if name.endswith("ForConditionalGeneration") and getattr(model, "main_input_name", "") == "input_features":
        return SPEECH_TASK  # Whisper: generates text from audio features
    for suffix, task in _CLASS_SUFFIXES:
        if name.endswith(suffix):
            return task
    raise ExportError(f"cannot tell the task of a {name}; pass task= (one of {', '.join(TASKS)})")


def _graph_modules(model, task: str, input_names: tuple[str, ...]) -> list:
    """[(file name, the torch module traced into it)]: one graph, or a seq2seq model's encoder and decoder."""
    from .graphs import DecoderGraph, EncoderGraph, Seq2SeqDecoderGraph, Seq2SeqEncoderGraph, decoder_geometry

    if task in ENCODER_DECODER_TASKS:
        geometry = decoder_geometry(model)
        encoder = Seq2SeqEncoderGraph(model, geometry[0], input_names)
        return list(zip(SEQ2SEQ_FILES, (encoder, Seq2SeqDecoderGraph(model, geometry))))
    if task == "text-generation":
        return [(ONNX_FILE, DecoderGraph(model, input_names))]
    return [(ONNX_FILE, EncoderGraph(model, input_names, TASKS[task][1]))]


def _sample(graph, config, task: str, input_names, batch: int, length: int, past: int, seed: int) -> dict:
    """Sample inputs for `graph`: its own when it builds them (the seq2seq decoder), else sample_inputs'."""
    if hasattr(graph, "sample"):
        return graph.sample(batch, length, past=past, seed=seed)
    graph_task = "feature-extraction" if task in ENCODER_DECODER_TASKS else task  # the encoder graph: no past
    return sample_inputs(config, graph_task, input_names, batch, length, past=past, seed=seed)


def sample_inputs(config, task: str, input_names, batch: int, length: int, past: int = 0, seed: int = 0) -> dict:
    """Random token ids with the second row left-padded by two (padding is exercised), as torch tensors."""
    import torch

    from .graphs import past_shapes

    g = torch.Generator().manual_seed(seed)
    if tuple(input_names) == ("pixel_values",):  # images of the config's size; `length` does not apply
        size = config.image_size
        return {"pixel_values": torch.randn(batch, config.num_channels, size, size, generator=g)}
    if tuple(input_names) == ("input_features",):  # log-mel features of a full window; `length` does not apply
        frames = 2 * config.max_source_positions
        return {"input_features": torch.randn(batch, config.num_mel_bins, frames, generator=g)}
    if "pixel_values" in input_names:  # CLIP: `batch` images and batch + 1 captions (the batches are independent)
        vision, text = config.vision_config, config.text_config
        size = vision.image_size
        captions = sample_inputs(text, "feature-extraction", ("input_ids", "attention_mask"), batch + 1, length,
                                 seed=seed)
        return {**captions, "pixel_values": torch.randn(batch, vision.num_channels, size, size, generator=g)}
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
    """Trace eager attention: plain MatMul / Softmax that ONNX Runtime fuses (torch.onnx's dynamo exporter
    lowers sdpa with extra reshapes and copies of the keys, TorchScript tracing turns its shape checks
    into tensors)."""
    config = model.config
    before = config.attn_implementation
    config.attn_implementation = "eager"
    try:
        yield
    finally:
        config.attn_implementation = before


def validate_graph(graph, path: Path, config, task: str, input_names, atol: float,
                   static_shapes=None) -> tuple[float, float]:
    """(largest |ONNX Runtime - PyTorch|, largest of those over the output's scale) over every output, on two
    input shapes unseen at export (the fixed shape, twice with other values, for a static-shape graph).
    An output's scale is its largest |value|, at least 1: float32 rounding grows with the values (a real
    30-layer model's logits, ~30, differ by ~1e-3 between two correct float32 runs), so the tolerance is
    `atol` x scale, plain `atol` for outputs within +-1. Past it, removes the graph and raises ExportError
    naming the output."""
    import numpy as np
    import torch

    ort = require("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = worst_scaled = 0.0
    cases = [(3, 1, 6), (1, 7, 0)] if any(n.startswith("past_key_values") for n in graph.input_names) \
        else [(3, 11, 0), (1, 5, 0)]
    if static_shapes:
        cases = [(*static_shapes, 0)] * 2
    for seed, (batch, length, past) in enumerate(cases, start=1):
        sample = _sample(graph, config, task, input_names, batch, length, past=past, seed=seed)
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
            scale = max(1.0, float(np.abs(e).max())) if e.size else 1.0
            if not diff <= atol * scale:
                _discard(path)
                raise ExportError(f"the exported graph's {name!r} differs from PyTorch by {diff:.3g} > atol={atol} x "
                                  f"{scale:.3g}, {diff / scale:.3g} of the largest |value| (batch {batch}, length "
                                  f"{length}, past {past}); the export was removed")
            worst, worst_scaled = max(worst, diff), max(worst_scaled, diff / scale)
    return worst, worst_scaled


def _discard(path: Path) -> None:
    for p in (path, path.with_name(path.name + ".data")):
        if p.exists():
            p.unlink()


def _copy_companions(model, out: Path, tokenizer, task: str) -> None:
    """config.json, generation_config.json (models that generate) and the tokenizer beside the graph."""
    model.config.save_pretrained(out)
    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None and task in GENERATING_TASKS:
        generation_config.save_pretrained(out)
    if tokenizer is not None:
        if isinstance(tokenizer, (str, os.PathLike)):
            _copy_companion_files(Path(tokenizer), out)
        else:
            tokenizer.save_pretrained(out)
        return
    source = getattr(model, "name_or_path", None)
    if source and os.path.isdir(source):
        _copy_companion_files(Path(source), out)


def _copy_companion_files(source: Path, out: Path) -> None:
    for name in COMPANION_FILES:
        if (source / name).is_file() and source.resolve() != out.resolve():
            shutil.copyfile(source / name, out / name)


def read_export_record(folder: str | os.PathLike) -> dict:
    """export.json of an exported folder ({} for a graph exported elsewhere)."""
    path = Path(folder) / EXPORT_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
