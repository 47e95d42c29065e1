"""Greedy generation, pretrained vs transformers on the same random weights, side by side.

    python bench/generate.py                 # every case, medians of 5
    python bench/generate.py --cases tiny gpt2-b1 --reps 3
    python bench/generate.py --cases qwen3-0.6b-b1 --layers 4 --new-tokens 16 --reps 1   # a quick check

Each case: a random checkpoint written by transformers, loaded by both libraries, 128 new tokens
from a 32-token prompt (min_new_tokens forces the full length), ms per decode step and the ratio;
timed rounds alternate between the libraries. `*-compiled` cases give both a static cache and a
CompileConfig, so each generate() compiles its decode step (the first call, which compiles, is timed apart).
For batch 1 the memory-bandwidth floors are printed too: weight bytes / the rate a large copy moves
bytes at (the issue's definition), and weight bytes / the rate a large sum() reads them (stricter).
The ~300M Llama cases also report each library's peak resident memory for load + generate, measured
in a fresh process per library (`--peak LIBRARY FOLDER BATCH` is that process).
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

import machine  # bench/machine.py: this script's folder is on sys.path

QWEN3_06B = dict(vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                 num_attention_heads=16, num_key_value_heads=8, head_dim=128, tie_word_embeddings=True,
                 rope_theta=1000000.0, rms_norm_eps=1e-6, bos_token_id=151643, eos_token_id=151645)
MIXTRAL_SMALL = dict(vocab_size=32000, hidden_size=512, intermediate_size=256, num_hidden_layers=8,
                     num_attention_heads=16, num_key_value_heads=4, num_local_experts=8, num_experts_per_tok=2)
CASES = {
    "tiny": ("LlamaConfig", "LlamaForCausalLM", 1, dict(vocab_size=1000, hidden_size=256, intermediate_size=688,
                                                       num_hidden_layers=4, num_attention_heads=4)),
    "tiny-gpt2": ("GPT2Config", "GPT2LMHeadModel", 1, dict(vocab_size=1000, n_embd=256, n_layer=4, n_head=4)),
    # both libraries: static cache and a CompileConfig, so generate() compiles its decode step (Transformers
    # does that on a GPU only, unless told to: its private CompileConfig._compile_all_devices)
    "tiny-compiled": ("LlamaConfig", "LlamaForCausalLM", 1, dict(vocab_size=1000, hidden_size=256,
                                                                intermediate_size=688, num_hidden_layers=4,
                                                                num_attention_heads=4)),
    # pretrained against itself: q/k/v and gate/up fused into one matmul each (pretrained.optimize) or not
    "tiny-fusion": ("LlamaConfig", "LlamaForCausalLM", 1, dict(vocab_size=1000, hidden_size=256, intermediate_size=688,
                                                              num_hidden_layers=4, num_attention_heads=4)),
    "gpt2-b1": ("GPT2Config", "GPT2LMHeadModel", 1, {}),
    "gpt2-b1-compiled": ("GPT2Config", "GPT2LMHeadModel", 1, {}),
    "gpt2-b8": ("GPT2Config", "GPT2LMHeadModel", 8, {}),
    "llama300m-b1": ("LlamaConfig", "LlamaForCausalLM", 1, dict(vocab_size=32000, hidden_size=1024, intermediate_size=2816,
                                                                num_hidden_layers=18, num_attention_heads=16,
                                                                num_key_value_heads=4)),
    "llama300m-b8": ("LlamaConfig", "LlamaForCausalLM", 8, dict(vocab_size=32000, hidden_size=1024, intermediate_size=2816,
                                                                num_hidden_layers=18, num_attention_heads=16,
                                                                num_key_value_heads=4)),
    # Qwen3-0.6B's shape (q/k norms, head_dim 128, tied embeddings; 0.6B parameters, 2.4 GB in float32)
    "qwen3-0.6b-b1": ("Qwen3Config", "Qwen3ForCausalLM", 1, QWEN3_06B),
    "qwen3-0.6b-b8": ("Qwen3Config", "Qwen3ForCausalLM", 8, QWEN3_06B),
    # Mixtral's shape (8 experts, top-2, GQA) with small experts, so routing and expert dispatch dominate
    "mixtral-small-b1": ("MixtralConfig", "MixtralForCausalLM", 1, MIXTRAL_SMALL),
    "mixtral-small-b8": ("MixtralConfig", "MixtralForCausalLM", 8, MIXTRAL_SMALL),
}
PROMPT, NEW = 32, 128


def bandwidths(n_bytes: int = 1 << 30) -> tuple[float, float]:
    """(copy rate, read bandwidth) in bytes/s, best of 5: how many bytes a large tensor copy moves per
    second (the issue's yardstick: "a large copy moves ~16 GB/s"), and how many a large sum() streams
    in. A copy also writes every byte, so reading alone runs up to ~2x faster: per token, a weight-bound
    decode step reads every weight once, and the read bandwidth is the stricter floor."""
    src = torch.ones(n_bytes // 4)
    dst = torch.empty_like(src)
    copies, sums = [], []
    for _ in range(5):
        t = time.perf_counter()
        dst.copy_(src)
        copies.append(time.perf_counter() - t)
        t = time.perf_counter()
        src.sum()
        sums.append(time.perf_counter() - t)
    return n_bytes / min(copies), n_bytes / min(sums)


def timed_generates(models: list, ids, reps: int, extras: list[dict]) -> tuple[list[float], list[float], list[torch.Tensor]]:
    """Warm-up (seconds, compilation included) then ms per step of each model (with its own extra generate
    arguments), medians over `reps` rounds that take the models in turn, so a change in the machine's load
    falls on all of them alike."""
    kwargs = dict(attention_mask=torch.ones_like(ids), max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False,
                  pad_token_id=0)
    warmups, outputs = [], []
    for model, extra in zip(models, extras):
        t = time.perf_counter()
        outputs.append(model.generate(ids, **kwargs, **extra))
        warmups.append(time.perf_counter() - t)
    times = [[] for _ in models]
    for _ in range(reps):
        for model, extra, spent in zip(models, extras, times):
            t = time.perf_counter()
            model.generate(ids, **kwargs, **extra)
            spent.append(time.perf_counter() - t)
    return warmups, [statistics.median(t) / NEW * 1e3 for t in times], outputs


def run_case(name: str, reps: int, copy_rate: float, read_bandwidth: float, layers: int | None = None) -> None:
    import transformers

    import pretrained

    config_name, model_name, batch, kwargs = CASES[name]
    if layers is not None:
        kwargs = dict(kwargs, n_layer=layers) if config_name == "GPT2Config" else dict(kwargs, num_hidden_layers=layers)
    with tempfile.TemporaryDirectory() as folder:
        config = getattr(transformers, config_name)(**kwargs)
        torch.manual_seed(0)
        getattr(transformers, model_name)(config).save_pretrained(folder)
        theirs = getattr(transformers, model_name).from_pretrained(folder).eval()
        ours = pretrained.AutoModelForCausalLM.from_pretrained(folder)
        if name == "tiny-fusion":
            from pretrained.optimize import optimize_for_inference, undo_inference_optimizations

            theirs = optimize_for_inference(undo_inference_optimizations(
                pretrained.AutoModelForCausalLM.from_pretrained(folder)), fuse_projections=False)
        ids = torch.randint(3, config.vocab_size, (batch, PROMPT), generator=torch.Generator().manual_seed(0))
        compiled = name.endswith("compiled")
        extras = [{}, {}]
        if compiled:
            their_config = transformers.CompileConfig(dynamic=False)
            their_config._compile_all_devices = True
            extras = [dict(cache_implementation="static", compile_config=pretrained.CompileConfig(dynamic=False)),
                      dict(cache_implementation="static", compile_config=their_config)]
        warmups, (ours_ms, theirs_ms), (a, b) = timed_generates([ours, theirs], ids, reps, extras)
        same = torch.equal(a, b)
        weight_bytes = sum(p.numel() * p.element_size() for p in {id(p): p for p in ours.parameters()}.values())
        other = "unfused" if name == "tiny-fusion" else "transformers"
        line = (f"{name:14s} batch {batch}: pretrained {ours_ms:7.2f} ms/step  {other} {theirs_ms:7.2f} ms/step  "
                f"speedup x{theirs_ms / ours_ms:4.2f}  tokens identical: {same}")
        if compiled:
            line += f"  | first call (compiles): pretrained {warmups[0]:.1f} s, transformers {warmups[1]:.1f} s"
        if batch == 1:
            floor, strict = weight_bytes / copy_rate * 1e3, weight_bytes / read_bandwidth * 1e3
            line += (f"  | floor at the copy rate {floor:.2f} ms/token -> pretrained at {floor / ours_ms:.0%} of it; "
                     f"at the read bandwidth {strict:.2f} ms -> {strict / ours_ms:.0%}")
        print(line, flush=True)
        del theirs, ours
        if name.startswith("llama300m"):
            ours_mb, theirs_mb = (peak_rss_mb(library, folder, batch) for library in ("pretrained", "transformers"))
            print(f"{'':14s} peak RSS, load + generate in a fresh process: pretrained {ours_mb:.0f} MB  "
                  f"transformers {theirs_mb:.0f} MB  ratio {ours_mb / theirs_mb:.2f}", flush=True)


def peak_rss_mb(library: str, folder: str, batch: int) -> float:
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--peak", library, folder, str(batch)],
                         check=True, capture_output=True, text=True).stdout
    return float(out.split()[-1])


def peak_run(library: str, folder: str, batch: int) -> None:
    """Load `folder` with one library, generate once, print the process's peak RSS in MB."""
    torch.set_grad_enabled(False)
    if library == "pretrained":
        import pretrained
        model = pretrained.AutoModelForCausalLM.from_pretrained(folder)
    else:
        import transformers
        model = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = torch.randint(3, model.config.vocab_size, (batch, PROMPT), generator=torch.Generator().manual_seed(0))
    model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW, min_new_tokens=NEW,
                   do_sample=False, pad_token_id=0)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the (large) benchmark process across exec
    with open("/proc/self/status") as status:
        print(next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024)


def main() -> None:
    global NEW
    if sys.argv[1:2] == ["--peak"]:
        return peak_run(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--layers", type=int, default=None, help="override every case's depth (a quick check)")
    parser.add_argument("--new-tokens", type=int, default=NEW)
    args = parser.parse_args()
    NEW = args.new_tokens
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    torch.set_grad_enabled(False)
    copy_rate, read_bandwidth = bandwidths()
    print(f"{machine.cpu()}, torch {torch.__version__}, {torch.get_num_threads()} threads, a large copy moves {copy_rate / 1e9:.1f} GB/s, "
          f"a large sum() reads {read_bandwidth / 1e9:.1f} GB/s; "
          f"greedy {NEW} new tokens from a {PROMPT}-token prompt, median of {args.reps}")
    for name in args.cases:
        run_case(name, args.reps, copy_rate, read_bandwidth, args.layers)


if __name__ == "__main__":
    main()
