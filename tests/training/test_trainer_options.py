"""Trainer options beyond the core loop: length-grouped and sequential sampling, torch.compile, FSDP settings."""

from __future__ import annotations

import pytest
import torch

import pretrained
from pretrained.errors import ConfigError, UnsupportedOptionError
from pretrained.training import TrainingArguments
from pretrained.training.sampling import index_batches
from pretrained.training.trainer import Trainer

from test_trainer import BERT, COMMON, classification_data, losses


def varied_lengths(n=40, seed=0):
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, 30, (n,), generator=gen).tolist()
    return [{"input_ids": torch.randint(3, 99, (k,), generator=gen), "labels": k % 3} for k in lengths]


def test_length_grouped_batches_are_sorted_windows_with_the_longest_first():
    gen = torch.Generator().manual_seed(1)
    lengths = torch.randint(1, 500, (230,), generator=gen).tolist()
    batches = index_batches(230, 4, seed=5, drop_last=False, lengths=lengths, megabatch=40)
    order = [i for b in batches for i in b]
    assert sorted(order) == list(range(230))  # every example once
    assert max(lengths) in [lengths[i] for i in batches[0]]  # the largest batch comes first
    windows = [order[i:i + 40] for i in range(0, 230, 40)]
    for w, window in enumerate(windows):  # longest first within each window (bar the swapped head)
        rest = [lengths[i] for i in window[1:]]
        assert rest == sorted(rest, reverse=True), w
    assert index_batches(230, 4, 5, False, lengths, 40) == batches  # the seed decides: a resume replays it
    assert index_batches(230, 4, 6, False, lengths, 40) != batches
    assert order != sorted(order, key=lambda i: -lengths[i])  # grouped, not one global sort


def test_group_by_length_pads_less_and_both_spellings_agree(tmp_path):
    padded = {}  # rows x the longest row, summed over batches: what padding to the longest costs
    for name, extra in (("random", {}), ("grouped", {"group_by_length": True}),
                        ("grouped5", {"train_sampling_strategy": "group_by_length"})):
        args = TrainingArguments(output_dir=str(tmp_path / name), **dict(COMMON, per_device_train_batch_size=4), **extra)
        trainer = Trainer(model=pretrained.BertForSequenceClassification(pretrained.BertConfig(**BERT)), args=args,
                          train_dataset=varied_lengths())
        batches = trainer._batches(trainer.train_dataset, 4, 0, False)
        padded[name] = sum(max(len(trainer.train_dataset[i]["input_ids"]) for i in b) * len(b) for b in batches)
    assert padded["grouped"] == padded["grouped5"] < 0.8 * padded["random"]
    with pytest.raises(ConfigError, match="train_sampling_strategy"):
        TrainingArguments(output_dir=str(tmp_path), group_by_length=True, train_sampling_strategy="sequential")
    with pytest.raises(ConfigError, match="train_sampling_strategy"):
        TrainingArguments(output_dir=str(tmp_path), train_sampling_strategy="shuffled")


def test_group_by_length_trains_and_reads_a_length_column(tmp_path):
    data = varied_lengths(24)
    data = [dict(ex, length=len(ex["input_ids"])) for ex in data]  # a precomputed length column is used as is
    args = TrainingArguments(output_dir=str(tmp_path), **dict(COMMON, group_by_length=True, num_train_epochs=1))
    model = pretrained.BertForSequenceClassification(pretrained.BertConfig(**BERT))
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=_pad)
    trainer.train()
    assert len(losses(trainer.state.log_history)) == 6


def _pad(rows):
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, :len(r["input_ids"])], mask[i, :len(r["input_ids"])] = r["input_ids"], 1
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([r["labels"] for r in rows])}


def test_sequential_sampling_keeps_dataset_order(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), train_sampling_strategy="sequential", **COMMON)
    trainer = Trainer(model=pretrained.BertForSequenceClassification(pretrained.BertConfig(**BERT)), args=args,
                      train_dataset=classification_data())
    assert trainer._batches(trainer.train_dataset, 4, 1, False)[0] == [0, 1, 2, 3]


@pytest.mark.slow
def test_torch_compile_trains_as_eager(tmp_path):
    folder = tmp_path / "m"
    pretrained.BertForSequenceClassification(pretrained.BertConfig(**BERT)).save_pretrained(folder)
    runs = {}
    for compiled in (False, True):
        args = TrainingArguments(output_dir=str(tmp_path / str(compiled)), torch_compile=compiled,
                                 **dict(COMMON, num_train_epochs=1))
        assert args.torch_compile_backend == ("inductor" if compiled else None)
        model = pretrained.AutoModelForSequenceClassification.from_pretrained(folder)
        trainer = Trainer(model=model, args=args, train_dataset=classification_data())
        trainer.train()
        runs[compiled] = (losses(trainer.state.log_history), [p.detach().clone() for p in model.parameters()])
    (eager, w_eager), (compiled, w_compiled) = runs[False], runs[True]
    assert [s for s, *_ in eager] == [s for s, *_ in compiled]
    for (_, a, _), (_, b, _) in zip(eager, compiled):
        assert a == pytest.approx(b, abs=1e-5)
    for p, q in zip(w_eager, w_compiled):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4)
    assert TrainingArguments(output_dir=str(tmp_path), torch_compile_mode="reduce-overhead").torch_compile


def test_fsdp_settings_are_checked_by_name(tmp_path):
    ok = TrainingArguments(output_dir=str(tmp_path), fsdp="full_shard auto_wrap",
                           fsdp_config={"transformer_layer_cls_to_wrap": "BertLayer", "fsdp_version": 2})
    assert ok.fsdp == "full_shard auto_wrap"
    cases = [
        (dict(fsdp="full_shard shard_grad_op"), ConfigError, "more than one sharding strategy"),
        (dict(fsdp="zero3"), ConfigError, "unknown option 'zero3'"),
        (dict(fsdp="full_shard", fsdp_config={"backward_prefetch": "backward_pre"}), UnsupportedOptionError,
         "backward_prefetch"),
        (dict(fsdp="full_shard", fsdp_config={"fsdp_version": 1}), UnsupportedOptionError, "only FSDP2"),
        (dict(fsdp_config={"min_num_params": 10}), ConfigError, "fsdp is empty"),
        (dict(fsdp="full_shard", fsdp_config=str(tmp_path / "missing.json")), ConfigError, "missing.json"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            TrainingArguments(output_dir=str(tmp_path), **kwargs)
    config_file = tmp_path / "fsdp.json"
    config_file.write_text('{"min_num_params": 1000}')
    assert TrainingArguments(output_dir=str(tmp_path), fsdp="shard_grad_op",
                             fsdp_config=str(config_file)).fsdp_config == {"min_num_params": 1000}


def test_fsdp_wrapping_units(tmp_path):
    from pretrained.training.distributed import _units

    model = pretrained.BertForSequenceClassification(pretrained.BertConfig(**BERT))
    layers = list(model.bert.encoder.layer)
    assert _units(model, {}) == layers  # the items of the model's stacks
    assert _units(model, {"transformer_layer_cls_to_wrap": ["BertLayer"]}) == layers
    with pytest.raises(ConfigError, match="GPT2Block"):
        _units(model, {"transformer_layer_cls_to_wrap": ["GPT2Block"]})
    big = _units(model, {"min_num_params": 3000})
    assert model.bert.embeddings.word_embeddings in big or model.bert.embeddings in big
    assert all(sum(p.numel() for p in m.parameters()) >= 3000 for m in big)
