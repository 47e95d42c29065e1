"""`pretrained train`: fine-tuning from data files with no code, each task end to end through the command,
bad data refused before training with the file, row and column named."""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import subprocess
import sys

import pytest

import pretrained
from checkpoints import hf_checkpoint
from pretrained.cli import main
from pretrained.training.nocode import _spans, confusion_matrix

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def tiny_model(folder, minilm_path, config_name, model_name, chat_template=None, **config):
    """A tiny random model of `model_name` with all-MiniLM-L6-v2's real tokenizer (vocabulary 30522)."""
    hf_checkpoint(folder, config_name, model_name, vocab_size=30522, **config)
    for name in TOKENIZER_FILES:
        if os.path.exists(os.path.join(minilm_path, name)):
            shutil.copy(os.path.join(minilm_path, name), folder)
    if chat_template:
        path = os.path.join(folder, "tokenizer_config.json")
        settings = json.load(open(path))
        settings["chat_template"] = chat_template
        json.dump(settings, open(path, "w"))
    return str(folder)


def write_csv(path, header, rows, delimiter=","):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def run(capsys, *argv):
    code = main(["train", *map(str, argv), "--quiet"])
    return code, capsys.readouterr()


@pytest.mark.slow
def test_text_classification_on_real_movie_reviews(tmp_path, minilm_path):
    spec = __import__("importlib.util").util.spec_from_file_location(
        "finetune_sentiment", os.path.join(ROOT, "examples", "finetune_sentiment.py"))
    example = __import__("importlib.util").util.module_from_spec(spec)
    spec.loader.exec_module(example)
    try:
        sentences = example.load_sentences(os.path.join(ROOT, ".assets", "vader"))
    except subprocess.CalledProcessError:
        pytest.skip("pip could not download the vaderSentiment sdist")
    random.Random(0).shuffle(sentences)
    rows = [(text, "positive" if label else "negative") for text, label in sentences[:700]]
    data = write_csv(tmp_path / "reviews.csv", ["text", "label"], rows[:600])
    valid = write_csv(tmp_path / "valid.tsv", ["review", "sentiment"], rows[600:], delimiter="\t")
    out = tmp_path / "model"
    result = subprocess.run([sys.executable, "-m", "pretrained.cli", "train", "text-classification", "--model",
                             minilm_path, "--data", data, "--valid", valid, "--text-column", "review",
                             "--label-column", "sentiment", "--output", str(out), "--epochs", "2",
                             "--max-length", "48", "--quiet"], capture_output=True, text=True)
    assert result.returncode == 2  # the training file's columns are text/label, not review/sentiment
    assert "reviews.csv: no column 'review'" in result.stderr
    os.rename(valid, tmp_path / "valid_plain.tsv")
    write_csv(tmp_path / "valid.tsv", ["text", "label"], rows[600:], delimiter="\t")
    result = subprocess.run([sys.executable, "-m", "pretrained.cli", "train", "text-classification", "--model",
                             minilm_path, "--data", data, "--valid", valid, "--output", str(out), "--epochs", "2",
                             "--max-length", "48", "--quiet"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "eval_report.json").read_text())
    assert report["train_rows"] == 600 and report["validation_rows"] == 100
    assert report["eval_accuracy"] > 0.65, report  # chance is ~0.5 on these sentences
    assert report["confusion_matrix"]["labels"] == ["negative", "positive"]
    assert sum(map(sum, report["confusion_matrix"]["rows_true_columns_predicted"])) == 100
    assert "confusion matrix" in (out / "eval_report.txt").read_text()
    assert (out / "README.md").exists()
    classifier = pretrained.pipeline("text-classification", model=str(out))
    assert classifier("A wonderful, moving film.")[0]["label"] in ("positive", "negative")


def test_token_classification_from_conll(tmp_path, minilm_path, capsys):
    model = tiny_model(tmp_path / "m", minilm_path, "BertConfig", "BertForTokenClassification", **TINY)
    sentences = ["Alice lives in Paris", "Bob works at Google in London", "Carol visited Berlin",
                 "Dave met Erin in Rome", "Frank moved to Madrid", "Grace flew to Tokyo"]
    tags = {"Alice": "B-PER", "Bob": "B-PER", "Carol": "B-PER", "Dave": "B-PER", "Erin": "B-PER", "Frank": "B-PER",
            "Grace": "B-PER", "Paris": "B-LOC", "London": "B-LOC", "Berlin": "B-LOC", "Rome": "B-LOC",
            "Madrid": "B-LOC", "Tokyo": "B-LOC", "Google": "B-ORG"}
    with open(tmp_path / "train.conll", "w") as f:
        f.write("-DOCSTART- O\n\n")
        for sentence in sentences:
            f.writelines(f"{w} NNP {tags.get(w, 'O')}\n" for w in sentence.split())
            f.write("\n")
    code, out = run(capsys, "token-classification", "--model", model, "--data", tmp_path / "train.conll",
                    "--output", tmp_path / "ner", "--epochs", "1", "--batch-size", "2")
    assert code == 0, out.err
    report = json.loads((tmp_path / "ner" / "eval_report.json").read_text())
    assert report["train_rows"] == 5 and report["validation_rows"] == 1
    assert {"eval_f1", "eval_precision", "eval_recall", "eval_accuracy"} <= set(report)
    loaded = pretrained.AutoModelForTokenClassification.from_pretrained(tmp_path / "ner")
    assert set(loaded.config.id2label.values()) == {"B-LOC", "B-ORG", "B-PER", "O"}


def test_causal_lm_on_chat_messages_and_seq2seq(tmp_path, minilm_path, capsys):
    template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    model = tiny_model(tmp_path / "lm", minilm_path, "LlamaConfig", "LlamaForCausalLM", chat_template=template,
                       num_key_value_heads=2, max_position_embeddings=128, **TINY)
    chats = [{"messages": [{"role": "user", "content": f"what is {a} plus {b}"},
                           {"role": "assistant", "content": f"{a + b}"}]} for a in range(3) for b in range(3)]
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps(c) + "\n" for c in chats))
    code, out = run(capsys, "causal-lm", "--model", model, "--data", tmp_path / "chat.jsonl", "--output",
                    tmp_path / "chat-out", "--epochs", "1", "--max-length", "32")
    assert code == 0, out.err
    report = json.loads((tmp_path / "chat-out" / "eval_report.json").read_text())
    assert report["eval_perplexity"] > 1 and report["validation_rows"] == 1

    t5 = tiny_model(tmp_path / "t5", minilm_path, "T5Config", "T5ForConditionalGeneration", d_model=32, d_kv=8,
                    d_ff=37, num_layers=2, num_heads=4, decoder_start_token_id=0, pad_token_id=0, eos_token_id=102)
    pairs = [(f"translate {w}", w.upper()) for w in "one two three four five six seven eight".split()]
    data = write_csv(tmp_path / "pairs.csv", ["source", "target"], pairs)
    code, out = run(capsys, "seq2seq", "--model", t5, "--data", data, "--output", tmp_path / "s2s", "--epochs", "1")
    assert code == 0, out.err
    assert "perplexity" in out.out and (tmp_path / "s2s" / "model.safetensors").exists()


def test_lora_adapter_and_merged_model(tmp_path, minilm_path, capsys):
    """--lora R: only the adapter (and the head, trained in full) is saved, in PEFT's format; the folder runs in
    pipeline() on its base model, and --merge gives a plain model with the same predictions."""
    import torch

    model = tiny_model(tmp_path / "base", minilm_path, "BertConfig", "BertForSequenceClassification", **TINY)
    words = "good great fine bad awful poor".split()
    rows = [(f"a {w} film number {i}", "pos" if w in ("good", "great", "fine") else "neg")
            for i in range(8) for w in words]
    data = write_csv(tmp_path / "rows.csv", ["text", "label"], rows)
    for merge in (False, True):
        out = tmp_path / ("merged" if merge else "adapter")
        code, result = run(capsys, "text-classification", "--model", model, "--data", data, "--output", out,
                           "--epochs", "1", "--lora", "4", *(["--merge"] if merge else []))
        assert code == 0, result.err
        report = json.loads((out / "eval_report.json").read_text())
        assert report["lora_rank"] == 4 and 0 < report["trainable_parameters"] < report["all_parameters"] / 4
        assert (out / "model.safetensors").exists() == merge
        assert (out / "adapter_model.safetensors").exists() == (not merge)
    adapter = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and adapter["task_type"] == "SEQ_CLS" and adapter["base_model_name_or_path"] == model
    texts = ["a great film", "an awful film"]
    on_the_fly = pretrained.pipeline("text-classification", model=str(tmp_path / "adapter"), top_k=None)
    merged = pretrained.pipeline("text-classification", model=str(tmp_path / "merged"), top_k=None)
    folded = pretrained.pipeline("text-classification", model=on_the_fly.model.merge_and_unload(),
                                 tokenizer=on_the_fly.tokenizer, top_k=None)
    assert {d["label"] for d in merged(texts)[0]} == {"pos", "neg"}
    for a, b in zip(on_the_fly(texts), folded(texts)):  # the adapter applied on the fly or folded into the weights
        assert {d["label"] for d in a} == {"pos", "neg"}
        assert {d["label"]: pytest.approx(d["score"], abs=1e-6) for d in a} == {d["label"]: d["score"] for d in b}
    with torch.no_grad():  # AutoModelFor* on the adapter folder: the base with the adapter applied
        loaded = pretrained.AutoModelForSequenceClassification.from_pretrained(tmp_path / "adapter")
        base = pretrained.AutoModelForSequenceClassification.from_pretrained(model)
        ids = torch.tensor([[101, 2204, 2143, 102]])
        assert not torch.allclose(loaded(input_ids=ids).logits, base(input_ids=ids).logits)


def test_bad_data_is_refused_before_training(tmp_path, minilm_path, capsys):
    model = minilm_path  # never loaded: every case fails while the data is checked
    cases = [
        (["text", "label"], [("good", "pos"), ("bad", "pos")], "one label only ('pos')"),
        (["text", "label"], [("good", "pos"), ("", "neg")], "data.csv: line 3, column 'text': empty text"),
        (["text", "label"], [("good", "pos"), ("bad", "")], "line 3, column 'label': empty label"),
        (["sentence", "label"], [("good", "pos"), ("bad", "neg")], "no column 'text'"),
    ]
    for header, rows, message in cases:
        data = write_csv(tmp_path / "data.csv", header, rows)
        code, out = run(capsys, "text-classification", "--model", model, "--data", data, "--output", tmp_path / "o")
        assert code == 2 and message in out.err, (message, out.err)
    (tmp_path / "data.jsonl").write_text('{"text": "good", "label": 1}\n{"text": "bad", "label": 0.5}\n')
    code, out = run(capsys, "text-classification", "--model", model, "--data", tmp_path / "data.jsonl", "--output",
                    tmp_path / "o")
    assert code == 2 and "line 2, column 'label': a label must be a string or an integer, got float 0.5" in out.err
    (tmp_path / "data.jsonl").write_text('{"text": "good", "label": 1}\nnot json\n')
    code, out = run(capsys, "text-classification", "--model", model, "--data", tmp_path / "data.jsonl", "--output",
                    tmp_path / "o")
    assert code == 2 and "data.jsonl: line 2 is not JSON" in out.err
    (tmp_path / "ragged.csv").write_text("text,label\ngood,pos,extra\n")
    code, out = run(capsys, "text-classification", "--model", model, "--data", tmp_path / "ragged.csv", "--output",
                    tmp_path / "o")
    assert code == 2 and "line 2 has more fields than the header" in out.err
    (tmp_path / "data.xlsx").write_text("")
    code, out = run(capsys, "text-classification", "--model", model, "--data", tmp_path / "data.xlsx", "--output",
                    tmp_path / "o")
    assert code == 2 and "unknown data format" in out.err
    assert not (tmp_path / "o").exists()  # nothing was written


def test_entity_spans_and_confusion_matrix():
    import numpy as np

    assert _spans(["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-ORG"]) == {(0, 2, "PER"), (3, 4, "LOC"),
                                                                        (4, 5, "LOC"), (5, 6, "ORG")}
    matrix = confusion_matrix(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), 3)
    assert matrix.tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
