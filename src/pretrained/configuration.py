"""PretrainedConfig: any config.json in and out with Transformers' field names.

A config subclass declares its fields as annotated class attributes with defaults
(`hidden_size: int = 768`). Construction fills defaults, takes keyword values, keeps keys it does
not know (they survive a save/load round trip), resolves `attribute_map` aliases and checks types
and values, naming the field in the error.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any, ClassVar

from .errors import CheckpointError, ConfigError
from .files import atomic_write_text, read_json_object
from .hub import HubOptions, resolve_file

CONFIG_NAME = "config.json"

_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "None": (type(None),),
          "list": (list, tuple), "dict": (dict,), "tuple": (list, tuple)}
MAX_SIZE = 2**31 - 1  # bound of every size field: beyond it a config is corrupt, not large
_DTYPE_NAMES = ("float32", "float16", "bfloat16", "float64", "int8", "uint8", "auto")


def _allowed_types(annotation: str) -> tuple[type, ...] | None:
    """Python types accepted by an annotation string such as 'int | None' or 'list[int]'; None = any."""
    allowed: list[type] = []
    for part in annotation.split("|"):
        base = part.strip().split("[", 1)[0]
        if base not in _TYPES:
            return None
        allowed.extend(_TYPES[base])
    return tuple(allowed)


class PretrainedConfig:
    """Base of every model config; subclasses set `model_type` and declare their fields."""

    model_type: ClassVar[str] = ""
    attribute_map: ClassVar[dict[str, str]] = {}
    # fields whose integer value must be > 0 when the subclass has them
    positive_fields: ClassVar[tuple[str, ...]] = (
        "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
        "max_position_embeddings", "num_key_value_heads", "head_dim",
    )

    return_dict: bool = True
    output_hidden_states: bool = False
    output_attentions: bool = False
    architectures: list | None = None
    problem_type: str | None = None
    chunk_size_feed_forward: int = 0
    is_encoder_decoder: bool = False
    is_decoder: bool = False
    add_cross_attention: bool = False
    tie_word_embeddings: bool = True
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list | None = None
    decoder_start_token_id: int | None = None
    tokenizer_class: str | None = None
    task_specific_params: dict | None = None

    def __init__(self, **kwargs: Any):
        for alias, name in self.attribute_map.items():
            if alias in kwargs:
                kwargs[name] = kwargs.pop(alias)
        torch_dtype = kwargs.pop("torch_dtype", None)
        dtype = kwargs.pop("dtype", None) or torch_dtype
        id2label = kwargs.pop("id2label", None)
        label2id = kwargs.pop("label2id", None)
        num_labels = kwargs.pop("num_labels", None)
        kwargs.pop("model_type", None)  # a class attribute, not instance data
        self._name_or_path = kwargs.pop("_name_or_path", kwargs.pop("name_or_path", ""))
        self.attn_implementation = kwargs.pop("attn_implementation", kwargs.pop("_attn_implementation", None))

        fields = self.fields()
        for name, (_, default) in fields.items():
            object.__setattr__(self, name, copy.deepcopy(kwargs.pop(name, default)))
        for name, value in kwargs.items():  # unknown keys are kept as they are
            setattr(self, name, value)

        self.dtype = dtype
        if id2label is not None:
            self.id2label = _as_ints(id2label, f"{type(self).__name__}.id2label", keys=True)
            label2id = label2id if label2id is not None else {v: k for k, v in self.id2label.items()}
            self.label2id = _as_ints(label2id, f"{type(self).__name__}.label2id", keys=False)
            if num_labels is not None and num_labels != len(self.id2label):
                raise ConfigError(f"num_labels={num_labels} but id2label has {len(self.id2label)} entries")
        else:
            self.num_labels = 2 if num_labels is None else num_labels
        self.check_types(fields)
        self.validate()

    # --- fields, aliases and checks ---

    @classmethod
    def fields(cls) -> dict[str, tuple[str, Any]]:
        """name -> (annotation, default) over the class hierarchy; subclasses override defaults."""
        out: dict[str, tuple[str, Any]] = {}
        for klass in reversed(cls.__mro__):
            for name, annotation in vars(klass).get("__annotations__", {}).items():
                text = annotation.__name__ if isinstance(annotation, type) else str(annotation)
                if name in vars(klass) and "ClassVar" not in text:
                    out[name] = (text, vars(klass)[name])
        return out

    def check_types(self, fields=None) -> None:
        for name, (annotation, _) in (fields or self.fields()).items():
            allowed = _allowed_types(annotation)
            value = getattr(self, name)
            # bool is an int subclass: refuse True where a number is expected
            wrong_bool = isinstance(value, bool) and bool not in (allowed or (bool,))
            if allowed is not None and (wrong_bool or not isinstance(value, allowed)):
                raise ConfigError(
                    f"{type(self).__name__}.{name} must be {annotation}, got {value!r} ({type(value).__name__})"
                )

    def validate(self) -> None:
        """Value checks shared by every architecture; subclasses add their own and call super()."""
        for name in self.positive_fields:
            value = getattr(self, name, None)
            if isinstance(value, int) and not isinstance(value, bool) and not 0 < value <= MAX_SIZE:
                raise ConfigError(f"{type(self).__name__}.{name} must be in 1..{MAX_SIZE}, got {value}")
        for name, value in vars(self).items():  # torch's Dropout refuses these later, far from the file
            if "dropout" in name and isinstance(value, (int, float)) and not isinstance(value, bool):
                if not 0 <= value <= 1:
                    raise ConfigError(f"{type(self).__name__}.{name} must be a probability in [0, 1], got {value}")
        hidden, heads = getattr(self, "hidden_size", None), getattr(self, "num_attention_heads", None)
        if isinstance(hidden, int) and isinstance(heads, int) and getattr(self, "head_dim", None) is None:
            if hidden % heads:
                raise ConfigError(
                    f"{type(self).__name__}.hidden_size ({hidden}) must be divisible by "
                    f"num_attention_heads ({heads})"
                )
        if self.problem_type not in (None, "regression", "single_label_classification", "multi_label_classification"):
            raise ConfigError(
                f"{type(self).__name__}.problem_type must be 'regression', 'single_label_classification' or "
                f"'multi_label_classification', got {self.problem_type!r}"
            )

    def implied_parameters(self) -> int:
        """A lower bound of the parameter count the sizes imply (the token embeddings and one
        hidden x hidden projection per layer; 0 when the config has no such sizes): a loader checks
        it against the checkpoint before building anything, so absurd sizes fail fast."""
        def size(name):
            value = getattr(self, name, None)
            return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0

        hidden = size("hidden_size")
        layers = max(size(n) for n in ("num_hidden_layers", "num_layers", "encoder_layers")) + max(
            size(n) for n in ("decoder_layers", "num_decoder_layers"))
        width = max(hidden, size("num_attention_heads") * size("head_dim"))
        return layers * hidden * width + size("vocab_size") * hidden

    def __getattr__(self, name: str):
        # only reached when normal look-up fails: resolve aliases such as hidden_size -> dim
        alias_target = type(self).attribute_map.get(name)
        if alias_target is not None:
            return getattr(self, alias_target)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, type(self).attribute_map.get(name, name), value)

    # --- labels and dtype ---

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, n: int) -> None:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigError(f"{type(self).__name__}.num_labels must be a positive int, got {n!r}")
        if getattr(self, "id2label", None) is None or len(self.id2label) != n:
            self.id2label = {i: f"LABEL_{i}" for i in range(n)}
            self.label2id = {label: i for i, label in self.id2label.items()}

    @property
    def dtype(self):
        """The checkpoint's dtype as a torch.dtype (torch is imported on first access only)."""
        if self._dtype is None or self._dtype == "auto":
            return self._dtype
        import torch

        return getattr(torch, self._dtype)

    @dtype.setter
    def dtype(self, value) -> None:
        if value is not None and not isinstance(value, str):
            value = str(value).removeprefix("torch.")
        if value is not None and value not in _DTYPE_NAMES:
            raise ConfigError(f"{type(self).__name__}.dtype must be one of {_DTYPE_NAMES}, got {value!r}")
        self._dtype = value

    torch_dtype = dtype  # Transformers 4.x name

    @property
    def name_or_path(self) -> str:
        return self._name_or_path

    @name_or_path.setter
    def name_or_path(self, value: str) -> None:
        self._name_or_path = str(value)

    @property
    def use_return_dict(self) -> bool:
        return self.return_dict

    # --- (de)serialisation ---

    def to_dict(self) -> dict[str, Any]:
        out = {k: copy.deepcopy(v) for k, v in self.__dict__.items() if not k.startswith("_")}
        out.pop("attn_implementation", None)
        out["dtype"] = self._dtype
        out["model_type"] = self.model_type
        return out

    def to_json_string(self) -> str:
        def encode(obj):  # json keys must be strings: id2label {0: ...} -> {"0": ...}
            if isinstance(obj, dict):
                return {str(k): encode(v) for k, v in obj.items()}
            if isinstance(obj, (list, tuple)):
                return [encode(v) for v in obj]
            return obj

        return json.dumps(encode(self.to_dict()), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, self.to_json_string())

    def save_pretrained(self, save_directory: str | os.PathLike, **_: Any) -> None:
        if os.path.isfile(save_directory):
            raise CheckpointError(f"save_pretrained needs a folder, {os.fspath(save_directory)!r} is a file")
        os.makedirs(save_directory, exist_ok=True)
        self.to_json_file(os.path.join(save_directory, CONFIG_NAME))

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], return_unused_kwargs: bool = False, **kwargs: Any):
        try:
            config = cls(**config_dict)
        except ConfigError as e:  # name the file: the field alone does not say which checkpoint is wrong
            where = config_dict.get("_name_or_path")
            if not where:
                raise
            raise ConfigError(f"the config.json of {where!r}: {e}") from e
        unused = config.update_from_kwargs(kwargs)
        return (config, unused) if return_unused_kwargs else config

    def update_from_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Set the kwargs that name config fields (then re-check); return the others."""
        unused = {}
        for key, value in kwargs.items():
            if key in ("torch_dtype", "dtype"):
                self.dtype = value
            elif key == "num_labels":
                self.num_labels = value
            elif hasattr(self, key) or key in self.attribute_map:
                setattr(self, key, value)
            else:
                unused[key] = value
        if len(unused) < len(kwargs):
            self.check_types()
            self.validate()
        return unused

    @classmethod
    def from_json_file(cls, path: str | os.PathLike):
        return cls(**load_config_dict(path))

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs: Any):
        """Load from a folder, a config.json path or a hub repo id; extra kwargs override fields."""
        options = HubOptions.pop_from(kwargs)
        config_dict, path = get_config_dict(name_or_path, options)
        config_dict["_name_or_path"] = os.fspath(name_or_path)
        return cls.from_dict(config_dict, **kwargs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PretrainedConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"


def _as_ints(mapping, field: str, keys: bool) -> dict:
    """id2label {"0": "A"} -> {0: "A"} (keys=True), label2id {"A": "0"} -> {"A": 0}; anything else names the field."""
    if not isinstance(mapping, dict):
        raise ConfigError(f"{field} must be an object, got {type(mapping).__name__}")
    out = {}
    for key, value in mapping.items():
        try:
            key, value = (int(key), value) if keys else (key, int(value))
        except (TypeError, ValueError):
            raise ConfigError(f"{field} must map {'integer indices' if keys else 'labels to integers'}, "
                              f"got {key!r}: {value!r}") from None
        out[key] = value
    return out


def load_config_dict(path: str | os.PathLike) -> dict[str, Any]:
    """Read a config.json, with errors that name the file."""
    data = read_json_object(path, "config file")
    if not isinstance(data.get("model_type", ""), str):
        raise ConfigError(f"config file {os.fspath(path)!r}: model_type must be a string, "
                          f"got {type(data['model_type']).__name__}")
    return data


def get_config_dict(name_or_path: str | os.PathLike, options: HubOptions | None = None) -> tuple[dict, str]:
    """(config dict, path) for a config.json path, a folder or a hub repo id."""
    if os.path.isfile(name_or_path):
        path = os.fspath(name_or_path)
    else:
        path = resolve_file(name_or_path, CONFIG_NAME, options)
    return load_config_dict(path), path
