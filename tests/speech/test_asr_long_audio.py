"""Long audio and timestamps in automatic-speech-recognition against transformers' pipeline on the same tiny
random Whisper (a byte-level WhisperTokenizer with timestamp tokens): chunking with overlaps and their
merge, batching of windows, sequential long-form decoding, segment timestamps; and the pieces on their own
(timestamp logits rules, overlap merge, the timed decoding state machine) against transformers' functions."""

from __future__ import annotations

import json
import random

import pytest
import torch

transformers = pytest.importorskip("transformers")

from pretrained import pipeline  # noqa: E402
from pretrained.generation.whisper_timestamps import (  # noqa: E402
    WhisperTimeStampLogitsProcessor, decode_chunks, merge_overlaps)
from pretrained.tokenization.whisper import LANGUAGES  # noqa: E402
from pretrained.pipelines import PipelineError  # noqa: E402

from test_whisper_features import speechlike  # noqa: E402

SR = 16000
N_WORDS, N_TIMES = 100, 64
SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|fr|>", "<|translate|>", "<|transcribe|>",
            "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|reserved|>", "<|notimestamps|>"]
NO_TIMESTAMPS = 110
TIMESTAMP_BEGIN = NO_TIMESTAMPS + 1
TINY = dict(vocab_size=N_WORDS + len(SPECIALS) + N_TIMES, num_mel_bins=16, encoder_layers=2, decoder_layers=2,
            encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=40, decoder_ffn_dim=40, d_model=32,
            max_source_positions=30, max_target_positions=40, pad_token_id=100, bos_token_id=100, eos_token_id=100,
            decoder_start_token_id=101, begin_suppress_tokens=[5, 100], suppress_tokens=[7, 8])


def whisper_tokenizer():
    """Byte-level BPE vocabulary: words with and without a leading space, Whisper's special tokens, then times."""
    vocab = {(f"Ġw{i}" if i % 3 else f"x{i}"): i for i in range(N_WORDS)}
    vocab.update({name: 100 + j for j, name in enumerate(SPECIALS)})
    times = ["<|%.2f|>" % (t * 0.02) for t in range(N_TIMES)]
    vocab.update({name: TIMESTAMP_BEGIN + t for t, name in enumerate(times)})
    tokenizer = transformers.WhisperTokenizer(vocab=vocab, merges=[], unk_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIALS[1:]})
    tokenizer.add_tokens(times)
    return tokenizer


def build(path, seed: int, time_scale: float):
    """A tiny Whisper whose output projection favours timestamp tokens by `time_scale` (more segments)."""
    torch.manual_seed(seed)
    model = transformers.WhisperForConditionalGeneration(transformers.WhisperConfig(**TINY, tie_word_embeddings=False))
    with torch.no_grad():
        model.proj_out.weight.normal_(0, 1.0)
        model.proj_out.weight[TIMESTAMP_BEGIN:] *= time_scale
        for name, p in model.model.encoder.named_parameters():
            if p.dim() == 2 and "embed" not in name:
                p.mul_(3.0)  # the audio moves the text more
    model.save_pretrained(path)
    config = transformers.GenerationConfig(decoder_start_token_id=101, bos_token_id=100, eos_token_id=100,
                                           pad_token_id=100, begin_suppress_tokens=[5, 100], suppress_tokens=[7, 8])
    config.no_timestamps_token_id = NO_TIMESTAMPS
    config.is_multilingual = False
    config.save_pretrained(path)
    transformers.WhisperProcessor(transformers.WhisperFeatureExtractor(feature_size=16, hop_length=8000),
                                  whisper_tokenizer()).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return {seed: build(tmp_path_factory.mktemp(f"whisper-long-{seed}"), seed, scale)
            for seed, scale in ((0, 1.0), (1, 3.0), (3, 4.0))}


def reference(folder):
    ref = transformers.pipeline("automatic-speech-recognition", model=folder)
    ref.tokenizer.pad_token = "<|endoftext|>"  # its batching needs one
    return ref


def same(a, b) -> bool:  # tuples vs lists and float noise aside
    return json.loads(json.dumps(a)) == json.loads(json.dumps(b))


CASES = [
    dict(chunk_length_s=10),
    dict(chunk_length_s=12, stride_length_s=(3, 2), batch_size=3),
    dict(chunk_length_s=10, return_timestamps=True),
    dict(chunk_length_s=7, return_timestamps=True, batch_size=4),
    dict(),  # 70 s without chunk_length_s: sequential long-form decoding
    dict(return_timestamps=True),
    dict(chunk_length_s=10, return_language=True),
    dict(chunk_length_s=10, return_language=True, return_timestamps=True),
]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 3])
def test_long_audio_equals_transformers_pipeline(folders, seed):
    transformers.logging.set_verbosity_error()
    ref, ours = reference(folders[seed]), pipeline("automatic-speech-recognition", model=folders[seed])
    audio = speechlike(50.0, seed)
    texts = set()
    for kwargs in CASES:
        want = ref(audio.copy(), num_beams=1, max_new_tokens=16, **kwargs)
        got = ours(audio.copy(), num_beams=1, max_new_tokens=16, **kwargs)
        assert same(got, want), kwargs
        texts.add(got["text"])
        if kwargs.get("return_timestamps"):
            assert got["chunks"] and all(isinstance(c["timestamp"], tuple) for c in got["chunks"])
    assert len(texts) > 1  # the options change the result: the comparison is not vacuous


def test_short_clip_timestamps_and_batches(folders):
    ref, ours = reference(folders[1]), pipeline("automatic-speech-recognition", model=folders[1])
    clips = [speechlike(s, i) for i, s in enumerate((4.0, 20.0, 29.0))]
    for clip in clips:
        want = ref(clip.copy(), num_beams=1, max_new_tokens=16, return_timestamps=True)
        assert same(ours(clip, num_beams=1, max_new_tokens=16, return_timestamps=True), want)
    # windows of several inputs share batches; results equal one at a time
    long = [speechlike(40.0, 7), speechlike(25.0, 8)]
    one = [ours(x, max_new_tokens=16, chunk_length_s=10, return_timestamps=True) for x in long]
    assert ours(long, batch_size=4, max_new_tokens=16, chunk_length_s=10, return_timestamps=True) == one


def test_decoding_defaults_equal_transformers_pipeline(folders, tmp_path):
    """Neither side told how to decode: 5 beams and up to 256 new tokens (Transformers' pipeline defaults)
    unless the model's generation_config.json sets them: its max_length stands in for max_new_tokens (the tiny
    checkpoint has 40 positions), its num_beams wins over the default."""
    import shutil

    assert pipeline("automatic-speech-recognition", model=folders[1]).generate_kwargs({}) == {
        "max_new_tokens": 256, "num_beams": 5}
    clip = speechlike(3.0, 5)
    # (num_beams=1 in the file would equal the global default, which counts as unset, in both libraries)
    for settings, added in (({"max_length": 30}, {"num_beams": 5}), ({"max_length": 30, "num_beams": 2}, {})):
        folder = shutil.copytree(folders[1], tmp_path / str(len(settings)))
        config = json.loads((folder / "generation_config.json").read_text())
        (folder / "generation_config.json").write_text(json.dumps({**config, **settings}))
        ours = pipeline("automatic-speech-recognition", model=str(folder))
        assert ours.generate_kwargs({}) == added
        assert same(ours(clip), reference(str(folder))(clip.copy())), settings


def test_windows_equal_transformers_chunks(folders):
    from transformers.pipelines.automatic_speech_recognition import chunk_iter

    ours = pipeline("automatic-speech-recognition", model=folders[0])
    extractor = transformers.WhisperFeatureExtractor(feature_size=16, hop_length=8000)
    for seconds, chunk, stride in ((70.0, 10, None), (31.0, 30, 5), (65.5, 12, (3, 2)), (9.0, 10, None)):
        audio = speechlike(seconds, 0)
        left, right = (stride, stride) if isinstance(stride, int) else (stride or (chunk / 6, chunk / 6))
        want = [item["stride"] for item in chunk_iter(audio, extractor, int(round(chunk * SR)), int(round(left * SR)),
                                                      int(round(right * SR)))]
        got = [s for _, s in ours.windows(audio, chunk, stride)]
        assert got == want


def test_timestamp_rules_equal_transformers():
    from transformers.generation.logits_process import WhisperTimeStampLogitsProcessor as Reference

    config = transformers.GenerationConfig(eos_token_id=100)
    config.no_timestamps_token_id = NO_TIMESTAMPS
    rng = random.Random(0)
    for max_initial in (None, 5):
        config.max_initial_timestamp_index = max_initial
        ref = Reference(config, begin_index=2)
        ours = WhisperTimeStampLogitsProcessor(NO_TIMESTAMPS, 100, 2, max_initial)
        for length in range(2, 9):
            ids = torch.tensor([[101, NO_TIMESTAMPS] + [rng.choice([rng.randrange(100), rng.randrange(111, 175)])
                                                      for _ in range(length - 2)] for _ in range(6)])
            scores = torch.randn(6, 175) * 3
            assert torch.equal(ours(ids, scores), ref(ids, scores))


def _random_window(rng, with_times: bool) -> list[int]:
    ids, t = [], 0
    for _ in range(rng.randrange(3, 14)):
        if with_times and rng.random() < 0.3:
            t = rng.randrange(t, 40)
            ids += [TIMESTAMP_BEGIN + t] * rng.choice([1, 2])
        ids.append(rng.randrange(0, 12))  # a small alphabet: windows overlap in many places
    return ids


def test_merge_and_timed_decoding_equal_transformers():
    from transformers.models.whisper.tokenization_whisper import _decode_asr, _find_longest_common_sequence

    tokenizer = whisper_tokenizer()
    special = set(tokenizer.all_special_ids)
    rng = random.Random(1)
    for _ in range(200):
        seqs = [_random_window(rng, False) for _ in range(rng.randrange(1, 5))]
        assert merge_overlaps(seqs) == _find_longest_common_sequence(seqs)
    for case in range(60):
        n = rng.randrange(1, 5)
        outputs = []
        for k in range(n):
            out = {"tokens": torch.tensor([_random_window(rng, True)])}
            if n > 1 or case % 2:
                out["stride"] = (10.0, 0.0 if k == 0 else 2.0, 0.0 if k == n - 1 else 2.0)
            if rng.random() < 0.2:
                out["tokens"] = torch.cat([torch.tensor([[102]]), out["tokens"]], dim=1)  # a language token
            outputs.append(out)
        for timestamps in (False, True):
            for language in (False, True):
                want = _decode_asr(tokenizer, [dict(o) for o in outputs], return_timestamps=timestamps,
                                   return_language=language, time_precision=0.5)
                got = decode_chunks([{**o, "tokens": o["tokens"][0].tolist()} for o in outputs], tokenizer.decode,
                                    timestamp_begin=TIMESTAMP_BEGIN, special_ids=special, time_precision=0.5,
                                    return_timestamps=timestamps, return_language=language,
                                    language_of=lambda i: {102: "english"}.get(i))
                assert same(got, want)


def test_languages_table_equals_transformers():
    from transformers.models.whisper.tokenization_whisper import LANGUAGES as REFERENCE

    assert LANGUAGES == REFERENCE


def test_bad_long_audio_options(folders):
    asr = pipeline("automatic-speech-recognition", model=folders[0])
    clip = speechlike(3.0, 0)
    with pytest.raises(PipelineError, match="chunk_length_s=40"):
        asr(clip, chunk_length_s=40)
    with pytest.raises(PipelineError, match="stride_length_s"):
        asr(clip, chunk_length_s=10, stride_length_s=5)
    with pytest.raises(PipelineError, match="pass chunk_length_s"):
        asr(clip, stride_length_s=2)
    with pytest.raises(PipelineError, match="chunk_length_s=-1"):
        asr(clip, chunk_length_s=-1)
    with pytest.raises(PipelineError, match="return_timestamps='char'"):
        asr(clip, return_timestamps="char")


MULTILINGUAL = dict(is_multilingual=True, lang_to_id={"<|en|>": 102, "<|fr|>": 103},
                    task_to_id={"translate": 104, "transcribe": 105})


@pytest.mark.slow
@pytest.mark.parametrize("seed, detected", [(0, "english"), (1, "french")])
def test_return_language_on_a_multilingual_checkpoint_detects_it(folders, tmp_path, seed, detected):
    """No language given: each input (each chunk with chunk_length_s) gets the one its audio is detected in,
    as transformers' pipeline reports it (the two tiny checkpoints hear different languages)."""
    import shutil

    transformers.logging.set_verbosity_error()
    path = shutil.copytree(folders[seed], tmp_path / "multilingual")
    with open(path / "generation_config.json") as f:
        generation = json.load(f)
    with open(path / "generation_config.json", "w") as f:
        json.dump({**generation, **MULTILINGUAL}, f)
    ours, ref = pipeline("automatic-speech-recognition", model=str(path)), reference(str(path))
    for key, value in MULTILINGUAL.items():  # transformers 5 drops the fields it does not know when it loads
        setattr(ref.model.generation_config, key, value)
    audio = speechlike(25.0, seed)
    for kwargs in (dict(), dict(chunk_length_s=10, return_timestamps=True), dict(return_timestamps=True),
                   dict(generate_kwargs={"language": "fr"})):
        want = ref(audio.copy(), return_language=True, num_beams=1, max_new_tokens=8, **kwargs)
        got = ours(audio.copy(), return_language=True, num_beams=1, max_new_tokens=8, **kwargs)
        assert same(got, want), kwargs
        language = "french" if "generate_kwargs" in kwargs else detected
        assert got["chunks"] and {c["language"] for c in got["chunks"]} == {language}
    # windows detected in one batch (transformers' pipeline fails on batched languages)
    chunked = dict(return_language=True, num_beams=1, max_new_tokens=8, chunk_length_s=10, return_timestamps=True)
    assert ours(audio, batch_size=3, **chunked) == ours(audio, **chunked)
    with pytest.raises(PipelineError, match="return_timestamps='word'"):
        ours(audio, return_timestamps="word")


@pytest.mark.parametrize("num_beams", [1, 3])
def test_generate_with_timestamps_equals_transformers_decoding(folders, num_beams):
    from transformers.generation.logits_process import WhisperTimeStampLogitsProcessor as Reference

    from pretrained import WhisperForConditionalGeneration

    ref = transformers.WhisperForConditionalGeneration.from_pretrained(folders[1]).eval()
    ours = WhisperForConditionalGeneration.from_pretrained(folders[1])
    features = torch.randn(2, 16, 60, generator=torch.Generator().manual_seed(0))
    rules = Reference(ref.generation_config, begin_index=1)
    # the oracle: transformers' generic decoding from <|startoftranscript|> with its timestamp rules added
    want = transformers.GenerationMixin.generate(ref, features, decoder_input_ids=torch.tensor([[101]] * 2),
                                                 logits_processor=[rules], max_new_tokens=16, num_beams=num_beams)
    got = ours.generate(features, return_timestamps=True, max_new_tokens=16, num_beams=num_beams)
    assert got.tolist() == want.tolist()
    assert (got >= TIMESTAMP_BEGIN).sum() >= 2  # times were generated
