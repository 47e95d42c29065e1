"""Byte-level BPE trained here with `tokenizers`, saved as tokenizer.json and as vocab.json + merges.txt:
our fast and Python backends against transformers on the same files.

Transformers 5.23 has no slow GPT-2/RoBERTa tokenizer, so the Python backend is compared with
transformers' (fast) tokenizer over the same vocab.json + merges.txt.
"""

import json

import pytest

from encoding_checks import FULL_KEYS_CALL, compare_call

hf = pytest.importorskip("transformers")

from pretrained import AutoTokenizer  # noqa: E402
from pretrained.errors import CheckpointError  # noqa: E402
from pretrained.tokenization import GPT2Tokenizer, GPT2TokenizerFast, RobertaTokenizer  # noqa: E402


@pytest.fixture(scope="session")
def bpe_folders(tmp_path_factory, corpus):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=2000, special_tokens=["<|endoftext|>", "<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus * 2, trainer)
    root = tmp_path_factory.mktemp("bpe")
    json_dir, files_dir, roberta_dir = root / "json", root / "files", root / "roberta"
    for d in (json_dir, files_dir, roberta_dir):
        d.mkdir()
    tok.save(str(json_dir / "tokenizer.json"))
    (json_dir / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "GPT2Tokenizer", "model_max_length": 1024}))
    tok.model.save(str(files_dir))
    (files_dir / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "GPT2Tokenizer", "model_max_length": 1024}))
    tok.model.save(str(roberta_dir))
    (roberta_dir / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "RobertaTokenizer", "model_max_length": 512}))
    return {"json": str(json_dir), "files": str(files_dir), "roberta": str(roberta_dir)}


# The Python backend reads vocab.json + merges.txt, so it runs on the folders that have them.
@pytest.mark.parametrize("folder,use_fast", [("json", True), ("files", True), ("files", False), ("roberta", True),
                                             ("roberta", False)])
def test_bpe_corpus_parity(bpe_folders, corpus, folder, use_fast):
    path = bpe_folders[folder]
    oracle = hf.AutoTokenizer.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path, use_fast=use_fast)
    expected = {True: (GPT2TokenizerFast, "RobertaTokenizerFast"), False: (GPT2Tokenizer, "RobertaTokenizer")}[use_fast]
    assert type(tok).__name__ == (expected[1] if folder == "roberta" else expected[0].__name__)
    compare_call(tok, oracle, corpus, **FULL_KEYS_CALL)
    ids = oracle(corpus)["input_ids"]
    assert tok.batch_decode(ids) == oracle.batch_decode(ids)
    assert tok.batch_decode(ids, skip_special_tokens=True) == oracle.batch_decode(ids, skip_special_tokens=True)
    assert [tok.tokenize(t) for t in corpus[:100]] == [oracle.tokenize(t) for t in corpus[:100]]
    pairs = (corpus[500:540], corpus[540:580])
    for tok_ in (tok, oracle):
        tok_.pad_token = "<pad>"
    compare_call(tok, oracle, *pairs, truncation=True, max_length=32, stride=5, return_overflowing_tokens=True,
                 padding=True, **FULL_KEYS_CALL)
    questions = ["what is it?"] * 40
    contexts = [" ".join(corpus[600 + i: 610 + i]) for i in range(40)]
    compare_call(tok, oracle, questions, contexts, truncation="only_second", max_length=64, stride=8,
                 return_overflowing_tokens=True, padding="max_length", **FULL_KEYS_CALL)


def test_bpe_added_tokens_and_prefix_space(bpe_folders, corpus):
    path = bpe_folders["files"]
    for use_fast in (True, False):
        tok = AutoTokenizer.from_pretrained(path, use_fast=use_fast, add_prefix_space=True)
        oracle = hf.AutoTokenizer.from_pretrained(path, add_prefix_space=True)
        tok.add_tokens(["<|im_start|>", "<|im_end|>"], special_tokens=True)
        oracle.add_tokens(["<|im_start|>", "<|im_end|>"], special_tokens=True)
        texts = ["<|im_start|>user\nhi there<|im_end|>", "plain text"] + corpus[:100]
        compare_call(tok, oracle, texts, **FULL_KEYS_CALL)
        words = [t.split() for t in corpus[30:60] if t.split()]
        compare_call(tok, oracle, words, is_split_into_words=True, **FULL_KEYS_CALL)
        ids = oracle(texts)["input_ids"]
        assert tok.batch_decode(ids, skip_special_tokens=True) == oracle.batch_decode(ids, skip_special_tokens=True)


def test_pretokenized_needs_prefix_space(bpe_folders):
    for use_fast in (True, False):
        tok = AutoTokenizer.from_pretrained(bpe_folders["files"], use_fast=use_fast)
        with pytest.raises(ValueError, match="add_prefix_space=True"):
            tok([["a", "b"]], is_split_into_words=True)


def test_broken_bpe_files(bpe_folders, tmp_path):
    import shutil

    only_vocab = tmp_path / "only_vocab"
    only_vocab.mkdir()
    shutil.copy(f"{bpe_folders['files']}/vocab.json", only_vocab / "vocab.json")
    (only_vocab / "tokenizer_config.json").write_text('{"tokenizer_class": "GPT2Tokenizer"}')
    for use_fast in (True, False):
        with pytest.raises(CheckpointError, match="merges.txt"):
            AutoTokenizer.from_pretrained(str(only_vocab), use_fast=use_fast)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "tokenizer.json").write_text('{"model": {"type": "BPE", "vocab": ')
    with pytest.raises(CheckpointError, match="tokenizer.json"):
        AutoTokenizer.from_pretrained(str(corrupt))
    (corrupt / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "NotAModel"}}')
    with pytest.raises(CheckpointError, match="tokenizer.json"):
        AutoTokenizer.from_pretrained(str(corrupt))
    (only_vocab / "vocab.json").write_text("[1, 2]")
    (only_vocab / "merges.txt").write_text("#version: 0.2\na b\n")
    with pytest.raises(CheckpointError, match="vocab.json"):
        GPT2Tokenizer.from_pretrained(str(only_vocab))
