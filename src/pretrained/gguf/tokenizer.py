"""A `tokenizers.Tokenizer` from GGUF metadata (`tokenizer.ggml.*`), built to give the ids
llama.cpp gives: the model was trained (and converted) with these.

- `gpt2`: byte-level BPE; the pre-tokenizer follows `tokenizer.ggml.pre` as llama.cpp does:
  a sequence of regex splits applied one after another, then the byte-level mapping.
- `gemma4`: BPE with ranked merges over raw UTF-8 after spaces become '▁' (no byte-level map).
- `llama`: SentencePiece-style BPE over '▁'-spaced pieces, ranked by score, with byte fallback.
- `bert`: WordPiece; llama.cpp stores word starts with a '▁' prefix instead of '##' continuations,
  and lower-cases (and strips accents) unless `tokenizer.ggml.normalizer.*` say otherwise.
- `t5`: SentencePiece Unigram with the model's precompiled normaliser (T5, XLM-R style vocabularies).

Special tokens come from token types (control -> special) and the bos/eos/unk/pad/sep/cls ids;
`add_bos_token`/`add_eos_token` follow the metadata, else llama.cpp's default for the model.
"""

from __future__ import annotations

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

from ..tokenization import convert
from .reader import GGUFError, GGUFFile

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

_CONTRACTIONS = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_LLAMA3 = (_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
           r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2 = (_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
          r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# Qwen3.5: combining marks stay with their letters
_QWEN35 = (_CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}"
           r"| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# GPT-4o / Tekken: a word is an optional capitalised run then lower-case letters (camelCase splits)
_UPPER, _LOWER = r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]", r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]"
_GPT4O = (rf"[^\r\n\p{{L}}\p{{N}}]?{_UPPER}*{_LOWER}+{_CONTRACTIONS}?|[^\r\n\p{{L}}\p{{N}}]?{_UPPER}+{_LOWER}*"
          rf"{_CONTRACTIONS}?|\p{{N}}{{1,3}}| ?[^\s\p{{L}}\p{{N}}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_TEKKEN = (rf"[^\r\n\p{{L}}\p{{N}}]?{_UPPER}*{_LOWER}+|[^\r\n\p{{L}}\p{{N}}]?{_UPPER}+{_LOWER}*|\p{{N}}"
           r"| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# DeepSeek-LLM's letters: Latin, Greek, Cyrillic, Armenian, Georgian, Cherokee and a few more cased scripts
# (written as in llama-vocab.cpp; \u escapes for the characters that Unicode normalisation would change)
_DEEPSEEK_LETTERS = ("A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-"
                     "ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\u1f7dᾀ-ᾴᾶ-ᾼ\u1fbeῂ-ῄῆ-ῌ"
                     "ῐ-\u1fd3ῖ-\u1fdbῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\u2126ℨ\u212a-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-"
                     "ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃")
_DEEPSEEK_V3 = (r"\p{N}{1,3}", r"[一-龥぀-ゟ゠-ヿ]+",
                r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+"
                r"| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_BLOOM = r" ?[^(\s|.,!?…。，、।۔،)]+"
# tokenizer.ggml.pre -> the regexes llama.cpp splits with, one after another (llama-vocab.cpp, llm_tokenizer_bpe)
PRE_TOKENIZERS: dict[str, tuple[str, ...]] = {}
for _names, _regexes in (
    # llama.cpp's fallback when a file names no pre-tokenizer
    (("default",), (r"[\p{P}\$\+<=>\^~\|]+", _GPT2, r"\p{N}+", r"[0-9][0-9][0-9]")),
    (("gpt2", "gpt-2", "mpt", "olmo", "jais", "phi-2", "roberta-bpe", "trillion", "jina-es", "jina-de",
      "jina-v1-en", "jina-v2-es", "jina-v2-de", "jina-v2-code", "gigachat", "a.x-4.0", "mellum", "modern-bert",
      "exaone4", "granite-docling"), (_GPT2,)),
    (("starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"), (r"\p{N}", _GPT2)),
    (("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano",
      "dbrx", "smaug-bpe", "chatglm-bpe", "glm4", "glm5"), (_LLAMA3,)),
    (("qwen2", "stablelm2", "deepseek-r1-qwen", "megrez", "kormo", "f2llmv2", "hunyuan", "grok-2"), (_QWEN2,)),
    (("qwen35",), (_QWEN35,)),
    (("gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"), (_GPT4O,)),
    (("tekken",), (_TEKKEN,)),
    (("deepseek-coder",), (r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", r"[一-龥ࠀ-一가-퟿]+", r"\p{N}")),
    (("deepseek-llm",), (r"[\r\n]", rf"\s?[{_DEEPSEEK_LETTERS}]+", r"\s?[!-/:-~！-／：-～‘-‟　-。]+", r"\s+$",
                         r"[一-龥ࠀ-一가-퟿]+", r"\p{N}+")),
    (("deepseek-v3", "hunyuan-dense", "joyai-llm", "hy_v4"), _DEEPSEEK_V3),
    (("falcon",), (r"[\p{P}\$\+<=>\^~\|`]+", _GPT2, r"[0-9][0-9][0-9]")),
    (("bloom", "poro-chat", "gpt3-finnish"), (_BLOOM,)),
    (("viking",), (_BLOOM, r"\p{N}")),
):
    for _name in _names:
        PRE_TOKENIZERS[_name] = _regexes

# llama.cpp looks a whole pre-token up in the vocabulary before merging for these (Llama 3)
_IGNORE_MERGES = ("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
                  "jina-v5-nano", "glm4", "glm5", "tekken")


def build_tokenizer(gguf: GGUFFile) -> tuple[Tokenizer, dict]:
    """(tokenizer, tokenizer_config kwargs: special tokens, add_bos/eos, chat template)."""
    kind = gguf.get("tokenizer.ggml.model")
    if kind is None:
        raise GGUFError(f"{gguf.path}: metadata field 'tokenizer.ggml.model' is missing: the file has no tokenizer")
    tokens = gguf.require("tokenizer.ggml.tokens")
    types = gguf.array("tokenizer.ggml.token_type").tolist() if gguf.has("tokenizer.ggml.token_type") \
        else [NORMAL] * len(tokens)
    if kind == "gpt2":
        tok = _byte_level_bpe(gguf, tokens)
        add_bos_default, add_eos_default = False, False
    elif kind == "gemma4":
        tok = _spm_style_bpe(gguf, tokens, types)
        add_bos_default, add_eos_default = True, False
    elif kind == "llama":
        tok = _sentencepiece_bpe(gguf, tokens, types)
        add_bos_default, add_eos_default = True, False
    elif kind == "bert":
        tok = _wordpiece(gguf, tokens)
        add_bos_default, add_eos_default = True, True
    elif kind == "t5":
        tok = _unigram(gguf, tokens, types)
        add_bos_default, add_eos_default = False, True
    else:
        raise GGUFError(f"{gguf.path}: tokenizer.ggml.model {kind!r} is not supported "
                        f"(supported: gpt2, gemma4, llama, bert, t5)")

    specials = [AddedToken(t, special=True, normalized=False) for t, k in zip(tokens, types) if k == CONTROL]
    tok.add_special_tokens(specials)
    user = [AddedToken(t, special=False, normalized=False) for t, k in zip(tokens, types) if k == USER_DEFINED]
    if user:
        tok.add_tokens(user)

    kwargs: dict = {}
    for attr, key in (("bos_token", "bos"), ("eos_token", "eos"), ("unk_token", "unknown"), ("pad_token", "padding"),
                      ("sep_token", "seperator"), ("cls_token", "cls"), ("mask_token", "mask")):
        index = gguf.get(f"tokenizer.ggml.{key}_token_id")
        if index is not None and 0 <= int(index) < len(tokens):
            kwargs[attr] = tokens[int(index)]
            tok.add_special_tokens([AddedToken(tokens[int(index)], special=True, normalized=False)])
    # llama.cpp always adds Gemma 4's <bos>, whatever the file says
    add_bos = kind == "gemma4" or bool(gguf.get("tokenizer.ggml.add_bos_token", add_bos_default))
    add_eos = bool(gguf.get("tokenizer.ggml.add_eos_token", add_eos_default))
    first = kwargs.get("cls_token", kwargs.get("bos_token")) if kind == "bert" else kwargs.get("bos_token")
    last = kwargs.get("sep_token", kwargs.get("eos_token")) if kind == "bert" else kwargs.get("eos_token")
    before = [first] if add_bos and first is not None else []
    after = [last] if add_eos and last is not None else []
    if before or after:
        single = [[t, 0] for t in before] + [["$A", 0]] + [[t, 0] for t in after]
        # a pair repeats the template for B (Llama: <s> A <s> B); BERT's B gets no second [CLS]
        second = ([] if kind == "bert" else [[t, 1] for t in before]) + [["$B", 1]] + [[t, 1] for t in after]
        tok.post_processor = convert.template_processor(single, single + second,
                                                        {t: tok.token_to_id(t) for t in before + after})
    kwargs["add_bos_token"], kwargs["add_eos_token"] = add_bos, add_eos
    template = gguf.get("tokenizer.chat_template")
    if template is not None:
        kwargs["chat_template"] = template
    context = gguf.get(f"{gguf.get('general.architecture')}.context_length")
    if context:
        kwargs["model_max_length"] = int(context)
    if kind == "bert":
        kwargs["clean_up_tokenization_spaces"] = True
    else:  # decoders take no token_type_ids
        kwargs["model_input_names"] = ["input_ids", "attention_mask"]
    return tok, kwargs


def _byte_level_bpe(gguf: GGUFFile, tokens: list[str]) -> Tokenizer:
    pre = gguf.get("tokenizer.ggml.pre", "default")
    merges = _merges(gguf)
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab, merges, dropout=None, continuing_subword_prefix="", end_of_word_suffix="",
                               fuse_unk=False, ignore_merges=pre in _IGNORE_MERGES))
    if pre not in PRE_TOKENIZERS:
        raise GGUFError(f"{gguf.path}: tokenizer.ggml.pre {pre!r} is not a known pre-tokenizer "
                        f"(known: {', '.join(sorted(PRE_TOKENIZERS))})")
    splits = [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in PRE_TOKENIZERS[pre]]
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        splits + [pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    return tok


def _merges(gguf: GGUFFile) -> list[tuple[str, str]]:
    # llama.cpp cuts "left right" at the first space after the first character: a piece may start with ' '
    out = []
    for merge in gguf.require("tokenizer.ggml.merges"):
        cut = merge.find(" ", 1)
        if cut < 0:
            raise GGUFError(f"{gguf.path}: tokenizer.ggml.merges entry {merge!r} is not two pieces separated by a space")
        out.append((merge[:cut], merge[cut + 1:]))
    return out


def _spm_style_bpe(gguf: GGUFFile, tokens: list[str], types: list[int]) -> Tokenizer:
    """Gemma 4: ranked merges over raw UTF-8 (no byte-level map) after spaces become '▁'; only newline
    runs are split off first; a piece that is not in the vocabulary falls back to <0xXX> byte tokens."""
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab, _merges(gguf), dropout=None, fuse_unk=False, byte_fallback=BYTE in types))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[^\n]+|[\n]+"), behavior="isolated")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    return tok


def _sentencepiece_bpe(gguf: GGUFFile, tokens: list[str], types: list[int]) -> Tokenizer:
    scores = gguf.array("tokenizer.ggml.scores").tolist() if gguf.has("tokenizer.ggml.scores") else [0.0] * len(tokens)
    pieces = list(zip(tokens, scores, types))
    unk_id = int(gguf.get("tokenizer.ggml.unknown_token_id", 0))
    add_prefix = bool(gguf.get("tokenizer.ggml.add_space_prefix", True))
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab, _score_merges(pieces), unk_token=tokens[unk_id], fuse_unk=True,
                               byte_fallback=BYTE in types, dropout=None))
    tok.normalizer = normalizers.Sequence(
        ([normalizers.Prepend("▁")] if add_prefix else []) + [normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = None
    steps = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if add_prefix:
        steps.append(decoders.Strip(content=" ", left=1))
    tok.decoder = decoders.Sequence(steps)
    return tok


def _score_merges(pieces) -> list[tuple[str, str]]:
    """BPE merges from a scored vocabulary: every split of a piece into two pieces, ranked by the
    merged piece's score (higher first), as SentencePiece's BPE picks the best-scoring pair."""
    vocab = {p: i for i, (p, _, _) in enumerate(pieces)}
    ranked = []
    for piece, score, kind in pieces:
        if kind not in (NORMAL, USER_DEFINED):
            continue
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in vocab and right in vocab:
                ranked.append((-score, vocab[left], vocab[right], left, right))
    ranked.sort()
    return [(left, right) for _, _, _, left, right in ranked]


def _wordpiece(gguf: GGUFFile, tokens: list[str]) -> Tokenizer:
    # llama.cpp's vocabulary: '▁word' starts a word, bare pieces continue one, '[CLS]'-style stay as they are
    vocab = {}
    for i, t in enumerate(tokens):
        if t.startswith("▁"):
            piece = t[1:]
        elif t.startswith("[") and t.endswith("]"):
            piece = t
        else:
            piece = "##" + t
        vocab[piece] = i  # llama.cpp's text -> id map keeps the last of equal texts
    unk_id = int(gguf.get("tokenizer.ggml.unknown_token_id", 100))
    # llama.cpp lower-cases unless told otherwise; accents go with lower-casing unless told otherwise
    lowercase = bool(gguf.get("tokenizer.ggml.normalizer.lowercase", True))
    strip_accents = bool(gguf.get("tokenizer.ggml.normalizer.strip_accents", lowercase))
    # llama.cpp has no word-length limit: a word is matched however long it is
    tok = Tokenizer(models.WordPiece(vocab, unk_token=tokens[unk_id] if unk_id < len(tokens) else "[UNK]",
                                     max_input_chars_per_word=1 << 30))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=strip_accents, lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    return tok


def _unigram(gguf: GGUFFile, tokens: list[str], types: list[int]) -> Tokenizer:
    """T5 / XLM-R style SentencePiece Unigram: the model's precompiled normaliser, extra spaces removed,
    '▁' for spaces (and one in front), the best-scoring segmentation (user-defined pieces score 0)."""
    import numpy as np

    scores = gguf.array("tokenizer.ggml.scores").tolist() if gguf.has("tokenizer.ggml.scores") else [0.0] * len(tokens)
    vocab = [(t, 0.0 if k == USER_DEFINED else float(sc)) for t, sc, k in zip(tokens, scores, types)]
    unk_id = int(gguf.get("tokenizer.ggml.unknown_token_id", 2))
    tok = Tokenizer(models.Unigram(vocab, unk_id=unk_id, byte_fallback=BYTE in types))
    steps = []
    if gguf.has("tokenizer.ggml.precompiled_charsmap"):
        charsmap = np.asarray(gguf.array("tokenizer.ggml.precompiled_charsmap"), dtype=np.uint8).tobytes()
        if charsmap:
            steps.append(normalizers.Precompiled(charsmap))
    if bool(gguf.get("tokenizer.ggml.remove_extra_whitespaces", True)):
        steps += [normalizers.Strip(), normalizers.Replace(Regex(" {2,}"), " ")]
    tok.normalizer = normalizers.Sequence(steps)
    prepend = "always" if bool(gguf.get("tokenizer.ggml.add_space_prefix", True)) else "never"
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=prepend, split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme=prepend, split=True)
    return tok
