"""Trainer.push_to_hub and hub_strategy against a hub served on 127.0.0.1 and driven by huggingface_hub's
own client: what lands in the repo, the commits, and a model that loads back from the hub."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load

import pretrained
from hub_server import LocalHub
from pretrained.errors import CheckpointError, InputError
from pretrained.training import TrainingArguments
from pretrained.training.trainer import Trainer

from test_trainer import BERT, COMMON, classification_data

TOKEN = "hf_push_token"


@pytest.fixture
def hub(monkeypatch, tmp_path):
    from huggingface_hub import constants

    with LocalHub(token=TOKEN) as server:
        # what HF_ENDPOINT=server.url would give had it been set before huggingface_hub was imported
        monkeypatch.setattr(constants, "ENDPOINT", server.url)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            server.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
        yield server


def trainer_for(tmp_path, **overrides):
    settings = dict(COMMON, num_train_epochs=1, save_strategy="steps", save_steps=2, save_total_limit=1,
                    push_to_hub=True, hub_model_id="org/tiny-cls", hub_token=TOKEN)
    args = TrainingArguments(output_dir=str(tmp_path / "run"), **{**settings, **overrides})
    model = pretrained.BertForSequenceClassification(pretrained.BertConfig(**BERT))
    return Trainer(model=model, args=args, train_dataset=classification_data(n=16))


def test_checkpoints_and_the_final_model_reach_the_repo(hub, tmp_path):
    trainer = trainer_for(tmp_path, hub_strategy="checkpoint", hub_private_repo=True)
    assert "org/tiny-cls" in hub.repos and hub.private["org/tiny-cls"] is True  # created before training
    trainer.train()  # 4 steps, checkpoints at 2 and 4, only the last kept on disk
    files = hub.files("org/tiny-cls")
    assert {"config.json", "model.safetensors", "training_args.json"} <= set(files)
    assert not {"optimizer.pt", "trainer_state.json", "rng_state.safetensors"} & set(files)  # root: the model only
    assert {"last-checkpoint/optimizer.pt", "last-checkpoint/trainer_state.json",
            "last-checkpoint/model.safetensors"} <= set(files)
    assert not any(p.startswith("checkpoint-") for p in files)
    summaries = [s for repo, _, s in hub.commits if repo == "org/tiny-cls"]
    assert "Training in progress, step 2" in summaries or "Training in progress, step 4" in summaries
    assert not list((tmp_path / "run").glob(".push-*"))  # upload snapshots are cleaned up

    trainer.push_to_hub(license="apache-2.0")
    assert hub.commits[-1][2] == "End of training"
    assert b"license: apache-2.0" in hub.files("org/tiny-cls")["README.md"]  # the model card went with it
    files = hub.files("org/tiny-cls")
    final = trainer.model.state_dict()
    pushed = load(files["model.safetensors"])
    for key, tensor in pushed.items():
        torch.testing.assert_close(tensor, final[key], atol=0, rtol=0)
    assert "trainer_log.jsonl" not in files and not any(p.startswith(".") for p in files)

    # the pushed model loads back through the hub client
    reloaded = pretrained.AutoModelForSequenceClassification.from_pretrained("org/tiny-cls", token=TOKEN)
    for key, tensor in reloaded.state_dict().items():
        torch.testing.assert_close(tensor, final[key], atol=0, rtol=0)


def test_all_checkpoints_and_end_strategies(hub, tmp_path):
    trainer = trainer_for(tmp_path / "a", hub_strategy="all_checkpoints", hub_always_push=True, save_total_limit=None)
    trainer.train()
    files = hub.files("org/tiny-cls")
    assert {"checkpoint-2/optimizer.pt", "checkpoint-4/optimizer.pt", "model.safetensors"} <= set(files)

    before = len(hub.commits)
    trainer = trainer_for(tmp_path / "b", hub_strategy="end", hub_model_id="org/at-end")
    trainer.train()
    assert len(hub.commits) == before and hub.files("org/at-end") == {}  # nothing until asked
    trainer.save_model()  # with push_to_hub set, saving the model pushes it
    assert hub.commits[-1] == ("org/at-end", "main", "Model save")
    assert "model.safetensors" in hub.files("org/at-end")


def test_refusals_name_the_cause(hub, tmp_path, monkeypatch):
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError

    with pytest.raises(HfHubHTTPError, match="401"):
        trainer_for(tmp_path, hub_token="hf_wrong")  # before any training
    trainer = trainer_for(tmp_path)
    with pytest.raises(InputError, match="licence"):
        trainer.push_to_hub(licence="mit")  # a misspelt model card field
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointError, match="HF_HUB_OFFLINE"):
        trainer_for(tmp_path)
