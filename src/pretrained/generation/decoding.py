"""The decoding loop: prefill once, then one decode step per token.

`Stepper` owns what changes from step to step (cache, attention mask, positions) and calls the
model; it knows nothing of the strategy. The strategies are plain functions over a stepper:
`sample` (greedy when do_sample=False) and `beam_search`. Buffers are preallocated at max_length
(token ids, attention mask) so a step writes one column instead of concatenating.
The model contract: `model.prepare_inputs_for_generation(...)` returns the forward kwargs, and the
forward returns `.logits` (B, T, V) for the kept positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..outputs import (GenerateBeamDecoderOnlyOutput, GenerateBeamEncoderDecoderOutput, GenerateDecoderOnlyOutput,
                       GenerateEncoderDecoderOutput)


class Stepper:
    """Calls the model for the prompt (prefill) and then for one new token per row at a time."""

    def __init__(self, model, attention_mask: torch.Tensor | None, cache, max_length: int, model_kwargs: dict,
                 output_attentions: bool = False, output_hidden_states: bool = False, decode_call=None):
        self.model, self.cache, self.kwargs = model, cache, model_kwargs
        # what runs the one-token steps: the model, or its compiled call (the prompt always runs eager:
        # its shape is seen once, and compiling it would cost more than it saves)
        self.decode_call = decode_call or model
        self.output_attentions, self.output_hidden_states = output_attentions, output_hidden_states
        self.last_outputs = None
        B, L = attention_mask.shape
        # positions follow the mask: left padding does not shift the first real token off position 0
        self.positions = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)  # (B, L)
        self.padded = not bool(attention_mask.all())
        if self.padded or cache is None:  # no padding and a cache: the model needs no mask at all
            self.mask = attention_mask.new_ones(B, max_length)
            self.mask[:, :L] = attention_mask
        else:
            self.mask = None
        self.length = 0  # tokens the model has seen

    def _call(self, input_ids: torch.Tensor, position_ids: torch.Tensor, full_ids: torch.Tensor, forward) -> torch.Tensor:
        T = input_ids.shape[1]
        end = self.length + T
        static = self.cache is not None and self.cache.is_static
        # A preallocated cache gets every shape fixed (the whole mask, as long as the cache) and tensor
        # write positions: a compiled decode step is then the same graph at every position.
        mask = self.mask if static or self.mask is None else self.mask[:, :end]
        if self.cache is None:  # no cache: every step re-reads the whole sequence
            input_ids, position_ids = full_ids, self._all_positions(full_ids.shape[1])
        inputs = self.model.prepare_inputs_for_generation(
            input_ids, attention_mask=mask, position_ids=position_ids, past_key_values=self.cache,
            cache_position=torch.arange(self.length, end, device=input_ids.device) if static else None,
            **self.kwargs)
        out = forward(**inputs, output_attentions=self.output_attentions,
                      output_hidden_states=self.output_hidden_states, return_dict=True)
        if static:
            self.cache.mark_written(end)
        self.length = end
        self.last_outputs = out if (self.output_attentions or self.output_hidden_states) else None
        return out.logits[:, -1].float()  # (B, V)

    def _all_positions(self, n: int) -> torch.Tensor:
        start = self.positions[:, -1:]
        extra = n - self.positions.shape[1]
        if extra <= 0:
            return self.positions[:, :n]
        return torch.cat([self.positions, start + torch.arange(1, extra + 1, device=start.device)], dim=1)

    def prefill(self, input_ids: torch.Tensor) -> torch.Tensor:
        self.next_position = self.positions[:, -1:] + 1  # (B, 1)
        return self._call(input_ids, self.positions, input_ids, self.model)

    def __call__(self, next_tokens: torch.Tensor, full_ids: torch.Tensor) -> torch.Tensor:
        """next_tokens (B,) -> logits (B, V) of the token after them."""
        position = self.next_position
        self.next_position = position + 1
        return self._call(next_tokens[:, None], position, full_ids, self.decode_call)

    def reorder(self, beam_idx: torch.Tensor) -> None:
        if self.cache is not None:
            self.cache.reorder_cache(beam_idx)
        if self.mask is not None:
            self.mask = self.mask.index_select(0, beam_idx)
        self.next_position = self.next_position.index_select(0, beam_idx)
        self.positions = self.positions.index_select(0, beam_idx)


@dataclass
class Recorder:
    """What return_dict_in_generate asked to keep, step by step, and the output object it ends as.
    An encoder-decoder's steps record the decoder's self- and cross-attentions, beside its encoder's."""

    scores: tuple | None = None
    logits: tuple | None = None
    attentions: tuple | None = None
    cross_attentions: tuple | None = None
    hidden_states: tuple | None = None
    encoder_outputs: Any = None

    @classmethod
    def create(cls, config, stepper: Stepper) -> "Recorder":
        on = config.return_dict_in_generate
        encoder_outputs = stepper.kwargs.get("encoder_outputs")
        attentions = on and config.output_attentions
        return cls(() if on and config.output_scores else None, () if on and config.output_logits else None,
                   () if attentions else None, () if attentions and encoder_outputs is not None else None,
                   () if on and config.output_hidden_states else None, encoder_outputs)

    def add(self, scores, logits, stepper: Stepper) -> None:
        if self.scores is not None:
            self.scores += (scores,)
        if self.logits is not None:
            self.logits += (logits,)
        out, seq2seq = stepper.last_outputs, self.encoder_outputs is not None
        if self.attentions is not None:
            self.attentions += (out.decoder_attentions if seq2seq else out.attentions,)
        if self.cross_attentions is not None:
            self.cross_attentions += (out.cross_attentions,)
        if self.hidden_states is not None:
            self.hidden_states += (out.decoder_hidden_states if seq2seq else out.hidden_states,)

    def output(self, sequences: torch.Tensor, cache, **beam):
        """Transformers' class for this run: (Beam)(DecoderOnly|EncoderDecoder)Output; `beam` holds
        sequences_scores and beam_indices."""
        steps = dict(scores=self.scores, logits=self.logits)
        if self.encoder_outputs is None:
            cls = GenerateBeamDecoderOnlyOutput if beam else GenerateDecoderOnlyOutput
            steps.update(attentions=self.attentions, hidden_states=self.hidden_states)
        else:
            cls = GenerateBeamEncoderDecoderOutput if beam else GenerateEncoderDecoderOutput
            encoder = self.encoder_outputs
            steps.update(encoder_attentions=encoder.attentions, encoder_hidden_states=encoder.hidden_states,
                         decoder_attentions=self.attentions, cross_attentions=self.cross_attentions,
                         decoder_hidden_states=self.hidden_states)
        return cls(sequences=sequences, **beam, **steps, past_key_values=cache)


def sample(stepper: Stepper, input_ids: torch.Tensor, max_length: int, processors, stopping, do_sample: bool,
           eos_token_id: torch.Tensor | None, pad_token_id: int | None, streamer=None, config=None):
    """Greedy (argmax) or multinomial sampling; finished rows are padded with pad_token_id."""
    B, L = input_ids.shape
    sequences = input_ids.new_full((B, max_length), pad_token_id if pad_token_id is not None else 0)
    sequences[:, :L] = input_ids
    unfinished = torch.ones(B, dtype=torch.bool, device=input_ids.device)
    record = Recorder.create(config, stepper)
    logits = stepper.prefill(input_ids)
    cur = L
    while True:
        scores = processors(sequences[:, :cur], logits) if processors else logits
        record.add(scores, logits, stepper)
        if do_sample:
            next_tokens = torch.multinomial(F.softmax(scores, dim=-1), num_samples=1).squeeze(1)
        else:
            next_tokens = scores.argmax(dim=-1)
        if eos_token_id is not None:
            next_tokens = torch.where(unfinished, next_tokens, pad_token_id)
        sequences[:, cur] = next_tokens
        cur += 1
        if streamer is not None:
            streamer.put(next_tokens.cpu())
        if eos_token_id is not None:
            unfinished &= ~torch.isin(next_tokens, eos_token_id)
        if stopping:
            unfinished &= ~stopping(sequences[:, :cur], record.scores)
        if cur >= max_length or not bool(unfinished.any()):
            break
        logits = stepper(next_tokens, sequences[:, :cur])
    if streamer is not None:
        streamer.end()
    sequences = sequences[:, :cur]
    if not config.return_dict_in_generate:
        return sequences
    return record.output(sequences, stepper.cache)


def beam_search(stepper: Stepper, input_ids: torch.Tensor, max_length: int, processors, stopping,
                eos_token_id: torch.Tensor | None, pad_token_id: int | None, config):
    """Vectorised beam search over (batch, beams). input_ids is (B * num_beams, L), each prompt
    repeated num_beams times. Keeps the best `num_beams` finished hypotheses per prompt, scored by
    sum of log-probs / generated_length ** length_penalty, and stops per `early_stopping`."""
    num_beams, length_penalty, early_stopping = config.num_beams, config.length_penalty, config.early_stopping
    do_sample = config.do_sample
    flat, L = input_ids.shape
    B = flat // num_beams
    device = input_ids.device
    n_eos = eos_token_id.numel() if eos_token_id is not None else 0
    keep = max(2, 1 + n_eos) * num_beams  # candidates per prompt: enough to survive eos hits
    is_top = torch.arange(keep, device=device) < num_beams
    # Transformers' fill, quirks included: a pad id of 0 counts as none (T5), and without eos it is -1
    fill = (pad_token_id or int(eos_token_id[0])) if eos_token_id is not None else -1

    running = input_ids.new_full((B, num_beams, max_length), fill)
    running[:, :, :L] = input_ids.view(B, num_beams, L)
    finished = running.clone()
    running_scores = torch.zeros(B, num_beams, device=device)
    running_scores[:, 1:] = -1e9  # identical beams at the start: only the first one expands
    finished_scores = torch.full((B, num_beams), -1e9, device=device)
    finished_done = torch.zeros(B, num_beams, dtype=torch.bool, device=device)
    improvable = torch.ones(B, 1, dtype=torch.bool, device=device)
    running_indices = torch.full((B, num_beams, max_length - L), -1, dtype=torch.int32, device=device)
    finished_indices = running_indices.clone()
    record = Recorder.create(config, stepper)
    batch_offset = torch.arange(B, device=device)[:, None] * num_beams

    def gather(t, idx):  # t (B, K, ...) rows picked by idx (B, K')
        return torch.take_along_dim(t, idx.view(*idx.shape, *([1] * (t.dim() - 2))), dim=1)

    logits = stepper.prefill(input_ids)
    cur = L
    while True:
        flat_running = running[:, :, :cur].reshape(flat, cur)
        log_probs = processors(flat_running, F.log_softmax(logits, dim=-1))
        record.add(log_probs, logits, stepper)
        V = log_probs.shape[-1]
        total = (log_probs.view(B, num_beams, V) + running_scores[:, :, None]).view(B, num_beams * V)
        if do_sample:
            top = torch.multinomial(F.softmax(total, dim=-1), num_samples=keep)
            top_scores = total.gather(1, top)
        else:
            top_scores, top = torch.topk(total, keep)
        source = top // V  # beam each candidate extends
        cand = gather(running, source)
        cand[:, :, cur] = top % V
        cand_indices = gather(running_indices, source)
        cand_indices[:, :, cur - L] = (source + batch_offset).int()

        hits = stopping(cand[:, :, :cur + 1].reshape(B * keep, cur + 1), record.scores) if stopping \
            else torch.zeros(B * keep, dtype=torch.bool, device=device)
        if eos_token_id is not None:
            hits = hits | torch.isin(cand[:, :, cur].reshape(-1), eos_token_id)
        if cur + 1 >= max_length:
            hits = torch.ones_like(hits)
        hits = hits.view(B, keep)

        # continue with the best candidates that did not stop
        alive_scores = top_scores + hits.float() * -1e9
        pick = torch.topk(alive_scores, num_beams)[1]
        running, running_scores, running_indices = gather(cand, pick), gather(alive_scores, pick), gather(cand_indices, pick)

        # candidates that stopped (among the top num_beams) compete with the finished hypotheses
        just_done = hits & is_top[None]
        done_scores = top_scores / ((cur + 1 - L) ** length_penalty)
        full = finished_done.all(dim=-1, keepdim=True) & (early_stopping is True)
        done_scores = done_scores + (full.float() + (~improvable).float() + (~just_done).float()) * -1e9
        merged_scores = torch.cat([finished_scores, done_scores], dim=1)
        best = torch.topk(merged_scores, num_beams)[1]
        finished = gather(torch.cat([finished, cand], dim=1), best)
        finished_scores = gather(merged_scores, best)
        finished_indices = gather(torch.cat([finished_indices, cand_indices], dim=1), best)
        finished_done = gather(torch.cat([finished_done, just_done], dim=1), best)

        stepper.reorder((running_indices[:, :, cur - L].reshape(-1)).long())
        cur += 1
        # can a running beam still beat the worst finished one?
        best_len = (max_length - L) if (early_stopping == "never" and length_penalty > 0.0) else (cur - L)
        best_running = running_scores[:, :1] / (best_len ** length_penalty)
        worst_done = torch.where(finished_done, finished_scores.min(dim=1, keepdim=True)[0], -1.0e9)
        improvable = improvable & (best_running > worst_done).any(dim=-1, keepdim=True)
        go_on = bool(improvable.any()) and not (bool(finished_done.all()) and early_stopping is True) \
            and not bool(hits.all())
        if not go_on or cur >= max_length:
            break
        logits = stepper(running[:, :, cur - 1].reshape(flat), running[:, :, :cur].reshape(flat, cur))

    n = config.num_return_sequences
    sequences = finished[:, :n].reshape(B * n, -1)
    scores = finished_scores[:, :n].reshape(B * n)
    indices = finished_indices[:, :n].reshape(B * n, -1)
    generated = int((indices + 1).bool().sum(dim=1).max())
    sequences, indices = sequences[:, :L + generated], indices[:, :generated]
    if not config.return_dict_in_generate:
        return sequences
    return record.output(sequences, stepper.cache, sequences_scores=scores if config.output_scores else None,
                         beam_indices=indices)


def transition_scores(sequences: torch.Tensor, scores: tuple, beam_indices: torch.Tensor | None = None,
                      normalize_logits: bool = False) -> torch.Tensor:
    """scores[t][row, token] of each generated token; with beams, the row is the beam that held the sequence at
    step t (beam_indices, -1 past its end, where the score is 0). normalize_logits: log-softmax each step first."""
    if not scores:
        raise InputError("compute_transition_scores needs the scores of generate(..., output_scores=True, "
                         "return_dict_in_generate=True); got none")
    steps = torch.stack(scores, dim=1)  # (N, T, V)
    if normalize_logits:
        steps = torch.log_softmax(steps, dim=-1)
    if beam_indices is None:
        beam_indices = torch.arange(steps.shape[0], device=steps.device)[:, None].expand(-1, steps.shape[1])
    beam_indices = beam_indices.to(steps.device)
    length = int((beam_indices >= 0).sum(-1).max())  # the longest beam's generated tokens
    rows = beam_indices[:, :length]
    past_end = rows < 0
    tokens = sequences[:, sequences.shape[1] - length:].to(steps.device)  # (N', length)
    out = steps[rows.clamp(min=0), torch.arange(length, device=steps.device)[None, :], tokens]
    return out.masked_fill(past_end, 0.0)
