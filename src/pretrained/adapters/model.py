"""PeftModel: a model with named LoRA adapters, PEFT's API and files.

    peft_model = get_peft_model(model, LoraConfig(r=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    peft_model.save_pretrained(folder)            # adapter_config.json + adapter_model.safetensors
    peft_model = PeftModel.from_pretrained(base, folder)

The wrapper nests as PEFT's does (`base_model` a LoraModel, whose `model` is the wrapped model), so
parameter names and the saved keys (`base_model.model.<module>.lora_A.weight`) are PEFT's own.
"""

from __future__ import annotations

import contextlib
import os

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError, InputError, UnsupportedOptionError
from ..files import atomic_path
from ..hub import HUB_KWARGS, HubOptions, first_existing
from . import lora
from .config import LoraConfig, TaskType

SAFETENSORS_NAME = "adapter_model.safetensors"
WEIGHTS_NAME = "adapter_model.bin"


class LoraModel(nn.Module):
    """The model with adapters injected; `model` is the wrapped model (its modules now hold the adapters)."""

    def __init__(self, model: nn.Module, peft_config: dict[str, LoraConfig]):
        super().__init__()
        self.model = model
        self.peft_config = peft_config

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "model":
                raise
            return getattr(self.model, name)


class PeftModel(nn.Module):
    """A model with one or more named LoRA adapters, one of them active."""

    extra_modules_to_save: tuple[str, ...] = ()  # heads a task trains in full (classifiers)

    def __init__(self, model: nn.Module, peft_config: LoraConfig, adapter_name: str = "default",
                 autocast_adapter_dtype: bool = True, low_cpu_mem_usage: bool = False):
        super().__init__()
        if low_cpu_mem_usage:
            raise UnsupportedOptionError("low_cpu_mem_usage=True (adapters built on the meta device) is not supported")
        if isinstance(model, PeftModel) or any(isinstance(m, lora.LoraLinear) for m in model.modules()):
            raise InputError("the model already has LoRA adapters; use add_adapter() to add another")
        self.autocast_adapter_dtype = autocast_adapter_dtype
        self.base_model = LoraModel(model, {})
        self.active_adapter = adapter_name
        self.add_adapter(adapter_name, peft_config)

    # --- adapters ---

    @property
    def peft_config(self) -> dict[str, LoraConfig]:
        return self.base_model.peft_config

    @property
    def active_adapters(self) -> list[str]:
        return [self.active_adapter]

    @property
    def active_peft_config(self) -> LoraConfig:
        return self.peft_config[self.active_adapter]

    def _adapter_dtype(self, base_dtype: torch.dtype) -> torch.dtype:
        """As PEFT: adapters of a float16 / bfloat16 model are kept in float32 unless told otherwise."""
        if self.autocast_adapter_dtype and base_dtype in (torch.float16, torch.bfloat16):
            return torch.float32
        return base_dtype

    def add_adapter(self, adapter_name: str, peft_config: LoraConfig, low_cpu_mem_usage: bool = False) -> None:
        """Add an adapter (initialised per its config); the active adapter stays the active one."""
        if low_cpu_mem_usage:
            raise UnsupportedOptionError("add_adapter(low_cpu_mem_usage=True) is not supported")
        if not isinstance(peft_config, LoraConfig):
            raise InputError(f"peft_config must be a LoraConfig, got {type(peft_config).__name__}")
        if adapter_name in self.peft_config:
            raise InputError(f"an adapter named {adapter_name!r} exists already")
        model = self.base_model.model
        names = [n for n, _ in model.named_modules()]
        unknown = [m for m in peft_config.modules_to_save or [] if m not in self.extra_modules_to_save
                   and not any(n.endswith(m) for n in names)]
        if unknown:
            raise ConfigError(f"LoraConfig.modules_to_save: {unknown} match no module of {type(model).__name__}")
        extra = [m for m in self.extra_modules_to_save if m not in (peft_config.modules_to_save or [])]
        if extra:
            peft_config.modules_to_save = [*(peft_config.modules_to_save or []), *extra]
        if peft_config.base_model_name_or_path is None:
            peft_config.base_model_name_or_path = getattr(model, "name_or_path", None) or None
        lora.resolve_target_modules(model, peft_config)
        lora.inject(model, peft_config, adapter_name, self._adapter_dtype)
        self.peft_config[adapter_name] = peft_config
        self.set_adapter(self.active_adapter, inference_mode=self.active_peft_config.inference_mode)
        if hasattr(model, "use_inference_optimizations"):
            model.train(model.training)  # new Linears get the eval-mode kernels too

    def set_adapter(self, adapter_name: str, inference_mode: bool = False) -> None:
        """Make `adapter_name` the active adapter; it trains unless `inference_mode` (PEFT's rule)."""
        if adapter_name not in self.peft_config:
            raise InputError(f"no adapter named {adapter_name!r}; loaded: {sorted(self.peft_config)}")
        self.active_adapter = adapter_name
        lora.set_active(self.base_model.model, adapter_name)
        lora.mark_trainable(self.base_model.model, self.peft_config, adapter_name, inference_mode)

    def delete_adapter(self, adapter_name: str) -> None:
        if adapter_name not in self.peft_config:
            raise InputError(f"no adapter named {adapter_name!r}; loaded: {sorted(self.peft_config)}")
        if adapter_name == self.active_adapter and len(self.peft_config) == 1:
            raise InputError("cannot delete the only adapter; use unload() to remove LoRA from the model")
        lora.delete(self.base_model.model, adapter_name)
        del self.peft_config[adapter_name]
        if adapter_name == self.active_adapter:
            self.set_adapter(next(iter(self.peft_config)))

    @contextlib.contextmanager
    def disable_adapter(self):
        """Within the block the model runs without any adapter (the original modules to save too)."""
        model = self.base_model.model
        lora.set_disabled(model, True)
        try:
            yield
        finally:
            lora.set_disabled(model, False)

    def merge_adapter(self, adapter_names: list[str] | None = None, safe_merge: bool = False) -> None:
        """Add the active adapter (or `adapter_names`) into the base weights, keeping the adapter layers;
        `safe_merge` refuses weights that would not be finite."""
        for layer in lora.adapter_layers(self.base_model.model):
            if isinstance(layer, lora.LoraLinear):
                layer.merge(adapter_names, safe_merge)

    def unmerge_adapter(self) -> None:
        for layer in lora.adapter_layers(self.base_model.model):
            if isinstance(layer, lora.LoraLinear):
                layer.unmerge()

    def merge_and_unload(self, progressbar: bool = False, safe_merge: bool = False,
                         adapter_names: list[str] | None = None) -> nn.Module:
        """The wrapped model with the active adapter (or `adapter_names`) added into its weights."""
        return self._unload(True, adapter_names, safe_merge, progressbar)

    def unload(self, progressbar: bool = False) -> nn.Module:
        """The wrapped model without any adapter (merged adapters stay in the weights)."""
        return self._unload(False, progressbar=progressbar)

    def _unload(self, merge: bool, adapter_names=None, safe_merge: bool = False, progressbar: bool = False):
        model = lora.unload(self.base_model.model, merge, adapter_names, safe_merge, progressbar)
        if hasattr(model, "use_inference_optimizations"):
            model.train(model.training)  # eval mode: the restored projections may fuse again
        return model

    def get_base_model(self) -> nn.Module:
        return self.base_model.model

    # --- running ---

    def forward(self, *args, **kwargs):
        return self.base_model(*args, **kwargs)

    def generate(self, *args, **kwargs):
        return self.base_model.model.generate(*args, **kwargs)

    def get_nb_trainable_parameters(self) -> tuple[int, int]:
        params = list(self.parameters())
        return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)

    def print_trainable_parameters(self) -> None:
        trainable, total = self.get_nb_trainable_parameters()
        print(f"trainable params: {trainable:,d} || all params: {total:,d} || "
              f"trainable%: {100 * trainable / total:.4f}")

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "base_model":
                raise
            return getattr(self.base_model, name)

    # --- files ---

    def save_pretrained(self, save_directory: str | os.PathLike, safe_serialization: bool = True,
                        selected_adapters: list[str] | None = None, is_main_process: bool = True,
                        state_dict: dict | None = None, **kwargs) -> None:
        """Write each adapter's adapter_config.json and weights under PEFT's keys: "default" into
        `save_directory`, any other into `save_directory/<name>`, as PEFT does."""
        for key in kwargs:
            if key not in ("save_embedding_layers",) or kwargs[key] not in ("auto", False):
                raise UnsupportedOptionError(f"save_pretrained({key}={kwargs[key]!r}) is not supported")
        if os.path.isfile(save_directory):
            raise CheckpointError(f"save_pretrained needs a folder, {os.fspath(save_directory)!r} is a file")
        names = list(self.peft_config) if selected_adapters is None else list(selected_adapters)
        for name in names:
            if name not in self.peft_config:
                raise InputError(f"selected_adapters: no adapter named {name!r}; loaded: {sorted(self.peft_config)}")
        if not is_main_process:
            return
        full = self.state_dict() if state_dict is None else state_dict
        for name in names:
            folder = os.fspath(save_directory) if name == "default" else os.path.join(save_directory, name)
            os.makedirs(folder, exist_ok=True)
            weights, seen = {}, set()
            for key, tensor in get_peft_model_state_dict(self, full, name).items():
                tensor = tensor.detach().contiguous()
                # one tensor under two keys (PEFT's bias="all" naming) is written twice; safetensors wants copies
                weights[key] = tensor.clone() if tensor.data_ptr() in seen else tensor
                seen.add(tensor.data_ptr())
            if safe_serialization:
                from safetensors.torch import save_file

                with atomic_path(os.path.join(folder, SAFETENSORS_NAME)) as tmp:
                    save_file(weights, tmp, metadata={"format": "pt"})
            else:
                with atomic_path(os.path.join(folder, WEIGHTS_NAME)) as tmp:
                    torch.save(weights, tmp)
            self.peft_config[name].save_pretrained(folder)

    @classmethod
    def from_pretrained(cls, model: nn.Module, model_id: str | os.PathLike, adapter_name: str = "default",
                        is_trainable: bool = False, config: LoraConfig | None = None,
                        autocast_adapter_dtype: bool = True, **kwargs) -> "PeftModel":
        """`model` with the adapter of folder / repo `model_id`; frozen unless `is_trainable`. Called on
        PeftModel, the class follows the adapter's task_type (PeftModelForCausalLM, ...)."""
        options = _hub_options(kwargs, "PeftModel.from_pretrained")
        config = config if config is not None else LoraConfig.from_pretrained(model_id, options)
        config.inference_mode = not is_trainable
        if cls is PeftModel and config.task_type is not None:
            cls = MODEL_TYPE_TO_PEFT_MODEL_MAPPING.get(config.task_type, PeftModel)
        peft_model = cls(model, config, adapter_name, autocast_adapter_dtype=autocast_adapter_dtype)
        peft_model._load_weights(model_id, adapter_name, options)
        return peft_model

    def load_adapter(self, model_id: str | os.PathLike, adapter_name: str, is_trainable: bool = False,
                     **kwargs) -> None:
        """Add the adapter of folder / repo `model_id` as `adapter_name` (the active adapter stays active).
        An adapter of that name already loaded gets the file's weights copied into its own tensors
        (what resuming training needs: the optimizer keeps the same parameters)."""
        options = _hub_options(kwargs, "load_adapter")
        if adapter_name not in self.peft_config:
            config = LoraConfig.from_pretrained(model_id, options)
            config.inference_mode = not is_trainable
            self.add_adapter(adapter_name, config)
        self._load_weights(model_id, adapter_name, options)
        if adapter_name == self.active_adapter:
            self.set_adapter(adapter_name, inference_mode=not is_trainable)

    def _load_weights(self, model_id, adapter_name: str, options: HubOptions) -> None:
        found = first_existing(model_id, [SAFETENSORS_NAME, WEIGHTS_NAME], options)
        if found is None:
            raise CheckpointError(f"{os.fspath(model_id)!r} has no {SAFETENSORS_NAME} or {WEIGHTS_NAME}")
        filename, path = found
        if filename == SAFETENSORS_NAME:
            from safetensors.torch import load_file

            file_state = load_file(path)
        else:
            from ..weights import load_torch_bin

            file_state = load_torch_bin(path)
        set_peft_model_state_dict(self, file_state, adapter_name, source=path)


def get_peft_model_state_dict(model: PeftModel, state_dict: dict | None = None, adapter_name: str = "default") -> dict:
    """Adapter `adapter_name`'s tensors (LoRA matrices, modules to save, biases its config trains) under the keys
    of PEFT's adapter_model.safetensors; `state_dict`: the PeftModel's full state dict if already at hand."""
    state_dict = model.state_dict() if state_dict is None else state_dict
    return lora.adapter_state_dict(state_dict, model.peft_config[adapter_name], adapter_name)


def set_peft_model_state_dict(model: PeftModel, peft_model_state_dict: dict, adapter_name: str = "default",
                              source: str = "set_peft_model_state_dict") -> None:
    """Copy tensors keyed as in adapter_model.safetensors into adapter `adapter_name`'s own parameters (in
    place: an optimizer holding them keeps working). Unknown keys, a missing LoRA matrix or a wrong shape raise
    CheckpointError naming `source`."""
    state = lora.to_model_keys(peft_model_state_dict, set(model.state_dict(keep_vars=True)), adapter_name, source)
    lora.load_into(model, state, adapter_name, source)


def _hub_options(kwargs: dict, where: str) -> HubOptions:
    options = HubOptions.pop_from(kwargs)
    kwargs.pop("low_cpu_mem_usage", None)  # adapters are small: always loaded straight into memory
    if kwargs:
        raise UnsupportedOptionError(f"{where}: unsupported keyword arguments {sorted(kwargs)}")
    return options


class PeftModelForCausalLM(PeftModel):
    pass


class PeftModelForSeq2SeqLM(PeftModel):
    pass


class PeftModelForSequenceClassification(PeftModel):
    extra_modules_to_save = ("classifier", "score")


class PeftModelForTokenClassification(PeftModel):
    extra_modules_to_save = ("classifier", "score")


class PeftModelForQuestionAnswering(PeftModel):
    extra_modules_to_save = ("qa_outputs",)


class PeftModelForFeatureExtraction(PeftModel):
    pass


MODEL_TYPE_TO_PEFT_MODEL_MAPPING = {
    TaskType.CAUSAL_LM: PeftModelForCausalLM, TaskType.SEQ_2_SEQ_LM: PeftModelForSeq2SeqLM,
    TaskType.SEQ_CLS: PeftModelForSequenceClassification, TaskType.TOKEN_CLS: PeftModelForTokenClassification,
    TaskType.QUESTION_ANS: PeftModelForQuestionAnswering, TaskType.FEATURE_EXTRACTION: PeftModelForFeatureExtraction,
}


def get_peft_model(model: nn.Module, peft_config: LoraConfig, adapter_name: str = "default", mixed: bool = False,
                   autocast_adapter_dtype: bool = True, revision: str | None = None,
                   low_cpu_mem_usage: bool = False) -> PeftModel:
    """`model` with a new LoRA adapter; the PeftModel subclass follows `peft_config.task_type`."""
    if mixed:
        raise UnsupportedOptionError("get_peft_model(mixed=True) (PeftMixedModel) is not supported")
    if revision is not None:
        peft_config.revision = revision
    cls = MODEL_TYPE_TO_PEFT_MODEL_MAPPING.get(peft_config.task_type, PeftModel)
    return cls(model, peft_config, adapter_name, autocast_adapter_dtype=autocast_adapter_dtype,
               low_cpu_mem_usage=low_cpu_mem_usage)


class _AutoPeftModel:
    """Base model named in adapter_config.json (`base_model_name_or_path`) plus the adapter."""

    auto_model: str = ""
    peft_class: type[PeftModel] = PeftModel
    task_type: TaskType | None = None

    def __init__(self):
        raise EnvironmentError(f"{type(self).__name__} is built with {type(self).__name__}.from_pretrained(folder)")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, adapter_name: str = "default",
                        is_trainable: bool = False, config: LoraConfig | None = None, **kwargs) -> PeftModel:
        from .. import auto

        hub = {k: kwargs.pop(k) for k in list(kwargs) if k in HUB_KWARGS or k == "use_auth_token"}
        options = HubOptions.pop_from(dict(hub))
        config = config or LoraConfig.from_pretrained(pretrained_model_name_or_path, options)
        if config.base_model_name_or_path is None:
            raise ConfigError(f"{os.fspath(pretrained_model_name_or_path)}: adapter_config.json has no "
                              "base_model_name_or_path; load the base model and call PeftModel.from_pretrained")
        if cls.task_type is not None and config.task_type not in (None, cls.task_type):
            raise ConfigError(f"{os.fspath(pretrained_model_name_or_path)}: the adapter's task_type is "
                              f"{config.task_type.value}, {cls.__name__} expects {cls.task_type.value}")
        base_hub = {k: v for k, v in hub.items() if k not in ("revision", "subfolder")}
        base = getattr(auto, cls.auto_model).from_pretrained(config.base_model_name_or_path,
                                                             revision=config.revision, **base_hub, **kwargs)
        return cls.peft_class.from_pretrained(base, pretrained_model_name_or_path, adapter_name=adapter_name,
                                              is_trainable=is_trainable, config=config, **hub)


class AutoPeftModelForCausalLM(_AutoPeftModel):
    auto_model, peft_class, task_type = "AutoModelForCausalLM", PeftModelForCausalLM, TaskType.CAUSAL_LM


class AutoPeftModelForSequenceClassification(_AutoPeftModel):
    auto_model, peft_class, task_type = ("AutoModelForSequenceClassification", PeftModelForSequenceClassification,
                                         TaskType.SEQ_CLS)
