"""The pieces new decoder families are built from, each checked against transformers' own module or
the formula: Qwen3 (q/k norms on the Llama kit) end to end, the sparse MoE block and its auxiliary loss,
the Stack rule for per-expert checkpoint tensors, (1 + w) RMSNorm, soft-capping, partial rotary,
score biases and composable masks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pretrained
from checkpoints import hf_checkpoint
from pretrained import attention, conversion, layers, masks
from pretrained.modeling import PreTrainedModel
from pretrained.moe import SparseMoeBlock, load_balancing_loss, stack_rules

QWEN3 = dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, head_dim=16, max_position_embeddings=64, pad_token_id=0, eos_token_id=2)


def test_qwen3_logits_and_greedy_tokens_equal_transformers(tmp_path):
    import transformers

    folder = hf_checkpoint(tmp_path, "Qwen3Config", "Qwen3ForCausalLM", **QWEN3)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    ours = pretrained.AutoModelForCausalLM.from_pretrained(folder)
    assert type(ours).__name__ == "Qwen3ForCausalLM"
    ids = torch.randint(3, 99, (2, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    with torch.no_grad():
        real = mask.bool()  # padded queries see no key: the references' backends disagree there
        torch.testing.assert_close(ours(ids, attention_mask=mask).logits[real],
                                   theirs(ids, attention_mask=mask).logits[real], atol=1e-5, rtol=0)
        kwargs = dict(attention_mask=mask, max_new_tokens=8, do_sample=False, pad_token_id=0)
        assert torch.equal(ours.generate(ids, **kwargs), theirs.generate(ids, **kwargs))


def _mixtral_block(top_k=2):
    import transformers
    from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock

    config = transformers.MixtralConfig(hidden_size=16, intermediate_size=24, num_local_experts=4,
                                        num_experts_per_tok=top_k, num_hidden_layers=1, num_attention_heads=2,
                                        num_key_value_heads=1, vocab_size=50)
    torch.manual_seed(0)
    theirs = MixtralSparseMoeBlock(config).eval()
    for p in theirs.parameters():
        nn.init.normal_(p, std=0.3)
    ours = SparseMoeBlock(16, 24, 4, top_k, norm_topk_prob=True)
    F_ = 24
    gate_up = theirs.experts.gate_up_proj.detach()  # (E, 2F, C): gate rows, then up rows
    ours.load_state_dict({"gate.weight": theirs.gate.weight.detach(), "experts.gate_proj": gate_up[:, :F_],
                          "experts.up_proj": gate_up[:, F_:], "experts.down_proj": theirs.experts.down_proj.detach()})
    return ours, theirs


@pytest.mark.parametrize("tokens", [1, 13])
def test_sparse_moe_block_equals_mixtral(tokens):
    ours, theirs = _mixtral_block()
    x = torch.randn(1, tokens, 16)
    with torch.no_grad():
        y, router_logits = ours(x)
        torch.testing.assert_close(y, theirs(x), atol=1e-5, rtol=1e-5)
        assert router_logits.shape == (tokens, 4)


def test_load_balancing_loss_equals_transformers():
    from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

    gen = torch.Generator().manual_seed(0)
    logits = tuple(torch.randn(2 * 5, 4, generator=gen) for _ in range(3))  # 3 layers, batch 2 x 5 tokens
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
    torch.testing.assert_close(load_balancing_loss(logits, 4, 2), load_balancing_loss_func(logits, 4, 2))
    torch.testing.assert_close(load_balancing_loss(logits, 4, 2, mask), load_balancing_loss_func(logits, 4, 2, mask))


class _TinyMoe(PreTrainedModel):
    """A one-block model whose checkpoint stores experts one by one, as Mixtral's does."""

    checkpoint_rules = stack_rules("experts", {"w1": "gate_proj", "w3": "up_proj", "w2": "down_proj"})

    def __init__(self, config):
        super().__init__(config)
        self.block_sparse_moe = SparseMoeBlock(8, 12, 3, 2)
        self.post_init()

    def _init_weights(self, module):
        for p in module.parameters(recurse=False):
            nn.init.normal_(p)


def test_stack_rule_loads_per_expert_tensors_and_saves_them_back(tmp_path):
    from safetensors.torch import load_file, save_file

    gen = torch.Generator().manual_seed(0)
    per_expert = {"block_sparse_moe.gate.weight": torch.randn(3, 8, generator=gen)}
    for e in range(3):
        per_expert[f"block_sparse_moe.experts.{e}.w1.weight"] = torch.randn(12, 8, generator=gen)
        per_expert[f"block_sparse_moe.experts.{e}.w3.weight"] = torch.randn(12, 8, generator=gen)
        per_expert[f"block_sparse_moe.experts.{e}.w2.weight"] = torch.randn(8, 12, generator=gen)
    pretrained.PretrainedConfig().save_pretrained(tmp_path / "in")
    save_file(per_expert, tmp_path / "in" / "model.safetensors")
    model, info = _TinyMoe.from_pretrained(tmp_path / "in", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert torch.equal(model.block_sparse_moe.experts.gate_proj[1], per_expert["block_sparse_moe.experts.1.w1.weight"])
    assert torch.equal(model.block_sparse_moe.experts.down_proj[2], per_expert["block_sparse_moe.experts.2.w2.weight"])
    model.save_pretrained(tmp_path / "out")
    saved = load_file(tmp_path / "out" / "model.safetensors")
    assert set(saved) == set(per_expert) and all(torch.equal(saved[k], v) for k, v in per_expert.items())
    del per_expert["block_sparse_moe.experts.2.w3.weight"]  # an expert missing is reported by its stacked name
    save_file(per_expert, tmp_path / "in" / "model.safetensors")
    _, info = _TinyMoe.from_pretrained(tmp_path / "in", output_loading_info=True)
    assert info["missing_keys"] == ["block_sparse_moe.experts.up_proj"]


def test_stack_rule_names():
    rule = conversion.Stack("experts", "w1.weight", "gate_proj")
    assert rule.part_of("model.layers.3.block_sparse_moe.experts.7.w1.weight") == \
        ("model.layers.3.block_sparse_moe.experts.gate_proj", 7)
    assert rule.part_of("model.layers.3.block_sparse_moe.experts.7.w2.weight") is None
    parts = rule.split("m.experts.gate_proj", torch.arange(6.0).view(3, 2))
    assert list(parts) == ["m.experts.0.w1.weight", "m.experts.1.w1.weight", "m.experts.2.w1.weight"]


def test_unit_offset_rms_norm_equals_gemma3():
    from transformers.models.gemma3.modeling_gemma3 import Gemma3RMSNorm

    theirs, ours = Gemma3RMSNorm(16, eps=1e-6), layers.UnitOffsetRMSNorm(16, eps=1e-6)
    assert torch.equal(ours.weight, torch.zeros(16))
    with torch.no_grad():
        theirs.weight.normal_()
        ours.weight.copy_(theirs.weight)
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(2, 5, 16).to(dtype)
        torch.testing.assert_close(ours(x), theirs(x), atol=0, rtol=0)


def test_attention_softcap_and_bias_follow_the_formula():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 5, 8, generator=gen) * 3 for _ in range(3))
    bias = torch.randn(1, 4, 5, 5, generator=gen)
    mask = masks.causal_mask(None, 5, 5, torch.float32, q.device, sliding_window=None, past_length=0)
    mask = masks.build_mask(masks.causal, torch.arange(5), 5, None, torch.float32) if mask is None else mask
    scores = layers.softcap(q @ k.transpose(-1, -2) * 0.3, 20.0) + bias + mask
    expected = scores.softmax(-1) @ v
    for fn in (attention.eager_attention, attention.sdpa_attention):
        out, _ = fn(q, k, v, mask, scale=0.3, bias=bias, softcap=20.0)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    out, _ = attention.sdpa_attention(q, k, v, mask, scale=0.3, bias=bias)  # the fused kernel takes the bias
    torch.testing.assert_close(out, ((q @ k.transpose(-1, -2)) * 0.3 + bias + mask).softmax(-1) @ v, atol=1e-5, rtol=1e-5)


def test_partial_rotary_rotates_the_first_features_only():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 3, 16, generator=gen)
    angles = torch.randn(1, 1, 3, 4, generator=gen)
    cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)  # rotary dim 8 of 16
    out = layers.rotate(x, cos, layers.signed_sin(sin))
    x1, x2 = x[..., :4], x[..., 4:8]
    rotated = torch.cat([x1 * angles.cos() - x2 * angles.sin(), x2 * angles.cos() + x1 * angles.sin()], -1)
    torch.testing.assert_close(out[..., :8], rotated)
    assert torch.equal(out[..., 8:], x[..., 8:])


def test_composable_masks():
    q_pos, k_pos = torch.arange(6)[:, None], torch.arange(6)[None, :]
    causal_window = masks.and_masks(masks.causal, masks.in_window(3))(q_pos, k_pos)
    assert causal_window.tolist() == [[q - 3 < k <= q for k in range(6)] for q in range(6)]
    padding = torch.tensor([[1, 1, 1, 1, 1, 0]])
    local = masks.padding_mask(padding, torch.float32, window=4)  # ModernBERT's local layers: 2 either side
    allowed = local[0, 0] == 0
    assert allowed.tolist() == [[abs(q - k) <= 2 and k < 5 for k in range(6)] for q in range(6)]
    windowed = masks.causal_mask(torch.ones(1, 6, dtype=torch.long), 6, 6, torch.float32, torch.device("cpu"), 3)
    assert (windowed[0, 0] == 0).tolist() == causal_window.tolist()


def test_silu_and_mul_keeps_gate_and_up_only_with_the_same_gradients():
    """The gated MLP's product under autograd: the same output and gradients bit for bit as silu(gate) * up,
    and silu(gate) is not kept for backward (recomputed from gate)."""
    gen = torch.Generator().manual_seed(0)
    gate, up, grad = (torch.randn(3, 5, 8, generator=gen) for _ in range(3))

    def run(fn):
        g, u = gate.clone().requires_grad_(), up.clone().requires_grad_()
        kept = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t) or t, lambda t: t):
            out = fn(g, u)
        out.backward(grad)
        return out.detach(), g.grad, u.grad, kept

    plain = run(lambda g, u: torch.nn.functional.silu(g) * u)
    lean = run(lambda g, u: layers.act_and_mul(torch.nn.functional.silu, g, u))
    for a, b in zip(lean[:3], plain[:3]):
        assert torch.equal(a, b)
    assert len(lean[3]) == 2 and len(plain[3]) == 3
    with torch.no_grad():  # outside autograd: the plain product
        assert torch.equal(layers.act_and_mul(torch.nn.functional.silu, gate, up),
                           torch.nn.functional.silu(gate) * up)
