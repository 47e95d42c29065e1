"""The Trainer's optimizer: TrainingArguments.optim over two parameter groups, with and without weight decay.

Biases and normalisation weights get no weight decay, decided as Transformers' Trainer decides it (module
type, then parameter name), so the same checkpoint trains with the same groups under either library.
Adafactor (not in torch) is written here.
"""

from __future__ import annotations

import math
import re

import torch
from torch import nn

from ..errors import InputError, UnsupportedOptionError
from ..layers import RMSNorm
from .arguments import OptimizerNames, TrainingArguments

# full parameter names (lowercased) that never decay: biases and norms named norm, *_norm, *layernorm, *rmsnorm
_NO_DECAY_NAME = re.compile(r"bias|layernorm|rmsnorm|(?:^|\.)norm(?:$|\.)|_norm(?:$|\.)")
_NORM_TYPES = (nn.LayerNorm, nn.RMSNorm, RMSNorm)

# optim -> the optim_args keys it takes, each with its parser
_OPTIM_ARGS = {
    OptimizerNames.ADAMW_TORCH: {},
    OptimizerNames.ADAMW_TORCH_FUSED: {},
    OptimizerNames.SGD: {"momentum": float, "dampening": float, "nesterov": lambda v: _flag("nesterov", v)},
    OptimizerNames.ADAFACTOR: {},
}


def get_decay_parameter_names(model: nn.Module) -> list[str]:
    """Names of the parameters that weight decay applies to: all but those inside a norm module and
    those whose name marks a bias or a norm."""
    names = []

    def visit(module: nn.Module, prefix: str, in_norm: bool):
        for name, param in module._parameters.items():
            full = prefix + name
            if param is not None and not in_norm and not _NO_DECAY_NAME.search(full.lower()):
                names.append(full)
        for name, child in module.named_children():
            visit(child, f"{prefix}{name}.", in_norm or isinstance(child, _NORM_TYPES))

    visit(model, "", False)
    return names


def _flag(key: str, value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise InputError(f"TrainingArguments.optim_args: {key}={value!r} is not a boolean (true/false)")


def parse_optim_args(args: TrainingArguments) -> dict:
    """TrainingArguments.optim_args ("momentum=0.9,nesterov=true") as keyword arguments for args.optim."""
    parsers = _OPTIM_ARGS[args.optim]
    kwargs = {}
    for item in (args.optim_args or "").replace(" ", "").split(","):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or key not in parsers:
            raise UnsupportedOptionError(f"TrainingArguments.optim_args: {item!r} is not an option of optim="
                                         f"{args.optim.value!r}; it takes {sorted(parsers) or 'none'}")
        kwargs[key] = parsers[key](value)
    return kwargs


def create_optimizer(model: nn.Module, args: TrainingArguments) -> torch.optim.Optimizer:
    """args.optim over model's trainable parameters, weight_decay only on get_decay_parameter_names."""
    decay = set(get_decay_parameter_names(model))
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in trainable if n in decay], "weight_decay": args.weight_decay},
        {"params": [p for n, p in trainable if n not in decay], "weight_decay": 0.0},
    ]
    kwargs = parse_optim_args(args)
    if args.optim in (OptimizerNames.ADAMW_TORCH, OptimizerNames.ADAMW_TORCH_FUSED):
        return torch.optim.AdamW(groups, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                                 eps=args.adam_epsilon,
                                 # None: torch's own choice (foreach), as Transformers leaves it
                                 fused=True if args.optim == OptimizerNames.ADAMW_TORCH_FUSED else None)
    if args.optim == OptimizerNames.SGD:
        return torch.optim.SGD(groups, lr=args.learning_rate, **kwargs)
    # the Trainer's Adafactor follows args.learning_rate (and its schedule) as given
    return Adafactor(groups, lr=args.learning_rate, scale_parameter=False, relative_step=False)


class Adafactor(torch.optim.Optimizer):
    """Adafactor (Shazeer & Stern, 2018): Adam's second moment kept as row and column averages for
    matrices, so the optimizer state is O(rows + cols); updates are clipped by their RMS.

    Arguments and defaults are Transformers': lr=None with relative_step=True uses min(1e-2, 1/sqrt(step))
    (1e-6 * step with warmup_init); scale_parameter multiplies the step by the parameter's RMS;
    beta1=None keeps no first moment. eps = (added to grad**2, floor of the parameter scale)."""

    def __init__(self, params, lr: float | None = None, eps: tuple[float, float] = (1e-30, 1e-3),
                 clip_threshold: float = 1.0, decay_rate: float = -0.8, beta1: float | None = None,
                 weight_decay: float = 0.0, scale_parameter: bool = True, relative_step: bool = True,
                 warmup_init: bool = False):
        if lr is not None and relative_step:
            raise InputError("Adafactor: lr is set and relative_step=True computes its own; pass relative_step=False")
        if lr is None and not relative_step:
            raise InputError("Adafactor: relative_step=False needs an lr")
        if warmup_init and not relative_step:
            raise InputError("Adafactor: warmup_init=True needs relative_step=True")
        super().__init__(params, dict(lr=lr, eps=eps, clip_threshold=clip_threshold, decay_rate=decay_rate,
                                      beta1=beta1, weight_decay=weight_decay, scale_parameter=scale_parameter,
                                      relative_step=relative_step, warmup_init=warmup_init))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, group, self.state[p])
        return loss

    def _update(self, p: torch.Tensor, group: dict, state: dict):
        if p.grad.is_sparse:
            raise InputError("Adafactor does not support sparse gradients")
        grad = p.grad.float()
        w = p.float()  # the step is computed in float32, then written back in p's dtype
        factored = grad.dim() >= 2  # matrices (and stacks of them) keep row and column statistics
        if not state:
            state["step"] = 0
            if group["beta1"] is not None:
                state["exp_avg"] = torch.zeros_like(grad)
            if factored:
                state["exp_avg_sq_row"] = grad.new_zeros(grad.shape[:-1])  # (..., rows)
                state["exp_avg_sq_col"] = grad.new_zeros(grad.shape[:-2] + grad.shape[-1:])  # (..., cols)
            else:
                state["exp_avg_sq"] = torch.zeros_like(grad)
        state["step"] += 1
        step = state["step"]
        state["RMS"] = _rms(w)

        lr = group["lr"]
        if group["relative_step"]:
            lr = min(1e-6 * step if group["warmup_init"] else 1e-2, 1.0 / math.sqrt(step))
        if group["scale_parameter"]:
            lr *= max(group["eps"][1], state["RMS"])

        decay = 1.0 - step ** group["decay_rate"]  # beta2 rising towards 1 with the step
        sq = grad**2 + group["eps"][0]
        if factored:
            row, col = state["exp_avg_sq_row"], state["exp_avg_sq_col"]
            row.mul_(decay).add_(sq.mean(dim=-1), alpha=1.0 - decay)
            col.mul_(decay).add_(sq.mean(dim=-2), alpha=1.0 - decay)
            # rank-1 estimate of 1/sqrt(second moment): row and column factors, rows normalised by their mean
            row_factor = (row / row.mean(dim=-1, keepdim=True)).rsqrt().unsqueeze(-1)  # (..., rows, 1)
            update = row_factor * col.unsqueeze(-2).rsqrt() * grad
        else:
            state["exp_avg_sq"].mul_(decay).add_(sq, alpha=1.0 - decay)
            update = state["exp_avg_sq"].rsqrt() * grad
        update.div_((_rms(update) / group["clip_threshold"]).clamp(min=1.0))
        update.mul_(lr)
        if group["beta1"] is not None:
            update = state["exp_avg"].mul_(group["beta1"]).add_(update, alpha=1.0 - group["beta1"])
        if group["weight_decay"]:
            w.mul_(1.0 - group["weight_decay"] * lr)  # decoupled, scaled by the step size like AdamW
        w.sub_(update)
        if w is not p:
            p.copy_(w)


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.norm(2) / x.numel() ** 0.5
