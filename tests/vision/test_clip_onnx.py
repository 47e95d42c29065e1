"""CLIP exported for zero-shot-image-classification: one graph over captions and images with independent batch
axes; ONNX Runtime and OpenVINO outputs equal our PyTorch CLIPModel's within 1e-4, and the zero-shot pipeline over
the ORT model ranks labels on real photos as the PyTorch pipeline does."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
pytest.importorskip("transformers")
pytest.importorskip("skimage", reason="pip install scikit-image (test-only: the sample photos)")

from pretrained import CLIPModel, pipeline  # noqa: E402
from pretrained.exporters.onnx import export  # noqa: E402
from pretrained.exporters.runtime import ORTModelForZeroShotImageClassification  # noqa: E402

from test_vision_pipelines import LABELS, PATHS, write_clip_checkpoint  # noqa: E402

OUTPUTS = ("logits_per_image", "logits_per_text", "text_embeds", "image_embeds")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """(our PyTorch CLIPModel, the export folder)."""
    root = tmp_path_factory.mktemp("clip-onnx")
    source = write_clip_checkpoint(root / "pt")
    folder = export(source, root / "onnx", task="zero-shot-image-classification")
    return CLIPModel.from_pretrained(source).eval(), folder


def _inputs(texts: int, images: int):
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, 60, (texts, 7), generator=g)
    ids[:, 0], ids[:, -1] = 60, 61  # start and end of text
    mask = torch.ones_like(ids)
    mask[0, 5:] = 0
    ids[0, 5:] = 61  # a shorter caption, padded
    return {"input_ids": ids, "attention_mask": mask, "pixel_values": torch.randn(images, 3, 30, 30, generator=g)}


def test_graph_equals_pytorch_for_any_two_batches(clip):
    ours, folder = clip
    record = json.loads((folder / "export.json").read_text())
    assert record["exporter"] == "dynamo" and record["inputs"] == ["input_ids", "attention_mask", "pixel_values"]
    assert tuple(record["outputs"]) == OUTPUTS and record["max_abs_diff"] <= 1e-4
    ort_model = ORTModelForZeroShotImageClassification.from_pretrained(folder)
    for texts, images in ((4, 2), (1, 3)):
        batch = _inputs(texts, images)
        with torch.no_grad():
            expected = ours(**batch)
        got = ort_model(**batch)
        assert got.logits_per_image.shape == (images, texts)
        for name in OUTPUTS:
            torch.testing.assert_close(got[name], expected[name], atol=1e-4, rtol=0)


def test_zero_shot_pipeline_over_the_ort_model(clip):
    ours, folder = clip
    over_ort = pipeline("zero-shot-image-classification", model=ORTModelForZeroShotImageClassification.from_pretrained(folder))
    over_torch = pipeline("zero-shot-image-classification", model=str(ours.name_or_path))
    for path in PATHS:
        got, expected = over_ort(path, candidate_labels=LABELS), over_torch(path, candidate_labels=LABELS)
        assert [r["label"] for r in got] == [r["label"] for r in expected]
        np.testing.assert_allclose([r["score"] for r in got], [r["score"] for r in expected], atol=1e-5, rtol=0)


def test_openvino_zero_shot(clip):
    pytest.importorskip("openvino")
    from pretrained.exporters.openvino import OVModelForZeroShotImageClassification

    ours, folder = clip
    batch = _inputs(3, 2)
    with torch.no_grad():
        expected = ours(**batch).logits_per_image
    got = OVModelForZeroShotImageClassification.from_pretrained(folder)(**batch).logits_per_image
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
