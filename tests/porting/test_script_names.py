"""Names every ported script imports: set_seed / enable_full_determinism, logging, is_*_available,
BitsAndBytesConfig. transformers is the oracle for names and values."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

hf = pytest.importorskip("transformers")

import pretrained  # noqa: E402
from pretrained.errors import UnsupportedOptionError  # noqa: E402


def test_set_seed_equals_transformers():
    draws = []
    for set_seed in (hf.set_seed, pretrained.set_seed):
        set_seed(1234)
        draws.append((random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()))
    assert draws[0] == draws[1]


def test_enable_full_determinism(monkeypatch):
    for name in ("CUDA_LAUNCH_BLOCKING", "CUBLAS_WORKSPACE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        pretrained.enable_full_determinism(7, warn_only=True)
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8" and torch.backends.cudnn.deterministic
        first = torch.rand(2).tolist()
        hf.set_seed(7)
        assert torch.rand(2).tolist() == first
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.deterministic = False


PROBES = ["is_torch_available", "is_tokenizers_available", "is_sentencepiece_available", "is_safetensors_available",
          "is_protobuf_available", "is_datasets_available", "is_accelerate_available", "is_peft_available",
          "is_vision_available", "is_torchvision_available", "is_scipy_available", "is_sklearn_available",
          "is_torch_cuda_available", "is_torch_mps_available"]


@pytest.mark.parametrize("name", PROBES)
def test_package_probes_equal_transformers(name):
    from pretrained import utils

    assert getattr(pretrained, name)() == getattr(utils, name)()
    if hasattr(hf.utils, name):  # transformers 5 dropped a few (is_safetensors_available: always required)
        assert getattr(utils, name)() == getattr(hf.utils, name)()


def test_probes_of_what_we_do_not_run():
    assert pretrained.is_flash_attn_2_available() is False and pretrained.is_bitsandbytes_available() is False


def test_logging_names_and_levels():
    from pretrained.utils import logging as ours

    from transformers.utils import logging as theirs

    for name in ("set_verbosity", "set_verbosity_error", "set_verbosity_warning", "set_verbosity_info",
                 "set_verbosity_debug", "get_verbosity", "get_logger", "disable_progress_bar", "enable_progress_bar",
                 "is_progress_bar_enabled", "enable_default_handler", "disable_default_handler",
                 "enable_explicit_format", "reset_format", "enable_propagation", "disable_propagation",
                 "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        assert hasattr(ours, name) and hasattr(theirs, name), name
    assert pretrained.logging is ours
    before = ours.get_verbosity()
    try:
        for setter, level in (("set_verbosity_error", 40), ("set_verbosity_info", 20), ("set_verbosity_debug", 10),
                              ("set_verbosity_warning", 30)):
            getattr(ours, setter)()
            assert ours.get_verbosity() == level
            assert ours.get_logger("pretrained.tokenization.base").getEffectiveLevel() == level
    finally:
        ours.set_verbosity(before)


@pytest.mark.filterwarnings("ignore:Cannot enable progress bars")  # HF_HUB_DISABLE_PROGRESS_BARS in conftest
def test_progress_bar_switch():
    from huggingface_hub.utils import are_progress_bars_disabled

    try:
        pretrained.logging.disable_progress_bar()
        assert not pretrained.logging.is_progress_bar_enabled() and are_progress_bars_disabled()
    finally:
        pretrained.logging.enable_progress_bar()
    assert pretrained.logging.is_progress_bar_enabled()


_SCRIPT = """
import logging, pretrained
print(pretrained.logging.get_verbosity())
logging.getLogger("pretrained.x").info("an info line")
logging.getLogger("pretrained.x").warning("a warning line")
"""


@pytest.mark.parametrize("env,level,shown", [
    ({}, 30, ["a warning line"]),
    ({"TRANSFORMERS_VERBOSITY": "info"}, 20, ["an info line", "a warning line"]),
    ({"TRANSFORMERS_VERBOSITY": "error"}, 40, []),
    ({"TRANSFORMERS_VERBOSITY": "info", "PRETRAINED_VERBOSITY": "error"}, 40, []),
    ({"PRETRAINED_VERBOSITY": "debug"}, 10, ["an info line", "a warning line"]),
])
def test_verbosity_from_the_environment(env, level, shown):
    clean = {k: v for k, v in os.environ.items() if k not in ("TRANSFORMERS_VERBOSITY", "PRETRAINED_VERBOSITY")}
    done = subprocess.run([sys.executable, "-c", _SCRIPT], env={**clean, **env}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[0]) == level
    assert [line for line in done.stderr.splitlines() if line.endswith(" line")] == shown


def test_bits_and_bytes_config_is_refused_by_name(tmp_path):
    ours = pretrained.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                         bnb_4bit_compute_dtype=torch.bfloat16)
    theirs = hf.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
    expected = theirs.to_dict()
    assert {k: expected[k] for k in ours.to_dict()} == ours.to_dict()
    assert ours.quantization_method() == theirs.quantization_method() == "nf4"
    config = hf.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50, n_positions=16)
    hf.GPT2LMHeadModel(config).save_pretrained(tmp_path)
    for kwargs in ({"quantization_config": ours}, {"quantization_config": {"load_in_4bit": True}},
                   {"load_in_4bit": True}):
        with pytest.raises(UnsupportedOptionError, match="4-bit.*dtype=torch.bfloat16") as info:
            pretrained.AutoModelForCausalLM.from_pretrained(tmp_path, **kwargs)
        assert next(iter(kwargs)) in str(info.value)
    with pytest.raises(UnsupportedOptionError, match="llm_int8_threshold=4.0"):
        pretrained.AutoModelForCausalLM.from_pretrained(
            tmp_path, quantization_config=pretrained.BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=4.0))
    assert pretrained.AutoModelForCausalLM.from_pretrained(tmp_path, load_in_8bit=False) is not None
    # a pre-quantized checkpoint (GPTQ, AWQ, bitsandbytes) says so in config.json
    saved = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**saved, "quantization_config": {"quant_method": "gptq"}}))
    with pytest.raises(UnsupportedOptionError, match="gptq"):
        pretrained.AutoModelForCausalLM.from_pretrained(tmp_path)


@pytest.mark.parametrize("kwargs", [{"load_in_8bit": True},
                                    {"quantization_config": {"load_in_8bit": True}},
                                    {"quantization_config": "bnb"}])
def test_eight_bit_requests_map_onto_int8_weight_only_layers(tmp_path, kwargs):
    """load_in_8bit (Transformers' bitsandbytes request) loads int8 weight-only layers, the untied LM head kept in
    floating point as bitsandbytes keeps it; save_pretrained / from_pretrained round-trip the int8 model exactly."""
    from pretrained.int8 import Int8Linear

    if kwargs.get("quantization_config") == "bnb":
        kwargs = {"quantization_config": pretrained.BitsAndBytesConfig(load_in_8bit=True,
                                                                        llm_int8_skip_modules=["model.layers.0"])}
    config = hf.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
    torch.manual_seed(0)
    hf.LlamaForCausalLM(config).save_pretrained(tmp_path / "float")
    float_model = pretrained.AutoModelForCausalLM.from_pretrained(tmp_path / "float")
    model = pretrained.AutoModelForCausalLM.from_pretrained(tmp_path / "float", **kwargs)
    quantized = model.config.quantization_config["modules"]
    assert all(isinstance(model.get_submodule(n), Int8Linear) for n in quantized)
    # as Transformers: llm_int8_skip_modules replaces the default list (the LM head) rather than adding to it
    skipped = kwargs.get("quantization_config") and getattr(kwargs["quantization_config"], "llm_int8_skip_modules", None)
    assert isinstance(model.lm_head, Int8Linear if skipped else torch.nn.Linear)
    assert any(n.startswith("model.layers.0.") for n in quantized) != bool(skipped)
    ids = torch.tensor([[1, 5, 9, 22, 40]])
    with torch.no_grad():
        expected, got = float_model(ids).logits, model(ids).logits
    assert (got - expected).abs().max() < 0.05 * expected.std()
    model.save_pretrained(tmp_path / "int8")
    back = pretrained.AutoModelForCausalLM.from_pretrained(tmp_path / "int8")
    with torch.no_grad():
        assert torch.equal(back(ids).logits, got)
    with pytest.raises(UnsupportedOptionError, match="without \\['dtype'\\]"):
        pretrained.AutoModelForCausalLM.from_pretrained(tmp_path / "int8", dtype=torch.bfloat16)
