"""Classic vocabulary files -> a Rust `tokenizers.Tokenizer`, for fast tokenizers without tokenizer.json.

WordPiece (vocab.txt), byte-level BPE (vocab.json + merges.txt) and SentencePiece .model files
(read with a small protobuf reader of our own, so no protobuf dependency) become the same
pipelines Transformers builds for them.
"""

from __future__ import annotations

import json
import struct

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from ..errors import CheckpointError


def read_wordpiece_vocab(path: str) -> dict[str, int]:
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"cannot read vocabulary file {path}: {e}") from e
    if lines and lines[-1] == "":
        lines.pop()
    vocab = {}
    for index, token in enumerate(lines):
        vocab.setdefault(token.rstrip("\r"), index)
    if not vocab:
        raise CheckpointError(f"vocabulary file {path} is empty")
    return vocab


def read_bpe_files(vocab_file: str | None, merges_file: str | None) -> tuple[dict[str, int], list[tuple[str, str]]]:
    if vocab_file is None:
        raise CheckpointError(f"byte-level BPE needs vocab.json next to {merges_file}")
    if merges_file is None:
        raise CheckpointError(f"byte-level BPE needs merges.txt next to {vocab_file}")
    try:
        with open(vocab_file, encoding="utf-8") as f:
            vocab = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"cannot read vocabulary file {vocab_file}: {e}") from e
    try:
        with open(merges_file, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"cannot read merges file {merges_file}: {e}") from e
    merges = []
    for number, line in enumerate(lines, 1):
        if not line or (number == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise CheckpointError(f"{merges_file} line {number} is not two tokens separated by a space: {line!r}")
        merges.append((parts[0], parts[1]))
    return check_bpe(vocab, merges, vocab_file, merges_file)


def check_bpe(vocab, merges, vocab_source: str, merges_source: str) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A BPE vocabulary maps tokens to distinct ids with few holes, and every merge joins two vocabulary tokens
    into a third (what the `tokenizers` library demands, checked here so the error names the file)."""
    if not isinstance(vocab, dict) or not vocab:
        raise CheckpointError(f"{vocab_source} must map tokens to integer ids, got {type(vocab).__name__}")
    seen = set()
    for token, index in vocab.items():
        if type(index) is not int or index < 0:
            raise CheckpointError(f"{vocab_source}: token {token!r} has id {index!r}, expected an integer >= 0")
        if index in seen:
            raise CheckpointError(f"{vocab_source}: id {index} is given to more than one token (one is {token!r})")
        seen.add(index)
    # ids far past the vocabulary's size would make id -> token tables of that size
    limit = 2 * len(vocab) + 1024
    if max(seen) >= limit:
        raise CheckpointError(f"{vocab_source}: id {max(seen)} is far past the {len(vocab)} tokens (expected ids "
                              f"below {limit})")
    for left, right in merges:
        for token in (left, right, left + right):
            if token not in vocab:
                raise CheckpointError(f"{merges_source}: merge {left!r} {right!r} needs {token!r}, which is not in "
                                      f"the vocabulary {vocab_source}")
    return vocab, merges


# CLIP's word pattern: contractions, letter runs, single digits, runs of other non-space characters
CLIP_WORDS = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def clip_tokenizer(vocab, merges, unk_token, bos_token, eos_token) -> Tokenizer:
    """CLIP's BPE: NFC, whitespace runs collapsed, lower case; words by CLIP_WORDS, bytes mapped as GPT-2's,
    `</w>` closing each word; `<|startoftext|> A <|endoftext|>` around a text."""
    tok = Tokenizer(models.BPE(vocab, merges, dropout=None, continuing_subword_prefix="", end_of_word_suffix="</w>",
                               fuse_unk=False, unk_token=str(unk_token)))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                           normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CLIP_WORDS), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()  # `</w>` becomes a space after it: CLIPTokenizerFast._decode
    bos, eos = str(bos_token), str(eos_token)
    for token, field in ((bos, "bos_token"), (eos, "eos_token")):
        if token not in vocab:
            raise CheckpointError(f"CLIP tokenizer: {field} {token!r} is not in the vocabulary")
    tok.post_processor = processors.RobertaProcessing((eos, vocab[eos]), (bos, vocab[bos]), trim_offsets=False,
                                                      add_prefix_space=False)
    return tok


def wordpiece_tokenizer(vocab: dict[str, int], unk_token, cls_token, sep_token, do_lower_case=True,
                        strip_accents=None, tokenize_chinese_chars=True) -> Tokenizer:
    tok = Tokenizer(models.WordPiece(vocab, unk_token=str(unk_token), max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=tokenize_chinese_chars,
                                                strip_accents=strip_accents, lowercase=do_lower_case)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls_token, sep_token = str(cls_token), str(sep_token)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls_token}:0 $A:0 {sep_token}:0",
        pair=f"{cls_token}:0 $A:0 {sep_token}:0 $B:1 {sep_token}:1",
        special_tokens=[(cls_token, vocab[cls_token]), (sep_token, vocab[sep_token])],
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    return tok


def byte_level_bpe_tokenizer(vocab, merges, add_prefix_space=False, post_processor=None) -> Tokenizer:
    tok = Tokenizer(models.BPE(vocab, merges, dropout=None, continuing_subword_prefix="", end_of_word_suffix="",
                               fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = post_processor or processors.ByteLevel(trim_offsets=False)
    return tok


# ---------------------------------------------------------------------- SentencePiece model files
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def _fields(buf: bytes):
    """Yield (field number, wire type, value) of one protobuf message."""
    i, n = 0, len(buf)
    while i < n:
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 2:
            size, i = _varint(buf, i)
            value, i = buf[i:i + size], i + size
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        else:
            raise CheckpointError(f"unsupported protobuf wire type {wire} (expected 0, 1, 2 or 5)")
        if i > n:
            raise CheckpointError(f"truncated protobuf message: a field ends at byte {i} of {n}")
        yield field, wire, value


def _varint(buf: bytes, i: int):
    shift = result = 0
    while True:
        if i >= len(buf):
            raise CheckpointError(f"truncated protobuf varint at byte {i}")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


class SentencePieceModel:
    """What a .model file says: pieces (text, score, type), the algorithm and the normalizer spec."""

    def __init__(self, path: str):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise CheckpointError(f"cannot read SentencePiece model {path}: {e}") from e
        self.path = path
        self.pieces: list[tuple[str, float, int]] = []
        self.model_type = 1  # unigram
        self.unk_id = 0
        self.byte_fallback = False
        self.charsmap = b""
        self.add_dummy_prefix = True
        self.remove_extra_whitespaces = True
        try:
            for field, _, value in _fields(data):
                if field == 1:
                    piece, score, kind = "", 0.0, NORMAL
                    for f2, _, v2 in _fields(value):
                        if f2 == 1:
                            piece = v2.decode("utf-8")
                        elif f2 == 2:
                            score = struct.unpack("<f", v2)[0]
                        elif f2 == 3:
                            kind = v2
                    self.pieces.append((piece, score, kind))
                elif field == 2:
                    for f2, _, v2 in _fields(value):
                        if f2 == 3:
                            self.model_type = v2
                        elif f2 == 40:
                            self.unk_id = v2
                        elif f2 == 35:
                            self.byte_fallback = bool(v2)
                elif field == 3:
                    for f2, _, v2 in _fields(value):
                        if f2 == 2:
                            self.charsmap = bytes(v2)
                        elif f2 == 3:
                            self.add_dummy_prefix = bool(v2)
                        elif f2 == 4:
                            self.remove_extra_whitespaces = bool(v2)
        except (CheckpointError, UnicodeDecodeError, struct.error) as e:
            raise CheckpointError(f"{path} is not a SentencePiece model file: {e}") from e
        if not self.pieces:
            raise CheckpointError(f"{path} is not a SentencePiece model file: it has no pieces")

    @property
    def is_bpe(self) -> bool:
        return self.model_type == 2

    def vocab(self) -> dict[str, int]:
        return {piece: i for i, (piece, _, _) in enumerate(self.pieces)}

    def merges(self) -> list[tuple[str, str]]:
        """BPE merges recovered from the vocabulary: a merge for every split of a piece into two pieces,
        ranked by the merged piece's id (its score order), then by the parts' ids."""
        vocab = self.vocab()
        ranked = []
        for piece, index in vocab.items():
            if self.pieces[index][2] != NORMAL and self.pieces[index][2] != USER_DEFINED:
                continue
            for cut in range(1, len(piece)):
                left, right = piece[:cut], piece[cut:]
                if left in vocab and right in vocab:
                    ranked.append((index, vocab[left], vocab[right], left, right))
        ranked.sort()
        return [(left, right) for _, _, _, left, right in ranked]

    def special_tokens(self) -> list[str]:
        return [p for p, _, kind in self.pieces if kind in (CONTROL, UNKNOWN)]

    def user_defined(self) -> list[str]:
        return [p for p, _, kind in self.pieces if kind == USER_DEFINED]


def llama_tokenizer(spm: SentencePieceModel, legacy: bool, add_prefix_space: bool, template) -> Tokenizer:
    """Llama-1/2 style: SentencePiece BPE with byte fallback and Metaspace (prepended '▁')."""
    unk = spm.pieces[spm.unk_id][0]
    tok = Tokenizer(models.BPE(spm.vocab(), spm.merges(), unk_token=unk, fuse_unk=True,
                               byte_fallback=spm.byte_fallback, dropout=None))
    tok.normalizer = None
    prepend = ("always" if legacy else "first") if add_prefix_space else "never"
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=prepend, split=False)
    steps = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if add_prefix_space:
        steps.append(decoders.Strip(content=" ", left=1))
    tok.decoder = decoders.Sequence(steps)
    _add_spm_specials(tok, spm)
    tok.post_processor = template
    return tok


def unigram_tokenizer(spm: SentencePieceModel, template) -> Tokenizer:
    """T5 style: SentencePiece Unigram with its precompiled normalizer, whitespace split, Metaspace."""
    vocab = [(piece, score) for piece, score, _ in spm.pieces]
    tok = Tokenizer(models.Unigram(vocab, unk_id=spm.unk_id, byte_fallback=spm.byte_fallback))
    tok.normalizer = normalizers.Precompiled(spm.charsmap) if spm.charsmap else None
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
    ])
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    _add_spm_specials(tok, spm)
    tok.post_processor = template
    return tok


def deberta_v2_tokenizer(spm: SentencePieceModel, template, do_lower_case: bool, split_by_punct: bool) -> Tokenizer:
    """DeBERTa-v2/v3: SentencePiece Unigram; the text is stripped, normalised by the model's charsmap and its
    runs of spaces collapsed (what SentencePiece itself does), optionally lower-cased and split at punctuation."""
    vocab = [(piece, score) for piece, score, _ in spm.pieces]
    tok = Tokenizer(models.Unigram(vocab, unk_id=spm.unk_id, byte_fallback=spm.byte_fallback))
    steps = [normalizers.Lowercase()] if do_lower_case else []
    steps.append(normalizers.Strip())
    if spm.charsmap:
        steps.append(normalizers.Precompiled(spm.charsmap))
    tok.normalizer = normalizers.Sequence(steps + [normalizers.Replace(Regex(" {2,}"), " ")])
    split = [pre_tokenizers.Punctuation(behavior="isolated")] if split_by_punct else []
    tok.pre_tokenizer = pre_tokenizers.Sequence(split + [pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")])
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    _add_spm_specials(tok, spm)
    tok.post_processor = template
    return tok


def _add_spm_specials(tok: Tokenizer, spm: SentencePieceModel) -> None:
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in spm.special_tokens()])
    user = spm.user_defined()
    if user:
        tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in user])


def template_processor(single: list, pair: list, specials: dict[str, int]):
    """TemplateProcessing from [token or '$A'/'$B', type_id] lists."""
    fmt = lambda parts: " ".join(f"{p}:{t}" for p, t in parts)  # noqa: E731
    return processors.TemplateProcessing(single=fmt(single), pair=fmt(pair), special_tokens=list(specials.items()))


# ---------------------------------------------------------------------- the Python backends from tokenizer.json
def _json_state(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"cannot read tokenizer file {path}: {e}") from e
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise CheckpointError(f"{path} has no 'model' object: not a tokenizers file")
    return state


def _refuse(path: str, field: str, value, backend: str) -> None:
    raise CheckpointError(f"{path}: {field}={value!r} is not what the Python {backend} backend implements; "
                          "load it with use_fast=True")


def _added_tokens(path: str, state: dict) -> dict[str, dict]:
    out = {}
    for spec in state.get("added_tokens") or ():
        if not (isinstance(spec, dict) and isinstance(spec.get("id"), int) and isinstance(spec.get("content"), str)):
            raise CheckpointError(f"{path}: added_tokens entry {spec!r} needs an integer 'id' and a string 'content'")
        out[str(spec["id"])] = {k: spec[k] for k in ("content", "single_word", "lstrip", "rstrip", "normalized",
                                                     "special") if k in spec}
    return out


def _vocab(path: str, model: dict) -> dict[str, int]:
    vocab = model.get("vocab")
    if not isinstance(vocab, dict) or not all(isinstance(i, int) for i in vocab.values()):
        raise CheckpointError(f"{path}: model.vocab must map tokens to integer ids")
    return vocab


def bpe_arguments_from_json(path: str) -> dict:
    """vocab, merges and added tokens of a GPT-2 style byte-level BPE tokenizer.json, for the Python backend."""
    state = _json_state(path)
    model = state["model"]
    if model.get("type") != "BPE":
        _refuse(path, "model.type", model.get("type"), "byte-level BPE")
    pre = state.get("pre_tokenizer") or {}
    if pre.get("type") != "ByteLevel" or not pre.get("use_regex", True):
        _refuse(path, "pre_tokenizer", pre.get("type"), "byte-level BPE (GPT-2's ByteLevel split)")
    if state.get("normalizer") is not None:
        _refuse(path, "normalizer", state["normalizer"].get("type"), "byte-level BPE")
    for field, plain in (("dropout", None), ("continuing_subword_prefix", ""), ("end_of_word_suffix", ""),
                         ("byte_fallback", False), ("ignore_merges", False)):
        if model.get(field) not in (plain, None):
            _refuse(path, f"model.{field}", model[field], "byte-level BPE")
    merges = []
    for entry in model.get("merges") or ():
        pair = entry.split(" ") if isinstance(entry, str) else entry
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            raise CheckpointError(f"{path}: model.merges entry {entry!r} is not two tokens")
        merges.append(tuple(pair))
    vocab, merges = check_bpe(model.get("vocab"), merges, f"{path} (model.vocab)", f"{path} (model.merges)")
    return {"vocab": vocab, "merges": merges, "added_tokens_decoder": _added_tokens(path, state)}


def wordpiece_arguments_from_json(path: str) -> dict:
    """vocab, normalizer settings and added tokens of a BERT-style WordPiece tokenizer.json."""
    state = _json_state(path)
    model = state["model"]
    if model.get("type") != "WordPiece":
        _refuse(path, "model.type", model.get("type"), "WordPiece")
    if model.get("continuing_subword_prefix", "##") != "##":
        _refuse(path, "model.continuing_subword_prefix", model["continuing_subword_prefix"], "WordPiece")
    if (state.get("pre_tokenizer") or {}).get("type") != "BertPreTokenizer":
        _refuse(path, "pre_tokenizer", (state.get("pre_tokenizer") or {}).get("type"), "WordPiece")
    norm = state.get("normalizer") or {}
    if norm.get("type") != "BertNormalizer":
        _refuse(path, "normalizer", norm.get("type"), "WordPiece")
    out = {"vocab": _vocab(path, model), "added_tokens_decoder": _added_tokens(path, state),
           "do_lower_case": norm.get("lowercase", True), "strip_accents": norm.get("strip_accents"),
           "tokenize_chinese_chars": norm.get("handle_chinese_chars", True),
           "max_input_chars_per_word": model.get("max_input_chars_per_word", 100)}
    if model.get("unk_token") is not None:
        out["unk_token"] = model["unk_token"]
    return out
