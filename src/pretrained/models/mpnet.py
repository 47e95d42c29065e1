"""MPNet: a post-norm BERT-style encoder whose attention adds a learned relative-position bias (T5's
log-spaced buckets, one table for all layers held by the encoder), RoBERTa's position ids and heads,
and no token types. Module paths equal the checkpoint keys (`embeddings.word_embeddings`,
`encoder.layer.0.attention.attn.q`, `encoder.relative_attention_bias`); the sentence-transformers
layout (all-mpnet-base-v2) is MPNetModel's own keys without the `mpnet.` prefix.
"""

from __future__ import annotations

import torch
from torch import nn

from ..attention import attention_function
from ..configuration import PretrainedConfig
from ..errors import ConfigError, InputError
from ..heads import (MaskedLMHead, MultipleChoiceHead, QuestionAnsweringHead, SequenceClassificationHead,
                     TokenClassificationHead)
from ..masks import padding_mask
from ..modeling import PreTrainedModel, output_flags
from ..outputs import BaseModelOutputWithPooling, finish
from ..stack import run_layers
from .bert import BertIntermediate, BertPooler, BertSelfOutput
from .roberta import RobertaClassificationHead, RobertaEmbeddings, RobertaLMHead
from .t5 import relative_position_bucket

# The reference buckets distances into 32 whatever relative_attention_num_buckets says (the table has that
# many rows), with distances from 128 on sharing the last bucket.
BUCKETS, MAX_DISTANCE = 32, 128


class MPNetConfig(PretrainedConfig):
    model_type = "mpnet"

    vocab_size: int = 30527
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    relative_attention_num_buckets: int = 32
    pad_token_id: int | None = 1
    bos_token_id: int | None = 0
    eos_token_id: int | list | None = 2
    tie_word_embeddings: bool = True

    def validate(self) -> None:
        super().validate()
        if self.relative_attention_num_buckets < BUCKETS:
            raise ConfigError(f"MPNetConfig.relative_attention_num_buckets={self.relative_attention_num_buckets}: "
                              f"MPNet buckets relative positions into {BUCKETS}, so the table needs at least {BUCKETS} rows")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(f"MPNetConfig.hidden_size={self.hidden_size} is not a multiple of "
                              f"num_attention_heads={self.num_attention_heads}")


class MPNetEmbeddings(nn.Module):
    """Word + position embeddings (no token types); positions count from the padding index 1 as RoBERTa's."""

    position_ids = RobertaEmbeddings.position_ids

    def __init__(self, config):
        super().__init__()
        self.padding_idx = 1  # fixed in the reference, whatever pad_token_id says
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=self.padding_idx)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size,
                                                padding_idx=self.padding_idx)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.max_positions = config.max_position_embeddings

    def forward(self, input_ids=None, position_ids=None, inputs_embeds=None):
        if position_ids is None:
            position_ids = self.position_ids(input_ids, inputs_embeds)
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        return self.dropout(self.LayerNorm(inputs_embeds + self.position_embeddings(position_ids)))


class MPNetSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.q = nn.Linear(config.hidden_size, config.hidden_size)
        self.k = nn.Linear(config.hidden_size, config.hidden_size)
        self.v = nn.Linear(config.hidden_size, config.hidden_size)
        self.o = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = config.attention_probs_dropout_prob
        self.config = config

    def forward(self, x, mask, bias, output_attentions=False):
        B, T, C = x.shape
        split = lambda t: t.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # noqa: E731  (B, nh, T, hs)
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        attend = attention_function(self.config.attn_implementation, output_attentions)
        y, weights = attend(q, k, v, mask, scale=self.head_dim**-0.5, dropout=self.dropout if self.training else 0.0,
                            bias=bias)
        return self.o(y.transpose(1, 2).reshape(B, T, C)), weights


class MPNetAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.attn = MPNetSelfAttention(config)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x, mask, bias, output_attentions=False):
        y, weights = self.attn(x, mask, bias, output_attentions)
        return self.LayerNorm(self.dropout(y) + x), weights


class MPNetLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.attention = MPNetAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertSelfOutput(config, in_features=config.intermediate_size)

    def forward(self, x, mask, bias, output_attentions=False):
        x, weights = self.attention(x, mask, bias, output_attentions)
        return self.output(self.intermediate(x), x), weights


class MPNetEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.layer = nn.ModuleList(MPNetLayer(config) for _ in range(config.num_hidden_layers))
        self.relative_attention_bias = nn.Embedding(config.relative_attention_num_buckets, config.num_attention_heads)
        self.gradient_checkpointing = False

    def position_bias(self, T: int) -> torch.Tensor:
        """(1, nh, T, T) score bias from the key - query distance of token indices (not of position ids)."""
        positions = torch.arange(T, device=self.relative_attention_bias.weight.device)
        buckets = relative_position_bucket(positions[None, :] - positions[:, None], True, BUCKETS, MAX_DISTANCE)
        return self.relative_attention_bias(buckets).permute(2, 0, 1)[None]

    def forward(self, x, mask, output_attentions=False, output_hidden_states=False):
        out = run_layers(self, self.layer, x, mask, self.position_bias(x.shape[1]),
                         output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        hidden_states = out.hidden_states + (out.last_hidden_state,) if output_hidden_states else None
        return out.last_hidden_state, hidden_states, out.attentions


class MPNetPreTrainedModel(PreTrainedModel):
    config_class = MPNetConfig
    base_model_prefix = "mpnet"
    supports_gradient_checkpointing = True
    _keys_to_ignore_on_load_unexpected = (r"position_ids$",)


class MPNetModel(MPNetPreTrainedModel):
    def __init__(self, config, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = MPNetEmbeddings(config)
        self.encoder = MPNetEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value):
        self.embeddings.word_embeddings = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None,
                output_attentions=None, output_hidden_states=None, return_dict=None):
        if (input_ids is None) == (inputs_embeds is None):
            raise InputError("MPNetModel: pass exactly one of input_ids or inputs_embeds")
        config = self.config
        output_attentions, output_hidden_states = output_flags(config, output_attentions, output_hidden_states)
        x = self.embeddings(input_ids, position_ids, inputs_embeds)  # (B, T, C)
        mask = padding_mask(attention_mask, x.dtype)
        x, hidden_states, attentions = self.encoder(x, mask, output_attentions, output_hidden_states)
        pooled = self.pooler(x) if self.pooler is not None else None
        return finish(BaseModelOutputWithPooling(x, pooled, hidden_states, attentions),
                      config.return_dict if return_dict is None else return_dict)


class MPNetForMaskedLM(MaskedLMHead, MPNetPreTrainedModel):
    base_model_class = MPNetModel
    _tied_weights_keys = {"lm_head.decoder.weight": "mpnet.embeddings.word_embeddings.weight"}

    def tied_weights(self) -> dict[str, str]:
        return {**super().tied_weights(), "lm_head.decoder.bias": "lm_head.bias"}

    def build_lm_head(self, config):
        self.lm_head = RobertaLMHead(config)  # dense, gelu, layer_norm, decoder: the same modules and names

    def lm_logits(self, hidden_states):
        return self.lm_head(hidden_states)

    def get_output_embeddings(self):
        return self.lm_head.decoder


class MPNetForSequenceClassification(SequenceClassificationHead, MPNetPreTrainedModel):
    base_model_class = MPNetModel

    def build_classifier(self, config):
        self.classifier = RobertaClassificationHead(config, config.hidden_dropout_prob)

    def classify(self, out):
        return self.classifier(out.last_hidden_state)


class MPNetForMultipleChoice(MultipleChoiceHead, MPNetPreTrainedModel):
    base_model_class = MPNetModel
    add_pooling_layer = True

    def build_classifier(self, config):
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, 1)

    def classify(self, out):
        return self.classifier(self.dropout(out.pooler_output))


class MPNetForTokenClassification(TokenClassificationHead, MPNetPreTrainedModel):
    base_model_class = MPNetModel


class MPNetForQuestionAnswering(QuestionAnsweringHead, MPNetPreTrainedModel):
    base_model_class = MPNetModel
