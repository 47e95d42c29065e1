"""Bad requests get OpenAI's error JSON with the right status, and the server keeps serving: 400, 401,
404, 503 while loading; the CLI serves and drains on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import openai
import pytest
from serve_harness import RunningServer, free_port

MESSAGES = [{"role": "user", "content": "Hi"}]


def assert_error(response, status: int, param=None):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if param is not None:
        assert error["param"] == param, error
    return error


def test_bad_requests_get_400_404_and_the_server_keeps_serving(server, tiny_lm):
    url = server.url + "/chat/completions"
    ok = {"model": tiny_lm, "messages": MESSAGES, "max_tokens": 2, "temperature": 0}
    assert_error(httpx.post(url, content=b"{not json", headers={"content-type": "application/json"}), 400)
    assert_error(httpx.post(url, json={**ok, "messages": "hello"}), 400, "messages")
    assert_error(httpx.post(url, json={**ok, "temperature": "hot"}), 400, "temperature")
    assert_error(httpx.post(url, json={**ok, "temperature": 5}), 400, "temperature")
    assert_error(httpx.post(url, json={**ok, "max_tokens": 100000}), 400, "max_tokens")
    assert_error(httpx.post(url, json={**ok, "n": 17}), 400, "n")
    assert_error(httpx.post(url, json={**ok, "frobnicate": 1}), 400, "frobnicate")
    assert_error(httpx.post(url, json={**ok, "response_format": {"type": "json_schema", "json_schema": {}}}), 400,
                 "response_format")
    assert_error(httpx.post(url, json={**ok, "top_logprobs": 2}), 400, "top_logprobs")
    assert_error(httpx.post(url, json={**ok, "logit_bias": {"x": 1}}), 400, "logit_bias")
    assert_error(httpx.post(url, json={**ok, "stop": ""}), 400, "stop")
    assert_error(httpx.post(url, json={**ok, "tools": []}), 400, "tools")
    image = [{"type": "image_url", "image_url": {"url": "http://x"}}]
    assert_error(httpx.post(url, json={**ok, "messages": [{"role": "user", "content": image}]}), 400, "messages")
    assert_error(httpx.post(server.url + "/embeddings", json={"model": server.state.embedding_name, "input": []}),
                 400, "input")
    long_prompt = [{"role": "user", "content": "word " * 400}]
    assert_error(httpx.post(url, json={**ok, "messages": long_prompt}), 400)["code"] == "context_length_exceeded"
    assert_error(httpx.post(url, json={**ok, "model": "nope"}), 404, "model")["code"] == "model_not_found"
    assert_error(httpx.post(server.url + "/embeddings", json={"model": tiny_lm, "input": "x"}), 404, "model")
    with pytest.raises(openai.NotFoundError):
        server.client().chat.completions.create(model="gpt-4o", messages=MESSAGES)
    with pytest.raises(openai.BadRequestError):
        server.client().completions.create(model=tiny_lm, prompt="x", max_tokens=1, echo=True)
    assert httpx.post(url, json=ok).status_code == 200
    metrics = httpx.get(server.root + "/metrics").text
    assert 'pretrained_requests_total{endpoint="/v1/chat/completions",status="400"}' in metrics


def test_api_key_is_required_on_v1_only(tiny_lm):
    from pretrained.serving import ServerConfig

    with RunningServer(ServerConfig(model=tiny_lm, embedding_model="none", api_key="s3cret")) as server:
        with pytest.raises(openai.AuthenticationError):
            server.client(api_key="wrong").models.list()
        assert_error(httpx.get(server.url + "/models"), 401)
        assert [m.id for m in server.client(api_key="s3cret").models.list()] == [tiny_lm]
        assert httpx.get(server.root + "/health").status_code == 200
        assert httpx.get(server.root + "/ready").status_code == 200


def test_a_failing_model_call_answers_500_and_the_engine_keeps_running(tiny_lm):
    from pretrained.serving import ServerConfig

    with RunningServer(ServerConfig(model=tiny_lm, embedding_model="none")) as server:
        engine, model = server.state.engine, server.state.engine.model

        def broken(**_):
            engine.model = model  # fails once
            raise RuntimeError("boom")

        engine.model = broken
        body = {"model": tiny_lm, "prompt": "Hello", "max_tokens": 3}
        error = assert_error(httpx.post(server.url + "/completions", json=body, timeout=60), 500)
        assert error["type"] == "server_error" and "boom" in error["message"]
        assert httpx.post(server.url + "/completions", json=body, timeout=60).status_code == 200


def test_serve_flags_are_checked_before_anything_loads(capsys):
    from pretrained.cli import EXIT_USAGE, main

    assert main(["serve", "--max-batch-size", "0", "--model", "none", "--embedding-model", "none"]) == EXIT_USAGE
    assert "--max-batch-size 0: expected an integer >= 1" in capsys.readouterr().err


def test_503_while_loading(tiny_lm):
    from fastapi.testclient import TestClient

    from pretrained.serving import ServerConfig, create_app

    client = TestClient(create_app(ServerConfig(model=tiny_lm, embedding_model="none")))  # no `with`: the loading thread never starts
    assert client.get("/health").status_code == 200
    assert client.get("/ready").json()["status"] == "loading"
    error = assert_error(client.post("/v1/chat/completions", json={"model": tiny_lm, "messages": MESSAGES}), 503)
    assert error["type"] == "service_unavailable"


def test_failed_load_is_reported_on_ready(tmp_path):
    from fastapi.testclient import TestClient

    from pretrained.serving import ServerConfig, create_app

    with TestClient(create_app(ServerConfig(model=str(tmp_path / "missing"), embedding_model="none"))) as client:
        deadline = time.time() + 30
        while client.get("/ready").json()["status"] == "loading" and time.time() < deadline:
            time.sleep(0.05)
        ready = client.get("/ready")
        assert ready.status_code == 503 and ready.json()["status"] == "failed" and "missing" in ready.json()["error"]


@pytest.mark.slow  # a fresh interpreter imports torch and the stack
def test_cli_serves_and_drains_on_sigterm(tiny_lm):
    port = free_port()
    env = {**os.environ, "PRETRAINED_SERVE_MAX_BATCH_SIZE": "4"}
    process = subprocess.Popen([sys.executable, "-m", "pretrained.cli", "serve", "--model", tiny_lm,
                                "--embedding-model", "none", "--port", str(port), "--drain-timeout", "20", "--threads", "1"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(root + "/ready").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        body = {"model": tiny_lm, "prompt": "Hello", "max_tokens": 40, "temperature": 0, "stream": True,
                "logit_bias": {"2": -100}}
        with httpx.stream("POST", root + "/v1/completions", json=body, timeout=60) as response:
            lines = response.iter_lines()
            first = next(lines)
            process.send_signal(signal.SIGTERM)  # mid-stream: the stream still completes
            rest = [line for line in lines if line]
        assert first.startswith("data: ") and rest[-1] == "data: [DONE]"
        finishes = [json.loads(line[6:])["choices"][0]["finish_reason"] for line in [first, *rest[:-1]]]
        assert finishes[-1] == "length"
        # uvicorn re-raises the signal once drained, so the exit status is the conventional "ended by SIGTERM"
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)
        output = process.stdout.read().decode()
        assert "Finished server process" in output
        logged = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        assert any(entry["path"] == "/v1/completions" and entry["status"] == 200 and entry["request_id"]
                   for entry in logged)  # the JSON access log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
