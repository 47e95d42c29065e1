"""Small GGUF files written in the test with gguf.GGUFWriter from tiny random transformers
checkpoints: loading them gives the same model as loading the checkpoint; bad files fail clearly."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as T  # noqa: E402

from pretrained import AutoConfig, AutoModelForCausalLM  # noqa: E402
from pretrained.errors import CheckpointError  # noqa: E402

TINY_LLAMA = dict(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-5, rope_theta=10000.0)
LLAMA_NAMES = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q",
               "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
               "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
GPT2_NAMES = {"ln_1": "attn_norm", "attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output", "ln_2": "ffn_norm",
              "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down"}


def _llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """What llama.cpp's converter does to Llama's q/k rows (pairs interleaved per head)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _gguf_name(key: str, arch: str) -> str:
    top = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output",
           "transformer.wte": "token_embd", "transformer.wpe": "position_embd", "transformer.ln_f": "output_norm"}
    base, _, kind = key.rpartition(".")
    if base in top:
        return f"{top[base]}.{kind}"
    parts = base.split(".")
    layer = parts[2 if arch != "gpt2" else 2]
    inner = ".".join(parts[3:])
    return f"blk.{layer}.{(GPT2_NAMES if arch == 'gpt2' else LLAMA_NAMES)[inner]}.{kind}"


def write_gguf(path, arch: str, hf_model, qtype=T.F32, metadata=None, skip=()):
    """Write hf_model's weights as llama.cpp would: its names, permuted q/k, (out, in) GPT-2 weights."""
    cfg = hf_model.config
    writer = gguf.GGUFWriter(str(path), arch)
    if arch == "gpt2":
        fields = {"context_length": cfg.n_positions, "embedding_length": cfg.n_embd, "block_count": cfg.n_layer,
                  "feed_forward_length": 4 * cfg.n_embd, "attention.head_count": cfg.n_head}
        writer.add_float32(f"{arch}.attention.layer_norm_epsilon", cfg.layer_norm_epsilon)
    else:
        fields = {"context_length": cfg.max_position_embeddings, "embedding_length": cfg.hidden_size,
                  "block_count": cfg.num_hidden_layers, "feed_forward_length": cfg.intermediate_size,
                  "attention.head_count": cfg.num_attention_heads,
                  "attention.head_count_kv": cfg.num_key_value_heads, "vocab_size": cfg.vocab_size}
        writer.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", cfg.rms_norm_eps)
        writer.add_float32(f"{arch}.rope.freq_base", cfg.rope_parameters["rope_theta"])
    for key, value in fields.items():
        writer.add_uint32(f"{arch}.{key}", value)
    for key, value in (metadata or {}).items():
        writer.add_string(key, value)
    expected = {}
    for key, tensor in hf_model.state_dict().items():
        if key.endswith((".attn.bias", ".attn.masked_bias")) or key in skip:
            continue
        w = tensor.detach().float().numpy()
        name = _gguf_name(key, arch)
        if arch == "gpt2" and w.ndim == 2 and name.split(".")[-2] in GPT2_NAMES.values():
            w = np.ascontiguousarray(w.T)
        if arch == "llama" and name.split(".")[-2] in ("attn_q", "attn_k"):
            heads = cfg.num_attention_heads if "attn_q" in name else cfg.num_key_value_heads
            w = _llama_cpp_permute(w, heads)
        if w.ndim == 2 and qtype != T.F32:
            data = gguf.quants.quantize(w, qtype)
            writer.add_tensor(name, data, raw_dtype=qtype)
            expected[key] = gguf.quants.dequantize(data, qtype)
        else:
            writer.add_tensor(name, np.ascontiguousarray(w))
            expected[key] = w
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return expected


def _hf_tiny(kind: str, seed=0):
    import transformers

    torch.manual_seed(seed)
    if kind == "gpt2":
        config = transformers.GPT2Config(vocab_size=96, n_embd=64, n_layer=2, n_head=4, n_positions=64)
        return transformers.GPT2LMHeadModel(config).eval()
    cls = {"llama": "Llama", "qwen2": "Qwen2"}[kind]
    config = getattr(transformers, f"{cls}Config")(**TINY_LLAMA, tie_word_embeddings=False)
    return getattr(transformers, f"{cls}ForCausalLM")(config).eval()


IDS = torch.tensor([[1, 5, 9, 33, 2, 70, 71, 12]])


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2"])
def test_float32_file_equals_checkpoint(tmp_path, arch):
    hf = _hf_tiny(arch)
    hf.save_pretrained(tmp_path / "hf")
    write_gguf(tmp_path / "tiny.gguf", arch, hf)
    ours = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="tiny.gguf")
    reference = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(ours(IDS).logits, reference(IDS).logits, rtol=0, atol=0)
        torch.testing.assert_close(ours(IDS).logits, hf(IDS).logits, rtol=1e-5, atol=1e-5)
    assert AutoConfig.from_pretrained(tmp_path / "tiny.gguf").model_type == arch


@pytest.mark.parametrize("arch,qtype", [("llama", T.Q8_0), ("llama", T.Q4_1), ("gpt2", T.Q5_0), ("qwen2", T.Q4_0),
                                        ("llama", T.F16), ("gpt2", T.BF16)])
def test_quantized_file_equals_reference_dequantization(tmp_path, arch, qtype):
    hf = _hf_tiny(arch, seed=1)
    hf.save_pretrained(tmp_path / "hf")
    expected = write_gguf(tmp_path / "q.gguf", arch, hf, qtype=qtype)
    state = {}
    for key, value in expected.items():  # undo what the file's layout did, by the test's own route
        shape = hf.state_dict()[key].shape
        w = np.asarray(value, dtype=np.float32)
        if arch == "gpt2" and len(shape) == 2 and _gguf_name(key, arch).split(".")[-2] in GPT2_NAMES.values():
            w = w.reshape(shape[::-1]).T
        w = torch.from_numpy(np.ascontiguousarray(w).reshape(shape))
        if key.endswith(("q_proj.weight", "k_proj.weight")) and arch == "llama":
            heads = hf.config.num_attention_heads if "q_proj" in key else hf.config.num_key_value_heads
            w = w.reshape(heads, w.shape[0] // heads // 2, 2, -1).transpose(1, 2).reshape(w.shape)
        state[key] = w
    reference = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", state_dict=state)
    ours = AutoModelForCausalLM.from_pretrained(tmp_path / "q.gguf", dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(ours(IDS).logits, reference(IDS).logits, rtol=0, atol=0)
    # the first load cached the weights; the second reads them and gives the same model
    assert os.path.isfile(_cached_weights(tmp_path / "q.gguf"))
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "q.gguf")
    with torch.no_grad():
        torch.testing.assert_close(again(IDS).logits, ours(IDS).logits, rtol=0, atol=0)
    half = AutoModelForCausalLM.from_pretrained(tmp_path / "q.gguf", dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16
    for key, value in half.state_dict().items():  # as a float32 load converted to bfloat16
        torch.testing.assert_close(value, ours.state_dict()[key].to(torch.bfloat16), rtol=0, atol=0)


def _cached_weights(gguf_path) -> str:
    from pretrained.gguf.loading import WEIGHTS_FORMAT, GGUFCheckpoint

    return os.path.join(GGUFCheckpoint(str(gguf_path)).folder, WEIGHTS_FORMAT, "model.safetensors")


@pytest.mark.parametrize("qtype,matrices,ratio", [(T.Q8_0, "I8", 0.32), (T.Q4_1, "I8", 0.32), (T.F16, "F16", 0.51),
                                                (T.BF16, "BF16", 0.51)])
def test_cache_keeps_file_precision(tmp_path, qtype, matrices, ratio):
    """Quantized weights are cached as int8 codes plus float32 scales per 32 (1.25 bytes a weight),
    float weights in their own dtype, F32 norms as float32; loading still gives float32."""
    from pretrained.weights import read_safetensors_header

    hf = _hf_tiny("llama", seed=2)
    write_gguf(tmp_path / "m.gguf", "llama", hf, qtype=qtype)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m.gguf")
    assert model.dtype == torch.float32
    path = _cached_weights(tmp_path / "m.gguf")
    header = read_safetensors_header(path)
    for key, info in header.items():
        if key.endswith((":scale", ":offset")) or "norm" in key:
            assert info["dtype"] == "F32", key
        else:
            assert info["dtype"] == matrices, key
    assert any(k.endswith(":scale") for k in header) == (matrices == "I8")
    float32_bytes = sum(p.numel() * 4 for p in model.parameters())
    data_bytes = sum(info["data_offsets"][1] - info["data_offsets"][0] for info in header.values())
    assert data_bytes <= ratio * float32_bytes


def test_earlier_float32_cache_is_not_read_and_is_removed(tmp_path):
    from pretrained.gguf.loading import GGUFCheckpoint
    from pretrained.weights import save_state_dict

    hf = _hf_tiny("llama", seed=3)
    write_gguf(tmp_path / "m.gguf", "llama", hf, qtype=T.Q8_0)
    folder = GGUFCheckpoint(str(tmp_path / "m.gguf")).folder
    stale = {k: torch.zeros_like(v) for k, v in hf.state_dict().items()}  # what an earlier version would map
    save_state_dict(stale, os.path.join(folder, "float32"))
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m.gguf")
    assert model.model.norm.weight.abs().sum() > 0
    assert not os.path.exists(os.path.join(folder, "float32"))


def test_truncated_file(tmp_path):
    hf = _hf_tiny("llama")
    write_gguf(tmp_path / "full.gguf", "llama", hf)
    data = (tmp_path / "full.gguf").read_bytes()
    for cut in (10, 200, len(data) - 100):
        path = tmp_path / f"cut{cut}.gguf"
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=str(path).replace("\\", "\\\\")):
            AutoModelForCausalLM.from_pretrained(path)


def test_unknown_architecture(tmp_path):
    hf = _hf_tiny("llama")
    path = tmp_path / "falcon.gguf"
    write_gguf(path, "llama", hf)
    data = path.read_bytes().replace(b"llama", b"flcon")  # the value and every "llama." key prefix
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match=r"falcon\.gguf.*general\.architecture is 'flcon'"):
        AutoConfig.from_pretrained(path)


def test_unknown_quant_type(tmp_path):
    path = tmp_path / "iq.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tensor("token_embd.weight", np.zeros((4, 66), dtype=np.uint8), raw_dtype=T.IQ2_XXS)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(CheckpointError, match=r"iq\.gguf.*'token_embd\.weight'.*IQ2_XXS"):
        AutoModelForCausalLM.from_pretrained(path)


def test_missing_file_in_folder(tmp_path):
    with pytest.raises(CheckpointError, match="nope.gguf"):
        AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="nope.gguf")
    assert not os.listdir(tmp_path)
