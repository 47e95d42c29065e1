"""Encoder-decoder task heads (BART, T5, mT5 sequence classification and question answering) against
transformers on the same tiny random checkpoints: logits and losses with and without padding, regression,
attentions and hidden states, tuples, gradient checkpointing, checkpoint keys both ways, the error on
rows with different eos counts, and the zero-shot pipeline over a tiny BART MNLI-like checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

import pretrained
from pretrained.errors import ConfigError, InputError

T5 = dict(vocab_size=99, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_decoder_layers=3, num_heads=4,
          relative_attention_num_buckets=8, relative_attention_max_distance=20, decoder_start_token_id=0,
          pad_token_id=0, eos_token_id=1)
BART = dict(vocab_size=99, d_model=32, encoder_layers=2, decoder_layers=3, encoder_attention_heads=4,
            decoder_attention_heads=2, encoder_ffn_dim=37, decoder_ffn_dim=29, max_position_embeddings=64)
FAMILIES = {  # name: (config class, class prefix, config kwargs, eos id, pad id)
    "bart": ("BartConfig", "Bart", BART, 2, 1),
    "t5": ("T5Config", "T5", T5, 1, 0),
    "mt5": ("MT5Config", "MT5", T5, 1, 0),
}
HEADS = ("ForSequenceClassification", "ForQuestionAnswering")
ATOL = 1e-5


def build(folder, name, head, seed=0, **config_kwargs):
    """A transformers head model with every weight perturbed, saved; returns it (eval mode)."""
    import transformers

    config_name, prefix, kwargs, _, _ = FAMILIES[name]
    config = getattr(transformers, config_name)(**{**kwargs, **config_kwargs})
    torch.manual_seed(seed)
    model = getattr(transformers, prefix + head)(config).eval()
    with torch.no_grad():
        for key, p in model.named_parameters():
            if "embed_positions" not in key:
                p.add_(torch.randn_like(p) * 0.2)
    model.save_pretrained(folder)
    return model


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    cache = {}

    def get(name, head, **config_kwargs):
        key = (name, head, tuple(sorted(config_kwargs.items())))
        if key not in cache:
            folder = tmp_path_factory.mktemp(f"{name}{head}")
            theirs = build(folder, name, head, **config_kwargs)
            cache[key] = getattr(pretrained, FAMILIES[name][1] + head).from_pretrained(folder), theirs, folder
        return cache[key]

    return get


def batch(name, lengths=(9, 9, 9), seed=0):
    """Rows of random tokens ending in eos (one eos each), right-padded, and their mask."""
    _, _, _, eos, pad = FAMILIES[name]
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    ids = torch.randint(3, 97, (len(lengths), T), generator=g)
    mask = (torch.arange(T)[None] < torch.tensor(lengths)[:, None]).long()
    ids = ids.masked_fill(mask == 0, pad)
    ids[torch.arange(len(lengths)), torch.tensor(lengths) - 1] = eos
    return ids, mask


PADDINGS = {"unpadded": (9, 9, 9), "padded": (9, 6, 3)}


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("name", FAMILIES)
def test_sequence_classification_logits_and_loss(pair, name, padding):
    ours, theirs, _ = pair(name, HEADS[0], num_labels=3)
    ids, mask = batch(name, PADDINGS[padding])
    labels = torch.tensor([0, 2, 1])
    a = ours(input_ids=ids, attention_mask=mask, labels=labels)
    b = theirs(input_ids=ids, attention_mask=mask, labels=labels)
    assert a.logits.shape == (3, 3)
    torch.testing.assert_close(a.logits, b.logits, atol=ATOL, rtol=0)
    torch.testing.assert_close(a.loss, b.loss, atol=ATOL, rtol=0)
    assert ours.config.problem_type == "single_label_classification"
    # a row's score does not depend on the batch it is padded into
    one = ours(input_ids=ids[2:, :PADDINGS[padding][2]], attention_mask=mask[2:, :PADDINGS[padding][2]]).logits
    torch.testing.assert_close(one, a.logits[2:], atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", ["bart", "t5"])
def test_regression_with_one_label(pair, name):
    ours, theirs, _ = pair(name, HEADS[0], num_labels=1)
    ids, mask = batch(name, PADDINGS["padded"])
    labels = torch.tensor([0.5, -1.0, 2.0])
    a = ours(input_ids=ids, attention_mask=mask, labels=labels)
    b = theirs(input_ids=ids, attention_mask=mask, labels=labels)
    assert ours.config.problem_type == "regression"
    torch.testing.assert_close(a.logits, b.logits, atol=ATOL, rtol=0)
    torch.testing.assert_close(a.loss, b.loss, atol=ATOL, rtol=0)


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("name", FAMILIES)
def test_question_answering_logits_and_loss(pair, name, padding):
    ours, theirs, _ = pair(name, HEADS[1])
    ids, mask = batch(name, PADDINGS[padding])
    start, end = torch.tensor([1, 3, 0]), torch.tensor([4, 30, 2])  # 30: past the end, ignored
    a = ours(input_ids=ids, attention_mask=mask, start_positions=start, end_positions=end)
    b = theirs(input_ids=ids, attention_mask=mask, start_positions=start, end_positions=end)
    torch.testing.assert_close(a.start_logits, b.start_logits, atol=ATOL, rtol=0)
    torch.testing.assert_close(a.end_logits, b.end_logits, atol=ATOL, rtol=0)
    torch.testing.assert_close(a.loss, b.loss, atol=ATOL, rtol=0)


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("name", ["bart", "t5"])
def test_attentions_hidden_states_and_tuples(pair, name, head):
    """Every field of the output, against transformers' eager attention; return_dict=False gives the
    same tuple, and given decoder_input_ids are used instead of shifting input_ids."""
    import transformers

    ours, _, folder = pair(name, head)
    theirs = getattr(transformers, FAMILIES[name][1] + head).from_pretrained(folder, attn_implementation="eager").eval()
    ids, mask = batch(name, PADDINGS["padded"])
    decoder_ids = torch.randint(3, 97, ids.shape, generator=torch.Generator().manual_seed(1))
    decoder_ids[:, 0] = 0
    kw = dict(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids, output_attentions=True,
              output_hidden_states=True)
    a, b = ours(**kw), theirs(**kw)
    assert list(a.keys()) == list(b.keys())
    keep = mask.bool()
    flat = lambda t: [t] if torch.is_tensor(t) else list(t)  # noqa: E731
    for field in b.keys():
        if field == "past_key_values":
            continue
        x, y = flat(a[field]), flat(b[field])
        assert len(x) == len(y), field
        for u, v in zip(x, y):
            if field.startswith("encoder") and u.dim() == 3:  # (B, T, C): padded encoder positions are undefined
                u, v = u[keep], v[keep]
            torch.testing.assert_close(u, v, atol=ATOL, rtol=0, msg=field)
    as_tuple = ours(**kw, return_dict=False)
    assert len(as_tuple) == len(theirs(**kw, return_dict=False)) == len(a)
    torch.testing.assert_close(as_tuple[0], a[0], atol=0, rtol=0)


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("name", ["bart", "t5"])
def test_gradient_checkpointing_gives_the_same_gradients(pair, name, head):
    _, _, folder = pair(name, head)
    ids, mask = batch(name, PADDINGS["padded"])
    targets = dict(labels=torch.tensor([0, 1, 1])) if head == HEADS[0] else \
        dict(start_positions=torch.tensor([1, 2, 0]), end_positions=torch.tensor([3, 4, 2]))
    grads = []
    for checkpointing in (False, True):
        model = getattr(pretrained, FAMILIES[name][1] + head).from_pretrained(folder)
        if checkpointing:
            model.gradient_checkpointing_enable()
        model.train()  # with dropout: the recomputed forward replays the same random state
        torch.manual_seed(3)
        model(input_ids=ids, attention_mask=mask, **targets).loss.backward()
        grads.append({k: p.grad for k, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    for key in grads[0]:
        torch.testing.assert_close(grads[1][key], grads[0][key], atol=1e-6, rtol=0, msg=key)


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("name", FAMILIES)
def test_checkpoint_keys_round_trip(pair, tmp_path, name, head):
    """Our parameter names are transformers', our file holds what theirs holds, and each library loads
    the other's file with nothing missing."""
    import transformers
    from safetensors import safe_open

    ours, theirs, folder = pair(name, head)
    assert set(ours.state_dict()) == set(theirs.state_dict())
    ours.save_pretrained(tmp_path)
    keys = lambda f: set(safe_open(str(f / "model.safetensors"), "pt").keys())  # noqa: E731
    assert keys(tmp_path) == keys(folder)
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == [FAMILIES[name][1] + head]
    again, info = getattr(transformers, FAMILIES[name][1] + head).from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    ids, mask = batch(name, PADDINGS["padded"])
    out = lambda m: m(input_ids=ids, attention_mask=mask)[0]  # noqa: E731
    torch.testing.assert_close(out(again.eval()), out(theirs), atol=ATOL, rtol=0)
    _, info = getattr(pretrained, FAMILIES[name][1] + head).from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]


@pytest.mark.parametrize("name", FAMILIES)
def test_auto_classes_find_the_heads(pair, name):
    for auto, head in (("AutoModelForSequenceClassification", HEADS[0]), ("AutoModelForQuestionAnswering", HEADS[1])):
        _, _, folder = pair(name, head)
        assert type(getattr(pretrained, auto).from_pretrained(folder)).__name__ == FAMILIES[name][1] + head


def test_head_starts_from_a_generation_checkpoint(tmp_path):
    """Fine-tuning starts from a seq2seq LM file: the encoder-decoder loads under the head's prefix and the
    new classifier is initialised (finite, T5's scale), not left as uninitialised memory."""
    import transformers

    transformers.T5ForConditionalGeneration(transformers.T5Config(**T5)).save_pretrained(tmp_path)
    model, info = pretrained.T5ForSequenceClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert sorted(info["missing_keys"]) == sorted(f"classification_head.{m}.{p}" for m in ("dense", "out_proj")
                                                  for p in ("weight", "bias"))
    assert model.transformer.encoder.embed_tokens.weight is model.transformer.shared.weight
    for p in model.classification_head.parameters():
        assert torch.isfinite(p).all() and p.abs().max() < 5
    qa = pretrained.T5ForQuestionAnswering.from_pretrained(tmp_path)
    assert torch.isfinite(qa.qa_outputs.weight).all() and (qa.qa_outputs.bias == 0).all()


# --- errors and configs ---

@pytest.mark.parametrize("name", ["bart", "t5"])
def test_rows_with_different_eos_counts_are_refused(pair, name):
    ours, _, _ = pair(name, HEADS[0], num_labels=3)
    ids, mask = batch(name)
    eos = FAMILIES[name][3]
    two = ids.clone()
    two[1, 4] = eos
    with pytest.raises(InputError, match=r"same number .* eos tokens .*\[1, 2, 1\]"):
        ours(input_ids=two, attention_mask=mask)
    none = ids.masked_fill(ids == eos, 5)
    with pytest.raises(InputError, match="at least one"):
        ours(input_ids=none, attention_mask=mask)
    with pytest.raises(InputError, match="pass input_ids"):
        ours(inputs_embeds=torch.randn(3, 9, 32), decoder_input_ids=ids)
    with pytest.raises(InputError, match="as long as input_ids"):
        ours(input_ids=ids, decoder_input_ids=ids[:, :4])


def test_config_defaults_and_label_count():
    import transformers

    assert pretrained.BartConfig().num_labels == transformers.BartConfig().num_labels == 3
    assert pretrained.MarianConfig().num_labels == transformers.MarianConfig().num_labels == 2
    assert pretrained.BartForQuestionAnswering(pretrained.BartConfig(**BART)).qa_outputs.out_features == 2
    with pytest.raises(ConfigError, match="num_labels must be 2"):
        pretrained.T5ForQuestionAnswering(pretrained.T5Config(**T5, num_labels=3))


# --- zero-shot-classification, the default model's head ---

CORPUS = ["The quick brown fox jumps over the lazy dog.", "Paris is the capital of France and of fashion.",
          "This example is about politics, sports or cooking.", "Machine learning models turn text into numbers."] * 4


@pytest.fixture(scope="module")
def mnli_path(tmp_path_factory):
    """A tiny random BartForSequenceClassification with MNLI's labels and a byte-level BPE tokenizer named
    BartTokenizer, as facebook/bart-large-mnli's tokenizer_config.json names it."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    folder = tmp_path_factory.mktemp("bart-mnli")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))  # <s> A </s></s> B </s>
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "BartTokenizer", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>",
        "unk_token": "<unk>", "mask_token": "<mask>", "sep_token": "</s>", "cls_token": "<s>", "model_max_length": 64}))
    labels = ["contradiction", "neutral", "entailment"]
    config = transformers.BartConfig(**dict(BART, vocab_size=tok.get_vocab_size()), id2label=dict(enumerate(labels)),
                                     label2id={label: i for i, label in enumerate(labels)})
    torch.manual_seed(0)
    model = transformers.BartForSequenceClassification(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
        model.classification_head.out_proj.weight.mul_(2)  # sharper, varied scores
    model.save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("kwargs", [{}, {"multi_label": True}, {"batch_size": 3}])
def test_zero_shot_pipeline_matches_transformers(mnli_path, kwargs):
    import transformers

    transformers.logging.set_verbosity_error()
    ours = pretrained.pipeline("zero-shot-classification", model=mnli_path)
    theirs = transformers.pipeline("zero-shot-classification", model=mnli_path)
    assert type(ours.model).__name__ == "BartForSequenceClassification"
    texts = ["Paris is the capital of France.", "The quick fox jumps over the lazy dog, again and again."]
    labels = ["politics", "sports", "cooking and food"]
    a = ours(texts, candidate_labels=labels, **kwargs)
    b = theirs(texts, candidate_labels=labels, **kwargs)
    for x, y in zip(a, b, strict=True):
        assert x["sequence"] == y["sequence"] and x["labels"] == y["labels"]
        torch.testing.assert_close(torch.tensor(x["scores"]), torch.tensor(y["scores"]), atol=1e-5, rtol=0)
    assert max(r["scores"][0] - r["scores"][-1] for r in a) > 0.01  # the labels are told apart


def test_bart_tokenizer_is_robertas_without_token_type_ids(mnli_path):
    tokenizer = pretrained.AutoTokenizer.from_pretrained(mnli_path)
    assert type(tokenizer).__name__ == "BartTokenizerFast"
    assert set(tokenizer("a text", "a hypothesis")) == {"input_ids", "attention_mask"}
