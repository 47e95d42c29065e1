"""image-classification and zero-shot-image-classification pipelines on real photos, against transformers'
pipelines over the same tiny random checkpoints (ViT classifier; CLIP with a tiny BPE tokenizer)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
skimage = pytest.importorskip("skimage", reason="pip install scikit-image (test-only: the sample photos)")
Image = pytest.importorskip("PIL.Image")

from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil  # noqa: E402

import pretrained  # noqa: E402
from pretrained import pipeline  # noqa: E402
from pretrained.errors import InputError  # noqa: E402
from pretrained.pipelines import PipelineError  # noqa: E402

from checkpoints import vit_classifier_checkpoint  # noqa: E402
from test_clip_processor import clip_tokenizer  # noqa: E402

DATA = os.path.join(os.path.dirname(skimage.__file__), "data")
PATHS = [os.path.join(DATA, n) for n in ("chelsea.png", "astronaut.png", "coffee.png")]
LABELS = ["cat", "astronaut", "coffee", "rocket"]


def _same_results(ours, ref):
    assert [r["label"] for r in ours] == [r["label"] for r in ref]
    np.testing.assert_allclose([r["score"] for r in ours], [r["score"] for r in ref], atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def vit_folder(tmp_path_factory):
    return Path(vit_classifier_checkpoint(tmp_path_factory.mktemp("vit-classifier"), LABELS))


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    return write_clip_checkpoint(tmp_path_factory.mktemp("clip-zero-shot"))


def write_clip_checkpoint(path):
    """A tiny random CLIP (transformers) with its processor (a tiny BPE tokenizer, 30 px crops), saved in `path`."""
    torch.manual_seed(0)
    text = dict(vocab_size=62, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                max_position_embeddings=32, projection_dim=16, bos_token_id=60, eos_token_id=61, pad_token_id=61)
    vision = dict(hidden_size=24, num_hidden_layers=2, num_attention_heads=4, intermediate_size=30, image_size=30,
                  patch_size=10, projection_dim=16)
    config = transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)
    transformers.CLIPModel(config).save_pretrained(path)
    transformers.CLIPProcessor(image_processor=CLIPImageProcessorPil(size=40, crop_size=30),
                               tokenizer=clip_tokenizer()).save_pretrained(path)
    return path


def test_image_classification_matches_transformers(vit_folder):
    ours = pipeline("image-classification", model=str(vit_folder))
    ref = transformers.pipeline("image-classification", model=str(vit_folder))
    for path in PATHS:
        _same_results(ours(path), ref(path))
    _same_results(ours(PATHS[0], top_k=2), ref(PATHS[0], top_k=2))
    _same_results(ours(PATHS[1], function_to_apply="sigmoid", top_k=10),
                  ref(PATHS[1], function_to_apply="sigmoid", top_k=10))
    # PIL images, arrays and a batch give the same results as the files; the task comes from the config
    auto = pipeline(model=str(vit_folder))
    assert type(auto).__name__ == "ImageClassificationPipeline"
    batched = auto([Image.open(p) for p in PATHS], batch_size=2)
    for result, path in zip(batched, PATHS):
        _same_results(result, ref(path))
    _same_results(ours(np.array(Image.open(PATHS[2]))), ref(PATHS[2]))


def test_image_classification_errors(vit_folder, tmp_path):
    ours = pipeline("image-classification", model=str(vit_folder))
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(InputError, match="not a readable image"):
        ours(str(corrupt))
    with pytest.raises(InputError, match="URL"):
        ours("http://images.cocodataset.org/val2017/000000039769.jpg")
    with pytest.raises(PipelineError, match="top_k"):
        ours(PATHS[0], top_k=0)
    with pytest.raises(PipelineError, match="vision and speech tasks"):
        pipeline("text-classification", model=str(vit_folder), image_processor=object())


def test_zero_shot_image_classification_matches_transformers(clip_folder):
    ours = pipeline("zero-shot-image-classification", model=str(clip_folder))
    ref = transformers.pipeline("zero-shot-image-classification", model=str(clip_folder))
    for path in PATHS:
        _same_results(ours(path, candidate_labels=LABELS), ref(path, candidate_labels=LABELS))
    template = "a picture of {}"
    _same_results(ours(PATHS[0], candidate_labels=LABELS[:2], hypothesis_template=template),
                  ref(PATHS[0], candidate_labels=LABELS[:2], hypothesis_template=template))
    batched = ours(PATHS, candidate_labels="cat, coffee", batch_size=2)
    for result, path in zip(batched, PATHS):
        _same_results(result, ref(path, candidate_labels=["cat", "coffee"]))
    # a loaded model with its processor; the task inferred from CLIPModel
    model = pretrained.CLIPModel.from_pretrained(clip_folder)
    processor = pretrained.AutoProcessor.from_pretrained(clip_folder)
    loaded = pipeline(model=model, processor=processor)
    _same_results(loaded(PATHS[1], candidate_labels=LABELS), ref(PATHS[1], candidate_labels=LABELS))
    with pytest.raises(PipelineError, match="candidate_labels"):
        ours(PATHS[0])
    with pytest.raises(PipelineError, match="hypothesis_template"):
        ours(PATHS[0], candidate_labels=LABELS, hypothesis_template="no slot")


def test_cli_runs_image_classification_on_files(vit_folder, capsys):
    from pretrained.cli import main

    assert main(["run", "image-classification", PATHS[0], PATHS[2], "--model", str(vit_folder), "--json",
                 "--top-k", "2"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    ref = transformers.pipeline("image-classification", model=str(vit_folder))
    assert [line["input"] for line in lines] == [PATHS[0], PATHS[2]]
    for line in lines:
        _same_results(line["output"], ref(line["input"], top_k=2))
