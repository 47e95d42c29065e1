"""Shared checks for encoder families against transformers on tiny random checkpoints: every head's
outputs (hidden states, attentions, logits, loss) with a right-padded batch, state_dict keys, save
round trips both ways, gradient checkpointing."""

from __future__ import annotations

import torch

import pretrained

ATOL = 1e-5
HEADS = ["Model", "ForMaskedLM", "ForSequenceClassification", "ForTokenClassification",
         "ForQuestionAnswering", "ForMultipleChoice"]


def padded_batch(pad: int, lengths=(9, 6, 3), vocab: int = 99, seed: int = 1) -> dict:
    generator = torch.Generator().manual_seed(seed)
    T = max(lengths)
    ids = torch.randint(3, vocab, (len(lengths), T), generator=generator)
    mask = (torch.arange(T)[None] < torch.tensor(lengths)[:, None]).long()
    return {"input_ids": ids.masked_fill(mask == 0, pad), "attention_mask": mask}


def head_inputs(head: str, pad: int, extra=None) -> dict:
    inputs = padded_batch(pad)
    inputs.update(extra(inputs) if extra else {})
    if head == "ForMultipleChoice":  # (B, C, T): two choices per example
        inputs = {k: torch.stack([v, v.flip(0)], dim=1) for k, v in inputs.items()}
    return inputs


def head_labels(head: str, seed: int = 2) -> dict:
    generator = torch.Generator().manual_seed(seed)
    if head == "ForMaskedLM":
        labels = torch.randint(0, 99, (3, 9), generator=generator)
        labels[:, ::2] = -100
        return {"labels": labels}
    if head == "ForSequenceClassification":
        return {"labels": torch.tensor([0, 2, 1])}
    if head == "ForTokenClassification":
        return {"labels": torch.randint(0, 3, (3, 9), generator=generator)}
    if head == "ForQuestionAnswering":
        return {"start_positions": torch.tensor([1, 3, 20]), "end_positions": torch.tensor([4, 5, 2])}
    if head == "ForMultipleChoice":
        return {"labels": torch.tensor([0, 1, 1])}
    return {}


def build(folder, family: str, head: str, seed: int = 0, **config) -> str:
    import transformers

    if head == "ForQuestionAnswering":
        config = dict(config, num_labels=2)
    elif head in ("ForSequenceClassification", "ForTokenClassification"):
        config = dict(config, num_labels=3)
    torch.manual_seed(seed)
    model = getattr(transformers, family + head)(getattr(transformers, family + "Config")(**config)).eval()
    model.save_pretrained(folder)
    return str(folder)


def assert_outputs_close(ours, theirs, skip=()):
    keys = [k for k in theirs.keys() if k not in skip and theirs[k] is not None and theirs[k] != ()]
    assert keys and set(keys) <= set(ours.keys()), (keys, list(ours.keys()))
    for key in keys:
        a, b = ours[key], theirs[key]
        if isinstance(b, tuple):
            assert isinstance(a, tuple) and len(a) == len(b), key
            for i, (x, y) in enumerate(zip(a, b)):
                torch.testing.assert_close(x, y, atol=ATOL, rtol=0, msg=f"{key}[{i}]")
        else:
            torch.testing.assert_close(a, b, atol=ATOL, rtol=0, msg=key)


def assert_head_parity(folder, family: str, head: str, pad: int, attn: str, extra=None):
    """Both libraries load `folder`; all outputs (and the loss) agree, attentions with eager."""
    import transformers

    theirs_model = getattr(transformers, family + head).from_pretrained(folder, attn_implementation="eager").eval()
    ours_model = getattr(pretrained, family + head).from_pretrained(folder, attn_implementation=attn)
    assert set(ours_model.state_dict()) == set(theirs_model.state_dict())
    inputs, labels = head_inputs(head, pad, extra), head_labels(head)
    want_attn = attn == "eager"
    with torch.no_grad():
        theirs = theirs_model(**inputs, **labels, output_hidden_states=True, output_attentions=want_attn)
        ours = ours_model(**inputs, **labels, output_hidden_states=True, output_attentions=want_attn)
    assert_outputs_close(ours, theirs, skip=() if want_attn else ("attentions",))
    if labels:
        assert ours.loss is not None


def assert_saved_by_us_loads_in_transformers(folder, family: str, head: str, pad: int, tmp_path, extra=None):
    import transformers

    ours = getattr(pretrained, family + head).from_pretrained(folder)
    ours.save_pretrained(tmp_path)
    # eager: transformers' sdpa path differs from its eager one on padded queries whose window holds no real key
    theirs = getattr(transformers, family + head).from_pretrained(tmp_path, attn_implementation="eager").eval()
    original = getattr(transformers, family + head).from_pretrained(folder).eval()
    for key, value in original.state_dict().items():
        torch.testing.assert_close(theirs.state_dict()[key], value, atol=0, rtol=0, msg=key)
    inputs = head_inputs(head, pad, extra)
    with torch.no_grad():
        assert_outputs_close(ours(**inputs), theirs(**inputs))


def assert_gradient_checkpointing(folder, family: str, head: str, pad: int, extra=None):
    """Training with recomputed activations gives transformers' loss and gradients (dropout is 0 in the config).
    Eager on both sides: the labels cover padded positions too, and a padded query whose window holds no real
    key gets uniform weights whose gradient differs between backends (transformers' own eager and sdpa too)."""
    import transformers

    theirs = getattr(transformers, family + head).from_pretrained(folder, attn_implementation="eager").train()
    ours = getattr(pretrained, family + head).from_pretrained(folder, attn_implementation="eager").train()
    ours.gradient_checkpointing_enable()
    assert ours.is_gradient_checkpointing
    inputs, labels = head_inputs(head, pad, extra), head_labels(head)
    loss_ours, loss_theirs = ours(**inputs, **labels).loss, theirs(**inputs, **labels).loss
    loss_ours.backward()
    loss_theirs.backward()
    torch.testing.assert_close(loss_ours, loss_theirs, atol=ATOL, rtol=0)
    grads = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        if p.grad is not None or grads[name].grad is not None:
            torch.testing.assert_close(p.grad, grads[name].grad, atol=ATOL, rtol=0, msg=name)
