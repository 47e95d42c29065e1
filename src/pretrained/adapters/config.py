"""LoraConfig: PEFT's adapter_config.json as plain data, with PEFT's field names and defaults.

A file PEFT wrote loads here: fields we implement are read, the ones PEFT writes for methods we do not
implement (DoRA, LoftQ, EVA, ...) are accepted while they say "off" and refused by name otherwise.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import re
from dataclasses import dataclass, field

from ..errors import ConfigError, UnsupportedOptionError
from ..files import atomic_write_text, read_json_object
from ..hub import HubOptions, resolve_file

CONFIG_NAME = "adapter_config.json"


class TaskType(str, enum.Enum):
    """The model head an adapter was trained with (PEFT's names); it picks the PeftModel subclass."""

    SEQ_CLS = "SEQ_CLS"
    SEQ_2_SEQ_LM = "SEQ_2_SEQ_LM"
    CAUSAL_LM = "CAUSAL_LM"
    TOKEN_CLS = "TOKEN_CLS"
    QUESTION_ANS = "QUESTION_ANS"
    FEATURE_EXTRACTION = "FEATURE_EXTRACTION"


class PeftType(str, enum.Enum):
    LORA = "LORA"


# LoRA's default targets per model_type when target_modules is None (PEFT's table, for our families)
DEFAULT_TARGET_MODULES = {
    "bert": ["query", "value"], "roberta": ["query", "value"], "xlm-roberta": ["query", "value"],
    "distilbert": ["q_lin", "v_lin"], "gpt2": ["c_attn"], "t5": ["q", "v"], "mt5": ["q", "v"],
    "bart": ["q_proj", "v_proj"], "marian": ["q_proj", "v_proj"], "llama": ["q_proj", "v_proj"],
    "mistral": ["q_proj", "v_proj"], "qwen2": ["q_proj", "v_proj"], "qwen3": ["q_proj", "v_proj"],
}
# keys PEFT writes that only describe the writer, never the adapter
_METADATA_KEYS = {"peft_version", "megatron_core", "qalora_group_size", "auto_mapping"}


@dataclass
class LoraConfig:
    """PEFT's LoraConfig for the options implemented here; see `validate` for what is refused."""

    r: int = 8
    lora_alpha: int = 8
    lora_dropout: float = 0.0
    target_modules: list[str] | str | None = None  # names (a module's last parts), one regex, or "all-linear"
    exclude_modules: list[str] | str | None = None
    modules_to_save: list[str] | None = None  # trained in full and saved with the adapter (classifier heads)
    bias: str = "none"  # "none", "all" (every bias trains) or "lora_only" (biases of adapted layers)
    use_rslora: bool = False  # scale by lora_alpha / sqrt(r) instead of lora_alpha / r
    init_lora_weights: bool | str = True  # True: B = 0; "gaussian": A ~ N(0, 1/r), B = 0; False: both random
    # the base checkpoint stores the weight (in, out) (GPT-2's Conv1D); ours are nn.Linear (the family's checkpoint
    # rules transpose), and LoRA's A and B have the same shapes either way: kept for PEFT, which merges by it
    fan_in_fan_out: bool = False
    layers_to_transform: list[int] | int | None = None
    layers_pattern: list[str] | str | None = None
    rank_pattern: dict = field(default_factory=dict)  # module-name regex -> r
    alpha_pattern: dict = field(default_factory=dict)  # module-name regex -> lora_alpha
    task_type: TaskType | str | None = None
    inference_mode: bool = False
    base_model_name_or_path: str | None = None
    revision: str | None = None
    peft_type: PeftType | str = PeftType.LORA
    use_dora: bool = False
    lora_bias: bool = False

    def __post_init__(self):
        if isinstance(self.target_modules, (set, tuple)):
            self.target_modules = sorted(self.target_modules)
        if isinstance(self.exclude_modules, (set, tuple)):
            self.exclude_modules = sorted(self.exclude_modules)
        if isinstance(self.modules_to_save, (set, tuple)):
            self.modules_to_save = list(self.modules_to_save)
        if self.task_type is not None:
            self.task_type = _enum(TaskType, self.task_type, "task_type")
        self.peft_type = _enum(PeftType, self.peft_type, "peft_type")
        self.validate()

    def validate(self) -> None:
        if not isinstance(self.r, int) or self.r <= 0:
            raise ConfigError(f"LoraConfig.r must be a positive int, got {self.r!r}")
        if isinstance(self.lora_alpha, bool) or not isinstance(self.lora_alpha, (int, float)):
            raise ConfigError(f"LoraConfig.lora_alpha must be a number, got {self.lora_alpha!r}")
        for name in ("target_modules", "exclude_modules", "modules_to_save"):
            value = getattr(self, name)
            regex_ok = name != "modules_to_save" and isinstance(value, str)
            if value is not None and not regex_ok and not (
                    isinstance(value, list) and all(isinstance(v, str) for v in value)):
                raise ConfigError(f"LoraConfig.{name} must be a list of module names"
                                  f"{'' if name == 'modules_to_save' else ' or a regex string'}, got {value!r}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"LoraConfig.lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        if self.bias not in ("none", "all", "lora_only"):
            raise ConfigError(f"LoraConfig.bias must be 'none', 'all' or 'lora_only', got {self.bias!r}")
        if not (isinstance(self.init_lora_weights, bool) or self.init_lora_weights == "gaussian"):
            raise UnsupportedOptionError(
                f"LoraConfig.init_lora_weights={self.init_lora_weights!r} is not supported; expected True, False "
                "or 'gaussian' (PiSSA, OLoRA, LoftQ, EVA and CorDA initialisations are not implemented)")
        if self.use_dora:
            raise UnsupportedOptionError("LoraConfig.use_dora=True (DoRA) is not supported")
        if self.lora_bias:
            raise UnsupportedOptionError("LoraConfig.lora_bias=True (a bias on lora_B) is not supported")
        if self.layers_pattern and self.layers_to_transform is None:
            raise ConfigError("LoraConfig.layers_pattern needs layers_to_transform")
        if isinstance(self.target_modules, str) and self.layers_to_transform is not None:
            raise ConfigError("LoraConfig.layers_to_transform cannot be used with a regex target_modules")

    def scaling(self, module_name: str) -> tuple[int, float]:
        """(r, scale) of the adapter on `module_name`, after rank_pattern / alpha_pattern."""
        r = _pattern_value(self.rank_pattern, module_name, self.r)
        alpha = _pattern_value(self.alpha_pattern, module_name, self.lora_alpha)
        return r, alpha / (r**0.5 if self.use_rslora else r)

    # --- files ---

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key in ("task_type", "peft_type"):
            if isinstance(out[key], enum.Enum):
                out[key] = out[key].value
        return out

    @classmethod
    def from_dict(cls, data: dict, source: str = "LoraConfig") -> "LoraConfig":
        """Build from a PEFT config dict; `source` (the file) names where a refused field came from."""
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {}
        for key, value in data.items():
            if key in known:
                kwargs[key] = value
            elif key not in _METADATA_KEYS and value not in (None, False, {}, [], ""):
                raise UnsupportedOptionError(f"{source}: {key}={value!r} is not supported (LoRA options implemented: "
                                             f"{', '.join(sorted(known))})")
        if kwargs.get("peft_type", "LORA") != "LORA":
            raise UnsupportedOptionError(f"{source}: peft_type={kwargs['peft_type']!r}; only LoRA adapters are "
                                         "supported")
        return cls(**kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        data = self.to_dict()
        data["inference_mode"] = True  # as PEFT: a saved adapter loads frozen unless asked otherwise
        atomic_write_text(os.path.join(save_directory, CONFIG_NAME), json.dumps(data, indent=2, sort_keys=True))

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, options: HubOptions | None = None) -> "LoraConfig":
        path = resolve_file(name_or_path, CONFIG_NAME, options)
        return cls.from_dict(read_json_object(path, "adapter config", ConfigError), source=path)


def _enum(kind, value, name):
    try:
        return kind(value.value if isinstance(value, enum.Enum) else value)
    except ValueError:
        raise ConfigError(f"LoraConfig.{name}={value!r}: expected one of {[m.value for m in kind]}") from None


def _pattern_value(patterns: dict, module_name: str, default):
    """PEFT's rule: the first pattern matching the end of the module name (after a dot) wins."""
    for pattern, value in patterns.items():
        if re.match(rf"(.*\.)?({pattern})$", module_name):
            return value
    return default
