"""Dequantization of ggml tensor types to torch, vectorised over blocks.

Each quantized tensor is rows of fixed-size blocks; a block holds a float16 scale (and for most
types a float16 minimum) followed by packed integers. Every type's values are `scale * q + offset`
over groups of 16 or 32 consecutive elements (the K-quants' scales are products of two stored
numbers, exact in float32). Each function here takes the raw bytes as a uint8 tensor of shape
(n_blocks, block_bytes) and returns the int8 codes q (n_blocks, block_elements), in the element
order ggml uses, and float32 scale and offset (or None) of shape (n_blocks, groups per block)
(llama.cpp's `ggml-quants.c` and the `gguf` package's `quants.py` describe the layouts).
`expand` turns codes into float32 values with the same operations as ggml's reference.
"""

from __future__ import annotations

import torch

QK = 32    # elements per block of the simple types
QK_K = 256  # elements per super-block of the K-quants


def _f16(raw: torch.Tensor, start: int) -> torch.Tensor:
    """(n, 1) float32 from the little-endian float16 at byte `start` of each block."""
    return raw[:, start:start + 2].contiguous().view(torch.float16).float()


def _nibbles(qs: torch.Tensor) -> torch.Tensor:
    """(n, k) bytes -> (n, 2k): all low nibbles, then all high nibbles (ggml's order)."""
    return torch.cat((qs & 0x0F, qs >> 4), dim=-1)


def _bits(packed: torch.Tensor, count: int) -> torch.Tensor:
    """(n, count/8) bytes -> (n, count) bits, least significant first."""
    shifts = torch.arange(8, dtype=torch.uint8)
    return ((packed.unsqueeze(-1) >> shifts) & 1).reshape(packed.shape[0], count)


def q8_0(raw):  # d f16 | 32 x int8; x = d * q
    return raw[:, 2:].contiguous().view(torch.int8), _f16(raw, 0), None


def q4_0(raw):  # d f16 | 16 bytes of nibbles; x = (q - 8) * d
    return _nibbles(raw[:, 2:]).to(torch.int8) - 8, _f16(raw, 0), None


def q4_1(raw):  # d f16 | m f16 | 16 bytes of nibbles; x = q * d + m
    return _nibbles(raw[:, 4:]).to(torch.int8), _f16(raw, 0), _f16(raw, 2)


def q5_0(raw):  # d f16 | 32 high bits | 16 bytes of nibbles; x = (q - 16) * d
    q = _nibbles(raw[:, 6:]) | (_bits(raw[:, 2:6], QK) << 4)
    return q.to(torch.int8) - 16, _f16(raw, 0), None


def q5_1(raw):  # d f16 | m f16 | 32 high bits | 16 bytes of nibbles; x = q * d + m
    q = _nibbles(raw[:, 8:]) | (_bits(raw[:, 4:8], QK) << 4)
    return q.to(torch.int8), _f16(raw, 0), _f16(raw, 2)


def q2_k(raw):
    # scales[16] (low nibble: scale, high: min) | qs[64] | d f16 | dmin f16; x = d*scale*q - dmin*min.
    # Two halves of 128; in each, 4 shifts x 32 bytes of 2-bit values, 16 values per scale.
    n = raw.shape[0]
    scales, qs = raw[:, :16], raw[:, 16:80].reshape(n, 2, 1, 32)
    d, dmin = _f16(raw, 80), _f16(raw, 82)
    shifts = torch.tensor([0, 2, 4, 6], dtype=torch.uint8).view(1, 1, 4, 1)
    q = ((qs >> shifts) & 3).reshape(n, QK_K).to(torch.int8)
    return q, d * (scales & 0x0F).float(), -(dmin * (scales >> 4).float())


def _q3_k_scales(packed: torch.Tensor) -> torch.Tensor:
    """12 bytes -> 16 signed 6-bit scales: low 4 bits from bytes 0-7 (low then high nibbles),
    high 2 bits from bytes 8-11 (scale i takes bits 2*(i//4) of byte 8 + i%4)."""
    low = torch.cat((packed[:, :8] & 0x0F, packed[:, :8] >> 4), dim=-1)
    i = torch.arange(16)
    high = (packed[:, 8 + i % 4] >> (2 * (i // 4)).to(torch.uint8)) & 3
    return (low | (high << 4)).float() - 32


def q3_k(raw):
    # hmask[32] | qs[64] | scales[12] | d f16; x = d*scale*q. q = 2 low bits from qs, minus 4 unless
    # the hmask bit is set; hmask bit (4*half + shift index) of byte l holds element l's high bit.
    n = raw.shape[0]
    hmask, qs = raw[:, :32], raw[:, 32:96].reshape(n, 2, 1, 32)
    scales, d = _q3_k_scales(raw[:, 96:108]), _f16(raw, 108)
    shifts = torch.tensor([0, 2, 4, 6], dtype=torch.uint8).view(1, 1, 4, 1)
    low = ((qs >> shifts) & 3).to(torch.int8)                         # (n, 2, 4, 32)
    hbits = _bits(hmask, 256).reshape(n, 32, 8).transpose(1, 2).reshape(n, 2, 4, 32).to(torch.int8)
    return (low - 4 * (1 - hbits)).reshape(n, QK_K), d * scales, None


def _k4_scales(packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """12 bytes -> 8 six-bit scales and 8 six-bit mins (ggml's get_scale_min_k4)."""
    a, b, c = packed[:, 0:4], packed[:, 4:8], packed[:, 8:12]
    sc = torch.cat((a & 63, (c & 0x0F) | ((a >> 6) << 4)), dim=-1)
    mn = torch.cat((b & 63, (c >> 4) | ((b >> 6) << 4)), dim=-1)
    return sc.float(), mn.float()


def q4_k(raw):
    # d f16 | dmin f16 | scales[12] | qs[128]: 4 chunks of 32 bytes, low nibbles then high, 32 per scale.
    n = raw.shape[0]
    d, dmin = _f16(raw, 0), _f16(raw, 2)
    sc, mn = _k4_scales(raw[:, 4:16])
    qs = raw[:, 16:].reshape(n, 4, 1, 32)
    q = torch.cat((qs & 0x0F, qs >> 4), dim=2).reshape(n, QK_K)
    return q.to(torch.int8), d * sc, -(dmin * mn)


def q5_k(raw):
    # d f16 | dmin f16 | scales[12] | qh[32] | qs[128]; sub-block j's fifth bits are bit j of qh.
    n = raw.shape[0]
    d, dmin = _f16(raw, 0), _f16(raw, 2)
    sc, mn = _k4_scales(raw[:, 4:16])
    qh = _bits(raw[:, 16:48], 256).reshape(n, 32, 8).transpose(1, 2)  # (n, sub-block, 32)
    qs = raw[:, 48:].reshape(n, 4, 1, 32)
    q = torch.cat((qs & 0x0F, qs >> 4), dim=2).reshape(n, 8, 32) | (qh << 4)
    return q.reshape(n, QK_K).to(torch.int8), d * sc, -(dmin * mn)


def q6_k(raw):
    # ql[128] | qh[64] | scales[16] int8 | d f16; x = d*scale*q. Two halves of 128 values; in each,
    # four groups of 32: low nibbles of ql[0:32], of ql[32:64], high nibbles of each, 2 bits from qh.
    n = raw.shape[0]
    ql = raw[:, :128].reshape(n, 2, 2, 32)
    qh = raw[:, 128:192].reshape(n, 2, 1, 32)
    scales = raw[:, 192:208].contiguous().view(torch.int8).float()
    d = _f16(raw, 208)
    low = torch.cat((ql & 0x0F, ql >> 4), dim=2)                         # (n, 2, 4, 32)
    shifts = torch.tensor([0, 2, 4, 6], dtype=torch.uint8).view(1, 1, 4, 1)
    q = (low | (((qh >> shifts) & 3) << 4)).to(torch.int8) - 32        # (n, 2, 4, 32), 16 per scale
    return q.reshape(n, QK_K), d * scales, None


# ggml type name -> (elements per block, bytes per block, function); plain floats have no function.
BLOCK_TYPES = {
    "Q4_0": (QK, 18, q4_0), "Q4_1": (QK, 20, q4_1), "Q5_0": (QK, 22, q5_0), "Q5_1": (QK, 24, q5_1),
    "Q8_0": (QK, 34, q8_0), "Q2_K": (QK_K, 84, q2_k), "Q3_K": (QK_K, 110, q3_k), "Q4_K": (QK_K, 144, q4_k),
    "Q5_K": (QK_K, 176, q5_k), "Q6_K": (QK_K, 210, q6_k),
}
FLOAT_TYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}
SUPPORTED = tuple(FLOAT_TYPES) + tuple(BLOCK_TYPES)


def codes(raw: torch.Tensor, type_name: str, shape: tuple[int, ...]):
    """Raw bytes of a quantized tensor -> (int8 codes of `shape`, float32 scale and offset or None of
    shape (*shape[:-1], groups)); ggml rows hold whole blocks, so groups never straddle rows."""
    _, nbytes, fn = BLOCK_TYPES[type_name]
    q, scale, offset = fn(raw.reshape(-1, nbytes))
    grouped = (*shape[:-1], -1)
    return q.reshape(shape), scale.reshape(grouped), None if offset is None else offset.reshape(grouped)


def expand(q: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor | None) -> torch.Tensor:
    """float32 values of codes: scale * q, then + offset, per group of consecutive elements along the
    last dimension. Two rounded float32 operations, as in ggml's reference, so equal bit for bit."""
    x = q.to(torch.float32)
    grouped = x.view(*scale.shape, -1)  # (..., groups, group size)
    grouped.mul_(scale.unsqueeze(-1))
    if offset is not None:
        grouped.add_(offset.unsqueeze(-1))
    return x


def dequantize(raw: torch.Tensor, type_name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """Raw bytes of one tensor (uint8, any shape) -> a `dtype` tensor of `shape` (torch order)."""
    flat = raw.reshape(-1)
    if type_name in FLOAT_TYPES:
        # a copy: the source is the file's read-only map, and the model may write its parameters
        return flat.view(FLOAT_TYPES[type_name]).reshape(shape).to(dtype, copy=True)
    return expand(*codes(flat, type_name, shape)).to(dtype)
