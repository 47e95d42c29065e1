"""Encoder-decoders (T5 relu and gated, mT5, BART, Marian) against transformers on the same tiny random
checkpoints: encoder/decoder hidden states and logits with padded batches, loss from labels, cached
decoding, greedy and beam-search tokens (batched), save/load both ways, and clear errors on bad input.
Transformers 5.23 cannot generate with a T5 whose decoder is deeper than its encoder: that one is checked
against its own uncached forward instead."""

from __future__ import annotations

import pytest
import torch

import pretrained
from pretrained.errors import ConfigError

T5 = dict(vocab_size=99, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
          relative_attention_max_distance=20, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
BART = dict(vocab_size=99, d_model=32, encoder_layers=2, decoder_layers=3, encoder_attention_heads=4,
            decoder_attention_heads=2, encoder_ffn_dim=37, decoder_ffn_dim=29, max_position_embeddings=64)
FAMILIES = {  # name: (config, model, kwargs, eos id, pad id)
    "t5": ("T5Config", "T5ForConditionalGeneration", T5, 1, 0),
    "t5-gated-untied": ("T5Config", "T5ForConditionalGeneration",
                        dict(T5, feed_forward_proj="gated-gelu", tie_word_embeddings=False), 1, 0),
    "t5-deep-decoder": ("T5Config", "T5ForConditionalGeneration", dict(T5, num_decoder_layers=3), 1, 0),
    "mt5": ("MT5Config", "MT5ForConditionalGeneration", dict(T5, num_layers=2, num_heads=4), 1, 0),
    "bart": ("BartConfig", "BartForConditionalGeneration", BART, 2, 1),
    "marian": ("MarianConfig", "MarianMTModel", dict(BART, pad_token_id=98, eos_token_id=0, decoder_start_token_id=98,
                                                     forced_eos_token_id=0, scale_embedding=True,
                                                     activation_function="swish"), 0, 98),
    "marian-two-vocabs": ("MarianConfig", "MarianMTModel",
                          dict(BART, vocab_size=99, decoder_vocab_size=77, share_encoder_decoder_embeddings=False,
                               pad_token_id=76, eos_token_id=0, decoder_start_token_id=76, forced_eos_token_id=0,
                               scale_embedding=True), 0, 76),
}
GENERATING = ["t5", "t5-gated-untied", "mt5", "bart", "marian"]  # transformers can generate with these
ATOL = 1e-5


def build(folder, name, seed=0):
    """A transformers model with every weight perturbed (biases and norms too) and eos made likely, saved."""
    import transformers

    config_name, model_name, kwargs, eos, _ = FAMILIES[name]
    torch.manual_seed(seed)
    model = getattr(transformers, model_name)(getattr(transformers, config_name)(**kwargs)).eval()
    with torch.no_grad():
        for key, p in model.named_parameters():
            if "embed_positions" not in key:
                p.add_(torch.randn_like(p) * 0.2)
        if hasattr(model, "final_logits_bias"):
            model.final_logits_bias.normal_()
            model.final_logits_bias[0, eos] += 2.0
        else:
            model.get_output_embeddings().weight[eos] *= 3.0
    model.save_pretrained(folder)
    if kwargs.get("tie_word_embeddings", True) is False:
        # Transformers 5 ties T5 heads whatever the config says; a real Flan-T5 file holds its own head
        from safetensors.torch import load_file, save_file

        path = str(folder / "model.safetensors")
        state = load_file(path)
        state["lm_head.weight"] = torch.randn(state["shared.weight"].shape) * 2
        save_file(state, path, metadata={"format": "pt"})
        model = getattr(transformers, model_name).from_pretrained(folder).eval()
    return model


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    cache = {}

    def get(name):
        if name not in cache:
            folder = tmp_path_factory.mktemp(name)
            theirs = build(folder, name)
            cache[name] = pretrained.AutoModelForSeq2SeqLM.from_pretrained(folder), theirs, str(folder)
        return cache[name]

    return get


def batch(pad, lengths=(11, 7, 4), seed=0, vocab=97):
    """Right-padded encoder input (B, T) and its mask; ids avoid the special tokens 0..2."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (len(lengths), max(lengths)), generator=g)
    mask = (torch.arange(max(lengths))[None] < torch.tensor(lengths)[:, None]).long()
    return ids.masked_fill(mask == 0, pad), mask


@pytest.mark.parametrize("name", FAMILIES)
def test_forward_parity_padded(pair, name):
    ours, theirs, _ = pair(name)
    pad = FAMILIES[name][4]
    ids, mask = batch(pad)
    dec, dec_mask = batch(pad, lengths=(6, 6, 3), seed=1, vocab=70)  # within every decoder vocabulary
    kw = dict(input_ids=ids, attention_mask=mask, decoder_input_ids=dec, decoder_attention_mask=dec_mask,
              output_hidden_states=True)
    a, b = ours(**kw), theirs(**kw)
    keep, dkeep = mask.bool(), dec_mask.bool()  # padded positions attend to nothing: undefined
    assert len(a.encoder_hidden_states) == len(b.encoder_hidden_states)
    for x, y in zip(a.encoder_hidden_states, b.encoder_hidden_states):
        torch.testing.assert_close(x[keep], y[keep], atol=ATOL, rtol=0)
    assert len(a.decoder_hidden_states) == len(b.decoder_hidden_states)
    for x, y in zip(a.decoder_hidden_states, b.decoder_hidden_states):
        torch.testing.assert_close(x[dkeep], y[dkeep], atol=ATOL, rtol=0)
    torch.testing.assert_close(a.logits[dkeep], b.logits[dkeep], atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", FAMILIES)
def test_loss_from_labels(pair, name):
    ours, theirs, _ = pair(name)
    ids, mask = batch(FAMILIES[name][4])
    labels = torch.randint(3, 70, (3, 5), generator=torch.Generator().manual_seed(2))
    labels[1, 3:] = -100
    a = ours(input_ids=ids, attention_mask=mask, labels=labels)
    b = theirs(input_ids=ids, attention_mask=mask, labels=labels)
    torch.testing.assert_close(a.loss, b.loss, atol=ATOL, rtol=0)
    torch.testing.assert_close(a.logits, b.logits, atol=ATOL, rtol=0)
    assert ours(input_ids=ids, attention_mask=mask, labels=labels, return_dict=False)[0] == a.loss


@pytest.mark.parametrize("name", ["t5", "t5-deep-decoder", "bart", "marian"])
def test_cached_decoding_equals_full_forward(pair, name):
    ours, _, _ = pair(name)
    ids, mask = batch(FAMILIES[name][4])
    dec = torch.randint(3, 70, (3, 6), generator=torch.Generator().manual_seed(3))
    full = ours(input_ids=ids, attention_mask=mask, decoder_input_ids=dec, use_cache=False).logits
    encoder_outputs = ours.get_encoder()(input_ids=ids, attention_mask=mask)
    past, steps = None, []
    for t in range(dec.shape[1]):
        out = ours(encoder_outputs=encoder_outputs, attention_mask=mask, decoder_input_ids=dec[:, t:t + 1],
                   past_key_values=past, use_cache=True)
        past = out.past_key_values
        steps.append(out.logits)
    assert isinstance(past, pretrained.EncoderDecoderCache) and past.get_seq_length() == dec.shape[1]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=ATOL, rtol=0)


GENERATION_SETTINGS = {
    "greedy": dict(max_new_tokens=12),
    "beam": dict(max_new_tokens=12, num_beams=3),
    "beam-penalties": dict(max_new_tokens=12, num_beams=4, length_penalty=0.6, no_repeat_ngram_size=2,
                           num_return_sequences=2),
    "beam-early": dict(max_new_tokens=10, num_beams=3, early_stopping=True, length_penalty=1.5),
    "beam-never": dict(max_new_tokens=10, num_beams=2, early_stopping="never"),
}


@pytest.mark.parametrize("setting", GENERATION_SETTINGS)
@pytest.mark.parametrize("name", GENERATING)
def test_generate_token_identical_batched(pair, name, setting):
    ours, theirs, _ = pair(name)
    ids, mask = batch(FAMILIES[name][4])
    kwargs = GENERATION_SETTINGS[setting]
    a = ours.generate(input_ids=ids, attention_mask=mask, **kwargs)
    b = theirs.generate(input_ids=ids, attention_mask=mask, **kwargs)
    assert a.tolist() == b.tolist()


def test_generate_forced_bos_and_scores(pair):
    ours, theirs, _ = pair("bart")
    ids, mask = batch(1)
    kwargs = dict(max_new_tokens=8, num_beams=3, forced_bos_token_id=0, return_dict_in_generate=True,
                  output_scores=True)
    a = ours.generate(input_ids=ids, attention_mask=mask, **kwargs)
    b = theirs.generate(input_ids=ids, attention_mask=mask, **kwargs)
    assert a.sequences.tolist() == b.sequences.tolist()
    assert (a.sequences[:, 1] == 0).all()
    torch.testing.assert_close(a.sequences_scores, b.sequences_scores, atol=1e-4, rtol=0)


@pytest.mark.parametrize("beams", [1, 3])
@pytest.mark.parametrize("name", ["t5", "bart"])
def test_generate_dict_with_attentions_and_hidden_states(pair, name, beams):
    """return_dict_in_generate on an encoder-decoder: Transformers' encoder-decoder output class, with the
    encoder's attentions/hidden states (one row per prompt) and per step the decoder's self- and
    cross-attentions and hidden states (one row per beam), all equal to transformers' eager path."""
    import transformers

    ours, _, folder = pair(name)
    theirs = getattr(transformers, FAMILIES[name][1]).from_pretrained(folder, attn_implementation="eager").eval()
    ids, mask = batch(FAMILIES[name][4])
    kwargs = dict(max_new_tokens=4, min_new_tokens=4, num_beams=beams, return_dict_in_generate=True,
                  output_scores=True, output_attentions=True, output_hidden_states=True)
    a = ours.generate(input_ids=ids, attention_mask=mask, **kwargs)
    b = theirs.generate(input_ids=ids, attention_mask=mask, **kwargs)
    assert type(a).__name__ == type(b).__name__
    assert a.sequences.tolist() == b.sequences.tolist()
    fields = ["scores", "encoder_attentions", "encoder_hidden_states", "decoder_attentions", "cross_attentions",
              "decoder_hidden_states"]
    flat = lambda t: [t] if isinstance(t, torch.Tensor) else [u for v in t for u in flat(v)]  # noqa: E731
    for field in fields:
        x, y = getattr(a, field), getattr(b, field)
        assert x is not None and len(x) == len(y), field
        for u, v in zip(flat(x), flat(y)):
            assert u.shape == v.shape, field
            if field == "encoder_hidden_states":  # at real tokens: padding positions, see test_minilm
                u, v = u[mask.bool()], v[mask.bool()]
            torch.testing.assert_close(u, v, atol=1e-5, rtol=0, msg=field)


@pytest.mark.parametrize("name", ["t5", "t5-gated-untied"])
def test_float16_keeps_t5_feed_forward_output_in_float32(pair, name):
    """T5's `wo` overflows float16 (the reason transformers keeps it in float32 when loading in float16):
    the same parameters get the same dtypes, and the logits equal transformers' float16 model's."""
    import transformers

    _, _, folder = pair(name)
    ours = pretrained.AutoModelForSeq2SeqLM.from_pretrained(folder, dtype=torch.float16)
    theirs = transformers.T5ForConditionalGeneration.from_pretrained(folder, dtype=torch.float16).eval()
    dtypes = lambda m: {k: p.dtype for k, p in m.named_parameters()}  # noqa: E731
    assert dtypes(ours) == dtypes(theirs)
    assert ours.decoder.block[0].layer[2].DenseReluDense.wo.weight.dtype == torch.float32
    assert ours.encoder.block[0].layer[0].SelfAttention.q.weight.dtype == torch.float16
    ids, mask = batch(0)
    dec = torch.randint(3, 70, (3, 4), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        a = ours(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
        b = theirs(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
    assert a.dtype == b.dtype == torch.float16
    torch.testing.assert_close(a, b, atol=0, rtol=0)  # same kernels, same dtypes at every step: equal


@pytest.mark.parametrize("beams", [1, 3])
@pytest.mark.parametrize("name", ["t5", "bart"])
def test_static_decoder_cache_equals_dynamic(pair, name, beams):
    ours, _, _ = pair(name)
    ids, mask = batch(FAMILIES[name][4])
    kwargs = dict(input_ids=ids, attention_mask=mask, max_new_tokens=8, num_beams=beams)
    assert torch.equal(ours.generate(**kwargs), ours.generate(**kwargs, cache_implementation="static"))


@pytest.mark.parametrize("how", ["forward", "compile_config"])
@pytest.mark.parametrize("name", ["t5", "bart"])
def test_static_decoder_step_traces_to_one_graph(pair, name, how):
    """With a static cache, torch.compile captures the decoder step once, no graph break, padded prompts
    and beams, tokens equal. A compiled forward: one graph for the first step (which projects the encoder
    keys), one for every later token; generate(compile_config=...): the first step runs eager, the rest
    is one graph."""
    from torch._dynamo.testing import CompileCounter

    ours, _, _ = pair(name)
    ids, mask = batch(FAMILIES[name][4])
    kwargs = dict(input_ids=ids, attention_mask=mask, max_new_tokens=6, min_new_tokens=6, num_beams=2)
    expected = ours.generate(**kwargs)
    torch._dynamo.reset()
    counter = CompileCounter()
    eager_forward = ours.forward
    if how == "forward":
        ours.forward = torch.compile(ours.forward, backend=counter, fullgraph=True, dynamic=False)
    else:
        kwargs["compile_config"] = pretrained.CompileConfig(backend=counter, fullgraph=True, dynamic=False, mode=None)
    try:
        out = ours.generate(**kwargs, cache_implementation="static")
    finally:
        ours.forward, ours._compiled_call = eager_forward, None
        torch._dynamo.reset()
    assert counter.frame_count == (2 if how == "forward" else 1)
    assert torch.equal(out, expected)


def test_generate_pad_inferred_mask_and_decoder_prefix(pair):
    """decoder_input_ids continue a given prefix. Without attention_mask, the prompt's pad tokens are masked,
    as Transformers 4 did; Transformers 5.23 stopped inferring the encoder mask, so it gets it explicitly."""
    ours, theirs, _ = pair("t5")
    ids, mask = batch(0)
    prefix = torch.tensor([[0, 5], [0, 6], [0, 7]])
    a = ours.generate(input_ids=ids, decoder_input_ids=prefix, max_new_tokens=6)
    b = theirs.generate(input_ids=ids, attention_mask=mask, decoder_input_ids=prefix, max_new_tokens=6)
    assert a.tolist() == b.tolist()


def test_deep_decoder_generation_matches_its_own_forward(pair):
    """Transformers 5.23 fails here; our cached greedy/beam must equal uncached decoding step by step."""
    ours, _, _ = pair("t5-deep-decoder")
    ids, mask = batch(0)
    greedy = ours.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8)
    seq = torch.zeros(3, 1, dtype=torch.long)
    done = torch.zeros(3, dtype=torch.bool)
    for _ in range(8):
        logits = ours(input_ids=ids, attention_mask=mask, decoder_input_ids=seq, use_cache=False).logits[:, -1]
        nxt = torch.where(done, 0, logits.argmax(-1))
        seq = torch.cat([seq, nxt[:, None]], dim=1)
        done |= nxt == 1
        if done.all():
            break
    assert greedy.tolist() == seq.tolist()
    beams = dict(input_ids=ids, attention_mask=mask, max_new_tokens=8, num_beams=3)
    assert ours.generate(**beams).tolist() == ours.generate(**beams, use_cache=False).tolist()


def test_encoder_runs_once_per_generate(pair):
    ours, _, _ = pair("bart")
    ids, mask = batch(1)
    calls = []
    hook = ours.get_encoder().register_forward_hook(lambda m, args, out: calls.append(out.last_hidden_state.shape[0]))
    try:
        ours.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, num_beams=4)
    finally:
        hook.remove()
    assert calls == [3]  # once, on the prompts themselves, not per beam or step


@pytest.mark.parametrize("name", ["t5", "t5-gated-untied", "marian-two-vocabs"])
def test_save_load_round_trip_with_transformers(pair, tmp_path, name):
    ours, theirs, _ = pair(name)
    ours.save_pretrained(tmp_path)
    import transformers

    again = getattr(transformers, FAMILIES[name][1]).from_pretrained(tmp_path).eval()
    ids, mask = batch(FAMILIES[name][4])
    dec = torch.randint(3, 70, (3, 4), generator=torch.Generator().manual_seed(4))
    kw = dict(input_ids=ids, attention_mask=mask, decoder_input_ids=dec)
    torch.testing.assert_close(again(**kw).logits, theirs(**kw).logits, atol=ATOL, rtol=0)
    mine = pretrained.AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    torch.testing.assert_close(mine(**kw).logits, theirs(**kw).logits, atol=ATOL, rtol=0)


def test_untied_head_stays_untied(pair):
    ours, _, _ = pair("t5-gated-untied")
    assert ours.lm_head.weight.data_ptr() != ours.shared.weight.data_ptr()
    assert ours.encoder.embed_tokens is ours.shared and ours.decoder.embed_tokens is ours.shared
    tied, _, _ = pair("t5")
    assert tied.lm_head.weight is tied.shared.weight


@pytest.mark.parametrize("name,base,encoder_only", [("t5", "T5Model", "T5EncoderModel"), ("bart", "BartModel", None),
                                                    ("marian", "MarianModel", None)])
def test_base_and_encoder_models(pair, name, base, encoder_only):
    import transformers

    _, _, folder = pair(name)
    ids, mask = batch(FAMILIES[name][4])
    dec = torch.randint(3, 70, (3, 4), generator=torch.Generator().manual_seed(5))
    kw = dict(input_ids=ids, attention_mask=mask, decoder_input_ids=dec)
    ours = pretrained.AutoModel.from_pretrained(folder)
    assert type(ours).__name__ == base
    theirs = getattr(transformers, base).from_pretrained(folder).eval()
    torch.testing.assert_close(ours(**kw).last_hidden_state, theirs(**kw).last_hidden_state, atol=ATOL, rtol=0)
    if encoder_only:
        a = getattr(pretrained, encoder_only).from_pretrained(folder)(input_ids=ids, attention_mask=mask)
        b = getattr(transformers, encoder_only).from_pretrained(folder).eval()(input_ids=ids, attention_mask=mask)
        keep = mask.bool()
        torch.testing.assert_close(a.last_hidden_state[keep], b.last_hidden_state[keep], atol=ATOL, rtol=0)


# --- bad input ---

def test_missing_decoder_start_token_id():
    model = pretrained.T5ForConditionalGeneration(pretrained.T5Config(**dict(T5, decoder_start_token_id=None)))
    ids = torch.tensor([[5, 6, 7]])
    with pytest.raises(ValueError, match="decoder_start_token_id"):
        model.generate(input_ids=ids, max_new_tokens=3)
    with pytest.raises(ValueError, match="decoder_start_token_id"):
        model(input_ids=ids, labels=ids)


def test_labels_without_pad_token_id():
    model = pretrained.BartForConditionalGeneration(pretrained.BartConfig(**dict(BART, pad_token_id=None)))
    with pytest.raises(ValueError, match="pad_token_id"):
        model(input_ids=torch.tensor([[5, 6, 7]]), labels=torch.tensor([[5, -100]]))


def test_no_decoder_input():
    model = pretrained.T5ForConditionalGeneration(pretrained.T5Config(**T5))
    with pytest.raises(ValueError, match="decoder_input_ids, decoder_inputs_embeds or labels"):
        model(input_ids=torch.tensor([[5, 6, 7]]))
    with pytest.raises(ValueError, match="input_ids"):
        pretrained.MarianModel(pretrained.MarianConfig(**dict(BART, pad_token_id=98, decoder_start_token_id=98)))(
            attention_mask=torch.ones(1, 3, dtype=torch.long))


def test_positions_beyond_the_table():
    model = pretrained.BartForConditionalGeneration(pretrained.BartConfig(**dict(BART, max_position_embeddings=8)))
    with pytest.raises(ValueError, match="max_position_embeddings=8"):
        model(input_ids=torch.randint(3, 90, (1, 9)), decoder_input_ids=torch.tensor([[2]]))
    with pytest.raises(ValueError, match="max_position_embeddings=8"):
        model.generate(input_ids=torch.randint(3, 90, (1, 4)), max_new_tokens=12)


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="feed_forward_proj"):
        pretrained.T5Config(feed_forward_proj="gelu-gated")
    with pytest.raises(ConfigError, match="feed_forward_proj"):
        pretrained.T5Config(feed_forward_proj="gated-nope")
    with pytest.raises(ConfigError, match="decoder_attention_heads"):
        pretrained.BartConfig(d_model=32, decoder_attention_heads=5, encoder_attention_heads=4)
    config = pretrained.AutoConfig.for_model("t5", num_layers=3) if hasattr(pretrained.AutoConfig, "for_model") \
        else pretrained.T5Config(num_layers=3)
    assert config.num_decoder_layers == 3 and config.hidden_size == config.d_model
