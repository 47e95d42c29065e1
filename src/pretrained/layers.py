"""Small building blocks shared by architectures: the activation table, norms, soft-capping, sinusoidal
tables, and rotary position embeddings with their scaling variants (default, linear, dynamic, llama3, yarn,
longrope)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError


def projections(x: torch.Tensor, *modules: nn.Module) -> tuple[torch.Tensor, ...]:
    """(m(x) for m in modules): several projections of the same input. In eval mode `pretrained.optimize`
    may have fused their weights into one tensor (each module's weight a row slice of it); they then
    run as one matmul, which saves a call per projection in a decode step."""
    fused = getattr(modules[0], "fused_projection", None)
    # a compiled graph fuses the separate products itself (and cannot read the pointers `serves` checks)
    if fused is not None and not torch.compiler.is_compiling() and fused.serves(modules):
        return fused(x)
    return tuple(m(x) for m in modules)


def gelu_new(x: torch.Tensor) -> torch.Tensor:
    """GPT-2's tanh approximation of GELU, written as published."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def gelu_fast(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


ACT2FN = {
    "gelu": F.gelu,
    "gelu_new": gelu_new,
    "gelu_fast": gelu_fast,
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "quick_gelu": quick_gelu,
    "relu": F.relu,
    "relu6": F.relu6,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "mish": F.mish,
    "linear": lambda x: x,
}


def get_activation(name: str, field: str = "hidden_act"):
    if callable(name):
        return name
    if name not in ACT2FN:
        raise ConfigError(f"{field}={name!r} is not a known activation; expected one of {sorted(ACT2FN)}")
    return ACT2FN[name]


class _SiluAndMul(torch.autograd.Function):
    """silu(gate) * up keeping only gate and up for backward: autograd's mul would keep silu(gate) too,
    one more intermediate-wide tensor per token and layer. Recomputed, it gives the same values."""

    @staticmethod
    def forward(ctx, gate, up):
        ctx.save_for_backward(gate, up)
        return F.silu(gate) * up

    @staticmethod
    def backward(ctx, grad):
        gate, up = ctx.saved_tensors
        grad_gate = grad_up = None
        if ctx.needs_input_grad[0]:
            grad_gate = grad * up
            torch.ops.aten.silu_backward.grad_input(grad_gate, gate, grad_input=grad_gate)  # in place
        if ctx.needs_input_grad[1]:
            grad_up = F.silu(gate).mul_(grad)
        return grad_gate, grad_up


def act_and_mul(act, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """act(gate) * up, a gated MLP's product; with SiLU under autograd, without keeping silu(gate)."""
    if act is F.silu and torch.is_grad_enabled() and (gate.requires_grad or up.requires_grad):
        return _SiluAndMul.apply(gate, up)
    return act(gate) * up


def clamp_fp16(x: torch.Tensor) -> torch.Tensor:
    """The references' float16 overflow guard (T5 blocks, BART encoder layers): once an activation
    overflows to inf, clamp everything just inside the representable range. No Python branch on the
    values, so a compiled graph keeps it."""
    if x.dtype != torch.float16:
        return x
    top = torch.finfo(x.dtype).max
    limit = torch.where(torch.isinf(x).any(), top - 1000, top)
    return x.clamp(-limit, limit)


class RMSNorm(nn.Module):
    """x / rms(x) * weight, computed in float32 as the Llama and T5 references do."""

    def __init__(self, hidden_size: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def output_dtype(self, x: torch.Tensor) -> torch.dtype:
        """The dtype the normalised x is cast to before the weight multiplies it: x's own (Llama)."""
        return x.dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = self.output_dtype(x)
        if dtype == torch.float32 and self.weight.dtype == torch.float32:  # one fused kernel, bit-identical here
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class UnitOffsetRMSNorm(RMSNorm):
    """Gemma's RMSNorm: scales by (1 + weight), weight initialised at zero, all in float32 before the
    cast back (Llama's casts first)."""

    def __init__(self, hidden_size: int, eps: float = 1e-6):
        super().__init__(hidden_size, eps)
        nn.init.zeros_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.float()
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * (1.0 + self.weight.float())).to(x.dtype)


def softcap(x: torch.Tensor, cap: float | None) -> torch.Tensor:
    """cap * tanh(x / cap): Gemma's soft limit on attention scores and final logits (None: unchanged)."""
    return x if cap is None else torch.tanh(x / cap) * cap


# --- rotary position embeddings ---

def _rope_default(theta: float, dim: int, params: dict, max_positions: int, seq_len) -> tuple[torch.Tensor, float]:
    return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim)), 1.0


def _rope_linear(theta, dim, params, max_positions, seq_len):
    inv_freq, _ = _rope_default(theta, dim, params, max_positions, seq_len)
    return inv_freq / params["factor"], 1.0


def _rope_dynamic(theta, dim, params, max_positions, seq_len):
    """NTK-aware: the base grows with the sequence once it passes max_position_embeddings."""
    factor = params["factor"]
    seq_len = max(int(seq_len or 0), max_positions)
    scale = torch.tensor(factor * seq_len / max_positions - (factor - 1), dtype=torch.float32)
    base = theta * scale ** (dim / (dim - 2))
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim)), 1.0


def _rope_llama3(theta, dim, params, max_positions, seq_len):
    """Llama 3.1: keep high frequencies, divide low ones by `factor`, blend smoothly in between."""
    inv_freq, _ = _rope_default(theta, dim, params, max_positions, seq_len)
    factor, low, high = params["factor"], params["low_freq_factor"], params["high_freq_factor"]
    old_len = params["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old_len / low, old_len / high
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
    return torch.where(medium, smoothed, scaled), 1.0


def _rope_yarn(theta, dim, params, max_positions, seq_len):
    """YaRN: interpolate low frequencies, extrapolate high ones, ramp between; scale cos/sin by mscale."""
    old_len = params["original_max_position_embeddings"]
    factor = params.get("factor") or max_positions / old_len

    def mscale(scale, m=1.0):
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    attention_factor = params.get("attention_factor")
    if attention_factor is None:
        m, m_all = params.get("mscale"), params.get("mscale_all_dim")
        attention_factor = float(mscale(factor, m) / mscale(factor, m_all)) if m and m_all else mscale(factor)
    beta_fast, beta_slow = params.get("beta_fast") or 32, params.get("beta_slow") or 1

    def correction_dim(rotations):
        return (dim * math.log(old_len / (rotations * 2 * math.pi))) / (2 * math.log(theta))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if params.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    pos_freqs = theta ** (torch.arange(0, dim, 2).float() / dim)
    extrapolation = 1 - ramp
    inv_freq = (1.0 / (factor * pos_freqs)) * (1 - extrapolation) + (1.0 / pos_freqs) * extrapolation
    return inv_freq, attention_factor


def _rope_longrope(theta, dim, params, max_positions, seq_len):
    """LongRoPE (Phi-3's "su"): per-frequency divisors, `long_factor` once the sequence passes
    original_max_position_embeddings, `short_factor` before; cos/sin scaled by an attention factor."""
    old_len = params["original_max_position_embeddings"]
    factor = params.get("factor") or max_positions / old_len
    attention_factor = params.get("attention_factor")
    if attention_factor is None:
        attention_factor = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(old_len))
    divisors = torch.tensor(params["long_factor" if seq_len and seq_len > old_len else "short_factor"],
                            dtype=torch.float32)
    return 1.0 / (divisors * theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim)), attention_factor


ROPE_FUNCTIONS = {"default": _rope_default, "linear": _rope_linear, "dynamic": _rope_dynamic,
                  "llama3": _rope_llama3, "yarn": _rope_yarn, "longrope": _rope_longrope}


def rope_parameters(config, layer_type: str | None = None) -> dict:
    """One dict {rope_type, rope_theta, factor, ...} from either `rope_parameters` (newer
    config.json) or `rope_scaling` + `rope_theta` (older). `layer_type`: the entry of a
    `rope_parameters` nested by attention type (Gemma 3: one base for sliding layers, one for full)."""
    params = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    if layer_type is not None:
        params = dict(params[layer_type])
    params.setdefault("rope_type", params.pop("type", "default"))
    params.setdefault("rope_theta", getattr(config, "rope_theta", None) or 10000.0)
    if params["rope_type"] in ("llama3", "yarn"):
        params.setdefault("original_max_position_embeddings",
                          getattr(config, "original_max_position_embeddings", None) or config.max_position_embeddings)
    if params["rope_type"] == "longrope":  # Phi-3 keeps the pretraining length beside rope_scaling; it wins there
        params["original_max_position_embeddings"] = (getattr(config, "original_max_position_embeddings", None)
                                                      or params.get("original_max_position_embeddings")
                                                      or config.max_position_embeddings)
    if params["rope_type"] not in ROPE_FUNCTIONS:
        raise ConfigError(f"{type(config).__name__}.rope_scaling type {params['rope_type']!r} is not supported; "
                          f"expected one of {sorted(ROPE_FUNCTIONS)}")
    return params


class RotaryEmbedding(nn.Module):
    """cos/sin tables for rotary attention, computed once per forward for all layers.
    `dynamic` recomputes its frequencies from the longest position in the batch; `longrope` picks
    its long or short frequencies from it (a tensor choice: a compiled step reads no number)."""

    def __init__(self, config, head_dim: int, layer_type: str | None = None):
        super().__init__()
        self.params = rope_parameters(config, layer_type)
        self.dim = head_dim
        self.max_positions = config.max_position_embeddings
        self.fn = ROPE_FUNCTIONS[self.params["rope_type"]]
        inv_freq, self.attention_scaling = self.fn(self.params["rope_theta"], self.dim, self.params, self.max_positions, None)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.dynamic = self.params["rope_type"] == "dynamic"
        self.long_after = self.params["original_max_position_embeddings"] if self.params["rope_type"] == "longrope" else None
        self.register_buffer("long_inv_freq", self._long_frequencies(), persistent=False)

    def _long_frequencies(self) -> torch.Tensor | None:
        if self.long_after is None:
            return None
        return self.fn(self.params["rope_theta"], self.dim, self.params, self.max_positions, self.long_after + 1)[0]

    def reset_buffers(self) -> None:
        """Recompute the frequencies (a model built on the meta device has none)."""
        self.inv_freq = self.fn(self.params["rope_theta"], self.dim, self.params, self.max_positions, None)[0]
        self.long_inv_freq = self._long_frequencies()

    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """position_ids (B, T) -> cos, sin (B, T, dim) in `dtype`."""
        inv_freq = self.inv_freq
        if self.long_inv_freq is not None:
            inv_freq = torch.where(position_ids.max() + 1 > self.long_after, self.long_inv_freq, inv_freq)
        if self.dynamic:
            seq_len = int(position_ids.max()) + 1
            if seq_len > self.max_positions:
                inv_freq, _ = self.fn(self.params["rope_theta"], self.dim, self.params, self.max_positions, seq_len)
                inv_freq = inv_freq.to(position_ids.device)
        freqs = position_ids[..., None].float() * inv_freq.float()  # (B, T, dim/2)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        if self.attention_scaling != 1.0:
            cos, sin = cos * self.attention_scaling, sin * self.attention_scaling
        return cos.to(dtype), sin.to(dtype)


def signed_sin(sin: torch.Tensor) -> torch.Tensor:
    """sin (..., D) -> (..., D) with its first half negated, for `rotate`."""
    s1, s2 = sin.chunk(2, dim=-1)
    return torch.cat((-s1, s2), dim=-1)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin_signed: torch.Tensor) -> torch.Tensor:
    """Rotary embedding x * cos + rotate_half(x) * sin, rotate_half(x) = cat(-x2, x1), in three ops:
    rotate_half(x) * sin == roll(x, D/2) * signed_sin(sin) bit for bit (a negation is exact).
    x (B, H, T, D); cos, sin_signed broadcastable to (B, H, T, R): with R < D (partial rotary) the first
    R features rotate and the others pass through."""
    R = cos.shape[-1]
    if R < x.shape[-1]:
        return torch.cat((rotate(x[..., :R], cos, sin_signed), x[..., R:]), dim=-1)
    return x * cos + x.roll(R // 2, dims=-1) * sin_signed


def sinusoidal_table(num_positions: int, dim: int, interleaved: bool = True) -> torch.Tensor:
    """The fixed position table of "Attention is all you need": angle p / 10000^(2i/dim) for feature
    pair i, sin and cos interleaved (DistilBERT) or sin in the first half and cos in the second
    (Marian); computed in float64 as the references' numpy tables, returned in float32."""
    position = torch.arange(num_positions, dtype=torch.float64)[:, None]
    angles = position / torch.pow(10000.0, 2 * (torch.arange(dim, dtype=torch.float64) // 2) / dim)  # (P, dim)
    sin, cos = torch.sin(angles[:, 0::2]).float(), torch.cos(angles[:, 1::2]).float()
    table = torch.empty(num_positions, dim)
    if interleaved:
        table[:, 0::2], table[:, 1::2] = sin, cos
    else:
        table[:, :sin.shape[1]], table[:, sin.shape[1]:] = sin, cos
    return table
