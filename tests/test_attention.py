"""attention.attend: g query rows sharing one row of keys (beams over one encoder output) give what
the same keys repeated per row give, for every mask shape a model passes."""

from __future__ import annotations

import pytest
import torch

from pretrained.attention import attend, eager_attention, sdpa_attention

Bk, g, H, T, S, D = 3, 4, 2, 2, 5, 8


@pytest.mark.parametrize("backend", [eager_attention, sdpa_attention])
@pytest.mark.parametrize("mask_shape", [None, (Bk, 1, 1, S), (Bk * g, 1, 1, S), (Bk, H, T, S), (1, H, T, S),
                                        (Bk * g, H, T, S), (1, 1, 1, S)])
def test_shared_keys_equal_repeated_keys(backend, mask_shape):
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(Bk * g, H, T, D, generator=gen)
    k, v = torch.randn(Bk, H, S, D, generator=gen), torch.randn(Bk, H, S, D, generator=gen)
    mask = None
    if mask_shape is not None:
        mask = torch.randn(*mask_shape, generator=gen)
        mask[..., 0] = torch.finfo(mask.dtype).min  # a masked key, as padding gives
    repeated_mask = mask
    if mask is not None and mask.shape[0] == Bk and Bk > 1:
        repeated_mask = mask.repeat_interleave(g, dim=0)
    out, weights = attend(backend, q, k, v, mask, scale=0.3)
    ref, ref_weights = backend(q, k.repeat_interleave(g, 0), v.repeat_interleave(g, 0), repeated_mask, scale=0.3)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-6)
    if ref_weights is not None:
        torch.testing.assert_close(weights, ref_weights, atol=1e-6, rtol=1e-6)


def test_rows_that_cannot_share_keys_are_an_error():
    q, k = torch.randn(5, H, T, D), torch.randn(2, H, S, D)
    with pytest.raises(ValueError, match="5 query rows cannot share 2 rows"):
        attend(eager_attention, q, k, k)
    with pytest.raises(ValueError, match="not causal"):
        attend(eager_attention, torch.randn(4, H, T, D), k, k, is_causal=True)
