"""GGUF files of the new decoder families, written here with the gguf package's writer under llama.cpp's
names and conventions (Mixtral as "llama" with stacked experts and permuted q/k, Gemma's norms stored
as 1 + w, Phi-3's fused projections and LongRoPE factor tensors): each loads to the model its
transformers checkpoint gives, to the bit in float32; Q8_0 expert tensors expand as gguf's reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import pretrained
from checkpoints import hf_checkpoint

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as T  # noqa: E402

BASE = dict(vocab_size=96, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6, tie_word_embeddings=False,
            pad_token_id=0, bos_token_id=1, eos_token_id=2)
LONGROPE = {"rope_type": "longrope", "rope_theta": 10000.0, "partial_rotary_factor": 0.5, "attention_factor": 1.1,
            "original_max_position_embeddings": 8, "short_factor": [1.2, 1.7], "long_factor": [2.5, 3.1]}
# llama.cpp conventions the configs follow: Gemma 3 global every 6th layer, sliding base 10000, queries
# scaled by head_dim; Qwen3-MoE's top-k renormalised
CASES = {
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", "qwen3", dict(BASE, head_dim=16)),
    "qwen3moe": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM", "qwen3moe",
                 dict(BASE, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=24, norm_topk_prob=True)),
    "mixtral": ("MixtralConfig", "MixtralForCausalLM", "llama", dict(BASE, num_local_experts=4, num_experts_per_tok=2)),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", "gemma3",
               dict(BASE, num_hidden_layers=7, head_dim=16, query_pre_attn_scalar=16, sliding_window=4,
                    tie_word_embeddings=True, rope_parameters={
                        "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                        "full_attention": {"rope_type": "default", "rope_theta": 50000.0}})),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", "phi3",
             dict(BASE, partial_rotary_factor=0.5, original_max_position_embeddings=8, rope_parameters=LONGROPE,
                  sliding_window=6)),
}
LAYER_PARTS = {  # our module path inside a layer -> llama.cpp's tensor name
    "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
    "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm", "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down", "mlp.gate": "ffn_gate_inp",
    "mlp.experts.gate_proj": "ffn_gate_exps", "mlp.experts.up_proj": "ffn_up_exps",
    "mlp.experts.down_proj": "ffn_down_exps", "self_attn.qkv_proj": "attn_qkv",
}
FAMILY_PARTS = {
    "gemma3": {"post_attention_layernorm": "post_attention_norm", "pre_feedforward_layernorm": "ffn_norm",
               "post_feedforward_layernorm": "post_ffw_norm"},
    "phi3": {"mlp.gate_up_proj": "ffn_up"},
}
TOP = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
       "lm_head.weight": "output.weight"}


def _gguf_name(key: str, name: str) -> str:
    if key in TOP:
        return TOP[key]
    _, _, layer, rest = key.split(".", 3)
    path = rest.removesuffix(".weight")
    return f"blk.{layer}.{FAMILY_PARTS.get(name, {}).get(path) or LAYER_PARTS[path]}.weight"


def _permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's Llama q/k row order: each head's two halves interleaved."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(path, name: str, arch: str, model, qtype=T.F32) -> dict:
    """Write `model` (ours, loaded from the transformers checkpoint) as llama.cpp would; returns the
    values each parameter should load to."""
    cfg = model.config
    writer = gguf.GGUFWriter(str(path), arch)
    ints = {"context_length": cfg.max_position_embeddings, "embedding_length": cfg.hidden_size,
            "block_count": cfg.num_hidden_layers, "feed_forward_length": cfg.intermediate_size,
            "attention.head_count": cfg.num_attention_heads, "attention.head_count_kv": cfg.num_key_value_heads,
            "attention.key_length": cfg.head_dim, "vocab_size": cfg.vocab_size}
    floats = {"attention.layer_norm_rms_epsilon": cfg.rms_norm_eps}
    if name == "gemma3":
        floats["rope.freq_base"] = cfg.rope_parameters["full_attention"]["rope_theta"]
        ints["attention.sliding_window"] = cfg.sliding_window
    else:
        floats["rope.freq_base"] = pretrained.layers.rope_parameters(cfg)["rope_theta"]
    if name in ("qwen3moe", "mixtral"):
        ints.update({"expert_count": cfg.num_local_experts, "expert_used_count": cfg.num_experts_per_tok})
    if name == "qwen3moe":
        ints["expert_feed_forward_length"] = cfg.moe_intermediate_size
    if name == "phi3":
        ints.update({"rope.dimension_count": cfg.rotary_dim(), "attention.sliding_window": cfg.sliding_window,
                     "rope.scaling.original_context_length": 8})
        floats["rope.scaling.attn_factor"] = LONGROPE["attention_factor"]
        writer.add_tensor("rope_factors_long.weight", np.array(LONGROPE["long_factor"], dtype=np.float32))
        writer.add_tensor("rope_factors_short.weight", np.array(LONGROPE["short_factor"], dtype=np.float32))
    for key, value in ints.items():
        writer.add_uint32(f"{arch}.{key}", value)
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):  # a real file's tokenizer metadata has them
        writer.add_uint32(f"tokenizer.ggml.{key.replace('pad_', 'padding_')}", getattr(cfg, key))
    for key, value in floats.items():
        writer.add_float32(f"{arch}.{key}", value)
    expected = {}
    for key, tensor in model.state_dict().items():
        if key == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        w = tensor.detach().float().numpy()
        tensor_name = _gguf_name(key, name)
        if name == "gemma3" and key.endswith("norm.weight"):
            w = w + 1  # ggml scales by w
        heads = None
        if arch == "llama" and tensor_name.split(".")[-2] in ("attn_q", "attn_k"):
            heads = cfg.num_attention_heads if "attn_q" in tensor_name else cfg.num_key_value_heads
            w = _permute(w, heads)
        if qtype != T.F32 and w.ndim >= 2 and w.shape[-1] % 32 == 0:
            data = gguf.quants.quantize(w, qtype)
            writer.add_tensor(tensor_name, data, raw_dtype=qtype)
            values = gguf.quants.dequantize(data, qtype)
            if heads is not None:  # back to the checkpoint's row order
                values = values.reshape(heads, values.shape[0] // heads // 2, 2, -1).swapaxes(1, 2).reshape(w.shape)
            expected[key] = torch.from_numpy(np.ascontiguousarray(values))
        else:
            writer.add_tensor(tensor_name, np.ascontiguousarray(w))
            expected[key] = tensor.detach()
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return expected


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache" / "hub"))  # the converted weights go beside it


@pytest.mark.parametrize("name", CASES)
def test_float32_file_loads_the_checkpoint_model(tmp_path, name):
    config_name, model_name, arch, kwargs = CASES[name]
    folder = hf_checkpoint(tmp_path / "hf", config_name, model_name, **kwargs)
    reference = pretrained.AutoModelForCausalLM.from_pretrained(folder)
    write_gguf(tmp_path / "tiny.gguf", name, arch, reference)
    ours = pretrained.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="tiny.gguf")
    assert type(ours) is type(reference)
    assert ours.config.layer_types == reference.config.layer_types
    ids = torch.tensor([[1, 5, 9, 33, 2, 70, 71, 12, 40, 41, 3]])  # past the windows and LongRoPE's 8
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, reference(ids).logits, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["qwen3moe", "mixtral"])
def test_q8_0_experts_expand_as_the_reference(tmp_path, name):
    config_name, model_name, arch, kwargs = CASES[name]
    folder = hf_checkpoint(tmp_path / "hf", config_name, model_name, seed=1, **kwargs)
    reference = pretrained.AutoModelForCausalLM.from_pretrained(folder)
    expected = write_gguf(tmp_path / "tiny.gguf", name, arch, reference, qtype=T.Q8_0)
    ours = pretrained.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="tiny.gguf")
    state = ours.state_dict()
    assert not torch.equal(state["model.layers.0.mlp.experts.gate_proj"],
                           reference.state_dict()["model.layers.0.mlp.experts.gate_proj"])  # it was quantized
    for key, value in expected.items():
        torch.testing.assert_close(state[key], value.to(state[key].dtype), rtol=0, atol=0, msg=key)


def test_phi3_without_fused_qkv_is_refused(tmp_path):
    writer = gguf.GGUFWriter(str(tmp_path / "split.gguf"), "phi3")
    for key, value in {"embedding_length": 32, "block_count": 1, "attention.head_count": 4, "feed_forward_length": 8,
                       "context_length": 16}.items():
        writer.add_uint32(f"phi3.{key}", value)
    writer.add_tensor("blk.0.attn_q.weight", np.zeros((32, 32), dtype=np.float32))
    writer.add_tensor("token_embd.weight", np.zeros((8, 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(pretrained.errors.CheckpointError, match="attn_qkv"):
        pretrained.AutoConfig.from_pretrained(tmp_path / "split.gguf")
