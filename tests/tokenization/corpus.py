"""A deterministic corpus of >= 1000 varied lines for tokenizer parity tests."""

import random

_WORDS = ("the quick brown fox jumps over lazy dog tokenizer parity offsets window stride padding "
          "don't it's we're they've I'm hello world NASA GPU 2024 3.14 1,000,000 e-mail user@example.com "
          "https://example.org/a?b=c&d=e #hashtag @mention C++ foo_bar snake_case CamelCase").split()
_ACCENTED = "café naïve résumé déjà-vu façade Ångström Straße Ærøskøbing jalapeño coöperate İstanbul ΣΊΣΥΦΟΣ ὀδυσσεύς".split()
_CJK = ["北京欢迎你", "東京タワー", "안녕하세요", "中文分词测试", "日本語のテキスト", "漢字"]
_EMOJI = ["🤗", "👍🏽", "👨‍👩‍👧", "🇫🇷", "❤️", "🚀🚀🚀", "😀"]
_PUNCT = ["...", "!!!", "?!?", "---", "((()))", "«»", "“quoted”", "—", "…", "¿¡", "،", "।"]
_OTHER = ["مرحبا بالعالم", "Привет мир", "γειά σου κόσμε", "שלום", "नमस्ते दुनिया", "ไทย", "e\u0301", "a\u200bb",
          "x\u00a0y", "tab\there", "line\nbreak", "ctrl\x07char", "nul\x00byte", "\ufeffbom", "½ ² ³ ⅷ", "ﬁ ligature"]


def build_corpus(n: int = 1200, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    lines = ["", " ", "   ", "\t", "a", "A", "hello", " leading space", "trailing space ", "double  space",
             "x" * 300, "antidisestablishmentarianism" * 5, "🤗" * 40, "北" * 120]
    pools = [_WORDS] * 6 + [_ACCENTED, _CJK, _EMOJI, _PUNCT, _OTHER]
    while len(lines) < n:
        k = rng.randint(0, 30)
        parts = []
        for _ in range(k):
            pool = rng.choice(pools)
            parts.append(rng.choice(pool))
        sep = rng.choice([" ", " ", " ", "  ", "", "\t", " , "])
        line = sep.join(parts)
        if rng.random() < 0.1:
            line = line.upper()
        if rng.random() < 0.05:
            line = "   " + line + "   "
        lines.append(line)
    return lines
