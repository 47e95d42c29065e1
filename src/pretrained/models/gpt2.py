"""GPT-2: learned positions, pre-norm blocks (LayerNorm), fused q/k/v projection, GELU MLP.

Module paths equal the checkpoint keys (`transformer.h.0.attn.c_attn`, `transformer.ln_f`,
`lm_head`). The original checkpoints store their projections as Conv1D, i.e. weights transposed
to (in, out); here they are plain `nn.Linear` and `checkpoint_rules` transposes them on load and
back on save, so a saved checkpoint is byte-compatible with the original format.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import conversion
from ..attention import attention_function
from ..configuration import PretrainedConfig
from ..errors import ConfigError, InputError
from ..heads import CausalLMHead, DecoderSequenceClassificationHead
from ..layers import get_activation
from ..masks import causal_mask
from ..cache import forward_cache
from ..modeling import PreTrainedModel, output_flags
from ..outputs import BaseModelOutputWithPast, finish
from ..stack import recomputes, run_layers


class GPT2Config(PretrainedConfig):
    model_type = "gpt2"
    attribute_map = {"hidden_size": "n_embd", "max_position_embeddings": "n_positions",
                     "num_attention_heads": "n_head", "num_hidden_layers": "n_layer"}
    positive_fields = ("vocab_size", "n_embd", "n_layer", "n_head", "n_positions")

    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None
    activation_function: str = "gelu_new"
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    scale_attn_weights: bool = True
    scale_attn_by_inverse_layer_idx: bool = False
    reorder_and_upcast_attn: bool = False  # upcasts q.k to float32; sdpa/eager already accumulate in float32
    use_cache: bool = True
    bos_token_id: int | None = 50256
    eos_token_id: int | list | None = 50256
    tie_word_embeddings: bool = True

    def validate(self) -> None:
        super().validate()
        if self.n_embd % self.n_head:
            raise ConfigError(f"GPT2Config.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")


class GPT2Attention(nn.Module):
    def __init__(self, config, layer_idx: int):
        super().__init__()
        self.config, self.layer_idx = config, layer_idx
        self.num_heads, self.head_dim = config.n_head, config.n_embd // config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.resid_dropout = nn.Dropout(config.resid_pdrop)
        self.scale = (self.head_dim**-0.5 if config.scale_attn_weights else 1.0)
        if config.scale_attn_by_inverse_layer_idx:
            self.scale /= layer_idx + 1

    def forward(self, x, mask, cache=None, cache_position=None, output_attentions=False):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).view(B, T, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # 3 x (B, nh, T, hs)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx, cache_position)  # (B, nh, S, hs)
        attend = attention_function(self.config.attn_implementation, output_attentions)
        dropout = self.config.attn_pdrop if self.training else 0.0
        y, weights = attend(q, k, v, mask, scale=self.scale, dropout=dropout, is_causal=mask is None)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).reshape(B, T, C))), weights


class GPT2MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        inner = config.n_inner or 4 * config.n_embd
        self.c_fc = nn.Linear(config.n_embd, inner)
        self.c_proj = nn.Linear(inner, config.n_embd)
        self.act = get_activation(config.activation_function, "activation_function")
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x):
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class GPT2Block(nn.Module):
    def __init__(self, config, layer_idx: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = GPT2Attention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = GPT2MLP(config)

    def forward(self, x, mask, cache=None, cache_position=None, output_attentions=False):
        y, weights = self.attn(self.ln_1(x), mask, cache, cache_position, output_attentions)
        x = x + y
        return x + self.mlp(self.ln_2(x)), weights


class GPT2PreTrainedModel(PreTrainedModel):
    config_class = GPT2Config
    base_model_prefix = "transformer"
    supports_gradient_checkpointing = True
    # Conv1D weights are stored (in, out)
    checkpoint_rules = (conversion.Transpose(r"\.(c_attn|c_proj|c_fc)\.weight$"),)
    # the original checkpoints carry the causal-mask buffers
    _keys_to_ignore_on_load_unexpected = (r"attn\.masked_bias$", r"attn\.bias$")

    def _init_weights(self, module):
        super()._init_weights(module)
        if getattr(module, "_is_residual", False):  # GPT-2 scales residual projections by depth
            module.weight.data.normal_(0.0, self.config.initializer_range / math.sqrt(2 * self.config.n_layer))


class GPT2Model(GPT2PreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.drop = nn.Dropout(config.embd_pdrop)
        self.h = nn.ModuleList(GPT2Block(config, i) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.gradient_checkpointing = False
        for block in self.h:
            block.attn.c_proj._is_residual = block.mlp.c_proj._is_residual = True
        self.post_init()

    def get_input_embeddings(self):
        return self.wte

    def set_input_embeddings(self, value):
        self.wte = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, token_type_ids=None, use_cache=None, output_attentions=None,
                output_hidden_states=None, return_dict=None, cache_position=None, **_):
        if (input_ids is None) == (inputs_embeds is None):
            raise InputError("pass exactly one of input_ids or inputs_embeds")
        config = self.config
        output_attentions, output_hidden_states = output_flags(config, output_attentions, output_hidden_states)
        use_cache = (config.use_cache and not self.training) if use_cache is None else use_cache and not recomputes(self)
        x = self.wte(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, C)
        B, T = x.shape[:2]
        cache, past = forward_cache(past_key_values, use_cache, cache_position)
        if past is not None and past + T > config.n_positions:  # with cache_position: generate() checked
            raise InputError(f"sequence length {past + T} exceeds n_positions={config.n_positions} of this GPT-2")
        if position_ids is None:
            position_ids = (torch.arange(past, past + T, device=x.device) if cache_position is None
                            else cache_position)[None]
        x = x + self.wpe(position_ids)
        if token_type_ids is not None:
            x = x + self.wte(token_type_ids)
        x = self.drop(x)
        S = cache.key_length(T) if cache is not None else T
        mask = causal_mask(attention_mask, T, S, x.dtype, x.device, None, past, cache_position)

        out = run_layers(self, self.h, x, mask, cache, cache_position, output_attentions=output_attentions,
                         output_hidden_states=output_hidden_states)
        x = self.ln_f(out.last_hidden_state)
        hidden_states = out.hidden_states + (x,) if output_hidden_states else None
        return finish(BaseModelOutputWithPast(x, cache if use_cache else None, hidden_states, out.attentions),
                      config.return_dict if return_dict is None else return_dict)


class GPT2LMHeadModel(CausalLMHead, GPT2PreTrainedModel):
    base_model_class = GPT2Model
    _tied_weights_keys = {"lm_head.weight": "transformer.wte.weight"}
    learned_positions = True


GPT2ForCausalLM = GPT2LMHeadModel  # the name AutoModelForCausalLM looks up


class GPT2ForSequenceClassification(DecoderSequenceClassificationHead, GPT2PreTrainedModel):
    base_model_class = GPT2Model
