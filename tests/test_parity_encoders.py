"""Every encoder architecture x head against transformers on the same tiny random checkpoint:
all hidden states, attentions, logits within 1e-5 (float32) with padding; losses equal."""

from __future__ import annotations

import pytest
import torch

import pretrained
from checkpoints import TINY_DISTILBERT, TINY_ENCODER, hf_checkpoint

FAMILIES = {
    "Bert": ("BertConfig", TINY_ENCODER, True),
    "Roberta": ("RobertaConfig", dict(TINY_ENCODER, pad_token_id=1), True),
    "XLMRoberta": ("XLMRobertaConfig", dict(TINY_ENCODER, pad_token_id=1), True),
    "DistilBert": ("DistilBertConfig", TINY_DISTILBERT, False),
}
HEADS = ["Model", "ForMaskedLM", "ForSequenceClassification", "ForTokenClassification",
         "ForQuestionAnswering", "ForMultipleChoice"]
CASES = [(f, h) for f in FAMILIES for h in HEADS]
ATOL = 1e-5


def make_inputs(family: str, head: str, generator: torch.Generator) -> dict:
    pad = 1 if "Roberta" in family else 0
    lengths = [9, 6, 3]
    ids = torch.randint(3, 99, (3, 9), generator=generator)
    mask = torch.zeros(3, 9, dtype=torch.long)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
    ids = ids.masked_fill(mask == 0, pad)
    inputs = {"input_ids": ids, "attention_mask": mask}
    if FAMILIES[family][2]:
        inputs["token_type_ids"] = (torch.arange(9) >= 4).long().expand(3, 9) * mask
    if head == "ForMultipleChoice":  # (B, C, T): two choices per example
        inputs = {k: torch.stack([v, v.flip(0)], dim=1) for k, v in inputs.items()}
    return inputs


def make_labels(head: str, generator: torch.Generator) -> dict:
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


def assert_close_outputs(ours, theirs, keys):
    for key in keys:
        a, b = getattr(ours, key), getattr(theirs, key)
        if isinstance(b, tuple):
            assert isinstance(a, tuple) and len(a) == len(b), key
            for i, (x, y) in enumerate(zip(a, b)):
                torch.testing.assert_close(x, y, atol=ATOL, rtol=0, msg=f"{key}[{i}]")
        elif b is not None:
            torch.testing.assert_close(a, b, atol=ATOL, rtol=0, msg=key)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    cache = {}

    def get(family, head):
        if (family, head) not in cache:
            config_name, kwargs, _ = FAMILIES[family]
            if head == "ForQuestionAnswering":
                kwargs = dict(kwargs, num_labels=2)  # start and end logits
            folder = tmp_path_factory.mktemp(f"{family}{head}")
            cache[family, head] = hf_checkpoint(folder, config_name, family + head, **kwargs)
        return cache[family, head]

    return get


@pytest.mark.parametrize("family,head", CASES)
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_parity_with_transformers(checkpoints, family, head, attn):
    import transformers

    folder = checkpoints(family, head)
    theirs_model = getattr(transformers, family + head).from_pretrained(folder, attn_implementation="eager").eval()
    ours_model = getattr(pretrained, family + head).from_pretrained(folder, attn_implementation=attn)
    generator = torch.Generator().manual_seed(1)
    inputs = make_inputs(family, head, generator)
    labels = make_labels(head, generator)
    want_attn = attn == "eager"
    with torch.no_grad():
        theirs = theirs_model(**inputs, **labels, output_hidden_states=True, output_attentions=want_attn)
        ours = ours_model(**inputs, **labels, output_hidden_states=True, output_attentions=want_attn)
    # transformers' BertModel also returns cross_attentions=() (no cross-attention layers): nothing to compare
    keys = [k for k in theirs.keys() if (k != "attentions" or want_attn) and theirs[k] != ()]
    assert set(keys) <= set(ours.keys())
    assert_close_outputs(ours, theirs, keys)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_base_checkpoint_loads_into_every_head_and_back(checkpoints, family, tmp_path):
    """A base-model checkpoint (no prefix) loads into a head model; the head's base saves and reloads."""
    base_folder = checkpoints(family, "Model")
    base = getattr(pretrained, family + "Model").from_pretrained(base_folder)
    head, info = getattr(pretrained, family + "ForTokenClassification").from_pretrained(base_folder, output_loading_info=True)
    assert set(info["missing_keys"]) == {"classifier.weight", "classifier.bias"}
    assert head.classifier.weight.std().item() == pytest.approx(head.config.initializer_range, rel=0.5)
    for name, p in head.base_model.named_parameters():  # the head's base has no pooler
        torch.testing.assert_close(p, base.get_parameter(name), atol=0, rtol=0)
    head.save_pretrained(tmp_path)
    back, info = getattr(pretrained, family + "Model").from_pretrained(tmp_path, output_loading_info=True)
    assert set(info["missing_keys"]) <= {"pooler.dense.weight", "pooler.dense.bias"}  # token heads have no pooler
    assert set(info["unexpected_keys"]) == {"classifier.weight", "classifier.bias"}
    for name, p in head.base_model.named_parameters():
        torch.testing.assert_close(back.get_parameter(name), p, atol=0, rtol=0)


@pytest.mark.parametrize("family", ["Bert", "Roberta"])
def test_sequence_classification_losses(checkpoints, family):
    """Regression, single-label and multi-label losses equal transformers'."""
    import transformers

    folder = checkpoints(family, "ForSequenceClassification")
    generator = torch.Generator().manual_seed(3)
    inputs = make_inputs(family, "ForSequenceClassification", generator)
    cases = [
        (dict(num_labels=1), torch.tensor([0.5, -1.0, 2.0])),
        (dict(problem_type="multi_label_classification"), torch.tensor([[1.0, 0, 1], [0, 0, 1], [1, 1, 0]])),
        (dict(), torch.tensor([2, 0, 1])),
    ]
    for overrides, labels in cases:
        kwargs = dict(overrides, ignore_mismatched_sizes=True)
        theirs = getattr(transformers, family + "ForSequenceClassification").from_pretrained(folder, **kwargs).eval()
        ours = getattr(pretrained, family + "ForSequenceClassification").from_pretrained(folder, **kwargs)
        ours.load_state_dict(theirs.state_dict())  # re-initialised heads differ; compare the loss maths
        with torch.no_grad():
            a, b = ours(**inputs, labels=labels), theirs(**inputs, labels=labels)
        torch.testing.assert_close(a.loss, b.loss, atol=ATOL, rtol=0)
        assert ours.config.problem_type == theirs.config.problem_type


def test_return_dict_false_gives_transformers_tuple(checkpoints):
    import transformers

    folder = checkpoints("Bert", "ForSequenceClassification")
    inputs = make_inputs("Bert", "ForSequenceClassification", torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2])
    ours = pretrained.BertForSequenceClassification.from_pretrained(folder)(**inputs, labels=labels, return_dict=False)
    theirs = transformers.BertForSequenceClassification.from_pretrained(folder).eval()(**inputs, labels=labels, return_dict=False)
    assert isinstance(ours, tuple) and len(ours) == len(theirs) == 2
    torch.testing.assert_close(ours[1], theirs[1], atol=ATOL, rtol=0)


def test_inputs_embeds_and_no_mask(checkpoints):
    import transformers

    folder = checkpoints("Roberta", "Model")
    theirs = transformers.RobertaModel.from_pretrained(folder).eval()
    ours = pretrained.RobertaModel.from_pretrained(folder)
    ids = torch.randint(3, 99, (2, 7), generator=torch.Generator().manual_seed(5))
    embeds = theirs.embeddings.word_embeddings(ids).detach()
    with torch.no_grad():
        torch.testing.assert_close(ours(inputs_embeds=embeds).last_hidden_state,
                                   theirs(inputs_embeds=embeds).last_hidden_state, atol=ATOL, rtol=0)
        torch.testing.assert_close(ours(ids).pooler_output, theirs(ids).pooler_output, atol=ATOL, rtol=0)
