"""Continuous batching: concurrent clients get exactly their solo greedy answers while the batch really
grows; a full queue answers 429 and recovers; a client that leaves mid-stream frees its slot."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
import torch

from serve_harness import RunningServer

PROMPTS = [f"Story number {i}: once upon a time" + " and then" * (i % 5) for i in range(32)]


def solo_texts(tiny_model, prompts, max_new_tokens):
    model, tokenizer = tiny_model
    texts = []
    for prompt in prompts:
        ids = torch.tensor([tokenizer.encode(prompt)])
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                 do_sample=False)
        texts.append(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True))
    return texts


@pytest.mark.slow  # 32 solo generate() runs for the reference, then the server
def test_32_concurrent_streams_equal_their_solo_runs(tiny_lm, tiny_model):
    from openai import AsyncOpenAI

    from pretrained.serving import ServerConfig

    expected = solo_texts(tiny_model, PROMPTS, 16)
    with RunningServer(ServerConfig(model=tiny_lm, embedding_model="none", max_batch_size=16, max_queue=64)) as server:
        client = AsyncOpenAI(base_url=server.url, api_key="unused", max_retries=0)

        async def one(prompt, stream):
            if not stream:
                answer = await client.completions.create(model=tiny_lm, prompt=prompt, temperature=0, max_tokens=16)
                return answer.choices[0].text
            chunks = await client.completions.create(model=tiny_lm, prompt=prompt, temperature=0, max_tokens=16,
                                                     stream=True)
            return "".join([c.choices[0].text async for c in chunks])

        async def everyone():
            return await asyncio.gather(*(one(p, i % 2 == 0) for i, p in enumerate(PROMPTS)))

        got = asyncio.run(everyone())
        engine = server.state.engine
        assert got == expected
        assert engine.peak_batch == 16  # requests joined a running batch, up to --max-batch-size
        assert engine.steps < 32 * 15  # fewer decode steps than one-at-a-time would take
        assert "pretrained_running_batch_size" in httpx.get(server.root + "/metrics").text


def test_full_queue_answers_429_then_recovers(tiny_lm):
    from pretrained.serving import ServerConfig

    body = {"model": tiny_lm, "prompt": "Hello there", "max_tokens": 60, "temperature": 0}
    with RunningServer(ServerConfig(model=tiny_lm, embedding_model="none", max_batch_size=1, max_queue=1)) as server:
        async def flood():
            async with httpx.AsyncClient(timeout=60) as http:
                return await asyncio.gather(*(http.post(server.url + "/completions", json=body) for _ in range(6)))

        responses = asyncio.run(flood())
        statuses = sorted(r.status_code for r in responses)
        # 1 running + 1 waiting at most: 2 answers, or 1 when the first had not left the queue when the others came
        assert 1 <= statuses.count(200) <= 2 and statuses.count(429) >= 4 and set(statuses) == {200, 429}
        refused = next(r for r in responses if r.status_code == 429)
        assert refused.headers["retry-after"] == "1" and refused.json()["error"]["type"] == "rate_limit_error"
        assert httpx.post(server.url + "/completions", json=body, timeout=60).status_code == 200


def test_disconnect_mid_stream_frees_the_slot(tiny_lm):
    from pretrained.serving import ServerConfig

    with RunningServer(ServerConfig(model=tiny_lm, embedding_model="none", max_batch_size=1, max_queue=4)) as server:
        body = {"model": tiny_lm, "prompt": "Hello", "max_tokens": 200, "temperature": 0, "stream": True,
                "logit_bias": {str(server.state.tokenizer.eos_token_id): -100}}
        with httpx.stream("POST", server.url + "/completions", json=body, timeout=60) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("data: ")
        deadline = time.time() + 20
        while server.state.engine.rows and time.time() < deadline:
            time.sleep(0.05)
        assert not server.state.engine.rows  # the left request's row is gone long before its 200 tokens
        steps = server.state.engine.steps
        assert steps < 150
        answer = httpx.post(server.url + "/completions", json={**body, "stream": False, "max_tokens": 3}, timeout=60)
        assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] == 3


@pytest.mark.parametrize("stream", [False, True])
def test_responsive_health_under_load(tiny_lm, stream):
    from pretrained.serving import ServerConfig

    with RunningServer(ServerConfig(model=tiny_lm, embedding_model="none", max_batch_size=4)) as server:
        body = {"model": tiny_lm, "prompt": "Hi", "max_tokens": 120, "temperature": 0, "stream": stream,
                "logit_bias": {str(server.state.tokenizer.eos_token_id): -100}}

        async def load_and_probe():
            async with httpx.AsyncClient(timeout=120) as http:
                work = [asyncio.ensure_future(http.post(server.url + "/completions", json=body)) for _ in range(4)]
                await asyncio.sleep(0.3)
                start = time.perf_counter()
                health = await http.get(server.root + "/health")
                waited = time.perf_counter() - start
                done = await asyncio.gather(*work)
                return health, waited, done

        health, waited, done = asyncio.run(load_and_probe())
        assert health.status_code == 200 and waited < 1.0  # the model runs off the event loop
        assert all(r.status_code == 200 for r in done)
