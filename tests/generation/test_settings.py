"""No silently ignored generation settings: the ones we apply (epsilon/eta cutoffs, renormalize_logits,
remove_invalid_values, suppress_tokens, begin_suppress_tokens) give transformers' tokens and scores;
a bad generation_config.json is an error naming the file and field; Transformers' options we do not
implement are refused by name."""

from __future__ import annotations

import json

import pytest
import torch

import pretrained
from checkpoints import hf_checkpoint
from pretrained.errors import CheckpointError, ConfigError, UnsupportedOptionError
from pretrained.generation import processors as P

TINY_LLAMA = dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2)
TINY_BART = dict(vocab_size=99, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                 decoder_attention_heads=4, encoder_ffn_dim=37, decoder_ffn_dim=37, max_position_embeddings=64)
ATOL = 1e-5


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    """(ours, theirs, folder) on one tiny random Llama; its logits are sharpened so cutoffs remove tokens."""
    import transformers

    folder = hf_checkpoint(tmp_path_factory.mktemp("llama"), "LlamaConfig", "LlamaForCausalLM", **TINY_LLAMA)
    theirs = transformers.LlamaForCausalLM.from_pretrained(folder).eval()
    with torch.no_grad():
        theirs.lm_head.weight.mul_(30.0)
    theirs.save_pretrained(folder)
    return pretrained.AutoModelForCausalLM.from_pretrained(folder), theirs, folder


@pytest.fixture(scope="module")
def bart(tmp_path_factory):
    """(ours, theirs) on a tiny random BART whose final_logits_bias makes token 7 +inf, 8 -inf and 9 nan."""
    import transformers

    folder = tmp_path_factory.mktemp("bart")
    torch.manual_seed(0)
    theirs = transformers.BartForConditionalGeneration(transformers.BartConfig(**TINY_BART)).eval()
    with torch.no_grad():
        for p in theirs.parameters():
            p.add_(torch.randn_like(p) * 0.2)
        theirs.lm_head.weight.mul_(10.0)
    theirs.save_pretrained(folder)
    return pretrained.AutoModelForSeq2SeqLM.from_pretrained(folder), theirs, folder


def prompts(lengths=(7, 5, 3), pad=0, seed=0):
    """Left-padded decoder prompts (B, T) and their mask; ids avoid the special tokens 0..2."""
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    ids = torch.randint(3, 99, (len(lengths), T), generator=g)
    mask = (torch.arange(T)[None] >= T - torch.tensor(lengths)[:, None]).long()
    return ids.masked_fill(mask == 0, pad), mask


def both(ours, theirs, seed=None, **kwargs):
    outs = []
    for model in (ours, theirs):
        if seed is not None:
            torch.manual_seed(seed)
        outs.append(model.generate(**kwargs))
    return outs


def assert_same(a, b):
    assert a.sequences.tolist() == b.sequences.tolist()
    for name in ("scores", "logits"):
        if getattr(b, name) is not None:
            assert len(getattr(a, name)) == len(getattr(b, name))
            for x, y in zip(getattr(a, name), getattr(b, name)):
                torch.testing.assert_close(x, y, atol=ATOL, rtol=1e-6)


# --- the processors against transformers' classes ---

def random_scores(seed=0, B=4, V=200, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(B, V, generator=g) * scale
    scores[0, :150] = -float("inf")  # a row already filtered by an earlier warper
    return scores


@pytest.mark.parametrize("name, kwargs", [
    ("EpsilonLogitsWarper", dict(epsilon=3e-3)),
    ("EpsilonLogitsWarper", dict(epsilon=0.2, min_tokens_to_keep=3)),
    ("EpsilonLogitsWarper", dict(epsilon=0.05, filter_value=-1e4)),
    ("EtaLogitsWarper", dict(epsilon=3e-3)),
    ("EtaLogitsWarper", dict(epsilon=0.5, min_tokens_to_keep=4)),
    ("EtaLogitsWarper", dict(epsilon=0.2, filter_value=-50.0, device="cpu")),
    ("TopKLogitsWarper", dict(top_k=5, filter_value=-7.0)),
    ("TopPLogitsWarper", dict(top_p=0.6, filter_value=-7.0)),
    ("MinPLogitsWarper", dict(min_p=0.1, filter_value=-7.0)),
    ("TypicalLogitsWarper", dict(mass=0.7, filter_value=-7.0)),
])
@pytest.mark.parametrize("seed", [0, 1])
def test_warpers_match_transformers(name, kwargs, seed):
    import transformers

    scores = random_scores(seed)
    ids = torch.zeros(scores.shape[0], 3, dtype=torch.long)
    expected = getattr(transformers, name)(**kwargs)(ids, scores.clone())
    got = getattr(P, name)(**kwargs)(ids, scores.clone())
    torch.testing.assert_close(got, expected, atol=0, rtol=0)
    assert (got[1:] != scores[1:]).any()  # the setting removed something


def test_warpers_are_exported_like_transformers():
    for name in ("EpsilonLogitsWarper", "EtaLogitsWarper", "InfNanRemoveLogitsProcessor", "LogitNormalization",
                 "SuppressTokensLogitsProcessor", "SuppressTokensAtBeginLogitsProcessor"):
        assert getattr(pretrained, name) is getattr(P, name)
        assert getattr(pretrained.generation, name) is getattr(P, name)


@pytest.mark.parametrize("make, match", [
    (lambda: P.EpsilonLogitsWarper(0.0), "epsilon_cutoff"),
    (lambda: P.EpsilonLogitsWarper(1.0), "epsilon_cutoff"),
    (lambda: P.EtaLogitsWarper(-0.1), "eta_cutoff"),
    (lambda: P.EtaLogitsWarper(1.5), "eta_cutoff"),
    (lambda: P.EpsilonLogitsWarper(0.1, min_tokens_to_keep=0), "min_tokens_to_keep"),
    (lambda: P.EtaLogitsWarper(0.1, min_tokens_to_keep=0), "min_tokens_to_keep"),
])
def test_warper_arguments_are_checked(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_inf_nan_removal_matches_transformers():
    import transformers

    scores = torch.tensor([[float("nan"), float("inf"), -float("inf"), 1.5, -2.0],
                           [0.0, -float("inf"), float("nan"), float("inf"), 3.0]])
    ids = torch.zeros(2, 1, dtype=torch.long)
    expected = transformers.InfNanRemoveLogitsProcessor()(ids, scores)
    got = P.InfNanRemoveLogitsProcessor()(ids, scores)
    assert torch.equal(got, expected)
    assert got[0, 2] == torch.finfo(torch.float32).min and got[1, 3] == torch.finfo(torch.float32).max
    half = scores.half()  # the limits are the dtype's
    assert torch.equal(P.InfNanRemoveLogitsProcessor()(ids, half),
                       transformers.InfNanRemoveLogitsProcessor()(ids, half))


def test_logit_normalization_matches_transformers():
    import transformers

    scores, ids = random_scores(2), torch.zeros(4, 1, dtype=torch.long)
    torch.testing.assert_close(P.LogitNormalization()(ids, scores), transformers.LogitNormalization()(ids, scores),
                               atol=0, rtol=0)


@pytest.mark.parametrize("length", [3, 4, 5])
def test_suppress_processors_match_transformers(length):
    import transformers

    scores, ids = random_scores(3), torch.zeros(4, length, dtype=torch.long)
    tokens = [5, 17, 199, 250]  # 250 is past the vocabulary: never produced, ignored
    for name, args in (("SuppressTokensLogitsProcessor", (tokens,)),
                       ("SuppressTokensAtBeginLogitsProcessor", (tokens, 4))):
        expected = getattr(transformers, name)(*args)(ids, scores.clone())
        torch.testing.assert_close(getattr(P, name)(*args)(ids, scores.clone()), expected, atol=0, rtol=0)
    begin = P.SuppressTokensAtBeginLogitsProcessor(tokens, 4)(ids, scores)
    assert bool(begin[:, 5].isinf().all()) == (length == 4)


# --- generate() against transformers ---

@pytest.mark.parametrize("settings", [
    dict(epsilon_cutoff=0.02, top_k=0),
    dict(epsilon_cutoff=3e-3, top_k=20, temperature=1.5),
    dict(eta_cutoff=0.3, top_k=0),
    dict(eta_cutoff=0.05, top_p=0.95, temperature=0.8, num_return_sequences=2),
    dict(epsilon_cutoff=0.01, eta_cutoff=0.2, renormalize_logits=True, top_k=0),
    dict(eta_cutoff=0.1, num_beams=3, top_k=0),  # beam sampling keeps at least eos + 1 tokens
    dict(renormalize_logits=True, top_k=10, min_p=0.05),
])
def test_sampling_same_seed_as_transformers(llama, settings):
    ours, theirs, _ = llama
    ids, mask = prompts()
    kwargs = dict(input_ids=ids, attention_mask=mask, max_new_tokens=10, do_sample=True, pad_token_id=0,
                  return_dict_in_generate=True, output_scores=True, output_logits=True, **settings)
    a, b = both(ours, theirs, seed=123, **kwargs)
    assert_same(a, b)
    if "epsilon_cutoff" in settings or "eta_cutoff" in settings:
        assert any(bool(s.isinf().any()) for s in a.scores)  # the cutoff removed tokens
    if settings.get("renormalize_logits"):
        for s in a.scores:
            torch.testing.assert_close(s.logsumexp(-1), torch.zeros(s.shape[0]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("settings", [
    dict(renormalize_logits=True),
    dict(renormalize_logits=True, num_beams=3, repetition_penalty=1.3),
    dict(suppress_tokens=[10, 11, 12], renormalize_logits=True),
    dict(remove_invalid_values=True),
    dict(epsilon_cutoff=0.1, eta_cutoff=0.1),  # warpers: not applied when not sampling, as in transformers
])
def test_greedy_settings_match_transformers(llama, settings):
    ours, theirs, _ = llama
    ids, mask = prompts()
    kwargs = dict(input_ids=ids, attention_mask=mask, max_new_tokens=8, pad_token_id=0,
                  return_dict_in_generate=True, output_scores=True, output_logits=True, **settings)
    assert_same(*both(ours, theirs, **kwargs))


@pytest.mark.parametrize("beams", [1, 3])
def test_begin_suppress_tokens_only_at_the_first_step(llama, beams):
    ours, theirs, _ = llama
    ids, mask = prompts()
    kwargs = dict(input_ids=ids, attention_mask=mask, max_new_tokens=8, pad_token_id=0, num_beams=beams)
    first = ours.generate(**kwargs)[:, ids.shape[1]]
    banned = sorted(set(first.tolist()))
    kwargs.update(begin_suppress_tokens=banned, return_dict_in_generate=True, output_scores=True)
    a, b = both(ours, theirs, **kwargs)
    assert_same(a, b)
    assert not any(t in banned for t in a.sequences[:, ids.shape[1]].tolist())
    assert not a.scores[1][:, banned].isinf().all()  # later steps are free again


@pytest.mark.parametrize("settings", [
    dict(),
    dict(forced_bos_token_id=5),  # the first free step is the one after the forced token
    dict(num_beams=2, forced_bos_token_id=5, renormalize_logits=True),
])
def test_begin_suppress_tokens_encoder_decoder(bart, settings):
    ours, theirs, _ = bart
    ids = torch.randint(3, 99, (2, 6), generator=torch.Generator().manual_seed(1))
    kwargs = dict(input_ids=ids, max_new_tokens=6, **settings)
    first_free = 2 if "forced_bos_token_id" in settings else 1
    banned = sorted(set(ours.generate(**kwargs)[:, first_free].tolist()))
    kwargs.update(begin_suppress_tokens=banned, return_dict_in_generate=True, output_scores=True)
    a, b = both(ours, theirs, **kwargs)
    assert_same(a, b)
    assert not any(t in banned for t in a.sequences[:, first_free].tolist())


@pytest.mark.parametrize("settings", [dict(), dict(do_sample=True, top_k=0), dict(num_beams=2)])
def test_remove_invalid_values_with_inf_and_nan_logits(bart, tmp_path, settings):
    """A final_logits_bias of +inf, -inf and nan: remove_invalid_values makes generation well defined,
    with transformers' numbers."""
    import transformers

    _, theirs, folder = bart
    theirs = transformers.BartForConditionalGeneration.from_pretrained(folder).eval()
    with torch.no_grad():
        theirs.final_logits_bias[0, 7:10] = torch.tensor([float("inf"), -float("inf"), float("nan")])
    theirs.save_pretrained(tmp_path)
    ours = pretrained.AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    ids = torch.randint(3, 99, (2, 6), generator=torch.Generator().manual_seed(2))
    kwargs = dict(input_ids=ids, max_new_tokens=4, remove_invalid_values=True, return_dict_in_generate=True,
                  output_scores=True, **settings)
    a, b = both(ours, theirs, seed=0, **kwargs)
    assert_same(a, b)
    assert all(bool(s.isfinite().all()) for s in a.scores)


# --- generation_config.json ---

def write_generation_config(folder, text: str | bytes):
    path = folder / "generation_config.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_missing_generation_config_uses_the_model_config(llama, tmp_path):
    ours, _, _ = llama
    ours.save_pretrained(tmp_path)
    (tmp_path / "generation_config.json").unlink(missing_ok=True)
    model = pretrained.AutoModelForCausalLM.from_pretrained(tmp_path)
    assert (model.generation_config.eos_token_id, model.generation_config.bos_token_id) == (2, 1)


@pytest.mark.parametrize("text", ["{not json", b"\xff\xfe{}", ""])
def test_corrupt_generation_config_names_the_file(llama, tmp_path, text):
    ours, _, _ = llama
    ours.save_pretrained(tmp_path)
    path = write_generation_config(tmp_path, text)
    with pytest.raises(CheckpointError, match=rf"{path.name}.*not valid JSON"):
        pretrained.GenerationConfig.from_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match=rf"{path.name}.*not valid JSON"):
        pretrained.AutoModelForCausalLM.from_pretrained(tmp_path)


@pytest.mark.parametrize("bad", [
    {"max_new_tokens": "ten"}, {"top_k": -1}, {"top_k": 2.5}, {"top_p": 1.5}, {"num_beams": 0},
    {"epsilon_cutoff": 1.0}, {"eta_cutoff": -0.1}, {"begin_suppress_tokens": "a"}, {"suppress_tokens": [1, "x"]},
    {"renormalize_logits": "yes"}, {"remove_invalid_values": 2}, {"do_sample": "true"}, {"min_length": -1},
    {"eos_token_id": "2"}, {"max_time": 0}, {"temperature": "hot"}, {"length_penalty": "long"},
])
def test_invalid_generation_config_names_the_file_and_field(llama, tmp_path, bad):
    ours, _, _ = llama
    ours.save_pretrained(tmp_path)
    path = write_generation_config(tmp_path, json.dumps(bad))
    field = next(iter(bad))
    with pytest.raises(ConfigError, match=rf"{path.name}.*{field}"):
        pretrained.GenerationConfig.from_pretrained(tmp_path)
    with pytest.raises(ConfigError, match=rf"{path.name}.*{field}"):
        pretrained.AutoModelForCausalLM.from_pretrained(tmp_path)
    with pytest.raises(ConfigError, match=field):
        pretrained.GenerationConfig(**bad)


def test_generation_config_must_be_an_object(llama, tmp_path):
    ours, _, _ = llama
    ours.save_pretrained(tmp_path)
    write_generation_config(tmp_path, "[1, 2]")
    with pytest.raises(CheckpointError, match="generation_config.json.*JSON object"):
        pretrained.AutoModelForCausalLM.from_pretrained(tmp_path)


def test_generation_config_from_a_subfolder(llama, tmp_path):
    ours, _, _ = llama
    ours.save_pretrained(tmp_path / "sub")
    pretrained.GenerationConfig(max_new_tokens=3).save_pretrained(tmp_path / "sub")
    pretrained.GenerationConfig(max_new_tokens=9).save_pretrained(tmp_path)
    assert pretrained.GenerationConfig.from_pretrained(tmp_path, subfolder="sub").max_new_tokens == 3


# --- options we do not implement ---

@pytest.mark.parametrize("option", [
    dict(guidance_scale=1.5), dict(sequence_bias={(5,): -1.0}), dict(exponential_decay_length_penalty=(2, 1.5)),
    dict(encoder_repetition_penalty=1.2), dict(encoder_no_repeat_ngram_size=2), dict(num_beam_groups=2),
    dict(diversity_penalty=0.5), dict(penalty_alpha=0.6), dict(dola_layers="low"), dict(constraints=[object()]),
    dict(force_words_ids=[[5]]), dict(prompt_lookup_num_tokens=3), dict(top_h=0.4), dict(token_healing=True),
    dict(low_memory=True), dict(watermarking_config={"bias": 2.0}), dict(assistant_early_exit=1),
    dict(prefill_chunk_size=4), dict(use_mtp=True),
    dict(assistant_model=object()), dict(prefix_allowed_tokens_fn=lambda b, ids: [5]),
    dict(negative_prompt_ids=torch.tensor([[5]])), dict(synced_gpus=True), dict(custom_generate="x/y"),
    dict(cache_implementation="offloaded"),
])
def test_unsupported_options_are_refused_by_name(llama, option):
    ours, _, _ = llama
    name = next(iter(option))
    with pytest.raises(UnsupportedOptionError, match=name):
        ours.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=2, **option)


def test_unsupported_option_in_generation_config_file(llama, tmp_path):
    ours, _, _ = llama
    ours.save_pretrained(tmp_path)
    write_generation_config(tmp_path, json.dumps({"exponential_decay_length_penalty": [2, 1.5], "eos_token_id": 2}))
    model = pretrained.AutoModelForCausalLM.from_pretrained(tmp_path)
    with pytest.raises(UnsupportedOptionError, match="exponential_decay_length_penalty"):
        model.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=2)


def test_neutral_values_of_unsupported_options_are_fine(llama, tmp_path):
    """Files written by older Transformers spell out the neutral values; those do nothing, as here."""
    ours, _, _ = llama
    ours.save_pretrained(tmp_path)
    neutral = dict(num_beam_groups=1, diversity_penalty=0.0, encoder_repetition_penalty=1.0,
                   encoder_no_repeat_ngram_size=0, guidance_scale=None, penalty_alpha=None, token_healing=False,
                   low_memory=None, num_assistant_tokens=20, num_assistant_tokens_schedule="constant",
                   assistant_confidence_threshold=0.4, sequence_bias=None, constraints=None)
    write_generation_config(tmp_path, json.dumps(neutral))
    model = pretrained.AutoModelForCausalLM.from_pretrained(tmp_path)
    ids = torch.tensor([[5, 6, 7]])
    assert torch.equal(model.generate(ids, max_new_tokens=3), ours.generate(ids, max_new_tokens=3))
    assert torch.equal(model.generate(ids, max_new_tokens=3, synced_gpus=False, assistant_model=None),
                       ours.generate(ids, max_new_tokens=3))


def test_invalid_generation_field_in_config_json_names_it(tmp_path):
    config = pretrained.LlamaConfig(**TINY_LLAMA)
    config.no_repeat_ngram_size = -2  # a legacy generation field, read when there is no generation_config.json
    with pytest.raises(ConfigError, match="config.json.*no_repeat_ngram_size"):
        pretrained.LlamaForCausalLM(config)


def test_transformers_full_generation_config_file_loads(llama, tmp_path):
    """Transformers 5 spells every unset field as null in a full dump: null means the default."""
    import transformers

    transformers.GenerationConfig(max_new_tokens=5, eos_token_id=2).to_json_file(
        tmp_path / "generation_config.json", use_diff=False)
    config = pretrained.GenerationConfig.from_pretrained(tmp_path)
    assert (config.max_new_tokens, config.num_beams, config.top_k, config.max_length) == (5, 1, 50, 20)
    assert config.unsupported() == {}


def test_bad_generate_arguments_name_the_field(llama):
    ours, _, _ = llama
    for bad in (dict(max_length=None), dict(epsilon_cutoff=2.0), dict(begin_suppress_tokens=5)):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            ours.generate(torch.tensor([[5, 6, 7]]), **bad)
