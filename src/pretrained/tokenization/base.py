"""PreTrainedTokenizerBase: the API every backend shares.

Owns argument handling of `__call__` (batch/pair/pre-split detection, padding and truncation
strategies), special tokens, the conversion of encodings into a BatchEncoding (overflow
windows, sample mapping, tensors), `pad`, `decode` and the file round trip
(from_pretrained / save_pretrained). The Python backends also get from here the
truncation/overflow/template/padding rules, written to match the Rust `tokenizers` library,
so that every backend returns the same windows for the same tokens.
"""

from __future__ import annotations

import copy
import logging
import warnings

from ..errors import InputError
from .encoding import BatchEncoding, Encoding, to_tensor

logger = logging.getLogger(__name__)

VERY_LARGE_INTEGER = int(1e30)  # Transformers' "no limit" model_max_length
LARGE_INTEGER = int(1e20)

SPECIAL_TOKENS_ATTRIBUTES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
_PADDING = {"longest": "longest", "max_length": "max_length", "do_not_pad": None}
_TRUNCATION = {"longest_first": "longest_first", "only_first": "only_first", "only_second": "only_second",
               "do_not_truncate": None}


def token_content(token) -> str | None:
    """A special token as plain text: it may be a str, an AddedToken or a serialized AddedToken dict."""
    if token is None:
        return None
    if isinstance(token, dict):
        return token["content"]
    return str(token) if not hasattr(token, "content") else token.content


class PreTrainedTokenizerBase:
    """Shared front of all tokenizers; subclasses provide the vocabulary and the per-text encoding."""

    vocab_files_names: dict[str, str] = {}
    model_input_names = ["input_ids", "token_type_ids", "attention_mask"]
    padding_side = "right"
    truncation_side = "right"
    is_fast = False
    optional_files: tuple[str, ...] = ()

    def __init__(self, **kwargs):
        self.init_kwargs = copy.deepcopy({k: v for k, v in kwargs.items() if not k.startswith("_")})
        self.name_or_path = kwargs.pop("name_or_path", "")
        model_max_length = kwargs.pop("model_max_length", None)
        self.model_max_length = model_max_length if model_max_length is not None else VERY_LARGE_INTEGER
        self.padding_side = kwargs.pop("padding_side", type(self).padding_side)
        self.truncation_side = kwargs.pop("truncation_side", type(self).truncation_side)
        for name, side in (("padding_side", self.padding_side), ("truncation_side", self.truncation_side)):
            if side not in ("right", "left"):
                raise InputError(f"{name} must be 'right' or 'left', got {side!r}")
        self.model_input_names = kwargs.pop("model_input_names", list(type(self).model_input_names))
        self.clean_up_tokenization_spaces = kwargs.pop("clean_up_tokenization_spaces", False)
        self.split_special_tokens = kwargs.pop("split_special_tokens", False)
        self.chat_template = kwargs.pop("chat_template", None)
        self.deprecation_warnings: dict[str, bool] = {}
        self._special = {}
        for attr in SPECIAL_TOKENS_ATTRIBUTES:
            self._special[attr] = token_content(kwargs.pop(attr, None))
        extra = kwargs.pop("additional_special_tokens", None) or kwargs.pop("extra_special_tokens", None) or []
        if isinstance(extra, dict):  # Transformers 5 may save named extra tokens
            extra = list(extra.values())
        self._additional_special = [token_content(t) for t in extra]
        self._unused_kwargs = kwargs

    # ------------------------------------------------------------------ special tokens
    def __getattr__(self, name):
        # bos_token / bos_token_id / ... resolve through _special; called only when normal lookup fails.
        special = self.__dict__.get("_special")
        if special is not None:
            if name in special:
                return special[name]
            if name.endswith("_id") and name[:-3] in special:
                token = special[name[:-3]]
                return None if token is None else self.convert_tokens_to_ids(token)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name, value):
        special = self.__dict__.get("_special")
        if special is not None and name in special:
            special[name] = token_content(value)
            if value is not None:
                self._register_special_tokens([special[name]])
            return
        if special is not None and name.endswith("_id") and name[:-3] in special:
            special[name[:-3]] = None if value is None else self.convert_ids_to_tokens(value)
            return
        super().__setattr__(name, value)

    @property
    def additional_special_tokens(self) -> list[str]:
        return list(self._additional_special)

    @additional_special_tokens.setter
    def additional_special_tokens(self, tokens):
        self._additional_special = [token_content(t) for t in tokens]
        self._register_special_tokens(self._additional_special)

    @property
    def additional_special_tokens_ids(self) -> list[int]:
        return self.convert_tokens_to_ids(self._additional_special)

    @property
    def pad_token_type_id(self) -> int:
        return 0

    @property
    def special_tokens_map(self) -> dict:
        out = {k: v for k, v in self._special.items() if v is not None}
        if self._additional_special:
            out["additional_special_tokens"] = list(self._additional_special)
        return out

    @property
    def all_special_tokens(self) -> list[str]:
        seen = []
        for token in [*self._special.values(), *self._additional_special]:
            if token is not None and token not in seen:
                seen.append(token)
        return seen

    @property
    def all_special_ids(self) -> list[int]:
        return self.convert_tokens_to_ids(self.all_special_tokens)

    def add_special_tokens(self, special_tokens_dict: dict, replace_additional_special_tokens: bool = True) -> int:
        """Set named special tokens (and `additional_special_tokens`); returns how many joined the vocabulary."""
        new = []
        for key, value in special_tokens_dict.items():
            if key == "additional_special_tokens":
                values = [token_content(t) for t in value]
                if replace_additional_special_tokens:
                    self._additional_special = values
                else:
                    self._additional_special += [t for t in values if t not in self._additional_special]
                new += values
            elif key in self._special:
                self._special[key] = token_content(value)
                new.append(self._special[key])
            else:
                raise InputError(f"add_special_tokens: {key!r} is not a special token name; use one of "
                                 f"{SPECIAL_TOKENS_ATTRIBUTES} or 'additional_special_tokens'")
        return self._register_special_tokens(new)

    def add_tokens(self, new_tokens, special_tokens: bool = False) -> int:
        if isinstance(new_tokens, str) or hasattr(new_tokens, "content"):
            new_tokens = [new_tokens]
        return self._add_tokens([token_content(t) for t in new_tokens], special=special_tokens)

    def _register_special_tokens(self, tokens) -> int:
        return self._add_tokens([t for t in tokens if t is not None], special=True)

    # --- backend hooks
    def _add_tokens(self, tokens: list[str], special: bool) -> int:
        raise NotImplementedError

    def get_vocab(self) -> dict[str, int]:
        raise NotImplementedError

    def convert_tokens_to_ids(self, tokens):
        raise NotImplementedError

    def convert_ids_to_tokens(self, ids, skip_special_tokens: bool = False):
        raise NotImplementedError

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        raise NotImplementedError

    def _encode_rows(self, batch, is_split, add_special_tokens, truncation, max_length, stride, padding,
                     pad_to_multiple_of):
        """Encode [(text, pair or None), ...] into Encoding-like rows, truncated and padded."""
        raise NotImplementedError

    def _decode(self, ids: list[int], skip_special_tokens: bool) -> str:
        raise NotImplementedError

    # ------------------------------------------------------------------ strategies
    def _strategies(self, padding, truncation, max_length, pad_to_multiple_of, verbose=True):
        """(padding, truncation, max_length) resolved as Transformers does, as plain strings or None."""
        if max_length is not None and padding is False and truncation is None:
            if verbose and not self.deprecation_warnings.get("Truncation-not-explicitly-activated"):
                logger.warning(
                    "Truncation was not explicitly activated but `max_length` is provided a specific value, please "
                    "use `truncation=True` to explicitly truncate examples to max length. Defaulting to "
                    "'longest_first' truncation strategy."
                )
                self.deprecation_warnings["Truncation-not-explicitly-activated"] = True
            truncation = "longest_first"
        if padding is True:
            if verbose and max_length is not None and truncation in (None, False, "do_not_truncate"):
                warnings.warn(
                    "`max_length` is ignored when `padding`=`True` and there is no truncation strategy. "
                    "To pad to max length, use `padding='max_length'`."
                )
            pad = "longest"
        elif padding is False or padding is None:
            pad = None
        else:
            key = getattr(padding, "value", padding)
            if key not in _PADDING:
                raise InputError(
                    f"padding={padding!r} is not one of True, False, 'longest', 'max_length', 'do_not_pad'")
            pad = _PADDING[key]
        if truncation is True:
            trunc = "longest_first"
        elif truncation is False or truncation is None:
            trunc = None
        else:
            key = getattr(truncation, "value", truncation)
            if key not in _TRUNCATION:
                raise InputError(
                    f"truncation={truncation!r} is not one of True, False, 'longest_first', 'only_first', "
                    "'only_second', 'do_not_truncate'"
                )
            trunc = _TRUNCATION[key]
        if max_length is None:
            if pad == "max_length":
                if self.model_max_length > LARGE_INTEGER:
                    pad = None
                else:
                    max_length = self.model_max_length
            if trunc is not None:
                if self.model_max_length > LARGE_INTEGER:
                    trunc = None
                else:
                    max_length = self.model_max_length
        if pad is not None and (self.pad_token is None or self.pad_token_id is None or self.pad_token_id < 0):
            raise InputError(
                f"padding={padding!r}: asking to pad but the tokenizer does not have a padding token. Please select "
                "a token to use as `pad_token` `(tokenizer.pad_token = tokenizer.eos_token e.g.)` or add a new pad "
                "token via "
                "`tokenizer.add_special_tokens({'pad_token': '[PAD]'})`."
            )
        if trunc and pad and pad_to_multiple_of is not None and max_length is not None and max_length % pad_to_multiple_of:
            raise InputError(
                "Truncation and padding are both activated but truncation length "
                f"({max_length}) is not a multiple of pad_to_multiple_of ({pad_to_multiple_of})."
            )
        return pad, trunc, max_length

    # ------------------------------------------------------------------ encoding
    def __call__(
        self,
        text=None,
        text_pair=None,
        text_target=None,
        text_pair_target=None,
        add_special_tokens: bool = True,
        padding=False,
        truncation=None,
        max_length: int | None = None,
        stride: int = 0,
        is_split_into_words: bool = False,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        return_token_type_ids: bool | None = None,
        return_attention_mask: bool | None = None,
        return_overflowing_tokens: bool = False,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
        return_length: bool = False,
        verbose: bool = True,
        **kwargs,
    ) -> BatchEncoding:
        """Tokenize one text, a pair, a batch or pre-split words into model inputs."""
        if kwargs:
            raise TypeError(f"{type(self).__name__}.__call__ got unexpected keyword arguments {sorted(kwargs)}")
        options = dict(
            add_special_tokens=add_special_tokens, padding=padding, truncation=truncation, max_length=max_length,
            stride=stride, is_split_into_words=is_split_into_words, pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side, return_tensors=return_tensors, return_token_type_ids=return_token_type_ids,
            return_attention_mask=return_attention_mask, return_overflowing_tokens=return_overflowing_tokens,
            return_special_tokens_mask=return_special_tokens_mask, return_offsets_mapping=return_offsets_mapping,
            return_length=return_length, verbose=verbose,
        )
        if text is None and text_target is None:
            raise InputError("You need to specify either `text` or `text_target`: both are None.")
        encodings = None
        if text is not None:
            encodings = self._call_one(text, text_pair, **options)
        if text_target is not None:
            targets = self._call_one(text_target, text_pair_target, **options)
            if encodings is None:
                return targets
            encodings["labels"] = targets["input_ids"]
        return encodings

    def _call_one(self, text, text_pair, *, is_split_into_words, **options) -> BatchEncoding:
        def is_valid(t):
            if isinstance(t, str):
                return True
            if isinstance(t, (list, tuple)):
                return len(t) == 0 or isinstance(t[0], str) or (
                    isinstance(t[0], (list, tuple)) and (len(t[0]) == 0 or isinstance(t[0][0], str))
                )
            return False

        if not is_valid(text) or (text_pair is not None and not is_valid(text_pair)):
            name, bad = ("text", text) if not is_valid(text) else ("text_pair", text_pair)
            raise InputError(
                f"{name} has type {type(bad).__name__}: text input must be of type `str` (single example), `list[str]` "
                "(batch or single pretokenized example) or `list[list[str]]` (batch of pretokenized examples)."
            )
        if is_split_into_words:
            batched = isinstance(text, (list, tuple)) and bool(text) and isinstance(text[0], (list, tuple))
        else:
            batched = isinstance(text, (list, tuple))
        if batched:
            if text_pair is not None:
                if isinstance(text_pair, str) or len(text_pair) != len(text):
                    raise InputError(
                        f"batch length of `text`: {len(text)} does not match batch length of `text_pair`: "
                        f"{len(text_pair) if not isinstance(text_pair, str) else 'a single str'}."
                    )
                pairs = list(zip(text, text_pair))
            elif not is_split_into_words and text and isinstance(text[0], (list, tuple)):
                pairs = [tuple(t) if len(t) == 2 else (t, None) for t in text]  # [(a, b), ...] batches of pairs
            else:
                pairs = [(t, None) for t in text]
        else:
            pairs = [(text, text_pair)]
        return self._batch_encode(pairs, batched, is_split_into_words, **options)

    def _batch_encode(
        self, pairs, batched, is_split, *, add_special_tokens, padding, truncation, max_length, stride,
        pad_to_multiple_of, padding_side, return_tensors, return_token_type_ids, return_attention_mask,
        return_overflowing_tokens, return_special_tokens_mask, return_offsets_mapping, return_length, verbose,
    ) -> BatchEncoding:
        pad, trunc, max_length = self._strategies(padding, truncation, max_length, pad_to_multiple_of, verbose)
        if padding_side is not None and padding_side not in ("left", "right"):
            raise InputError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
        rows = self._encode_rows(
            pairs, is_split, add_special_tokens, trunc, max_length, stride, pad, pad_to_multiple_of,
            padding_side or self.padding_side,
        )
        if return_token_type_ids is None:
            return_token_type_ids = "token_type_ids" in self.model_input_names
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        flat = []
        mapping = []
        for i, row in enumerate(rows):
            flat.append(row)
            mapping.append(i)
            if return_overflowing_tokens:
                for window in row.overflowing:
                    flat.append(window)
                    mapping.append(i)
        data = {"input_ids": [e.ids for e in flat]}
        if return_token_type_ids:
            data["token_type_ids"] = [e.type_ids for e in flat]
        if return_attention_mask:
            data["attention_mask"] = [e.attention_mask for e in flat]
        if return_special_tokens_mask:
            data["special_tokens_mask"] = [e.special_tokens_mask for e in flat]
        if return_offsets_mapping:
            data["offset_mapping"] = [e.offsets for e in flat]
        if return_length:
            data["length"] = [len(e.ids) for e in flat]
        if return_overflowing_tokens:
            data["overflow_to_sample_mapping"] = mapping
        if verbose and trunc is None and not self.deprecation_warnings.get("sequence-too-long"):
            for e in flat:
                if len(e.ids) > self.model_max_length and self.model_max_length != 0:
                    logger.warning(
                        "Token indices sequence length is longer than the specified maximum sequence length for this "
                        f"model ({len(e.ids)} > {self.model_max_length}). Running this sequence through the model "
                        "will result in indexing errors"
                    )
                    self.deprecation_warnings["sequence-too-long"] = True
                    break
        if not batched and return_tensors is None and not return_overflowing_tokens:
            data = {k: v[0] if v and isinstance(v[0], list) else v for k, v in data.items()}
        return BatchEncoding(data, flat, tensor_type=return_tensors)

    def encode(self, text, text_pair=None, add_special_tokens: bool = True, padding=False, truncation=None,
               max_length=None, stride: int = 0, return_tensors=None, **kwargs):
        """Token ids of one text (or pair)."""
        out = self(text, text_pair=text_pair, add_special_tokens=add_special_tokens, padding=padding,
                   truncation=truncation, max_length=max_length, stride=stride, return_tensors=return_tensors,
                   return_token_type_ids=False, return_attention_mask=False, **kwargs)
        return out["input_ids"]

    def encode_plus(self, text, text_pair=None, **kwargs) -> BatchEncoding:
        return self(text, text_pair=text_pair, **kwargs)

    def batch_encode_plus(self, batch_text_or_text_pairs, **kwargs) -> BatchEncoding:
        return self(list(batch_text_or_text_pairs), **kwargs)

    def tokenize(self, text: str, pair: str | None = None, add_special_tokens: bool = False, **kwargs) -> list[str]:
        return self._encode_rows([(text, pair)], kwargs.get("is_split_into_words", False), add_special_tokens,
                                 None, None, 0, None, None, self.padding_side)[0].tokens

    def __len__(self) -> int:
        return len(self.get_vocab())

    def build_inputs_with_special_tokens(self, token_ids_0, token_ids_1=None):
        rows = self._encode_rows([(token_ids_0, token_ids_1)], "ids", True, None, None, 0, None, None, "right")
        return rows[0].ids

    def get_special_tokens_mask(self, token_ids_0, token_ids_1=None, already_has_special_tokens: bool = False):
        if already_has_special_tokens:
            special = set(self.all_special_ids)
            return [1 if i in special else 0 for i in token_ids_0]
        rows = self._encode_rows([(token_ids_0, token_ids_1)], "ids", True, None, None, 0, None, None, "right")
        return rows[0].special_tokens_mask

    # ------------------------------------------------------------------ padding of ready ids (collators)
    def pad(self, encoded_inputs, padding=True, max_length=None, pad_to_multiple_of=None, padding_side=None,
            return_attention_mask=None, return_tensors=None, verbose: bool = True) -> BatchEncoding:
        """Pad already-encoded inputs (a dict of lists, or a list of dicts) as data collators need."""
        if isinstance(encoded_inputs, (list, tuple)) and encoded_inputs and isinstance(encoded_inputs[0], dict):
            encoded_inputs = {k: [ex[k] for ex in encoded_inputs] for k in encoded_inputs[0]}
        main = self.model_input_names[0]
        if main not in encoded_inputs:
            raise InputError(f"pad(encoded_inputs) needs a {main!r} key; got {sorted(encoded_inputs)}")
        required = encoded_inputs[main]
        if required is None or (hasattr(required, "__len__") and len(required) == 0):
            if return_attention_mask:
                encoded_inputs["attention_mask"] = []
            return BatchEncoding(encoded_inputs, tensor_type=return_tensors)
        inputs = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in encoded_inputs.items()}
        batched = isinstance(inputs[main][0], (list, tuple))
        if not batched:
            inputs = {k: [v] for k, v in inputs.items()}
        pad, _, max_length = self._strategies(padding, False, max_length, pad_to_multiple_of, verbose)
        side = padding_side or self.padding_side
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        lengths = [len(x) for x in inputs[main]]
        target = max(lengths) if pad == "longest" else max_length
        out = {k: [] for k in inputs}
        if return_attention_mask:
            out.setdefault("attention_mask", [])
        for i, n in enumerate(lengths):
            length = n
            if pad is not None:
                length = max(target, n) if pad == "longest" else target
                if pad_to_multiple_of and length % pad_to_multiple_of:
                    length = (length // pad_to_multiple_of + 1) * pad_to_multiple_of
            extra = max(length - n, 0)
            fills = {main: self.pad_token_id, "token_type_ids": self.pad_token_type_id, "special_tokens_mask": 1,
                     "attention_mask": 0, "labels": -100}
            for key in inputs:
                value = list(inputs[key][i])
                if key in fills or key == main:
                    if len(value) == n:
                        filler = [fills.get(key, 0)] * extra
                        value = value + filler if side == "right" else filler + value
                out[key].append(value)
            if return_attention_mask and "attention_mask" not in inputs:
                mask = [1] * n
                filler = [0] * extra
                out["attention_mask"].append(mask + filler if side == "right" else filler + mask)
        if not batched:
            out = {k: v[0] for k, v in out.items()}
        return BatchEncoding(out, tensor_type=return_tensors)

    # ------------------------------------------------------------------ decoding
    def decode(self, token_ids, skip_special_tokens: bool = False, clean_up_tokenization_spaces: bool | None = None,
               **kwargs) -> str:
        if hasattr(token_ids, "tolist"):
            token_ids = token_ids.tolist()
        if isinstance(token_ids, int):
            token_ids = [token_ids]
        if token_ids and isinstance(token_ids[0], list):
            return self.batch_decode(token_ids, skip_special_tokens, clean_up_tokenization_spaces)
        text = self._decode(list(token_ids), skip_special_tokens)
        clean = self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None else clean_up_tokenization_spaces
        return self.clean_up_tokenization(text) if clean else text

    def batch_decode(self, sequences, skip_special_tokens: bool = False,
                     clean_up_tokenization_spaces: bool | None = None, **kwargs) -> list[str]:
        if hasattr(sequences, "tolist"):
            sequences = sequences.tolist()
        return [self.decode(s, skip_special_tokens, clean_up_tokenization_spaces, **kwargs) for s in sequences]

    @staticmethod
    def clean_up_tokenization(text: str) -> str:
        for dirty, clean in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                             (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
            text = text.replace(dirty, clean)
        return text

    # ------------------------------------------------------------------ chat, files
    def apply_chat_template(self, conversation, **kwargs):
        from .chat import apply_chat_template

        return apply_chat_template(self, conversation, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *init_inputs, **kwargs):
        from .loading import load_tokenizer

        return load_tokenizer(cls, pretrained_model_name_or_path, *init_inputs, **kwargs)

    def save_pretrained(self, save_directory, legacy_format: bool | None = None, filename_prefix=None,
                        push_to_hub: bool = False, **kwargs) -> tuple[str, ...]:
        from .loading import save_tokenizer

        return save_tokenizer(self, save_directory, legacy_format=legacy_format)

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str, ...]:
        raise NotImplementedError

    def added_tokens_config(self) -> dict:
        """tokenizer_config.json's added_tokens_decoder: {id: {content, special, ...}}."""
        return {
            str(i): {"content": t.content, "lstrip": t.lstrip, "normalized": t.normalized, "rstrip": t.rstrip,
                     "single_word": t.single_word, "special": t.special}
            for i, t in sorted(self.added_tokens_decoder.items())
        }

    @classmethod
    def missing_files(cls, files: dict) -> list[str]:
        """The file names this class needs that `files` ({argument: path}) lacks."""
        if "tokenizer_file" in files:
            return []
        needed = [k for k in cls.vocab_files_names if k != "tokenizer_file" and k not in cls.optional_files]
        if not needed:
            needed = list(cls.vocab_files_names)
        return [cls.vocab_files_names[k] for k in needed if k not in files]

    @classmethod
    def check_files(cls, name: str, files: dict) -> None:
        """Raise naming the missing file when `files` cannot build this class."""
        missing = cls.missing_files(files)
        if missing:
            from ..errors import CheckpointError

            also = ""
            if "tokenizer_file" in cls.vocab_files_names and cls.vocab_files_names.get("tokenizer_file") not in missing:
                also = f" (and no {cls.vocab_files_names['tokenizer_file']})"
            raise CheckpointError(
                f"{name!r} has no file {missing[0]!r}{also}, which {cls.__name__} needs"
                + (f"; also missing: {missing[1:]}" if len(missing) > 1 else "")
            )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name_or_path={self.name_or_path!r}, vocab_size={len(self)}, "
            f"model_max_length={self.model_max_length}, padding_side={self.padding_side!r}, "
            f"truncation_side={self.truncation_side!r}, special_tokens={self.special_tokens_map})"
        )


# ---------------------------------------------------------------------- Rust-compatible post-processing
def truncate_encoding(enc: Encoding, max_len: int, stride: int, direction: str) -> None:
    """Cut `enc` to max_len tokens in place; the rest become overflow windows sharing `stride` tokens."""
    n = len(enc.ids)
    if max_len >= n:
        return
    if max_len == 0:
        window = _slice(enc, 0, n)
        enc.overflowing.append(window)
        _assign(enc, _slice(enc, 0, 0))
        return
    if stride >= max_len:
        raise InputError(
            f"Truncation error: `stride` ({stride}) must be strictly less than `max_len={max_len}` (note that "
            "`max_len` may be shorter than the max length of the original model, as it subtracts the number of "
            "special characters)"
        )
    step = max_len - stride
    ranges = []
    if direction == "right":
        for start in range(0, n, step):
            stop = min(start + max_len, n)
            ranges.append((start, stop))
            if stop == n:
                break
    else:
        for last in range(n - 1, -1, -step):
            stop = last + 1
            start = max(stop - max_len, 0)
            ranges.append((start, stop))
            if start == 0:
                break
    windows = [_slice(enc, a, b) for a, b in ranges]
    _assign(enc, windows[0])
    enc.overflowing = windows[1:]


def _slice(enc: Encoding, a: int, b: int) -> Encoding:
    return Encoding(enc.ids[a:b], enc.type_ids[a:b], enc.tokens[a:b], enc.offsets[a:b],
                    enc.special_tokens_mask[a:b], enc.word_ids[a:b], enc.sequence_ids[a:b])


def _assign(dst: Encoding, src: Encoding) -> None:
    for name in Encoding.__slots__:
        if name != "overflowing":
            setattr(dst, name, getattr(src, name))


def truncate_pair(a: Encoding, b: Encoding | None, max_length: int, stride: int, strategy: str, direction: str):
    """The Rust library's truncate_encodings: how many tokens each side keeps."""
    if max_length == 0:
        truncate_encoding(a, 0, stride, direction)
        if b is not None:
            truncate_encoding(b, 0, stride, direction)
        return
    total = len(a.ids) + (len(b.ids) if b is not None else 0)
    if total <= max_length:
        return
    to_remove = total - max_length
    if strategy == "longest_first":
        if b is None:
            truncate_encoding(a, total - to_remove, stride, direction)
            return
        n1, n2 = len(a.ids), len(b.ids)
        swap = n1 > n2
        if swap:
            n1, n2 = n2, n1
        n2 = n1 if n1 > max_length else max(n1, max_length - n1)
        if n1 + n2 > max_length:
            n1 = max_length // 2
            n2 = n1 + max_length % 2
        if swap:
            n1, n2 = n2, n1
        truncate_encoding(a, n1, stride, direction)
        truncate_encoding(b, n2, stride, direction)
        return
    if strategy == "only_first":
        target = a
    else:
        if b is None:
            raise InputError("Truncation error: Second sequence not provided "
                             "(truncation='only_second' needs text_pair)")
        target = b
    if len(target.ids) <= to_remove:
        raise InputError(f"Truncation error: Sequence to truncate too short to respect the provided max_length "
                         f"({max_length}): it has {len(target.ids)} tokens and {to_remove} must go "
                         f"(truncation={strategy!r})")
    truncate_encoding(target, len(target.ids) - to_remove, stride, direction)


def apply_template(template, a: Encoding, b: Encoding | None) -> Encoding:
    """Add special tokens around a (and b) per `template`, and to every overflow window (their product)."""
    pieces = template.pair if b is not None else template.single
    out = _join(pieces, a, b)
    windows = []
    b_windows = b.overflowing if b is not None else []
    for wa in a.overflowing:
        windows.append(_join(pieces, wa, b))
        for wb in b_windows:
            windows.append(_join(pieces, wa, wb))
    for wb in b_windows:
        windows.append(_join(pieces, a, wb))
    out.overflowing = windows
    return out


def _join(pieces, a: Encoding, b: Encoding | None) -> Encoding:
    ids, types, tokens, offsets, special, words, seqs = [], [], [], [], [], [], []
    for piece in pieces:
        kind, value, type_id = piece
        if kind == "seq":
            src = a if value == 0 else b
            n = len(src.ids)
            ids += src.ids
            types += [type_id] * n
            tokens += src.tokens
            offsets += src.offsets
            special += src.special_tokens_mask
            words += src.word_ids
            seqs += [value] * n
        else:
            token, token_id = value
            ids.append(token_id)
            types.append(type_id)
            tokens.append(token)
            offsets.append((0, 0))
            special.append(1)
            words.append(None)
            seqs.append(None)
    return Encoding(ids, types, tokens, offsets, special, words, seqs)


class Template:
    """Where special tokens go: pieces ("seq", 0|1, type_id) or ("special", (token, id), type_id)."""

    def __init__(self, single, pair):
        self.single = single
        self.pair = pair

    def count(self, pair: bool) -> int:
        return sum(1 for kind, _, _ in (self.pair if pair else self.single) if kind == "special")


def pad_rows(rows: list[Encoding], padding: str | None, max_length, pad_to_multiple_of, side: str,
             pad_id: int, pad_token: str, pad_type_id: int = 0) -> None:
    """The Rust library's pad_encodings: longest of the batch (main rows) or max_length, rounded up."""
    if padding is None:
        return
    length = max(len(r.ids) for r in rows) if padding == "longest" else max_length
    if pad_to_multiple_of and length % pad_to_multiple_of:
        length += pad_to_multiple_of - length % pad_to_multiple_of
    for r in rows:
        r.pad(length, pad_id, pad_type_id, pad_token, side)


def encode_and_postprocess(tok, pairs, is_split, add_special_tokens, truncation, max_length, stride, padding,
                           pad_to_multiple_of, padding_side) -> list[Encoding]:
    """The whole pipeline of the Python backends: encode each side, truncate, add specials, pad."""
    rows = []
    template = tok._template()
    if not add_special_tokens:  # the Rust template still sets type ids, it only drops the special tokens
        template = Template([p for p in template.single if p[0] == "seq"], [p for p in template.pair if p[0] == "seq"])
    for first, second in pairs:
        a = tok._encode_sequence(first, is_split, 0)
        b = tok._encode_sequence(second, is_split, 1) if second is not None else None
        if truncation is not None:
            n_added = template.count(b is not None)
            truncate_pair(a, b, max_length - n_added if n_added else max_length, stride, truncation,
                          tok.truncation_side)
        rows.append(apply_template(template, a, b))
    if padding is not None and rows:
        pad_rows(rows, padding, max_length, pad_to_multiple_of, padding_side, tok.pad_token_id, tok.pad_token,
                 tok.pad_token_type_id)
    return rows


__all__ = ["PreTrainedTokenizerBase", "BatchEncoding", "to_tensor"]
