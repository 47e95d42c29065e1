"""An iterable train_dataset (no length): read in its own order, pass after pass until max_steps, with the same
losses as transformers' Trainer on the same stream; resuming skips what was trained; misuse is refused."""

from __future__ import annotations

import pytest
import torch

import pretrained
from checkpoints import hf_checkpoint
from pretrained.errors import ConfigError, InputError
from pretrained.training import TrainingArguments
from pretrained.training.trainer import Trainer

from test_trainer import BERT, COMMON, classification_data, losses


class Stream(torch.utils.data.IterableDataset):
    def __init__(self, rows):
        self.rows, self.epochs = rows, []

    def set_epoch(self, epoch):
        self.epochs.append(epoch)

    def __iter__(self):
        return iter(self.rows)


def test_stream_trains_as_transformers_does_across_passes(tmp_path):
    import transformers

    transformers.logging.set_verbosity_error()
    folder = hf_checkpoint(tmp_path / "m", "BertConfig", "BertForSequenceClassification", **BERT)
    data = classification_data(n=18)  # 5 batches of 4 per pass (the last one of 2): 7 steps cross a pass
    kwargs = dict(COMMON, max_steps=7)
    hf = transformers.Trainer(model=transformers.AutoModelForSequenceClassification.from_pretrained(folder),
                              args=transformers.TrainingArguments(output_dir=str(tmp_path / "hf"), use_cpu=True,
                                                                  **kwargs), train_dataset=Stream(data))
    hf.train()
    stream = Stream(data)
    ours = Trainer(model=pretrained.AutoModelForSequenceClassification.from_pretrained(folder),
                   args=TrainingArguments(output_dir=str(tmp_path / "ours"), **kwargs), train_dataset=stream)
    ours.train()
    a, b = losses(ours.state.log_history), losses(hf.state.log_history)
    assert [s for s, *_ in a] == [s for s, *_ in b] == list(range(1, 8))
    for (_, la, lra), (_, lb, lrb) in zip(a, b):
        assert la == pytest.approx(lb, abs=1e-6) and lra == pytest.approx(lrb, abs=1e-12)
    assert stream.epochs == [0, 1]
    theirs = dict(hf.model.named_parameters())
    for name, p in ours.model.named_parameters():
        torch.testing.assert_close(p.detach(), theirs[name].detach(), atol=1e-6, rtol=1e-5, msg=name)


def test_resume_on_a_stream_is_exact(tmp_path):
    folder = hf_checkpoint(tmp_path / "m", "BertConfig", "BertForSequenceClassification",
                           **dict(BERT, hidden_dropout_prob=0.1))
    data = classification_data(n=10)  # 3 batches per pass: the checkpoint at step 4 is in the second pass
    kwargs = dict(COMMON, max_steps=8)
    full = Trainer(model=pretrained.AutoModelForSequenceClassification.from_pretrained(folder),
                   args=TrainingArguments(output_dir=str(tmp_path / "full"), **kwargs), train_dataset=Stream(data))
    full.train()
    class Interrupt(pretrained.training.TrainerCallback):  # the run dies after step 5, its last checkpoint at 4
        def on_step_end(self, args, state, control, **kwargs):
            control.should_training_stop = state.global_step == 5

    cut = Trainer(model=pretrained.AutoModelForSequenceClassification.from_pretrained(folder),
                  args=TrainingArguments(output_dir=str(tmp_path / "cut"), **dict(kwargs, save_strategy="steps",
                                                                                    save_steps=4)),
                  train_dataset=Stream(data), callbacks=[Interrupt()])
    cut.train()
    resumed = Trainer(model=pretrained.AutoModelForSequenceClassification.from_pretrained(folder),
                      args=TrainingArguments(output_dir=str(tmp_path / "cut"), **kwargs), train_dataset=Stream(data))
    resumed.train(resume_from_checkpoint=str(tmp_path / "cut" / "checkpoint-4"))
    a, b = losses(full.state.log_history), losses(resumed.state.log_history)
    assert [x for x in a if x[0] > 4] == [x for x in b if x[0] > 4] and len(a) == 8  # bit for bit
    for p, q in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(p, q)


def test_misuse_is_refused(tmp_path):
    model = pretrained.BertForSequenceClassification(pretrained.BertConfig(**BERT))
    data = classification_data(n=8)
    with pytest.raises(ConfigError, match="max_steps"):
        Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), **COMMON),
                train_dataset=Stream(data)).train()
    steps = dict(COMMON, max_steps=2)
    with pytest.raises(InputError, match="iterator"):
        Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), **steps),
                train_dataset=iter(data)).train()
    with pytest.raises(ConfigError, match="group_by_length"):
        Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), group_by_length=True, **steps),
                train_dataset=Stream(data)).train()
    with pytest.raises(InputError, match="empty"):
        Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), **steps), train_dataset=Stream([])).train()
    with pytest.raises(InputError, match="no batch of 4"):
        Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), dataloader_drop_last=True, **steps),
                train_dataset=Stream(data[:3])).train()
