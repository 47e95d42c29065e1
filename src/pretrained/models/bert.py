"""BERT: config, encoder blocks, base model with pooler, task heads.

Module paths equal the checkpoint keys (`embeddings.word_embeddings`, `encoder.layer.0.attention.self.query`,
...). RoBERTa reuses everything here except the embeddings' position ids and its own heads.
"""

from __future__ import annotations

import torch
from torch import nn

from ..attention import attention_function
from ..configuration import PretrainedConfig
from ..errors import ConfigError, InputError
from ..heads import MaskedLMHead, MultipleChoiceHead, QuestionAnsweringHead, SequenceClassificationHead, TokenClassificationHead
from ..layers import get_activation
from ..masks import padding_mask
from ..modeling import PreTrainedModel, output_flags
from ..outputs import BaseModelOutputWithPooling, finish
from ..stack import run_layers


class BertConfig(PretrainedConfig):
    model_type = "bert"

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 0
    position_embedding_type: str = "absolute"
    use_cache: bool = True
    classifier_dropout: float | None = None

    def validate(self) -> None:
        super().validate()
        if self.position_embedding_type != "absolute":
            raise ConfigError(
                f"{type(self).__name__}.position_embedding_type={self.position_embedding_type!r} is not supported; "
                "expected 'absolute'"
            )
        if self.is_decoder or self.add_cross_attention:
            raise ConfigError(f"{type(self).__name__}: is_decoder / add_cross_attention (BERT as a decoder) is not supported")


class BertEmbeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.max_positions = config.max_position_embeddings

    def position_ids(self, input_ids, inputs_embeds) -> torch.Tensor:
        T = (input_ids if input_ids is not None else inputs_embeds).shape[1]
        if T > self.max_positions:
            raise InputError(f"sequence length {T} exceeds max_position_embeddings={self.max_positions}; truncate the input")
        return torch.arange(T, device=self.position_embeddings.weight.device)[None]

    def forward(self, input_ids=None, token_type_ids=None, position_ids=None, inputs_embeds=None):
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        if position_ids is None:
            position_ids = self.position_ids(input_ids, inputs_embeds)
        if token_type_ids is None:
            token_type_ids = torch.zeros(inputs_embeds.shape[:2], dtype=torch.long, device=inputs_embeds.device)
        x = inputs_embeds + self.token_type_embeddings(token_type_ids) + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    def __init__(self, config, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size, bias=qkv_bias)
        self.key = nn.Linear(config.hidden_size, config.hidden_size, bias=qkv_bias)
        self.value = nn.Linear(config.hidden_size, config.hidden_size, bias=qkv_bias)
        self.dropout = config.attention_probs_dropout_prob
        self.config = config

    def forward(self, x, mask, output_attentions=False):
        B, T, C = x.shape
        split = lambda t: t.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # noqa: E731  (B, nh, T, hs)
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        attend = attention_function(self.config.attn_implementation, output_attentions)
        y, weights = attend(q, k, v, mask, scale=self.head_dim**-0.5, dropout=self.dropout if self.training else 0.0)
        return y.transpose(1, 2).reshape(B, T, C), weights


class BertSelfOutput(nn.Module):
    """Projection + dropout + residual + LayerNorm, after attention (and, as BertOutput, after the MLP)."""

    def __init__(self, config, in_features=None):
        super().__init__()
        self.dense = nn.Linear(in_features or config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x, residual):
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class BertAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, x, mask, output_attentions=False):
        y, weights = self.self(x, mask, output_attentions)
        return self.output(y, x), weights


class BertIntermediate(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = get_activation(config.hidden_act)

    def forward(self, x):
        return self.act(self.dense(x))


class BertLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertSelfOutput(config, in_features=config.intermediate_size)

    def forward(self, x, mask, output_attentions=False):
        x, weights = self.attention(x, mask, output_attentions)
        return self.output(self.intermediate(x), x), weights


class BertEncoder(nn.Module):
    """A stack of post-norm blocks; collects hidden states and attentions when asked."""

    def __init__(self, config, layer_class=BertLayer):
        super().__init__()
        self.layer = nn.ModuleList(layer_class(config) for _ in range(config.num_hidden_layers))
        self.gradient_checkpointing = False

    def forward(self, x, mask, output_attentions=False, output_hidden_states=False):
        out = run_layers(self, self.layer, x, mask, output_attentions=output_attentions,
                         output_hidden_states=output_hidden_states)
        hidden_states = out.hidden_states + (out.last_hidden_state,) if output_hidden_states else None
        return out.last_hidden_state, hidden_states, out.attentions


class BertPooler(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden_states):
        return self.activation(self.dense(hidden_states[:, 0]))


class BertPreTrainedModel(PreTrainedModel):
    config_class = BertConfig
    base_model_prefix = "bert"
    supports_gradient_checkpointing = True
    _keys_to_ignore_on_load_unexpected = (r"position_ids$", r"^cls\.seq_relationship")


class BertModel(BertPreTrainedModel):
    embeddings_class = BertEmbeddings

    def __init__(self, config, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = self.embeddings_class(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value):
        self.embeddings.word_embeddings = value

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, output_attentions=None, output_hidden_states=None, return_dict=None):
        if (input_ids is None) == (inputs_embeds is None):
            raise InputError("pass exactly one of input_ids or inputs_embeds")
        config = self.config
        output_attentions, output_hidden_states = output_flags(config, output_attentions, output_hidden_states)
        x = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)  # (B, T, C)
        mask = padding_mask(attention_mask, x.dtype)
        x, hidden_states, attentions = self.encoder(x, mask, output_attentions, output_hidden_states)
        pooled = self.pooler(x) if self.pooler is not None else None
        return finish(BaseModelOutputWithPooling(x, pooled, hidden_states, attentions),
                      config.return_dict if return_dict is None else return_dict)


class BertLMPredictionHead(nn.Module):
    """cls.predictions: transform (dense, act, LayerNorm), then the decoder tied to the word embeddings."""

    def __init__(self, config):
        super().__init__()
        self.transform = nn.Module()
        self.transform.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.act = get_activation(config.hidden_act)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        self.bias = self.decoder.bias  # one tensor under both checkpoint names, as in the reference

    def forward(self, x):
        return self.decoder(self.transform.LayerNorm(self.act(self.transform.dense(x))))


class BertForMaskedLM(MaskedLMHead, BertPreTrainedModel):
    base_model_class = BertModel
    _tied_weights_keys = {"cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight"}

    def tied_weights(self) -> dict[str, str]:
        return {**super().tied_weights(), "cls.predictions.decoder.bias": "cls.predictions.bias"}

    def build_lm_head(self, config):
        self.cls = nn.Module()
        self.cls.predictions = BertLMPredictionHead(config)

    def lm_logits(self, hidden_states):
        return self.cls.predictions(hidden_states)

    def get_output_embeddings(self):
        return self.cls.predictions.decoder


class BertForSequenceClassification(SequenceClassificationHead, BertPreTrainedModel):
    base_model_class = BertModel
    add_pooling_layer = True

    def build_classifier(self, config):
        self.dropout = nn.Dropout(self.head_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def classify(self, out):
        return self.classifier(self.dropout(out.pooler_output))


class BertForMultipleChoice(MultipleChoiceHead, BertPreTrainedModel):
    base_model_class = BertModel
    add_pooling_layer = True

    def build_classifier(self, config):
        self.dropout = nn.Dropout(self.head_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, 1)

    def classify(self, out):
        return self.classifier(self.dropout(out.pooler_output))


class BertForTokenClassification(TokenClassificationHead, BertPreTrainedModel):
    base_model_class = BertModel


class BertForQuestionAnswering(QuestionAnsweringHead, BertPreTrainedModel):
    base_model_class = BertModel
