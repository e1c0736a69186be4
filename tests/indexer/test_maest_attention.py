"""MAEST's bf16 CPU attention (``indexer.maest.model._cpu_bf16_attention``) against torch's own."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from indexer.maest.model import _cpu_bf16_attention  # noqa: E402


def _qkv(dtype: torch.dtype, batch: int = 2, heads: int = 3, n: int = 37, d: int = 16) -> list[torch.Tensor]:
    """query, key, value as transformers hands them over: (b, heads, n, d) views of a (b, n, 3·h·d)
    projection (not contiguous)."""
    torch.manual_seed(0)
    fused = torch.randn(batch, n, 3 * heads * d).to(dtype)
    return [t.view(batch, n, heads, d).transpose(1, 2) for t in fused.split(heads * d, dim=-1)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_matches_scaled_dot_product_attention(dtype: torch.dtype) -> None:
    q, k, v = _qkv(dtype)
    out, weights = _cpu_bf16_attention(None, q, k, v, None)
    expected = torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float()).transpose(1, 2)
    assert weights is None and out.dtype == dtype and out.shape == expected.shape  # (b, n, heads, d)
    error = (out.float() - expected).abs().max().item()
    assert error < 0.05  # bf16 products and softmax (values of order 1)
    cos = torch.nn.functional.cosine_similarity(out.float().flatten(), expected.flatten(), dim=0).item()
    assert cos > 0.9999


def test_scaling_is_used_and_a_mask_refused() -> None:
    q, k, v = _qkv(torch.float32)
    out, _ = _cpu_bf16_attention(None, q, k, v, None, scaling=0.5)
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=0.5).transpose(1, 2)
    default = torch.nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2)
    assert (out - expected).abs().max().item() < 0.1 < (out - default).abs().max().item()
    with pytest.raises(ValueError, match="no mask"):
        _cpu_bf16_attention(None, q, k, v, torch.zeros(2, 1, 37, 37))
