"""Per-model tokenizer classes: each names its files, defaults and special-token layout, and (fast
ones) how to build the Rust pipeline from classic files when tokenizer.json is absent.

Names follow Transformers 4: `XTokenizer` is the Python (or SentencePiece) backend, `XTokenizerFast`
the Rust one; AutoTokenizer picks the fast one unless use_fast=False.
"""

from __future__ import annotations

from tokenizers import AddedToken, processors

from ..errors import CheckpointError, InputError, UnsupportedOptionError
from . import convert
from .base import Template
from .fast import PreTrainedTokenizerFast, set_byte_level_flags
from .python import ByteLevelBPETokenizer, WordPieceTokenizer
from .sentencepiece import SentencePieceTokenizer


# ---------------------------------------------------------------------- BERT family
class BertTokenizer(WordPieceTokenizer):
    """BERT's WordPiece tokenizer, pure Python."""


class BertTokenizerFast(PreTrainedTokenizerFast):
    vocab_files_names = {"vocab_file": "vocab.txt", "tokenizer_file": "tokenizer.json"}
    slow_tokenizer_class = BertTokenizer

    def __init__(self, vocab_file=None, tokenizer_file=None, do_lower_case=True, unk_token="[UNK]",
                 sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]",
                 tokenize_chinese_chars=True, strip_accents=None, **kwargs):
        self._vocab_file = vocab_file
        super().__init__(tokenizer_file=tokenizer_file, do_lower_case=do_lower_case, unk_token=unk_token,
                         sep_token=sep_token, pad_token=pad_token, cls_token=cls_token, mask_token=mask_token,
                         tokenize_chinese_chars=tokenize_chinese_chars, strip_accents=strip_accents, **kwargs)

    def _convert_from_files(self, **kw):
        if self._vocab_file is None:
            return None
        vocab = convert.read_wordpiece_vocab(self._vocab_file)
        for key in ("cls_token", "sep_token", "unk_token"):  # the post-processor and unknown words need their ids
            if str(kw[key]) not in vocab:
                raise CheckpointError(f"{self._vocab_file}: {key} {str(kw[key])!r} is not in the vocabulary")
        return convert.wordpiece_tokenizer(
            vocab, kw["unk_token"], kw["cls_token"], kw["sep_token"],
            do_lower_case=kw["do_lower_case"], strip_accents=kw["strip_accents"],
            tokenize_chinese_chars=kw["tokenize_chinese_chars"],
        )


class DistilBertTokenizer(BertTokenizer):
    model_input_names = ["input_ids", "attention_mask"]


class DistilBertTokenizerFast(BertTokenizerFast):
    model_input_names = ["input_ids", "attention_mask"]
    slow_tokenizer_class = DistilBertTokenizer


# ---------------------------------------------------------------------- byte-level BPE family
class GPT2Tokenizer(ByteLevelBPETokenizer):
    """GPT-2's byte-level BPE, pure Python; no special tokens are added around a text."""


class GPT2TokenizerFast(PreTrainedTokenizerFast):
    vocab_files_names = {"vocab_file": "vocab.json", "merges_file": "merges.txt", "tokenizer_file": "tokenizer.json"}
    model_input_names = ["input_ids", "attention_mask"]
    slow_tokenizer_class = GPT2Tokenizer

    def __init__(self, vocab_file=None, merges_file=None, tokenizer_file=None, unk_token="<|endoftext|>",
                 bos_token="<|endoftext|>", eos_token="<|endoftext|>", pad_token=None, add_prefix_space=False,
                 **kwargs):
        self._files = (vocab_file, merges_file)
        self.add_prefix_space = add_prefix_space
        super().__init__(tokenizer_file=tokenizer_file, unk_token=unk_token, bos_token=bos_token,
                         eos_token=eos_token, pad_token=pad_token, add_prefix_space=add_prefix_space, **kwargs)
        # A tokenizer.json carries its own flag; the argument wins, as in Transformers.
        self._tokenizer = set_byte_level_flags(self._tokenizer, add_prefix_space, *self._post_processor_flags())

    def _post_processor_flags(self):
        """(trim_offsets, whether the post-processor takes add_prefix_space): GPT-2's does not."""
        return None, False

    def _convert_from_files(self, **kw):
        if self._files == (None, None):
            return None
        vocab, merges = convert.read_bpe_files(*self._files)
        return convert.byte_level_bpe_tokenizer(vocab, merges, self.add_prefix_space, self._post_processor(vocab, kw))

    def _post_processor(self, vocab, kw):
        return processors.ByteLevel(trim_offsets=False)

    def _encode_rows(self, pairs, is_split, *args):
        if is_split and not self.add_prefix_space:
            raise InputError(
                f"is_split_into_words=True: you need to instantiate {type(self).__name__} with "
                "add_prefix_space=True to use it with pretokenized inputs."
            )
        return super()._encode_rows(pairs, is_split, *args)


_ROBERTA_DEFAULTS = dict(bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>", unk_token="<unk>",
                         pad_token="<pad>", mask_token="<mask>")


class RobertaTokenizer(ByteLevelBPETokenizer):
    """RoBERTa: GPT-2's BPE, `<s> A </s></s> B </s>`, offsets trimmed of the leading space."""

    trim_offsets = True

    def __init__(self, vocab_file=None, merges_file=None, trim_offsets=True, **kwargs):
        for key, value in _ROBERTA_DEFAULTS.items():
            kwargs.setdefault(key, value)
        self.trim_offsets = trim_offsets
        super().__init__(vocab_file, merges_file, trim_offsets=trim_offsets, **kwargs)

    def _template(self) -> Template:
        cls_ = ("special", (self.cls_token, self.cls_token_id), 0)
        sep = ("special", (self.sep_token, self.sep_token_id), 0)
        return Template([cls_, ("seq", 0, 0), sep], [cls_, ("seq", 0, 0), sep, sep, ("seq", 1, 0), sep])


class RobertaTokenizerFast(GPT2TokenizerFast):
    slow_tokenizer_class = RobertaTokenizer

    def __init__(self, vocab_file=None, merges_file=None, tokenizer_file=None, trim_offsets=True, **kwargs):
        for key, value in _ROBERTA_DEFAULTS.items():
            kwargs.setdefault(key, value)
        self.trim_offsets = trim_offsets
        super().__init__(vocab_file, merges_file, tokenizer_file, trim_offsets=trim_offsets, **kwargs)
        # <mask> swallows the space before it, so "a <mask>" predicts a word with its leading space.
        mask = self.mask_token
        if mask is not None:
            self._tokenizer.add_special_tokens([AddedToken(mask, lstrip=True, special=True, normalized=False)])

    def _post_processor(self, vocab, kw):
        sep, cls_ = str(kw["sep_token"]), str(kw["cls_token"])
        return processors.RobertaProcessing((sep, vocab[sep]), (cls_, vocab[cls_]),
                                            add_prefix_space=self.add_prefix_space, trim_offsets=self.trim_offsets)

    def _post_processor_flags(self):
        return self.trim_offsets, True


# ---------------------------------------------------------------------- SentencePiece family
class LlamaTokenizer(SentencePieceTokenizer):
    """Llama-1/2: SentencePiece BPE, `<s>` before each text, left padding."""

    padding_side = "left"
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, vocab_file=None, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token=None,
                 add_bos_token=True, add_eos_token=False, legacy=None, add_prefix_space=None, **kwargs):
        super().__init__(vocab_file, unk_token=unk_token, bos_token=bos_token, eos_token=eos_token,
                         pad_token=pad_token, add_bos_token=add_bos_token, add_eos_token=add_eos_token,
                         legacy=legacy, add_prefix_space=add_prefix_space, **kwargs)


class LlamaTokenizerFast(PreTrainedTokenizerFast):
    vocab_files_names = {"vocab_file": "tokenizer.model", "tokenizer_file": "tokenizer.json"}
    padding_side = "left"
    model_input_names = ["input_ids", "attention_mask"]
    slow_tokenizer_class = LlamaTokenizer

    def __init__(self, vocab_file=None, tokenizer_file=None, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                 pad_token=None, add_bos_token=True, add_eos_token=False, legacy=None, add_prefix_space=None,
                 **kwargs):
        self._vocab_file = vocab_file
        self.add_bos_token, self.add_eos_token = add_bos_token, add_eos_token
        self.legacy = False if legacy is None else legacy
        self.add_prefix_space = True if add_prefix_space is None else add_prefix_space
        super().__init__(tokenizer_file=tokenizer_file, unk_token=unk_token, bos_token=bos_token,
                         eos_token=eos_token, pad_token=pad_token, add_bos_token=add_bos_token,
                         add_eos_token=add_eos_token, legacy=legacy, add_prefix_space=add_prefix_space, **kwargs)
        self.update_post_processor()

    def _convert_from_files(self, **kw):
        if self._vocab_file is None:
            return None
        spm = convert.SentencePieceModel(self._vocab_file)
        if not spm.is_bpe:
            raise CheckpointError(f"{self._vocab_file} is a Unigram model; LlamaTokenizerFast converts BPE models")
        return convert.llama_tokenizer(spm, self.legacy, self.add_prefix_space, None)

    def update_post_processor(self):
        """`<s>` / `</s>` around each text per add_bos_token / add_eos_token."""
        bos, eos = self.bos_token, self.eos_token
        if (self.add_bos_token and bos is None) or (self.add_eos_token and eos is None):
            raise InputError(f"add_bos_token={self.add_bos_token} / add_eos_token={self.add_eos_token} need "
                             f"bos_token / eos_token, which are {bos!r} / {eos!r}")
        single, pair, specials = [], [], {}
        for type_id, seq, out in ((0, "$A", single), (1, "$B", pair)):
            if self.add_bos_token:
                out.append((bos, type_id))
                specials[bos] = self.bos_token_id
            out.append((seq, type_id))
            if self.add_eos_token:
                out.append((eos, type_id))
                specials[eos] = self.eos_token_id
        self._tokenizer.post_processor = convert.template_processor(single, single + pair, specials)
        self._trunc_state = self._pad_state = None


class T5Tokenizer(SentencePieceTokenizer):
    """T5: SentencePiece Unigram, `</s>` after each text, sentinel `<extra_id_N>` tokens."""

    model_input_names = ["input_ids", "attention_mask"]
    vocab_files_names = {"vocab_file": "spiece.model"}

    def __init__(self, vocab_file=None, eos_token="</s>", unk_token="<unk>", pad_token="<pad>", extra_ids=100,
                 additional_special_tokens=None, **kwargs):
        kwargs.setdefault("legacy", True)
        kwargs.setdefault("add_bos_token", False)
        kwargs.setdefault("add_eos_token", True)
        super().__init__(vocab_file, eos_token=eos_token, unk_token=unk_token, pad_token=pad_token,
                         extra_ids=extra_ids,
                         additional_special_tokens=_t5_extra(additional_special_tokens, extra_ids), **kwargs)


def _t5_extra(tokens, extra_ids):
    tokens = list(tokens or [])
    if not any("<extra_id_" in str(t) for t in tokens):
        tokens += [f"<extra_id_{i}>" for i in range(extra_ids)]
    return tokens


class T5TokenizerFast(PreTrainedTokenizerFast):
    vocab_files_names = {"vocab_file": "spiece.model", "tokenizer_file": "tokenizer.json"}
    model_input_names = ["input_ids", "attention_mask"]
    slow_tokenizer_class = T5Tokenizer

    def __init__(self, vocab_file=None, tokenizer_file=None, eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                 extra_ids=100, additional_special_tokens=None, **kwargs):
        self._vocab_file = vocab_file
        super().__init__(tokenizer_file=tokenizer_file, eos_token=eos_token, unk_token=unk_token,
                         pad_token=pad_token, extra_ids=extra_ids,
                         additional_special_tokens=_t5_extra(additional_special_tokens, extra_ids), **kwargs)

    def _convert_from_files(self, **kw):
        if self._vocab_file is None:
            return None
        spm = convert.SentencePieceModel(self._vocab_file)
        eos = str(kw["eos_token"])
        template = convert.template_processor([("$A", 0), (eos, 0)], [("$A", 0), (eos, 0), ("$B", 0), (eos, 0)],
                                              {eos: spm.vocab()[eos]})
        return convert.unigram_tokenizer(spm, template)


class XLMRobertaTokenizerFast(PreTrainedTokenizerFast):
    """XLM-R over its tokenizer.json (conversion from sentencepiece.bpe.model is not implemented)."""

    vocab_files_names = {"tokenizer_file": "tokenizer.json"}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, tokenizer_file=None, **kwargs):
        for key, value in _ROBERTA_DEFAULTS.items():
            kwargs.setdefault(key, value)
        super().__init__(tokenizer_file=tokenizer_file, **kwargs)


_DEBERTA_SPECIALS = dict(bos_token="[CLS]", eos_token="[SEP]", unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
                         cls_token="[CLS]", mask_token="[MASK]")


class DebertaV2Tokenizer(SentencePieceTokenizer):
    """DeBERTa-v2/v3: SentencePiece Unigram (spm.model); `[CLS] A [SEP]`, pairs `[CLS] A [SEP] B [SEP]` with
    token type 1 for the second text."""

    vocab_files_names = {"vocab_file": "spm.model"}
    model_input_names = ["input_ids", "token_type_ids", "attention_mask"]

    def __init__(self, vocab_file=None, do_lower_case=False, split_by_punct=False, **kwargs):
        if do_lower_case or split_by_punct:
            raise UnsupportedOptionError("DebertaV2Tokenizer (SentencePiece backend): do_lower_case / split_by_punct "
                                         "are implemented by DebertaV2TokenizerFast only")
        for key, value in _DEBERTA_SPECIALS.items():
            kwargs.setdefault(key, value)
        super().__init__(vocab_file, **kwargs)

    def _template(self) -> Template:
        cls_, sep = ("special", (self.cls_token, self.cls_token_id)), ("special", (self.sep_token, self.sep_token_id))
        single = [(*cls_, 0), ("seq", 0, 0), (*sep, 0)]
        return Template(single, single + [("seq", 1, 1), (*sep, 1)])


class DebertaV2TokenizerFast(PreTrainedTokenizerFast):
    vocab_files_names = {"vocab_file": "spm.model", "tokenizer_file": "tokenizer.json"}
    model_input_names = ["input_ids", "token_type_ids", "attention_mask"]
    slow_tokenizer_class = DebertaV2Tokenizer

    def __init__(self, vocab_file=None, tokenizer_file=None, do_lower_case=False, split_by_punct=False, **kwargs):
        self._vocab_file = vocab_file
        for key, value in _DEBERTA_SPECIALS.items():
            kwargs.setdefault(key, value)
        super().__init__(tokenizer_file=tokenizer_file, do_lower_case=do_lower_case, split_by_punct=split_by_punct,
                         **kwargs)

    def _convert_from_files(self, **kw):
        if self._vocab_file is None:
            return None
        spm = convert.SentencePieceModel(self._vocab_file)
        vocab = spm.vocab()
        cls_, sep = str(kw["cls_token"]), str(kw["sep_token"])
        template = convert.template_processor([(cls_, 0), ("$A", 0), (sep, 0)],
                                              [(cls_, 0), ("$A", 0), (sep, 0), ("$B", 1), (sep, 1)],
                                              {cls_: vocab[cls_], sep: vocab[sep]})
        return convert.deberta_v2_tokenizer(spm, template, kw["do_lower_case"], kw["split_by_punct"])


class MPNetTokenizerFast(PreTrainedTokenizerFast):
    """MPNet (all-mpnet-base-v2) over its tokenizer.json; the model takes no token types."""

    vocab_files_names = {"tokenizer_file": "tokenizer.json"}
    model_input_names = ["input_ids", "attention_mask"]


class BartTokenizer(RobertaTokenizer):
    """BART's tokenizer is RoBERTa's (the same byte-level BPE, special tokens and templates)."""


class BartTokenizerFast(RobertaTokenizerFast):
    slow_tokenizer_class = BartTokenizer


class CLIPTokenizerFast(PreTrainedTokenizerFast):
    """CLIP's text tokenizer (vocab.json + merges.txt, or tokenizer.json): lower-cased BPE with `</w>` word ends."""

    vocab_files_names = {"vocab_file": "vocab.json", "merges_file": "merges.txt", "tokenizer_file": "tokenizer.json"}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, vocab_file=None, merges_file=None, tokenizer_file=None, unk_token="<|endoftext|>",
                 bos_token="<|startoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>", **kwargs):
        self._files = (vocab_file, merges_file)
        super().__init__(tokenizer_file=tokenizer_file, unk_token=unk_token, bos_token=bos_token,
                         eos_token=eos_token, pad_token=pad_token, **kwargs)

    def _decode(self, ids, skip_special_tokens: bool) -> str:
        # a word's `</w>` ending is a space; the text is stripped (as Transformers, after the ByteLevel decoder)
        suffix = getattr(self._tokenizer.model, "end_of_word_suffix", None) or "</w>"
        return super()._decode(ids, skip_special_tokens).replace(suffix, " ").strip()

    def _convert_from_files(self, **kw):
        if self._files == (None, None):
            return None
        vocab, merges = convert.read_bpe_files(*self._files)
        return convert.clip_tokenizer(vocab, merges, kw["unk_token"], kw["bos_token"], kw["eos_token"])


class CLIPTokenizer(CLIPTokenizerFast):
    """Transformers 5 has one CLIP tokenizer, over the `tokenizers` library; so do we (use_fast=False too)."""


CLASSES = {cls.__name__: cls for cls in (
    BertTokenizer, BertTokenizerFast, DistilBertTokenizer, DistilBertTokenizerFast, GPT2Tokenizer, GPT2TokenizerFast,
    RobertaTokenizer, RobertaTokenizerFast, BartTokenizer, BartTokenizerFast, LlamaTokenizer, LlamaTokenizerFast, T5Tokenizer, T5TokenizerFast,
    XLMRobertaTokenizerFast, DebertaV2Tokenizer, DebertaV2TokenizerFast, MPNetTokenizerFast, CLIPTokenizer,
    CLIPTokenizerFast, PreTrainedTokenizerFast,
)}
