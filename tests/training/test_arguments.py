"""TrainingArguments against transformers' (the oracle): defaults, derived values, validation errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from pretrained.errors import ConfigError
from pretrained.training import Seq2SeqTrainingArguments, TrainingArguments

transformers = pytest.importorskip("transformers")

# fields Transformers 5 dropped; kept because Transformers 4 scripts still pass them
NOT_IN_TRANSFORMERS_5 = {
    "overwrite_output_dir": "Transformers 4 field (run scripts read it); removed in 5",
    "warmup_ratio": "Transformers 4 spelling of a warmup_steps below 1; removed in 5",
    "logging_dir": "Transformers 4 field (TensorBoard folder); removed in 5",
    "group_by_length": "Transformers 4 field; 5 spells it train_sampling_strategy='group_by_length'",
}
# derived from each library's own logger level, and conftest quiets transformers' logger
OWN_LOGGER = {"disable_tqdm"}


def pair(tmp_path, **kwargs):
    return (TrainingArguments(output_dir=str(tmp_path), **kwargs),
            transformers.TrainingArguments(output_dir=str(tmp_path), **kwargs))


def assert_same_fields(ours, theirs):
    mine, other = ours.to_dict(), theirs.to_dict()
    assert set(mine) - set(other) == set(NOT_IN_TRANSFORMERS_5)
    diffs = {k: (mine[k], other[k]) for k in mine if k in other and k not in OWN_LOGGER and mine[k] != other[k]}
    assert not diffs


def test_defaults_equal_transformers(tmp_path):
    ours, theirs = pair(tmp_path)
    assert_same_fields(ours, theirs)
    assert ours.overwrite_output_dir is False and ours.warmup_ratio is None
    assert ours.logging_dir is None and ours.group_by_length is False


def test_disable_tqdm_follows_our_logger(tmp_path):
    import logging

    logger = logging.getLogger("pretrained")
    level = logger.level
    try:
        logger.setLevel(logging.ERROR)
        assert TrainingArguments(output_dir=str(tmp_path)).disable_tqdm is True
        logger.setLevel(logging.WARNING)
        assert TrainingArguments(output_dir=str(tmp_path)).disable_tqdm is False
    finally:
        logger.setLevel(level)


def test_output_dir_defaults_like_transformers():
    assert TrainingArguments().output_dir == transformers.TrainingArguments().output_dir == "trainer_output"


@pytest.mark.parametrize("kwargs", [
    dict(eval_strategy="steps"),  # eval_steps falls back to logging_steps
    dict(eval_strategy="steps", logging_steps=25),
    dict(eval_strategy="epoch", save_strategy="epoch", load_best_model_at_end=True),  # metric "loss", lower better
    dict(metric_for_best_model="accuracy"),  # higher is better
    dict(metric_for_best_model="eval_loss", greater_is_better=True),
    dict(eval_strategy="steps", eval_steps=100.0, save_steps=200, load_best_model_at_end=True),
    dict(eval_strategy="steps", eval_steps=0.1, save_steps=0.3, logging_steps=0.05, load_best_model_at_end=True),
    dict(save_strategy="best", metric_for_best_model="f1", eval_strategy="epoch"),
    dict(report_to=["none"]),
    dict(use_cpu=True),  # no pinned memory
    dict(lr_scheduler_type="cosine", lr_scheduler_kwargs='{"num_cycles": 2}', optim="sgd", warmup_steps=0.1),
])
def test_derived_values_equal_transformers(tmp_path, kwargs):
    assert_same_fields(*pair(tmp_path, **kwargs))


def test_strategies_accept_enums_and_store_strings(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), eval_strategy=transformers.IntervalStrategy.STEPS,
                             save_strategy="steps", lr_scheduler_type=transformers.SchedulerType.COSINE)
    assert args.eval_strategy == "steps" and str(args.eval_strategy) == "steps"
    assert args.lr_scheduler_type == "cosine"
    d = json.loads(args.to_json_string())
    assert d["eval_strategy"] == "steps" and d["optim"] == "adamw_torch_fused"


def test_evaluation_strategy_is_an_alias(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), evaluation_strategy="epoch")
    assert args.eval_strategy == "epoch" and args.do_eval
    assert "evaluation_strategy" not in args.to_dict()
    with pytest.raises(ConfigError, match="evaluation_strategy.*eval_strategy"):
        TrainingArguments(output_dir=str(tmp_path), evaluation_strategy="epoch", eval_strategy="steps")


def test_json_round_trip(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), eval_strategy="steps", eval_steps=10, save_steps=20,
                             load_best_model_at_end=True, lr_scheduler_kwargs={"num_cycles": 2},
                             report_to="tensorboard")
    d = json.loads(args.to_json_string())
    del d["hub_token"]  # written hidden
    assert TrainingArguments(**d).to_dict() == args.to_dict()


def test_token_is_hidden(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), hub_token="hf_secret")
    assert "hf_secret" not in args.to_json_string() and "hf_secret" not in repr(args)
    assert args.to_dict()["hub_token"] == "<HUB_TOKEN>"


@pytest.mark.parametrize("kwargs, num_steps", [
    (dict(), 100), (dict(warmup_steps=7), 100), (dict(warmup_steps=0.1), 95), (dict(warmup_steps=0.05), 7),
])
def test_warmup_steps_equal_transformers(tmp_path, kwargs, num_steps):
    ours, theirs = pair(tmp_path, **kwargs)
    assert ours.get_warmup_steps(num_steps) == theirs.get_warmup_steps(num_steps)


def test_warmup_ratio_is_a_warmup_steps_ratio(tmp_path):
    ours = TrainingArguments(output_dir=str(tmp_path), warmup_ratio=0.1)
    theirs = transformers.TrainingArguments(output_dir=str(tmp_path), warmup_steps=0.1)
    assert ours.get_warmup_steps(95) == theirs.get_warmup_steps(95) == 10


def test_properties(tmp_path):
    ours, theirs = pair(tmp_path, per_device_train_batch_size=4, per_device_eval_batch_size=16, use_cpu=True)
    for name in ("train_batch_size", "eval_batch_size", "world_size", "process_index", "should_log", "should_save"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert ours.device == theirs.device == torch.device("cpu")


def test_seq2seq_arguments_equal_transformers(tmp_path):
    ours = Seq2SeqTrainingArguments(output_dir=str(tmp_path))
    theirs = transformers.Seq2SeqTrainingArguments(output_dir=str(tmp_path)).to_dict()
    for name in ("predict_with_generate", "generation_max_length", "generation_num_beams", "generation_config"):
        assert ours.to_dict()[name] == theirs[name]
    import pretrained

    config = pretrained.GenerationConfig(max_new_tokens=5)
    d = Seq2SeqTrainingArguments(output_dir=str(tmp_path), generation_config=config).to_dict()
    assert d["generation_config"]["max_new_tokens"] == 5
    json.dumps(d)


def test_import_does_not_load_torch():
    code = ("import sys, pretrained.training, pretrained.training.arguments as a; a.TrainingArguments(); "
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("kwargs, named", [
    (dict(eval_strategy="steps", save_strategy="epoch", load_best_model_at_end=True),
     ("load_best_model_at_end", "save_strategy", "eval_strategy")),
    (dict(eval_strategy="steps", eval_steps=30, save_steps=100, load_best_model_at_end=True),
     ("load_best_model_at_end", "save_steps", "eval_steps")),
    (dict(eval_strategy="steps", eval_steps=0.1, save_steps=100, load_best_model_at_end=True),
     ("save_steps", "eval_steps")),
    (dict(warmup_ratio=1.5), ("warmup_ratio",)),
    (dict(warmup_ratio=-0.1), ("warmup_ratio",)),
    (dict(warmup_ratio=0.1, warmup_steps=10), ("warmup_steps", "warmup_ratio")),
    (dict(warmup_steps=-1), ("warmup_steps",)),
    (dict(optim="adamw_8bit"), ("optim", "adamw_torch", "sgd")),
    (dict(lr_scheduler_type="reduce_lr_on_plateau"), ("lr_scheduler_type", "linear", "inverse_sqrt")),
    (dict(eval_strategy="sometimes"), ("eval_strategy", "'steps'", "'epoch'")),
    (dict(save_strategy="never"), ("save_strategy", "'best'")),
    (dict(logging_strategy="always"), ("logging_strategy",)),
    (dict(per_device_train_batch_size=0), ("per_device_train_batch_size",)),
    (dict(per_device_eval_batch_size=-2), ("per_device_eval_batch_size",)),
    (dict(gradient_accumulation_steps=0), ("gradient_accumulation_steps",)),
    (dict(eval_accumulation_steps=0), ("eval_accumulation_steps",)),
    (dict(bf16=True, fp16=True), ("fp16", "bf16")),
    (dict(eval_strategy="steps", logging_steps=0), ("eval_strategy", "eval_steps", "logging_steps")),
    (dict(logging_steps=0), ("logging_strategy", "logging_steps")),
    (dict(logging_steps=12.5), ("logging_steps",)),
    (dict(save_steps=-3), ("save_steps",)),
    (dict(save_strategy="best"), ("save_strategy", "metric_for_best_model")),
    (dict(label_smoothing_factor=1.0), ("label_smoothing_factor",)),
    (dict(lr_scheduler_kwargs="{not json"), ("lr_scheduler_kwargs",)),
    (dict(lr_scheduler_kwargs=[1]), ("lr_scheduler_kwargs",)),
])
def test_invalid_values_name_the_fields(tmp_path, kwargs, named):
    with pytest.raises(ConfigError) as info:
        TrainingArguments(output_dir=str(tmp_path), **kwargs)
    for name in named:
        assert name in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusal")
@pytest.mark.parametrize("use_cpu", [False, True])
def test_fp16_without_gpu_suggests_bf16(tmp_path, use_cpu):
    with pytest.raises(ConfigError, match="fp16.*GPU.*bf16"):
        TrainingArguments(output_dir=str(tmp_path), fp16=True, use_cpu=use_cpu)
    assert TrainingArguments(output_dir=str(tmp_path), bf16=True, use_cpu=use_cpu).bf16
