"""The model card Trainer.save_model / push_to_hub write: YAML metadata the hub reads (parsed back with
huggingface_hub.ModelCard), the evaluation results, and `pretrained scan` showing it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from huggingface_hub import ModelCard

import pretrained
from pretrained.errors import InputError
from pretrained.training import TrainingArguments
from pretrained.training.trainer import Trainer

from test_trainer import BERT, COMMON, classification_data


def accuracy(prediction):
    logits, labels = prediction
    return {"accuracy": float((logits.argmax(-1) == labels).mean())}


@pytest.fixture
def trained(tmp_path):
    model = pretrained.BertForSequenceClassification(pretrained.BertConfig(**BERT))
    model.name_or_path = "org/base-model"  # as if loaded from the hub
    args = TrainingArguments(output_dir=str(tmp_path / "out"), **dict(
        COMMON, eval_strategy="epoch", num_train_epochs=2, logging_strategy="epoch"))
    trainer = Trainer(model=model, args=args, train_dataset=classification_data(n=12),
                      eval_dataset=classification_data(n=6, seed=4), compute_metrics=accuracy)
    trainer.train()
    return trainer


def test_save_model_writes_a_card_the_hub_reads(trained, tmp_path):
    trained._card_fields = {"license": "apache-2.0", "dataset_tags": "vader_movie_reviews", "language": "en"}
    trained.save_model()
    card = ModelCard.load(tmp_path / "out" / "README.md")
    data = card.data.to_dict()
    assert data["library_name"] == "transformers" and data["pipeline_tag"] == "text-classification"
    assert data["base_model"] == "org/base-model" and data["license"] == "apache-2.0"
    assert data["datasets"] == ["vader_movie_reviews"] and "pretrained" in data["tags"]
    last_eval = [e for e in trained.state.log_history if "eval_accuracy" in e][-1]
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results["accuracy"] == pytest.approx(last_eval["eval_accuracy"])
    assert results["loss"] == pytest.approx(last_eval["eval_loss"])
    text = card.text
    assert "fine-tuned version of [org/base-model]" in text and "learning_rate: 0.005" in text
    assert "| Training Loss | Epoch | Step | Validation Loss | Accuracy |" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "Loss" not in line]
    assert [row.split(" | ")[2] for row in rows] == ["3", "6"]  # a row per evaluation (one per epoch)

    report = subprocess.run([sys.executable, "-m", "pretrained.cli", "scan", str(tmp_path / "out"), "--json"],
                            capture_output=True, text=True, check=True)
    assert json.loads(report.stdout)["card"]["base_model"] == "org/base-model"
    shown = subprocess.run([sys.executable, "-m", "pretrained.cli", "scan", str(tmp_path / "out")],
                           capture_output=True, text=True, check=True).stdout
    assert "model card: library_name=transformers, pipeline_tag=text-classification" in shown


def test_model_card_fields_are_checked(trained):
    with pytest.raises(InputError, match="licence"):
        trained.push_to_hub(licence="mit")


def test_a_model_built_from_a_config_has_no_base_model(tmp_path):
    model = pretrained.BertForSequenceClassification(pretrained.BertConfig(**BERT))
    trainer = Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path / "o"), **dict(COMMON, max_steps=1)),
                      train_dataset=classification_data(n=4))
    trainer.train()
    path = trainer.create_model_card()
    data = ModelCard.load(path).data.to_dict()
    assert "base_model" not in data and data["pipeline_tag"] == "text-classification"
    assert "No evaluation" in ModelCard.load(path).text
