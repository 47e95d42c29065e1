"""model_type -> implementation, resolved lazily (a model file is imported on first use).

A family is a module in `pretrained.models` and a class-name prefix: model_type "bert" means
`pretrained.models.bert` with `BertConfig`, `BertModel`, `BertForMaskedLM`, ... A task a family
does not implement simply has no class of that name. Users add their own with `register_config`
and `register_model` (what AutoConfig.register / AutoModel*.register call).
"""

from __future__ import annotations

import difflib
from importlib import import_module

from .errors import InputError, UnknownModelError

# model_type -> (module in pretrained.models, class-name prefix)
FAMILIES: dict[str, tuple[str, str]] = {
    "bert": ("bert", "Bert"),
    "roberta": ("roberta", "Roberta"),
    "xlm-roberta": ("roberta", "XLMRoberta"),
    "distilbert": ("distilbert", "DistilBert"),
    "mpnet": ("mpnet", "MPNet"),
    "deberta-v2": ("deberta_v2", "DebertaV2"),
    "modernbert": ("modernbert", "ModernBert"),
    "gpt2": ("gpt2", "GPT2"),
    "llama": ("llama", "Llama"),
    "mistral": ("llama", "Mistral"),
    "qwen2": ("llama", "Qwen2"),
    "qwen3": ("llama", "Qwen3"),
    "gemma3_text": ("gemma3", "Gemma3Text"),
    "mixtral": ("mixtral", "Mixtral"),
    "qwen3_moe": ("qwen3_moe", "Qwen3Moe"),
    "phi3": ("phi3", "Phi3"),
    "t5": ("t5", "T5"),
    "mt5": ("t5", "MT5"),
    "bart": ("bart", "Bart"),
    "marian": ("bart", "Marian"),
    "vit": ("vit", "ViT"),
    "clip": ("clip", "CLIP"),
    "clip_text_model": ("clip", "CLIPText"),
    "clip_vision_model": ("clip", "CLIPVision"),
    "whisper": ("whisper", "Whisper"),
}

# Auto class -> class-name suffix of the task
TASKS: dict[str, str] = {
    "AutoModel": "Model",
    "AutoModelForMaskedLM": "ForMaskedLM",
    "AutoModelForSequenceClassification": "ForSequenceClassification",
    "AutoModelForTokenClassification": "ForTokenClassification",
    "AutoModelForQuestionAnswering": "ForQuestionAnswering",
    "AutoModelForMultipleChoice": "ForMultipleChoice",
    "AutoModelForCausalLM": "ForCausalLM",
    "AutoModelForSeq2SeqLM": "ForConditionalGeneration",
    "AutoModelForImageClassification": "ForImageClassification",
    "AutoModelForSpeechSeq2Seq": "ForConditionalGeneration",
}

_user_configs: dict[str, type] = {}
_user_models: dict[str, dict[type, type]] = {task: {} for task in TASKS}


def supported_model_types() -> list[str]:
    return sorted(set(FAMILIES) | set(_user_configs))


def _family(model_type: str) -> tuple[str, str]:
    if model_type not in FAMILIES:
        close = difflib.get_close_matches(str(model_type), supported_model_types(), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownModelError(
            f"model_type {model_type!r} is not supported.{hint} Supported: {', '.join(supported_model_types())}. "
            "Register your own with AutoConfig.register and AutoModel.register."
        )
    return FAMILIES[model_type]


def config_class(model_type: str) -> type:
    if model_type in _user_configs:
        return _user_configs[model_type]
    module, prefix = _family(model_type)
    return getattr(import_module(f"pretrained.models.{module}"), f"{prefix}Config")


def model_class(task: str, config) -> type:
    """The class implementing `task` (an Auto class name) for `config`."""
    for config_cls, model_cls in _user_models[task].items():
        if type(config) is config_cls:
            return model_cls
    model_type = config.model_type
    module, prefix = _family(model_type)
    cls = getattr(import_module(f"pretrained.models.{module}"), prefix + TASKS[task], None)
    if cls is None:
        supported = [t for t in TASKS if hasattr(import_module(f"pretrained.models.{module}"), prefix + TASKS[t])]
        raise UnknownModelError(
            f"{task} does not support model_type {model_type!r}; for {model_type!r} use one of {', '.join(supported)}"
        )
    return cls


def register_config(model_type: str, config_cls: type, exist_ok: bool = False) -> None:
    if getattr(config_cls, "model_type", model_type) != model_type:
        raise InputError(f"register_config: {config_cls.__name__}.model_type is {config_cls.model_type!r}, but it "
                         f"is registered as model_type {model_type!r}; the two must match")
    if not exist_ok and (model_type in FAMILIES or model_type in _user_configs):
        raise InputError(f"register_config: model_type {model_type!r} is already registered; "
                         "pass exist_ok=True to replace it")
    _user_configs[model_type] = config_cls


def register_model(task: str, config_cls: type, model_cls: type, exist_ok: bool = False) -> None:
    if getattr(model_cls, "config_class", config_cls) not in (config_cls, None) and not issubclass(config_cls, model_cls.config_class):
        raise InputError(f"register_model: {model_cls.__name__}.config_class is {model_cls.config_class.__name__}, "
                         f"expected {config_cls.__name__} (or a parent of it)")
    if not exist_ok and config_cls in _user_models[task]:
        raise InputError(f"register_model: {config_cls.__name__} already has a {task} class; "
                         "pass exist_ok=True to replace it")
    _user_models[task][config_cls] = model_cls
