"""save_pretrained over an existing checkpoint, killed (SIGKILL) at every file operation: the
folder must then load entirely the old weights or entirely the new ones, never a mix."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from pretrained import BertConfig, BertModel

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, vocab_size=99,
            max_position_embeddings=64, type_vocab_size=2)
STEPS = ("replace", "rename", "remove", "unlink", "rmdir")  # every os call that changes the folder


def tiny_bert(seed: int) -> BertModel:
    torch.manual_seed(seed)
    model = BertModel(BertConfig(**TINY)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    return model


def save_killed_at(model, folder, kill_at: int, **kwargs) -> bool:
    """Save in a forked child that SIGKILLs itself at its `kill_at`-th folder-changing os call; True if it finished."""
    pid = os.fork()
    if pid == 0:  # child: count the calls; the library itself is untouched
        calls = [0]

        def wrap(real):
            def step(*args, **kw):
                calls[0] += 1
                if calls[0] == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                return real(*args, **kw)
            return step

        for name in STEPS:
            setattr(os, name, wrap(getattr(os, name)))
        try:
            model.save_pretrained(folder, **kwargs)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return not os.WIFSIGNALED(status)


def which(folder, old: dict, new: dict) -> str:
    loaded = BertModel.from_pretrained(folder).state_dict()
    for name, state in (("old", old), ("new", new)):
        if all(torch.equal(loaded[k], state[k]) for k in state):
            return name
    mixed = [k for k in new if not torch.equal(loaded[k], new[k]) and not torch.equal(loaded[k], old[k])]
    return f"mix ({len(mixed)} tensors from neither)" if mixed else "mix"


@pytest.mark.parametrize("before,after", [(None, "20KB"), ("20KB", "20KB"), ("20KB", None), ("20KB", "40KB"),
                                          (None, None)])
def test_save_killed_at_every_step_loads_old_or_new(tmp_path, before, after):
    old_model, new_model = tiny_bert(0), tiny_bert(1)
    old, new = old_model.state_dict(), new_model.state_dict()
    shard = lambda size: {} if size is None else {"max_shard_size": size}  # noqa: E731
    seen = []
    for kill_at in range(1, 100):
        folder = tmp_path / f"k{kill_at}"
        old_model.save_pretrained(folder, **shard(before))
        finished = save_killed_at(new_model, folder, kill_at, **shard(after))
        state = which(folder, old, new)
        assert state in ("old", "new"), f"killed at step {kill_at}: the folder loads a {state}"
        seen.append(state)
        if finished:
            assert state == "new"
            break
    assert seen[0] == "old" and seen[-1] == "new" and len(seen) > 2, seen
    shards = [n for n in os.listdir(folder) if n.endswith(".safetensors")]
    assert (len(shards) > 1) == (after is not None), shards  # sharded as asked
