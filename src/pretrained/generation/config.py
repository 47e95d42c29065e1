"""GenerationConfig: how generate() decodes, read from and written to generation_config.json.

Fields keep Transformers' names and effective defaults. A generation_config.json holds only the
values that differ from the defaults (as Transformers writes it); unknown keys survive a round trip.
Precedence in generate(): generation_config.json, then the model config's token ids, then kwargs.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from typing import Any, Callable

from ..errors import CheckpointError
from ..files import atomic_write_text
from ..hub import HubOptions, resolve_file

GENERATION_CONFIG_NAME = "generation_config.json"

DEFAULTS: dict[str, Any] = {
    # length
    "max_length": 20, "max_new_tokens": None, "min_length": 0, "min_new_tokens": None,
    "early_stopping": False, "max_time": None, "stop_strings": None,
    # strategy
    "do_sample": False, "num_beams": 1, "use_cache": True, "cache_implementation": None, "max_cache_len": None,
    # logits shaping
    "temperature": 1.0, "top_k": 50, "top_p": 1.0, "min_p": None, "typical_p": 1.0,
    "epsilon_cutoff": 0.0, "eta_cutoff": 0.0,
    "repetition_penalty": 1.0, "length_penalty": 1.0, "no_repeat_ngram_size": 0, "bad_words_ids": None,
    "forced_bos_token_id": None, "forced_eos_token_id": None, "suppress_tokens": None,
    "begin_suppress_tokens": None, "renormalize_logits": False, "remove_invalid_values": False,
    # compiling the decode step (with a static cache)
    "compile_config": None, "disable_compile": False,
    # outputs
    "num_return_sequences": 1, "output_attentions": False, "output_hidden_states": False,
    "output_scores": False, "output_logits": None, "return_dict_in_generate": False,
    # special tokens
    "pad_token_id": None, "bos_token_id": None, "eos_token_id": None, "decoder_start_token_id": None,
}
_TOKEN_FIELDS = ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id")
_IGNORED_KEYS = ("transformers_version", "_from_model_config", "_commit_hash")
_RUNTIME_ONLY = ("compile_config",)  # may hold a callable backend: never written to generation_config.json


@dataclasses.dataclass
class CompileConfig:
    """How generate() compiles the decode step (torch.compile's arguments): given one and a static cache,
    generate() runs the prompt eager and every later step as one compiled graph."""

    fullgraph: bool = False
    dynamic: bool | None = None
    backend: str | Callable = "inductor"
    mode: str | None = "reduce-overhead"
    options: dict | None = None

    def to_dict(self) -> dict[str, Any]:
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}

    def __deepcopy__(self, memo) -> "CompileConfig":
        # a backend object is kept, not copied: generate() copies its config on every call, and a copied
        # backend would never equal the one the kept compiled call was built with
        return dataclasses.replace(self, options=copy.deepcopy(self.options, memo))


class GenerationConfig:
    def __init__(self, **kwargs: Any):
        for key, default in DEFAULTS.items():
            setattr(self, key, copy.deepcopy(kwargs.pop(key, default)))
        self._from_model_config = kwargs.pop("_from_model_config", False)
        for key in _IGNORED_KEYS:
            kwargs.pop(key, None)
        for key, value in kwargs.items():  # unknown keys are kept
            setattr(self, key, value)
        self.validate()

    def validate(self) -> None:
        """Reject impossible values, naming the field."""
        def need(ok: bool, field: str, expected: str):
            if not ok:
                raise ValueError(f"GenerationConfig.{field}={getattr(self, field)!r}: expected {expected}")

        need(self.max_new_tokens is None or self.max_new_tokens > 0, "max_new_tokens", "an int > 0")
        need(self.max_length is None or self.max_length > 0, "max_length", "an int > 0")
        need(isinstance(self.num_beams, int) and self.num_beams >= 1, "num_beams", "an int >= 1")
        need(isinstance(self.num_return_sequences, int) and self.num_return_sequences >= 1,
             "num_return_sequences", "an int >= 1")
        need(self.temperature is None or self.temperature > 0 or not self.do_sample, "temperature",
             "a float > 0 when do_sample=True (use do_sample=False for greedy)")
        need(self.top_p is None or 0 <= self.top_p <= 1, "top_p", "a float in [0, 1]")
        need(self.min_p is None or 0 <= self.min_p <= 1, "min_p", "a float in [0, 1]")
        need(self.typical_p is None or 0 < self.typical_p <= 1, "typical_p", "a float in (0, 1]")
        need(self.top_k is None or (isinstance(self.top_k, int) and self.top_k >= 0), "top_k", "an int >= 0")
        need(self.repetition_penalty is None or self.repetition_penalty > 0, "repetition_penalty", "a float > 0")
        need(self.early_stopping in (True, False, "never"), "early_stopping", "True, False or 'never'")
        if isinstance(self.compile_config, dict):
            self.compile_config = CompileConfig(**self.compile_config)
        need(self.compile_config is None or isinstance(self.compile_config, CompileConfig), "compile_config",
             "a CompileConfig (or a dict of its fields)")
        if self.num_return_sequences > 1 and not self.do_sample:
            need(self.num_return_sequences <= self.num_beams, "num_return_sequences",
                 f"at most num_beams={self.num_beams} without sampling")

    # --- construction ---

    @classmethod
    def from_model_config(cls, model_config) -> "GenerationConfig":
        """Token ids (and any legacy generation fields) taken from a model's config.json."""
        values = {k: getattr(model_config, k) for k in DEFAULTS if k in vars(model_config)}
        for key in _TOKEN_FIELDS:
            value = getattr(model_config, key, None)
            if value is not None:
                values[key] = value
        config = cls(**values)
        config._from_model_config = True
        return config

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs: Any) -> "GenerationConfig":
        return cls(**{**config_dict, **kwargs})

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, config_file_name: str | None = None, **kwargs: Any):
        options = HubOptions.pop_from(kwargs)
        name = config_file_name or GENERATION_CONFIG_NAME
        path = os.path.join(name_or_path, name) if os.path.isdir(name_or_path) else resolve_file(name_or_path, name, options)
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError as e:
            raise CheckpointError(f"{os.fspath(path)!r} does not exist") from e
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{os.fspath(path)!r} is not valid JSON: {e}") from e
        if not isinstance(data, dict):
            raise CheckpointError(f"{os.fspath(path)!r} must hold a JSON object")
        return cls.from_dict(data, **kwargs)

    def update(self, **kwargs: Any) -> dict[str, Any]:
        """Set the kwargs that name generation fields; return the others (model inputs)."""
        unused = {}
        for key, value in kwargs.items():
            if key in DEFAULTS or hasattr(self, key):
                setattr(self, key, value)
            else:
                unused[key] = value
        self.validate()
        return unused

    def copy(self) -> "GenerationConfig":
        return copy.deepcopy(self)

    # --- serialisation ---

    def to_dict(self) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in vars(self).items() if not k.startswith("_") and k not in _RUNTIME_ONLY}

    def to_diff_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.to_dict().items() if k not in DEFAULTS or DEFAULTS[k] != v}

    def to_json_string(self, use_diff: bool = True) -> str:
        return json.dumps(self.to_diff_dict() if use_diff else self.to_dict(), indent=2, sort_keys=True) + "\n"

    def save_pretrained(self, save_directory: str | os.PathLike, config_file_name: str | None = None, **_: Any) -> None:
        if os.path.isfile(save_directory):
            raise CheckpointError(f"save_pretrained needs a folder, {os.fspath(save_directory)!r} is a file")
        os.makedirs(save_directory, exist_ok=True)
        atomic_write_text(os.path.join(save_directory, config_file_name or GENERATION_CONFIG_NAME), self.to_json_string())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GenerationConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"GenerationConfig {self.to_json_string()}"
