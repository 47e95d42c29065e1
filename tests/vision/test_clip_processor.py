"""CLIPProcessor / AutoProcessor against transformers: the same ids, mask and pixel_values, in both file layouts."""

from __future__ import annotations

import os

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")
skimage = pytest.importorskip("skimage", reason="pip install scikit-image (test-only: the sample photos)")
Image = pytest.importorskip("PIL.Image")

from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil  # noqa: E402

from pretrained import AutoProcessor, CLIPImageProcessor, CLIPProcessor  # noqa: E402
from pretrained.errors import InputError  # noqa: E402

DATA = os.path.join(os.path.dirname(skimage.__file__), "data")
TEXTS = ["a photo of a cat", "a dog"]


def clip_tokenizer():
    """A tiny CLIP BPE: letters, end-of-word letters, a few merges (cat, dog, photo)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {c: i for i, c in enumerate(letters)}
    vocab.update({c + "</w>": len(letters) + i for i, c in enumerate(letters)})
    merges = [("c", "a"), ("ca", "t</w>"), ("d", "o"), ("do", "g</w>"), ("p", "h"), ("o", "t"), ("ph", "ot"),
              ("phot", "o</w>")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return transformers.CLIPTokenizer(vocab=vocab, merges=merges)


@pytest.fixture(scope="module")
def processor_folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip-processor")
    ref = transformers.CLIPProcessor(image_processor=CLIPImageProcessorPil(size=40, crop_size=30),
                                     tokenizer=clip_tokenizer())
    ref.save_pretrained(path)  # Transformers 5's layout: processor_config.json holds the image processor
    return path, ref


def _compare(ours_out, ref_out, same_keys=True):
    assert set(ours_out) == set(ref_out) if same_keys else set(ref_out) <= set(ours_out)
    for key in ref_out:
        np.testing.assert_allclose(np.asarray(ours_out[key]), np.asarray(ref_out[key]), atol=1e-5, rtol=0)


def test_auto_processor_matches_transformers(processor_folder, tmp_path):
    path, ref = processor_folder
    ours = AutoProcessor.from_pretrained(path)
    assert type(ours) is CLIPProcessor and type(ours.image_processor) is CLIPImageProcessor
    images = [Image.open(os.path.join(DATA, n)) for n in ("chelsea.png", "coffee.png")]
    _compare(ours(text=TEXTS, images=images, return_tensors="np", padding=True),
             ref(text=TEXTS, images=images, return_tensors="np", padding=True))
    _compare(ours(text=TEXTS[0], return_tensors="np"), ref(text=TEXTS[0], return_tensors="np"))
    _compare(ours(images=images[0], return_tensors="np"), ref(images=images[0], return_tensors="np"))
    # our layout (preprocessor_config.json + tokenizer files) loads in transformers and here; our tokenizer
    # saves as a generic PreTrainedTokenizer, so transformers' copy also returns token_type_ids
    ours.save_pretrained(tmp_path)
    assert (tmp_path / "preprocessor_config.json").exists()
    for again in (transformers.AutoProcessor.from_pretrained(tmp_path), AutoProcessor.from_pretrained(tmp_path)):
        _compare(again(text=TEXTS, images=images, return_tensors="np", padding=True),
                 ref(text=TEXTS, images=images, return_tensors="np", padding=True), same_keys=False)


def test_processor_argument_errors(processor_folder):
    ours = AutoProcessor.from_pretrained(processor_folder[0])
    with pytest.raises(InputError, match="text, images or both"):
        ours()
    with pytest.raises(InputError, match="no text"):
        ours(images=Image.open(os.path.join(DATA, "chelsea.png")), padding=True)
    with pytest.raises(InputError, match="both an image_processor and a tokenizer"):
        CLIPProcessor(image_processor=ours.image_processor)
