"""The generation engine: one thread owns the model and runs a continuous batch.

Every loop turn admits waiting requests (each prefilled alone, then its keys/values left-padded into
the running batch), runs one decode step for the whole batch, samples each row with its own settings,
and drops the rows that finished. Rows never wait for the slowest one, and a new request starts
between two decode steps. Tokens travel to each request's asyncio queue through
`loop.call_soon_threadsafe`, so the event loop never runs the model.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from dataclasses import dataclass, field

import torch

from ..cache import DynamicCache
from ..generation.processors import top_p_filter


class QueueFull(Exception):
    """More requests wait than --max-queue allows; the HTTP layer answers 429."""


@dataclass
class SamplingParams:
    """One choice's settings, in OpenAI's terms; temperature 0 is greedy."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    top_logprobs: int | None = None  # None: no logprobs; 0: the chosen token's only


@dataclass
class Token:
    """What a decode step sends to a request: its text since the last event (stop strings held back)."""

    index: int
    text: str
    token_id: int | None = None
    logprob: float | None = None
    top: list[tuple[int, float]] | None = None
    finish_reason: str | None = None  # set on the last event of a choice; "error" with `error` set
    error: str | None = None


class GenerationRequest:
    """One choice of one HTTP request: prompt ids, settings, and the queue its tokens go to."""

    def __init__(self, prompt_ids: list[int], params: SamplingParams, queue: asyncio.Queue,
                 loop: asyncio.AbstractEventLoop, index: int = 0):
        self.prompt_ids, self.params, self.queue, self.loop, self.index = prompt_ids, params, queue, loop, index
        self.output_ids: list[int] = []
        self.sent = 0  # characters of the decoded output already sent
        self.cancelled = False
        self.submitted = time.perf_counter()
        self.generator = None
        if params.seed is not None:
            self.generator = torch.Generator().manual_seed(params.seed + index)

    def emit(self, token: Token) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, token)


class Engine:
    """The continuous-batching loop over a causal LM; `submit` is safe from any thread."""

    def __init__(self, model, tokenizer, max_batch_size: int = 16, max_queue: int = 64, metrics=None,
                 threads: int | None = None, max_prefill_tokens: int = 256):
        self.model, self.tokenizer, self.metrics, self.threads = model, tokenizer, metrics, threads
        self.max_prefill_tokens = max_prefill_tokens
        self.max_batch_size, self.max_queue = max_batch_size, max_queue
        self.eos = _eos_ids(model, tokenizer)
        self.device = next(model.parameters()).device
        self.waiting: collections.deque[GenerationRequest] = collections.deque()
        self.rows: list[GenerationRequest] = []
        self.cache: DynamicCache | None = None
        self.mask: torch.Tensor | None = None  # (B, S) 1 for real tokens, 0 for left padding
        self.peak_batch = 0  # the largest running batch so far (tests read it)
        self.steps = 0
        self._wake = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="pretrained-serve-engine", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._stop = True
            self._wake.notify()
        self._thread.join(timeout=30)

    def submit(self, requests: list[GenerationRequest]) -> None:
        with self._wake:
            if len(self.waiting) + len(requests) > self.max_queue:
                raise QueueFull(f"{len(self.waiting)} requests wait already (--max-queue {self.max_queue})")
            self.waiting.extend(requests)
            self._gauges()
            self._wake.notify()

    def busy(self) -> int:
        return len(self.waiting) + len(self.rows)

    # --- the loop ---

    def _run(self) -> None:
        if self.threads:  # the process's intra-op pool: this thread is the only one that runs the model
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            while True:
                with self._wake:
                    while not self._stop and not self.waiting and not self.rows:
                        self._wake.wait()
                    if self._stop:
                        return
                    admitted, budget = [], self.max_prefill_tokens
                    while self.waiting and len(self.rows) + len(admitted) < self.max_batch_size:
                        # running rows wait for every prefill: a prompt-token budget bounds that stall (one
                        # request always fits); an idle engine stalls no one and takes all it can
                        cost = len(self.waiting[0].prompt_ids)
                        if self.rows and admitted and cost > budget:
                            break
                        budget -= cost
                        admitted.append(self.waiting.popleft())
                try:
                    for request in admitted:
                        if not request.cancelled:
                            self._prefill(request)
                    if self.rows:
                        self._decode()
                except Exception as e:  # noqa: BLE001  the loop must outlive one bad batch
                    for request in admitted + self.rows:
                        request.emit(Token(request.index, "", finish_reason="error", error=f"{type(e).__name__}: {e}"))
                    self.rows, self.cache, self.mask = [], None, None
                self._gauges()

    def _prefill(self, request: GenerationRequest) -> None:
        ids = torch.tensor([request.prompt_ids], device=self.device)
        out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1)  # the last position's logits only
        if self.metrics:
            self.metrics.time_to_first_token.observe(time.perf_counter() - request.submitted)
        request.last = time.perf_counter()
        if self._advance(request, out.logits[0, -1].float()):
            return
        self._join(request, out.past_key_values.to_legacy_cache(), len(request.prompt_ids))

    def _join(self, request: GenerationRequest, layers: tuple, length: int) -> None:
        """Left-pad the longer-or-shorter side so the new row's keys line up with the batch's."""
        if self.cache is None:
            self.cache, self.mask = DynamicCache.from_legacy_cache(layers), torch.ones(1, length, dtype=torch.long)
            self.rows = [request]
            return
        S = self.mask.shape[1]
        width = max(S, length)
        merged = [(torch.cat([_pad_left(k, width), _pad_left(nk, width)]), torch.cat([_pad_left(v, width), _pad_left(nv, width)]))
                  for (k, v), (nk, nv) in zip(self.cache.to_legacy_cache(), layers)]
        row = torch.ones(1, length, dtype=torch.long)
        self.mask = torch.cat([_pad_left(self.mask, width, dim=1), _pad_left(row, width, dim=1)])
        self.cache = DynamicCache.from_legacy_cache(merged)
        self.rows.append(request)

    def _decode(self) -> None:
        last = torch.tensor([[r.output_ids[-1]] for r in self.rows], device=self.device)  # (B, 1)
        self.mask = torch.cat([self.mask, torch.ones(len(self.rows), 1, dtype=torch.long)], dim=1)
        positions = self.mask.sum(-1, keepdim=True) - 1  # left padding: each row counts its own tokens
        out = self.model(input_ids=last, attention_mask=self.mask.to(self.device), position_ids=positions.to(self.device),
                         past_key_values=self.cache, use_cache=True)
        self.cache = out.past_key_values
        self.steps += 1
        logits = out.logits[:, -1].float()  # (B, V)
        now = time.perf_counter()
        keep = []
        for i, request in enumerate(self.rows):
            if self.metrics:
                self.metrics.inter_token_latency.observe(now - request.last)
            request.last = now
            if not self._advance(request, logits[i]):
                keep.append(i)
        if len(keep) < len(self.rows):
            self._leave(keep)

    def _leave(self, keep: list[int]) -> None:
        """Drop finished rows, and the padding columns no remaining row needs."""
        if not keep:
            self.rows, self.cache, self.mask = [], None, None
            return
        index = torch.tensor(keep)
        mask = self.mask[index]
        first = int((mask.sum(0) > 0).nonzero()[0])
        layers = [(k[index.to(k.device), :, first:], v[index.to(v.device), :, first:]) for k, v in self.cache.to_legacy_cache()]
        self.rows, self.mask = [self.rows[i] for i in keep], mask[:, first:]
        self.cache = DynamicCache.from_legacy_cache(layers)

    # --- one token of one row ---

    def _advance(self, request: GenerationRequest, logits: torch.Tensor) -> bool:
        """Sample the next token, send its text; True when the request is finished (or gone)."""
        if request.cancelled:
            return True
        params = request.params
        token, logprob, top = self._sample(request, logits)
        request.output_ids.append(token)
        if self.metrics:
            self.metrics.generated_tokens.inc()
        finish = None
        if token in self.eos:
            finish = "stop"
        elif len(request.output_ids) >= params.max_tokens:
            finish = "length"
        text = self.tokenizer.decode(request.output_ids, skip_special_tokens=True)
        cut = min((text.find(s) for s in params.stop if s in text), default=-1)
        if cut >= 0:
            text, finish = text[:cut], "stop"
        ready = len(text) if finish else _safe_length(text, params.stop)
        request.emit(Token(request.index, text[request.sent:ready], token, logprob, top, finish))
        request.sent = max(request.sent, ready)
        return finish is not None

    def _sample(self, request: GenerationRequest, logits: torch.Tensor):
        params = request.params
        scores = logits.clone()
        if params.logit_bias:
            ids = torch.tensor(list(params.logit_bias), device=scores.device)
            scores[ids] += torch.tensor(list(params.logit_bias.values()), device=scores.device)
        if request.output_ids and (params.presence_penalty or params.frequency_penalty):
            counts = torch.bincount(torch.tensor(request.output_ids), minlength=scores.shape[0]).to(scores)
            scores -= counts * params.frequency_penalty + (counts > 0).to(scores) * params.presence_penalty
        if params.temperature == 0:
            token = int(scores.argmax())
        else:
            scores = top_p_filter(scores[None] / params.temperature, params.top_p)[0] if params.top_p < 1 else scores / params.temperature
            token = int(torch.multinomial(torch.softmax(scores, -1), 1, generator=request.generator))
        if params.top_logprobs is None:
            return token, None, None
        logprobs = torch.log_softmax(logits, -1)
        top = logprobs.topk(params.top_logprobs) if params.top_logprobs else None
        return token, float(logprobs[token]), list(zip(top.indices.tolist(), top.values.tolist())) if top else []

    def _gauges(self) -> None:
        self.peak_batch = max(self.peak_batch, len(self.rows))
        if self.metrics:
            self.metrics.queue_depth.set(len(self.waiting))
            self.metrics.running.set(len(self.rows))


def _pad_left(t: torch.Tensor, width: int, dim: int = 2) -> torch.Tensor:
    missing = width - t.shape[dim]
    if missing == 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim=dim)


def _safe_length(text: str, stops: list[str]) -> int:
    """Characters that can be sent: not a half-decoded character, not a possible start of a stop string."""
    end = len(text.rstrip("\ufffd"))
    held = 0
    for stop in stops:
        held = max(held, next((n for n in range(min(len(stop) - 1, end), 0, -1) if text[:end].endswith(stop[:n])), 0))
    return end - held


def _eos_ids(model, tokenizer) -> set[int]:
    ids = set()
    for source in (getattr(model, "generation_config", None), model.config):
        value = getattr(source, "eos_token_id", None)
        ids.update(value if isinstance(value, (list, tuple)) else [value] if value is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids
