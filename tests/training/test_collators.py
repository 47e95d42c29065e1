"""Data collators against transformers' on the same examples: keys, dtypes and values, on the embedded MiniLM
tokenizer (padding, token classification, MLM, CLM) and a byte-level BPE BART tokenizer with tiny BART and T5
models (seq2seq with decoder_input_ids), both padding sides and pad_to_multiple_of. MLM masks are compared
draw for draw: both collators draw from torch's global generator (or a seeded one) in the same order."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import pretrained
from pretrained.errors import InputError, UnsupportedOptionError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from checkpoints import hf_checkpoint  # noqa: E402

transformers = pytest.importorskip("transformers")

TEXTS = ["Hello world.", "A much longer sentence, with commas and words.", "Short one", "Padding sides differ here."]


@pytest.fixture(scope="module")
def minilm(minilm_path):
    return pretrained.AutoTokenizer.from_pretrained(minilm_path), transformers.AutoTokenizer.from_pretrained(minilm_path)


@pytest.fixture(params=["right", "left"])
def sided(request, minilm):
    ours, theirs = minilm
    ours.padding_side = theirs.padding_side = request.param
    yield ours, theirs
    ours.padding_side = theirs.padding_side = "right"


def assert_same(mine, theirs):
    assert sorted(mine) == sorted(theirs)
    for key in theirs:
        a, b = mine[key], theirs[key]
        if b is None:
            assert a is None, key
            continue
        assert isinstance(a, torch.Tensor) and a.dtype == b.dtype, (key, type(a), getattr(a, "dtype", None), b.dtype)
        assert torch.equal(a, b), (key, a, b)


def encode(tokenizer, **kwargs):
    return [dict(tokenizer(text, **kwargs)) for text in TEXTS]


@pytest.mark.parametrize("options", [{}, {"pad_to_multiple_of": 8}, {"padding": "max_length", "max_length": 20}])
def test_padding_with_class_labels(sided, options):
    ours, theirs = sided
    features = [dict(f, label=i % 2) for i, f in enumerate(encode(ours, return_special_tokens_mask=True))]
    expected = [dict(f, label=i % 2) for i, f in enumerate(encode(theirs, return_special_tokens_mask=True))]
    mine = pretrained.DataCollatorWithPadding(ours, **options)(features)
    assert_same(mine, transformers.DataCollatorWithPadding(theirs, **options)(expected))
    assert mine["labels"].tolist() == [0, 1, 0, 1]


def test_padding_renames_label_ids_and_keeps_float_labels(minilm):
    ours, theirs = minilm
    for name, values in (("label_ids", [[1, 0], [0, 1], [1, 1], [0, 0]]), ("label", [0.5, 1.5, 2.5, 3.5])):
        mine = pretrained.DataCollatorWithPadding(ours)([dict(f, **{name: v}) for f, v in zip(encode(ours), values)])
        theirs_batch = transformers.DataCollatorWithPadding(theirs)(
            [dict(f, **{name: v}) for f, v in zip(encode(theirs), values)])
        assert_same(mine, theirs_batch)


@pytest.mark.parametrize("pad_to_multiple_of", [None, 8])
def test_token_classification_pads_labels_on_the_padding_side(sided, pad_to_multiple_of):
    ours, theirs = sided

    def with_labels(features):
        return [dict(f, labels=[(i + j) % 5 for j in range(len(f["input_ids"]))]) for i, f in enumerate(features)]

    mine = pretrained.DataCollatorForTokenClassification(ours, pad_to_multiple_of=pad_to_multiple_of)(
        with_labels(encode(ours)))
    expected = transformers.DataCollatorForTokenClassification(theirs, pad_to_multiple_of=pad_to_multiple_of)(
        with_labels(encode(theirs)))
    assert_same(mine, expected)
    padded = mine["attention_mask"] == 0
    assert padded.any() and (mine["labels"][padded] == -100).all()


def test_token_classification_without_labels(minilm):
    ours, theirs = minilm
    assert_same(pretrained.DataCollatorForTokenClassification(ours)(encode(ours)),
                transformers.DataCollatorForTokenClassification(theirs)(encode(theirs)))


@pytest.mark.parametrize("inputs", ["dicts", "dicts+special_tokens_mask", "id lists", "tensors"])
@pytest.mark.parametrize("pad_to_multiple_of", [None, 8])
def test_masked_lm_matches_transformers_draw_for_draw(sided, inputs, pad_to_multiple_of):
    ours, theirs = sided

    def examples(tokenizer):
        rows = encode(tokenizer, return_special_tokens_mask=inputs.endswith("mask")) * 3
        if inputs == "id lists":
            return [r["input_ids"] for r in rows]
        if inputs == "tensors":
            return [torch.tensor(r["input_ids"]) for r in rows]
        return rows

    options = dict(mlm_probability=0.4, pad_to_multiple_of=pad_to_multiple_of)
    torch.manual_seed(7)
    mine = pretrained.DataCollatorForLanguageModeling(ours, **options)(examples(ours))
    torch.manual_seed(7)
    expected = transformers.DataCollatorForLanguageModeling(theirs, **options)(examples(theirs))
    assert_same(mine, expected)
    assert (mine["labels"] != -100).any()


def test_masked_lm_seed_argument_matches_transformers(minilm):
    ours, theirs = minilm
    mine = pretrained.DataCollatorForLanguageModeling(ours, seed=3, mask_replace_prob=0.5, random_replace_prob=0.3)
    expected = transformers.DataCollatorForLanguageModeling(theirs, seed=3, mask_replace_prob=0.5,
                                                            random_replace_prob=0.3)
    for _ in range(2):  # the second batch continues the same generator
        assert_same(mine(encode(ours) * 2), expected(encode(theirs) * 2))


def test_masked_lm_statistics(minilm):
    """Special tokens and padding are never picked; picked tokens split about 80/10/10."""
    ours, _ = minilm
    torch.manual_seed(0)
    examples = encode(ours) * 200
    original = pretrained.DataCollatorWithPadding(ours)(encode(ours) * 200)["input_ids"]
    batch = pretrained.DataCollatorForLanguageModeling(ours, mlm_probability=0.3)(examples)
    picked = batch["labels"] != -100
    special = torch.isin(original, torch.tensor(ours.all_special_ids))
    assert not (picked & special).any()
    assert (batch["labels"][picked] == original[picked]).all()
    assert abs(picked.sum().item() / (~special).sum().item() - 0.3) < 0.03
    masked = (batch["input_ids"] == ours.mask_token_id) & picked
    unchanged = (batch["input_ids"] == original) & picked
    n = picked.sum().item()
    assert abs(masked.sum().item() / n - 0.8) < 0.04
    assert abs(unchanged.sum().item() / n - 0.1) < 0.04  # random ids almost never hit the original
    assert (batch["input_ids"][~picked] == original[~picked]).all()


@pytest.mark.parametrize("inputs", ["dicts", "id lists"])
def test_causal_lm_labels_hide_padding(sided, inputs):
    ours, theirs = sided

    def examples(tokenizer):
        rows = encode(tokenizer)
        return [r["input_ids"] for r in rows] if inputs == "id lists" else rows

    mine = pretrained.DataCollatorForLanguageModeling(ours, mlm=False, pad_to_multiple_of=4)(examples(ours))
    expected = transformers.DataCollatorForLanguageModeling(theirs, mlm=False, pad_to_multiple_of=4)(examples(theirs))
    assert_same(mine, expected)


def test_default_data_collator_matches_transformers():
    features = [{"input_ids": [1, 2, 3], "label": i, "pixel_values": np.full((2, 2), i, dtype=np.float32),
                 "mask": torch.ones(3), "text": "dropped", "none": None} for i in range(3)]
    assert_same(pretrained.default_data_collator(features), transformers.default_data_collator(features))
    for labels in ([0.5, 1.0], [[1, 2], [3, 4]], [[0.5, 1.0], [1.5, 2.0]]):
        key = "label" if not isinstance(labels[0], list) else "label_ids"
        features = [{"input_ids": [1, 2], key: v} for v in labels]
        assert_same(pretrained.default_data_collator(features), transformers.default_data_collator(features))
    rows = [SimpleNamespace(input_ids=[1, 2], label=1), SimpleNamespace(input_ids=[3, 4], label=0)]
    assert_same(pretrained.default_data_collator(rows), transformers.default_data_collator(rows))


# ---------------------------------------------------------------------------------------------- seq2seq
CORPUS = ["The quick brown fox jumps over the lazy dog.", "Translate English to German: the house is wonderful.",
          "Summaries are shorter than the articles they summarise.", "Tokenizers split text into pieces."] * 8


@pytest.fixture(scope="module")
def bart(tmp_path_factory):
    """A byte-level BPE tokenizer named BartTokenizer, and tiny BART and T5 models saved by transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    folder = tmp_path_factory.mktemp("seq2seq-collator")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "BartTokenizer", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>",
        "unk_token": "<unk>", "mask_token": "<mask>", "model_max_length": 64}))
    vocab = tok.get_vocab_size()
    bart_dir = hf_checkpoint(folder / "bart", "BartConfig", "BartForConditionalGeneration", vocab_size=vocab,
                             d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                             decoder_attention_heads=2, encoder_ffn_dim=16, decoder_ffn_dim=16,
                             max_position_embeddings=64)
    t5_dir = hf_checkpoint(folder / "t5", "T5Config", "T5ForConditionalGeneration", vocab_size=vocab, d_model=16,
                           d_kv=8, d_ff=16, num_layers=1, num_heads=2, decoder_start_token_id=0, pad_token_id=1)
    return {
        "tokenizers": (pretrained.AutoTokenizer.from_pretrained(str(folder)),
                       transformers.AutoTokenizer.from_pretrained(str(folder))),
        "bart": (pretrained.AutoModelForSeq2SeqLM.from_pretrained(bart_dir),
                 transformers.AutoModelForSeq2SeqLM.from_pretrained(bart_dir)),
        "t5": (pretrained.AutoModelForSeq2SeqLM.from_pretrained(t5_dir),
               transformers.AutoModelForSeq2SeqLM.from_pretrained(t5_dir)),
    }


def seq2seq_features(tokenizer, labels_as="list"):
    sources = ["summarize: the quick brown fox", "translate: the house", "a b"]
    targets = ["fox", "das Haus ist wunderbar und gross", "ab"]
    rows = []
    for source, target in zip(sources, targets):
        row = dict(tokenizer(source))
        ids = tokenizer(target)["input_ids"]
        row["labels"] = np.array(ids, dtype=np.int64) if labels_as == "array" else ids
        rows.append(row)
    return rows


@pytest.mark.parametrize("model", [None, "bart", "t5"])
@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("options", [{}, {"pad_to_multiple_of": 8}, {"padding": "max_length", "max_length": 40}])
def test_seq2seq_pads_labels_and_builds_decoder_inputs(bart, model, side, options):
    ours, theirs = bart["tokenizers"]
    ours.padding_side = theirs.padding_side = side
    try:
        our_model, their_model = bart[model] if model else (None, None)
        mine = pretrained.DataCollatorForSeq2Seq(ours, model=our_model, **options)(seq2seq_features(ours))
        expected = transformers.DataCollatorForSeq2Seq(theirs, model=their_model, **options)(seq2seq_features(theirs))
    finally:
        ours.padding_side = theirs.padding_side = "right"
    assert_same(mine, expected)
    assert ("decoder_input_ids" in mine) == (model is not None)


@pytest.mark.filterwarnings("ignore:Creating a tensor from a list of numpy")  # transformers' own
def test_seq2seq_numpy_labels_and_no_labels(bart):
    ours, theirs = bart["tokenizers"]
    our_model, their_model = bart["bart"]
    assert_same(pretrained.DataCollatorForSeq2Seq(ours, model=our_model)(seq2seq_features(ours, "array")),
                transformers.DataCollatorForSeq2Seq(theirs, model=their_model)(seq2seq_features(theirs, "array")))
    unlabelled = [{k: v for k, v in f.items() if k != "labels"} for f in seq2seq_features(ours)]
    batch = pretrained.DataCollatorForSeq2Seq(ours, model=our_model)(unlabelled)
    assert batch["labels"] is None and "decoder_input_ids" not in batch


# ---------------------------------------------------------------------------------------------- errors
def test_refusals_name_the_argument(minilm):
    ours, _ = minilm
    with pytest.raises(UnsupportedOptionError, match="whole_word_mask"):
        pretrained.DataCollatorForLanguageModeling(ours, whole_word_mask=True)
    with pytest.raises(UnsupportedOptionError, match="return_tensors"):
        pretrained.DataCollatorForLanguageModeling(ours, return_tensors="tf")
    with pytest.raises(UnsupportedOptionError, match="return_tensors"):
        pretrained.DataCollatorForTokenClassification(ours)(encode(ours), return_tensors="np")
    with pytest.raises(InputError, match="mask_token"):
        pretrained.DataCollatorForLanguageModeling(SimpleNamespace(mask_token=None))
    with pytest.raises(InputError, match="mlm_probability"):
        pretrained.DataCollatorForLanguageModeling(ours, mlm_probability=1.5)
    with pytest.raises(InputError, match="mask_replace_prob"):
        pretrained.DataCollatorForLanguageModeling(ours, mask_replace_prob=0.8, random_replace_prob=0.3)
    no_pad = SimpleNamespace(pad_token=None, padding_side="right")
    with pytest.raises(InputError, match="pad_token"):
        pretrained.DataCollatorForLanguageModeling(no_pad, mlm=False)([[1, 2], [3]])
