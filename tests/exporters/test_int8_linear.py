"""PyTorch int8 weight-only linear layers (quantize_linear_int8): logits close to float32, generate() runs
the same loop, save_int8 / load_int8 round-trip the codes and scales exactly."""

from __future__ import annotations

import json
import os

import pytest
import torch

from checkpoints import hf_checkpoint
from pretrained import AutoModelForCausalLM
from pretrained.errors import CheckpointError, InputError, UnsupportedOptionError
from pretrained.int8 import Int8Linear, load_int8, quantize_linear_int8, save_int8

FAMILIES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", dict(vocab_size=300, hidden_size=64, num_hidden_layers=2,
                                                      num_attention_heads=4, num_key_value_heads=2,
                                                      intermediate_size=128, max_position_embeddings=64,
                                                      bos_token_id=1, eos_token_id=2, tie_word_embeddings=True)),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", dict(vocab_size=300, n_embd=64, n_layer=2, n_head=4, n_positions=64,
                                                   bos_token_id=1, eos_token_id=2)),
}


@pytest.fixture(params=list(FAMILIES))
def source(request, tmp_path):
    config_name, model_name, kwargs = FAMILIES[request.param]
    return hf_checkpoint(tmp_path / request.param, config_name, model_name, **kwargs)


def test_int8_logits_close_to_float32_and_generate(source):
    ours = AutoModelForCausalLM.from_pretrained(source).eval()
    int8 = quantize_linear_int8(AutoModelForCausalLM.from_pretrained(source).eval())
    modules = int8.config.quantization_config["modules"]
    assert modules and all(isinstance(int8.get_submodule(n), Int8Linear) for n in modules)
    assert all(int8.get_submodule(n).weight.dtype == torch.int8 for n in modules)
    assert "lm_head" not in modules  # tied to the float embedding: left as it is
    ids = torch.randint(3, 300, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = ours(ids).logits, int8(ids).logits
    # per-row absmax int8: the error is a small fraction of the logits' spread
    assert (got - expected).abs().max() <= 0.05 * expected.std()
    assert torch.nn.functional.cosine_similarity(got.flatten(), expected.flatten(), dim=0) >= 0.999
    # generate: greedy tokens are the argmax of the int8 model's own uncached forward over the result
    tokens = int8.generate(ids, max_new_tokens=8, min_new_tokens=8, do_sample=False)
    assert tokens.shape == (2, 17)
    with torch.no_grad():
        assert torch.equal(int8(tokens).logits[:, 8:-1].argmax(-1), tokens[:, 9:])
    assert int8.generate(ids, max_new_tokens=8, min_new_tokens=8, num_beams=2, do_sample=False).shape == (2, 17)


def test_compiled_path_equals_the_dequantized_weights(source):
    """Off the CPU kernel (compiled graphs, other devices) the product is the dequantized weight's, in float32."""
    int8 = quantize_linear_int8(AutoModelForCausalLM.from_pretrained(source).eval())
    layer = int8.get_submodule(int8.config.quantization_config["modules"][0])
    x = torch.randn(3, layer.in_features, dtype=torch.float64)
    expected = x @ layer.dequantized_weight(torch.float64).T + (0 if layer.bias is None else layer.bias.double())
    torch.testing.assert_close(layer(x), expected, atol=1e-10, rtol=0)  # float64 inputs take the plain path
    compiled = torch.compile(layer, backend="eager")
    torch.testing.assert_close(compiled(x.float()), expected.float(), atol=1e-4, rtol=0)


def test_save_and_load_int8(source, tmp_path):
    int8 = quantize_linear_int8(AutoModelForCausalLM.from_pretrained(source).eval())
    save_int8(int8, tmp_path / "int8")
    config = json.loads((tmp_path / "int8" / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "int8_weight_only"
    # the codes are one byte a weight: the file is well under the float32 one
    assert os.path.getsize(tmp_path / "int8" / "model.safetensors") < 0.6 * os.path.getsize(
        os.path.join(source, "model.safetensors"))
    loaded = load_int8(tmp_path / "int8")
    assert type(loaded) is type(int8) and not loaded.training
    assert loaded.get_output_embeddings().weight is loaded.get_input_embeddings().weight or "lm_head" in \
        int8.config.quantization_config["modules"] or not int8.tied_weights()
    ids = torch.randint(3, 300, (1, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, int8(ids).logits)
    assert torch.equal(loaded.generate(ids, max_new_tokens=5), int8.generate(ids, max_new_tokens=5))
    # from_pretrained reads the quantized folder too (through load_int8)
    with torch.no_grad():
        assert torch.equal(AutoModelForCausalLM.from_pretrained(tmp_path / "int8")(ids).logits, int8(ids).logits)


def test_int8_refusals(source, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(source)
    with pytest.raises(InputError, match="model.eval"):
        quantize_linear_int8(model.train())
    with pytest.raises(InputError, match="save_int8 needs a model quantized"):
        save_int8(model, tmp_path / "x")
    int8 = quantize_linear_int8(model.eval(), skip_modules=["model.layers.0", "transformer.h.0"])
    assert not any(".0." in n for n in int8.config.quantization_config["modules"])
    with pytest.raises(InputError, match="already quantized"):
        quantize_linear_int8(int8)
    with pytest.raises(CheckpointError, match="load_int8 reads folders written by save_int8"):
        load_int8(source)
