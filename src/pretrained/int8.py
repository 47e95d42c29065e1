"""Int8 weight-only linear layers: an inference optimisation applied to a loaded model, out of the
model files' sight.

    model = quantize_linear_int8(AutoModelForCausalLM.from_pretrained("ckpt/").eval())
    save_int8(model, "ckpt-int8/"); model = load_int8("ckpt-int8/")

Each nn.Linear becomes an `Int8Linear`: int8 weight codes with one float32 scale per output row
(symmetric, absmax / 127), multiplied without expanding the weight: on a CPU, PyTorch's int8
weight-only kernel with bfloat16 activations (its fast path); compiled, or on other devices, the
codes are converted inside the product, which inductor fuses into one loop. Decoding reads every
weight once per token, so a quarter of the bytes is the point. `save_int8` / `load_int8` keep the
codes and scales (config.json records `quantization_config = {"quant_method": "int8_weight_only",
"modules": [...]}`; from_pretrained refuses such a folder and names load_int8).
"""

from __future__ import annotations

import copy
import json
import os

import torch
import torch.nn.functional as F
from torch import nn

from .errors import CheckpointError, InputError, UnknownModelError

INT8_METHOD = "int8_weight_only"


class Int8Linear(nn.Module):
    """y = x W^T + b with W held as int8 codes (out, in) and a float32 scale per output row: W ~ codes * scale."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=torch.int8, device=device))
        self.register_buffer("weight_scale", torch.ones(out_features, dtype=torch.float32, device=device))
        self.bias = nn.Parameter(torch.zeros(out_features, device=device)) if bias else None

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "Int8Linear":
        w = linear.weight.detach().float()
        scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0  # (out,): absmax of each row maps to 127
        module = cls(linear.in_features, linear.out_features, linear.bias is not None, device=w.device)
        module.weight.copy_(torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8))
        module.weight_scale.copy_(scale)
        if linear.bias is not None:
            module.bias = nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
        return module

    def dequantized_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return (self.weight.to(dtype) * self.weight_scale[:, None].to(dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16) and not torch.compiler.is_compiling():
            # PyTorch's int8 weight-only CPU kernel reads the codes as they are (no float copy of the
            # weight); its fast path takes bfloat16 activations (float32 ones run ~10x slower there)
            y = torch._weight_int8pack_mm(x.reshape(-1, self.in_features).to(torch.bfloat16), self.weight,
                                          self.weight_scale.to(torch.bfloat16))
            y = y.view(*x.shape[:-1], self.out_features).to(x.dtype)
        else:  # compiled: inductor fuses the int8 -> float conversion into the product's loop
            y = F.linear(x, self.weight.to(x.dtype)) * self.weight_scale.to(x.dtype)
        return y + self.bias.to(x.dtype) if self.bias is not None else y

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, int8"


def quantize_linear_int8(model: nn.Module, skip_modules: list[str] | tuple[str, ...] = ()) -> nn.Module:
    """Replace `model`'s nn.Linear layers (in place) by Int8Linear; returns the model.

    Skipped: modules named in `skip_modules` (or below them), and a layer whose weight is tied to
    another module (a tied LM head shares the float embedding, which stays float). The list of
    quantized modules is recorded in `model.config.quantization_config`."""
    if getattr(getattr(model, "config", None), "quantization_config", None):
        raise InputError(f"{type(model).__name__} is already quantized ({model.config.quantization_config})")
    if model.training:
        raise InputError("quantize_linear_int8 is for inference: call model.eval() first (Int8Linear has no gradient)")
    owners: dict[int, int] = {}
    for m in model.modules():
        for p in m.parameters(recurse=False):
            owners[id(p)] = owners.get(id(p), 0) + 1
    from .optimize import unfuse_projections

    unfuse_projections(model)  # fused q/k/v share one tensor; each layer is quantized from its own rows
    done = []
    for name, module in list(model.named_modules()):
        if not isinstance(module, nn.Linear) or owners.get(id(module.weight), 0) > 1:
            continue
        if any(name == s or name.startswith(s + ".") for s in skip_modules):
            continue
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, Int8Linear.from_linear(module))
        done.append(name)
    if hasattr(model, "config"):
        model.config.quantization_config = {"quant_method": INT8_METHOD, "bits": 8, "per_channel": True,
                                            "modules": done}
    return model


def save_int8(model: nn.Module, folder: str | os.PathLike, max_shard_size: int | str = "5GB") -> None:
    """config.json (with quantization_config), the int8 codes, scales and float tensors as model.safetensors,
    and generation_config.json, written atomically. Load with load_int8(folder)."""
    from .weights import save_state_dict

    config = getattr(model, "config", None)
    if not (config and isinstance(getattr(config, "quantization_config", None), dict)
            and config.quantization_config.get("quant_method") == INT8_METHOD):
        raise InputError(f"save_int8 needs a model quantized by quantize_linear_int8; {type(model).__name__} is not")
    os.makedirs(folder, exist_ok=True)
    state = model.state_dict()
    for target in model.tied_weights():  # written once, re-tied on load
        state.pop(target, None)
    save_state_dict(state, os.fspath(folder), max_shard_size)
    config = copy.deepcopy(config)
    config.architectures = [type(model).__name__]
    config.save_pretrained(folder)
    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None:
        generation_config.save_pretrained(folder)


def load_int8(folder: str | os.PathLike):
    """The model saved by save_int8: built on the meta device, its Int8Linear layers put back, every
    tensor taken from the file (no float copy of the quantized weights is ever made)."""
    from . import registry
    from .auto import AutoConfig
    from .generation.config import GENERATION_CONFIG_NAME, GenerationConfig
    from .modeling import init_empty_weights

    path = os.path.join(os.fspath(folder), "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"load_int8: cannot read {path!r}: {e}") from e
    spec = raw.get("quantization_config") or {}
    if spec.get("quant_method") != INT8_METHOD:
        raise CheckpointError(f"{path!r}: quantization_config={spec or None!r}; load_int8 reads folders written by "
                              f"save_int8 (quant_method {INT8_METHOD!r})")
    config = AutoConfig.from_pretrained(folder)
    config.quantization_config = None
    names = raw.get("architectures") or []
    cls = next((c for task in registry.TASKS for c in [_task_class(task, config)] if c and c.__name__ in names), None)
    if cls is None:
        raise CheckpointError(f"{path!r}: architectures={names!r} names no class of model_type {config.model_type!r}")
    with init_empty_weights():
        model = cls(config)
        for name in spec.get("modules", []):
            linear = model.get_submodule(name)
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, attr,
                    Int8Linear(linear.in_features, linear.out_features, linear.bias is not None))
    state = _read_weights(os.fspath(folder))
    result = model.load_state_dict(state, strict=False, assign=True)
    model.tie_weights()
    missing = [k for k in result.missing_keys if k not in model.tied_weights()
               and not _non_persistent(model, k)]
    if missing or result.unexpected_keys:
        raise CheckpointError(f"{os.fspath(folder)!r} does not match {cls.__name__} with int8 layers "
                              f"{spec.get('modules')}: missing {missing}, unexpected {result.unexpected_keys}")
    model._materialize_missing(None)  # derived buffers (rotary tables)
    for m in model.modules():
        if isinstance(m, Int8Linear):
            # the int8 kernel needs aligned rows; safetensors' tensors sit at any offset of the file's buffer
            m.weight = m.weight.clone(memory_format=torch.contiguous_format)
            if m.bias is not None:
                m.bias.requires_grad_(False)
    config.quantization_config = spec
    gen = os.path.join(os.fspath(folder), GENERATION_CONFIG_NAME)
    if os.path.isfile(gen) and hasattr(model, "generation_config"):
        model.generation_config = GenerationConfig.from_json_file(gen)
    model.name_or_path = os.fspath(folder)
    return model.eval()


def _read_weights(folder: str) -> dict:
    """Every tensor of the folder's model.safetensors (or its shards), through safetensors' checked reader."""
    from safetensors.torch import load_file

    from .weights import read_index

    index = os.path.join(folder, "model.safetensors.index.json")
    files = sorted(set(read_index(index).values())) if os.path.isfile(index) else [os.path.join(folder, "model.safetensors")]
    state = {}
    for file in files:
        if not os.path.isfile(file):
            raise CheckpointError(f"{folder!r} has no weights file {os.path.basename(file)!r} (written by save_int8)")
        state.update(load_file(file))
    return state


def _task_class(task: str, config):
    from . import registry

    try:
        return registry.model_class(task, config)
    except UnknownModelError:  # the family lacks this task's head
        return None


def _non_persistent(model: nn.Module, key: str) -> bool:
    module_name, _, name = key.rpartition(".")
    module = model.get_submodule(module_name) if module_name else model
    return name in getattr(module, "_non_persistent_buffers_set", set())
