"""Tokenizer details: use_fast=False on a folder that has only tokenizer.json builds the Python backend
from the file's model; the SentencePiece backend decodes <unk> pieces as the fast reference does."""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import pytest

hf = pytest.importorskip("transformers")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tokenization"))

from corpus import build_corpus  # noqa: E402
from encoding_checks import FULL_KEYS_CALL, compare_call  # noqa: E402

from pretrained import AutoTokenizer  # noqa: E402
from pretrained.errors import CheckpointError  # noqa: E402
from pretrained.tokenization import PreTrainedTokenizer  # noqa: E402


@pytest.fixture(scope="module")
def corpus():
    return build_corpus()[:300]


@pytest.fixture(scope="module")
def json_only(tmp_path_factory, corpus, minilm_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=800, special_tokens=["<|endoftext|>", "<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    root = tmp_path_factory.mktemp("json_only")
    out = {}
    for name, cls in (("gpt2", "GPT2Tokenizer"), ("roberta", "RobertaTokenizer")):
        (root / name).mkdir()
        t = Tokenizer.from_str(tok.to_str())
        if name == "roberta":
            t.post_processor = processors.RobertaProcessing(("</s>", t.token_to_id("</s>")),
                                                            ("<s>", t.token_to_id("<s>")))
        t.save(str(root / name / "tokenizer.json"))
        (root / name / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": cls}))
        out[name] = str(root / name)
    (root / "bert").mkdir()
    shutil.copy(Path(minilm_path) / "tokenizer.json", root / "bert")
    config = json.loads((Path(minilm_path) / "tokenizer_config.json").read_text())
    (root / "bert" / "tokenizer_config.json").write_text(json.dumps(config))
    out["bert"] = str(root / "bert")
    return out


@pytest.mark.parametrize("name", ["gpt2", "roberta", "bert"])
def test_python_backend_from_tokenizer_json(json_only, corpus, name, tmp_path):
    ours = AutoTokenizer.from_pretrained(json_only[name], use_fast=False)
    theirs = hf.AutoTokenizer.from_pretrained(json_only[name])
    assert isinstance(ours, PreTrainedTokenizer) and not ours.is_fast
    compare_call(ours, theirs, corpus, **FULL_KEYS_CALL)
    compare_call(ours, theirs, corpus[:40], corpus[40:80], truncation=True, max_length=24, **FULL_KEYS_CALL)
    ids = theirs(corpus[:50])["input_ids"]
    assert ours.batch_decode(ids) == theirs.batch_decode(ids)
    assert ours.batch_decode(ids, skip_special_tokens=True) == theirs.batch_decode(ids, skip_special_tokens=True)
    ours.save_pretrained(tmp_path)  # written as the Python backend's own files
    again = AutoTokenizer.from_pretrained(tmp_path, use_fast=False)
    assert again(corpus[:50])["input_ids"] == theirs(corpus[:50])["input_ids"]


def test_python_backend_refuses_what_it_does_not_implement(json_only, tmp_path):
    state = json.loads((Path(json_only["gpt2"]) / "tokenizer.json").read_text())
    state["model"]["ignore_merges"] = True
    (tmp_path / "tokenizer.json").write_text(json.dumps(state))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "GPT2Tokenizer"}))
    with pytest.raises(CheckpointError, match="ignore_merges.*use_fast=True"):
        AutoTokenizer.from_pretrained(tmp_path, use_fast=False)
    assert AutoTokenizer.from_pretrained(tmp_path).is_fast
    state = json.loads((Path(json_only["bert"]) / "tokenizer.json").read_text())
    (tmp_path / "tokenizer.json").write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match="model.type='WordPiece'"):
        AutoTokenizer.from_pretrained(tmp_path, use_fast=False)


def test_sentencepiece_backend_decodes_unknown_pieces_as_fast(tmp_path, corpus):
    spm = pytest.importorskip("sentencepiece")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter([c for c in corpus if c.strip()]), model_writer=model,
                                   vocab_size=300, hard_vocab_limit=False, minloglevel=2, num_threads=1,
                                   model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                   character_coverage=0.98)
    (tmp_path / "spiece.model").write_bytes(model.getvalue())
    texts = ["≈", "≈abc", "a≈b", "a ≈", "≈ ≈x", "Ωmega≈", "hello ≈≈ world", "I saw a 望遠鏡."]
    for legacy in (True, False):
        (tmp_path / "tokenizer_config.json").write_text(json.dumps(
            {"tokenizer_class": "T5Tokenizer", "extra_ids": 4, "legacy": legacy}))
        ours = AutoTokenizer.from_pretrained(tmp_path, use_fast=False)
        theirs = hf.AutoTokenizer.from_pretrained(tmp_path)
        unk = theirs.unk_token_id
        ids = theirs(texts)["input_ids"] + [[unk], [unk, unk], [unk, 3, unk, 1], [3, unk, 3]]
        assert any(unk in row for row in ids)
        assert ours(texts)["input_ids"] == theirs(texts)["input_ids"]
        for skip in (False, True):
            assert ours.batch_decode(ids, skip_special_tokens=skip) == theirs.batch_decode(ids, skip_special_tokens=skip)
