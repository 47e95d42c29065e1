"""Mixtral and Qwen3-MoE against transformers: logits, hidden states, greedy tokens (dynamic and static
cache), router logits, the auxiliary load-balancing loss and the LM loss with it, router settings
(top-k, norm_topk_prob), dense layers between sparse ones, sliding windows, and checkpoints that store
every expert apart (saved back under the same names)."""

from __future__ import annotations

import pytest
import torch

from decoder_parity import (ATOL, assert_forward_equal, assert_generate_equal, assert_save_round_trip,
                            assert_sequence_classification_equal, left_padded, load_pair)

# sizes are multiples of 4: transformers' grouped-matmul experts need 16-byte strides
BASE = dict(vocab_size=99, hidden_size=32, intermediate_size=40, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0, eos_token_id=2, bos_token_id=1)
CASES = {
    "mixtral": ("MixtralConfig", "MixtralForCausalLM", dict(BASE, num_local_experts=4, num_experts_per_tok=2)),
    "mixtral-top1-window": ("MixtralConfig", "MixtralForCausalLM",
                            dict(BASE, num_local_experts=3, num_experts_per_tok=1, sliding_window=5,
                                 router_aux_loss_coef=0.1)),
    "qwen3_moe": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM",
                  dict(BASE, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=24, head_dim=16)),
    "qwen3_moe-norm-dense-window": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM",
                                    dict(BASE, num_hidden_layers=4, num_experts=6, num_experts_per_tok=3,
                                         moe_intermediate_size=24, norm_topk_prob=True, mlp_only_layers=[0],
                                         decoder_sparse_step=2, use_sliding_window=True, sliding_window=5)),
}


@pytest.fixture(scope="module")
def moe(tmp_path_factory):
    loaded = {}

    def get(name):
        if name not in loaded:
            config_name, model_name, kwargs = CASES[name]
            loaded[name] = load_pair(tmp_path_factory.mktemp(name), config_name, model_name, **kwargs)
        return loaded[name]

    return get


@pytest.mark.parametrize("name", CASES)
def test_logits_hidden_states_and_greedy_tokens(moe, name):
    ours, theirs, _ = moe(name)
    assert type(ours).__name__ == CASES[name][1]
    ids, mask = left_padded()
    assert_forward_equal(ours, theirs, ids, mask)
    assert_generate_equal(ours, theirs, ids, mask)


@pytest.mark.parametrize("name", ["mixtral", "qwen3_moe-norm-dense-window"])
@pytest.mark.parametrize("path", ["loop", "dense"])
def test_each_expert_path_equals_transformers(moe, name, path, monkeypatch):
    """The per-expert loop and the dense path (every expert on every token), each forced for prompts and
    decode steps alike, give transformers' logits and greedy tokens."""
    from pretrained import moe as moe_module

    if path == "loop":
        monkeypatch.setattr(moe_module, "DENSE_MAX_TOKENS", 0)
    else:
        monkeypatch.setattr(moe_module, "DENSE_MAX_TOKENS", 10**9)
        monkeypatch.setattr(moe_module, "DISPATCH_BYTES", 2**62)
    ours, theirs, _ = moe(name)
    ids, mask = left_padded()
    assert_forward_equal(ours, theirs, ids, mask)
    assert_generate_equal(ours, theirs, ids, mask)


@pytest.mark.parametrize("name", ["mixtral", "qwen3_moe-norm-dense-window"])
def test_one_token_at_a_time_equals_transformers(moe, name, monkeypatch):
    """Batch-1 decoding routes one token per step, which runs its k experts directly (Experts.single, no
    counting or scattering): logits fed token by token through the cache, and greedy tokens, equal transformers'."""
    from pretrained import moe as moe_module

    ours, theirs, _ = moe(name)
    calls, single = [], moe_module.Experts.single
    monkeypatch.setattr(moe_module.Experts, "single", lambda self, *args: calls.append(1) or single(self, *args))
    ids, _ = left_padded(lengths=(9,))
    with torch.no_grad():
        full = theirs(ids).logits
        cache, steps = None, []
        for t in range(ids.shape[1]):
            out = ours(ids[:, t:t + 1], past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            steps.append(out.logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=ATOL, rtol=0)
    assert calls  # the one-token path ran
    kwargs = dict(max_new_tokens=12, do_sample=False, pad_token_id=0)
    assert torch.equal(ours.generate(ids, **kwargs), theirs.generate(ids, **kwargs))


@pytest.mark.parametrize("name", CASES)
def test_router_logits_aux_loss_and_loss(moe, name):
    ours, theirs, _ = moe(name)
    ids, mask = left_padded()
    labels = ids.masked_fill(mask == 0, -100)
    a, b = assert_forward_equal(ours, theirs, ids, mask, labels=labels, output_router_logits=True)
    sparse = sum(1 for layer in theirs.model.layers if hasattr(layer.mlp, "experts"))
    assert len(a.router_logits) == len(b.router_logits) == sparse
    real = mask.bool().reshape(-1)
    for x, y in zip(a.router_logits, b.router_logits):  # (B*T, E)
        torch.testing.assert_close(x[real], y[real], atol=ATOL, rtol=0)
    torch.testing.assert_close(a.aux_loss, b.aux_loss, atol=ATOL, rtol=0)
    torch.testing.assert_close(a.loss, b.loss, atol=ATOL, rtol=0)
    plain = ours(input_ids=ids, attention_mask=mask, labels=labels)
    assert plain.aux_loss is None and plain.router_logits is None
    torch.testing.assert_close(a.loss - plain.loss, ours.config.router_aux_loss_coef * a.aux_loss)


def test_config_default_asks_for_router_logits(moe):
    """config.output_router_logits=True: every forward returns them, generate()'s cached steps included."""
    ours, _, _ = moe("mixtral")
    ids, mask = left_padded(lengths=(5, 3))
    expected = ours.generate(ids, attention_mask=mask, max_new_tokens=4, pad_token_id=0)
    ours.config.output_router_logits = True
    try:
        out = ours(input_ids=ids, attention_mask=mask)
        assert torch.equal(ours.generate(ids, attention_mask=mask, max_new_tokens=4, pad_token_id=0), expected)
    finally:
        ours.config.output_router_logits = False
    assert len(out.router_logits) == 3 and out.aux_loss is not None


@pytest.mark.parametrize("name", ["mixtral", "qwen3_moe-norm-dense-window"])
def test_save_round_trip_writes_experts_apart(moe, tmp_path, name):
    ours, theirs, folder = moe(name)
    # in memory both stack the experts; transformers also fuses gate and up into one gate_up_proj
    fused = {k.replace("gate_up_proj", p) for k in theirs.state_dict() for p in ("gate_proj", "up_proj")}
    assert set(ours.state_dict()) == fused
    ids, _ = left_padded(lengths=(7,))
    assert_save_round_trip(ours, folder, tmp_path, ids)


def test_mixtral_checkpoint_names():
    from pretrained import conversion
    from pretrained.models.mixtral import MixtralPreTrainedModel

    rules = MixtralPreTrainedModel.checkpoint_rules
    key = conversion.to_model_key("model.layers.1.block_sparse_moe.experts.3.w2.weight", rules)
    assert conversion.combined_part(key, rules)[:2] == ("model.layers.1.mlp.experts.down_proj", 3)


@pytest.mark.parametrize("name", ["mixtral", "qwen3_moe"])
def test_sequence_classification(tmp_path, name):
    config_name, model_name, kwargs = CASES[name]
    head = model_name.replace("CausalLM", "SequenceClassification")
    assert_sequence_classification_equal(tmp_path, config_name, head, **kwargs)


def test_router_jitter_noise_in_training_only(moe):
    ours, _, _ = moe("mixtral")
    block = ours.model.layers[0].mlp
    x = torch.randn(1, 6, 32)
    with torch.no_grad():
        clean = block(x)[0]
        block.jitter_noise = 0.5
        assert torch.equal(block(x)[0], clean)  # eval: no noise
        block.train()
        try:
            assert not torch.allclose(block(x)[0], clean)
        finally:
            block.eval()
            block.jitter_noise = 0.0
