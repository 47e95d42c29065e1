"""ModelOutput: attribute, key and index access like transformers' outputs."""

from __future__ import annotations

import pytest
import torch

from pretrained.outputs import SequenceClassifierOutput, finish


def test_access_patterns_skip_none():
    logits = torch.ones(2, 3)
    out = SequenceClassifierOutput(logits=logits)
    assert out.logits is logits and out["logits"] is logits and out[0] is logits
    assert list(out.keys()) == ["logits"] and len(out) == 1 and "loss" not in out
    with pytest.raises(KeyError):
        out["loss"]
    out.loss = torch.tensor(1.0)
    assert out[0] is out.loss and out.to_tuple() == (out.loss, logits)
    assert dict(**out).keys() == {"loss", "logits"}
    loss, rest = out[0], out[1:]
    assert rest == (logits,)


def test_finish_honours_return_dict():
    out = SequenceClassifierOutput(logits=torch.zeros(1))
    assert finish(out, None) is out and finish(out, True) is out
    assert finish(out, False) == (out.logits,)
