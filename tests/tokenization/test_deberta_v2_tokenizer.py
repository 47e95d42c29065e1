"""The DeBERTa-v3 tokenizer from its spm.model (a Unigram model trained here with DeBERTa's special tokens,
[MASK] added after the vocabulary as on the Hub): ids equal SentencePiece's own encoding on the corpus, and
both backends equal transformers 4.57.6 (ids, pairs with token types, lower-casing, punctuation split,
decode). Transformers 5.23 is no oracle here: it builds this tokenizer without the model's normalizer
(e.g. '…' becomes [UNK])."""

from __future__ import annotations

import io
import json
import os
import subprocess

import pytest

spm = pytest.importorskip("sentencepiece")

from checkpoints import tf4_python  # noqa: E402
from pretrained import AutoTokenizer  # noqa: E402
from pretrained.tokenization import DebertaV2Tokenizer, DebertaV2TokenizerFast  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory, corpus):
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter([c for c in corpus if c.strip()]), model_writer=model,
                                   vocab_size=500, hard_vocab_limit=False, minloglevel=2, num_threads=2,
                                   model_type="unigram", character_coverage=0.9995, pad_id=0, pad_piece="[PAD]",
                                   bos_id=1, bos_piece="[CLS]", eos_id=2, eos_piece="[SEP]", unk_id=3, unk_piece="[UNK]")
    root = tmp_path_factory.mktemp("deberta")
    (root / "spm.model").write_bytes(model.getvalue())
    (root / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False, "vocab_type": "spm"}))
    (root / "config.json").write_text(json.dumps({"model_type": "deberta-v2"}))  # no tokenizer_class, as on the Hub
    return str(root)


@pytest.mark.parametrize("use_fast", [True, False])
def test_ids_equal_sentencepiece(folder, corpus, use_fast):
    tok = AutoTokenizer.from_pretrained(folder, use_fast=use_fast)
    assert type(tok) is (DebertaV2TokenizerFast if use_fast else DebertaV2Tokenizer)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(folder, "spm.model"))
    ours = tok(corpus)["input_ids"]
    differ = [line for line, ids in zip(corpus, ours) if ids != [1] + sp.encode(line) + [2]]
    assert len(differ) <= 1 and all(set(line) == {"x"} for line in differ)  # a Unigram tie SentencePiece breaks its own way
    assert (tok.mask_token, tok.mask_token_id, len(tok)) == ("[MASK]", 500, 501)
    assert tok("a [MASK] b")["input_ids"][-3:] == [500, sp.piece_to_id("▁b"), 2]


_TF4 = r"""
import json, sys
import transformers
spec = json.load(sys.stdin)
out = {}
for cls in ("DebertaV2TokenizerFast", "DebertaV2Tokenizer"):
    for name, options in spec["options"].items():
        if cls == "DebertaV2Tokenizer" and options:
            continue
        tok = getattr(transformers, cls).from_pretrained(spec["folder"], **options)
        ids = tok(spec["texts"])["input_ids"]
        pair = tok(spec["texts"][:60], spec["texts"][60:120])
        out[cls + name] = [ids, pair["input_ids"], pair["token_type_ids"], [tok.decode(x) for x in ids[:300]]]
json.dump(out, sys.stdout)
"""
OPTIONS = {"": {}, "-lower": {"do_lower_case": True}, "-punct": {"split_by_punct": True}}


def test_both_backends_equal_transformers_4(folder, corpus):
    if not os.path.exists(tf4_python()):
        pytest.skip(f"transformers 4.57.6 venv absent ({tf4_python()}; set PRETRAINED_TF4_VENV)")
    proc = subprocess.run([tf4_python(), "-c", _TF4], input=json.dumps({"folder": folder, "texts": corpus, "options": OPTIONS}),
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    theirs = json.loads(proc.stdout)
    for name, options in OPTIONS.items():
        fast = DebertaV2TokenizerFast.from_pretrained(folder, **options)
        pair = fast(corpus[:60], corpus[60:120])
        ids = fast(corpus)["input_ids"]
        assert [ids, pair["input_ids"], pair["token_type_ids"], [fast.decode(x) for x in ids[:300]]] == \
            theirs["DebertaV2TokenizerFast" + name], name
    # SentencePiece backend: ids and pairs as 4.57's; decode as its fast one (4.57's slow one spaces [UNK] apart)
    slow = DebertaV2Tokenizer.from_pretrained(folder)
    ids, pair = slow(corpus)["input_ids"], slow(corpus[:60], corpus[60:120])
    want = theirs["DebertaV2Tokenizer"]
    assert ids == want[0] and pair["input_ids"] == want[1] and pair["token_type_ids"] == want[2]
    assert [slow.decode(x) for x in ids[:300]] == theirs["DebertaV2TokenizerFast"][3]


def test_fast_saves_tokenizer_json_and_reloads(folder, corpus, tmp_path):
    tok = AutoTokenizer.from_pretrained(folder)
    tok.save_pretrained(tmp_path)
    assert (tmp_path / "tokenizer.json").exists()
    back = AutoTokenizer.from_pretrained(tmp_path)
    assert type(back) is DebertaV2TokenizerFast
    assert back(corpus[:200])["input_ids"] == tok(corpus[:200])["input_ids"]
    assert back("a", "b")["token_type_ids"] == tok("a", "b")["token_type_ids"]


def test_slow_backend_refuses_options_it_does_not_implement(folder):
    from pretrained.errors import UnsupportedOptionError

    with pytest.raises(UnsupportedOptionError, match="do_lower_case"):
        DebertaV2Tokenizer.from_pretrained(folder, do_lower_case=True)
