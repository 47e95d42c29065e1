"""The Llama family: Llama, Mistral (sliding-window attention), Qwen2 (q/k/v bias), Qwen3 (per-head q/k
norms), and the decoder kit later families build on.

Pre-norm decoder blocks (RMSNorm), rotary position embeddings (with rope_scaling variants),
grouped-query attention, SwiGLU MLP. Module paths equal the checkpoint keys (`model.layers.0.self_attn.q_proj`,
`model.norm`, `lm_head`). The three families differ only in config defaults, so they share every
module here. A new family subclasses what it changes: the attention (`normalize_qk`, `scaling`,
`softcap`), the MLP, the layer's wiring (`LlamaDecoderLayer.attention_class` / `mlp_class` /
`forward`), the model's `embed_scale` or `rotary_tables` (a rope base per layer type); per-layer
attention types come from `config.layer_types`, their windows from `config.layer_windows()`.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from ..attention import attention_function
from ..configuration import PretrainedConfig
from ..errors import ConfigError, InputError
from ..heads import (CausalLMHead, DecoderSequenceClassificationHead, DecoderTokenClassificationHead,
                     QuestionAnsweringHead)
from ..layers import (RMSNorm, RotaryEmbedding, act_and_mul, get_activation, projections, rope_parameters, rotate,
                      signed_sin)
from ..masks import causal_mask
from ..cache import forward_cache
from ..modeling import PreTrainedModel, output_flags
from ..outputs import BaseModelOutputWithPast, finish
from ..stack import recomputes, run_layers


LAYER_TYPES = ("full_attention", "sliding_attention")


class LlamaConfig(PretrainedConfig):
    model_type = "llama"
    qkv_bias: ClassVar[bool | None] = None  # None: follow attention_bias (Qwen2 always has q/k/v bias)

    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    hidden_act: str = "silu"
    max_position_embeddings: int = 2048
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-6
    use_cache: bool = True
    pad_token_id: int | None = None
    bos_token_id: int | None = 1
    eos_token_id: int | list | None = 2
    tie_word_embeddings: bool = False
    rope_theta: float = 10000.0
    rope_parameters: dict | None = None
    attention_bias: bool = False
    attention_dropout: float = 0.0
    mlp_bias: bool = False
    sliding_window: int | None = None
    layer_types: list | None = None

    def validate(self) -> None:
        super().validate()
        if self.num_key_value_heads is None:  # derived defaults, filled once
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(f"{type(self).__name__}.num_attention_heads ({self.num_attention_heads}) must be a multiple "
                              f"of num_key_value_heads ({self.num_key_value_heads})")
        rope_parameters(self)  # raises on an unknown rope type
        self.validate_layer_types()

    def validate_layer_types(self) -> None:
        """Fill `layer_types` (one "full_attention" / "sliding_attention" per layer) when config.json has none."""
        if self.layer_types is None:
            kind = "full_attention" if self.sliding_window is None else "sliding_attention"
            self.layer_types = [kind] * self.num_hidden_layers
        if len(self.layer_types) != self.num_hidden_layers or set(self.layer_types) - set(LAYER_TYPES):
            raise ConfigError(f"{type(self).__name__}.layer_types={self.layer_types!r}: expected "
                              f"{self.num_hidden_layers} entries, each one of {LAYER_TYPES}")

    def layer_windows(self) -> dict[str, int | None]:
        """Attention type -> sliding window (None: full attention)."""
        return {kind: self.sliding_window if kind == "sliding_attention" else None for kind in set(self.layer_types)}

    def rotary_dim(self) -> int:
        """Features of each head that rotate (Phi's partial rotary rotates a fraction of them)."""
        return int(self.head_dim * (getattr(self, "partial_rotary_factor", None) or 1.0))


class MistralConfig(LlamaConfig):
    model_type = "mistral"

    intermediate_size: int = 14336
    num_key_value_heads: int | None = 8
    max_position_embeddings: int = 4096 * 32
    sliding_window: int | None = 4096


class Qwen2Config(LlamaConfig):
    model_type = "qwen2"
    qkv_bias = True

    vocab_size: int = 151936
    intermediate_size: int = 22016
    max_position_embeddings: int = 32768
    bos_token_id: int | None = None
    eos_token_id: int | list | None = None
    use_sliding_window: bool = False
    sliding_window: int | None = None
    max_window_layers: int = 28

    def validate_layer_types(self) -> None:
        if self.layer_types is None:  # Qwen2: layers from max_window_layers on slide, when use_sliding_window
            self.layer_types = ["sliding_attention" if self.use_sliding_window and self.sliding_window is not None
                                and i >= self.max_window_layers else "full_attention"
                                for i in range(self.num_hidden_layers)]
        super().validate_layer_types()

    def layer_windows(self) -> dict[str, int | None]:
        window = self.sliding_window if self.use_sliding_window else None
        return {kind: window if kind == "sliding_attention" else None for kind in set(self.layer_types)}


class Qwen3Config(Qwen2Config):
    model_type = "qwen3"
    qkv_bias = None  # as attention_bias (False): Qwen3 dropped Qwen2's q/k/v bias

    vocab_size: int = 151936
    intermediate_size: int = 22016
    head_dim: int | None = 128


class LlamaAttention(nn.Module):
    """Grouped-query attention with rotary positions. Variation points for the families built on it:
    `normalize_qk` (Qwen3's per-head q/k norms), `scaling`, `softcap` (Gemma), and the layer's
    `sliding_window`, chosen per layer by `config.layer_types`."""

    def __init__(self, config, layer_idx: int):
        super().__init__()
        self.layer_idx, self.config = layer_idx, config
        self.head_dim = config.head_dim
        qkv_bias = config.attention_bias if config.qkv_bias is None else config.qkv_bias
        H, Hkv, C, D = config.num_attention_heads, config.num_key_value_heads, config.hidden_size, config.head_dim
        self.num_heads, self.num_kv_heads = H, Hkv
        self.q_proj = nn.Linear(C, H * D, bias=qkv_bias)
        self.k_proj = nn.Linear(C, Hkv * D, bias=qkv_bias)
        self.v_proj = nn.Linear(C, Hkv * D, bias=qkv_bias)
        self.o_proj = nn.Linear(H * D, C, bias=config.attention_bias)
        self.scaling = D**-0.5
        self.softcap = None

    # pretrained.optimize may run these as one matmul at inference (see layers.projections)
    fusable_projections = (("q_proj", "k_proj", "v_proj"),)

    def normalize_qk(self, q, k):
        """q (B, H, T, D), k (B, Hkv, T, D) before rotation; Llama leaves them as they are."""
        return q, k

    def forward(self, x, cos, sin, mask, cache=None, cache_position=None, output_attentions=False):
        """cos, sin: (B, 1, T, rotary dim), sin with its first half negated (`layers.signed_sin`)."""
        B, T, _ = x.shape
        split = lambda t: t.view(B, T, -1, self.head_dim).transpose(1, 2)  # noqa: E731  (B, heads, T, D)
        q, k, v = projections(x, self.q_proj, self.k_proj, self.v_proj)
        q, k = self.normalize_qk(split(q), split(k))
        q, k, v = rotate(q, cos, sin), rotate(k, cos, sin), split(v)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx, cache_position)  # (B, Hkv, S, D)
        attend = attention_function(self.config.attn_implementation, output_attentions)
        dropout = self.config.attention_dropout if self.training else 0.0
        y, weights = attend(q, k, v, mask, scale=self.scaling, dropout=dropout, is_causal=mask is None,
                            softcap=self.softcap)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1)), weights


class LlamaMLP(nn.Module):
    """SwiGLU: down(act(gate(x)) * up(x))."""

    def __init__(self, config):
        super().__init__()
        C, F_, bias = config.hidden_size, config.intermediate_size, config.mlp_bias
        self.gate_proj = nn.Linear(C, F_, bias=bias)
        self.up_proj = nn.Linear(C, F_, bias=bias)
        self.down_proj = nn.Linear(F_, C, bias=bias)
        self.act = get_activation(config.hidden_act)

    fusable_projections = (("gate_proj", "up_proj"),)

    def forward(self, x):
        gate, up = projections(x, self.gate_proj, self.up_proj)
        return self.down_proj(act_and_mul(self.act, gate, up))


class LlamaDecoderLayer(nn.Module):
    """Pre-norm block. A family that changes a part sets `attention_class` / `mlp_class`; one that
    changes the wiring (Gemma's norms after attention and MLP too) overrides `forward`."""

    attention_class = LlamaAttention
    mlp_class = LlamaMLP

    def __init__(self, config, layer_idx: int):
        super().__init__()
        self.attention_type = config.layer_types[layer_idx]
        self.self_attn = self.attention_class(config, layer_idx)
        self.mlp = self.mlp_class(config)
        self.input_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, x, rope: dict, masks: dict, cache=None, cache_position=None, output_attentions=False):
        """rope: attention type -> (cos, sin); masks: attention type -> mask (None: causal)."""
        cos, sin = rope[self.attention_type]
        y, weights = self.self_attn(self.input_layernorm(x), cos, sin, masks[self.attention_type], cache,
                                    cache_position, output_attentions)
        x = x + y
        return x + self.mlp(self.post_attention_layernorm(x)), weights


class LlamaPreTrainedModel(PreTrainedModel):
    config_class = LlamaConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _keys_to_ignore_on_load_unexpected = (r"rotary_emb\.inv_freq$",)

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, RMSNorm):
            module.weight.data.fill_(1.0)


class LlamaModel(LlamaPreTrainedModel):
    layer_class = LlamaDecoderLayer
    output_class = BaseModelOutputWithPast
    routes = False  # sparse MoE layers (Mixtral) also return router logits, collected with output_router_logits

    def __init__(self, config):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.layers = nn.ModuleList(self.layer_class(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(config, config.rotary_dim())
        self.embed_scale = None  # Gemma multiplies the embeddings by sqrt(hidden_size)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    def rotary_tables(self, position_ids, dtype) -> dict:
        """Attention type -> (cos, sin) of shape (B, 1, T, rotary dim), sin signed for `rotate`. One
        table for every layer here; a family with a rope base per layer type returns one per type."""
        cos, sin = self.rotary_emb(position_ids, dtype)  # (B, T, D)
        table = cos[:, None], signed_sin(sin)[:, None]
        return {kind: table for kind in set(self.config.layer_types)}

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                output_router_logits=None, return_dict=None, cache_position=None, **_):
        if (input_ids is None) == (inputs_embeds is None):
            raise InputError("pass exactly one of input_ids or inputs_embeds")
        config = self.config
        output_attentions, output_hidden_states = output_flags(config, output_attentions, output_hidden_states)
        routed = self.routes and (config.output_router_logits if output_router_logits is None else output_router_logits)
        use_cache = (config.use_cache and not self.training) if use_cache is None else use_cache and not recomputes(self)
        x = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, C)
        if self.embed_scale is not None:
            x = x * torch.tensor(self.embed_scale, dtype=x.dtype)
        B, T = x.shape[:2]
        cache, past = forward_cache(past_key_values, use_cache, cache_position)
        if position_ids is None:
            position_ids = (torch.arange(past, past + T, device=x.device) if cache_position is None
                            else cache_position)[None].expand(B, -1)
        S = cache.key_length(T) if cache is not None else T
        windows = config.layer_windows()
        masks = {kind: causal_mask(attention_mask, T, S, x.dtype, x.device, windows[kind], past, cache_position)
                 for kind in windows}
        router_logits = {"router_logits": []} if routed else {}  # filled by each sparse layer
        out = run_layers(self, self.layers, x, self.rotary_tables(position_ids, x.dtype), masks, cache,
                         cache_position, output_attentions=output_attentions,
                         output_hidden_states=output_hidden_states, **router_logits)
        x = self.norm(out.last_hidden_state)
        hidden_states = out.hidden_states + (x,) if output_hidden_states else None
        fields = (x, cache if use_cache else None, hidden_states, out.attentions)
        if self.routes:
            fields += (tuple(router_logits["router_logits"]) if routed else None,)
        return finish(self.output_class(*fields), config.return_dict if return_dict is None else return_dict)


class LlamaForCausalLM(CausalLMHead, LlamaPreTrainedModel):
    base_model_class = LlamaModel
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}


class LlamaForSequenceClassification(DecoderSequenceClassificationHead, LlamaPreTrainedModel):
    base_model_class = LlamaModel


class MistralPreTrainedModel(LlamaPreTrainedModel):
    config_class = MistralConfig


class MistralModel(LlamaModel):
    config_class = MistralConfig


class MistralForCausalLM(LlamaForCausalLM):
    config_class = MistralConfig
    base_model_class = MistralModel


class MistralForSequenceClassification(LlamaForSequenceClassification):
    config_class = MistralConfig
    base_model_class = MistralModel


class Qwen2Model(LlamaModel):
    config_class = Qwen2Config


class Qwen2ForCausalLM(LlamaForCausalLM):
    config_class = Qwen2Config
    base_model_class = Qwen2Model


class Qwen2ForSequenceClassification(LlamaForSequenceClassification):
    config_class = Qwen2Config
    base_model_class = Qwen2Model


class Qwen3Attention(LlamaAttention):
    """RMSNorm over each head's query and key features before rotation."""

    def __init__(self, config, layer_idx: int):
        super().__init__(config, layer_idx)
        self.q_norm = RMSNorm(self.head_dim, eps=config.rms_norm_eps)
        self.k_norm = RMSNorm(self.head_dim, eps=config.rms_norm_eps)

    def normalize_qk(self, q, k):
        return self.q_norm(q), self.k_norm(k)


class Qwen3DecoderLayer(LlamaDecoderLayer):
    attention_class = Qwen3Attention


class Qwen3PreTrainedModel(LlamaPreTrainedModel):
    config_class = Qwen3Config


class Qwen3Model(LlamaModel):
    config_class = Qwen3Config
    layer_class = Qwen3DecoderLayer


class Qwen3ForCausalLM(LlamaForCausalLM):
    config_class = Qwen3Config
    base_model_class = Qwen3Model


class Qwen3ForSequenceClassification(LlamaForSequenceClassification):
    config_class = Qwen3Config
    base_model_class = Qwen3Model


class Qwen3ForTokenClassification(DecoderTokenClassificationHead, Qwen3PreTrainedModel):
    base_model_class = Qwen3Model


class Qwen3ForQuestionAnswering(QuestionAnsweringHead, Qwen3PreTrainedModel):
    base_model_class = Qwen3Model
    base_model_prefix = "transformer"  # Transformers' name for this head's base model
