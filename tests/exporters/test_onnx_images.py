"""ONNX export of a ViT image classifier and image encoder: the graph takes pixel_values with a dynamic batch,
ONNX Runtime and OpenVINO outputs equal our PyTorch model's within 1e-4, and pipeline("image-classification")
over the ORT model labels real photos as the PyTorch pipeline does (the image processor is copied beside)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
transformers = pytest.importorskip("transformers")
skimage = pytest.importorskip("skimage", reason="pip install scikit-image (test-only: the sample photos)")

from checkpoints import vit_classifier_checkpoint  # noqa: E402
from pretrained import AutoModel, AutoModelForImageClassification, pipeline  # noqa: E402
from pretrained.errors import UnknownModelError, UnsupportedOptionError  # noqa: E402
from pretrained.exporters import runtime  # noqa: E402
from pretrained.exporters.onnx import export  # noqa: E402

PHOTOS = [os.path.join(os.path.dirname(skimage.__file__), "data", n) for n in ("chelsea.png", "astronaut.png",
                                                                                 "coffee.png")]
LABELS = ["cat", "astronaut", "coffee", "rocket"]


@pytest.fixture(scope="module")
def vit(tmp_path_factory):
    """(PyTorch checkpoint folder with its image processor, its image-classification export)."""
    root = tmp_path_factory.mktemp("onnx-vit")
    source = vit_classifier_checkpoint(root / "pt", LABELS)
    return source, export(source, root / "onnx", task="image-classification")


def _pixels(batch: int, seed: int = 4):
    return torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_image_classification_graph_equals_pytorch(vit):
    source, folder = vit
    record = json.loads((folder / "export.json").read_text())
    assert record["exporter"] == "dynamo" and record["inputs"] == ["pixel_values"] and record["max_abs_diff"] <= 1e-4
    assert (folder / "preprocessor_config.json").is_file()
    ours = AutoModelForImageClassification.from_pretrained(source).eval()
    ort_model = runtime.ORTModelForImageClassification.from_pretrained(folder)
    for batch in (1, 5):  # the batch axis is dynamic
        pixels = _pixels(batch)
        with torch.no_grad():
            expected = ours(pixel_values=pixels).logits
        got = ort_model(pixel_values=pixels)
        assert type(got).__name__ == "ImageClassifierOutput" and got.logits.shape == (batch, len(LABELS))
        torch.testing.assert_close(got.logits, expected, atol=1e-4, rtol=0)
    with pytest.raises(TypeError, match="input_ids"):
        ort_model.forward(pixel_values=_pixels(1), input_ids=torch.ones(1, 3, dtype=torch.long))


def test_image_classification_pipeline_over_the_ort_model(vit):
    source, folder = vit
    ort_pipe = pipeline("image-classification", model=runtime.ORTModelForImageClassification.from_pretrained(folder))
    ours = pipeline("image-classification", model=str(source))
    for got, expected in zip(ort_pipe(PHOTOS, top_k=4), ours(PHOTOS, top_k=4)):
        assert [r["label"] for r in got] == [r["label"] for r in expected]
        np.testing.assert_allclose([r["score"] for r in got], [r["score"] for r in expected], atol=1e-4, rtol=0)


def test_openvino_image_classification(vit):
    pytest.importorskip("openvino")
    from pretrained.exporters.openvino import OVModelForImageClassification

    source, folder = vit
    ours = AutoModelForImageClassification.from_pretrained(source).eval()
    pixels = _pixels(3, seed=5)
    with torch.no_grad():
        expected = ours(pixel_values=pixels).logits
    got = OVModelForImageClassification.from_pretrained(folder)(pixel_values=pixels).logits
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def test_image_feature_extraction_and_int8(vit, tmp_path):
    from pretrained.exporters.quantize import quantize

    source, _ = vit
    folder = export(source, tmp_path / "features", task="feature-extraction")
    assert json.loads((folder / "export.json").read_text())["inputs"] == ["pixel_values"]
    ours = AutoModel.from_pretrained(source).eval()
    pixels = _pixels(2)
    with torch.no_grad():
        expected = ours(pixel_values=pixels).last_hidden_state  # (B, 1 + patches, hidden)
    got = runtime.ORTModelForFeatureExtraction.from_pretrained(folder)(pixel_values=pixels).last_hidden_state
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    int8 = runtime.ORTModelForFeatureExtraction.from_pretrained(quantize(folder, tmp_path / "int8"))
    cosine = torch.nn.functional.cosine_similarity(int8(pixel_values=pixels).last_hidden_state, expected, dim=-1)
    assert cosine.min() > 0.9  # a random tiny model: int8 stays close, it is not exact


def test_image_export_refusals(vit, tmp_path):
    source, _ = vit
    with pytest.raises(UnknownModelError, match="does not support model_type 'vit'"):  # the task's Auto class
        export(source, tmp_path / "a", task="text-classification")
    with pytest.raises(UnknownModelError, match="reads images"):  # a loaded model: the graph's inputs decide
        export(AutoModel.from_pretrained(source), tmp_path / "b", task="fill-mask")
    with pytest.raises(UnsupportedOptionError, match="image graph"):
        export(source, tmp_path / "c", task="image-classification", static_shapes=(1, 8))
    bert = transformers.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37,
                                   vocab_size=99)
    transformers.BertModel(bert).save_pretrained(tmp_path / "bert")
    with pytest.raises(UnknownModelError, match="reads text"):
        export(AutoModel.from_pretrained(tmp_path / "bert"), tmp_path / "d", task="image-classification")
