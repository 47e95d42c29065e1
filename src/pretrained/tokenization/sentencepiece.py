"""SentencePieceTokenizer: the `sentencepiece` library over a .model file (T5, Llama-1/2, Marian-style).

The leading-space marker follows Transformers: `legacy=True` lets SentencePiece prepend '▁' to
every chunk between added tokens; `legacy=False` prepends it only to a text's first chunk (and
only when `add_prefix_space`), which we do ourselves on a copy of the model with SentencePiece's
own dummy prefix switched off. Decoding reproduces the matching Rust decoders.
"""

from __future__ import annotations

import os
import shutil

from ..errors import CheckpointError
from .base import Template
from .python import PreTrainedTokenizer

SPIECE_UNDERLINE = "▁"


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def without_dummy_prefix(data: bytes) -> bytes:
    """The serialized model with normalizer_spec.add_dummy_prefix = false (field 3.3)."""
    from .convert import _fields

    def encode_field(field, wire, value):
        key = _varint_bytes(field << 3 | wire)
        if wire == 0:
            return key + _varint_bytes(value)
        if wire == 2:
            return key + _varint_bytes(len(value)) + bytes(value)
        return key + bytes(value)

    out = bytearray()
    for field, wire, value in _fields(data):
        if field == 3 and wire == 2:
            inner = b"".join(encode_field(f, w, v) for f, w, v in _fields(value) if f != 3)
            inner += encode_field(3, 0, 0)
            value = inner
        out += encode_field(field, wire, value)
    return bytes(out)


class SentencePieceTokenizer(PreTrainedTokenizer):
    """A tokenizer over a SentencePiece model; specials laid out by add_bos_token / add_eos_token."""

    vocab_files_names = {"vocab_file": "tokenizer.model"}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, vocab_file=None, legacy=None, add_prefix_space=None, add_bos_token=False,
                 add_eos_token=False, sp_model_kwargs=None, **kwargs):
        import sentencepiece as spm

        if vocab_file is None or not os.path.isfile(vocab_file):
            name = vocab_file or self.vocab_files_names["vocab_file"]
            raise CheckpointError(f"SentencePiece model file {name} is missing")
        self.vocab_file = vocab_file
        try:
            with open(vocab_file, "rb") as f:
                data = f.read()
            self.sp_model = spm.SentencePieceProcessor(model_proto=data)
            self._sp_bare = spm.SentencePieceProcessor(model_proto=without_dummy_prefix(data))
        except (OSError, RuntimeError, ValueError) as e:
            raise CheckpointError(f"{vocab_file} is not a SentencePiece model file: {e}") from e
        from .convert import SentencePieceModel

        self._strips_whitespace = SentencePieceModel(vocab_file).remove_extra_whitespaces
        self.legacy = True if legacy is None else legacy
        self.add_prefix_space = True if add_prefix_space is None else add_prefix_space
        self.add_bos_token, self.add_eos_token = add_bos_token, add_eos_token
        n = self.sp_model.get_piece_size()
        self.ids_to_tokens = [self.sp_model.id_to_piece(i) for i in range(n)]
        self.vocab = {t: i for i, t in enumerate(self.ids_to_tokens)}
        self._byte_ids = {i for i in range(n) if self.sp_model.is_byte(i)}
        super().__init__(legacy=legacy, add_prefix_space=add_prefix_space, add_bos_token=add_bos_token,
                         add_eos_token=add_eos_token, **kwargs)
        # Control / unknown pieces of the model are special tokens, as the fast conversion makes them.
        for i in range(n):
            if self.sp_model.is_control(i) or self.sp_model.is_unknown(i):
                self._add_known(self.ids_to_tokens[i], i, {"special": True})

    def _template(self) -> Template:
        single, pair = [], []
        for seq, out, type_id in ((0, single, 0), (1, pair, 1)):
            if self.add_bos_token:
                out.append(("special", (self.bos_token, self.bos_token_id), type_id))
            out.append(("seq", seq, type_id))
            if self.add_eos_token:
                out.append(("special", (self.eos_token, self.eos_token_id), type_id))
        return Template(single, single + pair)

    def _pieces(self, text: str, offset: int, word_base: int):
        if not text:
            return []
        if self._strips_whitespace:
            # T5-style models collapse and strip spaces themselves; SentencePiece's dummy '▁' then
            # matches Rust's WhitespaceSplit + Metaspace("always").
            model, prefix = self.sp_model, ""
        else:
            # Metaspace: '▁' before every chunk (legacy) or only the text's first one, never doubled.
            model = self._sp_bare
            wanted = self.add_prefix_space and (self.legacy or offset == 0)
            prefix = SPIECE_UNDERLINE if wanted and not text.startswith((" ", SPIECE_UNDERLINE)) else ""
        proto = model.encode(prefix + text, out_type="proto")
        raw = (prefix + text).encode("utf-8")
        shift = len(prefix.encode("utf-8"))
        # byte offset -> char offset of the input (prefix included)
        char_at = [0] * (len(raw) + 1)
        position = 0
        for k, c in enumerate(prefix + text):
            size = len(c.encode("utf-8"))
            for j in range(size):
                char_at[position + j] = k
            position += size
        char_at[len(raw)] = len(prefix + text)
        n_prefix_chars = len(prefix)
        out = []
        for piece in proto.pieces:
            begin, end = piece.begin, piece.end
            start = max(char_at[begin] - n_prefix_chars, 0) + offset
            # the prepended '▁' is aligned with the first character, as Rust aligns it
            stop = max(char_at[end] - n_prefix_chars, 1 if prefix else 0) + offset if end > begin else start
            if begin < shift:
                start = offset
            out.append([piece.piece, piece.id, start, stop, word_base, end > begin])
        # Pieces with no surface (the dummy '▁', leading byte-fallback pieces of a character) take the
        # span of the next piece that has one, as Rust's alignments give them that character.
        following = None
        for item in reversed(out):
            if item[5]:
                following = (item[2], item[3])
            elif following is not None:
                item[2], item[3] = following
        if self._strips_whitespace:
            # Rust splits on whitespace first, so a word's '▁' starts at the word, never on a space.
            for item in out:
                if item[0].startswith(SPIECE_UNDERLINE):
                    start = item[2]
                    while start - offset < len(text) and text[start - offset].isspace():
                        start += 1
                    item[2] = start
                    if item[0] == SPIECE_UNDERLINE:
                        item[3] = start + 1
        return [tuple(item[:5]) for item in out]

    def convert_tokens_to_string(self, tokens) -> str:
        # Rust decoders of the converted tokenizer: Replace('▁', ' ') + ByteFallback + Fuse (+ Strip one
        # leading space when a prefix space was added) for Llama-style; Metaspace for legacy (T5).
        pieces = []
        pending = bytearray()
        for token in tokens:
            if len(token) == 6 and token.startswith("<0x") and token.endswith(">") and token in self.vocab \
                    and self.vocab[token] in self._byte_ids:
                pending.append(int(token[3:5], 16))
                continue
            if pending:
                pieces.append(_bytes_to_text(pending))
                pending = bytearray()
            pieces.append(token.replace(SPIECE_UNDERLINE, " "))
        if pending:
            pieces.append(_bytes_to_text(pending))
        if self.legacy:
            if pieces and pieces[0].startswith(" "):
                pieces[0] = pieces[0][1:]
            return "".join(pieces)
        text = "".join(pieces)
        if self.add_prefix_space and text.startswith(" "):
            text = text[1:]
        return text

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str, ...]:
        from ..files import atomic_path

        name = (filename_prefix + "-" if filename_prefix else "") + self.vocab_files_names["vocab_file"]
        path = os.path.join(save_directory, name)
        if os.path.abspath(path) != os.path.abspath(self.vocab_file):
            with atomic_path(path) as tmp:
                shutil.copyfile(self.vocab_file, tmp)
        return (path,)


def _bytes_to_text(data: bytearray) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "\ufffd" * len(data)  # ByteFallback: an invalid run becomes one U+FFFD per byte
