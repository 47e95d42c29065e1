"""The HTTP layer: OpenAI's endpoints on FastAPI, over the engine in scheduler.py.

Handlers validate a request, turn it into token ids and sampling settings, hand one
`GenerationRequest` per choice to the engine, and read tokens back from an asyncio queue
(all at once, or as Server-Sent Events). Models load in a thread after startup, so /health
answers at once and /ready (and every /v1 call) says 503 until they are in memory.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from .embeddings import EmbeddingModel
from .metrics import Metrics
from .protocol import APIError, ChatCompletionRequest, CompletionRequest, EmbeddingRequest, parse, refuse
from .scheduler import Engine, GenerationRequest, QueueFull, SamplingParams

access_log = logging.getLogger("pretrained.serving.access")
EMBEDDED_CHAT_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


@dataclass
class ServerConfig:
    """What `pretrained serve` was asked to run; a None model means the embedded one, "none" no model."""

    model: str | None = None
    embedding_model: str | None = None
    api_key: str | None = None
    max_batch_size: int = 16
    max_queue: int = 64
    max_model_len: int | None = None
    dtype: str | None = None
    threads: int | None = None  # torch intra-op threads (None: torch's default)
    max_prefill_tokens: int = 256  # the largest prompt chunk one forward prefills
    max_num_batched_tokens: int | None = None  # tokens per turn while rows run (None: batch size + 32)
    kv_cache: str = "slots"  # "slots" (per-request buffers) or "padded" (one left-padded batch)

    def __post_init__(self):
        from ..errors import InputError

        for name, low in (("max_batch_size", 1), ("max_queue", 0), ("max_model_len", 2), ("threads", 1),
                          ("max_prefill_tokens", 1), ("max_num_batched_tokens", 2)):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < low):
                raise InputError(f"--{name.replace('_', '-')} {value!r}: expected an integer >= {low}")
        if self.kv_cache not in ("slots", "padded"):
            raise InputError(f"--kv-cache {self.kv_cache!r}: expected 'slots' or 'padded'")
        if self.max_num_batched_tokens is not None and self.max_num_batched_tokens <= self.max_batch_size:
            raise InputError(f"--max-num-batched-tokens {self.max_num_batched_tokens} must exceed --max-batch-size "
                             f"{self.max_batch_size}: a full batch would leave no tokens to prefill new prompts")


class State:
    """The loaded models and the server's phase: loading, ready, draining."""

    def __init__(self, config: ServerConfig):
        self.config, self.metrics = config, Metrics()
        self.phase, self.error = "loading", None
        self.engine: Engine | None = None
        self.tokenizer = None
        self.model_name = self.embedding_name = None
        self.embedder: EmbeddingModel | None = None
        self.max_model_len = 0
        self.created = int(time.time())

    def load(self) -> None:
        from ..auto import AutoModelForCausalLM
        from ..chat import embedded_chat_model
        from ..defaults import EMBEDDED_MODEL_ID, embedded_model_path
        from ..tokenization.auto import AutoTokenizer

        config = self.config
        try:
            path = _choose(config.model, embedded_chat_model)
            if path is not None:
                self.tokenizer = AutoTokenizer.from_pretrained(path)
                model = AutoModelForCausalLM.from_pretrained(path, dtype=config.dtype).eval()
                limits = [n for n in (getattr(model.config, "max_position_embeddings", None),
                                      self.tokenizer.model_max_length) if n]
                self.max_model_len = config.max_model_len or min(limits)
                self.engine = Engine(model, self.tokenizer, config.max_batch_size, config.max_queue, self.metrics,
                                     config.threads, config.max_prefill_tokens, config.max_num_batched_tokens,
                                     config.kv_cache, self.max_model_len)
                self.engine.start()
                self.model_name = config.model or EMBEDDED_CHAT_ID
            path = _choose(config.embedding_model, embedded_model_path)
            if path is not None:
                self.embedder = EmbeddingModel(path)
                self.embedding_name = config.embedding_model or EMBEDDED_MODEL_ID
            if self.engine is None and self.embedder is None:
                raise RuntimeError("no model: pass --model / --embedding-model or install the embedded ones")
            self.phase = "ready"
        except Exception as e:  # the server stays up to say why on /ready
            self.phase, self.error = "failed", f"{type(e).__name__}: {e}"
            access_log.error(json.dumps({"event": "load_failed", "error": self.error}))

    def require(self, name: str, kind: str):
        if self.phase != "ready":
            raise APIError(503, f"the server is {self.phase}" + (f": {self.error}" if self.error else ""),
                           type="service_unavailable", headers={"Retry-After": "5"})
        served = self.model_name if kind == "chat" else self.embedding_name
        if name != served:
            known = [m for m in (self.model_name, self.embedding_name) if m]
            raise APIError(404, f"model {name!r} does not exist or does not serve {kind}; served: {known}",
                           param="model", code="model_not_found")


def create_app(config: ServerConfig) -> FastAPI:
    state = State(config)

    @asynccontextmanager
    async def lifespan(app):
        threading.Thread(target=state.load, name="pretrained-serve-load", daemon=True).start()
        yield
        state.phase = "draining"
        if state.engine is not None:
            state.engine.stop()

    app = FastAPI(title="pretrained serve", lifespan=lifespan)
    app.state.server = state

    @app.exception_handler(APIError)
    async def api_error(request: Request, e: APIError):
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    @app.middleware("http")
    async def envelope(request: Request, call_next):
        """Request id, API key, metrics and one JSON access-log line per request."""
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex
        start = time.perf_counter()
        if request.url.path.startswith("/v1/") and config.api_key and not _authorized(request, config.api_key):
            response = JSONResponse(APIError(401, "missing or invalid API key (Authorization: Bearer KEY)",
                                             code="invalid_api_key").body(), status_code=401)
        else:
            try:
                response = await call_next(request)
            except Exception as e:  # noqa: BLE001  a bug must still answer in OpenAI's shape
                response = JSONResponse(APIError(500, f"{type(e).__name__}: {e}", type="server_error").body(),
                                        status_code=500)
        response.headers["X-Request-ID"] = rid
        state.metrics.requests.labels(request.url.path, str(response.status_code)).inc()
        access_log.info(json.dumps({"request_id": rid, "method": request.method, "path": request.url.path,
                                    "status": response.status_code,
                                    "ms": round(1000 * (time.perf_counter() - start), 1)}))
        return response

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/ready")
    async def ready():
        if state.phase != "ready":
            return JSONResponse({"status": state.phase, "error": state.error}, status_code=503)
        return {"status": "ready"}

    @app.get("/metrics")
    async def metrics():
        return Response(state.metrics.render(), media_type=state.metrics.content_type)

    @app.get("/v1/models")
    async def models():
        if state.phase != "ready":
            raise APIError(503, f"the server is {state.phase}", type="service_unavailable", headers={"Retry-After": "5"})
        names = [n for n in (state.model_name, state.embedding_name) if n]
        return {"object": "list", "data": [{"id": n, "object": "model", "created": state.created,
                                            "owned_by": "pretrained"} for n in names]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        body = parse(ChatCompletionRequest, await _json(request))
        state.require(body.model, "chat")
        json_object = _json_mode(body.response_format)
        if not state.tokenizer.chat_template:
            raise APIError(400, f"{state.model_name!r} has no chat template: use /v1/completions", param="messages")
        messages = [_text_message(m.model_dump(exclude_none=True), i) for i, m in enumerate(body.messages)]
        try:
            encoded = state.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)
        except Exception as e:  # noqa: BLE001  a template error is the caller's messages
            raise APIError(400, f"messages: the chat template failed: {e}", param="messages") from None
        ids = list(encoded["input_ids"])
        top = (body.top_logprobs or 0) if body.logprobs else None
        if body.top_logprobs is not None and not body.logprobs:
            raise APIError(400, "top_logprobs: needs logprobs=true", param="top_logprobs")
        max_tokens = body.max_completion_tokens or body.max_tokens
        return await _generate(state, request, body, [ids], max_tokens, top, "chat.completion", json_object)

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = parse(CompletionRequest, await _json(request))
        state.require(body.model, "chat")
        if body.echo:
            raise refuse("echo", "echoing the prompt is not supported")
        prompts = body.prompt if isinstance(body.prompt, list) and body.prompt and not isinstance(body.prompt[0], int) \
            else [body.prompt]
        ids = [p if isinstance(p, list) else state.tokenizer.encode(p) for p in prompts]
        return await _generate(state, request, body, ids, 16 if body.max_tokens is None else body.max_tokens,
                               body.logprobs, "text_completion")

    @app.post("/v1/embeddings")
    async def embeddings(request: Request):
        body = parse(EmbeddingRequest, await _json(request))
        state.require(body.model, "embeddings")
        if body.dimensions is not None:
            raise refuse("dimensions", f"{state.embedding_name} has a fixed size")
        inputs = body.input if isinstance(body.input, list) and body.input and not isinstance(body.input[0], int) \
            else [body.input]
        if not body.input or any(len(x) == 0 for x in inputs):
            raise APIError(400, "input: must not be empty (nor hold an empty token list or string)", param="input")
        vectors, tokens = await asyncio.get_running_loop().run_in_executor(None, state.embedder.embed, inputs)
        state.metrics.prompt_tokens.inc(tokens)
        return {"object": "list", "model": body.model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                "data": [{"object": "embedding", "index": i, "embedding": state.embedder.encode(v, body.encoding_format)}
                         for i, v in enumerate(vectors)]}

    return app


def build_server(config: ServerConfig, host: str = "127.0.0.1", port: int = 8000, drain_timeout: float = 30,
                 log_level: str = "info"):
    """A uvicorn server for `config`; on SIGTERM/SIGINT the app turns to draining (new calls get 503)
    while uvicorn stops accepting and gives in-flight requests `drain_timeout` seconds."""
    import uvicorn

    app = create_app(config)
    if not access_log.handlers:  # one JSON object per line on stderr, in place of uvicorn's text access log
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        access_log.addHandler(handler)
        access_log.setLevel(logging.INFO if log_level in ("debug", "info") else logging.WARNING)
        access_log.propagate = False
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, timeout_graceful_shutdown=drain_timeout,
                                           log_level=log_level, access_log=False))
    stop = server.handle_exit

    def drain(sig, frame):
        app.state.server.phase = "draining"
        stop(sig, frame)

    server.handle_exit = drain
    return server


def _text_message(message: dict, index: int) -> dict:
    """Content given as parts ([{"type": "text", "text": ...}]) becomes one string; other parts are refused."""
    parts = message.get("content")
    if isinstance(parts, list):
        if any(not isinstance(p, dict) or p.get("type") != "text" for p in parts):
            raise APIError(400, f"messages.{index}.content: only text parts are supported", param="messages")
        message["content"] = "".join(p.get("text", "") for p in parts)
    return message


def _json_mode(response_format: dict | None) -> bool:
    """True for {"type": "json_object"}; {"type": "text"} or none is plain text; the rest is refused."""
    kind = (response_format or {"type": "text"}).get("type")
    if kind == "json_schema":
        raise refuse("response_format", "{'type': 'json_schema'} is not supported; {'type': 'json_object'} "
                     "constrains the output to a JSON object")
    if kind not in ("text", "json_object") or set(response_format or {}) - {"type"}:
        raise refuse("response_format", f"{response_format!r}: expected {{'type': 'text'}} or {{'type': 'json_object'}}")
    return kind == "json_object"


def _choose(given: str | None, embedded) -> str | None:
    return None if given in ("", "none") else given or embedded()


def _authorized(request: Request, key: str) -> bool:
    given = request.headers.get("authorization", "")
    token = given[7:] if given.lower().startswith("bearer ") else ""
    return hmac.compare_digest(token.encode(), key.encode())


async def _json(request: Request):
    try:
        return json.loads(await request.body())
    except ValueError as e:
        raise APIError(400, f"the body is not valid JSON: {e}") from None


async def _generate(state: State, http: Request, body, prompts: list[list[int]], max_tokens: int | None,
                    top_logprobs: int | None, kind: str, json_object: bool = False):
    """Submit n choices per prompt; answer with one JSON body or an SSE stream."""
    if body.n * len(prompts) > state.config.max_batch_size:
        raise APIError(400, f"n: {body.n} choices of {len(prompts)} prompt(s) exceed --max-batch-size "
                       f"{state.config.max_batch_size}", param="n")
    stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if "" in stops:
        raise APIError(400, "stop: an empty stop string would end every answer at once", param="stop")
    bias = {}
    for key, value in (body.logit_bias or {}).items():
        if not key.isdigit() or not -100 <= value <= 100:
            raise APIError(400, f"logit_bias: {key!r}: {value} is not a token id mapped to [-100, 100]",
                           param="logit_bias")
        bias[int(key)] = value
    loop, queue = asyncio.get_running_loop(), asyncio.Queue()
    requests = []
    for p, ids in enumerate(prompts):
        if not ids or len(ids) >= state.max_model_len:
            raise APIError(400, f"the prompt has {len(ids)} tokens; this model's context is {state.max_model_len} "
                           "(it needs at least 1 and leaves room for 1 new token)", param="messages", code="context_length_exceeded")
        room = state.max_model_len - len(ids)
        if max_tokens is not None and max_tokens > room:
            raise APIError(400, f"max_tokens: {max_tokens} new tokens after a {len(ids)}-token prompt exceed the "
                           f"context of {state.max_model_len}", param="max_tokens", code="context_length_exceeded")
        params = SamplingParams(max_tokens=max_tokens or room, temperature=body.temperature, top_p=body.top_p,
                                stop=stops, seed=body.seed, presence_penalty=body.presence_penalty,
                                frequency_penalty=body.frequency_penalty, logit_bias=bias, top_logprobs=top_logprobs,
                                json_object=json_object)
        requests += [GenerationRequest(ids, params, queue, loop, p * body.n + i) for i in range(body.n)]
    try:
        state.engine.submit(requests)
    except QueueFull as e:
        raise APIError(429, f"the server is busy: {e}", type="rate_limit_error", headers={"Retry-After": "1"}) from None
    state.metrics.prompt_tokens.inc(sum(len(ids) for ids in prompts))
    head = {"id": ("chatcmpl-" if kind == "chat.completion" else "cmpl-") + uuid.uuid4().hex,
            "created": int(time.time()), "model": body.model}
    prompt_tokens = sum(len(ids) for ids in prompts)  # once per prompt, not per choice, as OpenAI counts
    usage = lambda n: {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": n + prompt_tokens}  # noqa: E731
    chat = kind == "chat.completion"
    tokenizer, started = state.tokenizer, time.perf_counter()

    async def events():
        done = 0
        try:
            while done < len(requests):
                token = await queue.get()
                done += token.finish_reason is not None
                yield token
        finally:  # the client left (or the stream ended): free the slots now
            for r in requests:
                r.cancelled = True
            state.metrics.request_latency.labels(kind).observe(time.perf_counter() - started)

    if not body.stream:
        texts, finish = [""] * len(requests), [None] * len(requests)
        logprobs = [[] for _ in requests]
        async for t in events():
            if t.error:
                raise APIError(500, f"generation failed: {t.error}", type="server_error")
            texts[t.index] += t.text
            finish[t.index] = t.finish_reason or finish[t.index]
            if t.logprob is not None:
                logprobs[t.index].append(t)
        generated = sum(len(r.output_ids) for r in requests)
        choices = [_choice(chat, i, texts[i], finish[i], _logprobs(chat, tokenizer, logprobs[i], top_logprobs))
                   for i in range(len(requests))]
        return {**head, "object": kind, "choices": choices, "usage": usage(generated)}

    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    chunk_kind = "chat.completion.chunk" if chat else "text_completion"

    def sse(choices: list, usage_value=None) -> str:
        chunk = {**head, "object": chunk_kind, "choices": choices}
        if include_usage:
            chunk["usage"] = usage_value
        return f"data: {json.dumps(chunk)}\n\n"

    async def stream():
        if chat:
            yield sse([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                        "finish_reason": None} for i in range(len(requests))])
        async for t in events():
            if t.error:  # headers are gone: the error travels as an event, as OpenAI's streams do
                yield f"data: {json.dumps(APIError(500, t.error, type='server_error').body())}\n\n"
                return
            if not t.text and t.finish_reason is None:
                continue
            lp = _logprobs(chat, tokenizer, [t], top_logprobs) if t.logprob is not None else None
            if chat:
                delta = {"content": t.text} if t.text else {}
                choice = {"index": t.index, "delta": delta, "logprobs": lp, "finish_reason": t.finish_reason}
            else:
                choice = {"index": t.index, "text": t.text, "logprobs": lp, "finish_reason": t.finish_reason}
            yield sse([choice])
        if include_usage:
            yield sse([], usage(sum(len(r.output_ids) for r in requests)))
        yield "data: [DONE]\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _choice(chat: bool, index: int, text: str, finish: str, logprobs) -> dict:
    if chat:
        return {"index": index, "message": {"role": "assistant", "content": text}, "logprobs": logprobs,
                "finish_reason": finish}
    return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}


def _logprobs(chat: bool, tokenizer, tokens: list, top: int | None):
    """OpenAI's logprobs object: chat's list of {token, logprob, bytes, top_logprobs}, or the legacy columns."""
    if top is None:
        return None
    piece = lambda i: tokenizer.decode([i])  # noqa: E731
    if chat:
        return {"content": [{"token": piece(t.token_id), "logprob": t.logprob, "bytes": list(piece(t.token_id).encode()),
                             "top_logprobs": [{"token": piece(i), "logprob": lp, "bytes": list(piece(i).encode())}
                                              for i, lp in t.top]} for t in tokens]}
    return {"tokens": [piece(t.token_id) for t in tokens], "token_logprobs": [t.logprob for t in tokens],
            "top_logprobs": [{piece(i): lp for i, lp in t.top} for t in tokens]}
