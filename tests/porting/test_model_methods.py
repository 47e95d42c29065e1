"""Model and generation methods ported scripts call: resize_token_embeddings, is_gradient_checkpointing,
compute_transition_scores, generate() given a BatchEncoding; and the text-generation pipeline's
sampling defaults. transformers is the oracle."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

hf = pytest.importorskip("transformers")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from checkpoints import hf_checkpoint  # noqa: E402

import pretrained  # noqa: E402
from pretrained.errors import InputError  # noqa: E402

SEQ2SEQ = dict(encoder_layers=1, decoder_layers=1, d_model=16, encoder_attention_heads=2, decoder_attention_heads=2,
               encoder_ffn_dim=32, decoder_ffn_dim=32, vocab_size=40, max_position_embeddings=32)
CASES = {
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", "AutoModelForCausalLM",
             dict(n_layer=1, n_embd=16, n_head=2, vocab_size=50, n_positions=32, bos_token_id=0, eos_token_id=0)),
    "llama_untied": ("LlamaConfig", "LlamaForCausalLM", "AutoModelForCausalLM",
                     dict(num_hidden_layers=1, hidden_size=16, intermediate_size=32, num_attention_heads=2,
                          num_key_value_heads=2, vocab_size=60, tie_word_embeddings=False)),
    "bert": ("BertConfig", "BertForMaskedLM", "AutoModelForMaskedLM",
             dict(num_hidden_layers=1, hidden_size=16, intermediate_size=32, num_attention_heads=2, vocab_size=70)),
    "bart": ("BartConfig", "BartForConditionalGeneration", "AutoModelForSeq2SeqLM", SEQ2SEQ),
    "t5": ("T5Config", "T5ForConditionalGeneration", "AutoModelForSeq2SeqLM",
           dict(num_layers=1, d_model=16, d_kv=8, num_heads=2, d_ff=32, vocab_size=40)),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("methods")
    return {name: (hf_checkpoint(root / name, c, m, **kw), m, auto) for name, (c, m, auto, kw) in CASES.items()}


def _logits(model, ids):
    if model.config.is_encoder_decoder:
        return model(input_ids=ids, decoder_input_ids=ids).logits
    return model(input_ids=ids).logits


def _pair(folders, name):
    path, hf_class, auto = folders[name]
    return getattr(hf, hf_class).from_pretrained(path).eval(), getattr(pretrained, auto).from_pretrained(path)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("grow", [True, False])
def test_resize_token_embeddings(folders, name, grow):
    theirs, ours = _pair(folders, name)
    old = ours.config.vocab_size
    kwargs = dict(new_num_tokens=old + 7, pad_to_multiple_of=8) if grow else dict(new_num_tokens=old - 5)
    a, b = theirs.resize_token_embeddings(**kwargs), ours.resize_token_embeddings(**kwargs)
    assert b.weight.shape == a.weight.shape and ours.config.vocab_size == theirs.config.vocab_size
    ids = torch.tensor([[1, 2, 3, min(old, b.weight.shape[0]) - 1]])
    x, y = _logits(theirs, ids), _logits(ours, ids)
    assert x.shape == y.shape
    kept = min(old, b.weight.shape[0])
    torch.testing.assert_close(y[..., :kept], x[..., :kept], rtol=0, atol=1e-5)
    if grow:  # new rows sit at the old rows' mean (plus noise of 1e-9 x their covariance), as transformers'
        mean, spread = b.weight[:old].mean(0), 5e-4 * b.weight[:old].std().item()  # noise: ~3e-5 x std
        torch.testing.assert_close(b.weight[old:], mean.expand_as(b.weight[old:]), rtol=0, atol=spread)
        torch.testing.assert_close(a.weight[old:], mean.expand_as(a.weight[old:]), rtol=0, atol=spread)
        head_a, head_b = theirs.get_output_embeddings(), ours.get_output_embeddings()
        assert head_b.weight.shape == head_a.weight.shape
        if getattr(head_a, "bias", None) is not None:
            torch.testing.assert_close(head_b.bias, head_a.bias, rtol=0, atol=1e-6)
    tied = getattr(ours.config, "tie_word_embeddings", True)
    assert (ours.get_output_embeddings().weight is b.weight) == tied


def test_resize_without_mean_and_tied_forward(folders):
    _, ours = _pair(folders, "llama_untied")
    torch.manual_seed(0)
    emb = ours.resize_token_embeddings(100, mean_resizing=False)
    new = emb.weight[60:]
    assert new.std().item() == pytest.approx(ours.config.initializer_range, rel=0.2)
    assert ours.lm_head.weight.shape == (100, 16) and ours(input_ids=torch.tensor([[99]])).logits.shape[-1] == 100
    assert ours.resize_token_embeddings() is emb
    with pytest.raises(InputError, match="pad_to_multiple_of"):
        ours.resize_token_embeddings(64, pad_to_multiple_of=0)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # transformers 5 renames these activation_checkpointing_*
def test_is_gradient_checkpointing(folders):
    theirs, ours = _pair(folders, "gpt2")
    for model in (theirs, ours):
        assert model.is_gradient_checkpointing is False
        model.gradient_checkpointing_enable()
        assert model.is_gradient_checkpointing is True and model.is_activation_checkpointing is True
        model.activation_checkpointing_disable()
        assert model.is_gradient_checkpointing is False
        model.activation_checkpointing_enable()
        assert model.is_activation_checkpointing is True


@pytest.mark.parametrize("options", [
    dict(num_beams=3, num_return_sequences=2, length_penalty=0.5),
    dict(num_beams=1),
    dict(num_beams=3, early_stop=True),
])
@pytest.mark.parametrize("normalize", [False, True])
def test_compute_transition_scores(folders, options, normalize):
    theirs, ours = _pair(folders, "gpt2")
    ids, mask = torch.tensor([[1, 2, 3, 4], [7, 7, 5, 6]]), torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])
    options = dict(options)
    kwargs = dict(max_new_tokens=6, do_sample=False, pad_token_id=7, output_scores=True, return_dict_in_generate=True)
    if options.pop("early_stop", False):  # an eos that ends some returned beams early (beam_indices -1 after)
        options["length_penalty"] = -1.0  # favours short hypotheses
        options["eos_token_id"] = next(
            eos for eos in range(50) if (theirs.generate(input_ids=ids, attention_mask=mask, eos_token_id=eos,
                                                         **options, **kwargs).beam_indices < 0).any())
    kwargs.update(options)
    a = theirs.generate(input_ids=ids, attention_mask=mask, **kwargs)
    b = ours.generate(input_ids=ids, attention_mask=mask, **kwargs)
    assert torch.equal(a.sequences, b.sequences)
    beams_a, beams_b = getattr(a, "beam_indices", None), getattr(b, "beam_indices", None)
    x = theirs.compute_transition_scores(a.sequences, a.scores, beams_a, normalize_logits=normalize)
    y = ours.compute_transition_scores(b.sequences, b.scores, beams_b, normalize_logits=normalize)
    assert x.shape == y.shape
    torch.testing.assert_close(y, x, rtol=0, atol=1e-5)


def test_generate_takes_a_batch_encoding(folders):
    theirs, ours = _pair(folders, "gpt2")
    enc = hf.BatchEncoding({"input_ids": torch.tensor([[1, 2, 3], [4, 5, 6]]),
                            "attention_mask": torch.tensor([[0, 1, 1], [1, 1, 1]])})
    expected = theirs.generate(**enc, max_new_tokens=4, do_sample=False, pad_token_id=0)
    assert torch.equal(ours.generate(enc, max_new_tokens=4, do_sample=False), expected)
    assert torch.equal(ours.generate(dict(enc), max_new_tokens=4, do_sample=False), expected)
    with pytest.raises(InputError, match="attention_mask"):
        ours.generate(enc, attention_mask=enc["attention_mask"], max_new_tokens=2)


# ---------------------------------------------------------------------- text-generation pipeline defaults
@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
    """A tiny GPT-2 with a trained byte-level tokenizer; `sampling/` adds a generation_config.json that samples."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    root = tmp_path_factory.mktemp("textgen")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["the quick brown fox jumps over the lazy dog"] * 3 + ["Hello world, hello there"],
                            trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                show_progress=False))
    out = {}
    for name, generation in (("plain", None), ("sampling", {"do_sample": True, "temperature": 0.6, "top_p": 0.9,
                                                            "top_k": 0, "bos_token_id": 0, "eos_token_id": 0})):
        folder = hf_checkpoint(root / name, "GPT2Config", "GPT2LMHeadModel", vocab_size=tok.get_vocab_size(),
                               n_positions=64, n_embd=32, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=0)
        tok.save(str(root / name / "tokenizer.json"))
        (root / name / "tokenizer_config.json").write_text(json.dumps(
            {"tokenizer_class": "GPT2TokenizerFast", "eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>"}))
        if generation:
            (root / name / "generation_config.json").write_text(json.dumps(generation))
        out[name] = folder
    return out


@pytest.mark.parametrize("name", ["plain", "sampling"])
@pytest.mark.parametrize("kwargs", [{}, {"do_sample": False}, {"temperature": 1.3}])
def test_text_generation_defaults_follow_transformers(chat_model, name, kwargs):
    ours = pretrained.pipeline("text-generation", model=chat_model[name])
    theirs = hf.pipeline("text-generation", model=chat_model[name])
    kwargs = {"max_new_tokens": 8, **kwargs}
    results = []
    for pipe in (ours, theirs):
        torch.manual_seed(5)
        results.append([pipe("Hello world", **kwargs) for _ in range(3)])
    assert results[0] == results[1]
