"""Quantization configs that ported scripts build and pass as `from_pretrained(quantization_config=...)`.

We have no bitsandbytes kernels. An 8-bit request (`load_in_8bit=True`, or a BitsAndBytesConfig /
dict with it) is mapped onto our own int8 weight-only linear layers (`pretrained.int8`): the same
per-row absmax int8 weights as LLM.int8, with activations left in floating point (so there are no
activation outliers to split off, and `llm_int8_threshold` has nothing to act on). 4-bit and other
methods (GPTQ, AWQ, ...) are refused with what works instead. A folder saved from an int8 model
(quant_method "int8_weight_only") loads back through from_pretrained.
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


def int8_request(config, where: str) -> list[str] | None:
    """The modules to keep in floating point when `config` (a from_pretrained quantization argument) asks
    for 8-bit weights, else None; anything we cannot honour is refused by name."""
    if config is True:  # load_in_8bit=True
        return []
    if isinstance(config, dict) and "quant_method" not in config:
        config = BitsAndBytesConfig(**config)
    if not isinstance(config, BitsAndBytesConfig) or not config.load_in_8bit:
        refuse_quantization(config, where)
        return None
    unsupported = {"llm_int8_threshold": (config.llm_int8_threshold, 6.0),
                   "llm_int8_has_fp16_weight": (config.llm_int8_has_fp16_weight, False),
                   "llm_int8_enable_fp32_cpu_offload": (config.llm_int8_enable_fp32_cpu_offload, False)}
    for field, (value, default) in unsupported.items():
        if value != default:
            raise UnsupportedOptionError(
                f"{where}: BitsAndBytesConfig.{field}={value!r} is not supported: 8-bit loading maps onto int8 "
                f"weight-only layers (activations stay in floating point); leave it at {default!r}")
    return list(config.llm_int8_skip_modules or [])


def refuse_quantization(config, where: str) -> None:
    """from_pretrained's answer to a quantization request (`where`: the argument or file that asked):
    an UnsupportedOptionError saying what works instead."""
    if config is None or config is False:
        return
    if getattr(config, "load_in_4bit", False) or (isinstance(config, dict) and config.get("load_in_4bit")):
        raise UnsupportedOptionError(f"{where} asks for 4-bit weights, which pretrained cannot load yet (8-bit maps "
                                     f"onto int8 weight-only layers: load_in_8bit=True). Instead: {ALTERNATIVES}")
    method = getattr(config, "quant_method", None) or (config.get("quant_method") if isinstance(config, dict) else None)
    raise UnsupportedOptionError(
        f"{where} asks for {f'{method} ' if method else ''}quantized weights, which pretrained cannot load yet "
        f"(no bitsandbytes, GPTQ/AWQ or weight-only int8/4-bit kernels). Instead: {ALTERNATIVES}"
    )
