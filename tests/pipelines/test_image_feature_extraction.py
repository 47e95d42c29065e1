"""image-feature-extraction against transformers' pipeline on tiny random ViTModel and CLIPVisionModel
checkpoints and real photos: per-patch features, pooled features, tensors, batches, task defaults."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
skimage = pytest.importorskip("skimage", reason="pip install scikit-image (test-only: the sample photos)")
pytest.importorskip("PIL.Image")

from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil  # noqa: E402
from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil  # noqa: E402

from pretrained import pipeline  # noqa: E402
from pretrained.pipelines import PipelineError  # noqa: E402
from pretrained.pipelines.registry import check_task  # noqa: E402

DATA = os.path.join(os.path.dirname(skimage.__file__), "data")
PATHS = [os.path.join(DATA, n) for n in ("chelsea.png", "astronaut.png", "coffee.png")]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    torch.manual_seed(0)
    vit = tmp_path_factory.mktemp("vit-base")
    transformers.ViTModel(transformers.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                                 intermediate_size=37, image_size=32, patch_size=8)).save_pretrained(vit)
    ViTImageProcessorPil(size=32).save_pretrained(vit)
    clip = tmp_path_factory.mktemp("clip-vision")
    transformers.CLIPVisionModel(transformers.CLIPVisionConfig(
        hidden_size=24, num_hidden_layers=2, num_attention_heads=4, intermediate_size=30, image_size=30,
        patch_size=10)).save_pretrained(clip)
    CLIPImageProcessorPil(size=40, crop_size=30).save_pretrained(clip)
    return {"vit": str(vit), "clip": str(clip)}


@pytest.mark.parametrize("kind", ["vit", "clip"])
def test_features_equal_transformers(folders, kind):
    ref = transformers.pipeline("image-feature-extraction", model=folders[kind])
    ours = pipeline("image-feature-extraction", model=folders[kind])
    for pool in (False, True):
        want = [ref(p, pool=pool) for p in PATHS]
        got = ours(PATHS, pool=pool, batch_size=2)
        for g, single in zip(got, [ours(p, pool=pool) for p in PATHS]):  # batched equals one at a time
            np.testing.assert_allclose(np.asarray(g), np.asarray(single), atol=1e-5, rtol=0)
        for g, w in zip(got, want):
            assert np.asarray(g).shape == np.asarray(w).shape
            np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=1e-5, rtol=0)
    patches = np.asarray(ours(PATHS[0]))
    tokens = {"vit": (32 // 8) ** 2 + 1, "clip": (30 // 10) ** 2 + 1}[kind]
    assert patches.shape == (1, tokens, 32 if kind == "vit" else 24)
    tensor = ours(PATHS[0], return_tensors=True)
    assert isinstance(tensor, torch.Tensor) and tensor.tolist() == ours(PATHS[0])


def test_task_registry_and_errors(folders):
    name, spec, _ = check_task("image-feature-extraction")
    assert spec.auto_class == "AutoModel" and spec.default.id == "google/vit-base-patch16-224-in21k"
    ours = pipeline("image-feature-extraction", model=folders["vit"])
    assert type(ours).__name__ == "ImageFeatureExtractionPipeline"
    with pytest.raises(PipelineError, match="timeout"):
        ours(PATHS[0], timeout=3)
    with pytest.raises(PipelineError, match="needs an image"):
        ours()
    with pytest.raises(PipelineError, match="image_processor_kwargs"):
        ours(PATHS[0], image_processor_kwargs=3)
    # image_processor_kwargs reach the processor: a different size changes the number of patches
    with pytest.raises(Exception):
        ours(PATHS[0], image_processor_kwargs={"size": {"height": 48, "width": 48}})
