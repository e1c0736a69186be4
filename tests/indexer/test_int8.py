"""musicmap's own dynamic int8 Linear (torch.ao's quantize_dynamic is deprecated): both kernels
against the float layer, any batch shape, and a MAEST-shaped model with no deprecation warning."""

from __future__ import annotations

import warnings

import pytest
import torch

from indexer.maest.int8 import Int8Linear, quantize_linears


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).norm() / want.norm())


@pytest.mark.parametrize("gelu", [False, True])
@pytest.mark.parametrize("backend", ["onednn", "int_mm"])
@pytest.mark.parametrize("rows", [1, 5, 17, 300, 2100])
def test_int8_linear_is_close_to_the_float_layer(backend: str, rows: int, gelu: bool) -> None:
    torch.manual_seed(rows)
    linear = torch.nn.Linear(96, 200)
    x = torch.randn(rows, 96) * 3 + 0.5  # an offset: the zero point must be right
    try:
        q = Int8Linear(linear, backend, gelu=gelu)
    except RuntimeError as exc:
        pytest.skip(str(exc))  # this torch build has no oneDNN int8 kernels
    with torch.inference_mode():
        want, got = linear(x), q(x)
        if gelu:
            want = torch.nn.functional.gelu(want)
    assert got.shape == want.shape and got.dtype == torch.float32
    assert _relative_error(got, want) < 0.02
    assert q.backend == backend


def test_int8_linear_keeps_leading_dimensions_and_handles_zeros() -> None:
    linear = torch.nn.Linear(32, 8, bias=False)
    q = Int8Linear(linear)
    with torch.inference_mode():
        x = torch.randn(2, 3, 7, 32)
        assert q(x).shape == (2, 3, 7, 8)
        assert _relative_error(q(x), linear(x)) < 0.02
        zeros = q(torch.zeros(4, 32))
    assert torch.isfinite(zeros).all() and float(zeros.abs().max()) == 0.0


def test_quantize_linears_replaces_every_linear_without_deprecation_warnings() -> None:
    from transformers import ASTConfig, ASTForAudioClassification

    torch.manual_seed(0)
    config = ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       num_mel_bins=96, max_length=66, num_labels=5)
    model = ASTForAudioClassification(config).eval()
    x = torch.randn(2, 66, 96)
    with torch.inference_mode():
        want = model(x).logits
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch.ao would warn "deprecated ... will be removed"
        quantize_linears(model)
        with torch.inference_mode():
            got = model(x).logits
    assert not [m for m in model.modules() if type(m) is torch.nn.Linear]
    assert sum(isinstance(m, Int8Linear) for m in model.modules()) == 2 * 6 + 1
    assert sum(isinstance(m, Int8Linear) and m.gelu for m in model.modules()) == 2  # fused into each fc1
    assert _relative_error(got, want) < 0.05
