"""Gemma 3 text decoder (Gemma3ForCausalLM, model_type "gemma3_text") on the Llama kit.

What differs from Llama: embeddings scaled by sqrt(hidden_size) inside the embedding module; every
RMSNorm scales by (1 + weight); norms after attention and after the MLP as well as before; per-head
q/k norms; queries scaled by query_pre_attn_scalar**-0.5; sliding-window layers interleaved with
full-attention ones (`layer_types`), each type with its own rope base (`rope_parameters` nested by
type); GeLU (tanh) MLP; optional soft-capping of the final logits (CausalLMHead) and of the attention
scores. Module paths equal the checkpoint keys.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from ..configuration import PretrainedConfig
from ..errors import ConfigError, UnsupportedOptionError
from ..heads import CausalLMHead, DecoderSequenceClassificationHead
from ..layers import RotaryEmbedding, UnitOffsetRMSNorm, rope_parameters, signed_sin
from .llama import LAYER_TYPES, LlamaAttention, LlamaConfig, LlamaDecoderLayer, LlamaModel, LlamaPreTrainedModel


class Gemma3TextConfig(PretrainedConfig):
    model_type = "gemma3_text"
    attribute_map = {"hidden_act": "hidden_activation"}  # the name the Llama kit's MLP reads
    qkv_bias: ClassVar[bool | None] = None  # q/k/v/o biases all follow attention_bias
    mlp_bias: ClassVar[bool] = False

    vocab_size: int = 262208
    hidden_size: int = 2304
    intermediate_size: int = 9216
    num_hidden_layers: int = 26
    num_attention_heads: int = 8
    num_key_value_heads: int = 4
    head_dim: int = 256
    hidden_activation: str = "gelu_pytorch_tanh"
    max_position_embeddings: int = 131072
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-6
    use_cache: bool = True
    pad_token_id: int | None = 0
    eos_token_id: int | list | None = 1
    bos_token_id: int | None = 2
    tie_word_embeddings: bool = True
    rope_parameters: dict | None = None
    attention_bias: bool = False
    attention_dropout: float = 0.0
    query_pre_attn_scalar: float = 256
    sliding_window: int | None = 4096
    layer_types: list | None = None
    final_logit_softcapping: float | None = None
    attn_logit_softcapping: float | None = None
    use_bidirectional_attention: bool | None = False

    # the Llama kit's per-layer attention types and windows, unchanged
    validate_layer_types = LlamaConfig.validate_layer_types
    layer_windows = LlamaConfig.layer_windows
    rotary_dim = LlamaConfig.rotary_dim

    def validate(self) -> None:
        super().validate()
        if self.use_bidirectional_attention:
            raise UnsupportedOptionError("Gemma3TextConfig.use_bidirectional_attention=True (EmbeddingGemma's encoder "
                                         "mode) is not implemented; only the causal decoder is")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(f"Gemma3TextConfig.num_attention_heads ({self.num_attention_heads}) must be a multiple "
                              f"of num_key_value_heads ({self.num_key_value_heads})")
        if self.layer_types is None:  # older config.json: every `sliding_window_pattern`-th layer is global
            pattern = self.__dict__.pop("sliding_window_pattern", 6)
            self.layer_types = ["sliding_attention" if (i + 1) % pattern else "full_attention"
                                for i in range(self.num_hidden_layers)]
        self.validate_layer_types()
        self._nest_rope_parameters()
        for kind in LAYER_TYPES:
            rope_parameters(self, kind)  # raises on an unknown rope type

    def _nest_rope_parameters(self) -> None:
        """rope_parameters as {layer type: {rope_type, rope_theta, ...}}. Older config.json files give
        rope_theta (global layers), rope_local_base_freq (sliding ones) and rope_scaling (global only)."""
        params = self.rope_parameters or {}
        if params and not set(params) <= set(LAYER_TYPES):
            raise ConfigError(f"Gemma3TextConfig.rope_parameters must be nested by layer type {LAYER_TYPES}, "
                              f"got keys {sorted(params)}")
        legacy = self.__dict__
        full = dict(params.get("full_attention") or {"rope_type": "default"})
        if legacy.get("rope_scaling"):
            full.update(legacy.pop("rope_scaling"))
        full.setdefault("rope_theta", legacy.pop("rope_theta", 1_000_000.0))
        sliding = dict(params.get("sliding_attention") or {"rope_type": "default"})
        sliding.setdefault("rope_theta", legacy.pop("rope_local_base_freq", 10_000.0))
        legacy.pop("rope_scaling", None)
        self.rope_parameters = {"sliding_attention": sliding, "full_attention": full}


class Gemma3TextScaledWordEmbedding(nn.Embedding):
    """Embeddings times sqrt(hidden_size), in the weights' dtype. Inside the module, as in the reference:
    `inputs_embeds` passed to the model are used as given."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None, embed_scale: float):
        super().__init__(num_embeddings, embedding_dim, padding_idx)
        self.embed_scale = embed_scale

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return super().forward(input_ids) * torch.tensor(self.embed_scale, dtype=self.weight.dtype)


class Gemma3Attention(LlamaAttention):
    """(1 + w) RMSNorm over each head's queries and keys; scores scaled by query_pre_attn_scalar**-0.5."""

    def __init__(self, config, layer_idx: int):
        super().__init__(config, layer_idx)
        self.q_norm = UnitOffsetRMSNorm(self.head_dim, eps=config.rms_norm_eps)
        self.k_norm = UnitOffsetRMSNorm(self.head_dim, eps=config.rms_norm_eps)
        self.scaling = config.query_pre_attn_scalar**-0.5
        # Transformers' Gemma 3 reads this field but never applies it (released checkpoints leave it null)
        self.softcap = config.attn_logit_softcapping

    def normalize_qk(self, q, k):
        return self.q_norm(q), self.k_norm(k)


class Gemma3DecoderLayer(LlamaDecoderLayer):
    """Sandwich norms: x + post_norm(attn(pre_norm(x))), then the same around the MLP."""

    attention_class = Gemma3Attention

    def __init__(self, config, layer_idx: int):
        super().__init__(config, layer_idx)
        C, eps = config.hidden_size, config.rms_norm_eps
        self.input_layernorm = UnitOffsetRMSNorm(C, eps=eps)
        self.post_attention_layernorm = UnitOffsetRMSNorm(C, eps=eps)
        self.pre_feedforward_layernorm = UnitOffsetRMSNorm(C, eps=eps)
        self.post_feedforward_layernorm = UnitOffsetRMSNorm(C, eps=eps)

    def forward(self, x, rope: dict, masks: dict, cache=None, cache_position=None, output_attentions=False):
        cos, sin = rope[self.attention_type]
        y, weights = self.self_attn(self.input_layernorm(x), cos, sin, masks[self.attention_type], cache,
                                    cache_position, output_attentions)
        x = x + self.post_attention_layernorm(y)
        return x + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(x))), weights


class Gemma3PreTrainedModel(LlamaPreTrainedModel):
    config_class = Gemma3TextConfig

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, UnitOffsetRMSNorm):  # (1 + w): zero is the identity scale
            module.weight.data.zero_()


class Gemma3TextModel(Gemma3PreTrainedModel, LlamaModel):
    layer_class = Gemma3DecoderLayer

    def __init__(self, config):
        super().__init__(config)
        C = config.hidden_size
        self.embed_tokens = Gemma3TextScaledWordEmbedding(config.vocab_size, C, config.pad_token_id, C**0.5)
        self.norm = UnitOffsetRMSNorm(C, eps=config.rms_norm_eps)
        # one table per attention type: global layers and sliding ones rotate with different bases
        self.rotary_emb = nn.ModuleDict({kind: RotaryEmbedding(config, config.head_dim, kind) for kind in LAYER_TYPES})
        self.post_init()

    def rotary_tables(self, position_ids, dtype) -> dict:
        tables = {}
        for kind in set(self.config.layer_types):
            cos, sin = self.rotary_emb[kind](position_ids, dtype)  # (B, T, D)
            tables[kind] = cos[:, None], signed_sin(sin)[:, None]
        return tables


class Gemma3ForCausalLM(CausalLMHead, Gemma3PreTrainedModel):
    base_model_class = Gemma3TextModel
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}


Gemma3TextForCausalLM = Gemma3ForCausalLM  # the registry's name (prefix "Gemma3Text"); Transformers' is above


class Gemma3TextForSequenceClassification(DecoderSequenceClassificationHead, Gemma3PreTrainedModel):
    base_model_class = Gemma3TextModel
