"""AutoTokenizer: the tokenizer class named by tokenizer_config.json's `tokenizer_class`, else by
config.json's `model_type`, else a plain PreTrainedTokenizerFast over tokenizer.json.
`use_fast=False` picks the Python or SentencePiece backend of the same model.
"""

from __future__ import annotations

import os

from ..errors import CheckpointError, InputError, UnknownModelError
from ..hub import HubOptions, resolve_file
from .loading import read_tokenizer_config

# model_type -> (Python/SentencePiece class name, fast class name)
TOKENIZER_MAPPING: dict[str, tuple[str | None, str | None]] = {
    "bert": ("BertTokenizer", "BertTokenizerFast"),
    "distilbert": ("DistilBertTokenizer", "DistilBertTokenizerFast"),
    "roberta": ("RobertaTokenizer", "RobertaTokenizerFast"),
    "bart": ("BartTokenizer", "BartTokenizerFast"),
    "gpt2": ("GPT2Tokenizer", "GPT2TokenizerFast"),
    "llama": ("LlamaTokenizer", "LlamaTokenizerFast"),
    "mistral": ("LlamaTokenizer", "LlamaTokenizerFast"),
    "t5": ("T5Tokenizer", "T5TokenizerFast"),
    "xlm-roberta": (None, "XLMRobertaTokenizerFast"),
    "deberta-v2": ("DebertaV2Tokenizer", "DebertaV2TokenizerFast"),
    "mpnet": (None, "MPNetTokenizerFast"),
    "clip": ("CLIPTokenizer", "CLIPTokenizerFast"),
    "whisper": ("WhisperTokenizer", "WhisperTokenizerFast"),
}
_REGISTERED: dict[str, type] = {}


def _class_by_name(name: str):
    from .models import CLASSES
    from .whisper import CLASSES as WHISPER

    return _REGISTERED.get(name) or CLASSES.get(name) or WHISPER.get(name)


class AutoTokenizer:
    """Not instantiable: use AutoTokenizer.from_pretrained(name_or_path)."""

    def __init__(self):
        raise EnvironmentError("AutoTokenizer is designed to be instantiated with AutoTokenizer.from_pretrained()")

    @classmethod
    def register(cls, model_type: str, slow_tokenizer_class=None, fast_tokenizer_class=None, exist_ok=False):
        if model_type in TOKENIZER_MAPPING and not exist_ok and model_type not in _REGISTERED:
            raise InputError(f"AutoTokenizer.register: model_type {model_type!r} already has a tokenizer; "
                             "pass exist_ok=True to replace it")
        for klass in (slow_tokenizer_class, fast_tokenizer_class):
            if klass is not None:
                _REGISTERED[klass.__name__] = klass
        TOKENIZER_MAPPING[model_type] = (
            slow_tokenizer_class.__name__ if slow_tokenizer_class else None,
            fast_tokenizer_class.__name__ if fast_tokenizer_class else None,
        )

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *inputs, use_fast: bool = True, **kwargs):
        options = HubOptions.pop_from(kwargs)
        name = os.fspath(pretrained_model_name_or_path)
        gguf_file = kwargs.pop("gguf_file", None)
        if gguf_file or name.endswith(".gguf"):
            from ..gguf import load_tokenizer

            return load_tokenizer(name, gguf_file, options, **kwargs)
        config = read_tokenizer_config(name, options)
        requested = kwargs.pop("tokenizer_type", None)
        class_name = config.get("tokenizer_class")
        names: tuple[str | None, str | None]
        if requested is not None:
            if requested not in TOKENIZER_MAPPING:
                raise UnknownModelError(f"tokenizer_type={requested!r} is not one of {sorted(TOKENIZER_MAPPING)}")
            names = TOKENIZER_MAPPING[requested]
        elif class_name:
            base = class_name[:-4] if class_name.endswith("Fast") else class_name
            names = (base, base + "Fast")
        else:
            names = _names_from_model_type(name, options)
        slow, fast = (_class_by_name(n) if n else None for n in names)
        has_json = resolve_file(name, "tokenizer.json", options, required=False) is not None
        if fast is None and slow is None and has_json:
            fast = _class_by_name("PreTrainedTokenizerFast")  # an unknown class with a tokenizer.json still works
        chosen = (fast or slow) if use_fast else (slow or fast)
        if chosen is None:
            raise UnknownModelError(
                f"{name!r}: no tokenizer class for {names}; supported classes: "
                f"{sorted(n for pair in TOKENIZER_MAPPING.values() for n in pair if n)}"
            )
        return chosen.from_pretrained(name, *inputs, _hub_options=options, **kwargs)


def _names_from_model_type(name, options):
    path = resolve_file(name, "config.json", options, required=False)
    if path is None:
        if resolve_file(name, "tokenizer.json", options, required=False):
            return (None, "PreTrainedTokenizerFast")
        raise CheckpointError(
            f"{name!r} has neither tokenizer_config.json (with tokenizer_class), config.json (with model_type) "
            "nor tokenizer.json: cannot tell which tokenizer to build"
        )
    from ..configuration import get_config_dict

    config, _ = get_config_dict(name, options)
    model_type = config.get("model_type")
    if model_type not in TOKENIZER_MAPPING:
        if resolve_file(name, "tokenizer.json", options, required=False):
            return (None, "PreTrainedTokenizerFast")
        raise UnknownModelError(
            f"{path}: model_type {model_type!r} has no tokenizer; supported: {sorted(TOKENIZER_MAPPING)}"
        )
    return TOKENIZER_MAPPING[model_type]
