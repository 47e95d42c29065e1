"""Training checkpoints: exact round trips (model, optimizer, scheduler, scaler, RNG, trainer state) for BERT and
GPT-2, weights-only loading, saves killed with SIGKILL at chosen moments leave the old or the new checkpoint whole,
and checkpoint discovery and rotation agree with transformers.trainer_utils on the same folders."""

from __future__ import annotations

import copy
import json
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

import pretrained
from pretrained.errors import CheckpointError, UnsafeCheckpointError
from pretrained.training import checkpoints as ck
from pretrained.training.arguments import TrainingArguments

# Shared with the subprocess of the kill test, which must build bit-identical objects from a seed.
BUILD = '''
import torch
import pretrained
from pretrained.training.callbacks import TrainerState
from pretrained.training.schedules import get_linear_schedule_with_warmup


def build(kind, seed, real_steps=True):
    """A tiny model, an AdamW and a linear schedule after two steps, and a TrainerState naming the seed.
    real_steps=False uses random gradients: elementwise only, so identical in any process."""
    torch.manual_seed(seed)
    if kind == "gpt2":
        model = pretrained.GPT2LMHeadModel(pretrained.GPT2Config(vocab_size=99, n_embd=32, n_layer=2, n_head=4))
    else:
        vocab = 30000 if kind == "big" else 99
        hidden = 64 if kind == "big" else 32
        model = pretrained.BertForSequenceClassification(pretrained.BertConfig(
            hidden_size=hidden, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, vocab_size=vocab))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = get_linear_schedule_with_warmup(optimizer, 2, 10)
    for _ in range(2):
        if real_steps:
            ids = torch.randint(0, 99, (2, 8))
            labels = ids if kind == "gpt2" else torch.tensor([0, 1])
            model(input_ids=ids, labels=labels).loss.backward()
        else:
            for p in model.parameters():
                p.grad = torch.randn_like(p)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    state = TrainerState(global_step=seed, max_steps=10, epoch=0.25, log_history=[{"loss": 1.5, "step": seed}],
                         best_metric=0.5, best_model_checkpoint="out/checkpoint-1")
    return model, optimizer, scheduler, state
'''
exec(BUILD)


def assert_same_tree(a, b, where="state"):
    """Equal nested dicts / lists / tuples / tensors, tensors bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for key in a:
            assert_same_tree(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tree(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def draws():
    return random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()


def perturb(model, optimizer, scheduler):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()
    draws()


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_round_trip_restores_everything_exactly(tmp_path, kind):
    model, optimizer, scheduler, state = build(kind, 3)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    args = TrainingArguments(output_dir=str(tmp_path))
    path = ck.save_checkpoint(tmp_path, 3, model, optimizer, scheduler, state, args, scaler=scaler)
    assert path == os.path.join(str(tmp_path), "checkpoint-3")
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-3"]
    assert {"config.json", "model.safetensors", "optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state.safetensors",
            "trainer_state.json", "training_args.json"} <= set(os.listdir(path))
    with open(os.path.join(path, "training_args.json"), encoding="utf-8") as f:
        assert json.load(f) == json.loads(args.to_json_string())
    expected_draws = draws()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer_state = copy.deepcopy(optimizer.state_dict())
    scheduler_state = copy.deepcopy(scheduler.state_dict())
    saved_state = copy.deepcopy(state)

    perturb(model, optimizer, scheduler)
    other_scaler = torch.amp.GradScaler("cpu", init_scale=8.0)
    loaded_state = ck.load_checkpoint(path, model, optimizer, scheduler, scaler=other_scaler)

    assert loaded_state == saved_state
    assert_same_tree(weights, model.state_dict(), "model")
    assert_same_tree(optimizer_state, optimizer.state_dict(), "optimizer")
    assert_same_tree(scheduler_state, scheduler.state_dict(), "scheduler")
    assert other_scaler.state_dict() == scaler.state_dict()
    assert draws() == expected_draws
    if kind == "gpt2":  # loaded in place: the tie and the optimizer's parameters are the same objects
        assert model.lm_head.weight is model.transformer.wte.weight
    assert all(any(p is q for q in model.parameters()) for p in optimizer.param_groups[0]["params"])


def test_resumed_training_continues_identically(tmp_path):
    model, optimizer, scheduler, state = build("gpt2", 4)
    path = ck.save_checkpoint(tmp_path, 2, model, optimizer, scheduler, state)

    def step():
        ids = torch.randint(0, 99, (2, 8))
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        return {k: v.clone() for k, v in model.state_dict().items()}

    expected = step()
    perturb(model, optimizer, scheduler)
    ck.load_checkpoint(path, model, optimizer, scheduler)
    assert_same_tree(expected, step(), "model after one resumed step")


def test_rng_state_round_trip_in_memory():
    saved = ck.capture_rng_state()
    expected = draws()
    draws()
    ck.set_rng_state(saved)
    assert draws() == expected


def test_plain_module_with_shared_weights(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 10))
    model[1].weight = model[0].weight
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    path = ck.save_checkpoint(tmp_path, 1, model, state=pretrained.TrainerState(global_step=1))
    with torch.no_grad():
        model[0].weight.add_(1)
        model[1].bias.add_(1)
    ck.load_checkpoint(path, model, load_rng=False)
    assert_same_tree(weights, model.state_dict(), "model")
    assert model[1].weight is model[0].weight


def test_loading_uses_weights_only(tmp_path, monkeypatch):
    model, optimizer, scheduler, state = build("bert", 5)
    path = ck.save_checkpoint(tmp_path, 5, model, optimizer, scheduler, state)
    real_load, calls = torch.load, []

    def checked_load(*args, **kwargs):
        assert kwargs.get("weights_only") is True
        calls.append(args[0])
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", checked_load)
    ck.load_checkpoint(path, model, optimizer, scheduler)
    assert sorted(os.path.basename(c) for c in calls) == ["optimizer.pt", "scheduler.pt"]


class _Payload:
    """Unpickling this would create a file: the weights-only unpickler must refuse it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_code_in_a_pickle_is_refused_and_not_run(tmp_path):
    model, optimizer, scheduler, state = build("bert", 6)
    path = ck.save_checkpoint(tmp_path, 6, model, optimizer, scheduler, state)
    marker = tmp_path / "ran"
    with open(os.path.join(path, "optimizer.pt"), "wb") as f:
        pickle.dump({"state": _Payload(str(marker))}, f, protocol=2)
    with pytest.raises(UnsafeCheckpointError, match="optimizer.pt"):
        ck.load_checkpoint(path, optimizer=optimizer, load_rng=False)
    assert not marker.exists()


def test_missing_files_raise_checkpoint_error_naming_them(tmp_path):
    model, optimizer, scheduler, state = build("bert", 7)
    path = ck.save_checkpoint(tmp_path, 7, model, optimizer, scheduler, state, save_only_model=True)
    assert not {"optimizer.pt", "scheduler.pt", "rng_state.safetensors"} & set(os.listdir(path))
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        next(model.parameters()).add_(1)
    changed = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match="optimizer.pt"):
        ck.load_checkpoint(path, model, optimizer)
    assert_same_tree(changed, model.state_dict(), "model")  # nothing is restored when a file is missing
    with pytest.raises(CheckpointError, match="rng_state.safetensors"):
        ck.load_checkpoint(path, model)
    with pytest.raises(CheckpointError, match="rng_state.safetensors"):
        ck.restore_rng_state(path)
    assert ck.load_checkpoint(path, model, load_rng=False) == state
    assert_same_tree(weights, model.state_dict(), "model")
    os.remove(os.path.join(path, "trainer_state.json"))
    with pytest.raises(CheckpointError, match="trainer_state.json"):
        ck.load_checkpoint(path, model, load_rng=False)


def test_mismatched_model_is_refused(tmp_path):
    model, _, _, state = build("bert", 8)
    path = ck.save_checkpoint(tmp_path, 8, model, state=state)
    other = pretrained.BertForSequenceClassification(pretrained.BertConfig(
        hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=37, vocab_size=99))
    with pytest.raises(CheckpointError, match="unexpected_keys|missing_keys"):
        ck.load_checkpoint(path, other, load_rng=False)


@pytest.mark.parametrize("swap", ["exchange", "two renames"])
def test_replacing_a_checkpoint_leaves_no_staging_folders(tmp_path, monkeypatch, swap):
    if swap == "two renames":
        monkeypatch.setattr(ck, "_exchange", lambda a, b: False)
    old = build("bert", 1)
    new = build("bert", 2)
    ck.save_checkpoint(tmp_path, 4, *old)
    os.mkdir(tmp_path / ".checkpoint-3.tmp-0123abcd")  # a killed save's leftover
    path = ck.save_checkpoint(tmp_path, 4, *new)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-4"]
    fresh = build("bert", 9)
    assert ck.load_checkpoint(path, *fresh[:3], load_rng=False).global_step == 2
    assert_same_tree(new[0].state_dict(), fresh[0].state_dict(), "model")


CHILD = BUILD + '''
import os, sys, time
from pretrained.training import checkpoints as ck

out, seed, stage = sys.argv[1], int(sys.argv[2]), sys.argv[3]
objects = build("big", seed, real_steps=False)


def pause():
    print("paused", flush=True)
    time.sleep(600)


def after(function, then):
    def wrapped(*args, **kwargs):
        result = function(*args, **kwargs)
        then()
        return result
    return wrapped


if stage == "model written":
    objects[0].save_pretrained = after(objects[0].save_pretrained, pause)
elif stage == "optimizer written":
    ck.torch.save = after(ck.torch.save, pause)
elif stage == "before swap":
    ck._swap_into_place = lambda staging, target: pause()
elif stage == "after swap":
    ck._swap_into_place = after(ck._swap_into_place, pause)
elif stage == "between fallback renames":
    ck._exchange = lambda a, b: False
    rename = os.rename

    def rename_then_pause(source, destination):
        rename(source, destination)
        if ".old-" in destination:
            pause()

    ck.os.rename = rename_then_pause
print("saving", flush=True)
ck.save_checkpoint(out, 7, *objects)
print("done", flush=True)
'''

STAGES = ["model written", "optimizer written", "before swap", "after swap", "between fallback renames",
          0.005, 0.03]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_killed_saves_leave_old_or_new_checkpoint_whole(tmp_path):
    out = str(tmp_path)
    references = {}

    def reference(seed):
        if seed not in references:
            model, optimizer, scheduler, state = build("big", seed, real_steps=False)
            references[seed] = (model.state_dict(), optimizer.state_dict(), scheduler.state_dict())
        return references[seed]

    def check(allowed):
        """checkpoint-7 holds exactly one of the allowed versions, whole; return which."""
        path = os.path.join(out, "checkpoint-7")
        assert ck.get_last_checkpoint(out) == path
        assert [n for n in os.listdir(out) if not n.startswith(".")] == ["checkpoint-7"]
        model, optimizer, scheduler, _ = build("big", 0, real_steps=False)
        seed = ck.load_checkpoint(path, model, optimizer, scheduler, load_rng=False).global_step
        assert seed in allowed
        ours = ck.capture_rng_state()
        ck.restore_rng_state(path)  # readable and whole too
        ck.set_rng_state(ours)
        for name, got, want in zip(("model", "optimizer", "scheduler"),
                                   (model.state_dict(), optimizer.state_dict(), scheduler.state_dict()),
                                   reference(seed)):
            assert_same_tree(want, got, name)
        return seed

    ck.save_checkpoint(out, 7, *build("big", 100, real_steps=False))
    current = 100
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    for i, stage in enumerate(STAGES):
        seed = 101 + i
        child = subprocess.Popen([sys.executable, "-c", CHILD, out, str(seed), str(stage)],
                                 stdout=subprocess.PIPE, text=True, env=env)
        try:
            assert child.stdout.readline().strip() == "saving"
            if isinstance(stage, float):
                try:
                    child.wait(timeout=stage)
                except subprocess.TimeoutExpired:
                    pass
            else:
                assert child.stdout.readline().strip() == "paused", stage
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
            child.stdout.close()
        if stage == "between fallback renames":
            assert ck.get_last_checkpoint(out) is None  # the old folder waits under its hidden name
            ck.save_checkpoint(out, 3, *build("bert", 1))  # the next save puts it back
            shutil.rmtree(os.path.join(out, "checkpoint-3"))
        expected = {"before swap": {current}, "after swap": {seed}, "model written": {current},
                    "optimizer written": {current}, "between fallback renames": {current}}
        current = check(expected.get(stage, {current, seed}))

    ck.save_checkpoint(out, 8, *build("bert", 1))
    assert sorted(os.listdir(out)) == ["checkpoint-7", "checkpoint-8"]  # leftovers of the kills are gone


# --- discovery and rotation against transformers ---

NAMES = ["checkpoint-1", "checkpoint-2", "checkpoint-3", "checkpoint-5", "checkpoint-10", "checkpoint-20",
         "checkpoint-x", ".checkpoint-30.tmp-0123abcd", "other"]


def make_folder(root):
    os.makedirs(root)
    for name in NAMES:
        os.mkdir(os.path.join(root, name))
    open(os.path.join(root, "checkpoint-40"), "w").close()  # a file, not a checkpoint
    return str(root)


@pytest.mark.parametrize("best", [None, "checkpoint-3", "checkpoint-20", "checkpoint-1"])
def test_sorted_checkpoints_match_transformers(tmp_path, best):
    trainer_utils = pytest.importorskip("transformers.trainer_utils")
    root = make_folder(tmp_path / "out")
    best_path = os.path.join(root, best) if best else None
    theirs = trainer_utils.sort_checkpoints(root, best_model_checkpoint=best_path)
    ours = ck.sorted_checkpoints(root, best_path)
    assert [os.path.basename(p) for p in ours] == [os.path.basename(p) for p in theirs]


@pytest.mark.parametrize("limit", [None, 1, 2, 3, 10])
@pytest.mark.parametrize("best", [None, "checkpoint-3", "checkpoint-20"])
def test_rotate_checkpoints_matches_transformers(tmp_path, limit, best):
    trainer_utils = pytest.importorskip("transformers.trainer_utils")
    ours_root, theirs_root = make_folder(tmp_path / "ours"), make_folder(tmp_path / "theirs")
    deleted = ck.rotate_checkpoints(ours_root, limit, os.path.join(ours_root, best) if best else None)
    trainer_utils.rotate_checkpoints(theirs_root, limit, os.path.join(theirs_root, best) if best else None)
    assert sorted(os.listdir(ours_root)) == sorted(os.listdir(theirs_root))
    assert sorted(os.path.basename(p) for p in deleted) == sorted(set(NAMES) - set(os.listdir(ours_root)))
    if best:
        assert os.path.isdir(os.path.join(ours_root, best))
    if limit == 2 and best == "checkpoint-3":
        kept = ("checkpoint-3", "checkpoint-20")
        assert ck.sorted_checkpoints(ours_root) == [os.path.join(ours_root, n) for n in kept]


def test_get_last_checkpoint_matches_transformers(tmp_path):
    trainer_utils = pytest.importorskip("transformers.trainer_utils")
    root = make_folder(tmp_path / "out")
    assert ck.get_last_checkpoint(root) == trainer_utils.get_last_checkpoint(root) == os.path.join(root,
                                                                                                 "checkpoint-20")
    assert pretrained.get_last_checkpoint is ck.get_last_checkpoint
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".checkpoint-3.tmp-0123abcd").mkdir()
    assert ck.get_last_checkpoint(empty) is None and trainer_utils.get_last_checkpoint(str(empty)) is None
