"""Seq2seq beam search, pretrained vs transformers, side by side on one T5-small-shaped random checkpoint.

    python bench/seq2seq.py [--reps 5] [--new-tokens 64] [--beams 4] [--batch 1 8] [--source-length 32] [--threads 1]

Each library generates the same tokens (checked) with 4 beams and exactly 64 new tokens
(min_new_tokens keeps random weights from ending early); medians of `--reps` timed rounds after one
warm-up, each round timing both libraries. Prints seconds per call and the speed ratio (transformers
time / pretrained time), and the same for pretrained with a static cache and a CompileConfig (generate()
compiles its decoder step; the first call, which compiles, is the warm-up).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

T5_SMALL = dict(vocab_size=32128, d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_heads=8,
                decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)


def median_times(fns: list, reps: int) -> list[float]:
    """Seconds per call of each function after one warm-up each; rounds take them in turn, so a change in
    the machine's load falls on all of them alike."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(reps):
        for fn, spent in zip(fns, times):
            start = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--beams", type=int, default=4)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--source-length", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadiest on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import transformers

    import pretrained

    torch.manual_seed(0)
    theirs = transformers.T5ForConditionalGeneration(transformers.T5Config(**T5_SMALL)).eval()
    with tempfile.TemporaryDirectory() as folder:
        theirs.save_pretrained(folder)
        ours = pretrained.AutoModelForSeq2SeqLM.from_pretrained(folder)

    print(f"T5-small shape, {args.beams} beams, {args.new_tokens} new tokens, source length {args.source_length}, "
          f"torch threads {torch.get_num_threads()}, medians of {args.reps}")
    print(f"{'batch':>5} {'transformers s':>15} {'pretrained s':>13} {'ratio':>6} {'compiled s':>11} {'ratio':>6}")
    for batch in args.batch:
        ids = torch.randint(2, T5_SMALL["vocab_size"], (batch, args.source_length),
                            generator=torch.Generator().manual_seed(batch))
        kwargs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), num_beams=args.beams,
                      max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens)
        with torch.inference_mode():
            a, b = ours.generate(**kwargs), theirs.generate(**kwargs)
            if not torch.equal(a, b):
                raise SystemExit(f"batch {batch}: the two libraries generated different tokens")
            compiled = dict(kwargs, cache_implementation="static", compile_config=pretrained.CompileConfig(dynamic=False))
            if not torch.equal(ours.generate(**compiled), a):
                raise SystemExit(f"batch {batch}: the compiled decoder step generated other tokens")
            t_theirs, t_ours, t_compiled = median_times([lambda: theirs.generate(**kwargs), lambda: ours.generate(**kwargs),
                                                         lambda: ours.generate(**compiled)], args.reps)
        print(f"{batch:>5} {t_theirs:>15.3f} {t_ours:>13.3f} {t_theirs / t_ours:>5.2f}x "
              f"{t_compiled:>11.3f} {t_theirs / t_compiled:>5.2f}x")


if __name__ == "__main__":
    main()
