"""Decoders against transformers on the same tiny random checkpoints: logits (padded batches,
with and without a cache), greedy and beam-search tokens with left padding, static == dynamic."""

from __future__ import annotations

import pytest
import torch

import pretrained
from checkpoints import hf_checkpoint

TINY_LLAMA = dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2)
FAMILIES = {
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", dict(vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                                   bos_token_id=98, eos_token_id=98, pad_token_id=0)),
    "gpt2-scaled": ("GPT2Config", "GPT2LMHeadModel", dict(vocab_size=99, n_embd=32, n_layer=3, n_head=4, n_positions=64,
                                                          scale_attn_by_inverse_layer_idx=True, pad_token_id=0,
                                                          eos_token_id=98)),
    "llama": ("LlamaConfig", "LlamaForCausalLM", TINY_LLAMA),
    "llama-tied": ("LlamaConfig", "LlamaForCausalLM", dict(TINY_LLAMA, tie_word_embeddings=True, num_key_value_heads=1)),
    "llama-linear": ("LlamaConfig", "LlamaForCausalLM",
                     dict(TINY_LLAMA, rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 500.0})),
    "llama-dynamic": ("LlamaConfig", "LlamaForCausalLM",
                      dict(TINY_LLAMA, max_position_embeddings=8,
                           rope_parameters={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0})),
    "llama-llama3": ("LlamaConfig", "LlamaForCausalLM",
                     dict(TINY_LLAMA, rope_parameters={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                       "high_freq_factor": 4.0, "rope_theta": 500000.0,
                                                       "original_max_position_embeddings": 16})),
    "llama-yarn": ("LlamaConfig", "LlamaForCausalLM",
                   dict(TINY_LLAMA, rope_parameters={"rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0,
                                                     "original_max_position_embeddings": 16})),
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(TINY_LLAMA, sliding_window=4)),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", dict(TINY_LLAMA, num_key_value_heads=4)),
}
ATOL = 1e-5


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    cache = {}

    def get(name):
        if name not in cache:
            config_name, model_name, kwargs = FAMILIES[name]
            folder = hf_checkpoint(tmp_path_factory.mktemp(name), config_name, model_name, **kwargs)
            import transformers

            theirs = getattr(transformers, model_name).from_pretrained(folder).eval()
            ours = pretrained.AutoModelForCausalLM.from_pretrained(folder)
            cache[name] = ours, theirs, folder
        return cache[name]

    return get


def left_padded(lengths=(9, 6, 3), pad=0, seed=0):
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    ids = torch.randint(3, 97, (len(lengths), T), generator=g)
    mask = torch.zeros(len(lengths), T, dtype=torch.long)
    for row, n in enumerate(lengths):
        mask[row, T - n:] = 1
    return ids.masked_fill(mask == 0, pad), mask


@pytest.mark.parametrize("name", FAMILIES)
def test_logits_padded_batch(pair, name):
    ours, theirs, _ = pair(name)
    ids, mask = left_padded(lengths=(12, 7, 3))
    a = ours(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    b = theirs(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    keep = mask.bool()  # padded query positions attend to nothing: their outputs are undefined
    torch.testing.assert_close(a.logits[keep], b.logits[keep], atol=ATOL, rtol=0)
    assert len(a.hidden_states) == len(b.hidden_states)
    torch.testing.assert_close(a.hidden_states[-1][keep], b.hidden_states[-1][keep], atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", ["gpt2", "llama", "mistral", "qwen2"])
def test_cached_decode_equals_full_forward(pair, name):
    ours, _, _ = pair(name)
    ids, mask = left_padded(lengths=(10, 10, 10))
    full = ours(input_ids=ids, use_cache=False).logits
    for cache in (pretrained.DynamicCache(), pretrained.StaticCache(ours.config, max_cache_len=16)):
        out = ours(input_ids=ids[:, :6], past_key_values=cache, use_cache=True)
        steps = [out.logits]
        for t in range(6, 10):
            steps.append(ours(input_ids=ids[:, t:t + 1], past_key_values=cache, use_cache=True).logits)
        torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", FAMILIES)
def test_greedy_left_padded_batch(pair, name):
    ours, theirs, _ = pair(name)
    ids, mask = left_padded()
    kwargs = dict(max_new_tokens=12, do_sample=False, pad_token_id=0)
    a = ours.generate(ids, attention_mask=mask, **kwargs)
    b = theirs.generate(ids, attention_mask=mask, **kwargs)
    assert torch.equal(a, b)
    # each row equals that prompt alone
    for row in range(ids.shape[0]):
        n = int(mask[row].sum())
        alone = ours.generate(ids[row:row + 1, -n:], **kwargs)
        assert torch.equal(alone[0], a[row, ids.shape[1] - n:][:alone.shape[1]])


@pytest.mark.parametrize("name", ["gpt2", "llama", "mistral", "qwen2"])
def test_static_cache_equals_dynamic(pair, name):
    ours, _, _ = pair(name)
    ids, mask = left_padded()
    kwargs = dict(max_new_tokens=10, pad_token_id=0)
    dynamic = ours.generate(ids, attention_mask=mask, **kwargs)
    static = ours.generate(ids, attention_mask=mask, cache_implementation="static", **kwargs)
    no_cache = ours.generate(ids, attention_mask=mask, use_cache=False, **kwargs)
    assert torch.equal(dynamic, static)
    assert torch.equal(dynamic, no_cache)
    beams = dict(kwargs, num_beams=3, return_dict_in_generate=True)
    dynamic = ours.generate(ids, attention_mask=mask, **beams)
    static = ours.generate(ids, attention_mask=mask, cache_implementation="static", **beams)
    assert torch.equal(dynamic.sequences, static.sequences)
    assert static.past_key_values.get_seq_length() == dynamic.past_key_values.get_seq_length()


@pytest.mark.parametrize("name", ["gpt2", "llama", "mistral", "qwen2"])
@pytest.mark.parametrize("beam_kwargs", [
    dict(num_beams=3),
    dict(num_beams=4, num_return_sequences=2, length_penalty=0.5, early_stopping=True),
    dict(num_beams=2, early_stopping="never", no_repeat_ngram_size=2),
])
def test_beam_search_left_padded(pair, name, beam_kwargs):
    ours, theirs, _ = pair(name)
    ids, mask = left_padded()
    kwargs = dict(max_new_tokens=10, pad_token_id=0, eos_token_id=[5, 7], return_dict_in_generate=True,
                  output_scores=True, **beam_kwargs)
    a = ours.generate(ids, attention_mask=mask, **kwargs)
    b = theirs.generate(ids, attention_mask=mask, **kwargs)
    # hypotheses shorter than the longest are filled as Transformers does (`pad_token_id or eos[0]`)
    assert torch.equal(a.sequences, b.sequences)
    torch.testing.assert_close(a.sequences_scores, b.sequences_scores, atol=1e-4, rtol=0)
    assert torch.equal(a.beam_indices, b.beam_indices.to(a.beam_indices.dtype))


@pytest.mark.parametrize("name", ["gpt2", "llama"])
@pytest.mark.parametrize("sample_kwargs", [
    dict(top_k=0),
    dict(temperature=0.7, top_k=20),
    dict(top_p=0.8, top_k=0),
    dict(min_p=0.05, top_k=0, temperature=1.3),
    dict(typical_p=0.9, top_k=0),
    dict(repetition_penalty=1.3, top_k=10, num_return_sequences=2),
])
def test_sampling_same_seed(pair, name, sample_kwargs):
    ours, theirs, _ = pair(name)
    ids, mask = left_padded()
    kwargs = dict(max_new_tokens=10, do_sample=True, pad_token_id=0, **sample_kwargs)
    torch.manual_seed(123)
    a = ours.generate(ids, attention_mask=mask, **kwargs)
    torch.manual_seed(123)
    b = theirs.generate(ids, attention_mask=mask, **kwargs)
    assert torch.equal(a, b)


@pytest.mark.parametrize("gen_kwargs", [
    dict(repetition_penalty=1.5), dict(no_repeat_ngram_size=2), dict(bad_words_ids=[[10], [11, 12]]),
    dict(min_new_tokens=5, eos_token_id=[3, 4]), dict(eos_token_id=4), dict(output_logits=True),
])
def test_greedy_options(pair, gen_kwargs):
    ours, theirs, _ = pair("llama")
    ids, mask = left_padded()
    kwargs = dict(max_new_tokens=10, pad_token_id=0, return_dict_in_generate=True, output_scores=True, **gen_kwargs)
    a = ours.generate(ids, attention_mask=mask, **kwargs)
    b = theirs.generate(ids, attention_mask=mask, **kwargs)
    assert torch.equal(a.sequences, b.sequences)
    for x, y in zip(a.scores, b.scores):
        torch.testing.assert_close(x, y, atol=ATOL, rtol=0)
    if gen_kwargs.get("output_logits"):
        for x, y in zip(a.logits, b.logits):
            torch.testing.assert_close(x, y, atol=ATOL, rtol=0)


def test_sequence_classification_last_token(tmp_path):
    import transformers

    for config_name, model_name, kwargs in [("LlamaConfig", "LlamaForSequenceClassification", TINY_LLAMA),
                                            ("GPT2Config", "GPT2ForSequenceClassification", FAMILIES["gpt2"][2])]:
        folder = hf_checkpoint(tmp_path / model_name, config_name, model_name, num_labels=3, **kwargs)
        theirs = getattr(transformers, model_name).from_pretrained(folder).eval()
        ours = pretrained.AutoModelForSequenceClassification.from_pretrained(folder)
        ids, mask = left_padded()
        labels = torch.tensor([0, 2, 1])
        a, b = ours(input_ids=ids, attention_mask=mask, labels=labels), theirs(input_ids=ids, attention_mask=mask, labels=labels)
        torch.testing.assert_close(a.logits, b.logits, atol=ATOL, rtol=0)
        torch.testing.assert_close(a.loss, b.loss, atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", ["gpt2", "llama", "qwen2"])  # Conv1D transposes; fused q/k/v and gate/up (GQA, bias)
def test_save_round_trip_keeps_original_format(pair, tmp_path, name):
    from safetensors.torch import load_file

    ours, _, folder = pair(name)
    ours.save_pretrained(tmp_path)
    original, saved = load_file(f"{folder}/model.safetensors"), load_file(f"{tmp_path}/model.safetensors")
    assert set(saved) <= set(original)
    if name != "gpt2":  # GPT-2 checkpoints also carry the attention-mask buffers, which are not weights
        assert set(saved) == set(original)
    for key, tensor in saved.items():
        assert tensor.shape == original[key].shape and tensor.dtype == original[key].dtype, key
        assert torch.equal(tensor.view(torch.uint8), original[key].view(torch.uint8)), key  # bit for bit
    again = pretrained.AutoModelForCausalLM.from_pretrained(tmp_path)
    ids, _ = left_padded(lengths=(5,))
    torch.testing.assert_close(again(ids).logits, ours(ids).logits, atol=0, rtol=0)


def test_causal_lm_loss(pair):
    import transformers

    ours, _, folder = pair("llama")
    # With left padding the last pad position predicts the first real token. A padded query attends to
    # nothing; Transformers' eager backend (like ours) then averages uniformly, its sdpa backend returns
    # zeros, so the two Transformers backends disagree on this loss. We match its eager reference.
    theirs = transformers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
    ids, mask = left_padded()
    labels = ids.masked_fill(mask == 0, -100)
    a = ours(input_ids=ids, attention_mask=mask, labels=labels).loss
    b = theirs(input_ids=ids, attention_mask=mask, labels=labels).loss
    torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


def test_missing_projection_is_reported_by_its_checkpoint_name(pair):
    from safetensors.torch import load_file

    _, _, folder = pair("llama")
    state = load_file(f"{folder}/model.safetensors")
    del state["model.layers.0.self_attn.k_proj.weight"], state["model.layers.1.mlp.up_proj.weight"]
    model, info = pretrained.AutoModelForCausalLM.from_pretrained(folder, state_dict=state, output_loading_info=True)
    assert sorted(info["missing_keys"]) == ["model.layers.0.self_attn.k_proj.weight", "model.layers.1.mlp.up_proj.weight"]
    assert not info["unexpected_keys"] and not any(p.is_meta for p in model.parameters())


def test_training_cross_entropy_equals_torch_and_keeps_no_log_softmax():
    """The heads' loss under autograd: F.cross_entropy's value and gradient (ignored rows, every row ignored),
    keeping the logits and per-row numbers for backward, not a vocabulary-wide log-softmax."""
    from pretrained.heads import cross_entropy

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(12, 50, generator=gen) * 4
    for labels in (torch.randint(0, 50, (12,), generator=gen).masked_fill(torch.arange(12) % 5 == 0, -100),
                   torch.full((12,), -100)):
        a, b = logits.clone().requires_grad_(), logits.clone().requires_grad_()
        kept = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t) or t, lambda t: t):
            ours = cross_entropy(a, labels)
        theirs = torch.nn.functional.cross_entropy(b, labels, ignore_index=-100)
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0, equal_nan=True)
        ours.backward()
        theirs.backward()
        torch.testing.assert_close(a.grad, b.grad, atol=1e-7, rtol=0, equal_nan=True)
        assert [t for t in kept if t.numel() == logits.numel()] == [a]  # the logits themselves, nothing else that size
