"""PreTrainedTokenizerFast: the Rust `tokenizers` backend.

Truncation, overflow windows and padding are left to the Rust library (one `encode_batch`
call per __call__); this module only keeps its settings in step with the call's arguments,
re-setting them only when they change because each set crosses into Rust.
"""

from __future__ import annotations

import copy
import json
import os

from tokenizers import AddedToken, Tokenizer

from ..errors import CheckpointError, InputError
from .base import PreTrainedTokenizerBase, Template, apply_template
from .checks import check_tokenizer_json
from .encoding import Encoding


def load_tokenizer_json(path: str) -> Tokenizer:
    """A Tokenizer from tokenizer.json; a corrupt or foreign file is a CheckpointError naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        data = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"cannot read tokenizer file {path}: {str(e) or type(e).__name__}") from e
    check_tokenizer_json(data, path)
    try:
        return Tokenizer.from_str(text)
    except BaseException as e:  # the Rust library raises a bare Exception, or panics (a BaseException)
        if not isinstance(e, Exception) and type(e).__name__ != "PanicException":
            raise
        raise CheckpointError(f"{path} is not a valid tokenizers file: {e}") from e


def set_byte_level_flags(tokenizer: Tokenizer, add_prefix_space: bool, trim_offsets: bool | None = None,
                         post_processor: bool = False) -> Tokenizer:
    """`tokenizer` with its ByteLevel pre-tokenizer set to add_prefix_space (and, if `post_processor`, its
    RobertaProcessing to add_prefix_space / trim_offsets), as the byte-level classes' arguments ask; the
    object itself when nothing changes."""
    state = json.loads(tokenizer.to_str())
    changed = False

    def update(node, kind, members, wanted):
        nonlocal changed
        if not isinstance(node, dict):
            return
        if node.get("type") == kind:
            for key, value in wanted.items():
                if value is not None and key in node and node[key] != value:
                    node[key], changed = value, True
        for child in node.get(members) or ():  # Sequence components
            update(child, kind, members, wanted)

    update(state.get("pre_tokenizer"), "ByteLevel", "pretokenizers", {"add_prefix_space": add_prefix_space})
    if post_processor:
        update(state.get("post_processor"), "RobertaProcessing", "processors",
               {"add_prefix_space": add_prefix_space, "trim_offsets": trim_offsets})
    return Tokenizer.from_str(json.dumps(state)) if changed else tokenizer


class PreTrainedTokenizerFast(PreTrainedTokenizerBase):
    """A tokenizer over a `tokenizers.Tokenizer` (from tokenizer.json, an object, or converted classic files)."""

    vocab_files_names = {"tokenizer_file": "tokenizer.json"}
    is_fast = True

    def __init__(self, *args, tokenizer_object: Tokenizer | None = None, tokenizer_file: str | None = None, **kwargs):
        if tokenizer_object is not None:
            tokenizer = copy.deepcopy(tokenizer_object)
        elif tokenizer_file is not None:
            tokenizer = load_tokenizer_json(tokenizer_file)
        else:
            tokenizer = self._converted(*args, **kwargs)
            if tokenizer is None:
                raise CheckpointError(
                    f"{type(self).__name__} needs a tokenizer.json (tokenizer_file=), a tokenizers.Tokenizer "
                    "(tokenizer_object=) or the classic vocabulary files of its model"
                )
        # Settings saved in the file would apply to every call; ours are set per call instead.
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self._trunc_state = None
        self._pad_state = None
        added_decoder = kwargs.pop("added_tokens_decoder", None) or {}
        for key in ("vocab_file", "merges_file", "tokenizer_file"):
            kwargs.pop(key, None)
        super().__init__(**kwargs)
        # Added tokens listed in tokenizer_config.json but missing from tokenizer.json (old saves).
        missing = []
        for index, spec in sorted(added_decoder.items(), key=lambda kv: int(kv[0])):
            content = spec["content"] if isinstance(spec, dict) else str(spec)
            if tokenizer.token_to_id(content) is None:
                options = {k: spec[k] for k in ("single_word", "lstrip", "rstrip", "normalized", "special")
                           if isinstance(spec, dict) and k in spec}
                missing.append(AddedToken(content, **options))
        if missing:
            tokenizer.add_tokens(missing)
        self._register_special_tokens(self.all_special_tokens)

    def _converted(self, *args, **kwargs) -> Tokenizer | None:
        """_convert_from_files, with what `tokenizers` raises for a damaged vocabulary (a bare Exception, or a
        Rust panic) turned into our error naming the files."""
        try:
            return self._convert_from_files(*args, **kwargs)
        except BaseException as e:  # what `tokenizers` raises: a bare Exception, or a panic (not our own bugs)
            if type(e) is not Exception and type(e).__name__ != "PanicException":
                raise
            files = [f for f in (getattr(self, "_vocab_file", None), *getattr(self, "_files", ())) if f]
            raise CheckpointError(f"cannot build {type(self).__name__} from {', '.join(map(str, files)) or 'its vocabulary files'}: "
                                  f"{type(e).__name__}: {e}") from e

    def _convert_from_files(self, *args, **kwargs) -> Tokenizer | None:
        """Build the Rust tokenizer from classic files; model classes that know their format override this."""
        return None

    @property
    def backend_tokenizer(self) -> Tokenizer:
        return self._tokenizer

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=False)

    def get_vocab(self) -> dict[str, int]:
        return self._tokenizer.get_vocab(with_added_tokens=True)

    @property
    def vocab(self) -> dict[str, int]:
        return self.get_vocab()

    def get_added_vocab(self) -> dict[str, int]:
        return {t.content: i for i, t in self._tokenizer.get_added_tokens_decoder().items()}

    @property
    def added_tokens_decoder(self) -> dict:
        return self._tokenizer.get_added_tokens_decoder()

    def __len__(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def _add_tokens(self, tokens, special: bool) -> int:
        if not tokens:
            return 0
        if special:
            already = {t.content for t in self._tokenizer.get_added_tokens_decoder().values() if t.special}
            todo = [AddedToken(t, special=True, normalized=False) for t in tokens if t not in already]
            return self._tokenizer.add_special_tokens(todo) if todo else 0
        return self._tokenizer.add_tokens([AddedToken(t, special=False) for t in tokens])

    def convert_tokens_to_ids(self, tokens):
        if tokens is None:
            return None
        unk = None
        if isinstance(tokens, str):
            index = self._tokenizer.token_to_id(tokens)
            return index if index is not None else self._unk_id()
        out = []
        for token in tokens:
            index = self._tokenizer.token_to_id(token)
            if index is None:
                unk = self._unk_id() if unk is None else unk
                index = unk
            out.append(index)
        return out

    def _unk_id(self):
        unk = self._special.get("unk_token")
        return None if unk is None else self._tokenizer.token_to_id(unk)

    def convert_ids_to_tokens(self, ids, skip_special_tokens: bool = False):
        if isinstance(ids, int):
            return self._tokenizer.id_to_token(ids)
        special = set(self.all_special_ids) if skip_special_tokens else ()
        return [self._tokenizer.id_to_token(i) for i in ids if i not in special]

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        decoder = self._tokenizer.decoder
        return decoder.decode(tokens) if decoder is not None else " ".join(tokens)

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return self._tokenizer.num_special_tokens_to_add(pair)

    def _set_truncation_and_padding(self, truncation, max_length, stride, padding, pad_to_multiple_of, side):
        trunc_state = None if truncation is None else (max_length, stride, truncation, self.truncation_side)
        if trunc_state != self._trunc_state:
            if trunc_state is None:
                self._tokenizer.no_truncation()
            else:
                self._tokenizer.enable_truncation(max_length, stride=stride, strategy=truncation,
                                                  direction=self.truncation_side)
            self._trunc_state = trunc_state
        pad_state = None
        if padding is not None:
            pad_state = (max_length if padding == "max_length" else None, side, self.pad_token_id,
                         self.pad_token_type_id, self.pad_token, pad_to_multiple_of)
        if pad_state != self._pad_state:
            if pad_state is None:
                self._tokenizer.no_padding()
            else:
                length, direction, pad_id, pad_type_id, pad_token, multiple = pad_state
                self._tokenizer.enable_padding(length=length, direction=direction, pad_id=pad_id,
                                               pad_type_id=pad_type_id, pad_token=pad_token,
                                               pad_to_multiple_of=multiple)
            self._pad_state = pad_state

    def _encode_rows(self, pairs, is_split, add_special_tokens, truncation, max_length, stride, padding,
                     pad_to_multiple_of, padding_side):
        self._set_truncation_and_padding(truncation, max_length, stride, padding, pad_to_multiple_of, padding_side)
        inputs = [first if second is None else (first, second) for first, second in pairs]
        try:
            return self._tokenizer.encode_batch(inputs, add_special_tokens=add_special_tokens,
                                                is_pretokenized=bool(is_split))
        except Exception as e:
            if type(e) is Exception:  # Rust errors arrive untyped; they are all bad arguments here
                raise InputError(f"the tokenizers library refused the arguments: {e}") from e
            raise

    def tokenize(self, text: str, pair: str | None = None, add_special_tokens: bool = False, **kwargs) -> list[str]:
        self._set_truncation_and_padding(None, None, 0, None, None, self.padding_side)
        return self._tokenizer.encode(text, pair, add_special_tokens=add_special_tokens).tokens

    def _template(self):
        """The post-processor's layout, read off an encoded probe pair (the Rust object has no getter)."""
        self._set_truncation_and_padding(None, None, 0, None, None, self.padding_side)
        probe = self.unk_token or "a"
        layouts = []
        for pair in (None, probe):
            enc = self._tokenizer.encode(probe, pair, add_special_tokens=True)
            pieces = []
            for token, token_id, type_id, seq in zip(enc.tokens, enc.ids, enc.type_ids, enc.sequence_ids):
                if seq is None:
                    pieces.append(("special", (token, token_id), type_id))
                elif not pieces or pieces[-1] != ("seq", seq, type_id):
                    pieces.append(("seq", seq, type_id))
            layouts.append(pieces)
        return Template(*layouts)

    def build_inputs_with_special_tokens(self, token_ids_0, token_ids_1=None):
        return self._wrap_ids(token_ids_0, token_ids_1).ids

    def get_special_tokens_mask(self, token_ids_0, token_ids_1=None, already_has_special_tokens: bool = False):
        if already_has_special_tokens:
            special = set(self.all_special_ids)
            return [1 if i in special else 0 for i in token_ids_0]
        return self._wrap_ids(token_ids_0, token_ids_1).special_tokens_mask

    def _wrap_ids(self, ids0, ids1):
        def plain(ids, seq):
            n = len(ids)
            return Encoding(list(ids), [0] * n, self.convert_ids_to_tokens(list(ids)), [(0, 0)] * n, [0] * n,
                            [None] * n, [seq] * n)

        return apply_template(self._template(), plain(ids0, 0), plain(ids1, 1) if ids1 is not None else None)

    def _decode(self, ids, skip_special_tokens: bool) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str, ...]:
        from ..files import atomic_write_text

        path = os.path.join(save_directory, (filename_prefix + "-" if filename_prefix else "") + "tokenizer.json")
        atomic_write_text(path, self._tokenizer.to_str(pretty=True))
        return (path,)
