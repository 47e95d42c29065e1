"""GGUF metadata and tensor names -> a Transformers config.json dict and checkpoint keys.

One table per architecture: metadata keys (prefixed with the architecture name, as llama.cpp
writes them) to config fields, and llama.cpp tensor names to the checkpoint keys of our model
files. llama.cpp stores Llama's q/k projections with their rows permuted for its rotary
layout (interleaved pairs instead of halves); `unpermute` undoes it. Gemma's converter adds 1 to
every RMSNorm weight (ggml scales by w, Gemma by 1 + w): `norm_shift` takes it off. Mixture-of-experts
files store each layer's experts stacked, (E, F, C), which is the model's own stacked parameter.
"""

from __future__ import annotations

import re

import torch

from .reader import GGUFError, GGUFFile

# config field <- metadata key suffix (after "<arch>.")
_LLAMA_FIELDS = {
    "hidden_size": "embedding_length",
    "intermediate_size": "feed_forward_length",
    "num_hidden_layers": "block_count",
    "num_attention_heads": "attention.head_count",
    "num_key_value_heads": "attention.head_count_kv",
    "rms_norm_eps": "attention.layer_norm_rms_epsilon",
    "max_position_embeddings": "context_length",
    "rope_theta": "rope.freq_base",
    "head_dim": "attention.key_length",
    "sliding_window": "attention.sliding_window",
}
_GPT2_FIELDS = {
    "n_embd": "embedding_length",
    "n_inner": "feed_forward_length",
    "n_layer": "block_count",
    "n_head": "attention.head_count",
    "n_positions": "context_length",
    "layer_norm_epsilon": "attention.layer_norm_epsilon",
}

_LLAMA_BLOCK = {
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}
_LLAMA_TOP = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
_GPT2_BLOCK = {
    "attn_norm": "ln_1", "attn_qkv": "attn.c_attn", "attn_output": "attn.c_proj",
    "ffn_norm": "ln_2", "ffn_up": "mlp.c_fc", "ffn_down": "mlp.c_proj",
}
_GPT2_TOP = {"token_embd": "transformer.wte", "position_embd": "transformer.wpe", "output_norm": "transformer.ln_f",
             "output": "lm_head"}
_QK_NORMS = {"attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm"}
_EXPERT_FIELDS = {"num_local_experts": "expert_count", "num_experts_per_tok": "expert_used_count"}
_QWEN3_MOE_BLOCK = {**_LLAMA_BLOCK, **_QK_NORMS, "ffn_gate_inp": "mlp.gate", "ffn_gate_exps": "mlp.experts.gate_proj",
                    "ffn_up_exps": "mlp.experts.up_proj", "ffn_down_exps": "mlp.experts.down_proj"}
# Mixtral's checkpoint names (the model renames block_sparse_moe to mlp); the stacked tensors are whole parameters
_MIXTRAL_BLOCK = {**{k: v for k, v in _LLAMA_BLOCK.items() if not k.startswith("ffn_") or k == "ffn_norm"},
                  "ffn_gate_inp": "block_sparse_moe.gate", "ffn_gate_exps": "block_sparse_moe.experts.gate_proj",
                  "ffn_up_exps": "block_sparse_moe.experts.up_proj",
                  "ffn_down_exps": "block_sparse_moe.experts.down_proj"}
_GEMMA3_BLOCK = {**_LLAMA_BLOCK, **_QK_NORMS, "post_attention_norm": "post_attention_layernorm",
                 "ffn_norm": "pre_feedforward_layernorm", "post_ffw_norm": "post_feedforward_layernorm"}
_PHI3_BLOCK = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm", "attn_qkv": "self_attn.qkv_proj",
               "attn_output": "self_attn.o_proj", "ffn_up": "mlp.gate_up_proj", "ffn_down": "mlp.down_proj"}


class Architecture:
    """How one llama.cpp architecture becomes one of our model types."""

    def __init__(self, model_type, fields, top, block, block_prefix, permute_qk=False, transposed=(),
                 class_name=None, constants=None, norm_shift=0.0, stacked=()):
        self.model_type, self.fields, self.top, self.block = model_type, fields, top, block
        self.block_prefix, self.permute_qk, self.transposed = block_prefix, permute_qk, transposed
        self.class_name = class_name or model_type.capitalize() + "ForCausalLM"
        self.constants = {"hidden_act": "silu"} if constants is None else constants  # config values files omit
        self.norm_shift = norm_shift
        self.stacked = stacked  # block parts stored as whole (E, ...) parameters: no ".weight" on the key

    def checkpoint_key(self, name: str) -> str | None:
        """llama.cpp tensor name -> checkpoint key; None for tensors the model does not use."""
        match = re.fullmatch(r"blk\.(\d+)\.(\w+)\.(weight|bias)", name)
        if match:
            layer, part, kind = match.groups()
            target = self.block.get(part)
            if target is None:
                return None
            return f"{self.block_prefix}.{layer}.{target}" + ("" if part in self.stacked else f".{kind}")
        base, _, kind = name.rpartition(".")
        target = self.top.get(base)
        return None if target is None else f"{target}.{kind}"


ARCHITECTURES = {
    "llama": Architecture("llama", _LLAMA_FIELDS, _LLAMA_TOP, _LLAMA_BLOCK, "model.layers", permute_qk=True),
    "mistral": Architecture("mistral", _LLAMA_FIELDS, _LLAMA_TOP, _LLAMA_BLOCK, "model.layers", permute_qk=True),
    "qwen2": Architecture("qwen2", _LLAMA_FIELDS, _LLAMA_TOP, _LLAMA_BLOCK, "model.layers"),
    # GPT-2's checkpoint keeps Conv1D weights as (in, out); llama.cpp stores (out, in)
    "gpt2": Architecture("gpt2", _GPT2_FIELDS, _GPT2_TOP, _GPT2_BLOCK, "transformer.h",
                         transposed=("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")),
    "qwen3": Architecture("qwen3", _LLAMA_FIELDS, _LLAMA_TOP, {**_LLAMA_BLOCK, **_QK_NORMS}, "model.layers"),
    "qwen3moe": Architecture("qwen3_moe", {**_LLAMA_FIELDS, **_EXPERT_FIELDS,
                                           "moe_intermediate_size": "expert_feed_forward_length"},
                             _LLAMA_TOP, _QWEN3_MOE_BLOCK, "model.layers", class_name="Qwen3MoeForCausalLM",
                             stacked=("ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"),
                             constants={"hidden_act": "silu", "norm_topk_prob": True}),  # llama.cpp renormalises
    # sliding layers rotate with base 10000 and every 6th layer is global in llama.cpp too: the config's defaults
    "gemma3": Architecture("gemma3_text", _LLAMA_FIELDS, _LLAMA_TOP, _GEMMA3_BLOCK, "model.layers",
                           class_name="Gemma3ForCausalLM", constants={"hidden_activation": "gelu_pytorch_tanh"},
                           norm_shift=1.0),
    "phi3": Architecture("phi3", _LLAMA_FIELDS, _LLAMA_TOP, _PHI3_BLOCK, "model.layers"),
}
# a "llama" file with experts (llama.cpp writes Mixtral under Llama's name)
MIXTRAL = Architecture("mixtral", {**_LLAMA_FIELDS, **_EXPERT_FIELDS}, _LLAMA_TOP, _MIXTRAL_BLOCK, "model.layers",
                       permute_qk=True, stacked=("ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"))


def architecture(gguf: GGUFFile) -> Architecture:
    name = gguf.architecture
    if name == "llama" and gguf.get("llama.expert_count"):
        return MIXTRAL
    if name not in ARCHITECTURES:
        raise GGUFError(f"{gguf.path}: general.architecture is {name!r}, which is not supported "
                        f"(supported: {', '.join(sorted(ARCHITECTURES))})")
    return ARCHITECTURES[name]


def config_dict(gguf: GGUFFile) -> dict:
    """config.json contents for the file's model, as Transformers names its fields."""
    arch = architecture(gguf)
    prefix = gguf.architecture
    config: dict = {"model_type": arch.model_type}
    for field, key in arch.fields.items():
        value = gguf.get(f"{prefix}.{key}")
        if value is not None:
            config[field] = value
    for required in ("embedding_length", "block_count", "attention.head_count"):
        gguf.require(f"{prefix}.{required}")
    tokens = gguf.get("tokenizer.ggml.tokens") if gguf.has("tokenizer.ggml.tokens") else None
    vocab = gguf.get(f"{prefix}.vocab_size") or (len(tokens) if tokens is not None else None)
    if vocab is None:
        vocab = _tensor_rows(gguf, "token_embd.weight")
    config["vocab_size"] = int(vocab)
    names = set(gguf.tensor_names())
    config["tie_word_embeddings"] = "output.weight" not in names
    for field, key in (("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id"),
                       ("pad_token_id", "padding_token_id")):
        value = gguf.get(f"tokenizer.ggml.{key}")
        if value is not None:
            config[field] = int(value)
    if arch.model_type != "gpt2":
        if "feed_forward_length" not in config and "intermediate_size" not in config:
            gguf.require(f"{prefix}.feed_forward_length")
        scaling = gguf.get(f"{prefix}.rope.scaling.type")
        if scaling not in (None, "none") and "rope_factors_long.weight" not in names:  # Phi-3's: see below
            factor = gguf.get(f"{prefix}.rope.scaling.factor")
            if scaling not in ("linear", "yarn") or factor is None:
                raise GGUFError(f"{gguf.path}: {prefix}.rope.scaling.type {scaling!r} is not supported "
                                "(supported: linear, yarn with a factor)")
            rope = {"rope_type": scaling, "factor": float(factor)}
            original = gguf.get(f"{prefix}.rope.scaling.original_context_length")
            if original is not None:
                rope["original_max_position_embeddings"] = int(original)
            config["rope_scaling"] = rope
        config["attention_bias"] = arch.model_type == "qwen2" or "blk.0.attn_q.bias" in names
        config.update(arch.constants)
        _family_fields(gguf, arch, config, names)
    else:
        config["activation_function"] = "gelu_new"
    config["architectures"] = [{"gpt2": "GPT2LMHeadModel"}.get(arch.model_type, arch.class_name)]
    return config


def _family_fields(gguf: GGUFFile, arch: Architecture, config: dict, names: set) -> None:
    """Config fields llama.cpp keeps implicit or elsewhere (Gemma 3, Phi-3), and layouts we refuse."""
    prefix = gguf.architecture
    if arch.stacked and "blk.0.ffn_gate_exps.weight" not in names:
        raise GGUFError(f"{gguf.path}: experts stored one by one (older llama.cpp files) are not supported; "
                        "expected stacked blk.N.ffn_{gate,up,down}_exps tensors")
    if arch.model_type == "gemma3_text":
        # llama.cpp scales queries by head_dim**-0.5, by (hidden / heads)**-0.5 for the 62-layer (27B) model
        wide = config["num_hidden_layers"] == 62
        per_head = config["hidden_size"] // config["num_attention_heads"]
        config["query_pre_attn_scalar"] = per_head if wide else config.get("head_dim", per_head)
    if arch.model_type == "phi3":
        if "blk.0.attn_qkv.weight" not in names:
            raise GGUFError(f"{gguf.path}: a phi3 file without fused blk.N.attn_qkv tensors is not supported")
        rotary = gguf.get(f"{prefix}.rope.dimension_count")
        if rotary is not None:
            config["partial_rotary_factor"] = rotary / (config["hidden_size"] // config["num_attention_heads"])
        if "rope_factors_long.weight" in names:  # LongRoPE: its frequency divisors are tensors in the file
            factors = {n: raw.reshape(-1).view(torch.float32).tolist() for n, t, _, raw in gguf.tensors()
                       if n.startswith("rope_factors_") and t == "F32"}
            if len(factors) != 2:
                raise GGUFError(f"{gguf.path}: rope_factors_long / rope_factors_short must both be F32 tensors")
            rope = {"rope_type": "longrope", "long_factor": factors["rope_factors_long.weight"],
                    "short_factor": factors["rope_factors_short.weight"]}
            for field, key in (("original_max_position_embeddings", "rope.scaling.original_context_length"),
                               ("attention_factor", "rope.scaling.attn_factor")):
                if (value := gguf.get(f"{prefix}.{key}")) is not None:
                    rope[field] = value
            config["rope_scaling"] = rope
            config["original_max_position_embeddings"] = rope.get("original_max_position_embeddings",
                                                                  config["max_position_embeddings"])


def _tensor_rows(gguf: GGUFFile, name: str) -> int:
    for tensor_name, _, shape, _ in gguf.tensors():
        if tensor_name == name:
            return shape[0]
    raise GGUFError(f"{gguf.path}: no metadata field vocab_size and no tensor {name!r}")


def unpermute(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo llama.cpp's q/k row order: per head, rows (pair, 2) -> (2, pair), i.e. halves again."""
    rows = weight.shape[0]
    rest = weight.shape[1:]
    return weight.reshape(n_heads, rows // n_heads // 2, 2, *rest).transpose(1, 2).reshape(rows, *rest)


def cache_tensors(gguf: GGUFFile, config: dict) -> tuple[dict[str, torch.Tensor], list[str]]:
    """What the weights cache holds, under checkpoint keys: a float tensor in the file's own dtype; a
    quantized one as its int8 codes under `key` plus float32 `key:scale` (and `key:offset`), see
    quants.codes. Also returns the quantized keys whose expanded values still need transposing."""
    from .quants import FLOAT_TYPES, codes

    arch = architecture(gguf)
    heads = {"attn_q": config.get("num_attention_heads"),
             "attn_k": config.get("num_key_value_heads") or config.get("num_attention_heads")}
    out, transpose_on_load = {}, []
    for name, type_name, shape, raw in gguf.tensors():
        key = arch.checkpoint_key(name)
        if key is None:
            continue
        if type_name in FLOAT_TYPES:
            parts = {key: raw.reshape(-1).view(FLOAT_TYPES[type_name]).reshape(shape)}
            if arch.norm_shift and key.endswith("norm.weight"):
                parts[key] = parts[key] - arch.norm_shift
        elif arch.norm_shift and key.endswith("norm.weight"):
            raise GGUFError(f"{gguf.path}: norm tensor {name!r} is quantized ({type_name}); expected a float type")
        else:
            q, scale, offset = codes(raw, type_name, shape)
            parts = {key: q, f"{key}:scale": scale} | ({} if offset is None else {f"{key}:offset": offset})
        part = name.split(".")[2] if name.startswith("blk.") else ""
        if arch.permute_qk and part in heads:  # whole rows move, so codes and their scales move together
            parts = {k: unpermute(t, int(heads[part])) for k, t in parts.items()}
        if any(f".{t}.weight" in key for t in arch.transposed):
            if type_name in FLOAT_TYPES:
                parts[key] = parts[key].t().contiguous()
            else:  # scales group a row's elements: transpose only the expanded values
                transpose_on_load.append(key)
        out.update(parts)
    if config.get("tie_word_embeddings") and arch.model_type != "gpt2":
        for suffix in ("", ":scale", ":offset"):
            out.pop("lm_head.weight" + suffix, None)
    return out, transpose_on_load
