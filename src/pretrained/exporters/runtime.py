"""ONNX Runtime models with our API: ORTModelFor*.from_pretrained(folder) -> model(**inputs) -> ModelOutput.

    model = ORTModelForSequenceClassification.from_pretrained("out/")                 # an exported folder
    model = ORTModelForSequenceClassification.from_pretrained("ckpt/", export=True)   # export into the cache first
    pipeline("text-classification", model=model, tokenizer=tokenizer)

The backend-free part (RuntimeModel, CausalLMRuntime, Seq2SeqLMRuntime) is shared with the OpenVINO
classes (openvino.py). A model takes torch tensors (or numpy arrays) and returns our output dataclasses
holding CPU torch tensors, so pipelines and user code run unchanged. ORTModelForCausalLM runs generate() through our
GenerationMixin: each step feeds the cache's keys/values to the merged decoder graph and appends the
new ones it returns (see onnx.py), so greedy, sampling and beam search are the PyTorch model's loops.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..cache import encoder_decoder_cache
from ..errors import CheckpointError, InputError, UnsupportedOptionError
from ..generation.mixin import GenerationMixin
from ..heads import Seq2SeqLMHead
from ..models.clip import CLIPOutput
from ..models.whisper import WhisperGenerationMixin
from ..outputs import (BaseModelOutput, CausalLMOutputWithPast, ImageClassifierOutput, MaskedLMOutput,
                       QuestionAnsweringModelOutput, Seq2SeqLMOutput, SequenceClassifierOutput, TokenClassifierOutput)
from .graphs import cross_names, past_names
from .onnx import (COMPANION_FILES, EXPORT_FILE, ONNX_FILE, SEQ2SEQ_FILES, export, graph_files, load_for_task,
                   read_export_record, require)

_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
           "all": "ORT_ENABLE_ALL"}
# ONNX Runtime graph fusions a CPU-only session skips unless disabled_optimizers= says otherwise: the CPU
# SkipLayerNormalization kernel is slower than the Add, Add and LayerNormalization it replaces
# (MiniLM, ORT 1.32, one thread: ~8% of a batch-32 call, ~5% at batch 1); on GPUs the fused kernel wins.
CPU_DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)


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


class RuntimeModel:
    """An exported folder run by an inference engine, with the config and the call of a PyTorch model.
    A backend's subclass opens the graphs in its from_pretrained; a graph is a session with ONNX Runtime's interface:
    get_inputs() / get_outputs() (objects with .name and .shape), run(output_names, feeds) -> arrays,
    get_providers()."""

    task: str = ""
    output_class = BaseModelOutput
    backend = ""  # named in errors
    device_argument = ""  # from_pretrained's argument that picks the device

    def __init__(self, session, config, model_path: str | os.PathLike):
        self.session = session
        self.config = config
        self.name_or_path = os.fspath(model_path)
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]
        self.providers = session.get_providers()
        # a static-shape export takes its one shape only: name -> that shape, checked on every call
        self._static_shapes = {i.name: list(i.shape) for i in session.get_inputs()
                               if all(isinstance(d, int) for d in i.shape)}

    @classmethod
    def graph_files(cls, file_name: str = ONNX_FILE) -> tuple[str, ...]:
        return (file_name,)

    @classmethod
    def _folder(cls, model_id_or_path, export: bool, cache_dir, files: tuple[str, ...]) -> Path:
        """The exported folder (exported into the cache first when `export`), checked to hold `files`
        and to have been exported for this class's task."""
        folder = Path(_exported_folder(cls.task, model_id_or_path, cache_dir) if export
                      else _local_folder(model_id_or_path, files))
        for name in files:
            if not (folder / name).is_file():
                hint = " (pass export=True to export a PyTorch checkpoint)" if (folder / "config.json").is_file() else ""
                raise CheckpointError(f"{os.fspath(folder)!r} has no ONNX graph {name!r}{hint}")
        record = read_export_record(folder)
        if record.get("task") and record["task"] != cls.task:
            raise InputError(f"{os.fspath(folder / files[0])!r} was exported for task {record['task']!r}; "
                             f"{cls.__name__} runs {cls.task!r}")
        return folder

    @classmethod
    def _build(cls, sessions: list, folder: Path):
        from ..auto import AutoConfig

        return cls(sessions[0] if len(sessions) == 1 else tuple(sessions), AutoConfig.from_pretrained(folder), folder)


    # --- what a pipeline and user code read from a model ---

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")  # outputs always come back as CPU tensors, whatever the provider

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32  # the float inputs (pixels, features) an export takes; int8 graphs quantize inside

    def to(self, device):
        if torch.device(device).type != "cpu":
            raise UnsupportedOptionError(f"{type(self).__name__}.to({device!r}): an {self.backend} model picks its device "
                                         f"with from_pretrained({self.device_argument}=...); it runs on {self.providers[0]}")
        return self

    def eval(self):
        return self

    def get_output_embeddings(self):
        return None  # the LM head is inside the graph


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
        feeds = {k: _numpy(v) for k, v in given.items()}
        for name, fixed in self._static_shapes.items():
            if list(feeds[name].shape) != fixed:
                raise InputError(f"{name} has shape {list(feeds[name].shape)}; this graph was exported with "
                                 f"static shapes {fixed} (pad or batch the inputs to it, or export with dynamic axes)")
        return feeds

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


class ORTModel(RuntimeModel):
    """An InferenceSession (one per graph) over an exported folder."""

    backend = "ONNX Runtime"
    device_argument = "provider"

    @classmethod
    def from_pretrained(cls, model_id_or_path: str | os.PathLike, export: bool = False,
                        provider: str = "CPUExecutionProvider", providers: list | None = None, session_options=None,
                        intra_op_num_threads: int | None = None, inter_op_num_threads: int | None = None,
                        graph_optimization_level: str | None = None, disabled_optimizers: list[str] | None = None,
                        file_name: str = ONNX_FILE, cache_dir: str | os.PathLike | None = None, **kwargs):
        """An exported folder (or, with export=True, a PyTorch checkpoint exported into `cache_dir` once).
        provider / providers: ONNX Runtime execution providers, checked against the installed build's.
        disabled_optimizers: ONNX Runtime graph transformers to skip, by their exact names (ONNX Runtime
        ignores a name it does not know); None: CPU_DISABLED_OPTIMIZERS when only the CPU provider runs,
        none otherwise; [] runs every fusion."""
        if kwargs:
            raise UnsupportedOptionError(f"{cls.__name__}.from_pretrained does not take {sorted(kwargs)}")
        ort = require("onnxruntime")
        files = cls.graph_files(file_name)
        folder = cls._folder(model_id_or_path, export, cache_dir, files)
        if session_options is not None and (intra_op_num_threads or inter_op_num_threads or graph_optimization_level):
            raise InputError("pass session_options= or the thread / optimisation-level arguments, not both")
        options = session_options or make_session_options(intra_op_num_threads, inter_op_num_threads,
                                                          graph_optimization_level)
        chosen = check_providers(providers or [provider])
        skipped = _disabled_optimizers(disabled_optimizers, chosen)
        sessions = []
        for name in files:
            path = folder / name
            try:
                sessions.append(ort.InferenceSession(str(path), sess_options=options, providers=chosen,
                                                     disabled_optimizers=skipped))
            except Exception as e:  # onnxruntime raises its own Fail / InvalidProtobuf types
                raise CheckpointError(f"{os.fspath(path)!r} is not a readable ONNX graph: {type(e).__name__}: {e}") from e
        return cls._build(sessions, folder)


# where an execution provider comes from, for the error when the installed onnxruntime lacks it
_PROVIDER_PACKAGES = {
    "CUDAExecutionProvider": "onnxruntime-gpu", "TensorrtExecutionProvider": "onnxruntime-gpu with TensorRT",
    "DmlExecutionProvider": "onnxruntime-directml (Windows)", "CoreMLExecutionProvider": "onnxruntime on macOS",
    "OpenVINOExecutionProvider": "onnxruntime-openvino", "ROCMExecutionProvider": "onnxruntime-rocm",
}


def check_providers(providers: list) -> list:
    """The providers as given when the installed onnxruntime has each; else an UnsupportedOptionError
    (ONNX Runtime itself would only warn and fall back to the CPU)."""
    ort = require("onnxruntime")
    available = ort.get_available_providers()
    for entry in providers:
        name = entry[0] if isinstance(entry, (tuple, list)) else entry
        if name not in available:
            where = _PROVIDER_PACKAGES.get(name)
            raise UnsupportedOptionError(
                f"provider {name!r} is not in this onnxruntime build (available: {', '.join(available)})"
                + (f"; it comes with {where}" if where else ""))
    return list(providers)


def _disabled_optimizers(names, providers: list) -> list[str]:
    """The graph transformers a session skips: `names` as given, else the CPU default for CPU-only providers."""
    if names is None:
        cpu_only = all((p[0] if isinstance(p, (tuple, list)) else p) == "CPUExecutionProvider" for p in providers)
        return list(CPU_DISABLED_OPTIMIZERS) if cpu_only else []
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise InputError(f"disabled_optimizers={names!r}; expected a list of ONNX Runtime transformer names "
                         "such as ['SkipLayerNormFusion']")
    return list(names)


def _numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)  # no copy when already the graph's dtype (a tokenizer's int64 ids)
    return array.astype(np.int64 if array.dtype.kind in "iub" else np.float32, copy=False)


def _refuse_flags(model, output_attentions, output_hidden_states) -> None:
    """Attentions and hidden states are not in the graph: refused when asked for."""
    for name, value in (("output_attentions", output_attentions), ("output_hidden_states", output_hidden_states)):
        if value:
            raise UnsupportedOptionError(f"{type(model).__name__} cannot return {name[7:]}: the exported graph "
                                         "has only the task's outputs")


def _local_folder(model_id_or_path, files: tuple[str, ...]) -> str:
    """A folder as given; a hub repo id: the snapshot folder its graphs and companions are downloaded to."""
    from ..hub import is_local, resolve_file

    name = os.fspath(model_id_or_path)
    if is_local(name):
        return name
    graph = None
    for file_name in files:
        graph = resolve_file(name, file_name)
        resolve_file(name, file_name + ".data", required=False)
    for optional in (EXPORT_FILE, "generation_config.json", *COMPANION_FILES):
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
    if not all((folder / f).is_file() for f in (*graph_files(task), EXPORT_FILE)):
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


class ImageClassificationRuntime:
    """An image classifier's graph: pixel_values (B, C, H, W) at the config's size -> logits (B, num_labels)."""

    task = "image-classification"
    output_class = ImageClassifierOutput

    def forward(self, pixel_values=None, output_attentions=None, output_hidden_states=None, return_dict=None):
        return super().forward(pixel_values=pixel_values, output_attentions=output_attentions,
                               output_hidden_states=output_hidden_states, return_dict=return_dict)


class ORTModelForImageClassification(ImageClassificationRuntime, ORTModel):
    pass


class ZeroShotImageClassificationRuntime:
    """CLIP's graph: captions (input_ids, attention_mask) and images (pixel_values), two independent batches ->
    logits_per_image (images, captions), logits_per_text, text_embeds, image_embeds."""

    task = "zero-shot-image-classification"
    output_class = CLIPOutput

    def forward(self, input_ids=None, pixel_values=None, attention_mask=None, output_attentions=None,
                output_hidden_states=None, return_dict=None):
        return super().forward(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values,
                               output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                               return_dict=return_dict)


class ORTModelForZeroShotImageClassification(ZeroShotImageClassificationRuntime, ORTModel):
    pass


class CausalLMRuntime(GenerationMixin):
    """The merged decoder graph, stepped by our generate(): the cache passed in is a DynamicCache whose
    keys/values feed `past_key_values.*`; the new positions of `present.*` are appended to it.
    Mixed into a backend's model class (ORTModel, OVModel)."""

    task = "text-generation"

    def __init__(self, session, config, model_path):
        super().__init__(session, config, model_path)
        self.generation_config = _generation_config(model_path, config)
        from ..registry import model_class

        # GPT-2's learned positions end at n_positions: generate() checks the length as the PyTorch model does
        self.learned_positions = model_class("AutoModelForCausalLM", config).learned_positions
        self.num_layers = config.num_hidden_layers
        self._past_inputs = past_names(self.num_layers)
        self._kv_shape = _kv_shape(session, self._past_inputs[0])

    @property
    def base_model(self):
        return self

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                use_cache=None, return_dict=None, logits_to_keep=0, cache_position=None,
                output_attentions=None, output_hidden_states=None):
        _refuse_flags(self, output_attentions, output_hidden_states)
        if input_ids is None:
            raise InputError(f"{type(self).__name__} needs input_ids")
        _refuse_static_cache(self, cache_position)
        B, T = input_ids.shape
        P = past_key_values.get_seq_length() if past_key_values is not None else 0
        if attention_mask is None:
            attention_mask = torch.ones(B, P + T, dtype=torch.long)
        if position_ids is None:
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, P:]
        feeds = {"input_ids": _numpy(input_ids), "attention_mask": _numpy(attention_mask),
                 "position_ids": _numpy(position_ids)}
        feeds.update(_past_feeds(self._past_inputs, past_key_values, P, B, self._kv_shape))
        logits, *present = self.session.run(None, feeds)
        if past_key_values is not None and (use_cache is None or use_cache):
            _append_present(past_key_values, present, P)
        logits = torch.from_numpy(logits)
        if logits_to_keep:
            logits = logits[:, -logits_to_keep:]
        result = CausalLMOutputWithPast(logits=logits, past_key_values=past_key_values)
        return result.to_tuple() if return_dict is False else result


def _generation_config(model_path, config):
    from ..generation.config import GENERATION_CONFIG_NAME, GenerationConfig

    path = Path(model_path) / GENERATION_CONFIG_NAME
    return GenerationConfig.from_json_file(str(path)) if path.is_file() else GenerationConfig.from_model_config(config)


def _kv_shape(session, name: str) -> tuple[int, int]:
    """(kv_heads, head_dim): the fixed axes of a past key/value input."""
    shape = next(i for i in session.get_inputs() if i.name == name).shape
    return int(shape[1]), int(shape[3])


def _refuse_static_cache(model, cache_position) -> None:
    if cache_position is not None:
        raise UnsupportedOptionError(f"cache_position (a static cache) is not supported by {type(model).__name__}'s "
                                     "exported decoder; use the default dynamic cache")


def _past_feeds(names: list[str], cache, P: int, B: int, kv_shape: tuple[int, int]) -> dict:
    """The cache's keys/values (B, H, P, D) as the graph's past inputs; empty (P = 0) on the first step."""
    heads, head_dim = kv_shape
    feeds = {}
    for i in range(len(names) // 2):
        if P:
            k, v = cache[i][:2]
            k, v = _numpy(k), _numpy(v)
        else:
            k = v = np.zeros((B, heads, 0, head_dim), dtype=np.float32)
        feeds[names[2 * i]], feeds[names[2 * i + 1]] = k, v
    return feeds


def _append_present(cache, present: list, P: int) -> None:
    """Only the new positions of the graph's present keys/values: the cache already holds the past."""
    for i in range(len(present) // 2):
        cache.update(torch.from_numpy(present[2 * i][:, :, P:]), torch.from_numpy(present[2 * i + 1][:, :, P:]), i)


class ORTModelForCausalLM(CausalLMRuntime, ORTModel):
    """A decoder exported with task text-generation, run by ONNX Runtime; see CausalLMRuntime."""


@dataclass
class EncoderOutputWithCross(BaseModelOutput):
    """The encoder graph's output: last_hidden_state (B, S, C) and every decoder layer's cross-attention
    keys and values (B, H, S, D), flat: (layer 0 key, layer 0 value, layer 1 key, ...)."""

    cross_key_values: tuple = None


class _GraphEncoder:
    """`model.get_encoder()` of a seq2seq runtime model: the encoder graph with a PyTorch encoder's call."""

    def __init__(self, model):
        self.model = model

    def __call__(self, input_ids=None, attention_mask=None, input_features=None, inputs_embeds=None,
                 output_attentions=None, output_hidden_states=None, return_dict=None):
        model = self.model
        _refuse_flags(model, output_attentions, output_hidden_states)
        main = model.main_input_name
        if inputs_embeds is not None:
            raise UnsupportedOptionError(f"{type(model).__name__}'s encoder graph takes {main}, not inputs_embeds")
        for name, value in (("input_ids", input_ids), ("input_features", input_features)):
            if value is not None and name != main:
                raise InputError(f"{type(model).__name__}'s encoder graph takes {main}, not {name}")
        if main == "input_features":  # Whisper: the whole window is read, no mask
            if input_features is None:
                raise InputError(f"{type(model).__name__}'s encoder needs input_features (from WhisperFeatureExtractor)")
            feeds = {"input_features": _numpy(input_features)}
        else:
            if input_ids is None:
                raise InputError(f"{type(model).__name__}'s encoder needs input_ids")
            if attention_mask is None:
                attention_mask = torch.ones_like(torch.as_tensor(input_ids))
            feeds = {"input_ids": _numpy(input_ids), "attention_mask": _numpy(attention_mask)}
        hidden, *cross = model.encoder_session.run(None, feeds)
        out = EncoderOutputWithCross(last_hidden_state=torch.from_numpy(hidden),
                                     cross_key_values=tuple(torch.from_numpy(t) for t in cross))
        return out.to_tuple() if return_dict is False else out


class Seq2SeqLMRuntime(GenerationMixin):
    """A seq2seq export's two graphs, stepped by our generate(): the encoder graph runs once per prompt
    and also returns each decoder layer's cross-attention keys/values; every decoder step feeds the
    self-attention cache as `past_key_values.*` and those cross keys/values as `cross.*`, and appends
    the new positions of `present.*`. The cross keys/values are repeated once to the decoder's rows
    (beams, returned sequences) and kept in the cache's cross part, which beam search never reorders."""

    task = "text2text-generation"
    main_input_name = "input_ids"
    auto_class = "AutoModelForSeq2SeqLM"

    def __init__(self, sessions, config, model_path):
        if not isinstance(sessions, tuple) or len(sessions) != 2:
            raise InputError(f"{type(self).__name__} needs the (encoder, decoder) sessions of a seq2seq export")
        encoder, decoder = sessions
        super().__init__(decoder, config, model_path)
        self.encoder_session = encoder
        self.generation_config = _generation_config(model_path, config)
        from ..registry import model_class

        self.learned_positions = model_class(self.auto_class, config).learned_positions
        self.num_layers = sum(name.startswith("present.") for name in self.output_names) // 2
        self._past_inputs = past_names(self.num_layers)
        self._cross_inputs = cross_names(self.num_layers)
        self._kv_shape = _kv_shape(decoder, self._past_inputs[0])
        self.encoder = _GraphEncoder(self)

    @classmethod
    def graph_files(cls, file_name: str = ONNX_FILE) -> tuple[str, ...]:
        if file_name != ONNX_FILE:
            raise UnsupportedOptionError(f"{cls.__name__} reads the two graphs {SEQ2SEQ_FILES} of a seq2seq export; "
                                         f"file_name={file_name!r} cannot name them")
        return SEQ2SEQ_FILES

    # the loop's ids and mask are the decoder's, the prompt's mask the encoder's: as the PyTorch models
    prepare_inputs_for_generation = Seq2SeqLMHead.prepare_inputs_for_generation

    @property
    def base_model(self):
        return self

    def get_encoder(self):
        return self.encoder

    def forward(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
                encoder_outputs=None, past_key_values=None, use_cache=None, return_dict=None, cache_position=None,
                output_attentions=None, output_hidden_states=None, input_features=None):
        _refuse_flags(self, output_attentions, output_hidden_states)
        _refuse_static_cache(self, cache_position)
        if decoder_input_ids is None:
            raise InputError(f"{type(self).__name__} needs decoder_input_ids")
        if encoder_outputs is None:
            encoder_outputs = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                           input_features=input_features)
        elif isinstance(encoder_outputs, (tuple, list)):
            encoder_outputs = EncoderOutputWithCross(*encoder_outputs)
        use_cache = getattr(self.config, "use_cache", True) if use_cache is None else use_cache
        cache = encoder_decoder_cache(past_key_values, use_cache)
        B, T = decoder_input_ids.shape
        P = cache.get_seq_length() if cache is not None else 0
        hidden = encoder_outputs.last_hidden_state  # (B_enc, S, C)
        if attention_mask is None:
            attention_mask = torch.ones(hidden.shape[:2], dtype=torch.long)
        if decoder_attention_mask is None:
            decoder_attention_mask = torch.ones(B, P + T, dtype=torch.long)
        feeds = {"decoder_input_ids": _numpy(decoder_input_ids), "decoder_attention_mask": _numpy(decoder_attention_mask),
                 "encoder_attention_mask": _numpy(_rows(attention_mask, B))}
        feeds.update(_past_feeds(self._past_inputs, cache, P, B, self._kv_shape))
        feeds.update(zip(self._cross_inputs, (_numpy(t) for t in self._cross(encoder_outputs, cache, B))))
        logits, *present = self.session.run(None, feeds)
        if cache is not None and use_cache:
            _append_present(cache, present, P)
        result = Seq2SeqLMOutput(logits=torch.from_numpy(logits), past_key_values=cache if use_cache else None,
                                 encoder_last_hidden_state=hidden)
        return result.to_tuple() if return_dict is False else result

    def _cross(self, encoder_outputs, cache, rows: int) -> list[torch.Tensor]:
        """Cross keys/values at the decoder's `rows`: from the cache once stored, else the encoder output's,
        repeated to the rows and stored."""
        if cache is not None and len(cache.cross_attention_cache):
            return [t for i in range(self.num_layers) for t in cache.cross_attention_cache[i]]
        cross = getattr(encoder_outputs, "cross_key_values", None)
        if cross is None or len(cross) != 2 * self.num_layers:
            raise InputError(f"{type(self).__name__}: encoder_outputs must come from model.get_encoder() (its graph also "
                             "returns the decoder's cross-attention keys/values); pass input_ids instead")
        cross = [_rows(t, rows) for t in cross]
        if cache is not None:
            for i in range(self.num_layers):
                cache.cross_attention_cache.update(cross[2 * i], cross[2 * i + 1], i)
        return cross


def _rows(t: torch.Tensor, rows: int) -> torch.Tensor:
    """`t` with each row repeated to `rows` rows: generate() keeps one encoder row per prompt for its beams."""
    if t.shape[0] == rows:
        return t
    if rows % t.shape[0]:
        raise InputError(f"{rows} decoder rows cannot share {t.shape[0]} encoder rows (need a multiple)")
    return t.repeat_interleave(rows // t.shape[0], dim=0)


class SpeechSeq2SeqRuntime(WhisperGenerationMixin, Seq2SeqLMRuntime):
    """Whisper exported with task automatic-speech-recognition: the encoder graph reads input_features
    (B, mel bins, frames); Whisper's generate() (prompt, language detection, timestamps) steps the graphs.
    Word timestamps need cross-attention weights, which the graphs do not return: refused by name."""

    task = "automatic-speech-recognition"
    main_input_name = "input_features"
    auto_class = "AutoModelForSpeechSeq2Seq"


class ORTModelForSeq2SeqLM(Seq2SeqLMRuntime, ORTModel):
    """A seq2seq model (T5, BART, Marian) exported with task text2text-generation, run by ONNX Runtime;
    see Seq2SeqLMRuntime."""


class ORTModelForSpeechSeq2Seq(SpeechSeq2SeqRuntime, ORTModel):
    """Whisper exported with task automatic-speech-recognition, run by ONNX Runtime; see SpeechSeq2SeqRuntime."""
