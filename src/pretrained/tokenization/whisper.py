"""Whisper's tokenizer: GPT-2's byte-level BPE plus Whisper's prompt and timestamp tokens.

Encoding prepends the prefix (<|startoftranscript|>, the language, the task, <|notimestamps|>; see
`set_prefix_tokens`) and appends <|endoftext|>. Decoding drops the timestamp tokens from the text, or renders
them as "<|1.08|>" (`decode_with_timestamps=True`), or returns timed segments (`output_offsets=True`).

Token ids from `timestamp_begin` (<|notimestamps|> + 1) on are times: id `timestamp_begin + k` is
`k * time_precision` seconds into a 30 s window. A time lower than the previous one starts a new window; what
the windows add to the times follows Transformers' rules (a window that ended on a lone time lasted the full
`segment_size` positions, one that ended on a pair of times lasted until that pair).
"""

from __future__ import annotations

import re
import unicodedata

from tokenizers import processors

from ..errors import CheckpointError, InputError, UnsupportedOptionError
from .models import GPT2TokenizerFast

# Whisper's language tokens (<|en|>, ...) in token order, and the names its pipeline reports
LANGUAGES = {
    "en": "english", "zh": "chinese", "de": "german", "es": "spanish", "ru": "russian", "ko": "korean",
    "fr": "french", "ja": "japanese", "pt": "portuguese", "tr": "turkish", "pl": "polish", "ca": "catalan",
    "nl": "dutch", "ar": "arabic", "sv": "swedish", "it": "italian", "id": "indonesian", "hi": "hindi",
    "fi": "finnish", "vi": "vietnamese", "he": "hebrew", "uk": "ukrainian", "el": "greek", "ms": "malay",
    "cs": "czech", "ro": "romanian", "da": "danish", "hu": "hungarian", "ta": "tamil", "no": "norwegian",
    "th": "thai", "ur": "urdu", "hr": "croatian", "bg": "bulgarian", "lt": "lithuanian", "la": "latin",
    "mi": "maori", "ml": "malayalam", "cy": "welsh", "sk": "slovak", "te": "telugu", "fa": "persian",
    "lv": "latvian", "bn": "bengali", "sr": "serbian", "az": "azerbaijani", "sl": "slovenian", "kn": "kannada",
    "et": "estonian", "mk": "macedonian", "br": "breton", "eu": "basque", "is": "icelandic", "hy": "armenian",
    "ne": "nepali", "mn": "mongolian", "bs": "bosnian", "kk": "kazakh", "sq": "albanian", "sw": "swahili",
    "gl": "galician", "mr": "marathi", "pa": "punjabi", "si": "sinhala", "km": "khmer", "sn": "shona",
    "yo": "yoruba", "so": "somali", "af": "afrikaans", "oc": "occitan", "ka": "georgian", "be": "belarusian",
    "tg": "tajik", "sd": "sindhi", "gu": "gujarati", "am": "amharic", "yi": "yiddish", "lo": "lao", "uz": "uzbek",
    "fo": "faroese", "ht": "haitian creole", "ps": "pashto", "tk": "turkmen", "nn": "nynorsk", "mt": "maltese",
    "sa": "sanskrit", "lb": "luxembourgish", "my": "myanmar", "bo": "tibetan", "tl": "tagalog", "mg": "malagasy",
    "as": "assamese", "tt": "tatar", "haw": "hawaiian", "ln": "lingala", "ha": "hausa", "ba": "bashkir",
    "jw": "javanese", "su": "sundanese", "yue": "cantonese",
}
# language name (or alias) -> code
TO_LANGUAGE_CODE = {
    **{name: code for code, name in LANGUAGES.items()},
    "burmese": "my", "valencian": "ca", "flemish": "nl", "haitian": "ht", "letzeburgesch": "lb", "pushto": "ps",
    "panjabi": "pa", "moldavian": "ro", "moldovan": "ro", "sinhalese": "si", "castilian": "es", "mandarin": "zh",
}
TASKS = ("translate", "transcribe")
_TIME = re.compile(r"<\|(\d+\.\d+)\|>")  # a rendered timestamp token
# letters NFKD does not split into a base and a mark
_SPELLED_OUT = {"œ": "oe", "Œ": "OE", "ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "ß": "ss", "ẞ": "SS", "đ": "d",
                "Đ": "D", "ð": "d", "Ð": "D", "þ": "th", "Þ": "th", "ł": "l", "Ł": "L"}


def language_code(language: str) -> str:
    """'French', 'fr' or '<|fr|>' -> 'fr'."""
    name = language.lower()
    if name.startswith("<|") and name.endswith("|>"):
        name = name[2:-2]
    if name in TO_LANGUAGE_CODE:
        return TO_LANGUAGE_CODE[name]
    if name in LANGUAGES:
        return name
    raise InputError(f"language={language!r} is not one of Whisper's languages (a code such as 'fr' or a name "
                     "such as 'french')")


def normalize_basic(text: str, remove_diacritics: bool = False) -> str:
    """Whisper's multilingual text normalizer: lower case, no [bracketed], <tagged> or (parenthesized) words,
    symbols and punctuation as spaces (diacritics dropped too with remove_diacritics), spaces collapsed."""
    text = re.sub(r"[<\[][^>\]]*[>\]]", "", text.lower())
    text = re.sub(r"\(([^)]+?)\)", "", text)
    if remove_diacritics:
        chars = (_SPELLED_OUT.get(c) or ("" if unicodedata.category(c) == "Mn" else
                                         " " if unicodedata.category(c)[0] in "MSP" else c)
                 for c in unicodedata.normalize("NFKD", text))
    else:
        chars = (" " if unicodedata.category(c)[0] in "MSP" else c for c in unicodedata.normalize("NFKC", text))
    return re.sub(r"\s+", " ", "".join(chars).lower())


class WhisperTokenizerFast(GPT2TokenizerFast):
    vocab_files_names = {"vocab_file": "vocab.json", "merges_file": "merges.txt", "tokenizer_file": "tokenizer.json"}

    def __init__(self, vocab_file=None, merges_file=None, tokenizer_file=None, unk_token="<|endoftext|>",
                 bos_token="<|endoftext|>", eos_token="<|endoftext|>", add_prefix_space=False, language=None,
                 task=None, predict_timestamps=False, **kwargs):
        super().__init__(vocab_file, merges_file, tokenizer_file, unk_token=unk_token, bos_token=bos_token,
                         eos_token=eos_token, add_prefix_space=add_prefix_space, language=language, task=task,
                         predict_timestamps=predict_timestamps, **kwargs)
        self.language, self.task, self.predict_timestamps = language, task, predict_timestamps
        self.set_prefix_tokens()

    # ------------------------------------------------------------------ the prompt prefix
    def _token_id(self, token: str) -> int:
        token_id = self._tokenizer.token_to_id(token)
        if token_id is None:
            raise CheckpointError(f"{self.name_or_path or type(self).__name__}: the vocabulary has no {token} token, "
                                  "which every Whisper tokenizer has")
        return token_id

    @property
    def prefix_tokens(self) -> list[int]:
        """<|startoftranscript|>, then the language and the task when set, then <|notimestamps|> unless
        timestamps are predicted: what encoding prepends."""
        return self._prefix(self.language, self.task, self.predict_timestamps)

    def _prefix(self, language, task, predict_timestamps) -> list[int]:
        prefix = [self._token_id("<|startoftranscript|>")]
        if language is not None:
            prefix.append(self._token_id(f"<|{language_code(language)}|>"))
        if task is not None:
            if task not in TASKS:
                raise InputError(f"task={task!r}; expected one of {list(TASKS)}")
            prefix.append(self._token_id(f"<|{task}|>"))
        if not predict_timestamps:
            prefix.append(self._token_id("<|notimestamps|>"))
        return prefix

    def set_prefix_tokens(self, language: str | None = None, task: str | None = None,
                          predict_timestamps: bool | None = None) -> None:
        """Change what encoding prepends; arguments left as None keep their current value."""
        language = (language if language is not None else self.language)
        language = language.lower() if language is not None else None
        task = task if task is not None else self.task
        predict_timestamps = predict_timestamps if predict_timestamps is not None else self.predict_timestamps
        ids = self._prefix(language, task, predict_timestamps)  # checked before anything changes
        self.language, self.task, self.predict_timestamps = language, task, predict_timestamps
        tokens = self.convert_ids_to_tokens(ids)
        eos = self.eos_token
        prefix = " ".join(f"{t}:0" for t in tokens)
        self._tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{prefix} $A:0 {eos}:0", pair=f"{prefix} $A:0 $B:1 {eos}:1",
            special_tokens=[(eos, self.eos_token_id), *zip(tokens, ids)])

    def get_decoder_prompt_ids(self, task: str | None = None, language: str | None = None,
                               no_timestamps: bool = True) -> list[tuple[int, int]]:
        """[(position, id)] forced after <|startoftranscript|>; also sets them as the encoding prefix."""
        self.set_prefix_tokens(task=task, language=language, predict_timestamps=not no_timestamps)
        return [(position, token) for position, token in enumerate(self.prefix_tokens[1:], start=1)]

    # ------------------------------------------------------------------ decoding
    basic_normalize = staticmethod(normalize_basic)

    @property
    def timestamp_begin(self) -> int:
        """The id of <|0.00|>: the first one after <|notimestamps|>."""
        return self._token_id("<|notimestamps|>") + 1

    def decode(self, token_ids, skip_special_tokens: bool = False, clean_up_tokenization_spaces: bool | None = None,
               output_offsets: bool = False, time_precision: float = 0.02, decode_with_timestamps: bool = False,
               normalize: bool = False, basic_normalize: bool = False, remove_diacritics: bool = False,
               **kwargs):
        """Text without timestamps; with `decode_with_timestamps` the times as "<|1.08|>" (across windows, from
        the first); with `output_offsets` {"text", "offsets": [{"text", "timestamp": (start, end)}]}.
        `skip_special_tokens` also drops a <|startofprev|> prompt up to <|startoftranscript|>."""
        if normalize:
            raise UnsupportedOptionError("decode(normalize=True): Whisper's English text normalizer is not "
                                         "implemented; basic_normalize=True (the multilingual one) is")
        if kwargs:
            raise InputError(f"WhisperTokenizer.decode got unexpected arguments {sorted(kwargs)}")
        ids = _as_list(token_ids)
        if ids and isinstance(ids[0], list):
            return self.batch_decode(ids, skip_special_tokens, clean_up_tokenization_spaces,
                                     output_offsets=output_offsets, time_precision=time_precision,
                                     decode_with_timestamps=decode_with_timestamps, basic_normalize=basic_normalize,
                                     remove_diacritics=remove_diacritics)
        kept = self._strip_prompt(ids) if skip_special_tokens else ids
        if decode_with_timestamps:
            text = self._decode_with_timestamps(kept, skip_special_tokens, clean_up_tokenization_spaces,
                                                time_precision)
        else:
            text = super().decode(kept, skip_special_tokens, clean_up_tokenization_spaces)
            if basic_normalize:
                text = normalize_basic(text, remove_diacritics)
            text = _TIME.sub("", text)
        if output_offsets:
            return {"text": text, "offsets": self._offsets(ids, time_precision)}
        return text

    def batch_decode(self, sequences, skip_special_tokens: bool = False,
                     clean_up_tokenization_spaces: bool | None = None, **kwargs) -> list:
        return [self.decode(s, skip_special_tokens, clean_up_tokenization_spaces, **kwargs)
                for s in _as_list(sequences)]

    def _strip_prompt(self, ids: list[int]) -> list[int]:
        """A previous-text prompt (<|startofprev|> ... ) is dropped up to <|startoftranscript|>; all of it
        when the transcript never starts."""
        if not ids or ids[0] != self._token_id("<|startofprev|>"):
            return ids
        start = self._token_id("<|startoftranscript|>")
        return ids[ids.index(start):] if start in ids else []

    def _decode_with_timestamps(self, ids: list[int], skip_special_tokens: bool, clean_up, time_precision: float,
                                segment_size: int = 1500) -> str:
        begin = self.timestamp_begin
        pieces: list = [[]]  # texts as lists of ids, times as rendered strings
        latest = previous = offset = 0.0
        for i, token in enumerate(ids):
            if token < begin:
                pieces[-1].append(token)
                continue
            time = float((token - begin) * time_precision)
            if time < latest:  # a new window
                if window_ended_alone(ids, i, begin):
                    offset += time_precision * segment_size  # the window ended on a lone time: it was read whole
                else:
                    # it ended on a pair of times: it lasted until the pair, whose second time this one replaces
                    latest = previous
                    offset += previous
                    pieces = pieces[:-2]
            previous, latest = latest, time
            pieces += [f"<|{time + offset:.2f}|>", []]
        return "".join(p if isinstance(p, str) else
                       super(WhisperTokenizerFast, self).decode(p, skip_special_tokens, clean_up) if p else ""
                       for p in pieces)

    def _offsets(self, ids: list[int], time_precision: float, segment_size: int = 1500) -> list[dict]:
        """Segments between pairs of times (and up to the last time): their text and (start, end) in seconds."""
        begin = self.timestamp_begin
        times = [k for k, t in enumerate(ids) if t >= begin]
        cuts = [k + 1 for k in range(len(ids) - 1) if ids[k] >= begin and ids[k + 1] >= begin]
        if not cuts and len(times) <= 1:
            return []
        if times[-1] + 1 not in cuts:
            cuts.append(times[-1] + 1)
        offsets, start_at, latest, shift = [], times[0], 0, 0
        for cut in cuts:
            piece = ids[start_at:cut]
            if len(piece) > 1:
                start, end = piece[0] - begin, piece[-1] - begin
                if start < latest:  # a new window: see _decode_with_timestamps
                    shift += segment_size if window_ended_alone(ids, start_at, begin) else latest
                latest = end
                text = _TIME.sub("", self._decode(piece, False))
                offsets.append({"text": text, "timestamp": (start * time_precision + shift * time_precision,
                                                            end * time_precision + shift * time_precision)})
            start_at = cut
        return offsets


class WhisperTokenizer(WhisperTokenizerFast):
    """The same Rust-backed tokenizer: Transformers 5's WhisperTokenizer is backed by `tokenizers` too."""


def window_ended_alone(ids: list[int], i: int, timestamp_begin: int) -> bool:
    """Whether the window before position i (where the times restart) ended on a lone time rather than on a
    pair: then it was read whole (30 s), else it lasted until the pair."""
    return i >= 2 and not (ids[i - 1] >= timestamp_begin and ids[i - 2] >= timestamp_begin)


def _as_list(token_ids):
    if hasattr(token_ids, "tolist"):
        token_ids = token_ids.tolist()
    if isinstance(token_ids, int):
        return [token_ids]
    return list(token_ids)


CLASSES = {cls.__name__: cls for cls in (WhisperTokenizer, WhisperTokenizerFast)}
