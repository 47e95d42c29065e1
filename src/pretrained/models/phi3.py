"""Phi-3 (and Phi-3.5 / Phi-4-mini, which share the format) on the Llama kit.

What differs from Llama: the checkpoint itself fuses q/k/v into `qkv_proj` and gate/up into
`gate_up_proj`, so those modules are single Linears here and their outputs are split; residual
dropout (`resid_pdrop`) after attention and MLP; rotary may cover only the first
`partial_rotary_factor` of each head; LongRoPE scaling ("longrope", formerly "su": short / long
frequency factors, chosen by the sequence length, see layers.py).
"""

from __future__ import annotations

from torch import nn

from ..attention import attention_function
from ..heads import CausalLMHead, DecoderSequenceClassificationHead, DecoderTokenClassificationHead
from ..layers import act_and_mul, get_activation, rope_parameters, rotate
from .llama import LlamaConfig, LlamaDecoderLayer, LlamaModel, LlamaPreTrainedModel


class Phi3Config(LlamaConfig):
    model_type = "phi3"

    vocab_size: int = 32064
    hidden_size: int = 3072
    intermediate_size: int = 8192
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    resid_pdrop: float = 0.0
    max_position_embeddings: int = 4096
    original_max_position_embeddings: int = 4096
    rms_norm_eps: float = 1e-5
    bos_token_id: int | None = 1
    eos_token_id: int | list | None = 32000
    pad_token_id: int | None = 32000
    partial_rotary_factor: float = 1.0

    def validate(self) -> None:
        params = self.rope_parameters or self.__dict__.get("rope_scaling")
        if params and params.get("rope_type", params.get("type")) in ("su", "yarn"):  # Phi-3's older names
            self.rope_parameters = {**{k: v for k, v in params.items() if k != "type"}, "rope_type": "longrope"}
        super().validate()

    def rotary_dim(self) -> int:
        # Transformers 5 writes the factor inside rope_parameters, older files beside it
        factor = rope_parameters(self).get("partial_rotary_factor") or self.partial_rotary_factor
        return int(self.head_dim * factor)


class Phi3Attention(nn.Module):
    """Llama's attention with q, k, v as row blocks of one `qkv_proj` (the checkpoint's layout)."""

    def __init__(self, config, layer_idx: int):
        super().__init__()
        self.layer_idx, self.config = layer_idx, config
        H, Hkv, C, D = config.num_attention_heads, config.num_key_value_heads, config.hidden_size, config.head_dim
        self.head_dim, self.sizes = D, (H * D, Hkv * D, Hkv * D)
        self.qkv_proj = nn.Linear(C, sum(self.sizes), bias=False)
        self.o_proj = nn.Linear(H * D, C, bias=False)
        self.scaling = D**-0.5

    def forward(self, x, cos, sin, mask, cache=None, cache_position=None, output_attentions=False):
        B, T, _ = x.shape
        split = lambda t: t.view(B, T, -1, self.head_dim).transpose(1, 2)  # noqa: E731  (B, heads, T, D)
        q, k, v = (split(t) for t in self.qkv_proj(x).split(self.sizes, dim=-1))
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx, cache_position)  # (B, Hkv, S, D)
        attend = attention_function(self.config.attn_implementation, output_attentions)
        dropout = self.config.attention_dropout if self.training else 0.0
        y, weights = attend(q, k, v, mask, scale=self.scaling, dropout=dropout, is_causal=mask is None)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1)), weights


class Phi3MLP(nn.Module):
    """SwiGLU with gate and up as the two halves of one `gate_up_proj`."""

    def __init__(self, config):
        super().__init__()
        self.gate_up_proj = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
        self.act = get_activation(config.hidden_act)

    def forward(self, x):
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(act_and_mul(self.act, gate, up))


class Phi3DecoderLayer(LlamaDecoderLayer):
    attention_class = Phi3Attention
    mlp_class = Phi3MLP

    def __init__(self, config, layer_idx: int):
        super().__init__(config, layer_idx)
        self.resid_attn_dropout = nn.Dropout(config.resid_pdrop)
        self.resid_mlp_dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x, rope: dict, masks: dict, cache=None, cache_position=None, output_attentions=False):
        cos, sin = rope[self.attention_type]
        y, weights = self.self_attn(self.input_layernorm(x), cos, sin, masks[self.attention_type], cache,
                                    cache_position, output_attentions)
        x = x + self.resid_attn_dropout(y)
        return x + self.resid_mlp_dropout(self.mlp(self.post_attention_layernorm(x))), weights


class Phi3PreTrainedModel(LlamaPreTrainedModel):
    config_class = Phi3Config


class Phi3Model(LlamaModel):
    config_class = Phi3Config
    layer_class = Phi3DecoderLayer


class Phi3ForCausalLM(CausalLMHead, Phi3PreTrainedModel):
    base_model_class = Phi3Model
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}


class Phi3ForSequenceClassification(DecoderSequenceClassificationHead, Phi3PreTrainedModel):
    base_model_class = Phi3Model


class Phi3ForTokenClassification(DecoderTokenClassificationHead, Phi3PreTrainedModel):
    base_model_class = Phi3Model
