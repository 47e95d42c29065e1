"""AutoConfig and AutoModel*: pick the implementation from config.json's `model_type`."""

from __future__ import annotations

import os
from typing import Any

from . import registry
from .configuration import PretrainedConfig, get_config_dict
from .errors import CheckpointError
from .hub import HubOptions, hub_kwargs


class AutoConfig:
    def __init__(self):
        raise EnvironmentError("AutoConfig is instantiated with AutoConfig.from_pretrained(...) or for_model(...)")

    @classmethod
    def for_model(cls, model_type: str, **kwargs: Any) -> PretrainedConfig:
        return registry.config_class(model_type)(**kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any):
        options = HubOptions.pop_from(kwargs)
        kwargs.pop("trust_remote_code", None)
        gguf_file = kwargs.pop("gguf_file", None)
        if gguf_file or os.fspath(pretrained_model_name_or_path).endswith(".gguf"):
            from .gguf import load_config_dict

            config_dict = load_config_dict(pretrained_model_name_or_path, gguf_file, options)
            return registry.config_class(config_dict["model_type"]).from_dict(config_dict, **kwargs)
        config_dict, path = get_config_dict(pretrained_model_name_or_path, options)
        model_type = config_dict.get("model_type")
        if model_type is None:
            raise CheckpointError(
                f"{path} has no 'model_type'; supported model types: {', '.join(registry.supported_model_types())}"
            )
        config_dict["_name_or_path"] = os.fspath(pretrained_model_name_or_path)
        return registry.config_class(model_type).from_dict(config_dict, **kwargs)

    @staticmethod
    def register(model_type: str, config_cls: type, exist_ok: bool = False) -> None:
        registry.register_config(model_type, config_cls, exist_ok)


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def adapter_base(path: str | os.PathLike) -> str | None:
    """The base model a local LoRA adapter folder names (adapter_config.json and no full weights), or None: such a
    folder given to AutoModelFor*.from_pretrained or pipeline() loads the base model with the adapter on it, as
    Transformers does when PEFT is installed. A config.json beside the adapter (its labels) is the model's config."""
    folder = os.fspath(path)
    if not os.path.isfile(os.path.join(folder, "adapter_config.json")) or any(
            os.path.isfile(os.path.join(folder, name)) for name in WEIGHT_FILES):
        return None
    from .adapters.config import LoraConfig

    base = LoraConfig.from_pretrained(folder).base_model_name_or_path
    if not base:
        raise CheckpointError(f"{os.path.join(folder, 'adapter_config.json')} has no base_model_name_or_path: load "
                              "the base model and call PeftModel.from_pretrained(model, folder)")
    return base


def config_source(path: str | os.PathLike) -> str | os.PathLike:
    """Where the config of `path` lives: an adapter folder without its own config.json takes its base model's."""
    if os.path.isfile(os.path.join(os.fspath(path), "config.json")):
        return path
    return adapter_base(path) or path


class _AutoModel:
    """Shared body of the AutoModel* classes; `task` is the Auto class's own name."""

    task: str = ""

    def __init__(self):
        raise EnvironmentError(f"{type(self).__name__} is instantiated with from_pretrained(...) or from_config(...)")

    @classmethod
    def from_config(cls, config: PretrainedConfig, **kwargs: Any):
        return registry.model_class(cls.task, config).from_config(config, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *model_args, **kwargs: Any):
        base = adapter_base(pretrained_model_name_or_path)
        if base is not None:
            from .adapters import PeftModel

            if kwargs.get("config") is None and os.path.isfile(
                    os.path.join(os.fspath(pretrained_model_name_or_path), "config.json")):  # the adapter's labels
                kwargs["config"] = AutoConfig.from_pretrained(pretrained_model_name_or_path)
            model = cls.from_pretrained(base, *model_args, **kwargs)
            return PeftModel.from_pretrained(model, pretrained_model_name_or_path)
        config = kwargs.pop("config", None)
        if not isinstance(config, PretrainedConfig):
            # config-field kwargs (num_labels=...) are applied by the model class's from_pretrained
            options = hub_kwargs(kwargs)
            if "gguf_file" in kwargs:
                options["gguf_file"] = kwargs["gguf_file"]
            config = AutoConfig.from_pretrained(config or pretrained_model_name_or_path, **options)
        model_cls = registry.model_class(cls.task, config)
        return model_cls.from_pretrained(pretrained_model_name_or_path, *model_args, config=config, **kwargs)

    @classmethod
    def register(cls, config_cls: type, model_cls: type, exist_ok: bool = False) -> None:
        registry.register_model(cls.task, config_cls, model_cls, exist_ok)


def _auto_class(name: str) -> type:
    return type(name, (_AutoModel,), {"task": name, "__doc__": f"{name}: the {registry.TASKS[name]} class of a checkpoint's model_type."})


AutoModel = _auto_class("AutoModel")
AutoModelForMaskedLM = _auto_class("AutoModelForMaskedLM")
AutoModelForSequenceClassification = _auto_class("AutoModelForSequenceClassification")
AutoModelForTokenClassification = _auto_class("AutoModelForTokenClassification")
AutoModelForQuestionAnswering = _auto_class("AutoModelForQuestionAnswering")
AutoModelForMultipleChoice = _auto_class("AutoModelForMultipleChoice")
AutoModelForCausalLM = _auto_class("AutoModelForCausalLM")
AutoModelForSeq2SeqLM = _auto_class("AutoModelForSeq2SeqLM")
AutoModelForImageClassification = _auto_class("AutoModelForImageClassification")
AutoModelForSpeechSeq2Seq = _auto_class("AutoModelForSpeechSeq2Seq")
