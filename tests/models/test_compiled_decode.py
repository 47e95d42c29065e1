"""The compiled decode step of the new decoder families: generate(cache_implementation="static",
compile_config=...) traces the one-token step into a single graph (no break: per-type rope tables and
windows, LongRoPE's tensor choice, MoE experts in their gathered form) and gives eager's tokens."""

from __future__ import annotations

import pytest
import torch

import pretrained

TINY = dict(vocab_size=99, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0, eos_token_id=2, bos_token_id=1)
FAMILIES = {
    "gemma3_text": dict(TINY, head_dim=16, sliding_window=3, layer_types=["sliding_attention", "full_attention"],
                        final_logit_softcapping=3.0),
    "mixtral": dict(TINY, num_local_experts=4, num_experts_per_tok=2, sliding_window=4),
    "qwen3_moe": dict(TINY, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=24, norm_topk_prob=True),
    "phi3": dict(TINY, original_max_position_embeddings=6, partial_rotary_factor=0.5,
                 rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0, "partial_rotary_factor": 0.5,
                                  "short_factor": [1.2, 1.7], "long_factor": [2.5, 3.1]}),
}


@pytest.mark.parametrize("model_type", FAMILIES)
def test_compiled_decode_step_is_one_graph_with_eager_tokens(model_type):
    from torch._dynamo.testing import CompileCounter

    config = pretrained.AutoConfig.for_model(model_type, **FAMILIES[model_type])
    torch.manual_seed(0)
    model = pretrained.AutoModelForCausalLM.from_config(config).eval()
    ids = torch.tensor([[0, 0, 5, 6, 7], [3, 4, 5, 6, 7]])
    kwargs = dict(attention_mask=(ids != 0).long(), max_new_tokens=6, min_new_tokens=6, pad_token_id=0)
    expected = model.generate(ids, **kwargs)  # past the window and LongRoPE's 6 positions
    torch._dynamo.reset()
    counter = CompileCounter()
    compile_config = pretrained.CompileConfig(backend=counter, fullgraph=True, dynamic=False, mode=None)
    try:
        out = model.generate(ids, cache_implementation="static", compile_config=compile_config, **kwargs)
    finally:
        model._compiled_call = None
        torch._dynamo.reset()
    assert counter.frame_count == 1 and counter.op_count > 0
    assert torch.equal(out, expected)
