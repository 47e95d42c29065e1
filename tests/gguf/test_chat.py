"""The offline chat default: pipeline("text-generation") with no model, `pretrained chat`, `pretrained run`."""

from __future__ import annotations

import io

import pytest


@pytest.mark.slow
def test_pipeline_default_is_embedded_smollm(smollm_path):
    from pretrained import pipeline

    pipe = pipeline("text-generation")
    assert pipe.model.name_or_path == smollm_path
    # greedy: text-generation samples by default (Transformers 5's do_sample=True, temperature=0.7)
    out = pipe([{"role": "user", "content": "What is the capital of France?"}], max_new_tokens=8, do_sample=False)
    assert "Paris" in out[0]["generated_text"][-1]["content"]


def test_chat_loop_commands(smollm_path):
    from pretrained.chat import ChatSession, chat_loop, load_chat_model

    model, tokenizer = load_chat_model()
    session = ChatSession(model, tokenizer, max_new_tokens=8)
    lines = iter(["What is the capital of France?", "/system Answer in one word.", "/reset"])

    def read(prompt):
        try:
            return next(lines)
        except StopIteration:
            raise EOFError from None

    out = io.StringIO()
    assert chat_loop(session, read=read, out=out) == 0
    text = out.getvalue()
    assert "Paris" in text and "system prompt set" in text and "conversation cleared" in text
    assert session.system == "Answer in one word." and session.history == []


@pytest.mark.slow
def test_cli_run_answers_question(smollm_path, capsys):
    from pretrained.cli import main

    assert main(["run", "text-generation", "What is the capital of France?", "--max-new-tokens", "8", "-q"]) == 0
    assert "Paris" in capsys.readouterr().out


def test_context_window_drops_oldest_turns(smollm_path):
    from pretrained.chat import ChatSession, load_chat_model

    model, tokenizer = load_chat_model()
    session = ChatSession(model, tokenizer, max_new_tokens=8)
    session.context = 60
    session.history = [{"role": "user", "content": "word " * 20}, {"role": "assistant", "content": "ok"}] * 3
    session.history.append({"role": "user", "content": "Hi"})
    ids = session._prompt_ids()
    assert ids.shape[1] + 8 <= 60 and session.history[-1]["content"] == "Hi"
