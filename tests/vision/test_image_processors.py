"""Image processors against transformers' PIL image processors on real photos (scikit-image's samples):
pixel_values equal to 1e-5 for PIL, numpy and torch inputs, batches, overrides; files and errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
skimage = pytest.importorskip("skimage", reason="pip install scikit-image (test-only: the sample photos)")
Image = pytest.importorskip("PIL.Image")

from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil  # noqa: E402
from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil  # noqa: E402

from pretrained import AutoFeatureExtractor, AutoImageProcessor, CLIPImageProcessor, ViTImageProcessor  # noqa: E402
from pretrained.errors import CheckpointError, InputError, UnknownModelError  # noqa: E402

DATA = os.path.join(os.path.dirname(skimage.__file__), "data")
PHOTOS = ["chelsea.png", "astronaut.png", "coffee.png"]


def photo(name: str):
    return Image.open(os.path.join(DATA, name))


def _same(ours, ref):
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)


CASES = [
    (ViTImageProcessor, ViTImageProcessorPil, {}),
    (CLIPImageProcessor, CLIPImageProcessorPil, {}),
    (ViTImageProcessor, ViTImageProcessorPil, {"size": {"height": 48, "width": 64}, "resample": 3}),
    (ViTImageProcessor, ViTImageProcessorPil, {"size": 40, "resample": 1, "image_mean": [0.485, 0.456, 0.406],
                                               "image_std": [0.229, 0.224, 0.225]}),
    (CLIPImageProcessor, CLIPImageProcessorPil, {"size": 40, "crop_size": 30}),
    (CLIPImageProcessor, CLIPImageProcessorPil, {"size": {"shortest_edge": 24}, "crop_size": {"height": 30, "width": 20},
                                                 "resample": 0}),  # crop larger than the image: zero padding
]


@pytest.mark.parametrize("ours_cls,ref_cls,settings", CASES)
def test_pixel_values_equal_transformers_on_real_photos(ours_cls, ref_cls, settings):
    ours, ref = ours_cls(**settings), ref_cls(**settings)
    images = [photo(name) for name in PHOTOS]
    _same(ours(images, return_tensors="np")["pixel_values"], ref(images, return_tensors="np")["pixel_values"])
    one = ours(images[0], return_tensors="pt").pixel_values
    assert isinstance(one, torch.Tensor) and one.dtype == torch.float32 and one.shape[0] == 1
    _same(one.numpy(), ref(images[0], return_tensors="pt").pixel_values.numpy())


@pytest.mark.parametrize("ours_cls,ref_cls", [(ViTImageProcessor, ViTImageProcessorPil),
                                              (CLIPImageProcessor, CLIPImageProcessorPil)])
def test_numpy_torch_float_gray_and_alpha_inputs(ours_cls, ref_cls):
    settings = {"size": 32} if ours_cls is ViTImageProcessor else {"size": 40, "crop_size": 32}
    ours, ref = ours_cls(**settings), ref_cls(**settings)
    hwc = np.array(photo("coffee.png"))  # (400, 600, 3) uint8
    inputs = [
        hwc,  # channels last
        torch.from_numpy(hwc).permute(2, 0, 1).contiguous(),  # torch (C, H, W)
        hwc.astype(np.float32) / 255,  # float in [0, 1]: Pillow resizes it as 8-bit, as transformers does
        np.stack([hwc, hwc[::-1]]),  # a 4-D batch
        [[photo("chelsea.png")], [photo("astronaut.png")]],  # a nested list
    ]
    for x in inputs:
        _same(ours(x, return_tensors="np")["pixel_values"], ref(x, return_tensors="np")["pixel_values"])
    # CLIP converts to RGB (gray repeated, alpha composited on white); ViT keeps the channels as they are
    for name in ("camera.png", "logo.png"):
        if ours_cls is CLIPImageProcessor:
            _same(ours(photo(name), return_tensors="np")["pixel_values"],
                  ref(photo(name), return_tensors="np")["pixel_values"])
    channels_last = ours(hwc, data_format="channels_last", return_tensors="np")["pixel_values"]
    _same(channels_last, np.moveaxis(ref(hwc, return_tensors="np")["pixel_values"], 1, -1))


def test_call_overrides_and_no_tensors():
    ours, ref = ViTImageProcessor(), ViTImageProcessorPil()
    image = photo("chelsea.png")
    overrides = dict(do_normalize=False, size={"height": 20, "width": 30}, do_rescale=False)
    a, b = ours(image, **overrides)["pixel_values"], ref(image, **overrides)["pixel_values"]
    assert isinstance(a, list) and len(a) == 1
    _same(a[0], np.asarray(b[0]))
    with pytest.raises(InputError, match="unknown arguments"):
        ours(image, do_resise=False)
    with pytest.raises(InputError, match="return_tensors"):
        ours(image, return_tensors="tf")


def test_files_round_trip_with_transformers(tmp_path):
    ref = CLIPImageProcessorPil(size=40, crop_size=30)
    ref.save_pretrained(tmp_path / "ref")
    ours = AutoImageProcessor.from_pretrained(tmp_path / "ref")
    assert type(ours) is CLIPImageProcessor and ours.size == {"shortest_edge": 40}
    image = photo("astronaut.png")
    _same(ours(image, return_tensors="np")["pixel_values"], ref(image, return_tensors="np")["pixel_values"])
    ours.save_pretrained(tmp_path / "ours")
    saved = json.loads((tmp_path / "ours" / "preprocessor_config.json").read_text())
    assert saved["image_processor_type"] == "CLIPImageProcessor"
    again = transformers.AutoImageProcessor.from_pretrained(tmp_path / "ours")
    _same(again(image, return_tensors="np")["pixel_values"], ref(image, return_tensors="np")["pixel_values"])
    # Transformers 4's files: a feature_extractor_type and int sizes
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "preprocessor_config.json").write_text(json.dumps(
        {"feature_extractor_type": "ViTFeatureExtractor", "size": 32, "do_resize": True, "resample": 2,
         "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "do_normalize": True}))
    old = AutoFeatureExtractor.from_pretrained(legacy)
    assert type(old) is ViTImageProcessor and old.size == {"height": 32, "width": 32}
    # no class named: the model type decides
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "preprocessor_config.json").write_text("{}")
    (bare / "config.json").write_text(json.dumps({"model_type": "clip"}))
    assert type(AutoImageProcessor.from_pretrained(bare)) is CLIPImageProcessor


def test_bad_inputs_are_clear_errors(tmp_path):
    processor = ViTImageProcessor(size=16)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    with pytest.raises(InputError, match="not a readable image"):
        processor(str(corrupt))
    with pytest.raises(InputError, match="does not exist"):
        processor(str(tmp_path / "missing.png"))
    with pytest.raises(InputError, match="URL"):
        processor("https://example.com/cat.png")
    with pytest.raises(InputError, match="channel axis"):
        processor(np.zeros((10, 10, 7), dtype=np.uint8))
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        processor(np.full((3, 8, 8), 1.5, dtype=np.float32))
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"image_processor_type": "DetrImageProcessor"}))
    with pytest.raises(UnknownModelError, match="DetrImageProcessor"):
        AutoImageProcessor.from_pretrained(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="preprocessor_config.json"):
        AutoImageProcessor.from_pretrained(tmp_path / "empty")
    # a path and raw bytes are images too
    path = os.path.join(DATA, "chelsea.png")
    with open(path, "rb") as f:
        raw = f.read()
    _same(processor(raw, return_tensors="np")["pixel_values"], processor(path, return_tensors="np")["pixel_values"])


@pytest.mark.parametrize("ours_cls,ref_cls", [(ViTImageProcessor, ViTImageProcessorPil),
                                              (CLIPImageProcessor, CLIPImageProcessorPil)])
def test_batch_on_threads_equals_one_image_at_a_time(ours_cls, ref_cls):
    """A batch is resized on threads and rescaled + normalized through a per-byte table into one array:
    the same arrays as single calls (no threads) and as transformers' batch, in both data formats."""
    ours, ref = ours_cls(), ref_cls()
    names = PHOTOS + ["rocket.jpg", "motorcycle_left.png"]
    if ours_cls is CLIPImageProcessor:  # ViT keeps gray and alpha channels, which its 3 means do not fit
        names += ["camera.png", "logo.png"]
    images = [photo(name) for name in names]
    images += [images[0], images[0]]  # one lazily loaded image given twice
    batch = ours(images, return_tensors="np")["pixel_values"]
    assert batch.shape[0] == len(images)
    for image, row in zip(images, batch):
        np.testing.assert_array_equal(row, ours(image, return_tensors="np")["pixel_values"][0])
    _same(batch, ref(images, return_tensors="np")["pixel_values"])
    last = ours(images, data_format="channels_last", return_tensors="pt")["pixel_values"]
    np.testing.assert_array_equal(last.numpy(), np.moveaxis(batch, 1, -1))
    listed = ours(images)["pixel_values"]
    assert isinstance(listed, list) and all(np.array_equal(a, b) for a, b in zip(listed, batch))


def test_batch_of_mixed_sizes_and_types():
    """No resizing: images of different sizes stay a list; float images take the plain rescale/normalize path."""
    ours, ref = ViTImageProcessor(do_resize=False), ViTImageProcessorPil(do_resize=False)
    hwc = np.array(photo("coffee.png"))
    images = [photo("chelsea.png"), hwc, hwc.astype(np.float32) / 255, torch.from_numpy(hwc).permute(2, 0, 1)]
    a, b = ours(images)["pixel_values"], ref(images)["pixel_values"]
    assert len(a) == len(b) == 4
    for x, y in zip(a, b):
        _same(x, y)
    for settings in ({"do_normalize": False}, {"do_rescale": False}, {"do_rescale": False, "do_normalize": False}):
        a, b = ours(images[:2], **settings)["pixel_values"], ref(images[:2], **settings)["pixel_values"]
        for x, y in zip(a, b):
            _same(x, y)
    with pytest.raises(InputError, match="channels"):
        ViTImageProcessor(image_mean=[0.5, 0.5], image_std=[0.5, 0.5])([photo("chelsea.png")] * 2)
