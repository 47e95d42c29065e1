"""ModernBERT: a pre-norm encoder without absolute positions. Rotary attention through one fused Wqkv, every
`global_attn_every_n_layers`-th layer global and the others local (a bidirectional window of
local_attention / 2 tokens either side, with its own rope base), a GeGLU feed-forward, bias-free LayerNorms
and a final norm. Heads pool (first token or mean), then run a dense-act-norm `head` before the classifier.
Module paths equal the checkpoint keys (`model.layers.0.attn.Wqkv`, `head.dense`, `decoder`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..attention import attention_function
from ..configuration import PretrainedConfig
from ..errors import ConfigError, InputError
from ..heads import _Head, sequence_classification_loss, span_loss, token_loss
from ..layers import RotaryEmbedding, get_activation, rotate, signed_sin
from ..masks import padding_mask
from ..modeling import PreTrainedModel, output_flags
from ..outputs import (BaseModelOutput, MaskedLMOutput, MultipleChoiceModelOutput, QuestionAnsweringModelOutput,
                       SequenceClassifierOutput, TokenClassifierOutput, finish)
from ..stack import run_layers

LAYER_TYPES = ("full_attention", "sliding_attention")


class ModernBertConfig(PretrainedConfig):
    model_type = "modernbert"

    vocab_size: int = 50368
    hidden_size: int = 768
    intermediate_size: int = 1152
    num_hidden_layers: int = 22
    num_attention_heads: int = 12
    hidden_activation: str = "gelu"
    max_position_embeddings: int = 8192
    initializer_range: float = 0.02
    initializer_cutoff_factor: float = 2.0
    norm_eps: float = 1e-5
    norm_bias: bool = False
    pad_token_id: int | None = 50283
    eos_token_id: int | list | None = 50282
    bos_token_id: int | None = 50281
    cls_token_id: int | None = 50281
    sep_token_id: int | None = 50282
    attention_bias: bool = False
    attention_dropout: float = 0.0
    layer_types: list | None = None  # None: from global_attn_every_n_layers (older config.json)
    rope_parameters: dict | None = None  # {layer type: {rope_type, rope_theta}}; None: from global/local_rope_theta
    local_attention: int = 128
    embedding_dropout: float = 0.0
    mlp_bias: bool = False
    mlp_dropout: float = 0.0
    decoder_bias: bool = True
    classifier_pooling: str = "cls"
    classifier_dropout: float = 0.0
    classifier_bias: bool = False
    classifier_activation: str = "gelu"
    deterministic_flash_attn: bool = False  # for flash kernels only; every backend here is deterministic
    sparse_prediction: bool = False
    sparse_pred_ignore_index: int = -100
    tie_word_embeddings: bool = True

    def validate(self) -> None:
        super().validate()
        if self.layer_types is None:  # derived defaults, filled once
            every = getattr(self, "global_attn_every_n_layers", 3)
            self.layer_types = ["sliding_attention" if i % every else "full_attention"
                                for i in range(self.num_hidden_layers)]
        if len(self.layer_types) != self.num_hidden_layers or set(self.layer_types) - set(LAYER_TYPES):
            raise ConfigError(f"ModernBertConfig.layer_types={self.layer_types!r}: expected {self.num_hidden_layers} "
                              f"entries, each one of {LAYER_TYPES}")
        if self.rope_parameters is None:
            scaling = dict(getattr(self, "rope_scaling", None) or {})
            thetas = {"full_attention": getattr(self, "global_rope_theta", 160000.0),
                      "sliding_attention": getattr(self, "local_rope_theta", 10000.0)}
            self.rope_parameters = {kind: {"rope_type": "default", "rope_theta": theta, **scaling}
                                    for kind, theta in thetas.items()}
        if self.classifier_pooling not in ("cls", "mean"):
            raise ConfigError(f"ModernBertConfig.classifier_pooling={self.classifier_pooling!r}: expected 'cls' or 'mean'")


class ModernBertEmbeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.norm_eps, bias=config.norm_bias)
        self.drop = nn.Dropout(config.embedding_dropout)

    def forward(self, input_ids=None, inputs_embeds=None):
        return self.drop(self.norm(self.tok_embeddings(input_ids) if inputs_embeds is None else inputs_embeds))


class ModernBertMLP(nn.Module):
    """GeGLU: Wi gives the input and its gate side by side."""

    def __init__(self, config):
        super().__init__()
        self.Wi = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=config.mlp_bias)
        self.act = get_activation(config.hidden_activation, "hidden_activation")
        self.drop = nn.Dropout(config.mlp_dropout)
        self.Wo = nn.Linear(config.intermediate_size, config.hidden_size, bias=config.mlp_bias)

    def forward(self, x):
        x, gate = self.Wi(x).chunk(2, dim=-1)
        return self.Wo(self.drop(self.act(x) * gate))


class ModernBertAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.Wqkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=config.attention_bias)
        self.Wo = nn.Linear(config.hidden_size, config.hidden_size, bias=config.attention_bias)
        self.out_drop = nn.Dropout(config.attention_dropout)
        self.config = config

    def forward(self, x, mask, rotary, output_attentions=False):
        B, T, C = x.shape
        q, k, v = self.Wqkv(x).view(B, T, 3, self.num_heads, self.head_dim).transpose(1, 3).unbind(2)  # (B, nh, T, hs)
        cos, sin = rotary
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        attend = attention_function(self.config.attn_implementation, output_attentions)
        dropout = self.config.attention_dropout if self.training else 0.0
        y, weights = attend(q, k, v, mask, scale=self.head_dim**-0.5, dropout=dropout)
        return self.out_drop(self.Wo(y.transpose(1, 2).reshape(B, T, C))), weights


class ModernBertEncoderLayer(nn.Module):
    def __init__(self, config, layer_idx: int):
        super().__init__()
        # the embeddings end in a norm already: the first layer's attention input is not normed again
        self.attn_norm = (nn.Identity() if layer_idx == 0
                          else nn.LayerNorm(config.hidden_size, eps=config.norm_eps, bias=config.norm_bias))
        self.attn = ModernBertAttention(config)
        self.mlp_norm = nn.LayerNorm(config.hidden_size, eps=config.norm_eps, bias=config.norm_bias)
        self.mlp = ModernBertMLP(config)
        self.attention_type = config.layer_types[layer_idx]

    def forward(self, x, masks, rotary, output_attentions=False):
        y, weights = self.attn(self.attn_norm(x), masks[self.attention_type], rotary[self.attention_type], output_attentions)
        x = x + y
        return x + self.mlp(self.mlp_norm(x)), weights


class ModernBertPreTrainedModel(PreTrainedModel):
    config_class = ModernBertConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True

    def _init_weights(self, module: nn.Module) -> None:
        """The reference's init: truncated normals, smaller for projections back into the residual stream."""
        super()._init_weights(module)
        config = self.config
        cutoff = config.initializer_cutoff_factor or 3.0
        std_in = config.initializer_range
        std_out = std_in / math.sqrt(2.0 * config.num_hidden_layers)

        def init(layer, std):
            nn.init.trunc_normal_(layer.weight, 0.0, std, -cutoff * std, cutoff * std)
            if getattr(layer, "bias", None) is not None:
                nn.init.zeros_(layer.bias)

        if isinstance(module, ModernBertEmbeddings):
            init(module.tok_embeddings, std_in)
        elif isinstance(module, ModernBertMLP):
            init(module.Wi, std_in), init(module.Wo, std_out)
        elif isinstance(module, ModernBertAttention):
            init(module.Wqkv, std_in), init(module.Wo, std_out)
        elif isinstance(module, ModernBertPredictionHead):
            init(module.dense, std_out)
        elif module is getattr(self, "decoder", None):  # by identity: the loader initialises a missing layer alone
            init(module, std_out)
        elif module is getattr(self, "classifier", None):
            init(module, config.hidden_size**-0.5)


class ModernBertModel(ModernBertPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.embeddings = ModernBertEmbeddings(config)
        self.layers = nn.ModuleList(ModernBertEncoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.norm_eps, bias=config.norm_bias)
        head_dim = config.hidden_size // config.num_attention_heads
        self.rotary_emb = nn.ModuleDict({t: RotaryEmbedding(config, head_dim, t) for t in sorted(set(config.layer_types))})
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.tok_embeddings

    def set_input_embeddings(self, value):
        self.embeddings.tok_embeddings = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None,
                output_attentions=None, output_hidden_states=None, return_dict=None):
        if (input_ids is None) == (inputs_embeds is None):
            raise InputError("ModernBertModel: pass exactly one of input_ids or inputs_embeds")
        config = self.config
        output_attentions, output_hidden_states = output_flags(config, output_attentions, output_hidden_states)
        x = self.embeddings(input_ids, inputs_embeds)  # (B, T, C)
        B, T = x.shape[:2]
        if position_ids is None:
            position_ids = torch.arange(T, device=x.device)[None]
        rotary = {}
        for kind, table in self.rotary_emb.items():
            cos, sin = table(position_ids, x.dtype)  # (B, T, hs)
            rotary[kind] = cos[:, None], signed_sin(sin)[:, None]
        masks = {"full_attention": padding_mask(attention_mask, x.dtype)}
        if "sliding_attention" in rotary:  # (B, 1, T, T): window and key padding
            keep = attention_mask if attention_mask is not None else torch.ones(B, T, dtype=torch.long, device=x.device)
            masks["sliding_attention"] = padding_mask(keep, x.dtype, window=config.local_attention)
        out = run_layers(self, self.layers, x, masks, rotary, output_attentions=output_attentions,
                         output_hidden_states=output_hidden_states)
        x = self.final_norm(out.last_hidden_state)
        # the reference reports the normed output as the last hidden state (not the last layer's raw output)
        hidden_states = out.hidden_states + (x,) if output_hidden_states else None
        return finish(BaseModelOutput(x, hidden_states, out.attentions),
                      config.return_dict if return_dict is None else return_dict)


class ModernBertPredictionHead(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size, bias=config.classifier_bias)
        self.act = get_activation(config.classifier_activation, "classifier_activation")
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.norm_eps, bias=config.norm_bias)

    def forward(self, x):
        return self.norm(self.act(self.dense(x)))


class ModernBertForMaskedLM(_Head, ModernBertPreTrainedModel):
    """With config.sparse_prediction and labels, logits are computed for the labelled positions only: (N, V)."""

    base_model_class = ModernBertModel
    _tied_weights_keys = {"decoder.weight": "model.embeddings.tok_embeddings.weight"}

    def __init__(self, config):
        super().__init__(config)
        self._build_base(config)
        self.head = ModernBertPredictionHead(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=config.decoder_bias)
        self.post_init()

    def get_output_embeddings(self):
        return self.decoder

    def set_output_embeddings(self, value):
        self.decoder = value

    def forward(self, input_ids=None, attention_mask=None, labels=None, return_dict=None, **inputs):
        out = self._run_base(input_ids, attention_mask, inputs)
        hidden = out.last_hidden_state  # (B, T, C)
        if self.config.sparse_prediction and labels is not None:
            labels = labels.reshape(-1)
            kept = labels != self.config.sparse_pred_ignore_index
            hidden, labels = hidden.reshape(labels.shape[0], -1)[kept], labels[kept]
        logits = self.decoder(self.head(hidden))
        loss = token_loss(logits.float(), labels) if labels is not None else None
        return finish(MaskedLMOutput(loss, logits, out.hidden_states, out.attentions), self._return_dict(return_dict))


class _ClassifierHead(_Head, ModernBertPreTrainedModel):
    """The base model, then `head` (dense, act, norm), dropout and `classifier` of `width` outputs."""

    base_model_class = ModernBertModel

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self._build_base(config)
        self.head = ModernBertPredictionHead(config)
        self.drop = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.hidden_size, self.width(config))
        self.post_init()

    def width(self, config) -> int:
        return config.num_labels

    def scores(self, hidden):
        return self.classifier(self.drop(self.head(hidden)))

    def mean(self, hidden, attention_mask):
        """Mean over the non-padding tokens: (B, T, C) -> (B, C)."""
        if attention_mask is None:
            attention_mask = torch.ones(hidden.shape[:2], dtype=torch.long, device=hidden.device)
        return (hidden * attention_mask[..., None]).sum(1) / attention_mask.sum(1, keepdim=True)


class ModernBertForSequenceClassification(_ClassifierHead):
    def forward(self, input_ids=None, attention_mask=None, labels=None, return_dict=None, **inputs):
        out = self._run_base(input_ids, attention_mask, inputs)
        hidden = out.last_hidden_state
        pooled = hidden[:, 0] if self.config.classifier_pooling == "cls" else self.mean(hidden, attention_mask)
        logits = self.scores(pooled)  # (B, num_labels)
        loss = sequence_classification_loss(logits, labels, self.config) if labels is not None else None
        return finish(SequenceClassifierOutput(loss, logits, out.hidden_states, out.attentions),
                      self._return_dict(return_dict))


class ModernBertForTokenClassification(_ClassifierHead):
    def forward(self, input_ids=None, attention_mask=None, labels=None, return_dict=None, **inputs):
        out = self._run_base(input_ids, attention_mask, inputs)
        logits = self.scores(out.last_hidden_state)  # (B, T, num_labels)
        loss = token_loss(logits, labels) if labels is not None else None
        return finish(TokenClassifierOutput(loss, logits, out.hidden_states, out.attentions), self._return_dict(return_dict))


class ModernBertForQuestionAnswering(_ClassifierHead):
    def forward(self, input_ids=None, attention_mask=None, start_positions=None, end_positions=None,
                return_dict=None, **inputs):
        out = self._run_base(input_ids, attention_mask, inputs)
        start_logits, end_logits = (t.squeeze(-1).contiguous() for t in self.scores(out.last_hidden_state).split(1, dim=-1))
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = span_loss(start_logits, end_logits, start_positions, end_positions)
        return finish(QuestionAnsweringModelOutput(loss, start_logits, end_logits, out.hidden_states, out.attentions),
                      self._return_dict(return_dict))


class ModernBertForMultipleChoice(_ClassifierHead):
    """Inputs (B, C, T) run as (B*C, T). "cls" pooling reads each row's first non-padding token."""

    def width(self, config) -> int:
        return 1

    def forward(self, input_ids=None, attention_mask=None, labels=None, return_dict=None, **inputs):
        reference = input_ids if input_ids is not None else inputs.get("inputs_embeds")
        num_choices = reference.shape[1]
        flat = lambda x: None if x is None else x.reshape(-1, *x.shape[2:])  # noqa: E731
        inputs = {k: flat(v) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
        attention_mask = flat(attention_mask)
        out = self._run_base(flat(input_ids), attention_mask, inputs)
        hidden = out.last_hidden_state  # (B*C, T, C)
        if self.config.classifier_pooling == "mean":
            pooled = self.mean(hidden, attention_mask)
        else:
            rows = torch.arange(hidden.shape[0], device=hidden.device)
            first = attention_mask.argmax(-1).to(hidden.device) if attention_mask is not None else torch.zeros_like(rows)
            pooled = hidden[rows, first]
        logits = self.scores(pooled).view(-1, num_choices)  # (B, C)
        loss = F.cross_entropy(logits, labels.to(logits.device)) if labels is not None else None
        return finish(MultipleChoiceModelOutput(loss, logits, out.hidden_states, out.attentions),
                      self._return_dict(return_dict))
