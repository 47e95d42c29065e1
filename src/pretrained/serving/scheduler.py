"""The generation engine: one thread owns the model and runs a continuous batch.

Every loop turn runs one decode step for the running rows (each sampled with its own settings; rows
that finish leave at once), then spends the rest of the turn's token budget prefilling prompts: a long
prompt is prefilled in chunks over several turns, so the running streams keep getting a token every
turn instead of waiting for the whole prompt. A request whose prompt is done samples its first token
and joins the batch; first tokens are sent when the turn ends, so the next one follows a decode step
later instead of after the rest of the turn's prefill (a burst of prompts prefilled together leaves no
stream stalled between two of its tokens). Keys/values live in kv_slots.py (per-request slots, or one left-padded batch).
Tokens travel to each request's asyncio queue through `loop.call_soon_threadsafe`, so the event loop
never runs the model.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from dataclasses import dataclass, field

import torch

from ..cache import DynamicCache
from ..errors import InputError
from ..generation.processors import top_p_filter
from .kv_slots import PaddedKV, SlotKV


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
    json_object: bool = False  # response_format {"type": "json_object"}: the output is one JSON object


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
        self.prefilled = 0  # prompt tokens whose keys/values are stored
        self.slot: int | None = None  # SlotKV: the slot this request writes
        self.cache: DynamicCache | None = None  # PaddedKV: its own cache until it joins the batch
        self.constraint = None  # a JSON-prefix state under response_format json_object
        self.generator = None
        if params.seed is not None:
            self.generator = torch.Generator().manual_seed(params.seed + index)

    def emit(self, token: Token) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, token)


class Engine:
    """The continuous-batching loop over a causal LM; `submit` is safe from any thread.

    max_prefill_tokens: the largest prompt chunk one forward prefills. max_num_batched_tokens: the
    tokens one turn processes while rows run (one per running row, the rest for prefill; default: the
    batch size + 32), which bounds how long prompts hold the running streams. kv_cache: "slots" or "padded" (see kv_slots.py);
    sliding-window models always use "padded"."""

    def __init__(self, model, tokenizer, max_batch_size: int = 16, max_queue: int = 64, metrics=None,
                 threads: int | None = None, max_prefill_tokens: int = 256, max_num_batched_tokens: int | None = None,
                 kv_cache: str = "slots", max_model_len: int | None = None):
        self.model, self.tokenizer, self.metrics, self.threads = model, tokenizer, metrics, threads
        self.max_batch_size, self.max_queue = max_batch_size, max_queue
        self.max_prefill_tokens = max_prefill_tokens
        self.max_num_batched_tokens = max_num_batched_tokens or max_batch_size + 32
        if self.max_num_batched_tokens <= max_batch_size:
            raise InputError(f"--max-num-batched-tokens {self.max_num_batched_tokens} must exceed --max-batch-size "
                             f"{max_batch_size}: a full batch would leave no tokens to prefill new prompts")
        if kv_cache not in ("slots", "padded"):
            raise InputError(f"--kv-cache {kv_cache!r}: expected 'slots' or 'padded'")
        windows = getattr(model.config, "layer_windows", lambda: {})()
        if kv_cache == "slots" and any(w is not None for w in windows.values()):
            kv_cache = "padded"  # a window counts key columns back from the query: rows must end together
        self.kv_cache = kv_cache
        self.eos = _eos_ids(model, tokenizer)
        self.device = next(model.parameters()).device
        limit = max_model_len or getattr(model.config, "max_position_embeddings", None) or 4096
        self.kv = SlotKV(max_batch_size, limit, self.device) if kv_cache == "slots" else PaddedKV()
        self.waiting: collections.deque[GenerationRequest] = collections.deque()
        self.rows: list[GenerationRequest] = []
        self.prefilling: GenerationRequest | None = None  # the prompt being prefilled, chunk by chunk
        self.json_vocabulary = None  # built on the first json_object request
        self.peak_batch = 0  # the largest running batch so far (tests read it)
        self.steps = 0  # decode steps
        self.prefill_chunks = 0
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
        return len(self.waiting) + len(self.rows) + (self.prefilling is not None)

    # --- the loop ---

    def _run(self) -> None:
        if self.threads:  # the process's intra-op pool: this thread is the only one that runs the model
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            while True:
                with self._wake:
                    while not self._stop and not self.waiting and not self.rows and self.prefilling is None:
                        self._wake.wait()
                    if self._stop:
                        return
                held: list[tuple[GenerationRequest, Token]] = []  # this turn's first tokens
                try:
                    if self.rows:
                        self._decode()
                    # running streams wait for this turn's prefill: the budget bounds that stall; an idle
                    # engine stalls no one and fills the batch (each prompt still in max_prefill_tokens chunks)
                    budget = self.max_num_batched_tokens - len(self.rows) if self.rows else None
                    while budget is None or budget > 0:
                        request = self.prefilling or self._admit()
                        if request is None:
                            break
                        done = self._prefill(request, self.max_prefill_tokens if budget is None
                                             else min(budget, self.max_prefill_tokens), held)
                        budget = None if budget is None else budget - done
                    for request, token in held:
                        request.emit(token)
                except Exception as e:  # noqa: BLE001  the loop must outlive one bad batch
                    failed = self.rows + ([self.prefilling] if self.prefilling else [])
                    for request in failed:
                        request.emit(Token(request.index, "", finish_reason="error", error=f"{type(e).__name__}: {e}"))
                    self.rows, self.prefilling = [], None
                    self.kv = SlotKV(self.max_batch_size, self.kv.max_len, self.device) if self.kv_cache == "slots" \
                        else PaddedKV()
                self._gauges()

    def _admit(self) -> GenerationRequest | None:
        """The next waiting request when the batch has room for it (cancelled ones are dropped)."""
        with self._wake:
            while self.waiting and len(self.rows) < self.max_batch_size:
                request = self.waiting.popleft()
                if not request.cancelled:
                    break
            else:
                return None
            self.prefilling = request  # from here on, an error in the loop reaches this request too
            self._gauges()
        if request.params.json_object:
            from .json_mode import JSONConstraint, JSONVocabulary

            if self.json_vocabulary is None:
                self.json_vocabulary = JSONVocabulary(self.tokenizer, getattr(self.model.config, "vocab_size", None))
            request.constraint = JSONConstraint(self.json_vocabulary)
        if self.kv_cache == "slots":
            request.slot = len(self.rows)  # free: running rows hold slots 0..n-1
        else:
            request.cache = DynamicCache()
        return request

    def _prefill(self, request: GenerationRequest, budget: int, held: list) -> int:
        """Prefill the next chunk (at most `budget` tokens) of `request`'s prompt; returns its size.
        The last chunk's logits give the first token (added to `held`, sent when the turn ends), and the
        request joins the running rows."""
        if request.cancelled:  # the client left before its first token
            self.prefilling = None
            if self.kv_cache == "slots":
                self.kv.release(request.slot)
            return 0
        done = request.prefilled
        n = min(budget, len(request.prompt_ids) - done)
        ids = torch.tensor([request.prompt_ids[done:done + n]], device=self.device)
        cache = self.kv.prefill(request.slot, done, n) if self.kv_cache == "slots" else request.cache
        out = self.model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        request.prefilled += n
        self.prefill_chunks += 1
        if request.prefilled < len(request.prompt_ids):
            return n  # the rest in the next turns
        self.prefilling = None
        if self.metrics:
            self.metrics.time_to_first_token.observe(time.perf_counter() - request.submitted)
        request.last = time.perf_counter()
        if self._advance(request, out.logits[0, -1].float(), held):
            if self.kv_cache == "slots":
                self.kv.release(request.slot)
            return n
        if self.kv_cache == "slots":
            if request.slot != len(self.rows):  # rows left while it was prefilled: take the first free slot
                self.kv.move(request.slot, len(self.rows))
        else:
            self.kv.join(request.cache.to_legacy_cache(), len(request.prompt_ids))
            request.cache = None
        self.rows.append(request)
        return n

    def _decode(self) -> None:
        last = torch.tensor([[r.output_ids[-1]] for r in self.rows], device=self.device)  # (B, 1)
        if self.kv_cache == "slots":
            cache, mask, positions = self.kv.decode(len(self.rows))
        else:
            cache, mask, positions = self.kv.decode(self.device)
        out = self.model(input_ids=last, attention_mask=mask, position_ids=positions, past_key_values=cache,
                         use_cache=True)
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
        """Drop finished rows. Slots: the last running rows move into the freed slots, so running rows
        stay slots 0..n-1; padded: the batch is cut down to the kept rows."""
        if self.kv_cache == "padded":
            self.kv.keep(keep)
            self.rows = [self.rows[i] for i in keep]
            return
        n = len(keep)
        kept = set(keep)
        holes = [i for i in range(n) if i not in kept]
        movers = [i for i in keep if i >= n]
        for hole, mover in zip(holes, movers):
            self.kv.move(mover, hole)
            self.rows[hole] = self.rows[mover]
        for slot in range(n, len(self.rows)):
            self.kv.release(slot)
        self.rows = self.rows[:n]

    # --- one token of one row ---

    def _advance(self, request: GenerationRequest, logits: torch.Tensor, held: list | None = None) -> bool:
        """Sample the next token and send its text (or add it to `held`); True when the request is finished
        (or gone)."""
        if request.cancelled:
            return True
        params = request.params
        token, logprob, top = self._sample(request, logits)
        request.output_ids.append(token)
        if self.metrics:
            self.metrics.generated_tokens.inc()
        finish = None
        if request.constraint is not None:
            request.constraint.advance(token)
        if token in self.eos or request.constraint is not None and request.constraint.complete:
            finish = "stop"
        elif len(request.output_ids) >= params.max_tokens:
            finish = "length"
        text = self.tokenizer.decode(request.output_ids, skip_special_tokens=True)
        cut = min((text.find(s) for s in params.stop if s in text), default=-1)
        if cut >= 0:
            text, finish = text[:cut], "stop"
        ready = len(text) if finish else _safe_length(text, params.stop)
        event = Token(request.index, text[request.sent:ready], token, logprob, top, finish)
        if held is None:
            request.emit(event)
        else:
            held.append((request, event))
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
        if request.constraint is not None:  # only tokens that keep the output a valid JSON prefix
            allowed = request.constraint.allowed().to(scores.device)
            scores = scores[:allowed.shape[0]].masked_fill(~allowed[:scores.shape[0]], float("-inf"))
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
