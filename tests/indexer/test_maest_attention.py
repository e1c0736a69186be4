"""MAEST's bf16 CPU attention (``indexer.maest.model._cpu_bf16_attention``) against torch's own."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from indexer.maest.model import _cpu_bf16_attention, use_cpu_bf16_attention  # noqa: E402


def _qkv(dtype: torch.dtype, batch: int = 2, heads: int = 3, n: int = 37, d: int = 16) -> list[torch.Tensor]:
    """query, key, value as transformers' AST hands them over: (b, heads, n, d) views of three
    (b, n, heads·d) projections (not contiguous)."""
    torch.manual_seed(0)
    return [torch.randn(batch, n, heads * d).to(dtype).view(batch, n, heads, d).transpose(1, 2) for _ in range(3)]


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


def test_a_transformers_model_runs_it_and_keeps_its_output() -> None:
    """Through transformers' own attention dispatch (a small AST, as MAEST is): the hidden states
    in bf16 with this attention stay within cosine 0.9999 of fp32's, and it was really called."""
    from transformers import ASTConfig, ASTModel

    torch.manual_seed(0)
    config = ASTConfig(hidden_size=48, num_hidden_layers=2, num_attention_heads=3, intermediate_size=96,
                       patch_size=16, frequency_stride=10, time_stride=10, num_mel_bins=32, max_length=64)
    model = ASTModel(config).eval()
    x = torch.randn(2, 64, 32)
    with torch.inference_mode():
        reference = model(input_values=x).last_hidden_state
    calls = []
    import indexer.maest.model as maest_model

    original = maest_model._cpu_bf16_attention

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return original(*args, **kwargs)

    maest_model._cpu_bf16_attention = counted  # type: ignore[assignment]
    try:
        use_cpu_bf16_attention(model)
        model = model.to(torch.bfloat16)
        with torch.inference_mode():
            out = model(input_values=x.to(torch.bfloat16)).last_hidden_state.float()
    finally:
        from transformers import AttentionInterface

        maest_model._cpu_bf16_attention = original
        AttentionInterface.register(maest_model.CPU_BF16_ATTENTION, original)  # as other tests find it
    assert len(calls) == 2  # once per layer
    assert out.shape == reference.shape
    cos = torch.nn.functional.cosine_similarity(out.flatten(), reference.flatten(), dim=0).item()
    assert cos > 0.9999
