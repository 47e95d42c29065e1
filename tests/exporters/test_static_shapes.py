"""Static-shape exports (inputs for TensorRT engines and CoreML) and execution providers this machine
lacks: shapes fixed in the graph and checked on the way in; a missing provider is a clear error, not
ONNX Runtime's silent fall back to the CPU."""

from __future__ import annotations

import json

import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from checkpoints import TINY_ENCODER, hf_checkpoint  # noqa: E402
from pretrained import AutoModelForSequenceClassification  # noqa: E402
from pretrained.cli import main  # noqa: E402
from pretrained.errors import InputError, UnsupportedOptionError  # noqa: E402
from pretrained.exporters.onnx import export  # noqa: E402
from pretrained.exporters.runtime import ORTModelForSequenceClassification  # noqa: E402


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return hf_checkpoint(tmp_path_factory.mktemp("static") / "pt", "BertConfig", "BertForSequenceClassification",
                         **TINY_ENCODER)


@pytest.fixture(scope="module")
def dynamic_export(source, tmp_path_factory):
    return export(source, tmp_path_factory.mktemp("dynamic") / "onnx", task="text-classification")


def _dims(path) -> dict:
    graph = onnx.load(path).graph
    return {i.name: [d.dim_value if d.HasField("dim_value") else d.dim_param for d in i.type.tensor_type.shape.dim]
            for i in (*graph.input, *graph.output)}


@pytest.mark.slow  # two exports, ~25 s on 2 cores
def test_static_shape_export(source, dynamic_export, tmp_path):
    assert main(["export", "onnx", "--model", source, "--task", "text-classification", "--static-shapes", "2", "16",
                 str(tmp_path / "static")]) == 0
    record = json.loads((tmp_path / "static" / "export.json").read_text())
    assert record["static_shapes"] == [2, 16] and record["opset"] >= 17 and record["max_abs_diff"] <= 1e-4
    dims = _dims(tmp_path / "static" / "model.onnx")
    assert dims["input_ids"] == [2, 16] and dims["attention_mask"] == [2, 16] and dims["logits"] == [2, TINY_ENCODER["num_labels"]]
    assert any(n.op_type == "LayerNormalization" for n in onnx.load(tmp_path / "static" / "model.onnx").graph.node)
    model = ORTModelForSequenceClassification.from_pretrained(tmp_path / "static")
    ours = AutoModelForSequenceClassification.from_pretrained(source).eval()
    ids = torch.randint(5, 99, (2, 16), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 10:] = 0
    with torch.no_grad():
        expected = ours(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(model(input_ids=ids, attention_mask=mask).logits, expected, atol=1e-4, rtol=0)
    with pytest.raises(InputError, match=r"input_ids has shape \[1, 5\]; this graph was exported with static shapes \[2, 16\]"):
        model(input_ids=ids[:1, :5])
    # the default export keeps symbolic axes
    dynamic = _dims(dynamic_export / "model.onnx")
    assert all(isinstance(d, str) for d in dynamic["input_ids"])


def test_static_shapes_refused_where_they_cannot_hold(source, tmp_path):
    with pytest.raises(InputError, match=r"static_shapes=\(2,\); expected \(batch, sequence\)"):
        export(source, tmp_path / "a", task="text-classification", static_shapes=(2,))
    gpt2 = hf_checkpoint(tmp_path / "gpt2", "GPT2Config", "GPT2LMHeadModel", vocab_size=99, n_embd=32, n_layer=1,
                         n_head=4, n_positions=64)
    with pytest.raises(UnsupportedOptionError, match="a decoder's past length grows every step"):
        export(gpt2, tmp_path / "b", task="text-generation", static_shapes=(1, 8))


@pytest.mark.parametrize("provider, package", [("TensorrtExecutionProvider", "onnxruntime-gpu with TensorRT"),
                                               ("DmlExecutionProvider", "onnxruntime-directml"),
                                               ("CoreMLExecutionProvider", "onnxruntime on macOS")])
def test_unavailable_provider_is_a_clear_error(dynamic_export, provider, package):
    import onnxruntime

    if provider in onnxruntime.get_available_providers():
        pytest.skip(f"this onnxruntime build has {provider}")
    folder = dynamic_export
    with pytest.raises(UnsupportedOptionError, match=f"provider '{provider}' is not in this onnxruntime build "
                                                     f"\\(available: .*CPUExecutionProvider.*\\); it comes with {package}"):
        ORTModelForSequenceClassification.from_pretrained(folder, provider=provider)
    with pytest.raises(UnsupportedOptionError, match=provider):  # a list with options, as ONNX Runtime takes it
        ORTModelForSequenceClassification.from_pretrained(folder, providers=[(provider, {}), "CPUExecutionProvider"])
