"""ModelOutput dataclasses: attribute, key and index access, as Transformers' outputs.

Index access and `to_tuple()` skip fields that are None, so `outputs[0]` is the loss when labels
were given and the logits otherwise, exactly as in Transformers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Optional


class ModelOutput(Mapping):
    """Base of every output dataclass; behaves as an ordered mapping of its non-None fields."""

    def keys(self):
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def __iter__(self):
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def __getitem__(self, key):
        if isinstance(key, str):
            if key not in self.keys():
                raise KeyError(key)
            return getattr(self, key)
        return self.to_tuple()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        setattr(self, key, value)

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def to_tuple(self) -> tuple:
        return tuple(getattr(self, name) for name in self.keys())


def finish(output: ModelOutput, return_dict: bool | None) -> ModelOutput | tuple:
    """Apply a forward's `return_dict` (None means the default, a dataclass)."""
    return output if return_dict is None or return_dict else output.to_tuple()


Tensor = Any  # torch.Tensor; not imported so this module stays cheap
Tensors = Optional[tuple]


@dataclass
class BaseModelOutput(ModelOutput):
    last_hidden_state: Tensor = None
    hidden_states: Tensors = None
    attentions: Tensors = None


@dataclass
class BaseModelOutputWithPooling(ModelOutput):
    last_hidden_state: Tensor = None
    pooler_output: Tensor = None
    hidden_states: Tensors = None
    attentions: Tensors = None


@dataclass
class BaseModelOutputWithPast(ModelOutput):
    last_hidden_state: Tensor = None
    past_key_values: Any = None
    hidden_states: Tensors = None
    attentions: Tensors = None


@dataclass
class BaseModelOutputWithPastAndCrossAttentions(ModelOutput):
    last_hidden_state: Tensor = None
    past_key_values: Any = None
    hidden_states: Tensors = None
    attentions: Tensors = None
    cross_attentions: Tensors = None


@dataclass
class _HeadOutput(ModelOutput):
    """Fields shared by the encoder task heads; each head keeps Transformers' class name below."""

    loss: Tensor = None
    logits: Tensor = None
    hidden_states: Tensors = None
    attentions: Tensors = None


class MaskedLMOutput(_HeadOutput):
    pass


class SequenceClassifierOutput(_HeadOutput):
    pass


class ImageClassifierOutput(_HeadOutput):
    pass


class TokenClassifierOutput(_HeadOutput):
    pass


class MultipleChoiceModelOutput(_HeadOutput):
    pass


@dataclass
class CausalLMOutputWithPast(ModelOutput):
    loss: Tensor = None
    logits: Tensor = None
    past_key_values: Any = None
    hidden_states: Tensors = None
    attentions: Tensors = None


@dataclass
class SequenceClassifierOutputWithPast(ModelOutput):
    loss: Tensor = None
    logits: Tensor = None
    past_key_values: Any = None
    hidden_states: Tensors = None
    attentions: Tensors = None


@dataclass
class QuestionAnsweringModelOutput(ModelOutput):
    loss: Tensor = None
    start_logits: Tensor = None
    end_logits: Tensor = None
    hidden_states: Tensors = None
    attentions: Tensors = None


@dataclass
class Seq2SeqModelOutput(ModelOutput):
    last_hidden_state: Tensor = None
    past_key_values: Any = None
    decoder_hidden_states: Tensors = None
    decoder_attentions: Tensors = None
    cross_attentions: Tensors = None
    encoder_last_hidden_state: Tensor = None
    encoder_hidden_states: Tensors = None
    encoder_attentions: Tensors = None


@dataclass
class Seq2SeqLMOutput(ModelOutput):
    loss: Tensor = None
    logits: Tensor = None
    past_key_values: Any = None
    decoder_hidden_states: Tensors = None
    decoder_attentions: Tensors = None
    cross_attentions: Tensors = None
    encoder_last_hidden_state: Tensor = None
    encoder_hidden_states: Tensors = None
    encoder_attentions: Tensors = None


@dataclass
class Seq2SeqSequenceClassifierOutput(ModelOutput):
    loss: Tensor = None
    logits: Tensor = None  # (B, num_labels)
    past_key_values: Any = None
    decoder_hidden_states: Tensors = None
    decoder_attentions: Tensors = None
    cross_attentions: Tensors = None
    encoder_last_hidden_state: Tensor = None
    encoder_hidden_states: Tensors = None
    encoder_attentions: Tensors = None


@dataclass
class Seq2SeqQuestionAnsweringModelOutput(ModelOutput):
    loss: Tensor = None
    start_logits: Tensor = None
    end_logits: Tensor = None
    past_key_values: Any = None
    decoder_hidden_states: Tensors = None
    decoder_attentions: Tensors = None
    cross_attentions: Tensors = None
    encoder_last_hidden_state: Tensor = None
    encoder_hidden_states: Tensors = None
    encoder_attentions: Tensors = None


# --- generate() results (return_dict_in_generate=True) ---

@dataclass
class GenerateDecoderOnlyOutput(ModelOutput):
    sequences: Tensor = None
    scores: Tensors = None  # processed scores per step, (B, V) each
    logits: Tensors = None  # raw logits per step
    attentions: Tensors = None
    hidden_states: Tensors = None
    past_key_values: Any = None


@dataclass
class GenerateBeamDecoderOnlyOutput(ModelOutput):
    sequences: Tensor = None
    sequences_scores: Tensor = None
    scores: Tensors = None
    logits: Tensors = None
    beam_indices: Tensor = None
    attentions: Tensors = None
    hidden_states: Tensors = None
    past_key_values: Any = None


@dataclass
class GenerateEncoderDecoderOutput(ModelOutput):
    sequences: Tensor = None
    scores: Tensors = None
    logits: Tensors = None
    encoder_attentions: Tensors = None  # per encoder layer, (B, H, S, S): one row per prompt
    encoder_hidden_states: Tensors = None
    decoder_attentions: Tensors = None  # per step, per decoder layer
    cross_attentions: Tensors = None
    decoder_hidden_states: Tensors = None
    past_key_values: Any = None


@dataclass
class GenerateBeamEncoderDecoderOutput(ModelOutput):
    sequences: Tensor = None
    sequences_scores: Tensor = None
    scores: Tensors = None
    logits: Tensors = None
    beam_indices: Tensor = None
    encoder_attentions: Tensors = None
    encoder_hidden_states: Tensors = None
    decoder_attentions: Tensors = None
    cross_attentions: Tensors = None
    decoder_hidden_states: Tensors = None
    past_key_values: Any = None
