"""AutoImageProcessor, AutoFeatureExtractor, AutoProcessor: the preprocessing class a checkpoint names.

The class comes from preprocessor_config.json (`image_processor_type`, else `feature_extractor_type`), from
Transformers 5's processor_config.json (its `image_processor` entry), else from config.json's model_type.
AutoProcessor returns the multimodal processor (`processor_class`, e.g. CLIPProcessor) when the checkpoint
has one, else the image processor, else the tokenizer.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import CheckpointError, UnknownModelError
from ..hub import HubOptions, resolve_file
from .base import PREPROCESSOR_NAME, load_preprocessor_config, read_json_object

PROCESSOR_NAME = "processor_config.json"
# model_type -> image processor class name, for checkpoints whose preprocessing config names no class
MODEL_TYPE_PROCESSORS = {"vit": "ViTImageProcessor", "clip": "CLIPImageProcessor",
                         "clip_vision_model": "CLIPImageProcessor"}
MODEL_TYPE_FEATURE_EXTRACTORS = {"whisper": "WhisperFeatureExtractor"}
MULTIMODAL = {"CLIPProcessor": ("pretrained.processing.clip", "CLIPProcessor"),
              "WhisperProcessor": ("pretrained.processing.whisper", "WhisperProcessor")}
MODEL_TYPE_MULTIMODAL = {"clip": "CLIPProcessor", "whisper": "WhisperProcessor"}


def _json(name, filename: str, options: HubOptions) -> dict | None:
    path = resolve_file(name, filename, options, required=False)
    if path is None:
        return None
    return read_json_object(path)


def image_processor_config(name, options: HubOptions) -> dict:
    """The image processor's (or feature extractor's) settings: preprocessor_config.json, else the entry in
    Transformers 5's processor_config.json."""
    if os.path.isfile(name):
        return load_preprocessor_config(name, options)
    config = _json(name, PREPROCESSOR_NAME, options)
    if config is None:
        nested = _json(name, PROCESSOR_NAME, options) or {}
        config = nested.get("image_processor") or nested.get("feature_extractor")
    if config is None:
        raise CheckpointError(f"{os.fspath(name)!r} has no image processor: looked for {PREPROCESSOR_NAME} and an "
                              f"'image_processor' entry in {PROCESSOR_NAME}")
    return config


def _image_processor_class(config: dict, name, options: HubOptions) -> type:
    from .image_processors import IMAGE_PROCESSORS

    class_name = config.get("image_processor_type")
    if class_name:
        class_name = class_name.removesuffix("Fast").removesuffix("Pil")
    elif config.get("feature_extractor_type"):
        class_name = config["feature_extractor_type"].replace("FeatureExtractor", "ImageProcessor")
    else:
        model_type = (_json(name, "config.json", options) or {}).get("model_type") if not os.path.isfile(name) else None
        class_name = MODEL_TYPE_PROCESSORS.get(model_type)
        if class_name is None:
            raise UnknownModelError(f"{os.fspath(name)!r}: {PREPROCESSOR_NAME} names no image_processor_type and "
                                    f"model_type {model_type!r} has no default; supported: {sorted(IMAGE_PROCESSORS)}")
    if class_name not in IMAGE_PROCESSORS:
        raise UnknownModelError(f"{os.fspath(name)!r} asks for {class_name}, which pretrained does not implement; "
                                f"supported: {sorted(IMAGE_PROCESSORS)}")
    return IMAGE_PROCESSORS[class_name]


class AutoImageProcessor:
    def __init__(self):
        raise EnvironmentError("AutoImageProcessor is instantiated with AutoImageProcessor.from_pretrained(...)")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs: Any):
        """`use_fast` is accepted and has no effect: there is one implementation, equal to Transformers' PIL one."""
        kwargs.pop("use_fast", None)
        kwargs.pop("trust_remote_code", None)
        options = HubOptions.pop_from(kwargs)
        config = image_processor_config(pretrained_model_name_or_path, options)
        processor_cls = _image_processor_class(config, pretrained_model_name_or_path, options)
        return processor_cls.from_dict(config, **kwargs)


class AutoFeatureExtractor:
    """Audio feature extractors (WhisperFeatureExtractor); image checkpoints give their image processor
    (Transformers' older name for those)."""

    def __init__(self):
        raise EnvironmentError("AutoFeatureExtractor is instantiated with AutoFeatureExtractor.from_pretrained(...)")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs: Any):
        from .image_processors import IMAGE_PROCESSORS
        from .whisper import FEATURE_EXTRACTORS

        options = HubOptions.pop_from(kwargs)
        config = image_processor_config(pretrained_model_name_or_path, options)
        kind = config.get("feature_extractor_type")
        if kind is None and not config.get("image_processor_type") and not os.path.isfile(pretrained_model_name_or_path):
            model_type = (_json(pretrained_model_name_or_path, "config.json", options) or {}).get("model_type")
            kind = MODEL_TYPE_FEATURE_EXTRACTORS.get(model_type)
        if kind in FEATURE_EXTRACTORS:
            return FEATURE_EXTRACTORS[kind].from_dict(config, **kwargs)
        if kind and not config.get("image_processor_type") and \
                kind.replace("FeatureExtractor", "ImageProcessor") not in IMAGE_PROCESSORS:
            raise UnknownModelError(f"{os.fspath(pretrained_model_name_or_path)!r} asks for {kind}, which pretrained "
                                    f"does not implement; supported: {sorted(IMAGE_PROCESSORS)}")
        processor_cls = _image_processor_class(config, pretrained_model_name_or_path, options)
        return processor_cls.from_dict(config, **kwargs)


class AutoProcessor:
    def __init__(self):
        raise EnvironmentError("AutoProcessor is instantiated with AutoProcessor.from_pretrained(...)")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs: Any):
        from importlib import import_module

        name = pretrained_model_name_or_path
        options = HubOptions.pop_from(dict(kwargs))
        configs = [_json(name, f, options) or {} for f in (PROCESSOR_NAME, PREPROCESSOR_NAME, "tokenizer_config.json")]
        class_name = next((c["processor_class"] for c in configs if c.get("processor_class")), None)
        if class_name is None:
            class_name = MODEL_TYPE_MULTIMODAL.get((_json(name, "config.json", options) or {}).get("model_type"))
        if class_name in MULTIMODAL:
            module, attr = MULTIMODAL[class_name]
            return getattr(import_module(module), attr).from_pretrained(name, **kwargs)
        if class_name is not None:
            raise UnknownModelError(f"{os.fspath(name)!r} asks for {class_name}, which pretrained does not implement; "
                                    f"supported: {sorted(MULTIMODAL)}")
        extractor = configs[1] or configs[0].get("feature_extractor") or {}
        if extractor.get("feature_extractor_type") == "WhisperFeatureExtractor":
            return AutoFeatureExtractor.from_pretrained(name, **kwargs)
        if configs[1] or configs[0].get("image_processor"):
            return AutoImageProcessor.from_pretrained(name, **kwargs)
        from ..tokenization.auto import AutoTokenizer

        return AutoTokenizer.from_pretrained(name, **kwargs)
