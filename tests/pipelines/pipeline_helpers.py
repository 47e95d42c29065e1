"""Helpers for pipeline tests: tiny checkpoint builders and the transformers 4.57.6 oracle."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from checkpoints import tf4_python

TF4_PYTHON = tf4_python()  # transformers 4.57.6: the oracle for pipelines 5.x dropped
BERT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, vocab_size=30522,
            max_position_embeddings=512, type_vocab_size=2)
MINILM_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def bert_checkpoint(folder, minilm_path: str, model_name: str, seed: int = 0, labels=None, scale: float = 1.0) -> str:
    """A random transformers BERT (`model_name`) with MiniLM's tokenizer files beside it."""
    import torch
    import transformers

    kwargs = dict(BERT)
    if labels is not None:
        kwargs.update(id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})
    config = transformers.BertConfig(**kwargs)
    torch.manual_seed(seed)
    model = getattr(transformers, model_name)(config).eval()
    if scale != 1.0:  # sharper random predictions: varied labels and spans instead of near-uniform scores
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.startswith(("classifier", "qa_outputs")):
                    p.mul_(scale)
    model.save_pretrained(folder)
    for name in MINILM_TOKENIZER_FILES:
        shutil.copy(os.path.join(minilm_path, name), folder)
    return str(folder)


def tf4_pipeline(task: str, model: str, calls: list[dict]) -> list:
    """Run transformers 4.57.6's pipeline in its own venv: calls are {"inputs"/"kwargs"}; returns the results."""
    if not os.path.exists(TF4_PYTHON):
        venv = os.path.dirname(os.path.dirname(TF4_PYTHON))
        pytest.skip(f"transformers 4.57.6 venv absent ({TF4_PYTHON}; set PRETRAINED_TF4_VENV): python -m venv {venv} && "
                    f"{venv}/bin/pip install torch==2.13.0 transformers==4.57.6")
    script = r"""
import json, sys
import numpy as np
from transformers import pipeline
spec = json.load(sys.stdin)
pipe = pipeline(spec["task"], model=spec["model"])
def plain(x):
    if isinstance(x, dict): return {k: plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)): return [plain(v) for v in x]
    if isinstance(x, np.generic): return x.item()
    return x
out = []
for call in spec["calls"]:
    args = call.get("args", [])
    out.append(plain(pipe(*args, **call.get("kwargs", {}))))
json.dump(out, sys.stdout)
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([TF4_PYTHON, "-c", script], input=json.dumps({"task": task, "model": model, "calls": calls}),
                          capture_output=True, text=True, env=env, timeout=300)
    if proc.returncode != 0:
        raise AssertionError(f"transformers 4.57.6 failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


def assert_close(ours, theirs, atol=1e-4, path="result"):
    """Equal structure and values; floats within atol (scores), everything else exactly."""
    import numpy as np

    if isinstance(theirs, np.generic):
        theirs = theirs.item()
    if isinstance(ours, np.generic):
        ours = ours.item()
    if isinstance(theirs, dict):
        assert isinstance(ours, dict) and set(ours) == set(theirs), f"{path}: keys {ours!r} != {theirs!r}"
        for k in theirs:
            assert_close(ours[k], theirs[k], atol, f"{path}.{k}")
    elif isinstance(theirs, (list, tuple)):
        assert isinstance(ours, (list, tuple)) and len(ours) == len(theirs), f"{path}: {ours!r} != {theirs!r}"
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_close(a, b, atol, f"{path}[{i}]")
    elif isinstance(theirs, float):
        assert isinstance(ours, (float, int)) and abs(ours - theirs) <= atol, f"{path}: {ours} != {theirs}"
    else:
        assert ours == theirs, f"{path}: {ours!r} != {theirs!r}"


