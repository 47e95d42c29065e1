"""`add_prefix_space` on byte-level tokenizers loaded from tokenizer.json (GPT-2, RoBERTa, BART):
the argument is applied to the file's pre-tokenizer and post-processor, as transformers does."""

import json

import pytest

hf = pytest.importorskip("transformers")

from pretrained import AutoTokenizer  # noqa: E402

TEXTS = ["Hello world", " two  spaces here", "Mixed CASE, punctuation!", "numbers 12 345", ""]
WORDS = [["Hello", "world"], ["EU", "rejects", "German", "call"], ["a"]]
KEYS = dict(return_offsets_mapping=True, return_special_tokens_mask=True)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<s>", "<pad>", "</s>", "<unk>",
                                                                  "<mask>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([" ".join(w) for w in WORDS] + TEXTS * 3 + ["the quick brown fox jumps"] * 5, trainer)
    root = tmp_path_factory.mktemp("prefix")
    out = {}
    for name, cls in [("gpt2", "GPT2Tokenizer"), ("roberta", "RobertaTokenizer"), ("bart", "BartTokenizer")]:
        folder = root / name
        folder.mkdir()
        t = Tokenizer.from_str(tok.to_str())
        if name != "gpt2":
            t.post_processor = processors.RobertaProcessing(("</s>", t.token_to_id("</s>")),
                                                            ("<s>", t.token_to_id("<s>")), trim_offsets=True,
                                                            add_prefix_space=False)
        t.save(str(folder / "tokenizer.json"))
        (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": cls}))
        out[name] = str(folder)
    return out


def _same(ours, theirs, *args, **kwargs):
    a, b = ours(*args, **kwargs), theirs(*args, **kwargs)
    for key in b.keys():
        assert a[key] == b[key], key
    assert [a.word_ids(i) for i in range(len(a["input_ids"]))] == [b.word_ids(i) for i in range(len(b["input_ids"]))]


@pytest.mark.parametrize("name", ["gpt2", "roberta", "bart"])
@pytest.mark.parametrize("options", [{"add_prefix_space": True}, {"add_prefix_space": True, "trim_offsets": False},
                                     {}])
def test_add_prefix_space_with_tokenizer_json(folders, name, options):
    if "trim_offsets" in options and name == "gpt2":
        pytest.skip("trim_offsets is a RoBERTa/BART argument")
    ours = AutoTokenizer.from_pretrained(folders[name], **options)
    theirs = hf.AutoTokenizer.from_pretrained(folders[name], **options)
    _same(ours, theirs, TEXTS, **KEYS)
    if options:
        _same(ours, theirs, WORDS, is_split_into_words=True, **KEYS)


def test_prefix_space_survives_save(folders, tmp_path):
    tok = AutoTokenizer.from_pretrained(folders["roberta"], add_prefix_space=True)
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    theirs = hf.AutoTokenizer.from_pretrained(folders["roberta"], add_prefix_space=True)
    _same(again, theirs, WORDS, is_split_into_words=True, **KEYS)
