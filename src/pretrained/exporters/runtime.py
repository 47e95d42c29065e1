"""ONNX Runtime models with our API: ORTModelFor*.from_pretrained(folder) -> model(**inputs) -> ModelOutput.

    model = ORTModelForSequenceClassification.from_pretrained("out/")                 # an exported folder
    model = ORTModelForSequenceClassification.from_pretrained("ckpt/", export=True)   # export into the cache first
    pipeline("text-classification", model=model, tokenizer=tokenizer)

A model takes torch tensors (or numpy arrays) and returns our output dataclasses holding CPU torch
tensors, so pipelines and user code run unchanged. ORTModelForCausalLM runs generate() through our
GenerationMixin: each step feeds the cache's keys/values to the merged decoder graph and appends the
new ones it returns (see onnx.py), so greedy, sampling and beam search are the PyTorch model's loops.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError, InputError, UnsupportedOptionError
from ..generation.mixin import GenerationMixin
from ..outputs import (BaseModelOutput, CausalLMOutputWithPast, MaskedLMOutput, QuestionAnsweringModelOutput,
                       SequenceClassifierOutput, TokenClassifierOutput)
from .graphs import past_names
from .onnx import EXPORT_FILE, export, load_for_task, read_export_record, require

ONNX_FILE = "model.onnx"
_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
           "all": "ORT_ENABLE_ALL"}


def default_cache_dir() -> Path:
    """Where export=True writes: $PRETRAINED_CACHE/onnx, else ~/.cache/pretrained/onnx."""
    root = os.environ.get("PRETRAINED_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "pretrained")
    return Path(root) / "onnx"


def make_session_options(intra_op_num_threads: int | None = None, inter_op_num_threads: int | None = None,
                    graph_optimization_level: str | None = None):
    """onnxruntime.SessionOptions from plain arguments; level is disable / basic / extended / all."""
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    if intra_op_num_threads is not None:
        options.intra_op_num_threads = intra_op_num_threads
    if inter_op_num_threads is not None:
        options.inter_op_num_threads = inter_op_num_threads
    if graph_optimization_level is not None:
        if graph_optimization_level not in _LEVELS:
            raise InputError(f"graph_optimization_level={graph_optimization_level!r}; "
                             f"expected one of {', '.join(_LEVELS)}")
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[graph_optimization_level])
    return options


class ORTModel:
    """An InferenceSession over an exported folder, with the config and the call of a PyTorch model."""

    task: str = ""
    output_class = BaseModelOutput

    def __init__(self, session, config, model_path: str | os.PathLike):
        self.session = session
        self.config = config
        self.name_or_path = os.fspath(model_path)
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]
        self.providers = session.get_providers()

    @classmethod
    def from_pretrained(cls, model_id_or_path: str | os.PathLike, export: bool = False,
                        provider: str = "CPUExecutionProvider", providers: list | None = None, session_options=None,
                        intra_op_num_threads: int | None = None, inter_op_num_threads: int | None = None, graph_optimization_level: str | None = None,
                        file_name: str = ONNX_FILE, cache_dir: str | os.PathLike | None = None, **kwargs):
        """An exported folder (or, with export=True, a PyTorch checkpoint exported into `cache_dir` once)."""
        if kwargs:
            raise UnsupportedOptionError(f"{cls.__name__}.from_pretrained does not take {sorted(kwargs)}")
        ort = require("onnxruntime")
        folder = Path(_exported_folder(cls.task, model_id_or_path, cache_dir) if export
                      else _local_folder(model_id_or_path, file_name))
        path = folder / file_name
        if not path.is_file():
            hint = " (pass export=True to export a PyTorch checkpoint)" if (folder / "config.json").is_file() else ""
            raise CheckpointError(f"{os.fspath(folder)!r} has no ONNX graph {file_name!r}{hint}")
        record = read_export_record(folder)
        if record.get("task") and record["task"] != cls.task:
            raise InputError(f"{os.fspath(path)!r} was exported for task {record['task']!r}; "
                             f"{cls.__name__} runs {cls.task!r}")
        if session_options is not None and (intra_op_num_threads or inter_op_num_threads or graph_optimization_level):
            raise InputError("pass session_options= or the thread / optimisation-level arguments, not both")
        options = session_options or make_session_options(intra_op_num_threads, inter_op_num_threads,
                                                          graph_optimization_level)
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=providers or [provider])
        except Exception as e:  # onnxruntime raises its own Fail / InvalidProtobuf types
            raise CheckpointError(f"{os.fspath(path)!r} is not a readable ONNX graph: {type(e).__name__}: {e}") from e
        from ..auto import AutoConfig

        return cls(session, AutoConfig.from_pretrained(folder), folder)

    # --- what a pipeline and user code read from a model ---

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")  # outputs always come back as CPU tensors, whatever the provider

    def to(self, device):
        if torch.device(device).type != "cpu":
            raise UnsupportedOptionError(f"{type(self).__name__}.to({device!r}): an ONNX Runtime model picks its device "
                                         f"with from_pretrained(provider=...); it runs on {self.providers[0]}")
        return self

    def eval(self):
        return self

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def _feeds(self, inputs: dict) -> dict:
        """Graph feeds from keyword tensors: None values dropped, token_type_ids zeros when the graph
        takes it and none is given; an input the graph does not take is refused by name."""
        given = {k: v for k, v in inputs.items() if v is not None}
        unknown = sorted(set(given) - set(self.input_names))
        if unknown:
            raise InputError(f"{type(self).__name__} got {unknown}; its graph takes {self.input_names}")
        if "token_type_ids" in self.input_names and "token_type_ids" not in given:
            given["token_type_ids"] = torch.zeros_like(torch.as_tensor(given["input_ids"]))
        if "attention_mask" in self.input_names and "attention_mask" not in given:
            given["attention_mask"] = torch.ones_like(torch.as_tensor(given["input_ids"]))
        missing = [n for n in self.input_names if n not in given]
        if missing:
            raise InputError(f"{type(self).__name__} needs {missing}")
        return {k: _numpy(v) for k, v in given.items()}

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, output_attentions=None,
                output_hidden_states=None, return_dict=None, **kwargs):
        _refuse_flags(self, output_attentions, output_hidden_states)
        feeds = self._feeds({"input_ids": input_ids, "attention_mask": attention_mask,
                             "token_type_ids": token_type_ids, **kwargs})
        out = self.session.run(self.output_names, feeds)
        result = self.output_class(**{n: torch.from_numpy(v) for n, v in zip(self.output_names, out)})
        return result.to_tuple() if return_dict is False else result

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name_or_path!r}, providers={self.providers})"


def _numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    return array.astype(np.int64) if array.dtype.kind in "iub" else array.astype(np.float32)


def _refuse_flags(model, output_attentions, output_hidden_states) -> None:
    """Attentions and hidden states are not in the graph: refused when asked for."""
    for name, value in (("output_attentions", output_attentions), ("output_hidden_states", output_hidden_states)):
        if value:
            raise UnsupportedOptionError(f"{type(model).__name__} cannot return {name[7:]}: the exported graph "
                                         "has only the task's outputs")


def _local_folder(model_id_or_path, file_name: str) -> str:
    """A folder as given; a hub repo id: the snapshot folder its graph and companions are downloaded to."""
    from ..hub import is_local, resolve_file

    name = os.fspath(model_id_or_path)
    if is_local(name):
        return name
    graph = resolve_file(name, file_name)
    for optional in (file_name + ".data", EXPORT_FILE, "generation_config.json", "tokenizer.json",
                     "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json", "merges.txt"):
        resolve_file(name, optional, required=False)
    resolve_file(name, "config.json")
    return os.path.dirname(graph)


def _exported_folder(task: str, model_id_or_path, cache_dir) -> Path:
    """The cache folder of (checkpoint, task); exported on first use. A local folder's key includes its
    files' sizes and times, so a checkpoint saved again is exported again."""
    source = os.fspath(model_id_or_path)
    key = source
    if os.path.isdir(source):
        files = sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in os.scandir(source) if e.is_file())
        key = f"{os.path.abspath(source)}|{files}"
    digest = hashlib.sha256(f"{key}|{task}".encode()).hexdigest()[:16]
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = folder / f"{Path(source).name}-{task}-{digest}"
    if not (folder / ONNX_FILE).is_file() or not (folder / EXPORT_FILE).is_file():
        export(load_for_task(source, task), folder, task=task, tokenizer=source if os.path.isdir(source) else None)
    return folder


class ORTModelForFeatureExtraction(ORTModel):
    task = "feature-extraction"
    output_class = BaseModelOutput


class ORTModelForMaskedLM(ORTModel):
    task = "fill-mask"
    output_class = MaskedLMOutput


class ORTModelForSequenceClassification(ORTModel):
    task = "text-classification"
    output_class = SequenceClassifierOutput


class ORTModelForTokenClassification(ORTModel):
    task = "token-classification"
    output_class = TokenClassifierOutput


class ORTModelForQuestionAnswering(ORTModel):
    task = "question-answering"
    output_class = QuestionAnsweringModelOutput


class ORTModelForCausalLM(GenerationMixin, ORTModel):
    """The merged decoder graph, stepped by our generate(): the cache passed in is a DynamicCache whose
    keys/values feed `past_key_values.*`; the new positions of `present.*` are appended to it."""

    task = "text-generation"

    def __init__(self, session, config, model_path):
        ORTModel.__init__(self, session, config, model_path)
        from ..generation.config import GENERATION_CONFIG_NAME, GenerationConfig

        path = Path(model_path) / GENERATION_CONFIG_NAME
        self.generation_config = (GenerationConfig.from_json_file(str(path)) if path.is_file()
                                  else GenerationConfig.from_model_config(config))
        from ..registry import model_class

        # GPT-2's learned positions end at n_positions: generate() checks the length as the PyTorch model does
        self.learned_positions = model_class("AutoModelForCausalLM", config).learned_positions
        self.num_layers = config.num_hidden_layers
        self._past_inputs = past_names(self.num_layers)
        kv = next(i for i in session.get_inputs() if i.name == self._past_inputs[0]).shape
        self._kv_shape = (kv[1], kv[3])  # (kv_heads, head_dim): fixed axes of the past inputs

    @property
    def base_model(self):
        return self

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                use_cache=None, return_dict=None, logits_to_keep=0, cache_position=None,
                output_attentions=None, output_hidden_states=None):
        _refuse_flags(self, output_attentions, output_hidden_states)
        if input_ids is None:
            raise InputError(f"{type(self).__name__} needs input_ids")
        if cache_position is not None:
            raise UnsupportedOptionError("cache_position (a static cache) is not supported by the ONNX decoder; "
                                         "use the default dynamic cache")
        B, T = input_ids.shape
        P = past_key_values.get_seq_length() if past_key_values is not None else 0
        if attention_mask is None:
            attention_mask = torch.ones(B, P + T, dtype=torch.long)
        if position_ids is None:
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, P:]
        feeds = {"input_ids": _numpy(input_ids), "attention_mask": _numpy(attention_mask),
                 "position_ids": _numpy(position_ids)}
        heads, head_dim = self._kv_shape
        for i in range(self.num_layers):
            if P:
                k, v = past_key_values[i]
                k, v = _numpy(k), _numpy(v)
            else:
                k = v = np.zeros((B, heads, 0, head_dim), dtype=np.float32)
            feeds[self._past_inputs[2 * i]], feeds[self._past_inputs[2 * i + 1]] = k, v
        logits, *present = self.session.run(None, feeds)
        if past_key_values is not None and (use_cache is None or use_cache):
            for i in range(self.num_layers):  # only the new positions: the cache already holds the past
                past_key_values.update(torch.from_numpy(present[2 * i][:, :, P:]),
                                       torch.from_numpy(present[2 * i + 1][:, :, P:]), i)
        logits = torch.from_numpy(logits)
        if logits_to_keep:
            logits = logits[:, -logits_to_keep:]
        result = CausalLMOutputWithPast(logits=logits, past_key_values=past_key_values)
        return result.to_tuple() if return_dict is False else result
