"""Task heads written once. An architecture opts in with one line:

    class BertForTokenClassification(TokenClassificationHead, BertPreTrainedModel):
        base_model_class = BertModel

A head builds the base model under `base_model_prefix` (so checkpoint keys read `bert.encoder...`),
adds its layers, runs the base model and computes the loss from `labels` as Transformers does.
Heads whose pooling differs by family (sequence classification, multiple choice) call two hooks
the family defines: `build_classifier(config)` and `classify(base_outputs) -> logits`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError, InputError
from .generation.mixin import GenerationMixin
from .layers import softcap
from .outputs import (
    BaseModelOutput, CausalLMOutputWithPast, MaskedLMOutput, SequenceClassifierOutputWithPast, MultipleChoiceModelOutput, QuestionAnsweringModelOutput, SequenceClassifierOutput,
    TokenClassifierOutput, finish,
)


# --- losses (shared with decoder heads and the Trainer) ---

def sequence_classification_loss(logits: torch.Tensor, labels: torch.Tensor, config) -> torch.Tensor:
    """Regression, single-label or multi-label loss; infers and records `config.problem_type` as Transformers does."""
    num_labels = logits.shape[-1]
    if config.problem_type is None:
        if num_labels == 1:
            config.problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            config.problem_type = "single_label_classification"
        else:
            config.problem_type = "multi_label_classification"
    labels = labels.to(logits.device)
    if config.problem_type == "regression":
        if num_labels == 1:
            return F.mse_loss(logits.squeeze(), labels.squeeze().to(logits.dtype))
        return F.mse_loss(logits, labels.to(logits.dtype))
    if config.problem_type == "single_label_classification":
        return F.cross_entropy(logits.view(-1, num_labels), labels.view(-1))
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


class _CrossEntropy(torch.autograd.Function):
    """F.cross_entropy(logits, labels, ignore_index=-100) (mean over kept rows), keeping for backward the
    logits, which the model's output holds anyway, and each row's max and log-sum-exp instead of the whole
    log-softmax: one vocabulary-wide tensor less from the loss to the end of backward."""

    @staticmethod
    def forward(ctx, logits, labels):  # (N, V) float, (N,)
        keep = labels != -100
        target = labels.masked_fill(~keep, 0)
        # log-softmax = (x - max) - log(sum(exp(x - max))), with the reference kernel's rounding steps
        top = logits.amax(dim=-1, keepdim=True)  # (N, 1)
        log_sum = (logits - top).exp_().sum(-1, keepdim=True).log_()  # (N, 1)
        count = keep.sum()
        picked = (logits.gather(1, target[:, None]) - top) - log_sum  # (N, 1) log-probability of the label
        loss = -(picked.squeeze(1) * keep).sum() / count
        ctx.save_for_backward(logits, target, keep, top, log_sum, count)
        return loss

    @staticmethod
    def backward(ctx, grad):
        logits, target, keep, top, log_sum, count = ctx.saved_tensors
        # ignored rows (all of them when count is 0, as torch's nll_loss does) get no gradient
        weight = torch.where(keep, grad / count, 0.0)[:, None]  # (N, 1)
        probs = (logits - top).sub_(log_sum).exp_()  # softmax, the gradient's one vocabulary-wide allocation
        # log_softmax's backward: p * w, then -w added at the label (the order the reference rounds in)
        return probs.mul_(weight).scatter_add_(1, target[:, None], -weight), None


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of (N, C) logits against (N,) labels; label -100 is ignored."""
    if logits.dtype == torch.float32 and torch.is_grad_enabled() and logits.requires_grad:
        return _CrossEntropy.apply(logits, labels)
    return F.cross_entropy(logits, labels, ignore_index=-100)


def token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over every position; label -100 is ignored (padding, sub-words)."""
    return cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.to(logits.device).reshape(-1))


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy: position t predicts label t+1; label -100 is ignored.

    The labels move left (the last position gets -100) rather than the logits right: slicing the logits would
    copy all of them, and their gradient twice, in the largest tensors of a training step."""
    logits = logits.float()
    labels = F.pad(labels[:, 1:], (0, 1), value=-100).to(logits.device)
    return cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))


def span_loss(start_logits, end_logits, start_positions, end_positions) -> torch.Tensor:
    """Extractive QA: mean of start and end cross-entropy; positions outside the sequence are ignored."""
    if start_positions.dim() > 1:
        start_positions = start_positions.squeeze(-1)
    if end_positions.dim() > 1:
        end_positions = end_positions.squeeze(-1)
    ignored = start_logits.shape[1]
    start_positions = start_positions.clamp(0, ignored).to(start_logits.device)
    end_positions = end_positions.clamp(0, ignored).to(end_logits.device)
    start = F.cross_entropy(start_logits, start_positions, ignore_index=ignored)
    end = F.cross_entropy(end_logits, end_positions, ignore_index=ignored)
    return (start + end) / 2


# --- heads ---

class _Head:
    """Shared plumbing: build the base model, run it with dataclass outputs."""

    base_model_class: type = None
    add_pooling_layer: bool = False  # BERT-style pooler needed by this head

    def _build_base(self, config) -> None:
        kwargs = {"add_pooling_layer": self.add_pooling_layer} if _takes_pooling(self.base_model_class) else {}
        setattr(self, self.base_model_prefix, self.base_model_class(config, **kwargs))

    def _run_base(self, input_ids, attention_mask, inputs: dict):
        return self.base_model(input_ids=input_ids, attention_mask=attention_mask, return_dict=True, **inputs)

    def _return_dict(self, return_dict):
        return self.config.return_dict if return_dict is None else return_dict

    def head_dropout(self, config) -> float:
        """Dropout before a classifier; families with other field names override."""
        value = getattr(config, "classifier_dropout", None)
        return value if value is not None else config.hidden_dropout_prob


def _takes_pooling(cls) -> bool:
    import inspect

    return "add_pooling_layer" in inspect.signature(cls.__init__).parameters


class MaskedLMHead(_Head):
    """Family supplies `build_lm_head(config)` and `lm_logits(hidden_states)`; tying via _tied_weights_keys."""

    def __init__(self, config):
        super().__init__(config)
        self._build_base(config)
        self.build_lm_head(config)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, labels=None, return_dict=None, **inputs):
        out = self._run_base(input_ids, attention_mask, inputs)
        logits = self.lm_logits(out.last_hidden_state)  # (B, T, V)
        loss = token_loss(logits, labels) if labels is not None else None
        return finish(MaskedLMOutput(loss, logits, out.hidden_states, out.attentions), self._return_dict(return_dict))


class SequenceClassificationHead(_Head):
    """Family supplies `build_classifier(config)` and `classify(base_outputs) -> (B, num_labels)`."""

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self._build_base(config)
        self.build_classifier(config)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, labels=None, return_dict=None, **inputs):
        out = self._run_base(input_ids, attention_mask, inputs)
        logits = self.classify(out)
        loss = sequence_classification_loss(logits, labels, self.config) if labels is not None else None
        return finish(SequenceClassifierOutput(loss, logits, out.hidden_states, out.attentions),
                      self._return_dict(return_dict))


class TokenClassificationHead(_Head):
    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self._build_base(config)
        self.dropout = nn.Dropout(self.head_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, labels=None, return_dict=None, **inputs):
        out = self._run_base(input_ids, attention_mask, inputs)
        logits = self.classifier(self.dropout(out.last_hidden_state))  # (B, T, num_labels)
        loss = token_loss(logits, labels) if labels is not None else None
        return finish(TokenClassifierOutput(loss, logits, out.hidden_states, out.attentions),
                      self._return_dict(return_dict))


class QuestionAnsweringHead(_Head):
    qa_dropout: str | None = None  # config field of a dropout before qa_outputs (DistilBERT), if any

    def __init__(self, config):
        super().__init__(config)
        if config.num_labels != 2:
            raise ConfigError(f"{type(self).__name__} predicts start and end logits: num_labels must be 2, got {config.num_labels}")
        self.num_labels = config.num_labels
        self._build_base(config)
        if self.qa_dropout:
            self.dropout = nn.Dropout(getattr(config, self.qa_dropout))
        self.qa_outputs = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, start_positions=None, end_positions=None,
                return_dict=None, **inputs):
        out = self._run_base(input_ids, attention_mask, inputs)
        hidden = self.dropout(out.last_hidden_state) if self.qa_dropout else out.last_hidden_state
        start_logits, end_logits = self.qa_outputs(hidden).split(1, dim=-1)  # (B, T, 1) each
        start_logits, end_logits = start_logits.squeeze(-1).contiguous(), end_logits.squeeze(-1).contiguous()
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = span_loss(start_logits, end_logits, start_positions, end_positions)
        return finish(QuestionAnsweringModelOutput(loss, start_logits, end_logits, out.hidden_states, out.attentions),
                      self._return_dict(return_dict))


class MultipleChoiceHead(_Head):
    """Inputs (B, C, T) are flattened to (B*C, T); family's `classify` scores each choice -> (B*C, 1)."""

    def __init__(self, config):
        super().__init__(config)
        self._build_base(config)
        self.build_classifier(config)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, labels=None, return_dict=None, **inputs):
        reference = input_ids if input_ids is not None else inputs.get("inputs_embeds")
        num_choices = reference.shape[1]
        flat = lambda x: None if x is None else x.reshape(-1, *x.shape[2:])  # noqa: E731
        inputs = {k: flat(v) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
        out = self._run_base(flat(input_ids), flat(attention_mask), inputs)
        logits = self.classify(out).view(-1, num_choices)  # (B, C)
        loss = F.cross_entropy(logits, labels.to(logits.device)) if labels is not None else None
        return finish(MultipleChoiceModelOutput(loss, logits, out.hidden_states, out.attentions),
                      self._return_dict(return_dict))


class LMHeadAccess:
    """Decoder and encoder-decoder LMs keep their vocabulary projection as `lm_head`."""

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value


class CausalLMHead(GenerationMixin, LMHeadAccess, _Head):
    """Decoder LM: base model, then `lm_head` (no bias; tied to the input embeddings when
    config.tie_word_embeddings). The base model's forward takes past_key_values / use_cache."""

    def __init__(self, config):
        super().__init__(config)
        self._build_base(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()
        self.init_generation_config()

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, labels=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, cache_position=None, logits_to_keep: int | torch.Tensor = 0, **inputs):
        out = self.base_model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                              past_key_values=past_key_values, inputs_embeds=inputs_embeds, use_cache=use_cache,
                              output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                              return_dict=True, cache_position=cache_position, **inputs)
        hidden = out.last_hidden_state  # (B, T, C)
        if isinstance(logits_to_keep, int):
            hidden = hidden[:, -logits_to_keep:] if logits_to_keep else hidden  # generation needs the last only
        else:
            hidden = hidden[:, logits_to_keep]
        logits = softcap(self.lm_head(hidden), getattr(self.config, "final_logit_softcapping", None))  # (B, T', V)
        loss = causal_lm_loss(logits, labels) if labels is not None else None
        return finish(CausalLMOutputWithPast(loss, logits, out.past_key_values, out.hidden_states, out.attentions),
                      self._return_dict(return_dict))


class DecoderSequenceClassificationHead(_Head):
    """Scores the last non-padding token of each row (decoders have no [CLS]); `score` has no bias."""

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self._build_base(config)
        self.score = nn.Linear(config.hidden_size, config.num_labels, bias=False)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, labels=None, return_dict=None, **inputs):
        out = self._run_base(input_ids, attention_mask, inputs)
        logits = self.score(out.last_hidden_state)  # (B, T, L)
        B, T = logits.shape[:2]
        pad = self.config.pad_token_id
        if pad is None and B != 1:
            raise InputError(f"{type(self).__name__}: batches of more than one row need config.pad_token_id "
                             "to find each row's last token")
        if pad is None or input_ids is None:
            last = torch.full((B,), T - 1, device=logits.device)
        else:  # rightmost non-pad token: works for left and right padding
            keep = (input_ids != pad).to(logits.device, torch.int32)
            last = (torch.arange(T, device=logits.device, dtype=torch.int32) * keep).argmax(-1)
        pooled = logits[torch.arange(B, device=logits.device), last]  # (B, L)
        loss = sequence_classification_loss(pooled, labels, self.config) if labels is not None else None
        return finish(SequenceClassifierOutputWithPast(loss, pooled, out.past_key_values, out.hidden_states,
                                                       out.attentions), self._return_dict(return_dict))


class DecoderTokenClassificationHead(_Head):
    """A label per token for decoder families: `score` (with a bias unless config.token_classification_bias
    is False) after dropout from classifier_dropout, else hidden_dropout, else 0.1, as Transformers does."""

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self._build_base(config)
        self.dropout = nn.Dropout(self.head_dropout(config))
        self.score = nn.Linear(config.hidden_size, config.num_labels,
                               bias=getattr(config, "token_classification_bias", True))
        self.post_init()

    def head_dropout(self, config) -> float:
        for field in ("classifier_dropout", "hidden_dropout"):
            if getattr(config, field, None) is not None:
                return getattr(config, field)
        return 0.1

    def forward(self, input_ids=None, attention_mask=None, labels=None, return_dict=None, **inputs):
        out = self._run_base(input_ids, attention_mask, inputs)
        logits = self.score(self.dropout(out.last_hidden_state))  # (B, T, num_labels)
        loss = token_loss(logits, labels) if labels is not None else None
        return finish(TokenClassifierOutput(loss, logits, out.hidden_states, out.attentions),
                      self._return_dict(return_dict))


# --- encoder-decoder LMs ---

def shift_tokens_right(labels: torch.Tensor, pad_token_id: int | None, decoder_start_token_id: int | None,
                       owner: str = "the model") -> torch.Tensor:
    """decoder_input_ids from labels (B, T): the start token, then labels[:, :-1]; -100 (ignored) becomes pad."""
    if decoder_start_token_id is None:
        raise ConfigError(f"{owner}: config.decoder_start_token_id is None, but it starts the decoder_input_ids built "
                         "from labels; set it (T5 uses the pad token id) or pass decoder_input_ids")
    if pad_token_id is None:
        raise ConfigError(f"{owner}: config.pad_token_id is None, but it replaces the ignored (-100) positions of "
                         "labels in the decoder_input_ids built from them; set it or pass decoder_input_ids")
    shifted = labels.new_empty(labels.shape)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill(shifted == -100, pad_token_id)


class Seq2SeqLMHead(GenerationMixin, LMHeadAccess):
    """What encoder-decoder LMs share: decoder inputs from labels and generate()'s step inputs. generate()
    runs `get_encoder()` once; each step then feeds the decoder its new ids with the stored encoder output."""

    def get_encoder(self):
        return self.encoder

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id, type(self).__name__)

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None,
                                      cache_position=None, encoder_outputs=None, encoder_attention_mask=None, **kwargs):
        # the loop's ids and mask are the decoder's; the prompt's mask is the encoder's
        return dict(decoder_input_ids=input_ids, decoder_attention_mask=attention_mask, encoder_outputs=encoder_outputs,
                    attention_mask=encoder_attention_mask, past_key_values=past_key_values,
                    use_cache=past_key_values is not None, cache_position=cache_position, **kwargs)


def encode_decode(model, input_ids=None, attention_mask=None, inputs_embeds=None, encoder_outputs=None,
                  decoder_input_ids=None, decoder_attention_mask=None, decoder_inputs_embeds=None, past_key_values=None,
                  use_cache=None, cache_position=None, output_attentions=None, output_hidden_states=None):
    """Run `model.encoder` (unless `encoder_outputs` are given) then `model.decoder` over it; both stacks take
    (input_ids, attention_mask, inputs_embeds, ...) and return dataclasses. -> (encoder outputs, decoder outputs)."""
    if decoder_input_ids is None and decoder_inputs_embeds is None:
        raise InputError(f"{type(model).__name__} needs decoder_input_ids, decoder_inputs_embeds or labels "
                         "(the decoder's input is built from labels when they are given)")
    if encoder_outputs is None:
        encoder_outputs = model.encoder(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                                        output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                                        return_dict=True)
    elif isinstance(encoder_outputs, (tuple, list)):
        encoder_outputs = BaseModelOutput(*encoder_outputs)
    decoder_outputs = model.decoder(
        input_ids=decoder_input_ids, attention_mask=decoder_attention_mask, inputs_embeds=decoder_inputs_embeds,
        encoder_hidden_states=encoder_outputs.last_hidden_state, encoder_attention_mask=attention_mask,
        past_key_values=past_key_values, use_cache=use_cache, cache_position=cache_position,
        output_attentions=output_attentions, output_hidden_states=output_hidden_states, return_dict=True)
    return encoder_outputs, decoder_outputs


def seq2seq_output(output_class, encoder_outputs, decoder_outputs, **fields):
    """Seq2SeqModelOutput / Seq2SeqLMOutput from the two stacks' outputs (plus loss/logits or last_hidden_state)."""
    return output_class(past_key_values=decoder_outputs.past_key_values,
                        decoder_hidden_states=decoder_outputs.hidden_states,
                        decoder_attentions=decoder_outputs.attentions, cross_attentions=decoder_outputs.cross_attentions,
                        encoder_last_hidden_state=encoder_outputs.last_hidden_state,
                        encoder_hidden_states=encoder_outputs.hidden_states,
                        encoder_attentions=encoder_outputs.attentions, **fields)
