"""automatic-speech-recognition on a tiny random Whisper with a word-level tokenizer: the text equals what
transformers' feature extractor, seq2seq decoding and tokenizer give; WAV inputs (16-bit, 8-bit, stereo,
other rates), arrays, dicts and bad inputs."""

from __future__ import annotations

import json
import wave

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

import pretrained  # noqa: E402
from pretrained import pipeline  # noqa: E402
from pretrained.errors import InputError  # noqa: E402
from pretrained.pipelines import PipelineError  # noqa: E402
from pretrained.processing.audio import load_audio, resample  # noqa: E402

from test_whisper_features import speechlike  # noqa: E402
from test_whisper_model import NO_TIMESTAMPS, TINY  # noqa: E402

SR = 16000
FEATURES = dict(feature_size=16, hop_length=8000)  # 30 s -> the tiny encoder's 60 frames


def special_tokens():
    names = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|fr|>", "<|translate|>", "<|transcribe|>"]
    names += [f"<|reserved{i}|>" for i in range(106, 110)] + ["<|notimestamps|>"]
    return {name: 100 + i for i, name in enumerate(names)}


@pytest.fixture(scope="module")
def asr_folder(tmp_path_factory):
    return write_asr_checkpoint(tmp_path_factory.mktemp("whisper-asr"))


def write_asr_checkpoint(path):
    """A tiny random Whisper (transformers), its feature extractor and a word-level tokenizer, saved in `path`."""
    torch.manual_seed(0)
    model = transformers.WhisperForConditionalGeneration(transformers.WhisperConfig(**TINY, tie_word_embeddings=False))
    with torch.no_grad():
        model.proj_out.weight.normal_(0, 1.0)
    model.generation_config.no_timestamps_token_id = NO_TIMESTAMPS
    model.generation_config.max_length = TINY["max_target_positions"]  # as real Whisper configs (448)
    model.save_pretrained(path)
    vocab = {f"w{i}": i for i in range(100)} | special_tokens()
    vocab.update({f"<|reserved{i}|>": i for i in range(111, 120)})
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="w0"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    backend.add_special_tokens(list(special_tokens()))
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>",
                                                     pad_token="<|endoftext|>", bos_token="<|endoftext|>")
    transformers.WhisperProcessor(transformers.WhisperFeatureExtractor(**FEATURES), tokenizer).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def expected_text(asr_folder):
    """audio -> the text transformers' feature extractor, seq2seq decoding and tokenizer give."""
    ref = transformers.WhisperForConditionalGeneration.from_pretrained(asr_folder).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(asr_folder)
    extractor = transformers.WhisperFeatureExtractor(**FEATURES)

    def transcribe(audio: np.ndarray) -> str:
        features = extractor(audio, sampling_rate=SR, return_tensors="pt").input_features
        tokens = transformers.GenerationMixin.generate(ref, features, max_new_tokens=12,
                                                       decoder_input_ids=torch.tensor([[101, NO_TIMESTAMPS]]))
        return tokenizer.decode(tokens[0], skip_special_tokens=True)

    return transcribe


def write_wav(path, samples: np.ndarray, rate: int, width: int = 2, channels: int = 1) -> str:
    if width == 1:
        data = np.clip(samples * 128 + 128, 0, 255).astype(np.uint8)
    else:
        data = np.clip(samples * 32767, -32768, 32767).astype(np.int16)
    data = np.repeat(data, channels)  # interleaved frames: the same signal in every channel
    with wave.open(str(path), "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(width)
        f.setframerate(rate)
        f.writeframes(data.tobytes())
    return str(path)


def test_transcription_equals_transformers_components(asr_folder, expected_text, tmp_path):
    asr = pipeline("automatic-speech-recognition", model=str(asr_folder), max_new_tokens=12, num_beams=1)
    clip = speechlike(4.0, 0)
    want = expected_text(clip)
    assert len(want.split()) > 2  # a real (random) sentence
    assert asr(clip) == {"text": want}
    path = write_wav(tmp_path / "clip.wav", clip, SR)
    pcm = load_audio(path)[0]  # 16-bit PCM is what the file holds
    assert np.abs(pcm - clip).max() < 1e-4
    assert asr(path) == {"text": expected_text(pcm)}
    with open(path, "rb") as f:
        assert asr(f.read()) == asr(path)
    assert asr({"raw": pcm, "sampling_rate": SR}) == asr(path)
    # the task from the config; a loaded model with its processor; a batch
    loaded = pipeline(model=pretrained.WhisperForConditionalGeneration.from_pretrained(asr_folder),
                      processor=pretrained.AutoProcessor.from_pretrained(asr_folder), max_new_tokens=12,
                      num_beams=1)
    assert type(loaded).__name__ == "AutomaticSpeechRecognitionPipeline"
    clips = [speechlike(2.0, 1), clip]
    assert loaded(clips, batch_size=2) == [asr(c) for c in clips]


def test_wav_formats_and_resampling(asr_folder, tmp_path):
    asr = pipeline("automatic-speech-recognition", model=str(asr_folder))
    t = np.arange(3 * 44100) / 44100
    clip44 = (0.3 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    stereo = write_wav(tmp_path / "stereo.wav", clip44, 44100, channels=2)
    samples, rate = load_audio(stereo)
    assert rate == 44100 and samples.ndim == 1
    assert asr(stereo) == asr({"raw": samples, "sampling_rate": 44100})
    resampled = resample(samples, 44100, SR)
    assert len(resampled) == 3 * SR
    assert asr(stereo) == asr(resampled)
    eight = write_wav(tmp_path / "8bit.wav", clip44, 44100, width=1)
    assert np.abs(load_audio(eight)[0] - clip44).max() < 1 / 64  # 8-bit steps
    assert isinstance(asr(eight)["text"], str)
    silent = write_wav(tmp_path / "silent.wav", np.zeros(SR, np.float32), SR)
    assert isinstance(asr(silent)["text"], str)


def test_bad_audio_inputs(asr_folder, tmp_path):
    asr = pipeline("automatic-speech-recognition", model=str(asr_folder))
    empty = write_wav(tmp_path / "empty.wav", np.zeros(0, np.float32), SR)
    with pytest.raises(PipelineError, match="no samples"):
        asr(empty)
    # over 30 s: decoded window after window (tests/speech/test_asr_long_audio.py compares with transformers)
    assert isinstance(asr(np.zeros(31 * SR, np.float32), max_new_tokens=4)["text"], str)
    with pytest.raises(PipelineError, match="int16"):
        asr(np.zeros(SR, np.int16))
    with pytest.raises(PipelineError, match="return_timestamps"):
        asr(np.zeros(SR, np.float32), return_timestamps="char")
    with pytest.raises(InputError, match="URL"):
        asr("https://example.com/speech.wav")
    not_wav = tmp_path / "noise.wav"
    not_wav.write_bytes(b"RIFF0000WAVEjunk")
    with pytest.raises(InputError, match="not a PCM WAV file|not a readable audio file"):
        asr(str(not_wav))


def test_cli_transcribes_a_wav_file(asr_folder, expected_text, tmp_path, capsys):
    from pretrained.cli import main

    path = write_wav(tmp_path / "clip.wav", speechlike(3.0, 4), SR)
    assert main(["run", "automatic-speech-recognition", path, "--model", str(asr_folder), "--json",
                 "--max-new-tokens", "12"]) == 0
    line = json.loads(capsys.readouterr().out)
    # the pipeline's own defaults (5 beams, as Transformers'), whose parity the tests above check
    asr = pipeline("automatic-speech-recognition", model=str(asr_folder), max_new_tokens=12)
    assert line == {"input": path, "output": asr(path)}
    assert asr(path, num_beams=1) == {"text": expected_text(load_audio(path)[0])}
