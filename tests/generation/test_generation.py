"""generate() pieces on their own: GenerationConfig files, processors' statistics, stopping,
streamers, caches and the errors a bad request gets."""

from __future__ import annotations

import json
import shutil
import threading

import pytest
import torch

import pretrained
from pretrained.generation import processors as P

TINY = dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2)


@pytest.fixture(scope="module")
def llama():
    torch.manual_seed(0)
    return pretrained.LlamaForCausalLM(pretrained.LlamaConfig(**TINY)).eval()


@pytest.fixture(scope="module")
def gpt2():
    torch.manual_seed(0)
    return pretrained.GPT2LMHeadModel(pretrained.GPT2Config(vocab_size=99, n_embd=32, n_layer=2, n_head=4,
                                                            n_positions=24, eos_token_id=98)).eval()


class CharTokenizer:
    """Token i decodes to chr(ord('a') + i % 26); enough for streamers and stop strings."""

    def decode(self, ids, **_):
        ids = ids.tolist() if hasattr(ids, "tolist") else ids
        return "".join(" " if i % 5 == 0 else chr(ord("a") + i % 26) for i in ids)


# --- GenerationConfig ---

def test_generation_config_round_trip(tmp_path):
    config = pretrained.GenerationConfig(max_new_tokens=7, do_sample=True, top_p=0.9, eos_token_id=[2, 3], custom=1)
    config.save_pretrained(tmp_path)
    data = json.loads((tmp_path / "generation_config.json").read_text())
    assert data == {"max_new_tokens": 7, "do_sample": True, "top_p": 0.9, "eos_token_id": [2, 3], "custom": 1}
    assert pretrained.GenerationConfig.from_pretrained(tmp_path) == config


def test_generation_config_read_by_transformers(tmp_path):
    import transformers

    pretrained.GenerationConfig(max_new_tokens=7, num_beams=3, eos_token_id=5).save_pretrained(tmp_path)
    theirs = transformers.GenerationConfig.from_pretrained(tmp_path)
    assert (theirs.max_new_tokens, theirs.num_beams, theirs.eos_token_id) == (7, 3, 5)


def test_generation_config_file_is_used_and_kwargs_win(llama, tmp_path):
    llama.save_pretrained(tmp_path)
    pretrained.GenerationConfig(max_new_tokens=3, eos_token_id=2, pad_token_id=0).save_pretrained(tmp_path)
    model = pretrained.AutoModelForCausalLM.from_pretrained(tmp_path)
    ids = torch.tensor([[5, 6, 7]])
    assert model.generation_config.max_new_tokens == 3
    assert model.generate(ids, min_new_tokens=3).shape == (1, 6)
    assert model.generate(ids, max_new_tokens=5, min_new_tokens=5).shape == (1, 8)


@pytest.mark.parametrize("bad", [dict(max_new_tokens=0), dict(max_new_tokens=-3), dict(num_beams=0),
                                 dict(top_p=1.5), dict(do_sample=True, temperature=0.0), dict(early_stopping="sometimes")])
def test_generation_config_rejects(bad):
    with pytest.raises(ValueError, match=next(iter(bad)) if "temperature" not in bad else "temperature"):
        pretrained.GenerationConfig(**bad)


# --- processors: statistical checks ---

def test_top_k_never_leaves_the_k_best():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(64, 500, generator=g)
    kept = P.top_k_filter(scores, 7)
    best = scores.topk(7).indices
    samples = torch.multinomial(kept.softmax(-1), 200, replacement=True, generator=g)
    assert all(set(s.tolist()) <= set(b.tolist()) for s, b in zip(samples, best))


def test_top_p_keeps_the_smallest_set_reaching_p():
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(32, 200, generator=g) * 3
    p = 0.8
    kept = P.top_p_filter(scores, p)
    probs = scores.softmax(-1)
    for row in range(32):
        mask = torch.isfinite(kept[row])
        mass = probs[row][mask].sum()
        assert mass >= p - 1e-6  # the kept set reaches p ...
        smallest = probs[row][mask].min()
        assert mass - smallest < p + 1e-6  # ... and is minimal: without its least likely token it would not


def test_min_p_and_typical_keep_at_least_min_tokens():
    scores = torch.tensor([[10.0, 0.0, 0.0, 0.0]])
    assert torch.isfinite(P.min_p_filter(scores, 0.5, min_keep=2)).sum() == 2
    assert torch.isfinite(P.typical_filter(scores, 0.1, min_keep=3)).sum() >= 3


def test_repetition_penalty_ignores_left_padding():
    scores = torch.tensor([[1.0, -1.0, 2.0, 4.0]])
    ids = torch.tensor([[3, 1, 2]])
    out = P.repetition_penalty(ids, scores, 2.0, ignore_before=torch.tensor([1]))
    assert out.tolist() == [[1.0, -2.0, 1.0, 4.0]]  # token 3 sits in the padding: untouched


def test_no_repeat_ngram_bans_the_completion():
    assert P.banned_ngram_tokens([1, 2, 3, 1, 2], 3) == [3]
    assert P.banned_ngram_tokens([1, 2], 3) == []


def test_sampling_distribution_matches_probabilities(llama):
    ids = torch.tensor([[5, 6, 7]])
    probs = llama(ids).logits[0, -1].softmax(-1)
    torch.manual_seed(0)
    out = llama.generate(ids.expand(2000, -1), do_sample=True, top_k=0, max_new_tokens=1)
    counts = torch.bincount(out[:, -1], minlength=99).float() / 2000
    assert (counts - probs).abs().max() < 0.03


# --- stopping, streamers ---

def test_stop_strings_stop_generation(llama):
    tok = CharTokenizer()
    ids = torch.tensor([[5, 6, 7]])
    full = llama.generate(ids, max_new_tokens=12, min_new_tokens=12)
    text = tok.decode(full[0, 3:])
    stop = text[4:6]
    out = llama.generate(ids, max_new_tokens=12, stop_strings=stop, tokenizer=tok)
    assert tok.decode(out[0]).endswith(stop) and out.shape[1] <= 3 + 6  # may match across the prompt's end


def test_user_stopping_criteria(llama):
    class AtLength(pretrained.StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), input_ids.shape[1] >= 6)

    out = llama.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=20, min_new_tokens=20,
                         stopping_criteria=pretrained.StoppingCriteriaList([AtLength()]))
    assert out.shape == (1, 6)


def test_text_streamer_prints_the_final_text(llama, capsys):
    tok = CharTokenizer()
    ids = torch.tensor([[5, 6, 7]])
    out = llama.generate(ids, max_new_tokens=15, streamer=pretrained.TextStreamer(tok, skip_prompt=True))
    assert capsys.readouterr().out == tok.decode(out[0, 3:]) + "\n"


def test_text_iterator_streamer_from_a_thread(llama):
    tok = CharTokenizer()
    ids = torch.tensor([[5, 6, 7]])
    streamer = pretrained.TextIteratorStreamer(tok, timeout=30)
    result = {}
    thread = threading.Thread(target=lambda: result.update(out=llama.generate(ids, max_new_tokens=15, streamer=streamer)))
    thread.start()
    text = "".join(streamer)
    thread.join()
    assert text == tok.decode(result["out"][0])


# --- caches ---

def test_dynamic_cache_grows_and_reorders():
    cache = pretrained.DynamicCache()
    k = torch.arange(2 * 1 * 70 * 2, dtype=torch.float).view(2, 1, 70, 2)
    keys, _ = cache.update(k, k, 0)
    keys, _ = cache.update(k[:, :, :1], k[:, :, :1], 0)
    assert keys.shape == (2, 1, 71, 2) and cache.get_seq_length() == 71
    cache.reorder_cache(torch.tensor([1, 1]))
    assert torch.equal(cache[0][0][0], cache[0][0][1])


@pytest.mark.parametrize("make", [pretrained.DynamicCache, lambda: pretrained.StaticCache(max_cache_len=80)])
def test_cache_reorders_interleaved_with_growth_equal_plain_indexing(make):
    """reorder_cache swaps in a second buffer: written slots must equal plain indexing after any mix of
    updates (a dynamic buffer doubling past 64 slots included) and reorders, layer by layer."""
    cache, g = make(), torch.Generator().manual_seed(0)
    expected = [torch.empty(4, 2, 0, 3), torch.empty(4, 2, 0, 3)]
    for step, T in enumerate([5, 1, 1, 60, 1, 1]):
        for layer in range(2):
            k = torch.randn(4, 2, T, 3, generator=g)
            cache.update(k, -k, layer)
            expected[layer] = torch.cat([expected[layer], k], dim=2)
        index = torch.randint(0, 4, (4,), generator=g)
        cache.reorder_cache(index)
        expected = [e[index] for e in expected]
        for layer in range(2):
            n = expected[layer].shape[2]
            keys, values = cache._keys[layer][:, :, :n], cache._values[layer][:, :, :n]
            assert torch.equal(keys, expected[layer]) and torch.equal(values, -expected[layer]), (step, layer)
            assert cache._keys[layer][:, :, n:].isfinite().all() or not cache.is_static


@pytest.mark.parametrize("model_name", ["llama", "gpt2"])
def test_static_cache_decode_step_traces_to_one_graph(request, model_name):
    """With a static cache, torch.compile captures the decode step once (no graph break, no recompile
    as the position moves): one graph for the prompt, one for every later token. Left padding too;
    tokens equal the uncompiled dynamic-cache ones."""
    from torch._dynamo.testing import CompileCounter

    model = request.getfixturevalue(model_name)
    ids = torch.tensor([[0, 0, 5, 6, 7], [3, 4, 5, 6, 7]])
    mask = (ids != 0).long()
    kwargs = dict(attention_mask=mask, max_new_tokens=8, min_new_tokens=8, pad_token_id=0)
    expected = model.generate(ids, **kwargs)
    torch._dynamo.reset()
    counter = CompileCounter()
    eager_forward = model.forward
    model.forward = torch.compile(model.forward, backend=counter, fullgraph=True, dynamic=False)
    try:
        out = model.generate(ids, cache_implementation="static", **kwargs)
    finally:
        model.forward = eager_forward
        torch._dynamo.reset()
    assert counter.frame_count == 2
    assert torch.equal(out, expected)


@pytest.mark.parametrize("model_name", ["llama", "gpt2"])
def test_compile_config_compiles_the_decode_step_once(request, model_name):
    """generate(cache_implementation="static", compile_config=...) compiles the one-token step (the prompt
    runs eager) into one graph, kept on the model for later calls; tokens equal eager decoding. A dynamic
    cache or disable_compile runs eager; so does a CPU without a compile_config (as in Transformers)."""
    from torch._dynamo.testing import CompileCounter

    model = request.getfixturevalue(model_name)
    ids = torch.tensor([[0, 0, 5, 6, 7], [3, 4, 5, 6, 7]])
    kwargs = dict(attention_mask=(ids != 0).long(), max_new_tokens=8, min_new_tokens=8, pad_token_id=0)
    expected = model.generate(ids, **kwargs)
    torch._dynamo.reset()
    counter = CompileCounter()
    config = pretrained.CompileConfig(backend=counter, fullgraph=True, dynamic=False, mode=None)  # mode is inductor's
    try:
        assert torch.equal(model.generate(ids, cache_implementation="static", compile_config=config, **kwargs), expected)
        assert counter.frame_count == 1 and counter.op_count > 0
        model.generation_config.compile_config = config  # from the model's config: copied per call, same backend
        assert torch.equal(model.generate(ids, cache_implementation="static", **kwargs), expected)
        model.generate(ids, compile_config=config, **kwargs)  # dynamic cache
        model.generate(ids, cache_implementation="static", disable_compile=True, **kwargs)
        model.generation_config.compile_config = None
        model.generate(ids, cache_implementation="static", **kwargs)
        assert counter.frame_count == 1
    finally:
        model.generation_config.compile_config = None
        model._compiled_call = None
        torch._dynamo.reset()


@pytest.mark.skipif(shutil.which("g++") is None, reason="inductor builds its CPU kernels with a C++ compiler")
def test_inductor_compiled_decode_matches_eager(llama):
    """The real inductor build of the decode step (one-row linears as reductions, the rest fused): the same
    tokens, and logits within float32 rounding of eager decoding, for left-padded prompts."""
    ids = torch.tensor([[0, 0, 5, 6, 7], [3, 4, 5, 6, 7]])
    mask = (ids != 0).long()
    kwargs = dict(max_new_tokens=6, min_new_tokens=6, pad_token_id=0, return_dict_in_generate=True, output_logits=True)
    compiled_kwargs = dict(cache_implementation="static", **kwargs,
                           compile_config=pretrained.CompileConfig(fullgraph=True, dynamic=False))
    eager = llama.generate(ids, attention_mask=mask, **kwargs)
    torch._dynamo.reset()
    try:
        compiled = llama.generate(ids, attention_mask=mask, **compiled_kwargs)
        one_row = llama.generate(ids[1:], attention_mask=mask[1:], **compiled_kwargs)
    finally:
        llama._compiled_call = None
        torch._dynamo.reset()
    assert torch.equal(compiled.sequences, eager.sequences)
    torch.testing.assert_close(torch.stack(compiled.logits), torch.stack(eager.logits), atol=1e-5, rtol=1e-5)
    assert torch.equal(one_row.sequences, eager.sequences[1:])
    torch.testing.assert_close(torch.stack(one_row.logits), torch.stack(eager.logits)[:, 1:], atol=1e-5, rtol=1e-5)


def test_compile_config_is_checked_and_not_saved(tmp_path):
    config = pretrained.GenerationConfig(compile_config={"fullgraph": True}, disable_compile=True)
    assert config.compile_config == pretrained.CompileConfig(fullgraph=True)
    config.save_pretrained(tmp_path)  # a backend may be a callable: Transformers does not save it either
    loaded = pretrained.GenerationConfig.from_pretrained(tmp_path)
    assert loaded.compile_config is None and loaded.disable_compile is True
    with pytest.raises(ValueError, match="compile_config"):
        pretrained.GenerationConfig(compile_config="inductor")


def test_static_cache_overflow_is_an_error():
    cache = pretrained.StaticCache(max_cache_len=4)
    k = torch.zeros(1, 1, 3, 2)
    cache.update(k, k, 0)
    with pytest.raises(ValueError, match="max_cache_len"):
        cache.update(k, k, 0)


# --- bad requests ---

def test_prompt_longer_than_learned_positions(gpt2):
    with pytest.raises(ValueError, match="max_position_embeddings"):
        gpt2.generate(torch.ones(1, 30, dtype=torch.long), max_new_tokens=2)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        gpt2.generate(torch.ones(1, 20, dtype=torch.long), max_new_tokens=10)


@pytest.mark.parametrize("kwargs, match", [
    (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(num_beams=2, streamer=True), "streamer"),
    (dict(num_beams=2, do_sample=True, streamer=True), "streamer"),
    (dict(num_return_sequences=3), "num_return_sequences"),
    (dict(stop_strings="x"), "tokenizer"),
    (dict(cache_implementation="paged"), "cache_implementation"),
    (dict(max_length=3), "max_length"),
    (dict(not_an_input=1), "not_an_input"),
])
def test_bad_requests(llama, kwargs, match):
    if kwargs.get("streamer"):
        kwargs["streamer"] = pretrained.TextStreamer(CharTokenizer())
    with pytest.raises(ValueError, match=match):
        llama.generate(torch.tensor([[5, 6, 7]]), **kwargs)


def test_min_new_tokens_without_eos_is_an_error():
    torch.manual_seed(0)
    model = pretrained.LlamaForCausalLM(pretrained.LlamaConfig(**dict(TINY, eos_token_id=None))).eval()
    with pytest.raises(ValueError, match="eos_token_id"):
        model.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=4, min_new_tokens=2)


def test_streamer_with_a_batch_is_an_error(llama):
    with pytest.raises(ValueError, match="one sequence"):
        llama.generate(torch.tensor([[5, 6], [7, 8]]), max_new_tokens=2, streamer=pretrained.TextStreamer(CharTokenizer()))


def test_beam_sampling_runs(llama):
    torch.manual_seed(0)
    out = llama.generate(torch.tensor([[5, 6, 7]]), num_beams=3, do_sample=True, max_new_tokens=5,
                         num_return_sequences=2)
    assert out.shape[0] == 2
