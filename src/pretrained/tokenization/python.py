"""PreTrainedTokenizer: the pure-Python backend, with our own WordPiece (BERT basic tokenizer)
and byte-level BPE (GPT-2 / RoBERTa).

Both reproduce the Rust `tokenizers` pipelines token for token, offsets included, so that the
Python and fast backends are interchangeable. Speed comes from per-word caches, an ASCII fast
path for the BERT normalizer and compiled regexes; truncation, windows and padding come from
base.py.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from functools import lru_cache

from ..errors import CheckpointError, InputError
from ..files import atomic_write_text
from .base import PreTrainedTokenizerBase, Template, encode_and_postprocess
from .encoding import Encoding


class AddedTokenInfo:
    """An added token as tokenizer_config.json's added_tokens_decoder lists it."""

    __slots__ = ("content", "special", "lstrip", "rstrip", "normalized", "single_word")

    def __init__(self, content, special=False, lstrip=False, rstrip=False, normalized=False, single_word=False):
        self.content, self.special = content, special
        self.lstrip, self.rstrip, self.normalized, self.single_word = lstrip, rstrip, normalized, single_word


class PreTrainedTokenizer(PreTrainedTokenizerBase):
    """Base of the Python backends: vocabulary, added tokens, the encode pipeline; subclasses split words."""

    def __init__(self, **kwargs):
        decoder = kwargs.pop("added_tokens_decoder", None) or {}
        self._added: dict[str, int] = {}
        self._added_info: dict[int, AddedTokenInfo] = {}
        self._split_re = None
        super().__init__(**kwargs)
        for index, spec in sorted(decoder.items(), key=lambda kv: int(kv[0])):
            spec = spec if isinstance(spec, dict) else {"content": str(spec)}
            self._add_known(spec["content"], int(index), spec)
        self._register_special_tokens(self.all_special_tokens)

    # ---- vocabulary: subclasses fill self.vocab (token -> id) and self.ids_to_tokens (list)
    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def get_vocab(self) -> dict[str, int]:
        return {**self.vocab, **self._added}

    def __len__(self) -> int:
        return len(self.get_vocab())

    def get_added_vocab(self) -> dict[str, int]:
        return dict(self._added)

    @property
    def added_tokens_decoder(self) -> dict[int, AddedTokenInfo]:
        return dict(self._added_info)

    def _add_known(self, content: str, index: int, spec: dict) -> None:
        options = {k: spec[k] for k in ("special", "lstrip", "rstrip", "normalized", "single_word") if k in spec}
        self._added_info[index] = AddedTokenInfo(content, **options)
        if self.vocab.get(content) != index:
            self._added[content] = index
        self._split_re = None

    def _add_tokens(self, tokens, special: bool) -> int:
        added = 0
        for token in tokens:
            index = self.vocab.get(token, self._added.get(token))
            if index is None:
                index = len(self.vocab) + len(self._added)
                while index in self._added_info or index < len(self.ids_to_tokens):
                    index += 1
                self._added[token] = index
                added += 1
            info = self._added_info.get(index)
            if info is None:
                self._added_info[index] = AddedTokenInfo(token, special=special, normalized=not special)
            elif special:
                info.special = True
        self._split_re = None
        return added

    def _token_to_id(self, token):
        index = self._added.get(token)
        return index if index is not None else self.vocab.get(token)

    def convert_tokens_to_ids(self, tokens):
        if tokens is None:
            return None
        if isinstance(tokens, str):
            index = self._token_to_id(tokens)
            return index if index is not None else self._token_to_id(self.unk_token)
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def _id_to_token(self, index: int):
        info = self._added_info.get(index)
        if info is not None:
            return info.content
        return self.ids_to_tokens[index] if 0 <= index < len(self.ids_to_tokens) else None

    def convert_ids_to_tokens(self, ids, skip_special_tokens: bool = False):
        if isinstance(ids, int):
            return self._id_to_token(ids)
        skip = self._special_ids() if skip_special_tokens else ()
        return [self._id_to_token(i) for i in ids if i not in skip]

    def _special_ids(self) -> set[int]:
        return {i for i, info in self._added_info.items() if info.special}

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return self._template().count(pair)

    # ---- encoding
    def _added_splitter(self):
        # Added tokens are cut out first, longest first, exactly as written (special tokens unless
        # split_special_tokens asks to treat them as text).
        if self._split_re is None:
            tokens = [info.content for info in self._added_info.values()
                      if info.content and not (info.special and self.split_special_tokens)]
            tokens.sort(key=len, reverse=True)
            self._split_re = re.compile("|".join(map(re.escape, tokens))) if tokens else False
        return self._split_re

    def _encode_sequence(self, text, is_split, seq_index: int) -> Encoding:
        ids, tokens, offsets, words = [], [], [], []
        if is_split == "ids":
            ids = list(text)
            n = len(ids)
            return Encoding(ids, [0] * n, self.convert_ids_to_tokens(ids), [(0, 0)] * n, [0] * n, [None] * n,
                            [seq_index] * n)
        if is_split:
            for word_index, word in enumerate(text):
                for token, index, start, end, _ in self._encode_text(word, 0, self._word_prefix(word_index)):
                    tokens.append(token)
                    ids.append(index)
                    offsets.append((start, end))
                    words.append(word_index)
        else:
            for token, index, start, end, word in self._encode_text(text, 0, True):
                tokens.append(token)
                ids.append(index)
                offsets.append((start, end))
                words.append(word)
        n = len(ids)
        return Encoding(ids, [0] * n, tokens, offsets, [0] * n, words, [seq_index] * n)

    def _word_prefix(self, word_index: int) -> bool:
        return True

    def _encode_text(self, text: str, word_base: int, first: bool):
        """[(token, id, start, end, word index)] with added tokens cut out before the model runs."""
        splitter = self._added_splitter()
        if not splitter:
            return self._pieces(text, 0, word_base)
        out = []
        position = 0
        word = word_base
        for match in splitter.finditer(text):
            if match.start() > position:
                chunk = self._pieces(text[position:match.start()], position, word)
                out += chunk
                word = (chunk[-1][4] + 1) if chunk else word
            content = match.group()
            out.append((content, self._token_to_id(content), match.start(), match.end(), word))
            word += 1
            position = match.end()
        if position < len(text):
            out += self._pieces(text[position:], position, word)
        return out

    def _pieces(self, text: str, offset: int, word_base: int):
        """[(token, id, start, end, word)] for plain text (no added tokens); offsets shifted by `offset`."""
        raise NotImplementedError

    def _template(self) -> Template:
        return Template([("seq", 0, 0)], [("seq", 0, 0), ("seq", 1, 1)])

    def _encode_rows(self, pairs, is_split, add_special_tokens, truncation, max_length, stride, padding,
                     pad_to_multiple_of, padding_side):
        return encode_and_postprocess(self, pairs, is_split, add_special_tokens, truncation, max_length, stride,
                                      padding, pad_to_multiple_of, padding_side)

    def _decode(self, ids, skip_special_tokens: bool) -> str:
        return self.convert_tokens_to_string(self.convert_ids_to_tokens(ids, skip_special_tokens))


# ---------------------------------------------------------------------- WordPiece (BERT)
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
               (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))
# Unicode White_Space (what Rust's char::is_whitespace means; Python's isspace adds \x1c-\x1f).
_WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" \
              "\u2028\u2029\u202f\u205f\u3000"
_WS_SET = frozenset(_WHITESPACE)
_ASCII_PUNCT = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_ASCII_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ASCII_WORDS = re.compile(r"[^ \t\n\r!-/:-@\[-`{-~]+|[!-/:-@\[-`{-~]")


@lru_cache(maxsize=65536)
def _char_kind(c: str) -> int:
    """0 plain, 1 whitespace, 2 punctuation, 3 CJK, 4 dropped (control / NUL / U+FFFD)."""
    cp = ord(c)
    category = unicodedata.category(c)
    if c in "\t\n\r":
        return 1
    if cp == 0 or cp == 0xFFFD or category[0] == "C":
        return 4
    if c in _WS_SET:
        return 1
    if c in _ASCII_PUNCT or category[0] == "P":
        return 2
    if any(lo <= cp <= hi for lo, hi in _CJK_RANGES):
        return 3
    return 0


@lru_cache(maxsize=65536)
def _normalize_char(c: str, strip_accents: bool, lowercase: bool) -> str:
    if strip_accents:
        c = "".join(x for x in unicodedata.normalize("NFD", c) if unicodedata.category(x) != "Mn")
    if lowercase:
        c = "".join(x.lower() for x in c)  # char by char: no final-sigma rule, as in Rust
    return c


class WordPieceTokenizer(PreTrainedTokenizer):
    """BERT's normalizer + pre-tokenizer + greedy longest-match-first WordPiece, in Python."""

    vocab_files_names = {"vocab_file": "vocab.txt"}

    def __init__(self, vocab_file=None, do_lower_case=True, do_basic_tokenize=True, never_split=None,
                 unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]",
                 tokenize_chinese_chars=True, strip_accents=None, max_input_chars_per_word=100, vocab=None, **kwargs):
        from .convert import read_wordpiece_vocab

        if vocab_file is None and vocab is None:
            raise CheckpointError(f"{type(self).__name__} needs vocab_file= (a vocab.txt) or vocab= (token -> id)")
        self.vocab = dict(vocab) if vocab is not None else read_wordpiece_vocab(vocab_file)
        self.ids_to_tokens = [None] * (max(self.vocab.values()) + 1)
        for token, index in self.vocab.items():
            self.ids_to_tokens[index] = token
        self.do_lower_case = do_lower_case
        self.tokenize_chinese_chars = tokenize_chinese_chars
        self.strip_accents = strip_accents
        self._strip = strip_accents if strip_accents is not None else do_lower_case
        self.max_input_chars_per_word = max_input_chars_per_word
        self._word_cache: dict[str, list[tuple[str, int, int, int]]] = {}
        super().__init__(do_lower_case=do_lower_case, unk_token=unk_token, sep_token=sep_token, pad_token=pad_token,
                         cls_token=cls_token, mask_token=mask_token, tokenize_chinese_chars=tokenize_chinese_chars,
                         strip_accents=strip_accents, **kwargs)
        for key in ("cls_token", "sep_token", "unk_token"):  # as the fast backend: their ids come from the vocabulary
            if str(getattr(self, key)) not in self.vocab:
                where = vocab_file or "vocab="
                raise CheckpointError(f"{where}: {key} {str(getattr(self, key))!r} is not in the vocabulary")
        self._unk_id = self.vocab.get(self.unk_token)

    @staticmethod
    def arguments_from_tokenizer_json(path: str) -> dict:
        """Constructor arguments from a tokenizer.json, for folders that have no vocab.txt."""
        from .convert import wordpiece_arguments_from_json

        return wordpiece_arguments_from_json(path)

    def _template(self) -> Template:
        cls_ = ("special", (self.cls_token, self.cls_token_id), 0)
        sep0 = ("special", (self.sep_token, self.sep_token_id), 0)
        sep1 = ("special", (self.sep_token, self.sep_token_id), 1)
        return Template([cls_, ("seq", 0, 0), sep0], [cls_, ("seq", 0, 0), sep0, ("seq", 1, 1), sep1])

    def _normalize(self, text: str):
        """(normalized words as (text, [original char spans])), following BertNormalizer + BertPreTokenizer."""
        if text.isascii():
            # Fast path: ASCII never changes length except for dropped control characters.
            if _ASCII_CONTROL.search(text) is None:
                norm = text.lower() if self.do_lower_case else text
                return [(m.group(), m.start(), None) for m in _ASCII_WORDS.finditer(norm)]
        words = []
        current, spans = [], []
        strip, lower, cjk = self._strip, self.do_lower_case, self.tokenize_chinese_chars
        for i, c in enumerate(text):
            kind = _char_kind(c)
            if kind == 4:
                continue
            if kind == 1 or (kind == 3 and cjk) or kind == 2:
                if current:
                    words.append(("".join(current), 0, spans))
                    current, spans = [], []
                if kind == 1:
                    continue
                out = _normalize_char(c, strip, lower) if kind != 3 else c
                if out:
                    words.append((out, 0, [(i, i + 1)] * len(out)))
                continue
            out = _normalize_char(c, strip, lower)
            for x in out:
                # A character produced by normalization may itself split words (e.g. a stripped accent
                # leaving punctuation); Rust splits after normalizing, so classify the output.
                k = _char_kind(x)
                if k in (1, 2) or (k == 3 and cjk):
                    if current:
                        words.append(("".join(current), 0, spans))
                        current, spans = [], []
                    if k != 1:
                        words.append((x, 0, [(i, i + 1)]))
                else:
                    current.append(x)
                    spans.append((i, i + 1))
        if current:
            words.append(("".join(current), 0, spans))
        return words

    def _wordpiece(self, word: str):
        """[(token, id, start, end)] of one word, char offsets within the word (cached)."""
        hit = self._word_cache.get(word)
        if hit is not None:
            return hit
        vocab = self.vocab
        if len(word) > self.max_input_chars_per_word:
            out = [(self.unk_token, self._unk_id, 0, len(word))]
        else:
            out = []
            start, n = 0, len(word)
            while start < n:
                end = n
                found = None
                while start < end:
                    piece = word[start:end] if start == 0 else "##" + word[start:end]
                    index = vocab.get(piece)
                    if index is not None:
                        found = (piece, index, start, end)
                        break
                    end -= 1
                if found is None:
                    out = [(self.unk_token, self._unk_id, 0, n)]
                    break
                out.append(found)
                start = end
        if len(self._word_cache) < 500_000:
            self._word_cache[word] = out
        return out

    def _pieces(self, text: str, offset: int, word_base: int):
        out = []
        append = out.append
        for word_index, (word, start, spans) in enumerate(self._normalize(text), word_base):
            for token, index, a, b in self._wordpiece(word):
                if spans is None:
                    append((token, index, offset + start + a, offset + start + b, word_index))
                else:
                    append((token, index, offset + spans[a][0], offset + spans[b - 1][1], word_index))
        return out

    def convert_tokens_to_string(self, tokens) -> str:
        # The Rust WordPiece decoder: '##' glues, other tokens get a space, each piece cleaned alone.
        parts = []
        for i, token in enumerate(tokens):
            if token.startswith("##"):
                token = token[2:]
            elif i:
                token = " " + token
            parts.append(_cleanup(token))
        return "".join(parts)

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str, ...]:
        path = os.path.join(save_directory, (filename_prefix + "-" if filename_prefix else "") + "vocab.txt")
        atomic_write_text(path, "".join(t + "\n" for t in self.ids_to_tokens))
        return (path,)


def _cleanup(text: str) -> str:
    for dirty, clean in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                         (" 'm", "'m"), (" do not", " don't"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(dirty, clean)
    return text


# ---------------------------------------------------------------------- byte-level BPE (GPT-2, RoBERTa)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


_BYTE_ENCODER = bytes_to_unicode()
_BYTE_DECODER = {c: b for b, c in _BYTE_ENCODER.items()}
_BYTE_TRANSLATE = [_BYTE_ENCODER[b] for b in range(256)]


@lru_cache(maxsize=1)
def _gpt2_pattern():
    """GPT-2's split regex; \\p{L}, \\p{N} and \\s (Unicode White_Space) spelled out for `re`."""
    letters, numbers = [], []
    for cp in range(0x110000):
        c = chr(cp)
        category = unicodedata.category(c)
        if category[0] == "L":
            letters.append(cp)
        elif category[0] == "N":
            numbers.append(cp)

    def ranges(cps):
        out, start, prev = [], cps[0], cps[0]
        for cp in cps[1:]:
            if cp != prev + 1:
                out.append((start, prev))
                start = cp
            prev = cp
        out.append((start, prev))
        return "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in out)

    L, N, S = ranges(letters), ranges(numbers), re.escape(_WHITESPACE)
    return re.compile(
        rf"'s|'t|'re|'ve|'m|'ll|'d| ?[{L}]+| ?[{N}]+| ?[^{S}{L}{N}]+|[{S}]+(?![^{S}])|[{S}]+"
    )


class ByteLevelBPETokenizer(PreTrainedTokenizer):
    """GPT-2 style byte-level BPE over vocab.json + merges.txt, in Python."""

    vocab_files_names = {"vocab_file": "vocab.json", "merges_file": "merges.txt"}
    model_input_names = ["input_ids", "attention_mask"]
    trim_offsets = False

    def __init__(self, vocab_file=None, merges_file=None, errors="replace", unk_token="<|endoftext|>",
                 bos_token="<|endoftext|>", eos_token="<|endoftext|>", pad_token=None, add_prefix_space=False,
                 vocab=None, merges=None, **kwargs):
        from .convert import read_bpe_files

        if vocab is not None and merges is not None:  # in memory, e.g. from a tokenizer.json
            self.vocab, merges = dict(vocab), [tuple(m) for m in merges]
        else:
            self.vocab, merges = read_bpe_files(vocab_file, merges_file)
        self.ids_to_tokens = [None] * (max(self.vocab.values(), default=-1) + 1)
        for token, index in self.vocab.items():
            self.ids_to_tokens[index] = token
        self.bpe_ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.add_prefix_space = add_prefix_space
        self.errors = errors
        self._cache: dict[str, list[str]] = {}
        self._pattern = _gpt2_pattern()
        super().__init__(unk_token=unk_token, bos_token=bos_token, eos_token=eos_token, pad_token=pad_token,
                         add_prefix_space=add_prefix_space, errors=errors, **kwargs)

    def _word_prefix(self, word_index: int) -> bool:
        return True

    @staticmethod
    def arguments_from_tokenizer_json(path: str) -> dict:
        """Constructor arguments from a tokenizer.json, for folders that have no vocab.json + merges.txt."""
        from .convert import bpe_arguments_from_json

        return bpe_arguments_from_json(path)

    def _encode_sequence(self, text, is_split, seq_index):
        if is_split and is_split != "ids" and not self.add_prefix_space:
            raise InputError(
                f"is_split_into_words=True: you need to instantiate {type(self).__name__} with "
                "add_prefix_space=True to use it with pretokenized inputs."
            )
        return super()._encode_sequence(text, is_split, seq_index)

    def _bpe(self, word: str) -> list[str]:
        hit = self._cache.get(word)
        if hit is not None:
            return hit
        parts = list(word)
        ranks = self.bpe_ranks
        while len(parts) > 1:
            best, best_rank = None, None
            for i in range(len(parts) - 1):
                rank = ranks.get((parts[i], parts[i + 1]))
                if rank is not None and (best_rank is None or rank < best_rank):
                    best, best_rank = i, rank
            if best is None:
                break
            first, second = parts[best], parts[best + 1]
            merged, i = [], 0
            while i < len(parts):
                if i < len(parts) - 1 and parts[i] == first and parts[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        if len(self._cache) < 500_000:
            self._cache[word] = parts
        return parts

    def _pieces(self, text: str, offset: int, word_base: int):
        if self.add_prefix_space and text and not text.startswith(" "):  # Rust: every chunk between added tokens
            text, shift = " " + text, -1
        else:
            shift = 0
        out = []
        vocab = self.vocab
        unk = self.vocab.get(self.unk_token) if self.unk_token else None
        trim = self.trim_offsets
        for word_index, match in enumerate(self._pattern.finditer(text), word_base):
            piece = match.group()
            start = match.start() + shift
            raw = piece.encode("utf-8")
            mapped = "".join([_BYTE_TRANSLATE[b] for b in raw])
            tokens = self._bpe(mapped)
            if len(raw) == len(piece):
                char_of = None
            else:  # byte index -> char index within the piece
                char_of = []
                for k, c in enumerate(piece):
                    char_of += [k] * len(c.encode("utf-8"))
            b = 0
            for token in tokens:
                n = len(token)
                if char_of is None:
                    a_char, b_char = b, b + n
                else:
                    a_char, b_char = char_of[b], char_of[b + n - 1] + 1
                # The prepended space is aligned with the text's first character, as in Rust.
                e = start + b_char if not shift else max(start + b_char, 1)
                s, e = max(start + a_char, 0) + offset, e + offset
                if trim:  # the Rust ByteLevel/RoBERTa processors' trim_offsets
                    lead = len(token) - len(token.lstrip("Ġ"))
                    tail = len(token) - len(token.rstrip("Ġ"))
                    if lead and not (self.add_prefix_space and s == 0 and lead == 1):
                        s = min(s + lead, e)
                    if tail and e >= tail:
                        e = max(e - tail, s)
                out.append((token, vocab.get(token, unk), s, e, word_index))
                b += n
        return out

    def convert_tokens_to_string(self, tokens) -> str:
        data = bytearray()
        for token in tokens:
            for c in token:
                byte = _BYTE_DECODER.get(c)
                if byte is None:
                    data += c.encode("utf-8")
                else:
                    data.append(byte)
        return data.decode("utf-8", errors=self.errors)

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str, ...]:
        prefix = filename_prefix + "-" if filename_prefix else ""
        vocab_path = os.path.join(save_directory, prefix + "vocab.json")
        merges_path = os.path.join(save_directory, prefix + "merges.txt")
        atomic_write_text(vocab_path, json.dumps(self.vocab, ensure_ascii=False, indent=2, sort_keys=True) + "\n")
        merges = sorted(self.bpe_ranks.items(), key=lambda kv: kv[1])
        atomic_write_text(merges_path, "#version: 0.2\n" + "".join(f"{a} {b}\n" for (a, b), _ in merges))
        return (vocab_path, merges_path)
