"""DistilBERT: a 6-layer BERT without token types or pooler, with its own module names
(q_lin/k_lin/v_lin/out_lin, sa_layer_norm, ffn.lin1/lin2, output_layer_norm) and heads."""

from __future__ import annotations


import torch
from torch import nn

from ..attention import attention_function
from ..configuration import PretrainedConfig
from ..errors import InputError
from ..heads import MaskedLMHead, MultipleChoiceHead, QuestionAnsweringHead, SequenceClassificationHead, TokenClassificationHead
from ..layers import get_activation, sinusoidal_table
from ..masks import padding_mask
from ..modeling import PreTrainedModel, output_flags
from ..outputs import BaseModelOutput, finish
from ..stack import run_layers


class DistilBertConfig(PretrainedConfig):
    model_type = "distilbert"
    attribute_map = {"hidden_size": "dim", "num_attention_heads": "n_heads", "num_hidden_layers": "n_layers"}
    positive_fields = PretrainedConfig.positive_fields + ("dim", "n_heads", "n_layers", "hidden_dim")

    vocab_size: int = 30522
    max_position_embeddings: int = 512
    sinusoidal_pos_embds: bool = False
    n_layers: int = 6
    n_heads: int = 12
    dim: int = 768
    hidden_dim: int = 3072
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation: str = "gelu"
    initializer_range: float = 0.02
    qa_dropout: float = 0.1
    seq_classif_dropout: float = 0.2
    pad_token_id: int | None = 0


class Embeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.dim, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.dim)
        self.LayerNorm = nn.LayerNorm(config.dim, eps=1e-12)
        self.dropout = nn.Dropout(config.dropout)
        self.max_positions = config.max_position_embeddings

    def forward(self, input_ids=None, inputs_embeds=None):
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        T = inputs_embeds.shape[1]
        if T > self.max_positions:
            raise InputError(f"sequence length {T} exceeds max_position_embeddings={self.max_positions}; truncate the input")
        positions = torch.arange(T, device=inputs_embeds.device)[None]
        return self.dropout(self.LayerNorm(inputs_embeds + self.position_embeddings(positions)))


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.n_heads, self.head_dim = config.n_heads, config.dim // config.n_heads
        self.q_lin = nn.Linear(config.dim, config.dim)
        self.k_lin = nn.Linear(config.dim, config.dim)
        self.v_lin = nn.Linear(config.dim, config.dim)
        self.out_lin = nn.Linear(config.dim, config.dim)
        self.dropout = config.attention_dropout
        self.config = config

    def forward(self, x, mask, output_attentions=False):
        B, T, C = x.shape
        split = lambda t: t.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # noqa: E731  (B, nh, T, hs)
        attend = attention_function(self.config.attn_implementation, output_attentions)
        y, weights = attend(split(self.q_lin(x)), split(self.k_lin(x)), split(self.v_lin(x)), mask,
                            scale=self.head_dim**-0.5, dropout=self.dropout if self.training else 0.0)
        return self.out_lin(y.transpose(1, 2).reshape(B, T, C)), weights


class FFN(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.lin1 = nn.Linear(config.dim, config.hidden_dim)
        self.lin2 = nn.Linear(config.hidden_dim, config.dim)
        self.activation = get_activation(config.activation, "activation")
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.lin2(self.activation(self.lin1(x))))


class TransformerBlock(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.attention = MultiHeadSelfAttention(config)
        self.sa_layer_norm = nn.LayerNorm(config.dim, eps=1e-12)
        self.ffn = FFN(config)
        self.output_layer_norm = nn.LayerNorm(config.dim, eps=1e-12)

    def forward(self, x, mask, output_attentions=False):
        y, weights = self.attention(x, mask, output_attentions)
        x = self.sa_layer_norm(y + x)
        return self.output_layer_norm(self.ffn(x) + x), weights


class DistilBertPreTrainedModel(PreTrainedModel):
    config_class = DistilBertConfig
    base_model_prefix = "distilbert"
    supports_gradient_checkpointing = True

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, Embeddings) and self.config.sinusoidal_pos_embds:
            module.position_embeddings.weight.data.copy_(sinusoidal_table(*module.position_embeddings.weight.shape))


class DistilBertModel(DistilBertPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.embeddings = Embeddings(config)
        self.transformer = nn.Module()
        self.transformer.layer = nn.ModuleList(TransformerBlock(config) for _ in range(config.n_layers))
        self.gradient_checkpointing = False
        self.post_init()
        if config.sinusoidal_pos_embds:
            self.embeddings.position_embeddings.weight.requires_grad = False

    def get_input_embeddings(self):
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value):
        self.embeddings.word_embeddings = value

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, output_attentions=None,
                output_hidden_states=None, return_dict=None):
        if (input_ids is None) == (inputs_embeds is None):
            raise InputError("pass exactly one of input_ids or inputs_embeds")
        config = self.config
        output_attentions, output_hidden_states = output_flags(config, output_attentions, output_hidden_states)
        x = self.embeddings(input_ids, inputs_embeds)  # (B, T, C)
        mask = padding_mask(attention_mask, x.dtype)
        out = run_layers(self, self.transformer.layer, x, mask, output_attentions=output_attentions,
                         output_hidden_states=output_hidden_states)
        hidden_states = out.hidden_states + (out.last_hidden_state,) if output_hidden_states else None
        return finish(BaseModelOutput(out.last_hidden_state, hidden_states, out.attentions),
                      config.return_dict if return_dict is None else return_dict)


class _DistilBertHead:
    base_model_class = DistilBertModel

    def head_dropout(self, config) -> float:
        return config.dropout


class _PreClassifier:
    """Sequence and choice scoring on the first token: pre_classifier, ReLU, dropout, classifier."""

    n_outputs = None  # None: num_labels

    def build_classifier(self, config):
        self.pre_classifier = nn.Linear(config.dim, config.dim)
        self.classifier = nn.Linear(config.dim, self.n_outputs or config.num_labels)
        self.dropout = nn.Dropout(config.seq_classif_dropout)

    def classify(self, out):
        return self.classifier(self.dropout(torch.relu(self.pre_classifier(out.last_hidden_state[:, 0]))))


class DistilBertForMaskedLM(_DistilBertHead, MaskedLMHead, DistilBertPreTrainedModel):
    _tied_weights_keys = {"vocab_projector.weight": "distilbert.embeddings.word_embeddings.weight"}

    def build_lm_head(self, config):
        self.activation = get_activation(config.activation, "activation")
        self.vocab_transform = nn.Linear(config.dim, config.dim)
        self.vocab_layer_norm = nn.LayerNorm(config.dim, eps=1e-12)
        self.vocab_projector = nn.Linear(config.dim, config.vocab_size)

    def lm_logits(self, hidden_states):
        x = self.vocab_layer_norm(self.activation(self.vocab_transform(hidden_states)))
        return self.vocab_projector(x)

    def get_output_embeddings(self):
        return self.vocab_projector


class DistilBertForSequenceClassification(_DistilBertHead, _PreClassifier, SequenceClassificationHead, DistilBertPreTrainedModel):
    pass


class DistilBertForMultipleChoice(_DistilBertHead, _PreClassifier, MultipleChoiceHead, DistilBertPreTrainedModel):
    n_outputs = 1


class DistilBertForTokenClassification(_DistilBertHead, TokenClassificationHead, DistilBertPreTrainedModel):
    pass


class DistilBertForQuestionAnswering(_DistilBertHead, QuestionAnsweringHead, DistilBertPreTrainedModel):
    qa_dropout = "qa_dropout"
