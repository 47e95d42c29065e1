"""OpenVINO models with our API: OVModelFor*.from_pretrained(folder) -> model(**inputs) -> ModelOutput.

    model = OVModelForSequenceClassification.from_pretrained("out/")                # an exported folder
    model = OVModelForCausalLM.from_pretrained("ckpt/", export=True, device="CPU")  # export into the cache first
    pipeline("text-classification", model=model)

OpenVINO reads the graphs our ONNX export writes (`openvino.Core().read_model` on model.onnx); the
classes share everything but the opening of a graph with the ONNX Runtime ones (runtime.py): the
same outputs, generate() loop and pipeline support. A compiled graph is wrapped in `OVSession`, which
has the part of onnxruntime.InferenceSession's interface the models use. Needs the `openvino` extra.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np

from ..errors import CheckpointError, UnsupportedOptionError
from ..outputs import (BaseModelOutput, MaskedLMOutput, QuestionAnsweringModelOutput, SequenceClassifierOutput,
                       TokenClassifierOutput)
from .onnx import ONNX_FILE
from .runtime import (CausalLMRuntime, ImageClassificationRuntime, RuntimeModel, Seq2SeqLMRuntime,
                      SpeechSeq2SeqRuntime, ZeroShotImageClassificationRuntime)


def require_openvino():
    try:
        import openvino
    except ImportError as e:
        raise ImportError("OpenVINO models need the 'openvino' package: pip install 'pretrained[openvino]'") from e
    return openvino


class OVSession:
    """A graph compiled for an OpenVINO device, with InferenceSession's get_inputs / get_outputs / run."""

    def __init__(self, path: str | os.PathLike, device: str = "CPU", ov_config: dict | None = None, core=None):
        ov = require_openvino()
        core = core or ov.Core()
        try:
            model = core.read_model(os.fspath(path))
        except Exception as e:  # OpenVINO raises RuntimeError with the parser's message
            raise CheckpointError(f"{os.fspath(path)!r} is not a readable ONNX graph for OpenVINO: "
                                  f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
        # float32 unless asked otherwise: OpenVINO's CPU plugin would run bfloat16 on CPUs that have it,
        # ~1e-2 from the PyTorch model; pass ov_config={"INFERENCE_PRECISION_HINT": "bf16"} for that speed
        self.compiled = core.compile_model(model, device, {"INFERENCE_PRECISION_HINT": "f32", **(ov_config or {})})
        self.request = self.compiled.create_infer_request()
        self.device = device
        self._inputs = [_port(p) for p in self.compiled.inputs]
        self._outputs = [_port(p) for p in self.compiled.outputs]

    def get_inputs(self):
        return self._inputs

    def get_outputs(self):
        return self._outputs

    def get_providers(self) -> list[str]:
        return [f"OpenVINO:{self.device}"]

    def run(self, output_names, feeds: dict) -> list[np.ndarray]:
        # outputs copied (not views of the request's buffers, which the next call overwrites)
        results = self.request.infer(feeds, share_inputs=False, share_outputs=False)
        by_name = {port.get_any_name(): value for port, value in results.items()}
        return [by_name[name] for name in (output_names or [o.name for o in self._outputs])]


def _port(port) -> SimpleNamespace:
    """name and shape (ints for static axes, None for dynamic ones) of a compiled graph's input or output."""
    shape = [d.get_length() if d.is_static else None for d in port.get_partial_shape()]
    return SimpleNamespace(name=port.get_any_name(), shape=shape)


class OVModel(RuntimeModel):
    """Compiled OpenVINO graphs (one per exported graph) over an exported folder."""

    backend = "OpenVINO"
    device_argument = "device"

    @classmethod
    def from_pretrained(cls, model_id_or_path: str | os.PathLike, export: bool = False, device: str = "CPU",
                        ov_config: dict | None = None, file_name: str = ONNX_FILE,
                        cache_dir: str | os.PathLike | None = None, **kwargs):
        """An exported folder (or, with export=True, a PyTorch checkpoint exported into `cache_dir` once),
        compiled for OpenVINO `device` ("CPU", "GPU", ...) with `ov_config` (e.g. {"INFERENCE_NUM_THREADS": "2"})."""
        if kwargs:
            raise UnsupportedOptionError(f"{cls.__name__}.from_pretrained does not take {sorted(kwargs)}")
        ov = require_openvino()
        core = ov.Core()
        if device.split(".")[0] not in {d.split(".")[0] for d in core.available_devices}:
            raise UnsupportedOptionError(f"OpenVINO device {device!r} is not available here "
                                         f"(available: {', '.join(core.available_devices)})")
        files = cls.graph_files(file_name)
        folder = cls._folder(model_id_or_path, export, cache_dir, files)
        return cls._build([OVSession(folder / name, device, ov_config, core) for name in files], folder)


class OVModelForFeatureExtraction(OVModel):
    task = "feature-extraction"
    output_class = BaseModelOutput


class OVModelForMaskedLM(OVModel):
    task = "fill-mask"
    output_class = MaskedLMOutput


class OVModelForSequenceClassification(OVModel):
    task = "text-classification"
    output_class = SequenceClassifierOutput


class OVModelForTokenClassification(OVModel):
    task = "token-classification"
    output_class = TokenClassifierOutput


class OVModelForQuestionAnswering(OVModel):
    task = "question-answering"
    output_class = QuestionAnsweringModelOutput


class OVModelForImageClassification(ImageClassificationRuntime, OVModel):
    pass


class OVModelForZeroShotImageClassification(ZeroShotImageClassificationRuntime, OVModel):
    pass


class OVModelForCausalLM(CausalLMRuntime, OVModel):
    """A decoder exported with task text-generation, run by OpenVINO; see runtime.CausalLMRuntime."""


class OVModelForSeq2SeqLM(Seq2SeqLMRuntime, OVModel):
    """A seq2seq model exported with task text2text-generation, run by OpenVINO; see runtime.Seq2SeqLMRuntime."""


class OVModelForSpeechSeq2Seq(SpeechSeq2SeqRuntime, OVModel):
    """Whisper exported with task automatic-speech-recognition, run by OpenVINO; see runtime.SpeechSeq2SeqRuntime."""
