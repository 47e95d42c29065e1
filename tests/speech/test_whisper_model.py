"""Whisper parity with transformers on a tiny random checkpoint: encoder, decoder, logits, loss, cached
decoding, and greedy / beam generation from Whisper's decoder prompt."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

import pretrained  # noqa: E402
from pretrained.errors import InputError, UnsupportedOptionError  # noqa: E402

TINY = dict(vocab_size=120, num_mel_bins=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=40, decoder_ffn_dim=40, d_model=32, max_source_positions=30,
            max_target_positions=40, pad_token_id=100, bos_token_id=100, eos_token_id=100, decoder_start_token_id=101,
            begin_suppress_tokens=[5, 100], suppress_tokens=[7, 8])
NO_TIMESTAMPS = 110


def _close(a, b):
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def whisper_folder(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("whisper")
    model = transformers.WhisperForConditionalGeneration(transformers.WhisperConfig(**TINY, tie_word_embeddings=False))
    with torch.no_grad():  # an untied, larger output projection: generation picks varied tokens, not one id
        model.proj_out.weight.normal_(0, 1.0)
    model.generation_config.no_timestamps_token_id = NO_TIMESTAMPS
    model.save_pretrained(path)
    return path


def test_forward_parity(whisper_folder):
    ref = transformers.WhisperForConditionalGeneration.from_pretrained(whisper_folder).eval()
    ours = pretrained.AutoModelForSpeechSeq2Seq.from_pretrained(whisper_folder)
    assert type(ours).__name__ == "WhisperForConditionalGeneration"
    features = torch.randn(2, 16, 60)
    ids = torch.tensor([[101, 110, 5, 9, 33], [101, 110, 64, 2, 17]])
    labels = torch.tensor([[110, 5, 9, 33, 100], [110, 64, 2, 17, 100]])
    with torch.no_grad():
        a = ref(features, decoder_input_ids=ids, labels=labels, output_hidden_states=True)
        b = ours(features, decoder_input_ids=ids, labels=labels, output_hidden_states=True)
    _close(b.logits, a.logits)
    _close(b.loss, a.loss)
    _close(b.encoder_last_hidden_state, a.encoder_last_hidden_state)
    for ours_h, ref_h in zip(b.encoder_hidden_states + b.decoder_hidden_states,
                             a.encoder_hidden_states + a.decoder_hidden_states):
        _close(ours_h, ref_h)
    base = pretrained.AutoModel.from_pretrained(whisper_folder)
    with torch.no_grad():
        _close(base(features, decoder_input_ids=ids).last_hidden_state,
               transformers.WhisperModel.from_pretrained(whisper_folder)(features, decoder_input_ids=ids).last_hidden_state)
    with pytest.raises(InputError, match="input_features of shape"):
        ours(torch.randn(1, 16, 50), decoder_input_ids=ids[:1])


def test_cached_decoding_equals_full_forward(whisper_folder):
    ours = pretrained.WhisperForConditionalGeneration.from_pretrained(whisper_folder)
    features = torch.randn(1, 16, 60)
    ids = torch.tensor([[101, 110, 5, 9, 33, 12]])
    with torch.no_grad():
        full = ours(features, decoder_input_ids=ids).logits
        first = ours(features, decoder_input_ids=ids[:, :3], use_cache=True)
        rest = ours(encoder_outputs=(first.encoder_last_hidden_state,), decoder_input_ids=ids[:, 3:],
                    past_key_values=first.past_key_values, use_cache=True)
    _close(torch.cat([first.logits, rest.logits], dim=1), full)


@pytest.mark.parametrize("num_beams", [1, 3])
def test_generate_equals_transformers_decoding_from_the_same_prompt(whisper_folder, num_beams):
    ref = transformers.WhisperForConditionalGeneration.from_pretrained(whisper_folder).eval()
    ours = pretrained.WhisperForConditionalGeneration.from_pretrained(whisper_folder)
    features = torch.randn(2, 16, 60)
    assert ours.decoder_prompt() == [101, NO_TIMESTAMPS]
    prompt = torch.tensor([[101, NO_TIMESTAMPS]] * 2)
    # the oracle: transformers' generic seq2seq decoding (its Whisper front adds long-form logic on top)
    expected = transformers.GenerationMixin.generate(ref, features, decoder_input_ids=prompt, max_new_tokens=12,
                                                     num_beams=num_beams)
    got = ours.generate(features, max_new_tokens=12, num_beams=num_beams)
    assert got.tolist() == expected.tolist()
    assert len(set(got[0, 2:].tolist())) > 2  # a real sequence, not one token repeated


def test_generate_options(whisper_folder):
    ours = pretrained.WhisperForConditionalGeneration.from_pretrained(whisper_folder)
    features = torch.randn(1, 16, 60)
    # timestamps are implemented (tests/speech/test_whisper_timestamps.py): the prompt drops <|notimestamps|>
    assert ours.generate(features, return_timestamps=True, max_new_tokens=2)[0, :2].tolist() != [101, NO_TIMESTAMPS]
    with pytest.raises(UnsupportedOptionError, match="prompt_ids"):
        ours.generate(features, prompt_ids=torch.tensor([1]))
    with pytest.raises(InputError, match="English-only"):
        ours.generate(features, language="fr")
    ours.generation_config.is_multilingual = True
    ours.generation_config.lang_to_id = {"<|en|>": 102, "<|fr|>": 103}
    ours.generation_config.task_to_id = {"transcribe": 105, "translate": 104}
    assert ours.decoder_prompt("fr", "translate") == [101, 103, 104, NO_TIMESTAMPS]
    assert ours.decoder_prompt("en") == [101, 102, 105, NO_TIMESTAMPS]
    out = ours.generate(features, language="fr", task="translate", max_new_tokens=3)
    assert out[0, :4].tolist() == [101, 103, 104, NO_TIMESTAMPS]
    with pytest.raises(InputError, match="language='xx'"):
        ours.decoder_prompt("xx")


def test_save_round_trip(whisper_folder, tmp_path):
    ours = pretrained.WhisperForConditionalGeneration.from_pretrained(whisper_folder)
    ours.save_pretrained(tmp_path)
    ref = transformers.WhisperForConditionalGeneration.from_pretrained(tmp_path).eval()
    features, ids = torch.randn(1, 16, 60), torch.tensor([[101, 110, 4]])
    with torch.no_grad():
        _close(ours(features, decoder_input_ids=ids).logits, ref(features, decoder_input_ids=ids).logits)


def test_tied_output_projection(tmp_path):
    torch.manual_seed(1)
    ref = transformers.WhisperForConditionalGeneration(transformers.WhisperConfig(**TINY)).eval()
    ref.save_pretrained(tmp_path)  # proj_out is not written: it is the decoder's embeddings
    ours = pretrained.WhisperForConditionalGeneration.from_pretrained(tmp_path)
    assert ours.proj_out.weight is ours.model.decoder.embed_tokens.weight
    features, ids = torch.randn(1, 16, 60), torch.tensor([[101, 110, 4, 50]])
    with torch.no_grad():
        _close(ours(features, decoder_input_ids=ids).logits, ref(features, decoder_input_ids=ids).logits)


@pytest.mark.slow
def test_static_cache_and_compiled_decode_give_the_same_tokens(whisper_folder):
    from pretrained.generation.config import CompileConfig

    ours = pretrained.WhisperForConditionalGeneration.from_pretrained(whisper_folder)
    features = torch.randn(2, 16, 60)
    dynamic = ours.generate(features, max_new_tokens=10)
    assert ours.generate(features, max_new_tokens=10, cache_implementation="static").tolist() == dynamic.tolist()
    compiled = ours.generate(features, max_new_tokens=10, cache_implementation="static", compile_config=CompileConfig())
    assert compiled.tolist() == dynamic.tolist()
