"""GenerationConfig: how generate() decodes, read from and written to generation_config.json.

Fields keep Transformers' names and effective defaults. A generation_config.json holds only the
values that differ from the defaults (as Transformers writes it); unknown keys survive a round trip.
Precedence in generate(): generation_config.json, then the model config's token ids, then kwargs.
Every field is checked (type and range) and applied by generate(); a value that cannot be read is an
error naming the field (and the file), and Transformers' options that pretrained lacks (`UNSUPPORTED`)
are refused by generate() when set to anything that would change decoding.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import numbers
import os
from typing import Any, Callable

from ..errors import CheckpointError, ConfigError
from ..files import atomic_write_text, read_json_object
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
# Transformers' generation fields that pretrained does not implement, with the values that leave decoding
# unchanged (None always does): generate() refuses any other value by name. Fields that only matter
# beside another refused option (the assistant model's settings) are inert and not listed.
UNSUPPORTED: dict[str, tuple] = {
    "constraints": ([],), "force_words_ids": ([],), "num_beam_groups": (1,), "diversity_penalty": (0.0,),
    "penalty_alpha": (0.0,), "dola_layers": (), "guidance_scale": (1.0,), "sequence_bias": ({},),
    "encoder_repetition_penalty": (1.0,), "encoder_no_repeat_ngram_size": (0,),
    "exponential_decay_length_penalty": (), "watermarking_config": (), "token_healing": (False,),
    "low_memory": (False,), "prompt_lookup_num_tokens": (), "assistant_early_exit": (), "use_mtp": (False,),
    "top_h": (), "prefill_chunk_size": (),
}
_TOKEN_FIELDS = ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id")
_IGNORED_KEYS = ("transformers_version", "_from_model_config", "_commit_hash")
_RUNTIME_ONLY = ("compile_config",)  # may hold a callable backend: never written to generation_config.json


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_id_list(v) -> bool:
    return isinstance(v, (list, tuple)) and all(_is_int(t) for t in v)


_KINDS: dict[str, Callable[[Any], bool]] = {
    "int": _is_int,
    # NaN fails every range test by comparing False, and would pass a check written as `not v < 0`
    "number": lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v),
    "bool": lambda v: isinstance(v, bool) or (_is_int(v) and v in (0, 1)),
    "ids": lambda v: _is_int(v) or (_is_id_list(v) and len(v) > 0),  # [] would stop at nothing, silently
    "id_list": _is_id_list,
    "strings": lambda v: isinstance(v, str) or (isinstance(v, (list, tuple)) and all(isinstance(t, str) for t in v)),
}
_KIND_NAMES = {"int": "an int", "number": "a finite number", "bool": "True or False",
               "ids": "a token id or a non-empty list of them",
               "id_list": "a list of token ids",
               "strings": "a string or a list of strings"}


def _neutral(value, neutral: tuple) -> bool:
    # only plain values compare: a tensor or an object is never neutral
    return value is None or (isinstance(value, (bool, int, float, str, list, dict)) and value in neutral)


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
            value = kwargs.pop(key, None)
            # None means unset, as in Transformers 5 (whose files and to_dict() spell every default as null)
            setattr(self, key, copy.deepcopy(default if value is None else value))
        self._from_model_config = kwargs.pop("_from_model_config", False)
        for key in _IGNORED_KEYS:
            kwargs.pop(key, None)
        for key, value in kwargs.items():  # unknown keys are kept
            setattr(self, key, value)
        self.validate()

    def validate(self) -> None:
        """Reject impossible values and wrong types, naming the field."""
        def need(ok: bool, field: str, expected: str):
            if not ok:
                raise ConfigError(f"GenerationConfig.{field}={getattr(self, field)!r}: expected {expected}")

        def check(field: str, kind: str, test=lambda v: True, expected: str = "", optional: bool = True):
            value = getattr(self, field)
            ok = (optional and value is None) or (_KINDS[kind](value) and test(value))
            need(ok, field, f"{_KIND_NAMES[kind]}{' ' + expected if expected else ''}{' or None' if optional else ''}")

        check("max_length", "int", lambda v: v > 0, "> 0", optional=False)
        check("max_new_tokens", "int", lambda v: v > 0, "> 0")
        check("min_length", "int", lambda v: v >= 0, ">= 0")
        check("min_new_tokens", "int", lambda v: v >= 0, ">= 0")
        check("max_time", "number", lambda v: v > 0, "> 0")
        need(self.early_stopping in (True, False, "never"), "early_stopping", "True, False or 'never'")
        check("stop_strings", "strings")
        check("num_beams", "int", lambda v: v >= 1, ">= 1", optional=False)
        check("num_return_sequences", "int", lambda v: v >= 1, ">= 1", optional=False)
        check("max_cache_len", "int", lambda v: v > 0, "> 0")
        check("temperature", "number")
        need(self.temperature is None or self.temperature > 0 or not self.do_sample, "temperature",
             "a float > 0 when do_sample=True (use do_sample=False for greedy)")
        check("top_k", "int", lambda v: v >= 0, ">= 0")
        check("top_p", "number", lambda v: 0 <= v <= 1, "in [0, 1]")
        check("min_p", "number", lambda v: 0 <= v <= 1, "in [0, 1]")
        check("typical_p", "number", lambda v: 0 < v <= 1, "in (0, 1]")
        check("epsilon_cutoff", "number", lambda v: 0 <= v < 1, "in [0, 1) (0 turns it off)")
        check("eta_cutoff", "number", lambda v: 0 <= v < 1, "in [0, 1) (0 turns it off)")
        check("repetition_penalty", "number", lambda v: v > 0, "> 0")
        check("length_penalty", "number", optional=False)
        check("no_repeat_ngram_size", "int", lambda v: v >= 0, ">= 0")
        check("forced_bos_token_id", "int")
        check("forced_eos_token_id", "ids")
        check("suppress_tokens", "id_list")
        check("begin_suppress_tokens", "id_list")
        for field in ("pad_token_id", "bos_token_id"):
            check(field, "int")
        for field in ("eos_token_id", "decoder_start_token_id"):
            check(field, "ids")
        for field in ("do_sample", "use_cache", "renormalize_logits", "remove_invalid_values", "disable_compile",
                      "output_attentions", "output_hidden_states", "output_scores", "return_dict_in_generate"):
            check(field, "bool", optional=False)
        check("output_logits", "bool")
        if isinstance(self.compile_config, dict):
            self.compile_config = CompileConfig(**self.compile_config)
        need(self.compile_config is None or isinstance(self.compile_config, CompileConfig), "compile_config",
             "a CompileConfig (or a dict of its fields)")
        if self.num_return_sequences > 1 and not self.do_sample:
            need(self.num_return_sequences <= self.num_beams, "num_return_sequences",
                 f"at most num_beams={self.num_beams} without sampling")

    def unsupported(self) -> dict[str, Any]:
        """Transformers' options set here to a value that would change decoding, which pretrained does not implement."""
        return {k: getattr(self, k) for k in UNSUPPORTED if not _neutral(getattr(self, k, None), UNSUPPORTED[k])}

    # --- construction ---

    @classmethod
    def from_model_config(cls, model_config) -> "GenerationConfig":
        """Token ids (and any legacy generation fields) taken from a model's config.json."""
        values = {k: getattr(model_config, k) for k in (*DEFAULTS, *UNSUPPORTED) if k in vars(model_config)}
        for key in _TOKEN_FIELDS:
            value = getattr(model_config, key, None)
            if value is not None:
                values[key] = value
        try:
            config = cls(**values)
        except ConfigError as e:
            where = getattr(model_config, "name_or_path", "") or type(model_config).__name__
            raise ConfigError(f"the generation fields of {where!r} (config.json): {e}") from e
        config._from_model_config = True
        return config

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs: Any) -> "GenerationConfig":
        return cls(**{**config_dict, **kwargs})

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, config_file_name: str | None = None, **kwargs: Any):
        options = HubOptions.pop_from(kwargs)
        path = resolve_file(name_or_path, config_file_name or GENERATION_CONFIG_NAME, options)
        return cls.from_json_file(path, **kwargs)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike, **kwargs: Any) -> "GenerationConfig":
        """Read one generation_config.json; an unreadable file or an invalid value is an error naming it."""
        data = read_json_object(path)
        try:
            return cls.from_dict(data, **kwargs)
        except (ConfigError, TypeError) as e:
            raise ConfigError(f"{os.fspath(path)!r}: {e}") from e

    def update(self, **kwargs: Any) -> dict[str, Any]:
        """Set the kwargs that name generation fields; return the others (model inputs)."""
        unused = {}
        for key, value in kwargs.items():
            if key in DEFAULTS or key in UNSUPPORTED or hasattr(self, key):
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
