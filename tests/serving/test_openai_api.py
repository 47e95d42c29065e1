"""Every endpoint through the official `openai` client against a real server: greedy text equals
model.generate()'s, a stream adds up to the non-streamed answer, settings are honoured."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import torch

MESSAGES = [{"role": "user", "content": "Tell me about the sea."}]


def generated(tiny_model, ids: list[int], max_new_tokens: int) -> list[int]:
    model, _ = tiny_model
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             max_new_tokens=max_new_tokens, do_sample=False)
    return out[0, len(ids):].tolist()


def chat_ids(tokenizer, messages) -> list[int]:
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"])


def test_chat_greedy_equals_generate_and_stream_equals_answer(server, tiny_lm, tiny_model):
    _, tokenizer = tiny_model
    client = server.client()
    answer = client.chat.completions.create(model=tiny_lm, messages=MESSAGES, temperature=0, max_tokens=12,
                                            logprobs=True, top_logprobs=3)
    ids = chat_ids(tokenizer, MESSAGES)
    expected = generated(tiny_model, ids, 12)
    choice = answer.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == tokenizer.decode(expected, skip_special_tokens=True)
    assert answer.usage.prompt_tokens == len(ids) and answer.usage.completion_tokens == len(expected)
    assert answer.usage.total_tokens == len(ids) + len(expected)
    assert choice.finish_reason == ("stop" if expected[-1] == tokenizer.eos_token_id else "length")
    assert [t.token for t in choice.logprobs.content] == [tokenizer.decode([i]) for i in expected]
    for entry in choice.logprobs.content:  # greedy: the chosen token is the most likely one
        assert len(entry.top_logprobs) == 3 and entry.top_logprobs[0].logprob == pytest.approx(entry.logprob)

    chunks = list(client.chat.completions.create(model=tiny_lm, messages=MESSAGES, temperature=0, max_tokens=12,
                                                 stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == choice.message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == choice.finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == len(expected)
    assert all(c.usage is None for c in chunks[:-1])


def test_completions_greedy_stop_and_max_tokens(server, tiny_lm, tiny_model):
    _, tokenizer = tiny_model
    client = server.client()
    prompt = "The weather today is"
    ids = tokenizer.encode(prompt)
    expected = tokenizer.decode(generated(tiny_model, ids, 10), skip_special_tokens=True)
    answer = client.completions.create(model=tiny_lm, prompt=prompt, temperature=0, max_tokens=10)
    assert answer.choices[0].text == expected
    streamed = client.completions.create(model=tiny_lm, prompt=prompt, temperature=0, max_tokens=10, stream=True)
    assert "".join(c.choices[0].text for c in streamed) == expected
    # a stop string cuts the text before it, also when it spans several tokens (held back while streaming)
    stop = expected[len(expected) // 2: len(expected) // 2 + 4]
    assert len(stop) == 4
    cut = expected[: expected.index(stop)]
    stopped = client.completions.create(model=tiny_lm, prompt=prompt, temperature=0, max_tokens=10, stop=[stop])
    assert stopped.choices[0].text == cut and stopped.choices[0].finish_reason == "stop"
    chunks = list(client.completions.create(model=tiny_lm, prompt=prompt, temperature=0, max_tokens=10, stop=stop,
                                            stream=True))
    assert "".join(c.choices[0].text for c in chunks) == cut
    assert all(stop not in c.choices[0].text for c in chunks)
    # token-id prompts and logprobs in the legacy columns
    by_ids = client.completions.create(model=tiny_lm, prompt=ids, temperature=0, max_tokens=10, logprobs=2)
    assert by_ids.choices[0].text == expected
    assert len(by_ids.choices[0].logprobs.token_logprobs) == by_ids.usage.completion_tokens


def test_sampling_seed_n_and_penalties(server, tiny_lm):
    client = server.client()
    ask = dict(model=tiny_lm, messages=MESSAGES, temperature=1.5, top_p=0.9, max_tokens=8, n=3, seed=7)
    first, again = client.chat.completions.create(**ask), client.chat.completions.create(**ask)
    texts = [c.message.content for c in first.choices]
    assert [c.index for c in first.choices] == [0, 1, 2]
    assert texts == [c.message.content for c in again.choices]  # seeded: reproducible
    assert len(set(texts)) > 1  # each choice has its own stream of random numbers
    prompt_tokens = len(chat_ids(server.state.tokenizer, MESSAGES))
    assert first.usage.prompt_tokens == prompt_tokens  # counted once, not per choice
    assert 3 <= first.usage.completion_tokens <= 3 * 8  # all three choices' tokens
    parts = [{"role": "user", "content": [{"type": "text", "text": "Tell me about "}, {"type": "text", "text": "the sea."}]}]
    as_parts = client.chat.completions.create(model=tiny_lm, messages=parts, temperature=0, max_tokens=6)
    as_text = client.chat.completions.create(model=tiny_lm, messages=MESSAGES, temperature=0, max_tokens=6)
    assert as_parts.choices[0].message.content == as_text.choices[0].message.content
    greedy = client.chat.completions.create(model=tiny_lm, messages=MESSAGES, temperature=0, max_tokens=16)
    penalized = client.chat.completions.create(model=tiny_lm, messages=MESSAGES, temperature=0, max_tokens=16,
                                               frequency_penalty=2.0, presence_penalty=2.0)
    assert penalized.choices[0].message.content != greedy.choices[0].message.content
    biased = client.completions.create(model=tiny_lm, prompt="Hello", temperature=0, max_tokens=3,
                                       logit_bias={"28": 100})
    assert biased.choices[0].text == server.state.tokenizer.decode([28, 28, 28])


def test_embeddings_equal_sentence_transformers_pooling_in_both_formats(server, minilm_path):
    transformers = pytest.importorskip("transformers")
    client = server.client()
    texts = ["A man is eating food.", "The sea is calm tonight, very calm indeed."]
    floats = client.embeddings.create(model=minilm_path, input=texts)
    raw = minilm_path
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_path)
    model = transformers.AutoModel.from_pretrained(minilm_path).eval()
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    reference = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    got = torch.tensor([d.embedding for d in floats.data])
    assert raw == floats.model and [d.index for d in floats.data] == [0, 1]
    torch.testing.assert_close(got, reference, atol=1e-5, rtol=0)
    assert floats.usage.prompt_tokens == int(batch["attention_mask"].sum())
    # the openai client decodes base64 itself when it asked for floats; ask over plain HTTP to see the wire
    import httpx

    wire = httpx.post(server.url + "/embeddings", json={"model": raw, "input": texts, "encoding_format": "base64"})
    decoded = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in wire.json()["data"]])
    np.testing.assert_array_equal(decoded, got.numpy())


def test_models_health_ready_metrics(server, tiny_lm, minilm_path):
    import httpx

    assert [m.id for m in server.client().models.list()] == [tiny_lm, minilm_path]
    assert httpx.get(server.root + "/health").json() == {"status": "ok"}
    assert httpx.get(server.root + "/ready").json() == {"status": "ready"}
    response = httpx.get(server.root + "/v1/models", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    text = httpx.get(server.root + "/metrics").text
    for name in ("pretrained_requests_total", "pretrained_queue_depth", "pretrained_running_batch_size",
                 "pretrained_time_to_first_token_seconds_bucket", "pretrained_inter_token_latency_seconds_bucket",
                 "pretrained_request_latency_seconds_bucket", "pretrained_prompt_tokens_total",
                 "pretrained_generated_tokens_total"):
        assert name in text, name
    assert 'pretrained_requests_total{endpoint="/v1/models",status="200"}' in text


def test_sse_wire_format(server, tiny_lm):
    import httpx

    body = {"model": tiny_lm, "messages": MESSAGES, "max_tokens": 4, "temperature": 0, "stream": True}
    with httpx.stream("POST", server.url + "/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in events)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"} and len({c["id"] for c in chunks}) == 1
