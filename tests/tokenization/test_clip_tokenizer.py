"""CLIP's tokenizer (lower-cased byte-level BPE with `</w>` word ends, `<|startoftext|> A <|endoftext|>`):
from vocab.json + merges.txt against transformers 4.57.6's fast CLIP tokenizer (5.23 encodes every text to
unknown tokens when built from these files), and from the tokenizer.json 4.57 saves against 5.23: ids, pairs,
offsets and decoded text equal. Transformers 5 has one CLIP tokenizer, the fast one, and so do we under both
names; 4.57's slow one is no oracle: without ftfy it splits CJK runs into single characters (BasicTokenizer),
which its fast one and 5.x do not."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from checkpoints import tf4_python
from pretrained import AutoTokenizer
from pretrained.tokenization import CLIPTokenizer, CLIPTokenizerFast


@pytest.fixture(scope="module")
def folder(tmp_path_factory, corpus):
    """vocab.json + merges.txt trained here on the corpus the way CLIP's are shaped: words split by CLIP's
    pattern, every byte also as a word end, the two special tokens first."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

    from pretrained.tokenization.convert import CLIP_WORDS

    root = tmp_path_factory.mktemp("clip")
    tok = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                           normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CLIP_WORDS), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    tok.train_from_iterator(corpus[:800], trainers.BpeTrainer(
        vocab_size=1500, special_tokens=["<|startoftext|>", "<|endoftext|>"], initial_alphabet=alphabet,
        end_of_word_suffix="</w>", show_progress=False))
    tok.model.save(str(root))
    vocab = json.loads((root / "vocab.json").read_text())
    for char in sorted(alphabet):
        vocab.setdefault(char + "</w>", len(vocab))
    (root / "vocab.json").write_text(json.dumps(vocab))
    (root / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "CLIPTokenizer"}))
    return str(root)


_TF4 = r"""
import json, sys
import transformers
spec = json.load(sys.stdin)
texts = spec["texts"]
out = {}
for cls in ("CLIPTokenizerFast",):
    tok = getattr(transformers, cls).from_pretrained(spec["folder"])
    ids = tok(texts)["input_ids"]
    pair = tok(texts[:50], texts[50:100])["input_ids"]
    offsets = tok(texts[:200], return_offsets_mapping=True)["offset_mapping"]
    out[cls] = {"ids": ids, "pair": pair, "offsets": offsets, "decoded": [tok.decode(x) for x in ids[:300]],
                "skipped": [tok.decode(x, skip_special_tokens=True) for x in ids[:300]]}
    tok.save_pretrained(spec["saved"])
json.dump(out, sys.stdout)
"""


@pytest.fixture(scope="module")
def oracle(folder, corpus, tmp_path_factory):
    if not os.path.exists(tf4_python()):
        pytest.skip(f"transformers 4.57.6 venv absent ({tf4_python()}; set PRETRAINED_TF4_VENV)")
    saved = str(tmp_path_factory.mktemp("clip_saved"))
    proc = subprocess.run([tf4_python(), "-c", _TF4], capture_output=True, text=True, timeout=300,
                          input=json.dumps({"folder": folder, "texts": corpus, "saved": saved}),
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout), saved


def encode_like_oracle(tok, texts) -> dict:
    ids = tok(texts)["input_ids"]
    return {"ids": ids, "pair": tok(texts[:50], texts[50:100])["input_ids"],
            "offsets": [list(map(list, o)) for o in tok(texts[:200], return_offsets_mapping=True)["offset_mapping"]],
            "decoded": [tok.decode(x) for x in ids[:300]],
            "skipped": [tok.decode(x, skip_special_tokens=True) for x in ids[:300]]}


@pytest.mark.parametrize("use_fast", [True, False])
def test_vocabulary_files_equal_transformers_4(folder, corpus, oracle, use_fast):
    theirs, _ = oracle
    tok = AutoTokenizer.from_pretrained(folder, use_fast=use_fast)
    assert type(tok) is (CLIPTokenizerFast if use_fast else CLIPTokenizer)
    ours = encode_like_oracle(tok, corpus)
    want = theirs["CLIPTokenizerFast"]
    for key in ("ids", "pair", "offsets", "decoded", "skipped"):
        assert ours[key] == want[key], key
    assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token) == (
        "<|startoftext|>", "<|endoftext|>", "<|endoftext|>", "<|endoftext|>")


def test_tokenizer_json_equals_transformers_5(oracle, corpus):
    """The tokenizer.json 4.57 writes (a plain ByteLevel decoder) read by 5.23 and by us."""
    transformers = pytest.importorskip("transformers")
    theirs_4, saved = oracle
    reference = transformers.AutoTokenizer.from_pretrained(saved)
    ours = AutoTokenizer.from_pretrained(saved)
    assert type(ours) is CLIPTokenizerFast
    want = encode_like_oracle(reference, corpus)
    got = encode_like_oracle(ours, corpus)
    for key in want:
        assert got[key] == want[key], key
    assert got["ids"] == theirs_4["CLIPTokenizerFast"]["ids"]


def test_missing_special_token_names_it(tmp_path, folder):
    vocab = json.loads(open(os.path.join(folder, "vocab.json")).read())
    del vocab["<|startoftext|>"]
    (tmp_path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (tmp_path / "merges.txt").write_text(open(os.path.join(folder, "merges.txt")).read())
    from pretrained.errors import CheckpointError

    with pytest.raises(CheckpointError, match="bos_token '<\\|startoftext\\|>' is not in the vocabulary"):
        CLIPTokenizerFast(vocab_file=str(tmp_path / "vocab.json"), merges_file=str(tmp_path / "merges.txt"))
