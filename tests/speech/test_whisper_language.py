"""Language detection of a multilingual Whisper against transformers on a tiny random checkpoint:
detect_language(), and generate() without a language (greedy and beams, a batch whose rows differ)."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

import pretrained  # noqa: E402
from pretrained.errors import ConfigError, InputError  # noqa: E402

EOS, START, TRANSLATE, TRANSCRIBE, NO_TIMESTAMPS = 100, 101, 108, 109, 110
LANGS = {"<|en|>": 102, "<|zh|>": 103, "<|de|>": 104, "<|es|>": 105, "<|ru|>": 106, "<|fr|>": 107}
TINY = dict(vocab_size=120, num_mel_bins=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=40, decoder_ffn_dim=40, d_model=32, max_source_positions=30,
            max_target_positions=40, pad_token_id=EOS, bos_token_id=EOS, eos_token_id=EOS,
            decoder_start_token_id=START, begin_suppress_tokens=[5, EOS], suppress_tokens=[7, 8])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("whisper-multi")
    model = transformers.WhisperForConditionalGeneration(transformers.WhisperConfig(**TINY, tie_word_embeddings=False))
    with torch.no_grad():  # a larger output projection: the language logits depend on the audio
        model.proj_out.weight.normal_(0, 1.0)
        for name, p in model.model.decoder.named_parameters():
            if "encoder_attn" in name and p.dim() == 2:
                p.mul_(30.0)  # the audio moves the first step: different rows, different languages
    g = model.generation_config
    g.is_multilingual, g.lang_to_id = True, dict(LANGS)
    g.task_to_id = {"translate": TRANSLATE, "transcribe": TRANSCRIBE}
    g.no_timestamps_token_id = NO_TIMESTAMPS
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def models(folder):
    ours = pretrained.WhisperForConditionalGeneration.from_pretrained(folder)
    assert ours.generation_config.lang_to_id == LANGS  # read from generation_config.json
    theirs = transformers.WhisperForConditionalGeneration.from_pretrained(folder).eval()
    g = theirs.generation_config  # transformers 5 drops these unknown fields when it loads the file
    g.is_multilingual, g.lang_to_id = True, dict(LANGS)
    g.task_to_id = {"translate": TRANSLATE, "transcribe": TRANSCRIBE}
    g.no_timestamps_token_id = NO_TIMESTAMPS
    return ours, theirs


@pytest.fixture(scope="module")
def features(models):
    """Two rows the model hears in two different languages."""
    ours, _ = models
    for scale in (3.0, 10.0, 30.0, 100.0):
        x = torch.randn(2, 16, 60, generator=torch.Generator().manual_seed(0)) * scale
        x[1] = torch.sin(torch.arange(60.0) * 0.7) * scale  # a tone against noise
        found = ours.detect_language(x).tolist()
        if found[0] != found[1]:
            return x
    pytest.fail("no scale gave two different languages")


def _text(row: list[int]) -> list[int]:
    return [t for t in row if t != EOS]


def _generated(rows, prompt_length: int) -> list[list[int]]:
    """The generated ids of each row, without the prompt (when the row has it) and the end tokens; transformers'
    rows come in a dict with return_timestamps, an output object otherwise."""
    if not isinstance(rows, list):
        rows = (rows["sequences"] if isinstance(rows, dict) else rows.sequences).tolist()
    return [_text(row[prompt_length:] if row[0] == START else row) for row in rows]


def test_detect_language_matches(models, features):
    ours, theirs = models
    want = theirs.detect_language(features)
    assert ours.detect_language(features).tolist() == want.tolist()
    assert set(want.tolist()) <= set(LANGS.values())
    encoded = ours.model.encoder(features, return_dict=True)
    assert ours.detect_language(encoder_outputs=encoded).tolist() == want.tolist()
    assert ours.detect_language(encoder_outputs=(encoded.last_hidden_state,)).tolist() == want.tolist()
    # only the languages the generation config lists are candidates
    only = {k: v for k, v in LANGS.items() if v != want[0].item()}
    config = ours.generation_config.copy()
    config.lang_to_id = only
    assert ours.detect_language(features, generation_config=config)[0].item() in only.values()


@pytest.mark.parametrize("num_beams", [1, 3])
@pytest.mark.parametrize("options", [{}, dict(task="translate"), dict(return_timestamps=True)])
def test_generate_detects_each_rows_language(models, features, num_beams, options):
    ours, theirs = models
    detected = theirs.detect_language(features).tolist()
    got = ours.generate(features, num_beams=num_beams, max_new_tokens=8, **options)
    want = theirs.generate(features, num_beams=num_beams, max_new_tokens=8, return_dict_in_generate=True, **options)
    prompts = [[START, language] + ([TRANSLATE] if "task" in options else []) +
               ([] if "return_timestamps" in options else [NO_TIMESTAMPS]) for language in detected]
    assert got[:, :len(prompts[0])].tolist() == prompts
    assert _generated(got.tolist(), len(prompts[0])) == _generated(want, len(prompts[0]))


def test_languages_per_row_and_forced_decoder_ids(models, features):
    ours, theirs = models
    got = ours.generate(features, language=["fr", "German"], max_new_tokens=6)
    want = theirs.generate(features, language=["fr", "german"], max_new_tokens=6, return_dict_in_generate=True)
    assert got[:, :4].tolist() == [[START, 107, TRANSCRIBE, NO_TIMESTAMPS], [START, 104, TRANSCRIBE, NO_TIMESTAMPS]]
    assert _generated(got.tolist(), 4) == _generated(want, 4)
    # a hub-style generation config: [[1, None], [2, transcribe]] -> detected language, then transcribe
    config = ours.generation_config.copy()
    config.forced_decoder_ids = [[1, None], [2, TRANSCRIBE]]
    ref_config = theirs.generation_config.__class__.from_dict(theirs.generation_config.to_dict())
    ref_config.forced_decoder_ids = [[1, None], [2, TRANSCRIBE]]
    ref_config.return_timestamps, ref_config.no_timestamps_token_id = False, NO_TIMESTAMPS
    ref_config.is_multilingual, ref_config.lang_to_id = True, dict(LANGS)
    ref_config.task_to_id = {"translate": TRANSLATE, "transcribe": TRANSCRIBE}
    got = ours.generate(features, generation_config=config, max_new_tokens=6)
    detected = theirs.detect_language(features).tolist()
    assert got[:, :4].tolist() == [[START, d, TRANSCRIBE, NO_TIMESTAMPS] for d in detected]
    want = theirs.generate(features, generation_config=ref_config, max_new_tokens=6, return_dict_in_generate=True)
    assert _generated(got.tolist(), 4) == _generated(want, 4)


def test_errors(models, features):
    ours, _ = models
    with pytest.raises(InputError, match="exactly one"):
        ours.detect_language()
    with pytest.raises(InputError, match="one language per row"):
        ours.generate(features, language=["fr"])
    with pytest.raises(InputError, match="detected_language"):
        ours.decoder_prompt()
    config = ours.generation_config.copy()
    config.lang_to_id = None
    with pytest.raises(ConfigError, match="lang_to_id"):
        ours.detect_language(features, generation_config=config)
