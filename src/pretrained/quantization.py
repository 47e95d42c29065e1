"""Quantization configs that ported scripts build and pass as `from_pretrained(quantization_config=...)`.

We have no bitsandbytes kernels: the config is accepted as data (its fields and `to_dict` as
Transformers'), and `from_pretrained` refuses it with what works instead. Our own int8 weight-only
linear layers are `pretrained.int8` (quantize_linear_int8, save_int8 / load_int8).
"""

from __future__ import annotations

from .errors import UnsupportedOptionError

ALTERNATIVES = (
    "load in half precision (dtype=torch.bfloat16 or torch.float16), load a llama.cpp quantized file "
    "(gguf_file=...), quantize the loaded model's nn.Linear layers to int8 weights with "
    "pretrained.int8.quantize_linear_int8(model), or load a folder saved by pretrained.int8.save_int8 with load_int8"
)


class BitsAndBytesConfig:
    """Transformers' BitsAndBytesConfig fields; refused by from_pretrained (see ALTERNATIVES)."""

    quant_method = "bitsandbytes"

    def __init__(self, load_in_8bit: bool = False, load_in_4bit: bool = False, llm_int8_threshold: float = 6.0,
                 llm_int8_skip_modules=None, llm_int8_enable_fp32_cpu_offload: bool = False,
                 llm_int8_has_fp16_weight: bool = False, bnb_4bit_compute_dtype=None, bnb_4bit_quant_type: str = "fp4",
                 bnb_4bit_use_double_quant: bool = False, bnb_4bit_quant_storage=None, **kwargs):
        if load_in_8bit and load_in_4bit:
            raise UnsupportedOptionError("BitsAndBytesConfig: load_in_8bit and load_in_4bit are both True; pick one")
        if kwargs:
            raise TypeError(f"BitsAndBytesConfig got unexpected keyword arguments {sorted(kwargs)}")
        self.load_in_8bit = load_in_8bit
        self.load_in_4bit = load_in_4bit
        self.llm_int8_threshold = llm_int8_threshold
        self.llm_int8_skip_modules = llm_int8_skip_modules
        self.llm_int8_enable_fp32_cpu_offload = llm_int8_enable_fp32_cpu_offload
        self.llm_int8_has_fp16_weight = llm_int8_has_fp16_weight
        self.bnb_4bit_compute_dtype = bnb_4bit_compute_dtype
        self.bnb_4bit_quant_type = bnb_4bit_quant_type
        self.bnb_4bit_use_double_quant = bnb_4bit_use_double_quant
        self.bnb_4bit_quant_storage = "uint8" if bnb_4bit_quant_storage is None else bnb_4bit_quant_storage

    def quantization_method(self) -> str | None:
        if self.load_in_8bit:
            return "llm_int8"
        return self.bnb_4bit_quant_type if self.load_in_4bit else None

    def to_dict(self) -> dict:
        out = {"quant_method": self.quant_method}
        for key, value in vars(self).items():
            is_dtype = key in ("bnb_4bit_compute_dtype", "bnb_4bit_quant_storage") and value is not None
            out[key] = str(value).removeprefix("torch.") if is_dtype else value
        return out

    def __repr__(self) -> str:
        return f"BitsAndBytesConfig({self.to_dict()})"


def refuse_quantization(config, where: str) -> None:
    """from_pretrained's answer to a quantization request (`where`: the argument or file that asked):
    an UnsupportedOptionError saying what works instead."""
    if config is None or config is False:
        return
    method = getattr(config, "quant_method", None) or (config.get("quant_method") if isinstance(config, dict) else None)
    raise UnsupportedOptionError(
        f"{where} asks for {f'{method} ' if method else ''}quantized weights, which pretrained cannot load yet "
        f"(no bitsandbytes, GPTQ/AWQ or weight-only int8/4-bit kernels). Instead: {ALTERNATIVES}"
    )
