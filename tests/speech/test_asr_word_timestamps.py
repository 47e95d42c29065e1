"""Word timestamps (return_timestamps="word") against transformers on a tiny random Whisper with Whisper's real
geometry (1500 encoder positions: 0.02 s steps) and alignment_heads: the pipeline's words and times, and the
pieces (median filter, dynamic time warping, grouping tokens into words) against transformers' functions."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from pretrained import pipeline  # noqa: E402
from pretrained.generation.whisper_timestamps import dtw, group_words, median_filter  # noqa: E402
from pretrained.pipelines import PipelineError  # noqa: E402

from test_asr_long_audio import SPECIALS  # noqa: E402
from test_whisper_features import speechlike  # noqa: E402

N_TIMES = 1501
WORDS = {(f"Ġw{i}" if i % 3 else f"x{i}"): i for i in range(95)} | {"Ġ(": 95, "Ġ\"": 96, ".": 97, ",": 98, "?": 99}


def tokenizer():
    vocab = dict(WORDS)
    vocab.update({name: 100 + j for j, name in enumerate(SPECIALS)})
    times = ["<|%.2f|>" % (t * 0.02) for t in range(N_TIMES)]
    vocab.update({name: 111 + t for t, name in enumerate(times)})
    tok = transformers.WhisperTokenizer(vocab=vocab, merges=[], unk_token="<|endoftext|>")
    tok.add_special_tokens({"additional_special_tokens": SPECIALS[1:]})
    tok.add_tokens(times)
    return tok


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("whisper-words")
    config = transformers.WhisperConfig(
        vocab_size=111 + N_TIMES, num_mel_bins=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=40, decoder_ffn_dim=40, d_model=32, max_source_positions=1500,
        max_target_positions=64, pad_token_id=100, bos_token_id=100, eos_token_id=100, decoder_start_token_id=101,
        begin_suppress_tokens=[5, 100], suppress_tokens=[7, 8], tie_word_embeddings=False)
    model = transformers.WhisperForConditionalGeneration(config)
    with torch.no_grad():
        model.proj_out.weight.normal_(0, 1.0)
        model.proj_out.weight[111:] *= 1.5
    model.save_pretrained(path)
    g = transformers.GenerationConfig(decoder_start_token_id=101, bos_token_id=100, eos_token_id=100, pad_token_id=100,
                                      begin_suppress_tokens=[5, 100], suppress_tokens=[7, 8])
    g.no_timestamps_token_id, g.is_multilingual, g.alignment_heads = 110, False, [[0, 1], [1, 0], [1, 3]]
    g.save_pretrained(path)
    transformers.WhisperProcessor(transformers.WhisperFeatureExtractor(feature_size=16), tokenizer()).save_pretrained(path)
    return str(path)


@pytest.mark.slow
def test_word_timestamps_equal_transformers(folder):
    transformers.logging.set_verbosity_error()
    ref = transformers.pipeline("automatic-speech-recognition", model=folder)
    ours = pipeline("automatic-speech-recognition", model=folder)
    clip = speechlike(12.0, 2)
    want = ref(clip.copy(), num_beams=1, max_new_tokens=24, return_timestamps="word")
    got = ours(clip, num_beams=1, max_new_tokens=24, return_timestamps="word")
    assert json.loads(json.dumps(got)) == json.loads(json.dumps(want))
    assert len(got["chunks"]) > 2 and len({c["timestamp"] for c in got["chunks"]}) > 1


@pytest.mark.slow
def test_word_timestamps_across_windows_equal_transformers(folder):
    transformers.logging.set_verbosity_error()
    ref = transformers.pipeline("automatic-speech-recognition", model=folder)
    ref.tokenizer.pad_token = "<|endoftext|>"
    ours = pipeline("automatic-speech-recognition", model=folder)
    audio = speechlike(45.0, 2)
    for kwargs in (dict(chunk_length_s=20, batch_size=2), dict()):  # windows with overlaps; sequential long-form
        want = ref(audio.copy(), num_beams=1, max_new_tokens=24, return_timestamps="word", **kwargs)
        got = ours(audio, num_beams=1, max_new_tokens=24, return_timestamps="word", **kwargs)
        assert json.loads(json.dumps(got)) == json.loads(json.dumps(want)), kwargs


def test_word_timestamps_need_alignment_heads(folder, tmp_path):
    from pretrained import WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration.from_pretrained(folder)
    del model.generation_config.alignment_heads
    asr = pipeline("automatic-speech-recognition", model=model, tokenizer=folder, feature_extractor=folder)
    with pytest.raises(PipelineError, match="alignment_heads"):
        asr(speechlike(2.0, 0), return_timestamps="word")


def test_alignment_pieces_equal_transformers():
    from transformers.models.whisper.generation_whisper import _dynamic_time_warping, _median_filter

    gen = torch.Generator().manual_seed(0)
    for width in (1, 3, 7):
        x = torch.randn(3, 5, 40, generator=gen)
        torch.testing.assert_close(median_filter(x, width), _median_filter(x, width), rtol=0, atol=0)
    for n, m in ((1, 1), (3, 10), (12, 60), (20, 7)):
        matrix = torch.randn(n, m, generator=gen).double().numpy()
        for rounded in (matrix, np.round(matrix)):  # rounded: many equal costs, so the tie rules matter
            for a, b in zip(dtw(rounded), _dynamic_time_warping(rounded)):
                assert a.tolist() == b.tolist()


def test_grouping_into_words_equals_transformers():
    from transformers.models.whisper.tokenization_whisper import _collate_word_timestamps

    tok = tokenizer()
    rng = random.Random(0)
    for _ in range(100):
        tokens = [rng.randrange(100) for _ in range(rng.randrange(1, 12))]
        times = [(round(0.1 * k, 2), round(0.1 * k + 0.05, 2)) for k in range(len(tokens))]
        for language, return_language in ((None, False), ("english", True), ("japanese", True)):
            want = _collate_word_timestamps(tok, tokens, times, language, return_language)
            got = group_words(tok.decode, tokens, times, language, 100, return_language)
            assert got == want
