"""DeBERTa-v2 and v3: a post-norm BERT-style encoder with disentangled attention. Besides content-to-content
scores, each query reads a learned embedding of its (log-bucketed) distance to every key through the keys'
projection (c2p), and each key reads the embedding of the opposite distance through the queries' projection
(p2c); the three terms share one 1/sqrt(head_dim * 3) scale. v2 xlarge adds a convolution after the first
layer; v3 shares the content projections for positions (share_att_key) and normalises the distance table.
Module paths equal the checkpoint keys (`deberta.encoder.layer.0.attention.self.query_proj`, ...).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..attention import attention_function
from ..configuration import PretrainedConfig
from ..errors import InputError, UnsupportedOptionError
from ..heads import (MaskedLMHead, MultipleChoiceHead, QuestionAnsweringHead, SequenceClassificationHead,
                     TokenClassificationHead, sequence_classification_loss)
from ..layers import get_activation
from ..masks import additive
from ..modeling import PreTrainedModel, output_flags
from ..outputs import BaseModelOutput, SequenceClassifierOutput, finish
from ..stack import run_layers
from .bert import BertIntermediate, BertSelfOutput

POSITION_TERMS = ("c2p", "p2c")


class DebertaV2Config(PretrainedConfig):
    model_type = "deberta-v2"

    vocab_size: int = 128100
    hidden_size: int = 1536
    num_hidden_layers: int = 24
    num_attention_heads: int = 24
    intermediate_size: int = 6144
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 0
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-7
    relative_attention: bool = False
    max_relative_positions: int = -1  # < 1: max_position_embeddings
    position_buckets: int = -1  # > 0: log-bucketed distances (v3: 256)
    pos_att_type: str | list | None = None  # "p2c|c2p" or a list
    share_att_key: bool = False
    norm_rel_ebd: str = "none"  # "layer_norm": normalise the distance table
    position_biased_input: bool = True
    embedding_size: int | None = None
    conv_kernel_size: int = 0
    conv_groups: int = 1
    conv_act: str = "tanh"
    pad_token_id: int | None = 0
    pooler_dropout: float = 0.0
    pooler_hidden_act: str = "gelu"
    pooler_hidden_size: int | None = None
    cls_dropout: float | None = None
    legacy: bool = True  # masked-LM head layout: cls.predictions (legacy) or lm_predictions.lm_head
    tie_word_embeddings: bool = True

    def validate(self) -> None:
        super().validate()
        if isinstance(self.pos_att_type, str):  # derived defaults, filled once
            self.pos_att_type = [x.strip() for x in self.pos_att_type.lower().split("|")]
        self.pos_att_type = list(self.pos_att_type or [])
        if set(self.pos_att_type) - set(POSITION_TERMS):
            raise UnsupportedOptionError(f"DebertaV2Config.pos_att_type={self.pos_att_type!r}: DeBERTa-v2 computes "
                                         f"only the terms {POSITION_TERMS}")
        if self.pooler_hidden_size is None:
            self.pooler_hidden_size = self.hidden_size
        if self.embedding_size is None:
            self.embedding_size = self.hidden_size

    def max_relative(self) -> int:
        return self.max_relative_positions if self.max_relative_positions > 0 else self.max_position_embeddings

    def position_span(self) -> int:
        """Distances -span..span-1 have an embedding each (the table has 2 * span rows)."""
        return self.position_buckets if self.position_buckets > 0 else self.max_relative()


def log_bucket_position(relative: torch.Tensor, buckets: int, max_position: int) -> torch.Tensor:
    """Distances within buckets/2 stay exact; longer ones map log-spaced onto the rest, keeping their sign
    (float32 as the reference, so ceil lands on the same side)."""
    mid = buckets // 2
    sign = torch.sign(relative)
    distance = torch.where((relative < mid) & (relative > -mid), torch.tensor(mid - 1).type_as(relative), relative.abs())
    log_pos = torch.ceil(torch.log(distance / mid) / torch.log(torch.tensor((max_position - 1) / mid)) * (mid - 1)) + mid
    return torch.where(distance <= mid, relative.type_as(log_pos), log_pos * sign).long()


class DebertaV2Embeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        E = config.embedding_size
        self.word_embeddings = nn.Embedding(config.vocab_size, E, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, E) if config.position_biased_input else None
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, E) if config.type_vocab_size > 0 else None
        self.embed_proj = nn.Linear(E, config.hidden_size, bias=False) if E != config.hidden_size else None
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids, position_ids, keep, inputs_embeds):
        x = self.word_embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        B, T = x.shape[:2]
        if self.position_embeddings is not None:
            if position_ids is None:
                position_ids = torch.arange(T, device=x.device)[None]
            x = x + self.position_embeddings(position_ids)
        if self.token_type_embeddings is not None:
            if token_type_ids is None:
                token_type_ids = torch.zeros(B, T, dtype=torch.long, device=x.device)
            x = x + self.token_type_embeddings(token_type_ids)
        if self.embed_proj is not None:
            x = self.embed_proj(x)
        x = self.LayerNorm(x)
        if keep is not None:  # padded positions start from zero
            x = x * keep[..., None].to(x.dtype)
        return self.dropout(x)


class DisentangledSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = getattr(config, "attention_head_size", None) or config.hidden_size // config.num_attention_heads
        inner = self.num_heads * self.head_dim
        self.query_proj = nn.Linear(config.hidden_size, inner)
        self.key_proj = nn.Linear(config.hidden_size, inner)
        self.value_proj = nn.Linear(config.hidden_size, inner)
        self.terms = config.pos_att_type if config.relative_attention else []
        self.share_att_key = config.share_att_key
        if config.relative_attention and not config.share_att_key:
            if "c2p" in self.terms:
                self.pos_key_proj = nn.Linear(config.hidden_size, inner)
            if "p2c" in self.terms:
                self.pos_query_proj = nn.Linear(config.hidden_size, inner)
        self.pos_dropout = nn.Dropout(config.hidden_dropout_prob)
        # the reference counts the configured terms even when relative attention is off
        self.scale = 1 / math.sqrt(self.head_dim * (1 + len(config.pos_att_type)))
        self.dropout = config.attention_probs_dropout_prob
        self.config = config

    def split(self, t):  # (B, T, nh*hs) -> (B, nh, T, hs)
        return t.view(*t.shape[:2], self.num_heads, self.head_dim).transpose(1, 2)

    def position_bias(self, q, k, positions, table):
        """(B, nh, T, T) c2p + p2c scores. positions (T, T): bucketed query - key distance; table (2 span, C)."""
        span = table.shape[0] // 2
        table = self.pos_dropout(table)[None]
        B, H, T, _ = q.shape
        bias = 0
        if "c2p" in self.terms:  # query i reads the embedding of distance i - j through the key projection
            pos_k = self.split(self.key_proj(table) if self.share_att_key else self.pos_key_proj(table))  # (1, nh, 2s, hs)
            index = (positions + span).clamp(0, 2 * span - 1).expand(B, H, T, T)
            bias = bias + torch.gather(q @ pos_k.transpose(-1, -2), -1, index) * self.scale
        if "p2c" in self.terms:  # key j reads the embedding of distance j - i through the query projection
            pos_q = self.split(self.query_proj(table) if self.share_att_key else self.pos_query_proj(table))
            index = (span - positions).clamp(0, 2 * span - 1).expand(B, H, T, T)
            bias = bias + torch.gather(k @ pos_q.transpose(-1, -2), -1, index).transpose(-1, -2) * self.scale
        return bias

    def forward(self, x, mask, positions, table, output_attentions=False):
        B, T, _ = x.shape
        q, k, v = self.split(self.query_proj(x)), self.split(self.key_proj(x)), self.split(self.value_proj(x))
        bias = self.position_bias(q, k, positions, table) if self.terms else None
        attend = attention_function(self.config.attn_implementation, output_attentions)
        y, weights = attend(q, k, v, mask, scale=self.scale, dropout=self.dropout if self.training else 0.0, bias=bias)
        return y.transpose(1, 2).reshape(B, T, -1), weights


class DebertaV2Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.self = DisentangledSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, x, mask, positions, table, output_attentions=False):
        y, weights = self.self(x, mask, positions, table, output_attentions)
        return self.output(y, x), weights


class DebertaV2Layer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.attention = DebertaV2Attention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertSelfOutput(config, in_features=config.intermediate_size)

    def forward(self, x, mask, positions, table, output_attentions=False):
        x, weights = self.attention(x, mask, positions, table, output_attentions)
        return self.output(self.intermediate(x), x), weights


class ConvLayer(nn.Module):
    """v2 xlarge: a convolution over the embeddings, added to the first layer's output before a LayerNorm."""

    def __init__(self, config):
        super().__init__()
        k = config.conv_kernel_size
        self.conv = nn.Conv1d(config.hidden_size, config.hidden_size, k, padding=(k - 1) // 2, groups=config.conv_groups)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.act = get_activation(config.conv_act, "conv_act")

    def forward(self, embeddings, residual, keep):
        out = self.conv(embeddings.transpose(1, 2)).transpose(1, 2)  # (B, T, C)
        out = self.act(self.dropout(out.masked_fill(~keep[..., None], 0)))
        return self.LayerNorm(residual + out) * keep[..., None].to(out.dtype)


class DebertaV2Encoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.layer = nn.ModuleList(DebertaV2Layer(config) for _ in range(config.num_hidden_layers))
        self.config = config
        if config.relative_attention:
            self.rel_embeddings = nn.Embedding(2 * config.position_span(), config.hidden_size)
        if "layer_norm" in [x.strip() for x in config.norm_rel_ebd.lower().split("|")]:
            self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.conv = ConvLayer(config) if config.conv_kernel_size > 0 else None
        self.gradient_checkpointing = False

    def relative_positions(self, T: int, device) -> torch.Tensor:
        """(T, T) query - key distances, log-bucketed when config.position_buckets > 0."""
        ids = torch.arange(T, device=device)
        relative = ids[:, None] - ids[None, :]
        if self.config.position_buckets > 0:
            relative = log_bucket_position(relative, self.config.position_buckets, self.config.max_relative())
        return relative

    def forward(self, x, mask, keep, output_attentions=False, output_hidden_states=False):
        table = positions = None
        if self.config.relative_attention:
            table = self.rel_embeddings.weight
            table = self.LayerNorm(table) if hasattr(self, "LayerNorm") else table
            positions = self.relative_positions(x.shape[1], x.device)
        run = lambda layers, h: run_layers(self, layers, h, mask, positions, table,  # noqa: E731
                                           output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        if self.conv is None:
            outs = [run(self.layer, x)]
        else:  # the convolution joins after the first layer: that layer's output is recorded with it
            first = run(self.layer[:1], x)
            first.last_hidden_state = self.conv(x, first.last_hidden_state, keep)
            outs = [first, run(self.layer[1:], first.last_hidden_state)]
        x = outs[-1].last_hidden_state
        hidden_states = sum((o.hidden_states for o in outs), ()) + (x,) if output_hidden_states else None
        attentions = sum((o.attentions for o in outs), ()) if output_attentions else None
        return x, hidden_states, attentions


class DebertaV2PreTrainedModel(PreTrainedModel):
    config_class = DebertaV2Config
    base_model_prefix = "deberta"
    supports_gradient_checkpointing = True
    _keys_to_ignore_on_load_unexpected = (r"position_ids$", r"position_embeddings", r"^mask_predictions\.")


class DebertaV2Model(DebertaV2PreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.embeddings = DebertaV2Embeddings(config)
        self.encoder = DebertaV2Encoder(config)
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value):
        self.embeddings.word_embeddings = value

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
                output_attentions=None, output_hidden_states=None, return_dict=None):
        if (input_ids is None) == (inputs_embeds is None):
            raise InputError("DebertaV2Model: pass exactly one of input_ids or inputs_embeds")
        config = self.config
        output_attentions, output_hidden_states = output_flags(config, output_attentions, output_hidden_states)
        keep = None if attention_mask is None else attention_mask.bool()  # (B, T)
        x = self.embeddings(input_ids, token_type_ids, position_ids, keep, inputs_embeds)  # (B, T, C)
        mask = None  # padded queries see no key either (uniform weights), as in the reference
        if keep is not None and (torch.compiler.is_compiling() or not bool(keep.all())):
            mask = additive(keep[:, None, :, None] & keep[:, None, None, :], x.dtype)  # (B, 1, T, T)
        if keep is None and self.encoder.conv is not None:
            keep = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        x, hidden_states, attentions = self.encoder(x, mask, keep, output_attentions, output_hidden_states)
        return finish(BaseModelOutput(x, hidden_states, attentions),
                      config.return_dict if return_dict is None else return_dict)


class DebertaV2LMPredictionHead(nn.Module):
    """cls.predictions (legacy layout): transform (dense, act, LayerNorm), decoder tied to the word embeddings."""

    def __init__(self, config):
        super().__init__()
        self.transform = nn.Module()
        self.transform.dense = nn.Linear(config.hidden_size, config.embedding_size)
        self.transform.LayerNorm = nn.LayerNorm(config.embedding_size, eps=config.layer_norm_eps)
        self.act = get_activation(config.hidden_act)
        self.decoder = nn.Linear(config.embedding_size, config.vocab_size)
        self.bias = self.decoder.bias  # one tensor under both checkpoint names, as in the reference

    def forward(self, x):
        return self.decoder(self.transform.LayerNorm(self.act(self.transform.dense(x))))


class DebertaV2ForMaskedLM(MaskedLMHead, DebertaV2PreTrainedModel):
    """`legacy` (the default) keeps BERT's cls.predictions; otherwise lm_predictions.lm_head projects onto
    the word embeddings directly (no decoder module, nothing to tie)."""

    base_model_class = DebertaV2Model
    _tied_weights_keys = {"cls.predictions.decoder.weight": "deberta.embeddings.word_embeddings.weight"}

    def tied_weights(self) -> dict[str, str]:
        if not self.config.legacy:
            return {}
        return {**super().tied_weights(), "cls.predictions.decoder.bias": "cls.predictions.bias"}

    def build_lm_head(self, config):
        if config.legacy:
            self.cls = nn.Module()
            self.cls.predictions = DebertaV2LMPredictionHead(config)
            return
        self.lm_predictions = nn.Module()
        head = self.lm_predictions.lm_head = nn.Module()
        head.dense = nn.Linear(config.hidden_size, config.hidden_size)
        head.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        head.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.act = get_activation(config.hidden_act)

    def lm_logits(self, hidden_states):
        if self.config.legacy:
            return self.cls.predictions(hidden_states)
        head = self.lm_predictions.lm_head
        x = head.LayerNorm(self.act(head.dense(hidden_states)))
        return x @ self.deberta.embeddings.word_embeddings.weight.T + head.bias

    def get_output_embeddings(self):
        return self.cls.predictions.decoder if self.config.legacy else None


class ContextPooler(nn.Module):
    """The first token: dropout, dense, activation."""

    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.pooler_hidden_size, config.pooler_hidden_size)
        self.dropout = nn.Dropout(config.pooler_dropout)
        self.act = get_activation(config.pooler_hidden_act, "pooler_hidden_act")

    def forward(self, hidden_states):
        return self.act(self.dense(self.dropout(hidden_states[:, 0])))


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, config) -> torch.Tensor:
    """The reference's own loss while problem_type is unset (it does not record one): MSE for one label;
    cross-entropy over the rows whose label is >= 0; soft-label cross-entropy for (B, num_labels) labels."""
    if config.problem_type is not None:
        return sequence_classification_loss(logits, labels, config)
    labels = labels.to(logits.device)
    if logits.shape[-1] == 1:
        return F.mse_loss(logits.view(-1).to(labels.dtype), labels.view(-1))
    if labels.dim() == 1 or labels.shape[-1] == 1:
        labels = labels.view(-1)
        kept = labels >= 0
        if not bool(kept.any()):
            return logits.new_zeros(())
        return F.cross_entropy(logits[kept].float(), labels[kept].long())
    return -(F.log_softmax(logits, dim=-1) * labels).sum(-1).mean()


class _PooledClassifier:
    def build_classifier(self, config):
        self.pooler = ContextPooler(config)
        self.classifier = nn.Linear(config.pooler_hidden_size, self.num_outputs(config))
        self.dropout = nn.Dropout(config.hidden_dropout_prob if config.cls_dropout is None else config.cls_dropout)

    def classify(self, out):
        return self.classifier(self.dropout(self.pooler(out.last_hidden_state)))


class DebertaV2ForSequenceClassification(_PooledClassifier, SequenceClassificationHead, DebertaV2PreTrainedModel):
    base_model_class = DebertaV2Model

    def num_outputs(self, config):
        return config.num_labels

    def forward(self, input_ids=None, attention_mask=None, labels=None, return_dict=None, **inputs):
        out = self._run_base(input_ids, attention_mask, inputs)
        logits = self.classify(out)  # (B, num_labels)
        loss = classification_loss(logits, labels, self.config) if labels is not None else None
        return finish(SequenceClassifierOutput(loss, logits, out.hidden_states, out.attentions),
                      self._return_dict(return_dict))


class DebertaV2ForMultipleChoice(_PooledClassifier, MultipleChoiceHead, DebertaV2PreTrainedModel):
    base_model_class = DebertaV2Model

    def num_outputs(self, config):
        return 1


class DebertaV2ForTokenClassification(TokenClassificationHead, DebertaV2PreTrainedModel):
    base_model_class = DebertaV2Model


class DebertaV2ForQuestionAnswering(QuestionAnsweringHead, DebertaV2PreTrainedModel):
    base_model_class = DebertaV2Model
