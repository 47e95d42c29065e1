"""Our dequantization of every supported ggml type equals the `gguf` package's reference dequantizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as T  # noqa: E402
from gguf.quants import dequantize as ref_dequantize  # noqa: E402
from gguf.quants import quantize as ref_quantize  # noqa: E402

from pretrained.gguf import quants  # noqa: E402

SHAPE = (6, 512)  # rows of two K-quant super-blocks, sixteen 32-blocks


def _ours(data: np.ndarray, qtype, shape) -> np.ndarray:
    raw = torch.from_numpy(np.ascontiguousarray(data).view(np.uint8))
    return quants.dequantize(raw, qtype.name, shape, torch.float32).numpy()


@pytest.mark.parametrize("qtype", [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.BF16, T.F16])
def test_quantized_by_gguf(qtype):
    rng = np.random.default_rng(int(qtype))
    values = (rng.standard_normal(SHAPE) * 0.05).astype(np.float32)
    values[0, :32] = 0.0  # an all-zero block (scale 0)
    values[1, :32] = 7.0  # a constant block
    data = values.astype(np.float16) if qtype == T.F16 else ref_quantize(values, qtype)
    expected = ref_dequantize(data, qtype).reshape(SHAPE)
    np.testing.assert_array_equal(_ours(data, qtype, SHAPE), expected)


@pytest.mark.parametrize("qtype", [T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K, T.Q4_0, T.Q5_1])
def test_random_blocks(qtype):
    """gguf cannot quantize K-quants: random block bytes with finite float16 scales instead."""
    block_elems, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
    n_blocks = SHAPE[0] * SHAPE[1] // block_elems
    rng = np.random.default_rng(100 + int(qtype))
    blocks = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    # byte offsets of the float16 scale fields (d, dmin) in each block layout
    scale_offsets = {T.Q2_K: (80, 82), T.Q3_K: (108,), T.Q4_K: (0, 2), T.Q5_K: (0, 2), T.Q6_K: (208,),
                     T.Q4_0: (0,), T.Q5_1: (0, 2)}[qtype]
    for offset in scale_offsets:
        scales = (rng.standard_normal(n_blocks) * 0.01).astype(np.float16)
        blocks[:, offset:offset + 2] = scales.view(np.uint8).reshape(n_blocks, 2)
    data = blocks.reshape(SHAPE[0], -1)
    expected = ref_dequantize(data, qtype).reshape(SHAPE)
    np.testing.assert_array_equal(_ours(data, qtype, SHAPE), expected)


def test_float32_and_dtype_conversion():
    values = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    raw = torch.from_numpy(values.view(np.uint8))
    out = quants.dequantize(raw, "F32", SHAPE, torch.bfloat16)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, torch.from_numpy(values).to(torch.bfloat16), rtol=0, atol=0)
