"""TrainingArguments: the Trainer's settings as plain data, with Transformers' field names and defaults.

Strategy, optimizer and scheduler names are stored as str enums, so `args.eval_strategy == "steps"` holds
and `to_dict()` writes plain strings. Derived defaults are filled and every combination is checked once,
in `__post_init__`; a bad value raises ConfigError naming the field(s). torch is imported only by the
fp16/bf16 checks and the properties that need a device or a process group.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
from dataclasses import InitVar, dataclass, fields
from enum import Enum
from typing import Any

from ..errors import ConfigError, UnsupportedOptionError


class _Choice(str, Enum):
    """A closed set of names; members compare equal to their strings."""

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value, field_name: str):
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(repr(m.value) for m in cls)
            raise ConfigError(f"TrainingArguments.{field_name}={value!r} is not supported; "
                              f"expected one of: {allowed}") from None


class IntervalStrategy(_Choice):
    NO = "no"
    STEPS = "steps"
    EPOCH = "epoch"


class SaveStrategy(_Choice):
    NO = "no"
    STEPS = "steps"
    EPOCH = "epoch"
    BEST = "best"  # save whenever metric_for_best_model improves


class SchedulerType(_Choice):
    LINEAR = "linear"
    COSINE = "cosine"
    COSINE_WITH_RESTARTS = "cosine_with_restarts"
    POLYNOMIAL = "polynomial"
    CONSTANT = "constant"
    CONSTANT_WITH_WARMUP = "constant_with_warmup"
    INVERSE_SQRT = "inverse_sqrt"
    COSINE_WITH_MIN_LR = "cosine_with_min_lr"
    WARMUP_STABLE_DECAY = "warmup_stable_decay"


class OptimizerNames(_Choice):
    ADAMW_TORCH = "adamw_torch"
    ADAMW_TORCH_FUSED = "adamw_torch_fused"
    SGD = "sgd"
    ADAFACTOR = "adafactor"


SAMPLING_STRATEGIES = ("random", "sequential", "group_by_length")
HUB_STRATEGIES = ("end", "every_save", "checkpoint", "all_checkpoints")

FSDP_OPTIONS = ("full_shard", "shard_grad_op", "hybrid_shard", "hybrid_shard_zero2", "auto_wrap", "offload")
# fsdp_config keys and what they must hold; FSDP1-only tuning knobs are refused by name
FSDP_CONFIG_KEYS = {
    "transformer_layer_cls_to_wrap": "a class name or a list of class names of the layers sharded one by one",
    "min_num_params": "an int: shard every module holding at least this many parameters not yet sharded",
    "reshard_after_forward": "a bool: free gathered parameters after each forward (full_shard) or keep them",
    "activation_checkpointing": "a bool: recompute each layer's activations in backward",
    "version": "2 (FSDP2, torch.distributed.fsdp.fully_shard)",
    "fsdp_version": "2 (FSDP2, torch.distributed.fsdp.fully_shard)",
    "sync_module_states": "True: process 0's weights are sent to every process before sharding (always done)",
    "use_orig_params": "True: the optimizer sees the model's own parameters (always so with FSDP2)",
}


# fields that may arrive as a JSON string from a command line
_DICT_FIELDS = ("lr_scheduler_kwargs", "gradient_checkpointing_kwargs", "fsdp_config")


@dataclass(repr=False)
class TrainingArguments:
    """Everything the Trainer needs besides the model and data. Steps given as a float below 1
    (logging_steps, eval_steps, save_steps, warmup_steps) are a ratio of the total training steps."""

    output_dir: str | None = None  # None: "trainer_output"
    overwrite_output_dir: bool = False
    do_train: bool = False
    do_eval: bool = False
    do_predict: bool = False

    num_train_epochs: float = 3.0
    max_steps: int = -1  # > 0 overrides num_train_epochs
    per_device_train_batch_size: int = 8
    per_device_eval_batch_size: int = 8
    gradient_accumulation_steps: int = 1

    learning_rate: float = 5e-5
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    optim: OptimizerNames | str = "adamw_torch_fused"
    optim_args: str | None = None  # "key=value,key=value", passed to the optimizer
    max_grad_norm: float = 1.0
    lr_scheduler_type: SchedulerType | str = "linear"
    lr_scheduler_kwargs: dict | str | None = None
    warmup_steps: float = 0
    warmup_ratio: float | None = None  # Transformers 4's spelling of a warmup_steps below 1

    logging_dir: str | None = None
    logging_strategy: IntervalStrategy | str = "steps"
    logging_steps: float = 500
    logging_first_step: bool = False
    logging_nan_inf_filter: bool = True

    eval_strategy: IntervalStrategy | str = "no"
    eval_steps: float | None = None  # None: logging_steps
    eval_delay: float = 0
    eval_accumulation_steps: int | None = None

    save_strategy: SaveStrategy | str = "steps"
    save_steps: float = 500
    save_total_limit: int | None = None
    save_only_model: bool = False
    load_best_model_at_end: bool = False
    metric_for_best_model: str | None = None
    greater_is_better: bool | None = None  # None: False for metrics named "*loss", else True

    bf16: bool = False
    fp16: bool = False
    gradient_checkpointing: bool = False
    gradient_checkpointing_kwargs: dict | str | None = None

    dataloader_num_workers: int = 0
    dataloader_drop_last: bool = False
    dataloader_pin_memory: bool = True
    remove_unused_columns: bool = True
    label_names: list[str] | None = None
    label_smoothing_factor: float = 0.0
    train_sampling_strategy: str = "random"  # "random", "sequential" or "group_by_length"
    group_by_length: bool = False  # Transformers 4's spelling of train_sampling_strategy="group_by_length"
    length_column_name: str = "length"

    report_to: str | list[str] | None = "none"
    run_name: str | None = None
    seed: int = 42
    data_seed: int | None = None
    full_determinism: bool = False
    resume_from_checkpoint: str | None = None

    push_to_hub: bool = False
    hub_model_id: str | None = None  # None: the output folder's name
    hub_token: str | None = None
    hub_private_repo: bool | None = None
    hub_strategy: str = "every_save"  # "end", "every_save", "checkpoint" or "all_checkpoints"
    hub_revision: str | None = None
    hub_always_push: bool = False  # push at every save even while the previous upload still runs

    torch_compile: bool = False
    torch_compile_backend: str | None = None  # setting it (or the mode) turns torch_compile on
    torch_compile_mode: str | None = None
    disable_tqdm: bool | None = None  # None: True when the "pretrained" logger is quieter than WARNING
    use_cpu: bool = False
    local_rank: int = -1
    ddp_backend: str | None = None
    fsdp: str | list | bool | None = None  # "full_shard" / "shard_grad_op" / "hybrid_shard", + "auto_wrap", "offload"
    fsdp_config: dict | str | None = None  # a dict, a JSON string or a JSON file (keys: distributed.FSDP_CONFIG_KEYS)

    evaluation_strategy: InitVar[str | None] = None  # the old name of eval_strategy

    def __post_init__(self, evaluation_strategy):
        self.output_dir = os.path.expanduser("trainer_output" if self.output_dir is None else self.output_dir)
        if evaluation_strategy is not None:
            if self.eval_strategy != "no" and self.eval_strategy != evaluation_strategy:
                raise ConfigError(f"TrainingArguments: evaluation_strategy={evaluation_strategy!r} and "
                                  f"eval_strategy={self.eval_strategy!r} disagree; pass only eval_strategy")
            self.eval_strategy = evaluation_strategy
        for name in _DICT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, str) and value.lstrip().startswith("{"):
                try:
                    setattr(self, name, json.loads(value))
                except json.JSONDecodeError as e:
                    raise ConfigError(f"TrainingArguments.{name} is not valid JSON: {e}") from None
        if isinstance(self.fsdp_config, str):  # a path to a JSON file, as accelerate writes them
            try:
                with open(self.fsdp_config, encoding="utf-8") as f:
                    self.fsdp_config = json.load(f)
            except (OSError, json.JSONDecodeError) as e:
                raise ConfigError(f"TrainingArguments.fsdp_config={self.fsdp_config!r} is neither a JSON object nor a "
                                  f"readable JSON file: {e}") from None
        if self.fsdp_config is not None and not isinstance(self.fsdp_config, dict):
            raise ConfigError(f"TrainingArguments.fsdp_config must be a dict, a JSON object string or a JSON file, "
                              f"got {self.fsdp_config!r}")
        check_fsdp_arguments(self.fsdp, self.fsdp_config)
        for name in ("lr_scheduler_kwargs", "gradient_checkpointing_kwargs"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), dict):
                raise ConfigError(f"TrainingArguments.{name} must be a dict or a JSON object string, "
                                  f"got {getattr(self, name)!r}")

        self.eval_strategy = IntervalStrategy.parse(self.eval_strategy, "eval_strategy")
        self.logging_strategy = IntervalStrategy.parse(self.logging_strategy, "logging_strategy")
        self.save_strategy = SaveStrategy.parse(self.save_strategy, "save_strategy")
        self.lr_scheduler_type = SchedulerType.parse(self.lr_scheduler_type, "lr_scheduler_type")
        self.optim = OptimizerNames.parse(self.optim, "optim")

        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            _require_positive_int(self, name)
        if self.eval_accumulation_steps is not None:
            _require_positive_int(self, "eval_accumulation_steps")

        if self.eval_strategy != IntervalStrategy.NO:
            self.do_eval = True
        if self.eval_strategy == IntervalStrategy.STEPS and not self.eval_steps:
            if not self.logging_steps:
                raise ConfigError("TrainingArguments: eval_strategy='steps' needs a non-zero eval_steps "
                                  "or logging_steps")
            self.eval_steps = self.logging_steps
        if self.logging_strategy == IntervalStrategy.STEPS and not self.logging_steps:
            raise ConfigError("TrainingArguments: logging_strategy='steps' needs a non-zero logging_steps")
        for name, strategy in (("logging_steps", self.logging_strategy), ("eval_steps", self.eval_strategy),
                               ("save_steps", self.save_strategy)):
            if strategy == "steps":
                setattr(self, name, _steps(getattr(self, name), name))

        self._check_warmup()
        self._check_sampling()
        if self.torch_compile_backend is not None or self.torch_compile_mode is not None:
            self.torch_compile = True
        if self.torch_compile and self.torch_compile_backend is None:
            self.torch_compile_backend = "inductor"
        if self.hub_strategy not in HUB_STRATEGIES:
            raise ConfigError(f"TrainingArguments.hub_strategy={self.hub_strategy!r}; expected one of {HUB_STRATEGIES}")
        if self.metric_for_best_model is None and self.load_best_model_at_end:
            self.metric_for_best_model = "loss"
        if self.greater_is_better is None and self.metric_for_best_model is not None:
            self.greater_is_better = not self.metric_for_best_model.endswith("loss")
        self._check_best_model()

        if not 0.0 <= self.label_smoothing_factor < 1.0:
            raise ConfigError(f"TrainingArguments.label_smoothing_factor={self.label_smoothing_factor} "
                              "must be in [0, 1)")
        self._check_precision()

        if self.report_to is None or self.report_to == "none" or self.report_to == ["none"]:
            self.report_to = []
        elif isinstance(self.report_to, str):
            self.report_to = [self.report_to]
        if self.disable_tqdm is None:
            self.disable_tqdm = logging.getLogger("pretrained").getEffectiveLevel() > logging.WARNING
        if self.use_cpu:
            self.dataloader_pin_memory = False  # pinned memory only speeds copies to an accelerator

    def _check_warmup(self):
        if self.warmup_steps < 0:
            raise ConfigError(f"TrainingArguments.warmup_steps={self.warmup_steps} must be >= 0")
        if self.warmup_ratio is None:
            return
        if not 0.0 <= self.warmup_ratio <= 1.0:
            raise ConfigError(f"TrainingArguments.warmup_ratio={self.warmup_ratio} must be in [0, 1]")
        if self.warmup_steps:
            raise ConfigError(f"TrainingArguments: warmup_steps={self.warmup_steps} and warmup_ratio="
                              f"{self.warmup_ratio} are both set; pass one (a warmup_steps below 1 is a ratio)")

    def _check_sampling(self):
        if self.train_sampling_strategy not in SAMPLING_STRATEGIES:
            raise ConfigError(f"TrainingArguments.train_sampling_strategy={self.train_sampling_strategy!r}; "
                              f"expected one of {SAMPLING_STRATEGIES}")
        if self.group_by_length:
            if self.train_sampling_strategy not in ("random", "group_by_length"):
                raise ConfigError(f"TrainingArguments: group_by_length=True and train_sampling_strategy="
                                  f"{self.train_sampling_strategy!r} disagree; pass only train_sampling_strategy")
            self.train_sampling_strategy = "group_by_length"
        self.group_by_length = self.train_sampling_strategy == "group_by_length"

    def _check_best_model(self):
        if self.save_strategy == SaveStrategy.BEST and self.metric_for_best_model is None:
            raise ConfigError("TrainingArguments: save_strategy='best' needs metric_for_best_model")
        if not self.load_best_model_at_end or self.save_strategy == SaveStrategy.BEST:
            return
        if self.eval_strategy != self.save_strategy:
            raise ConfigError(f"TrainingArguments: load_best_model_at_end needs save_strategy "
                              f"({self.save_strategy.value!r}) equal to eval_strategy ({self.eval_strategy.value!r}), "
                              f"or save_strategy='best'")
        if self.eval_strategy == IntervalStrategy.STEPS:
            # compared in millionths so that ratios such as 0.3 and 0.1 divide exactly
            save, every = round(self.save_steps * 1_000_000), round(self.eval_steps * 1_000_000)
            if (self.save_steps < 1) != (self.eval_steps < 1) or save % every:
                raise ConfigError(f"TrainingArguments: load_best_model_at_end needs save_steps ({self.save_steps}) "
                                  f"to be a multiple of eval_steps ({self.eval_steps}), both counts or both ratios")

    def _check_precision(self):
        if self.fp16 and self.bf16:
            raise ConfigError("TrainingArguments: fp16 and bf16 are both set; choose one")
        if self.fp16:
            import torch

            if self.use_cpu or not torch.cuda.is_available():
                raise ConfigError("TrainingArguments.fp16=True needs a CUDA GPU (float16 training relies on a "
                                  "gradient scaler and GPU kernels); on CPU use bf16=True instead")
        if self.bf16 and not self.use_cpu:
            import torch

            if torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
                raise ConfigError("TrainingArguments.bf16=True: this GPU has no bfloat16 support (it needs an Ampere "
                                  "or newer GPU); use fp16=True, or use_cpu=True")

    def get_warmup_steps(self, num_training_steps: int) -> int:
        """Warmup steps for a run of num_training_steps: warmup_steps, or a ratio of the run when below 1."""
        if self.warmup_ratio is not None:
            return math.ceil(num_training_steps * self.warmup_ratio)
        if self.warmup_steps >= 1:
            return int(self.warmup_steps)
        return math.ceil(num_training_steps * self.warmup_steps)

    @property
    def train_batch_size(self) -> int:
        """Examples per device and step (one device per process: no DataParallel)."""
        return self.per_device_train_batch_size

    @property
    def eval_batch_size(self) -> int:
        return self.per_device_eval_batch_size

    @property
    def world_size(self) -> int:
        """Processes training together: the initialised process group's, else torchrun's WORLD_SIZE, else 1."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_world_size()
        return int(os.environ.get("WORLD_SIZE", 1))

    @property
    def process_index(self) -> int:
        """This process's global rank."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank()
        return int(os.environ.get("RANK", 0))

    @property
    def local_process_index(self) -> int:
        """This process's rank on its machine: local_rank when given, else torchrun's LOCAL_RANK."""
        return self.local_rank if self.local_rank != -1 else int(os.environ.get("LOCAL_RANK", 0))

    @property
    def should_log(self) -> bool:
        """The first process of each machine logs."""
        return self.local_process_index == 0

    @property
    def should_save(self) -> bool:
        """Only the first process writes checkpoints."""
        return self.process_index == 0

    @property
    def device(self):
        """The torch.device this process trains on."""
        import torch

        if self.use_cpu:
            return torch.device("cpu")
        if torch.cuda.is_available():
            return torch.device("cuda", self.local_process_index)
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON-ready data: enums as their strings, tokens hidden."""
        d = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Enum):
                value = value.value
            if f.name.endswith("_token"):
                value = f"<{f.name.upper()}>"
            d[f.name] = copy.deepcopy(value)
        return d

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def __repr__(self) -> str:
        items = "".join(f"{k}={v!r},\n" for k, v in sorted(self.to_dict().items()))
        return f"{type(self).__name__}(\n{items})"


@dataclass(repr=False)
class Seq2SeqTrainingArguments(TrainingArguments):
    """TrainingArguments plus evaluation by generation (for BLEU/ROUGE-style metrics)."""

    predict_with_generate: bool = False
    generation_max_length: int | None = None  # None: the model's generation config
    generation_num_beams: int | None = None
    generation_config: Any = None  # a GenerationConfig, or a folder / hub name holding one

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        if hasattr(self.generation_config, "to_dict"):
            d["generation_config"] = self.generation_config.to_dict()
        return d


def _require_positive_int(args: TrainingArguments, name: str) -> None:
    value = getattr(args, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"TrainingArguments.{name}={value!r} must be a positive integer")


def _steps(value: float, name: str) -> float | int:
    """A step count above 1 must be whole (stored as int); below 1 it is a ratio of the run."""
    if value < 0:
        raise ConfigError(f"TrainingArguments.{name}={value} must be >= 0")
    if value > 1:
        if value != int(value):
            raise ConfigError(f"TrainingArguments.{name}={value} must be an integer when above 1 "
                              "(below 1 it is a ratio)")
        return int(value)
    return value


def check_fsdp_arguments(fsdp, fsdp_config) -> tuple[list[str], dict]:
    """TrainingArguments.fsdp / fsdp_config as (options, config), each name checked."""
    if fsdp is True:
        fsdp = "full_shard"
    options = (fsdp.split() if isinstance(fsdp, str) else list(fsdp or [])) if fsdp is not False else []
    for option in options:
        if option not in FSDP_OPTIONS:
            raise ConfigError(f"TrainingArguments.fsdp: unknown option {option!r}; expected some of {FSDP_OPTIONS}")
    if len([o for o in options if o not in ("auto_wrap", "offload")]) > 1:
        raise ConfigError(f"TrainingArguments.fsdp={fsdp!r} names more than one sharding strategy")
    if options and not set(options) - {"auto_wrap", "offload"}:
        options.insert(0, "full_shard")
    config = dict(fsdp_config or {})
    for key, value in config.items():
        if key not in FSDP_CONFIG_KEYS:
            raise UnsupportedOptionError(f"TrainingArguments.fsdp_config[{key!r}] is not supported; supported keys: "
                                         f"{sorted(FSDP_CONFIG_KEYS)}")
        if key in ("version", "fsdp_version") and value != 2:
            raise UnsupportedOptionError(f"TrainingArguments.fsdp_config[{key!r}]={value!r}: only FSDP2 exists here")
        if key in ("sync_module_states", "use_orig_params") and value is not True:
            raise UnsupportedOptionError(f"TrainingArguments.fsdp_config[{key!r}]={value!r}: expected "
                                         f"{FSDP_CONFIG_KEYS[key]}")
        if key == "min_num_params" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"TrainingArguments.fsdp_config['min_num_params']={value!r} must be a positive int")
    if config and not options:
        raise ConfigError("TrainingArguments.fsdp_config is set but fsdp is empty; set fsdp='full_shard auto_wrap'")
    if "transformer_layer_cls_to_wrap" in config and isinstance(config["transformer_layer_cls_to_wrap"], str):
        config["transformer_layer_cls_to_wrap"] = [config["transformer_layer_cls_to_wrap"]]
    return options, config
