"""The torch modules that get exported: a model's forward with positional tensor inputs and a flat
tuple of named outputs, plus the decoder's cache as plain tensors in and out."""

from __future__ import annotations

import torch
from torch import nn

from ..cache import Cache


class EncoderGraph(nn.Module):
    """model(**inputs) -> the task's output tensors, in `output_names` order."""

    def __init__(self, model, input_names: tuple[str, ...], output_names: tuple[str, ...]):
        super().__init__()
        self.model = model
        self.input_names = tuple(input_names)
        self.output_names = tuple(output_names)
        axes = {0: "batch", 1: "sequence"}
        self.dynamic_axes = {name: dict(axes) for name in self.input_names}
        self.output_axes = {name: dict(axes) if name != "logits" or _per_token(model) else {0: "batch"}
                            for name in self.output_names}

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(**dict(zip(self.input_names, inputs)), return_dict=True)
        return tuple(out[name] for name in self.output_names)


def _per_token(model) -> bool:
    return not type(model).__name__.endswith("ForSequenceClassification")


def past_names(num_layers: int, prefix: str = "past_key_values") -> list[str]:
    return [f"{prefix}.{i}.{kind}" for i in range(num_layers) for kind in ("key", "value")]


def past_shapes(config, batch: int, past: int) -> list[tuple[str, tuple[int, ...]]]:
    """(name, (B, kv_heads, P, head_dim)) of every past key/value input."""
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return [(name, (batch, heads, past, head_dim)) for name in past_names(config.num_hidden_layers)]


class ConcatCache(Cache):
    """The cache a traced decoder step sees: each layer's past keys/values (B, kv, P, hs) with the
    new ones concatenated; no spare room and no Python-side lengths, so P stays a symbolic axis."""

    def __init__(self, past: list[tuple[torch.Tensor, torch.Tensor]]):
        super().__init__()
        self.past = past
        self.present: list[tuple[torch.Tensor, torch.Tensor]] = []

    def update(self, k, v, layer_idx, cache_position=None):
        pk, pv = self.past[layer_idx]
        k, v = torch.cat([pk, k], dim=2), torch.cat([pv, v], dim=2)
        self.present.append((k, v))
        return k, v

    def get_seq_length(self, layer_idx: int = 0):
        return self.past[layer_idx][0].shape[2]

    def __len__(self) -> int:
        return len(self.past)


class DecoderGraph(nn.Module):
    """One decoding step, merged for the first (P = 0) and later steps:
    (input_ids, attention_mask (B, P+T), position_ids, past k/v ...) -> (logits, present k/v ...)."""

    def __init__(self, model, text_inputs: tuple[str, ...]):
        super().__init__()
        self.model = model
        n = model.config.num_hidden_layers
        self.text_inputs = tuple(text_inputs)
        self.input_names = self.text_inputs + tuple(past_names(n))
        self.output_names = ("logits", *past_names(n, "present"))
        past_axes = {0: "batch", 2: "past_sequence"}
        self.dynamic_axes = {name: {0: "batch", 1: "sequence"} for name in self.text_inputs}
        self.dynamic_axes["attention_mask"] = {0: "batch", 1: "total_sequence"}
        self.dynamic_axes.update({name: dict(past_axes) for name in past_names(n)})
        self.output_axes = {"logits": {0: "batch", 1: "sequence"},
                            **{name: {0: "batch", 2: "total_sequence"} for name in past_names(n, "present")}}

    def forward(self, *inputs: torch.Tensor):  # one varargs signature for both graphs: see onnx._run_exporter
        input_ids, attention_mask, position_ids, *past = inputs
        cache = ConcatCache([(past[i], past[i + 1]) for i in range(0, len(past), 2)])
        P, T = past[0].shape[2], input_ids.shape[1]
        # cache_position given: the mask is built from tensors, with no branch on the mask's values
        cache_position = torch.arange(T, device=input_ids.device) + P
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         past_key_values=cache, use_cache=True, cache_position=cache_position, return_dict=True)
        return (out.logits, *(t for kv in cache.present for t in kv))
