"""RoBERTa and XLM-RoBERTa: BERT's encoder with position ids counted from the padding index,
and their own LM and classification heads. XLM-RoBERTa differs only in names."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..heads import MaskedLMHead, MultipleChoiceHead, QuestionAnsweringHead, SequenceClassificationHead, TokenClassificationHead
from .bert import BertConfig, BertEmbeddings, BertModel, BertPreTrainedModel


class RobertaConfig(BertConfig):
    model_type = "roberta"

    vocab_size: int = 50265
    pad_token_id: int | None = 1
    bos_token_id: int | None = 0
    eos_token_id: int | list | None = 2


class RobertaEmbeddings(BertEmbeddings):
    """Positions start after the padding index and skip pad tokens: pad -> padding_idx, i-th real token -> padding_idx + i."""

    def __init__(self, config):
        super().__init__(config)
        self.padding_idx = config.pad_token_id
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size, padding_idx=self.padding_idx)

    def position_ids(self, input_ids, inputs_embeds) -> torch.Tensor:
        if input_ids is not None:
            keep = input_ids.ne(self.padding_idx).long()
            positions = torch.cumsum(keep, dim=1) * keep + self.padding_idx
        else:
            T = inputs_embeds.shape[1]
            positions = torch.arange(self.padding_idx + 1, T + self.padding_idx + 1, device=inputs_embeds.device)[None]
            positions = positions.expand(inputs_embeds.shape[0], -1)
        # a traced graph (torch.export, ONNX) cannot branch on values; eager calls get the clear error
        if not torch.compiler.is_compiling() and int(positions.max()) >= self.max_positions:
            raise InputError(
                f"sequence length {int(positions.max()) - self.padding_idx} exceeds the {self.max_positions - self.padding_idx - 1} "
                "positions this model has (max_position_embeddings minus the padding offset); truncate the input"
            )
        return positions


class RobertaPreTrainedModel(BertPreTrainedModel):
    config_class = RobertaConfig
    base_model_prefix = "roberta"


class RobertaModel(BertModel, RobertaPreTrainedModel):
    embeddings_class = RobertaEmbeddings


class RobertaLMHead(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)
        self.bias = self.decoder.bias  # one tensor under both checkpoint names, as in the reference

    def forward(self, x):
        return self.decoder(self.layer_norm(F.gelu(self.dense(x))))


class RobertaClassificationHead(nn.Module):
    """Sentence classification on the <s> token: dropout, dense, tanh, dropout, out_proj."""

    def __init__(self, config, dropout: float):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, hidden_states):
        x = self.dropout(hidden_states[:, 0])
        return self.out_proj(self.dropout(torch.tanh(self.dense(x))))


class RobertaForMaskedLM(MaskedLMHead, RobertaPreTrainedModel):
    base_model_class = RobertaModel
    _tied_weights_keys = {"lm_head.decoder.weight": "roberta.embeddings.word_embeddings.weight"}

    def tied_weights(self) -> dict[str, str]:
        return {**super().tied_weights(), "lm_head.decoder.bias": "lm_head.bias"}

    def build_lm_head(self, config):
        self.lm_head = RobertaLMHead(config)

    def lm_logits(self, hidden_states):
        return self.lm_head(hidden_states)

    def get_output_embeddings(self):
        return self.lm_head.decoder


class RobertaForSequenceClassification(SequenceClassificationHead, RobertaPreTrainedModel):
    base_model_class = RobertaModel

    def build_classifier(self, config):
        self.classifier = RobertaClassificationHead(config, self.head_dropout(config))

    def classify(self, out):
        return self.classifier(out.last_hidden_state)


class RobertaForMultipleChoice(MultipleChoiceHead, RobertaPreTrainedModel):
    base_model_class = RobertaModel
    add_pooling_layer = True

    def build_classifier(self, config):
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, 1)

    def classify(self, out):
        return self.classifier(self.dropout(out.pooler_output))


class RobertaForTokenClassification(TokenClassificationHead, RobertaPreTrainedModel):
    base_model_class = RobertaModel


class RobertaForQuestionAnswering(QuestionAnsweringHead, RobertaPreTrainedModel):
    base_model_class = RobertaModel


class XLMRobertaConfig(RobertaConfig):
    model_type = "xlm-roberta"


def _xlm(cls):
    """The XLM-RoBERTa twin of a RoBERTa class: same code, XLMRobertaConfig."""
    name = cls.__name__.replace("Roberta", "XLMRoberta", 1)
    return type(name, (cls,), {"config_class": XLMRobertaConfig, "__module__": __name__,
                               "__doc__": f"{name}: {cls.__name__} with XLMRobertaConfig."})


XLMRobertaModel = _xlm(RobertaModel)
XLMRobertaForMaskedLM = _xlm(RobertaForMaskedLM)
XLMRobertaForSequenceClassification = _xlm(RobertaForSequenceClassification)
XLMRobertaForMultipleChoice = _xlm(RobertaForMultipleChoice)
XLMRobertaForTokenClassification = _xlm(RobertaForTokenClassification)
XLMRobertaForQuestionAnswering = _xlm(RobertaForQuestionAnswering)
# heads build their base model from base_model_class: point the XLM twins at XLMRobertaModel
for _head in (XLMRobertaForMaskedLM, XLMRobertaForSequenceClassification, XLMRobertaForMultipleChoice,
              XLMRobertaForTokenClassification, XLMRobertaForQuestionAnswering):
    _head.base_model_class = XLMRobertaModel
