"""Checks every decoder family in tests/models runs against transformers on a tiny random checkpoint:
logits and hidden states of a left-padded batch, greedy and beam-search tokens (ours with a dynamic
and a static cache), the saved checkpoint's names and bytes, and a reload by both libraries.

Transformers runs its eager attention: on the rows that are only padding its sdpa backend returns
zeros where eager (and ours) average uniformly, and MoE routers see those rows too."""

from __future__ import annotations

import torch

import pretrained
from checkpoints import hf_checkpoint

ATOL = 1e-5


def load_pair(folder_or_tmp, config_name: str, model_name: str, auto: str = "AutoModelForCausalLM", **config_kwargs):
    """(ours, theirs, folder) for a checkpoint transformers writes with `config_kwargs`."""
    import transformers

    folder = hf_checkpoint(folder_or_tmp, config_name, model_name, **config_kwargs)
    theirs = getattr(transformers, model_name).from_pretrained(folder, attn_implementation="eager").eval()
    ours = getattr(pretrained, auto).from_pretrained(folder)
    return ours, theirs, folder


def left_padded(lengths=(13, 9, 4), vocab_size=99, pad=0, seed=0):
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    ids = torch.randint(3, vocab_size, (len(lengths), T), generator=g)
    mask = torch.zeros(len(lengths), T, dtype=torch.long)
    for row, n in enumerate(lengths):
        mask[row, T - n:] = 1
    return ids.masked_fill(mask == 0, pad), mask


def assert_forward_equal(ours, theirs, ids, mask, **kwargs):
    """Logits and every hidden state equal on the real (unpadded) positions; returns both outputs."""
    with torch.no_grad():
        a = ours(input_ids=ids, attention_mask=mask, output_hidden_states=True, **kwargs)
        b = theirs(input_ids=ids, attention_mask=mask, output_hidden_states=True, **kwargs)
    real = mask.bool()
    torch.testing.assert_close(a.logits[real], b.logits[real], atol=ATOL, rtol=0)
    assert len(a.hidden_states) == len(b.hidden_states)
    for x, y in zip(a.hidden_states, b.hidden_states):
        torch.testing.assert_close(x[real], y[real], atol=ATOL, rtol=0)
    return a, b


def assert_generate_equal(ours, theirs, ids, mask, max_new_tokens=12):
    """Greedy and beam-search tokens equal transformers'; ours equal with a static cache and with none."""
    kwargs = dict(attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=0)
    dynamic = ours.generate(ids, **kwargs)
    assert torch.equal(dynamic, theirs.generate(ids, **kwargs))
    assert torch.equal(dynamic, ours.generate(ids, cache_implementation="static", **kwargs))
    assert torch.equal(dynamic, ours.generate(ids, use_cache=False, **kwargs))
    beams = dict(kwargs, num_beams=3, max_new_tokens=6)
    dynamic = ours.generate(ids, **beams)
    assert torch.equal(dynamic, theirs.generate(ids, **beams))
    assert torch.equal(dynamic, ours.generate(ids, cache_implementation="static", **beams))


def assert_save_round_trip(ours, folder, tmp_path, ids):
    """Our save writes transformers' names, shapes and bytes; both libraries reload it to equal logits."""
    import transformers
    from safetensors.torch import load_file

    ours.save_pretrained(tmp_path)
    original, saved = load_file(f"{folder}/model.safetensors"), load_file(f"{tmp_path}/model.safetensors")
    assert set(saved) == set(original)
    for key, tensor in saved.items():
        assert tensor.dtype == original[key].dtype and tensor.shape == original[key].shape, key
        assert torch.equal(tensor.view(torch.uint8), original[key].view(torch.uint8)), key
    with torch.no_grad():
        expected = ours(ids).logits
        again = type(ours).from_pretrained(tmp_path)
        torch.testing.assert_close(again(ids).logits, expected, atol=0, rtol=0)
        theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation="eager").eval()
        torch.testing.assert_close(theirs(ids).logits, expected, atol=ATOL, rtol=0)


def assert_sequence_classification_equal(tmp_path, config_name: str, model_name: str, **config_kwargs):
    ours, theirs, _ = load_pair(tmp_path, config_name, model_name, auto="AutoModelForSequenceClassification",
                                num_labels=3, **config_kwargs)
    assert type(ours).__name__ == model_name
    ids, mask = left_padded()
    labels = torch.tensor([0, 2, 1])
    with torch.no_grad():
        a = ours(input_ids=ids, attention_mask=mask, labels=labels)
        b = theirs(input_ids=ids, attention_mask=mask, labels=labels)
    torch.testing.assert_close(a.logits, b.logits, atol=ATOL, rtol=0)
    torch.testing.assert_close(a.loss, b.loss, atol=ATOL, rtol=0)
