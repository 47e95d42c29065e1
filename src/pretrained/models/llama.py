"""The Llama family: Llama, Mistral (sliding-window attention), Qwen2 (q/k/v bias).

Pre-norm decoder blocks (RMSNorm), rotary position embeddings (with rope_scaling variants),
grouped-query attention, SwiGLU MLP. Module paths equal the checkpoint keys (`model.norm`,
`lm_head`) except two fused projections, one matmul each per token: `qkv_proj` (checkpoint q_proj,
k_proj, v_proj) and `gate_up_proj` (gate_proj, up_proj), concatenated on load and split on save by
`checkpoint_rules`. The three families differ only in config defaults, so they share every module here.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from .. import conversion
from ..attention import attention_function
from ..configuration import PretrainedConfig
from ..errors import ConfigError
from ..heads import CausalLMHead, DecoderSequenceClassificationHead
from ..layers import Linear, RMSNorm, RotaryEmbedding, get_activation, rope_parameters, rotate, signed_sin
from ..masks import causal_mask
from ..cache import forward_cache
from ..modeling import PreTrainedModel, output_flags
from ..outputs import BaseModelOutputWithPast, finish


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

    def layer_windows(self) -> list[int | None]:
        """Sliding window of each layer (None: full attention)."""
        return [self.sliding_window] * self.num_hidden_layers


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
    layer_types: list | None = None

    def layer_windows(self) -> list[int | None]:
        window = self.sliding_window if self.use_sliding_window else None
        types = self.layer_types or ["sliding_attention" if window is not None and i >= self.max_window_layers
                                     else "full_attention" for i in range(self.num_hidden_layers)]
        return [window if t == "sliding_attention" else None for t in types]


class LlamaAttention(nn.Module):
    """q, k and v come from one fused matmul (`qkv_proj`); the checkpoint keeps q_proj/k_proj/v_proj
    (see `LlamaPreTrainedModel.checkpoint_rules`)."""

    def __init__(self, config, layer_idx: int):
        super().__init__()
        self.layer_idx, self.config = layer_idx, config
        self.head_dim = config.head_dim
        qkv_bias = config.attention_bias if config.qkv_bias is None else config.qkv_bias
        H, Hkv, C = config.num_attention_heads, config.num_key_value_heads, config.hidden_size
        self.num_heads, self.num_kv_heads = H, Hkv
        self.qkv_proj = Linear(C, (H + 2 * Hkv) * self.head_dim, bias=qkv_bias)
        self.o_proj = Linear(H * self.head_dim, C, bias=config.attention_bias)

    def forward(self, x, cos, sin, mask, cache=None, cache_position=None, output_attentions=False):
        """cos, sin: (B, 1, T, D), sin with its first half negated (`layers.signed_sin`)."""
        B, T, _ = x.shape
        H, Hkv = self.num_heads, self.num_kv_heads
        qkv = self.qkv_proj(x).view(B, T, -1, self.head_dim).transpose(1, 2)  # (B, H + 2 Hkv, T, D)
        q, k = rotate(qkv[:, :H + Hkv], cos, sin).split([H, Hkv], dim=1)  # (B, H, T, D), (B, Hkv, T, D)
        v = qkv[:, H + Hkv:]
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx, cache_position)  # (B, Hkv, S, D)
        attend = attention_function(self.config.attn_implementation, output_attentions)
        dropout = self.config.attention_dropout if self.training else 0.0
        y, weights = attend(q, k, v, mask, scale=self.head_dim**-0.5, dropout=dropout, is_causal=mask is None)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1)), weights


class LlamaMLP(nn.Module):
    """SwiGLU; gate and up projections are one fused matmul (`gate_up_proj`)."""

    def __init__(self, config):
        super().__init__()
        C, F_, bias = config.hidden_size, config.intermediate_size, config.mlp_bias
        self.gate_up_proj = Linear(C, 2 * F_, bias=bias)
        self.down_proj = Linear(F_, C, bias=bias)
        self.act = get_activation(config.hidden_act)

    def forward(self, x):
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)  # 2 x (B, T, F)
        return self.down_proj(self.act(gate) * up)


class LlamaDecoderLayer(nn.Module):
    def __init__(self, config, layer_idx: int):
        super().__init__()
        self.self_attn = LlamaAttention(config, layer_idx)
        self.mlp = LlamaMLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, x, cos, sin, mask, cache=None, cache_position=None, output_attentions=False):
        y, weights = self.self_attn(self.input_layernorm(x), cos, sin, mask, cache, cache_position, output_attentions)
        x = x + y
        return x + self.mlp(self.post_attention_layernorm(x)), weights


class LlamaPreTrainedModel(PreTrainedModel):
    config_class = LlamaConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _keys_to_ignore_on_load_unexpected = (r"rotary_emb\.inv_freq$",)

    @property
    def checkpoint_rules(self) -> tuple:
        """Checkpoints store q/k/v and gate/up separately; the model runs them as one matmul each."""
        c = self.config
        q, kv = c.num_attention_heads * c.head_dim, c.num_key_value_heads * c.head_dim
        return (conversion.Fuse(("q_proj", "k_proj", "v_proj"), "qkv_proj", (q, kv, kv)),
                conversion.Fuse(("gate_proj", "up_proj"), "gate_up_proj", (c.intermediate_size,) * 2))

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, RMSNorm):
            module.weight.data.fill_(1.0)


class LlamaModel(LlamaPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.layers = nn.ModuleList(LlamaDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(config, config.head_dim)
        self.windows = config.layer_windows()
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, cache_position=None, **_):
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        config = self.config
        output_attentions, output_hidden_states = output_flags(config, output_attentions, output_hidden_states)
        use_cache = (config.use_cache and not self.training) if use_cache is None else use_cache
        x = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, C)
        B, T = x.shape[:2]
        cache, past = forward_cache(past_key_values, use_cache, cache_position)
        if position_ids is None:
            position_ids = (torch.arange(past, past + T, device=x.device) if cache_position is None
                            else cache_position)[None].expand(B, -1)
        S = cache.key_length(T) if cache is not None else T
        masks = {w: causal_mask(attention_mask, T, S, x.dtype, x.device, w, past, cache_position)
                 for w in set(self.windows)}
        cos, sin = self.rotary_emb(position_ids, x.dtype)  # (B, T, D), shared by every layer
        cos, sin = cos[:, None], signed_sin(sin)[:, None]  # (B, 1, T, D)

        hidden_states, attentions = () if output_hidden_states else None, () if output_attentions else None
        for layer, window in zip(self.layers, self.windows):
            if output_hidden_states:
                hidden_states += (x,)
            x, weights = layer(x, cos, sin, masks[window], cache, cache_position, output_attentions)
            if output_attentions:
                attentions += (weights,)
        x = self.norm(x)
        if output_hidden_states:
            hidden_states += (x,)
        return finish(BaseModelOutputWithPast(x, cache if use_cache else None, hidden_states, attentions),
                      config.return_dict if return_dict is None else return_dict)


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
