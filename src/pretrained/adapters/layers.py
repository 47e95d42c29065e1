"""The modules an adapter puts into a model, laid out as PEFT's so state_dict keys match its own:

- `LoraLinear` wraps a target nn.Linear as `base_layer` and holds, per adapter name, `lora_A` (in -> r) and
  `lora_B` (r -> out): y = base_layer(x) + lora_B(lora_A(dropout(x))) * scale, summed over active adapters.
- `ModulesToSaveWrapper` keeps the `original_module` and, per adapter, a trainable copy in `modules_to_save`.

Neither is an nn.Linear, so `pretrained.optimize` never fuses a wrapped projection with its neighbours;
the plain Linears inside still get the inference kernels in eval mode.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError


class LoraLinear(nn.Module):
    """An nn.Linear plus low-rank updates, one pair of matrices per adapter name."""

    def __init__(self, base_layer: nn.Linear):
        super().__init__()
        self.base_layer = base_layer
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self.lora_A = nn.ModuleDict()
        self.lora_B = nn.ModuleDict()
        self.lora_dropout = nn.ModuleDict()
        self.scaling: dict[str, float] = {}
        self.active_adapters: list[str] = []
        self.merged_adapters: list[str] = []
        self.disable_adapters = False

    def update_layer(self, name: str, r: int, scale: float, dropout: float, init, adapter_dtype: torch.dtype) -> None:
        """Add adapter `name`: A (r, in) and B (out, r) on the base weight's device."""
        device = self.base_layer.weight.device
        self.lora_A[name] = nn.Linear(self.in_features, r, bias=False, device=device, dtype=adapter_dtype)
        self.lora_B[name] = nn.Linear(r, self.out_features, bias=False, device=device, dtype=adapter_dtype)
        self.lora_dropout[name] = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.scaling[name] = scale
        with torch.no_grad():
            if init is True:  # the update starts at zero: the model is unchanged until trained
                nn.init.kaiming_uniform_(self.lora_A[name].weight, a=math.sqrt(5))
                nn.init.zeros_(self.lora_B[name].weight)
            elif init == "gaussian":
                nn.init.normal_(self.lora_A[name].weight, std=1 / r)
                nn.init.zeros_(self.lora_B[name].weight)
            # init False keeps nn.Linear's random init for both: a non-zero update (tests, debugging)

    @property
    def merged(self) -> bool:
        return bool(self.merged_adapters)

    def delta_weight(self, name: str) -> torch.Tensor:
        """B @ A * scale, (out, in), in the base weight's dtype (computed in float32 for half types)."""
        A, B = self.lora_A[name].weight, self.lora_B[name].weight
        compute = torch.float32 if A.dtype in (torch.float16, torch.bfloat16) else A.dtype
        delta = (B.to(compute) @ A.to(compute)) * self.scaling[name]
        return delta.to(self.base_layer.weight.dtype)

    def merge(self, names: list[str] | None = None, safe_merge: bool = False) -> None:
        """Add the updates into the base weight in place: a weight that `pretrained.optimize` made a slice
        of a fused q/k/v tensor updates that tensor too, so the fused projection stays right."""
        weight = self.base_layer.weight
        for name in names if names is not None else self.active_adapters:
            if name in self.merged_adapters or name not in self.lora_A:
                continue
            delta = self.delta_weight(name)
            if safe_merge and not torch.isfinite(weight.detach() + delta).all():
                raise InputError(f"merging adapter {name!r} gives non-finite weights; the adapter is broken")
            with torch.no_grad():
                weight.add_(delta)
            self.merged_adapters.append(name)

    def unmerge(self) -> None:
        with torch.no_grad():
            while self.merged_adapters:
                self.base_layer.weight.sub_(self.delta_weight(self.merged_adapters.pop()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.disable_adapters and self.merged:  # as PEFT: a disabled adapter is taken back out
            self.unmerge()
        y = self.base_layer(x)
        if self.disable_adapters or self.merged:
            return y
        dtype = y.dtype
        for name in self.active_adapters:
            if name not in self.lora_A:
                continue
            A, B, dropout = self.lora_A[name].weight, self.lora_B[name].weight, self.lora_dropout[name]
            p = dropout.p if isinstance(dropout, nn.Dropout) and dropout.training else 0.0
            y = y + LoraUpdate.apply(x.to(A.dtype), A, B, p, self.scaling[name])
        return y.to(dtype)

    def extra_repr(self) -> str:
        return f"adapters={list(self.lora_A)}, active={self.active_adapters}"


class LoraUpdate(torch.autograd.Function):
    """B(A(dropout(x))) * scale, equal to PEFT's value and gradients, with less kept for backward: PEFT's
    autograd keeps, per projection, dropout's float noise and the dropped copy of x (8 bytes per input
    element; q, k and v read the same x and keep three of each). This keeps x itself, shared by every
    projection of the same input, plus a bool mask (1 byte), and rebuilds the dropped input in backward."""

    @staticmethod
    def forward(ctx, x, A, B, p: float, scale: float):
        mask = None
        if p > 0:  # F.dropout's own steps on CPU: the same random draws and the same values
            noise = torch.empty_like(x).bernoulli_(1 - p).div_(1 - p)
            dropped, mask = x * noise, noise.bool()
        else:
            dropped = x
        u = F.linear(dropped, A)  # (..., r)
        ctx.save_for_backward(x, mask, u, A, B)
        ctx.p, ctx.scale = p, scale
        return F.linear(u, B) * scale  # (..., out)

    @staticmethod
    def backward(ctx, grad):
        x, mask, u, A, B = ctx.saved_tensors
        p = ctx.p
        grad = grad * ctx.scale
        grad_u = grad @ B  # (..., r)
        grad_x = grad_A = grad_B = None
        if ctx.needs_input_grad[2]:
            grad_B = grad.reshape(-1, grad.shape[-1]).t() @ u.reshape(-1, u.shape[-1])  # (out, r)
        # few input-sized buffers, reused in place: backward's temporaries are what fragments the heap
        noise = mask.to(x.dtype).div_(1 - p) if mask is not None else None
        if ctx.needs_input_grad[0]:
            grad_x = grad_u @ A
            if noise is not None:
                grad_x.mul_(noise)
        if ctx.needs_input_grad[1]:
            dropped = noise.mul_(x) if noise is not None else x
            grad_A = grad_u.reshape(-1, grad_u.shape[-1]).t() @ dropped.reshape(-1, x.shape[-1])  # (r, in)
        return grad_x, grad_A, grad_B, None, None


class ModulesToSaveWrapper(nn.Module):
    """A module trained in full for an adapter (a classifier head): the original stays for the other
    adapters and for `disable_adapter()`; each adapter owns a copy."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.original_module = module
        self.modules_to_save = nn.ModuleDict()
        self.active_adapter: str | None = None
        self.disable_adapters = False

    def update(self, name: str) -> None:
        self.modules_to_save[name] = copy.deepcopy(self.original_module)
        self.modules_to_save[name].requires_grad_(True)

    def active_module(self) -> nn.Module:
        if self.disable_adapters or self.active_adapter not in self.modules_to_save:
            return self.original_module
        return self.modules_to_save[self.active_adapter]

    def forward(self, *args, **kwargs):
        return self.active_module()(*args, **kwargs)

    def __getattr__(self, name: str):
        """Attributes of the module in use (a head reading `classifier.weight`)."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name.startswith("_") or name in ("original_module", "modules_to_save", "disable_adapters",
                                                "active_adapter"):
                raise  # not built yet (deepcopy, unpickling): no module to ask
            return getattr(self.active_module(), name)
