"""LoraModel: puts LoRA adapters into a model, picks which parameters train, merges and removes them, and maps
the model's adapter parameters to the keys of PEFT's adapter_model.safetensors and back.

Modules are addressed by the checkpoint's names (`model.layers.0.self_attn.q_proj`), which are our module
paths, with PEFT's matching rules: a list entry matches a whole name or its dotted tail, a string is a full
regex, "all-linear" is every nn.Linear except the output layer.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError, UnsupportedOptionError
from .config import DEFAULT_TARGET_MODULES, LoraConfig, TaskType
from .layers import LoraLinear, ModulesToSaveWrapper

_CLASSIFIER_NAMES = ("score", "classifier")  # PEFT's names of a classification head
_ADAPTER_PARTS = ("lora_A", "lora_B")


def _matches_names(key: str, names) -> bool:
    return key in names or any(key.endswith(f".{n}") for n in names)


def _in_selected_layer(config: LoraConfig, key: str) -> bool:
    """layers_to_transform: the first number after `layers_pattern` (or after any name) is the layer index."""
    if config.layers_to_transform is None:
        return True
    patterns = config.layers_pattern or [None]
    for pattern in [patterns] if isinstance(patterns, str) else patterns:
        regex = r".*?\.[^.]*\.(?P<idx>\d+)\." if pattern is None else rf"(?:^|.*?\.){pattern}\.(?P<idx>\d+)\."
        if (match := re.match(regex, key)) is not None:
            index, wanted = int(match.group("idx")), config.layers_to_transform
            return index == wanted if isinstance(wanted, int) else index in wanted
    return False


def is_target(config: LoraConfig, key: str) -> bool:
    """Whether LoRA goes on module `key` (PEFT's check_target_module_exists)."""
    excluded = config.exclude_modules
    if excluded and (re.fullmatch(excluded, key) if isinstance(excluded, str) else _matches_names(key, excluded)):
        return False
    if config.modules_to_save and any(re.match(rf"(^|.*\.){m}($|\..*)", key) for m in config.modules_to_save):
        return False  # a module trained in full is never also adapted
    if isinstance(config.target_modules, str):
        return re.fullmatch(config.target_modules, key) is not None
    return _matches_names(key, config.target_modules) and _in_selected_layer(config, key)


def resolve_target_modules(model: nn.Module, config: LoraConfig) -> None:
    """Fill target_modules when None (the family's default) or "all-linear" (full names), as PEFT does."""
    if config.target_modules is None:
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        if model_type not in DEFAULT_TARGET_MODULES:
            raise ConfigError(f"LoraConfig.target_modules is None and model_type {model_type!r} has no default; "
                              "name the modules to adapt (e.g. ['q_proj', 'v_proj'])")
        config.target_modules = list(DEFAULT_TARGET_MODULES[model_type])
    if not (isinstance(config.target_modules, str) and config.target_modules.lower() == "all-linear"):
        return
    names = {n for n, m in model.named_modules()
             if isinstance(m, (nn.Linear, LoraLinear)) and not _inside_wrapper(n)}
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None and config.task_type == TaskType.SEQ_CLS:
        head = next((getattr(model, n) for n in _CLASSIFIER_NAMES if getattr(model, n, None) is not None), None)
    if head is not None:
        names -= {n for n, m in model.named_modules() if m is head}
    config.target_modules = sorted(names)


def _inside_wrapper(key: str) -> bool:
    """A module that belongs to an adapter layer (its matrices, the wrapped base, a module-to-save copy)."""
    return ".lora_" in key or key.endswith(".base_layer") or ".base_layer." in key or ".modules_to_save." in key \
        or key.endswith(".original_module") or ".original_module." in key


def inject(model: nn.Module, config: LoraConfig, name: str, adapter_dtype_of) -> None:
    """Add adapter `name` to every target of `config` (wrapping plain Linears) and its modules_to_save.
    Targets are checked before anything changes, so a refused config leaves the model as it was."""
    targets = [(k, m) for k, m in model.named_modules() if k and not _inside_wrapper(k) and is_target(config, k)]
    if not targets:
        raise ConfigError(f"LoraConfig.target_modules={config.target_modules!r} matches no module of "
                          f"{type(model).__name__}; module names look like {_example_names(model)}")
    for key, module in targets:
        if not isinstance(module, (nn.Linear, LoraLinear)):
            raise UnsupportedOptionError(f"LoraConfig.target_modules matches {key!r}, a {type(module).__name__}; "
                                         "LoRA is implemented for nn.Linear layers only")
    for key, module in targets:
        layer = module if isinstance(module, LoraLinear) else LoraLinear(module)
        if layer is not module:
            _replace(model, key, layer)
        r, scale = config.scaling(key)
        layer.update_layer(name, r, scale, config.lora_dropout, config.init_lora_weights,
                           adapter_dtype_of(layer.base_layer.weight.dtype))
    for key, module in list(model.named_modules(remove_duplicate=False)):
        # PEFT's rule for modules_to_save: a plain suffix of the module's name
        if key and config.modules_to_save and any(key.endswith(m) for m in config.modules_to_save) \
                and not _inside_wrapper(key):
            wrapper = module if isinstance(module, ModulesToSaveWrapper) else ModulesToSaveWrapper(module)
            if wrapper is not module:
                _replace(model, key, wrapper)
            wrapper.update(name)


def _example_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][:4]


def _replace(model: nn.Module, key: str, new: nn.Module) -> None:
    parent, _, child = key.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def adapter_layers(model: nn.Module):
    return [m for m in model.modules() if isinstance(m, (LoraLinear, ModulesToSaveWrapper))]


def set_active(model: nn.Module, name: str) -> None:
    for layer in adapter_layers(model):
        if isinstance(layer, LoraLinear):
            layer.active_adapters = [name]
        else:
            layer.active_adapter = name


def set_disabled(model: nn.Module, disabled: bool) -> None:
    for layer in adapter_layers(model):
        layer.disable_adapters = disabled


def mark_trainable(model: nn.Module, configs: dict[str, LoraConfig], active: str, inference_mode: bool) -> None:
    """Only the active adapter trains (unless `inference_mode`), plus the biases its config asks for."""
    for p in model.parameters():
        p.requires_grad_(False)
    if inference_mode:
        return
    config = configs[active]
    for layer in adapter_layers(model):
        if isinstance(layer, LoraLinear) and active in layer.lora_A:
            layer.lora_A[active].requires_grad_(True)
            layer.lora_B[active].requires_grad_(True)
            if config.bias == "lora_only" and layer.base_layer.bias is not None:
                layer.base_layer.bias.requires_grad_(True)
        elif isinstance(layer, ModulesToSaveWrapper) and active in layer.modules_to_save:
            layer.modules_to_save[active].requires_grad_(True)
    if config.bias == "all":
        for key, p in model.named_parameters():
            if "bias" in key and ".original_module." not in key:
                p.requires_grad_(True)


def delete(model: nn.Module, name: str) -> None:
    for layer in adapter_layers(model):
        for part in ("lora_A", "lora_B", "lora_dropout", "modules_to_save"):
            if name in getattr(layer, part, {}):
                del getattr(layer, part)[name]
        if isinstance(layer, LoraLinear):
            layer.scaling.pop(name, None)


def unload(model: nn.Module, merge: bool, names: list[str] | None = None, safe_merge: bool = False,
           progressbar: bool = False) -> nn.Module:
    """Put the base modules back (merging the active adapters or `names` first when `merge`); a module
    trained in full is replaced by the active adapter's copy, as PEFT does."""
    layers = [(k, m) for k, m in model.named_modules() if isinstance(m, (LoraLinear, ModulesToSaveWrapper))]
    if progressbar:
        from tqdm.auto import tqdm  # installed with huggingface_hub

        layers = tqdm(layers, desc="Unloading and merging" if merge else "Unloading")
    for key, module in layers:
        if isinstance(module, LoraLinear):
            if merge:
                module.merge(names, safe_merge)
            _replace(model, key, module.base_layer)
        elif isinstance(module, ModulesToSaveWrapper):
            _replace(model, key, module.active_module() if not module.disable_adapters else module.original_module)
    return model


# --- adapter_model.safetensors keys <-> model keys ---
# The model's keys are `base_model.model.<module>.lora_A.<adapter>.weight`; the file drops the adapter name:
# `base_model.model.<module>.lora_A.weight`, and a module to save is stored under its own name.

def adapter_state_dict(state_dict: dict, config: LoraConfig, name: str) -> dict:
    """The entries of adapter `name` in a PeftModel's full state dict, under PEFT's file keys."""
    out = {}
    lora_modules = {k.split(".lora_A.")[0] for k in state_dict if f".lora_A.{name}." in k}
    for key, tensor in state_dict.items():
        stripped = key
        for part in (*_ADAPTER_PARTS, "modules_to_save"):
            stripped = stripped.replace(f".{part}.{name}.", f".{part}.")
        if f".modules_to_save.{name}." in key:
            out[key.replace(f".modules_to_save.{name}.", ".")] = tensor
        if any(f".{part}.{name}." in key for part in _ADAPTER_PARTS):
            out[stripped] = tensor
        elif ".lora_" in key or (".modules_to_save." in key and stripped == key):
            continue  # another adapter's
        elif config.bias == "all" and "bias" in key:
            # as PEFT: every bias, those of a module to save also as `modules_to_save.bias` / `original_module.bias`
            out[stripped] = tensor
        elif config.bias == "lora_only" and key.endswith(".base_layer.bias") \
                and key[: -len(".base_layer.bias")] in lora_modules:
            out[key] = tensor
    return out


def to_model_keys(file_state: dict, model_keys, name: str, source: str) -> dict:
    """File keys -> the PeftModel's keys for adapter `name`; keys with no place in the model raise."""
    out, unknown = {}, []
    for key, tensor in file_state.items():
        candidates = [key]
        for part in (*_ADAPTER_PARTS, "modules_to_save"):
            if f".{part}." in key:
                head, tail = key.rsplit(f".{part}.", 1)
                candidates = [f"{head}.{part}.{name}.{tail}"]
        module, _, param = key.rpartition(".")
        candidates += [f"{module}.modules_to_save.{name}.{param}", f"{module}.base_layer.{param}"]
        hit = next((c for c in candidates if c in model_keys), None)
        if hit is None:
            unknown.append(key)
        else:
            out[hit] = tensor
    if unknown:
        raise CheckpointError(f"{source}: {len(unknown)} tensors have no place in the model (adapter {name!r}), "
                              f"e.g. {unknown[:3]}; was the adapter trained on another architecture?")
    return out


def load_into(model: nn.Module, model_state: dict, name: str, source: str) -> None:
    """Copy the tensors in place (optimizers holding the parameters keep them); every LoRA matrix of the
    adapter must be in the file."""
    params = dict(model.named_parameters(remove_duplicate=False))
    needed = [k for k in params if any(f".{part}.{name}." in k for part in _ADAPTER_PARTS)]
    missing = [k for k in needed if k not in model_state]
    if missing:
        raise CheckpointError(f"{source}: adapter {name!r} lacks {len(missing)} LoRA tensors, e.g. {missing[:3]}")
    with torch.no_grad():
        for key, tensor in model_state.items():
            target = params[key]
            if tuple(tensor.shape) != tuple(target.shape):
                raise CheckpointError(f"{source}: {key} has shape {tuple(tensor.shape)}, the model expects "
                                      f"{tuple(target.shape)} (a different r or base model?)")
            target.copy_(tensor)
