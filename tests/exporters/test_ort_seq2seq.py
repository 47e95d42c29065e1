"""Seq2seq export (encoder graph + merged decoder graph with past keys/values): ORTModelForSeq2SeqLM's
generate() gives our PyTorch model's tokens (greedy, beam, sampling) for T5 and BART, and runs in
the text2text-generation / summarization / translation pipelines."""

from __future__ import annotations

import json
import os

import pytest
import torch

pytestmark = pytest.mark.slow  # three seq2seq exports, ~90 s on 2 cores
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from checkpoints import hf_checkpoint  # noqa: E402
from pretrained import AutoModelForSeq2SeqLM, pipeline  # noqa: E402
from pretrained.cache import DynamicCache, EncoderDecoderCache  # noqa: E402
from pretrained.errors import InputError, UnsupportedOptionError  # noqa: E402
from pretrained.exporters.onnx import SEQ2SEQ_FILES, export  # noqa: E402
from pretrained.exporters.runtime import ORTModelForCausalLM, ORTModelForSeq2SeqLM  # noqa: E402

WORDS = "the a of to in is summarize translate English German French : . , hello world cat dog sat on mat".split()
FAMILIES = {
    # the decoder deeper than the encoder: cross keys/values are per decoder layer
    "t5": ("T5Config", "T5ForConditionalGeneration",
           dict(d_model=32, d_kv=8, d_ff=37, num_layers=2, num_decoder_layers=3, num_heads=4, decoder_start_token_id=0,
                pad_token_id=0, eos_token_id=1,
                task_specific_params={"summarization": {"prefix": "summarize: ", "max_length": 12},
                                      "translation_en_to_de": {"prefix": "translate English to German: "}})),
    "bart": ("BartConfig", "BartForConditionalGeneration",
             dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
                  encoder_ffn_dim=37, decoder_ffn_dim=37, max_position_embeddings=64, pad_token_id=0, eos_token_id=1,
                  bos_token_id=2, decoder_start_token_id=1, forced_eos_token_id=1)),
}


def _unigram_tokenizer(folder) -> int:
    """A Unigram tokenizer (T5's kind) over WORDS; returns its vocabulary size."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(f"▁{w}", -float(i)) for i, w in enumerate(WORDS)]
    vocab += [(c, -30.0) for c in "abcdefghijklmnopqrstuvwxyz:.,"] + [("▁", -40.0)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", 1)])
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}))
    return len(vocab)


@pytest.fixture(scope="module", params=list(FAMILIES))
def exported(request, tmp_path_factory):
    """(family, our PyTorch model, its ORTModelForSeq2SeqLM, the PyTorch folder, the export folder)."""
    config_name, model_name, kwargs = FAMILIES[request.param]
    root = tmp_path_factory.mktemp(request.param)
    (root / "pt").mkdir()
    vocab = _unigram_tokenizer(root / "pt")
    source = hf_checkpoint(root / "pt", config_name, model_name, vocab_size=vocab, **kwargs)
    folder = export(source, root / "onnx", task="text2text-generation")
    return (request.param, AutoModelForSeq2SeqLM.from_pretrained(source).eval(),
            ORTModelForSeq2SeqLM.from_pretrained(folder), source, folder)


def _prompt(vocab: int):
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(3, vocab, (2, 7), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0  # the second prompt is shorter: the encoder's padding is masked
    return ids, mask


def test_export_record_and_files(exported):
    family, _, _, _, folder = exported
    record = json.loads((folder / "export.json").read_text())
    assert record["task"] == "text2text-generation" and record["opset"] == 18
    assert record["max_abs_diff"] <= 1e-4 and list(record["graphs"]) == list(SEQ2SEQ_FILES)
    n = {"t5": 3, "bart": 2}[family]  # decoder layers
    decoder = record["graphs"]["decoder_model.onnx"]
    assert decoder["outputs"] == ["logits"] + [f"present.{i}.{kind}" for i in range(n) for kind in ("key", "value")]
    assert record["graphs"]["encoder_model.onnx"]["outputs"] == ["last_hidden_state"] + [
        f"cross.{i}.{kind}" for i in range(n) for kind in ("key", "value")]
    for file in (*SEQ2SEQ_FILES, "config.json", "generation_config.json", "tokenizer.json"):
        assert (folder / file).is_file(), file


def test_step_logits_and_cache_equal_pytorch(exported):
    """Encoder output, first-step and cached-step logits within 1e-4 of our model's."""
    _, ours, ort_model, _, _ = exported
    ids, mask = _prompt(ours.config.vocab_size)
    start = torch.full((2, 3), ours.config.decoder_start_token_id)
    ours_cache, ort_cache = EncoderDecoderCache(DynamicCache(), DynamicCache()), EncoderDecoderCache()
    with torch.no_grad():
        expected = ours(input_ids=ids, attention_mask=mask, decoder_input_ids=start, past_key_values=ours_cache,
                        use_cache=True)
    got = ort_model(input_ids=ids, attention_mask=mask, decoder_input_ids=start, past_key_values=ort_cache)
    torch.testing.assert_close(got.logits, expected.logits, atol=1e-4, rtol=0)
    torch.testing.assert_close(got.encoder_last_hidden_state, expected.encoder_last_hidden_state, atol=1e-4, rtol=0)
    step = expected.logits[:, -1].argmax(-1, keepdim=True)
    encoder_outputs = ort_model.get_encoder()(input_ids=ids, attention_mask=mask)
    with torch.no_grad():
        expected = ours(attention_mask=mask, decoder_input_ids=step, past_key_values=ours_cache, use_cache=True,
                        encoder_outputs=(expected.encoder_last_hidden_state,)).logits
    got = ort_model(attention_mask=mask, decoder_input_ids=step, past_key_values=ort_cache,
                    encoder_outputs=encoder_outputs).logits
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    assert ort_cache.get_seq_length() == ours_cache.get_seq_length() == 4


@pytest.mark.parametrize("options", [dict(do_sample=False), dict(num_beams=3, do_sample=False),
                                     dict(num_beams=2, num_return_sequences=2, do_sample=False),
                                     dict(do_sample=True, top_k=20, temperature=0.8)],
                         ids=["greedy", "beam", "beam-2-returned", "sampling"])
def test_generate_equals_pytorch_tokens(exported, options):
    _, ours, ort_model, _, _ = exported
    ids, mask = _prompt(ours.config.vocab_size)
    torch.manual_seed(0)
    expected = ours.generate(ids, attention_mask=mask, max_new_tokens=10, min_new_tokens=10, **options)
    torch.manual_seed(0)
    got = ort_model.generate(ids, attention_mask=mask, max_new_tokens=10, min_new_tokens=10, **options)
    assert got.shape[1] == 11 and torch.equal(got, expected)
    # without min_new_tokens: rows may end at eos, and are padded alike
    expected = ours.generate(ids, attention_mask=mask, max_new_tokens=10, num_beams=2, do_sample=False)
    assert torch.equal(ort_model.generate(ids, attention_mask=mask, max_new_tokens=10, num_beams=2,
                                          do_sample=False), expected)


@pytest.mark.parametrize("task, kwargs", [("text2text-generation", {"max_new_tokens": 6}),
                                          ("summarization", {"max_new_tokens": 6}),
                                          ("translation_en_to_de", {"max_new_tokens": 5, "num_beams": 2})])
def test_pipelines_equal_pytorch_pipelines(exported, task, kwargs):
    family, _, ort_model, source, _ = exported
    texts = ["hello world the cat sat on the mat", "the dog is a dog"]
    got = pipeline(task, model=ort_model)(texts, batch_size=2, **kwargs)  # the tokenizer comes from the export
    assert got == pipeline(task, model=source)(texts, batch_size=2, **kwargs)
    assert all(len(row[0] if isinstance(row, list) else row) for row in got)


def test_from_pretrained_export_true_and_refusals(exported, tmp_path):
    family, ours, _, source, folder = exported
    if family != "t5":
        pytest.skip("one family is enough for the cache path")
    model = ORTModelForSeq2SeqLM.from_pretrained(source, export=True, cache_dir=tmp_path / "cache")
    assert model.name_or_path.startswith(str(tmp_path / "cache"))
    assert all(os.path.isfile(os.path.join(model.name_or_path, f)) for f in SEQ2SEQ_FILES)
    ids, mask = _prompt(ours.config.vocab_size)
    assert torch.equal(model.generate(ids, attention_mask=mask, max_new_tokens=6),
                       ours.generate(ids, attention_mask=mask, max_new_tokens=6))
    with pytest.raises(InputError, match="exported for task 'text2text-generation'"):
        ORTModelForCausalLM.from_pretrained(folder, file_name="decoder_model.onnx")
    with pytest.raises(UnsupportedOptionError, match="file_name='x.onnx'"):
        ORTModelForSeq2SeqLM.from_pretrained(folder, file_name="x.onnx")
    with pytest.raises(InputError, match="get_encoder"):
        model(decoder_input_ids=ids[:, :1], encoder_outputs=(torch.zeros(2, 7, 32),))
    with pytest.raises(UnsupportedOptionError, match="inputs_embeds"):
        model.get_encoder()(inputs_embeds=torch.zeros(2, 7, 32))
    with pytest.raises(InputError, match="input_features"):  # Whisper's input, not this graph's
        model.get_encoder()(input_ids=ids, input_features=torch.zeros(2, 80, 3000))
    with pytest.raises(UnsupportedOptionError, match="static cache"):
        model.generate(ids, max_new_tokens=3, cache_implementation="static")
