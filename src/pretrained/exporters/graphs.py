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
        # images (B, C, H, W): only the batch varies, H and W are the config's; with captions (CLIP) the images
        # and the captions are two batches
        pair = "pixel_values" in self.input_names and len(self.input_names) > 1
        if pair:
            axes = {0: "text_batch", 1: "sequence"}
        self.dynamic_axes = {name: {0: "image_batch" if pair else "batch"} if name == "pixel_values" else dict(axes)
                             for name in self.input_names}
        self.output_axes = {name: dict(axes) if name != "logits" or _per_token(model) else {0: "batch"}
                            for name in self.output_names}

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(**dict(zip(self.input_names, inputs)), return_dict=True)
        return tuple(out[name] for name in self.output_names)


def _per_token(model) -> bool:
    return not type(model).__name__.endswith(("ForSequenceClassification", "ForImageClassification"))


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


def cross_names(num_layers: int) -> list[str]:
    return [f"cross.{i}.{kind}" for i in range(num_layers) for kind in ("key", "value")]


class ListCache(Cache):
    """Keys/values kept whole as given: cross-attention's (projected from the encoder output once), or
    a first step's self-attention (no past to concatenate with)."""

    def __init__(self, layers=()):
        super().__init__()
        self.kv = list(layers)

    def update(self, k, v, layer_idx, cache_position=None):
        self.kv.append((k, v))
        return k, v

    def get_seq_length(self, layer_idx: int = 0):
        return self.kv[layer_idx][0].shape[2] if layer_idx < len(self.kv) else 0

    def __len__(self) -> int:
        return len(self.kv)

    def __getitem__(self, layer_idx: int):
        return self.kv[layer_idx]


def _pairs(flat) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]


def _first_decoder_step(model, encoder_inputs: dict):
    """Run a seq2seq model's encoder on `encoder_inputs` (input_ids and attention_mask, or Whisper's
    input_features), then its decoder one step from token 0 with a fresh cache; -> (encoder outputs, cache).
    The cache's cross part then holds every decoder layer's projected encoder keys/values."""
    from ..cache import EncoderDecoderCache

    encoder_outputs = model.get_encoder()(**encoder_inputs, return_dict=True)
    hidden = encoder_outputs.last_hidden_state
    cache = EncoderDecoderCache(ListCache(), ListCache())
    model(encoder_outputs=encoder_outputs, attention_mask=encoder_inputs.get("attention_mask"), past_key_values=cache,
          use_cache=True, decoder_input_ids=hidden.new_zeros((hidden.shape[0], 1), dtype=torch.long), return_dict=True)
    return encoder_outputs, cache


def decoder_geometry(model) -> tuple[int, int, int]:
    """(decoder layers, heads, head_dim) of a seq2seq model, read from the cache of one real step, so no
    family's config names are needed."""
    from .onnx import sample_inputs

    speech = getattr(model, "main_input_name", "input_ids") == "input_features"  # Whisper: one window of features
    names = ("input_features",) if speech else ("input_ids", "attention_mask")
    inputs = sample_inputs(model.config, "feature-extraction", names, 1, 2)
    with torch.no_grad():
        _, cache = _first_decoder_step(model, inputs)
    k = cache.cross_attention_cache[0][0]  # (1, H, S, D)
    return len(cache.cross_attention_cache), k.shape[1], k.shape[3]


class Seq2SeqEncoderGraph(nn.Module):
    """(input_ids, attention_mask) or Whisper's (input_features) -> (last_hidden_state, cross.{i}.key/value ...):
    the encoder, plus each decoder layer's cross-attention keys/values (B, H, S, D), projected here once per
    prompt so the decoder graph never recomputes them. (The one decoder step that projects them has no other
    output; the exporter's optimiser drops the rest of it.)"""

    def __init__(self, model, num_layers: int, input_names: tuple[str, ...] = ("input_ids", "attention_mask")):
        super().__init__()
        self.model = model
        self.input_names = tuple(input_names)
        self.output_names = ("last_hidden_state", *cross_names(num_layers))
        # features (B, mel bins, frames): a full window, only the batch varies
        self.dynamic_axes = {name: {0: "batch"} if name == "input_features" else {0: "batch", 1: "encoder_sequence"}
                             for name in self.input_names}
        self.output_axes = {"last_hidden_state": {0: "batch", 1: "encoder_sequence"},
                            **{name: {0: "batch", 2: "encoder_sequence"} for name in cross_names(num_layers)}}

    def forward(self, *inputs: torch.Tensor):  # varargs, as every graph: see onnx._run_exporter
        encoder_outputs, cache = _first_decoder_step(self.model, dict(zip(self.input_names, inputs)))
        return (encoder_outputs.last_hidden_state, *(t for kv in cache.cross_attention_cache.kv for t in kv))


class Seq2SeqDecoderGraph(nn.Module):
    """One decoder step, merged for the first (P = 0) and later steps: (decoder_input_ids, decoder_attention_mask
    (B, P+T), encoder_attention_mask (B, S), past k/v (B, H, P, D) ..., cross k/v (B, H, S, D) ...) ->
    (logits, present k/v ...)."""

    def __init__(self, model, geometry: tuple[int, int, int]):
        super().__init__()
        self.model = model
        num_layers, self.heads, self.head_dim = geometry
        self.num_layers = num_layers
        self.input_names = ("decoder_input_ids", "decoder_attention_mask", "encoder_attention_mask",
                            *past_names(num_layers), *cross_names(num_layers))
        self.output_names = ("logits", *past_names(num_layers, "present"))
        self.dynamic_axes = {"decoder_input_ids": {0: "batch", 1: "sequence"},
                             "decoder_attention_mask": {0: "batch", 1: "total_sequence"},
                             "encoder_attention_mask": {0: "batch", 1: "encoder_sequence"},
                             **{name: {0: "batch", 2: "past_sequence"} for name in past_names(num_layers)},
                             **{name: {0: "batch", 2: "encoder_sequence"} for name in cross_names(num_layers)}}
        self.output_axes = {"logits": {0: "batch", 1: "sequence"},
                            **{name: {0: "batch", 2: "total_sequence"} for name in past_names(num_layers, "present")}}

    def forward(self, *inputs: torch.Tensor):
        from ..cache import EncoderDecoderCache
        from ..outputs import BaseModelOutput

        ids, mask, encoder_mask, *kv = inputs
        n = 2 * self.num_layers
        self_cache = ConcatCache(_pairs(kv[:n]))
        cache = EncoderDecoderCache(self_cache, ListCache(_pairs(kv[n:])))
        P, T = kv[0].shape[2], ids.shape[1]
        B, S = encoder_mask.shape
        # never read: cross-attention takes its keys/values from the cache; the decoder needs a tensor there
        encoder_outputs = BaseModelOutput(last_hidden_state=kv[n].new_zeros(B, S, 1))
        out = self.model(encoder_outputs=encoder_outputs, attention_mask=encoder_mask, decoder_input_ids=ids,
                         decoder_attention_mask=mask, past_key_values=cache, use_cache=True,
                         cache_position=torch.arange(T, device=ids.device) + P, return_dict=True)
        return (out.logits, *(t for kv in self_cache.present for t in kv))

    def sample(self, batch: int, length: int, past: int, seed: int) -> dict:
        """Random inputs of the given shapes (an encoder of length + 3 tokens); the encoder mask's second
        row is left-padded by two."""
        g = torch.Generator().manual_seed(seed)
        vocab, encoder_length, heads, head_dim = self.model.config.vocab_size, length + 3, self.heads, self.head_dim
        encoder_mask = torch.ones(batch, encoder_length, dtype=torch.long)
        if batch > 1:
            encoder_mask[1, :2] = 0
        out = {"decoder_input_ids": torch.randint(3, vocab, (batch, length), generator=g),
               "decoder_attention_mask": torch.ones(batch, past + length, dtype=torch.long),
               "encoder_attention_mask": encoder_mask}
        for name in past_names(self.num_layers):
            out[name] = torch.randn(batch, heads, past, head_dim, generator=g)
        for name in cross_names(self.num_layers):
            out[name] = torch.randn(batch, heads, encoder_length, head_dim, generator=g)
        return out
