"""Stopping criteria: `(input_ids (B, L), scores) -> done (B,) bool`, Transformers-shaped.

A row stops when any criterion says so. `StopStringCriteria` decodes only the tail of each row
(enough tokens to cover the longest stop string) and stops when a stop string ends inside the
newest token's text.
"""

from __future__ import annotations

import time

import torch
from ..errors import InputError


class StoppingCriteria:
    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__(input_ids, scores)")


class StoppingCriteriaList(list):
    def __call__(self, input_ids: torch.LongTensor, scores=None, **kwargs) -> torch.BoolTensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for criterion in self:
            done = done | criterion(input_ids, scores, **kwargs)
        return done

    @property
    def max_length(self) -> int | None:
        return next((c.max_length for c in self if isinstance(c, MaxLengthCriteria)), None)


class MaxLengthCriteria(StoppingCriteria):
    def __init__(self, max_length: int, max_position_embeddings: int | None = None):
        self.max_length = max_length

    def __call__(self, input_ids, scores=None, **kwargs):
        return torch.full((input_ids.shape[0],), input_ids.shape[-1] >= self.max_length, device=input_ids.device)


class MaxTimeCriteria(StoppingCriteria):
    def __init__(self, max_time: float, initial_timestamp: float | None = None):
        self.max_time = max_time
        self.start = time.time() if initial_timestamp is None else initial_timestamp

    def __call__(self, input_ids, scores=None, **kwargs):
        return torch.full((input_ids.shape[0],), time.time() - self.start > self.max_time, device=input_ids.device)


class EosTokenCriteria(StoppingCriteria):
    def __init__(self, eos_token_id):
        self.eos_token_id = torch.as_tensor(eos_token_id).view(-1)

    def __call__(self, input_ids, scores=None, **kwargs):
        return torch.isin(input_ids[:, -1], self.eos_token_id.to(input_ids.device))


class StopStringCriteria(StoppingCriteria):
    """Stop a row when its text ends with one of `stop_strings` (matched across token boundaries)."""

    def __init__(self, tokenizer, stop_strings: str | list[str]):
        if tokenizer is None:
            raise InputError("stop_strings needs the tokenizer: call generate(..., stop_strings=..., tokenizer=tokenizer)")
        self.stop_strings = [stop_strings] if isinstance(stop_strings, str) else list(stop_strings)
        if not self.stop_strings or not all(isinstance(s, str) and s for s in self.stop_strings):
            raise InputError(f"stop_strings must be a non-empty string or list of them, got {stop_strings!r}")
        self.tokenizer = tokenizer
        self.tail = max(len(s) for s in self.stop_strings) + 1  # a token decodes to >= 1 character, or to nothing

    def __call__(self, input_ids, scores=None, **kwargs):
        done = []
        for row in input_ids.tolist():
            text = self.tokenizer.decode(row[-self.tail:])
            before = self.tokenizer.decode(row[-self.tail:-1]) if len(row) > 1 else ""
            # the last occurrence must end inside the newest token's text (else it matched earlier)
            done.append(any(text.rfind(s) != -1 and text.rfind(s) + len(s) > len(before) for s in self.stop_strings))
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)
