"""Inference optimisations: faster kernels chosen for a model in eval mode, out of the model code's sight.

Model files use `nn.Linear` and the plain attention backends; training, export and anyone reading a
model file see exactly those. A `PreTrainedModel` in eval mode runs two substitutions that
`optimize_for_inference` applies and `undo_inference_optimizations` reverses (`model.eval()` and
`model.train()` call them; `model.use_inference_optimizations = False` opts out):

- every `nn.Linear` becomes an `InferenceLinear` (a class swap: same parameters, same state_dict keys)
  whose float32 CPU matmul runs on PyTorch's oneDNN kernel, about twice MKL's speed for the skinny
  products of decoding; inside torch.compile a one-row product becomes a multiply-and-sum that
  inductor writes as one fused reduction loop.
- projections a module declares fusable (`fusable_projections`: Llama's q/k/v and gate/up) run as one
  matmul (`FusedProjection`; the modules' weights become row slices of one tensor, keys unchanged).
  A LoRA wrapper (`pretrained.adapters.LoraLinear`) is not an nn.Linear, so a group with a wrapped member
  runs unfused; merging an adapter adds into the base weight in place, which keeps a fused group right.
- attention "sdpa" becomes "sdpa_inference": inside a compiled CPU graph a one-query step (decoding) is
  written out (product, softmax, product) so inductor fuses it; elsewhere it is sdpa.

Both fall back to the plain op wherever a gradient may be needed or a graph is traced for export
(torch.export, jit.trace: ONNX and other formats know F.linear's op). Results agree with the plain
modules to float32 rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import eager_attention, register_attention, sdpa_attention


def _find_onednn_linear():
    """oneDNN's linear kernel as PyTorch ships it (the one inductor fuses into), or None."""
    try:
        return torch.ops.mkldnn._linear_pointwise if torch.backends.mkldnn.is_available() else None
    except (AttributeError, RuntimeError):
        return None


_onednn_linear = _find_onednn_linear()
# Below ~64K multiply-adds the fixed cost of a oneDNN call (~10 us) outweighs its faster kernel. (On
# weights already in cache MKL wins up to ~0.5M, but a decode step streams its weights from memory:
# there a 4-layer, 256-wide model decodes 10-13% faster with oneDNN from 64K up.)
_ONEDNN_MIN_WORK = 1 << 16


@torch.library.custom_op("pretrained::onednn_linear", mutates_args=())
def _compiled_onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The same kernel as one opaque op of a torch.compile graph: inductor cannot lower the raw op on
    a weight it has not frozen, and would otherwise hand the matmul to MKL (~half the speed here)."""
    return _onednn_linear(x, weight, bias, "none", [], "")


@_compiled_onednn_linear.register_fake
def _(x, weight, bias):
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear, run where it is faster for float32 CPU inference (see the module docstring)."""
    if not (_onednn_linear is not None and x.dtype == torch.float32 and x.device.type == "cpu"
            and weight.dtype == torch.float32 and weight.device.type == "cpu" and weight.is_contiguous()
            and not torch.jit.is_tracing() and not torch.compiler.is_exporting()
            and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                                 or (bias is not None and bias.requires_grad)))):
        return F.linear(x, weight, bias)
    if torch.compiler.is_compiling() and x.numel() == x.shape[-1]:
        # (..., N): one row against every weight row; only a backend that runs ops one by one
        # ("eager", "aot_eager": debugging) builds the (N, K) product
        y = (x[..., None, :] * weight).sum(-1)
        return y if bias is None else y + bias
    if x.numel() * weight.shape[0] < _ONEDNN_MIN_WORK:
        return F.linear(x, weight, bias)
    if torch.compiler.is_compiling():
        return _compiled_onednn_linear(x, weight, bias)
    return _onednn_linear(x, weight, bias, "none", [], "")


class InferenceLinear(nn.Linear):
    """nn.Linear (same parameters, same checkpoint keys) whose forward is `linear` above."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


def sdpa_inference_attention(q, k, v, mask=None, scale=None, dropout=0.0, is_causal=False, bias=None, softcap=None):
    """sdpa, except a one-query step in a compiled CPU graph: written out, the product, softmax and
    product fuse into inductor's loops and beat the CPU flash kernel (GPT-2-small decoding ~9% faster)."""
    if q.shape[2] == 1 and not dropout and q.device.type == "cpu" and torch.compiler.is_compiling():
        return eager_attention(q, k, v, mask, scale, 0.0, is_causal, bias, softcap)[0], None
    return sdpa_attention(q, k, v, mask, scale, dropout, is_causal, bias, softcap)


class FusedProjection:
    """Projections of one input (q, k, v; gate, up) as one matmul: their weights are concatenated once,
    and each module's weight becomes a row slice of the result, so memory holds them once and
    state_dict() still has every module's own key. It serves only while the modules are the ones it was
    built from, their weights still slices of its tensor (a `.to()` or a replaced weight ends that), no
    hook watches them and no gradient is needed; otherwise each module runs on its own."""

    def __init__(self, modules: tuple[nn.Linear, ...]):
        self.modules = modules
        self.sizes = [m.out_features for m in modules]
        self.weight = torch.cat([m.weight.detach() for m in modules])
        # a member without a bias (Whisper's k_proj) gets zeros: its products are left as they are
        self.bias = torch.cat([m.bias.detach() if m.bias is not None else m.weight.new_zeros(m.out_features)
                               for m in modules]) if any(m.bias is not None for m in modules) else None
        # the same Parameter objects (an optimizer holding them keeps working) now viewing the fused tensor:
        # in-place updates of a part (an optimizer step) update the fused tensor too
        for m, w in zip(modules, self.weight.split(self.sizes)):
            m.weight.data = w
        if self.bias is not None:
            for m, b in zip(modules, self.bias.split(self.sizes)):
                if m.bias is not None:
                    m.bias.data = b
        self.pointers = [m.weight.data_ptr() for m in modules]  # where each slice lives

    def serves(self, modules) -> bool:
        """Cheap on purpose: it runs before every fused call of a decode step."""
        if modules != self.modules or modules[0].weight.data_ptr() != self.pointers[0]:  # a .to() moves them all
            return False
        if torch.is_grad_enabled() and modules[0].weight.requires_grad:
            return False
        for m in modules:
            if m._forward_hooks or m._forward_pre_hooks:
                return False
        return True

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return linear(x, self.weight, self.bias).split_with_sizes(self.sizes, dim=-1)


def unfuse_projections(model: nn.Module) -> None:
    """Give every fused projection its own weight tensor again (a copy each). torch.compile needs this:
    parameters that are views of one tensor are aliased graph inputs, which it recompiles for; inside a
    compiled graph inductor fuses the separate products anyway."""
    for module in model.modules():
        fused = module.__dict__.pop("fused_projection", None)
        if fused is None:
            continue
        with torch.no_grad():
            for m in fused.modules:
                m.weight.data = m.weight.data.clone()
                if m.bias is not None:
                    m.bias.data = m.bias.data.clone()


def _fuse_projections(model: nn.Module) -> None:
    for module in model.modules():
        for group in getattr(type(module), "fusable_projections", ()):
            parts = tuple(getattr(module, name) for name in group)
            current = getattr(parts[0], "fused_projection", None)
            if current is not None and current.serves(parts):
                continue
            first = parts[0]
            if all(isinstance(p, nn.Linear) and p.in_features == first.in_features and p.weight.dtype == first.weight.dtype
                   and p.weight.device == first.weight.device for p in parts):
                with torch.no_grad():
                    parts[0].fused_projection = FusedProjection(parts)


register_attention("sdpa_inference", sdpa_inference_attention)
_ATTENTION_SWAPS = {"sdpa": "sdpa_inference"}


def optimize_for_inference(model: nn.Module, fuse_projections: bool = True) -> nn.Module:
    """Swap in the inference kernels (in place; idempotent). Returns the model."""
    for module in model.modules():
        if type(module) is nn.Linear:
            module.__class__ = InferenceLinear
    if fuse_projections:
        _fuse_projections(model)
    config = getattr(model, "config", None)
    if config is not None and config.attn_implementation in _ATTENTION_SWAPS:
        config.attn_implementation = _ATTENTION_SWAPS[config.attn_implementation]
    return model


def undo_inference_optimizations(model: nn.Module) -> nn.Module:
    """Put back the plain modules and backend (in place; idempotent). Returns the model."""
    for module in model.modules():
        if type(module) is InferenceLinear:
            module.__class__ = nn.Linear
        if "fused_projection" in module.__dict__:  # the weights stay slices of one tensor: no copy needed
            del module.fused_projection
    config = getattr(model, "config", None)
    originals = {swapped: plain for plain, swapped in _ATTENTION_SWAPS.items()}
    if config is not None and config.attn_implementation in originals:
        config.attn_implementation = originals[config.attn_implementation]
    return model
