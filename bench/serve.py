"""Load test: `pretrained serve` vs `transformers serve --continuous-batching` on the same checkpoint.

Both servers get the same float32 folder (by default SmolLM2-135M-Instruct dequantized from the embedded
GGUF; `--gpt2` adds a random GPT-2-small-shaped checkpoint with SmolLM2's tokenizer, completions only).
For each number of concurrent clients, every client streams one chat completion (a ~64-token prompt,
`--new-tokens` greedy tokens) through its own connection. Reported: output tokens/s over the wall time,
p50/p99 time to first token and inter-token latency (gaps between streamed chunks), and the server's peak
RSS (VmHWM). The 1-client row is serving the clients one at a time.

    python bench/serve.py [--clients 1,8,32] [--new-tokens 128] [--servers pretrained,transformers] [--threads 1]
                          [--pretrained-args "--kv-cache padded --max-num-batched-tokens 48"]

Small settings first (a minute or two): `--clients 1,8 --new-tokens 32 --servers pretrained`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

PROMPT = ("Write a long story about a lighthouse keeper who finds a message in a bottle on a stormy night. "
          "Describe the sea, the weather, the keeper's memories and what the message says, in detail. Story {i}:")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def smollm2_folder(root: str) -> str:
    """The embedded GGUF, dequantized and saved as safetensors + tokenizer (what both servers can load)."""
    from pretrained import AutoModelForCausalLM, AutoTokenizer
    from pretrained.chat import embedded_chat_model

    folder = os.path.join(root, "SmolLM2-135M-Instruct")
    path = embedded_chat_model()
    AutoTokenizer.from_pretrained(path).save_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(path)
    model.generation_config.do_sample = False
    model.save_pretrained(folder)
    return folder


def gpt2_folder(root: str, tokenizer_folder: str) -> str:
    import torch

    from pretrained import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    folder = os.path.join(root, "gpt2-small-random")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=1024, bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def start(server: str, folder: str, port: int, max_batch: int, threads: int, extra: list[str]) -> subprocess.Popen:
    if server == "pretrained":
        command = [sys.executable, "-m", "pretrained.cli", "serve", "--model", folder, "--embedding-model", "none",
                   "--port", str(port), "--max-batch-size", str(max_batch), "--max-queue", "256", *extra]
    else:
        command = ["transformers", "serve", folder, "--continuous-batching", "--port", str(port), "--host", "127.0.0.1",
                   "--device", "cpu"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_ready(port: int, process: subprocess.Popen, path: str, timeout: float = 300) -> None:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the server did not start")


async def one_client(http, url: str, model: str, i: int, new_tokens: int, chat: bool) -> dict:
    """Stream one completion; the chunk arrival times give TTFT and inter-token gaps."""
    body = {"model": model, "max_tokens": new_tokens, "temperature": 0, "stream": True}
    if chat:
        body["messages"] = [{"role": "user", "content": PROMPT.format(i=i)}]
    else:
        body["prompt"] = PROMPT.format(i=i)
    start, times, text = time.perf_counter(), [], []
    async with http.stream("POST", url + ("/chat/completions" if chat else "/completions"), json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choices = json.loads(line[6:]).get("choices") or [{}]
            piece = (choices[0].get("delta") or {}).get("content") if chat else choices[0].get("text")
            if piece:
                times.append(time.perf_counter())
                text.append(piece)
    return {"ttft": times[0] - start if times else None, "gaps": [b - a for a, b in zip(times, times[1:])],
            "text": "".join(text)}


async def load(port: int, model: str, clients: int, new_tokens: int, chat: bool) -> tuple[list[dict], float]:
    import httpx

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(timeout=None, limits=limits) as http:
        start = time.perf_counter()
        results = await asyncio.gather(*(one_client(http, f"http://127.0.0.1:{port}/v1", model, i, new_tokens, chat)
                                         for i in range(clients)))
        return results, time.perf_counter() - start


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--servers", default="pretrained,transformers")
    parser.add_argument("--gpt2", action="store_true", help="also a GPT-2-small-shaped random checkpoint")
    parser.add_argument("--threads", type=int, default=1,
                        help="OMP_NUM_THREADS of both servers (0: their default); on a shared machine 1 avoids "
                             "intra-op threads waiting on each other")
    parser.add_argument("--pretrained-args", default="",
                        help="more `pretrained serve` flags, e.g. '--kv-cache padded --max-num-batched-tokens 64'")
    args = parser.parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    from pretrained import AutoTokenizer

    with tempfile.TemporaryDirectory() as root:
        folders = [("SmolLM2-135M", smollm2_folder(root), True)]
        if args.gpt2:
            folders.append(("GPT-2-small shape", gpt2_folder(root, folders[0][1]), False))
        tokenizer = AutoTokenizer.from_pretrained(folders[0][1])
        rows = []
        for label, folder, chat in folders:
            for server in args.servers.split(","):
                port = free_port()
                process = start(server, folder, port, max(counts), args.threads, args.pretrained_args.split())
                try:
                    # transformers serve loads before it listens (its /v1/models scans the hub cache: a 500 offline)
                    wait_ready(port, process, "/ready" if server == "pretrained" else "/health")
                    asyncio.run(load(port, folder, 1, 4, chat))  # warm-up
                    for clients in counts:
                        results, wall = asyncio.run(load(port, folder, clients, args.new_tokens, chat))
                        tokens = sum(len(tokenizer.encode(r["text"], add_special_tokens=False)) for r in results)
                        ttfts = [r["ttft"] for r in results if r["ttft"] is not None]
                        gaps = [g for r in results for g in r["gaps"]]
                        rows.append({"model": label, "server": server, "clients": clients,
                                     "tokens_per_s": tokens / wall, "ttft_p50": percentile(ttfts, 0.5),
                                     "ttft_p99": percentile(ttfts, 0.99), "itl_p50": percentile(gaps, 0.5),
                                     "itl_p99": percentile(gaps, 0.99), "tokens": tokens, "wall_s": wall})
                        print(json.dumps(rows[-1]), flush=True)
                    rss = peak_rss_mb(process.pid)
                    for row in rows:
                        if row["server"] == server and row["model"] == label:
                            row["peak_rss_mb"] = rss
                finally:
                    process.terminate()
                    process.wait(timeout=60)
    print(f"\n{'model':18} {'server':12} {'clients':>7} {'tok/s':>8} {'TTFT p50':>9} {'p99':>7} {'ITL p50':>8} "
          f"{'p99':>7} {'peak RSS':>9}")
    for r in rows:
        print(f"{r['model']:18} {r['server']:12} {r['clients']:>7} {r['tokens_per_s']:>8.1f} {r['ttft_p50']:>8.2f}s "
              f"{r['ttft_p99']:>6.2f}s {1000 * r['itl_p50']:>6.0f}ms {1000 * r['itl_p99']:>5.0f}ms "
              f"{r.get('peak_rss_mb', float('nan')):>7.0f}MB")
    solo = {(r["model"], r["server"]): r["tokens_per_s"] for r in rows if r["clients"] == 1}
    for r in rows:
        if r["clients"] > 1 and r["server"] == "pretrained":
            other = next((o for o in rows if o["model"] == r["model"] and o["clients"] == r["clients"]
                          and o["server"] == "transformers"), None)
            ratios = [f"{r['tokens_per_s'] / other['tokens_per_s']:.2f}x transformers serve"] if other else []
            if (r["model"], "pretrained") in solo:  # without a 1-client row there is no one-at-a-time figure
                ratios.insert(0, f"{r['tokens_per_s'] / solo[(r['model'], 'pretrained')]:.2f}x one at a time")
            print(f"{r['model']} pretrained at {r['clients']} clients: {', '.join(ratios) or 'no reference row'}")


if __name__ == "__main__":
    main()
