"""BERT WordPiece on the real MiniLM vocabulary: fast and Python backends against transformers.

Transformers 5.23 has no slow BERT tokenizer behind AutoTokenizer(use_fast=False), so the Python
backend is compared with transformers' fast tokenizer on the same vocab.txt: ids, masks, offsets
and windows must be equal.
"""

import logging

import pytest

from encoding_checks import assert_same_encoding, compare_call

hf = pytest.importorskip("transformers")

from pretrained import AutoTokenizer  # noqa: E402
from pretrained.tokenization import BatchEncoding, BertTokenizer, BertTokenizerFast  # noqa: E402

FULL = dict(return_offsets_mapping=True, return_special_tokens_mask=True, return_length=True)


@pytest.fixture(scope="module")
def oracle(minilm_path):
    return hf.AutoTokenizer.from_pretrained(minilm_path)


@pytest.fixture(scope="module", params=["fast", "python"])
def tok(request, minilm_path):
    return AutoTokenizer.from_pretrained(minilm_path, use_fast=request.param == "fast")


def test_backend_classes(minilm_path):
    assert type(AutoTokenizer.from_pretrained(minilm_path)) is BertTokenizerFast
    assert type(AutoTokenizer.from_pretrained(minilm_path, use_fast=False)) is BertTokenizer


def test_corpus_parity(tok, oracle, corpus):
    compare_call(tok, oracle, corpus, **FULL)


def test_corpus_decode(tok, oracle, corpus):
    ids = oracle(corpus)["input_ids"]
    assert tok.batch_decode(ids) == oracle.batch_decode(ids)
    assert tok.batch_decode(ids, skip_special_tokens=True) == oracle.batch_decode(ids, skip_special_tokens=True)
    assert tok.decode(ids[20], clean_up_tokenization_spaces=True) == oracle.decode(ids[20], clean_up_tokenization_spaces=True)
    assert [tok.tokenize(t) for t in corpus[:200]] == [oracle.tokenize(t) for t in corpus[:200]]


@pytest.mark.parametrize("truncation", [True, "longest_first", "only_first", "only_second"])
def test_pairs_truncation_and_windows(tok, oracle, corpus, truncation):
    firsts, seconds = corpus[100:160], corpus[160:220]
    # only_first/only_second need the truncated side long enough; pick pairs where it is.
    if truncation in ("only_first", "only_second"):
        pick = [(a, b) for a, b in zip(firsts, seconds)
                if len(oracle.tokenize(a if truncation == "only_first" else b)) > 30 and len(oracle.tokenize(b if truncation == "only_first" else a)) < 8]
        pick += [(corpus[10], "short"), ("tiny", corpus[11])] if truncation == "only_first" else [("tiny", corpus[10])]
        firsts, seconds = [p[0] for p in pick], [p[1] for p in pick]
    for side in ("right", "left"):
        tok.truncation_side = oracle.truncation_side = side
        try:
            compare_call(tok, oracle, firsts, seconds, truncation=truncation, max_length=24, stride=4,
                         return_overflowing_tokens=True, padding="max_length", **FULL)
        finally:
            tok.truncation_side = oracle.truncation_side = "right"


def test_single_text_windows_for_qa(tok, oracle, corpus):
    question, context = "what is the quick fox?", " ".join(corpus[200:230])
    a, b = compare_call(tok, oracle, question, context, truncation="only_second", max_length=64, stride=16,
                        return_overflowing_tokens=True, padding="max_length", **FULL)
    assert len(a["input_ids"]) > 2
    for i in range(len(a["input_ids"])):
        assert a.sequence_ids(i) == b.sequence_ids(i)
        assert a.word_ids(i) == b.word_ids(i)


@pytest.mark.parametrize("padding,extra", [
    (True, {}), ("longest", {"pad_to_multiple_of": 8}), ("max_length", {"max_length": 40, "truncation": True}),
    (False, {"max_length": 10}), (True, {"padding_side": "left"}),
])
def test_padding_variants(tok, oracle, corpus, padding, extra):
    compare_call(tok, oracle, corpus[300:340], padding=padding, **extra, **FULL)


def test_split_into_words(tok, oracle, corpus):
    words = [line.split() for line in corpus[400:460]]
    words = [w for w in words if w]
    a, b = compare_call(tok, oracle, words, is_split_into_words=True, padding=True, **FULL)
    assert a.word_ids(3) == b.word_ids(3)
    compare_call(tok, oracle, words[0], words[1], is_split_into_words=True, **FULL)


def test_batch_encoding_api(tok, oracle):
    text = "Hello world, tokenizers!"
    a, b = tok(text), oracle(text)
    assert isinstance(a, BatchEncoding)
    assert a.input_ids == b.input_ids and a["attention_mask"] == b["attention_mask"]
    assert a.tokens() == b.tokens()
    assert a.word_ids() == b.word_ids() and a.sequence_ids() == b.sequence_ids()
    assert [a.char_to_token(i) for i in range(len(text))] == [b.char_to_token(i) for i in range(len(text))]
    assert a.token_to_chars(2) == tuple(b.token_to_chars(2))
    with pytest.raises(AttributeError):
        a.not_a_key


def test_return_tensors(tok, oracle):
    torch = pytest.importorskip("torch")
    np = pytest.importorskip("numpy")
    texts = ["a short one", "a slightly longer sentence here"]
    a = tok(texts, padding=True, return_tensors="pt")
    assert isinstance(a["input_ids"], torch.Tensor)
    assert torch.equal(a["input_ids"], oracle(texts, padding=True, return_tensors="pt")["input_ids"])
    assert a.to("cpu")["input_ids"].device.type == "cpu"
    single = tok("one text", return_tensors="pt")
    assert single["input_ids"].shape == oracle("one text", return_tensors="pt")["input_ids"].shape
    n = tok(texts, padding=True, return_tensors="np")
    assert isinstance(n["attention_mask"], np.ndarray)
    assert (n["attention_mask"] == oracle(texts, padding=True, return_tensors="np")["attention_mask"]).all()
    with pytest.raises(ValueError, match="padding=True"):
        tok(texts, return_tensors="pt")


def test_encode_convert_and_vocab(tok, oracle):
    text = "Tokenizers are fun, aren't they?"
    assert tok.encode(text) == oracle.encode(text)
    assert tok.encode(text, "second part", truncation=True, max_length=8) == oracle.encode(text, "second part", truncation=True, max_length=8)
    tokens = oracle.tokenize(text)
    assert tok.convert_tokens_to_ids(tokens) == oracle.convert_tokens_to_ids(tokens)
    assert tok.convert_tokens_to_ids("notaword-xyz") == oracle.convert_tokens_to_ids("notaword-xyz")
    ids = oracle.encode(text)
    assert tok.convert_ids_to_tokens(ids) == oracle.convert_ids_to_tokens(ids)
    assert tok.convert_ids_to_tokens(ids, skip_special_tokens=True) == oracle.convert_ids_to_tokens(ids, skip_special_tokens=True)
    assert tok.convert_tokens_to_string(tokens) == oracle.convert_tokens_to_string(tokens)
    assert len(tok) == len(oracle) and tok.get_vocab() == oracle.get_vocab()
    assert tok.all_special_ids == [oracle.convert_tokens_to_ids(t) for t in tok.all_special_tokens]
    assert (tok.cls_token, tok.sep_token_id, tok.pad_token_id, tok.mask_token) == (
        oracle.cls_token, oracle.sep_token_id, oracle.pad_token_id, oracle.mask_token)
    assert tok.model_max_length == oracle.model_max_length == 512
    assert tok.num_special_tokens_to_add(pair=True) == oracle.num_special_tokens_to_add(pair=True)
    # transformers 5 dropped build_inputs_with_special_tokens from fast tokenizers: BERT's layout is known.
    cls_, sep = oracle.cls_token_id, oracle.sep_token_id
    assert tok.build_inputs_with_special_tokens([5, 6], [7]) == [cls_, 5, 6, sep, 7, sep]
    assert tok.get_special_tokens_mask([5, 6], [7]) == [1, 0, 0, 1, 0, 1]
    assert tok.get_special_tokens_mask([cls_, 5, sep], already_has_special_tokens=True) == [1, 0, 1]


def test_added_tokens(minilm_path, corpus):
    for use_fast in (True, False):
        tok = AutoTokenizer.from_pretrained(minilm_path, use_fast=use_fast)
        oracle = hf.AutoTokenizer.from_pretrained(minilm_path)
        assert tok.add_tokens(["newword", "<ent>"], special_tokens=True) == oracle.add_tokens(["newword", "<ent>"], special_tokens=True)
        assert tok.add_special_tokens({"additional_special_tokens": ["<sep2>"]}) == \
            oracle.add_special_tokens({"additional_special_tokens": ["<sep2>"]})
        texts = ["a newword here<ent>and <sep2> there", "<ent>", "no added"] + corpus[:50]
        compare_call(tok, oracle, texts, **FULL)
        ids = oracle(texts)["input_ids"]
        assert tok.batch_decode(ids, skip_special_tokens=True) == oracle.batch_decode(ids, skip_special_tokens=True)
        assert len(tok) == len(oracle)


def test_pad_for_collators(tok, oracle):
    features = [tok("a b c"), tok("a much longer sentence for padding")]
    theirs = [oracle("a b c"), oracle("a much longer sentence for padding")]
    for kw in ({}, {"pad_to_multiple_of": 8}, {"padding": "max_length", "max_length": 16}, {"padding_side": "left"}):
        a = tok.pad([dict(f) for f in features], **kw)
        b = oracle.pad([dict(f) for f in theirs], **kw)
        assert_same_encoding(a, b, str(kw))
    pt = tok.pad([dict(f) for f in features], return_tensors="pt")
    assert pt["input_ids"].shape == (2, len(features[1]["input_ids"]))


def test_long_text_warning_and_errors(minilm_path, caplog):
    tok = AutoTokenizer.from_pretrained(minilm_path)
    with caplog.at_level(logging.WARNING):
        tok("word " * 600)
    assert "longer than the specified maximum sequence length" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        tok("word " * 600)
    assert "longer than the specified" not in caplog.text  # said once per tokenizer, as transformers does
    assert len(tok("word " * 600, truncation=True)["input_ids"]) == 512
    with pytest.raises(ValueError, match="multiple of pad_to_multiple_of"):
        tok("x", padding=True, truncation=True, max_length=10, pad_to_multiple_of=8)
    with pytest.raises(ValueError, match="padding"):
        tok.pad_token = None
        tok(["x", "y y"], padding=True)
    with pytest.raises(ValueError):
        tok(12)


def test_text_target(tok, oracle):
    a = tok("source text", text_target="target text")
    b = oracle("source text", text_target="target text")
    assert a["labels"] == b["labels"] and a["input_ids"] == b["input_ids"]
