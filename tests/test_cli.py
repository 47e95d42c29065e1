"""The `pretrained` command, run as a subprocess (as users run it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}


def run(*args, stdin: str | None = None, timeout: int = 120):
    return subprocess.run([sys.executable, "-m", "pretrained.cli", *args], input=stdin, capture_output=True,
                          text=True, env=ENV, timeout=timeout)


def test_import_is_cheap():
    code = "import sys, pretrained.cli; assert 'torch' not in sys.modules and 'huggingface_hub' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env=ENV)


def test_console_script_is_declared():
    from importlib.metadata import entry_points

    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert scripts.get("pretrained") == "pretrained.cli:main"


def test_sentence_similarity_offline_json(minilm_path):
    proc = run("run", "sentence-similarity", "--json", "Where is the cat?", "The cat sits on the mat.",
               "Stock prices fell sharply.")
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.splitlines()
    record = json.loads(line)
    assert record["input"] == "Where is the cat?"
    ranked = record["output"]
    assert [r["sentence"] for r in ranked] == ["The cat sits on the mat.", "Stock prices fell sharply."]
    assert ranked[0]["score"] > ranked[1]["score"]


def test_feature_extraction_reads_stdin(minilm_path):
    proc = run("run", "feature-extraction", "--json", "--batch-size", "2", stdin="first line\n\nsecond line\nthird\n")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["input"] for r in records] == ["first line", "second line", "third"]
    from pretrained import pipeline

    expected = pipeline("feature-extraction")("second line", pooling="auto", normalize="auto")
    assert len(records[1]["output"]) == 384
    assert max(abs(a - b) for a, b in zip(records[1]["output"], expected)) < 1e-5


def test_readable_output(minilm_path):
    proc = run("run", "sentence-similarity", "--query", "a cat", "a kitten", "a truck")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "> a cat" and lines[1].endswith("a kitten") and lines[2].endswith("a truck")


def test_task_options_and_model_folder(tmp_path, minilm_path):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pipelines"))
    from pipeline_helpers import bert_checkpoint

    path = bert_checkpoint(tmp_path / "cls", minilm_path, "BertForSequenceClassification", labels=["NEG", "POS"])
    proc = run("run", "text-classification", "--model", path, "--json", "-o", "top_k=null", "good", "bad")
    assert proc.returncode == 0, proc.stderr
    outputs = [json.loads(line)["output"] for line in proc.stdout.splitlines()]
    assert len(outputs) == 2 and all(sorted(r["label"] for r in o) == ["NEG", "POS"] for o in outputs)


@pytest.mark.parametrize("args, message", [
    (("run", "text-clasification", "hello"), "Unknown task 'text-clasification'. Did you mean 'text-classification'?"),
    (("run", "feature-extraction", "--model", "/no/such/folder", "hi"), "/no/such/folder"),
    (("run", "text-classification", "hi"), "pretrained download"),
    (("run", "sentence-similarity", "only a query"), "needs a query and candidates"),
    (("scan", "/no/such/folder"), "does not exist"),
])
def test_errors_are_one_line_and_non_zero(args, message):
    proc = run(*args)
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("pretrained: error: "), proc.stderr
    assert message in proc.stderr


def test_env_json():
    proc = run("env", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["packages"]["torch"] and "cpu" in info["devices"] and info["hub"]["offline"] is True
    assert info["hub"]["cache"]


def test_download_offline_fails_cleanly(tmp_path):
    proc = run("download", "org/model", "--cache-dir", str(tmp_path))
    assert proc.returncode != 0 and proc.stderr.startswith("pretrained: error: ") and proc.stderr.count("\n") == 1


def test_scan_reports_formats_and_unsafe_pickles(tmp_path, minilm_path):
    import pickle

    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2, 3), "b": torch.zeros(3, dtype=torch.float16)}, tmp_path / "model.safetensors")
    torch.save({"w": torch.zeros(4)}, tmp_path / "pytorch_model.bin")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump(Evil(), f)
    (tmp_path / "config.json").write_text("{}")
    proc = run("scan", str(tmp_path), "--json")
    report = json.loads(proc.stdout)
    files = {f["name"]: f for f in report["files"]}
    assert files["model.safetensors"]["parameters"] == 9 and files["model.safetensors"]["dtypes"] == ["F16", "F32"]
    assert files["pytorch_model.bin"]["safe"] is True and files["pytorch_model.bin"]["parameters"] == 4
    assert files["evil.pkl"]["safe"] is False and any("system" in g for g in files["evil.pkl"]["globals"])
    assert report["safe"] is False and proc.returncode != 0  # a folder with an unsafe pickle fails the scan
    readable = run("scan", minilm_path)
    assert readable.returncode == 0 and "22,713,728 parameters" in readable.stdout
