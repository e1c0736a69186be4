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


def _unpadded(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The attention as it was before K was padded: the same bf16 products on the raw shapes."""
    batch, heads, n_q, d = q.shape
    out = torch.empty(batch, n_q, heads, d, dtype=torch.bfloat16)
    for i in range(batch):
        qq, kt, vv = (q[i] * d**-0.5).bfloat16(), k[i].bfloat16().transpose(-1, -2), v[i].bfloat16()
        for h in range(heads):
            out[i, :, h] = torch.mm(torch.softmax(torch.mm(qq[h], kt[h]), dim=-1), vv[h])
    return out


@pytest.mark.parametrize(("n", "d", "n_q"), [(11, 16, 11), (11, 64, 11), (47, 16, 47), (64, 64, 64),
                                             (164, 64, 164), (164, 64, 2), (1685, 64, 1685)])
def test_padding_k_keeps_the_unpadded_result(n: int, d: int, n_q: int) -> None:
    """K padded to a multiple of 32 (zero columns of q and k, zero rows of v, -inf scores for the
    padding keys) gives the unpadded products' output to bf16 rounding: tokens of a 0.3-s clip
    (11), 1 s (47), 3 s (164), a 30-s window (1,685); the tiny model's head size (16) and MAEST's
    (64); the last block's two query rows."""
    q, k, v = _qkv(torch.bfloat16, batch=1, heads=4, n=n, d=d)
    q = q[:, :, :n_q]
    out, _ = _cpu_bf16_attention(None, q, k, v, None)
    assert out.shape == (1, n_q, 4, d)
    torch.testing.assert_close(out.float(), _unpadded(q, k, v).float(), atol=1e-3, rtol=2**-7)


class _Products(torch.overrides.TorchFunctionMode):
    """Records the contraction length (K) and dtype of every matrix product torch is asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.k: list[tuple[str, int, torch.dtype]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        if name in ("mm", "bmm", "matmul", "__matmul__", "addmm", "baddbmm"):
            a = args[1] if name in ("addmm", "baddbmm") else args[0]
            self.k.append((name, int(a.shape[-1]), a.dtype))
        elif name == "linear":
            self.k.append((name, int(args[1].shape[-1]), args[1].dtype))
        elif name == "scaled_dot_product_attention":
            self.k.append((name, -1, args[0].dtype))  # torch's fused attention: K of its own choosing
        return func(*args, **kwargs)


@pytest.mark.parametrize("frames", [20, 33, 64, 66])
def test_every_bf16_product_of_maest_on_the_cpu_has_k_a_multiple_of_32(frames: int) -> None:
    """The guard against oneDNN's AMX K-tail bug (see ``_cpu_bf16_attention``), checked on any CPU:
    every matrix product MAEST asks torch for in bf16 on the CPU, for a 0.3-s clip (20 frames), a
    0.5-s one (33), 1 s (64) and a full window of the tiny model (66), has K a multiple of 32, and
    torch's fused attention is not called (the last block's shortcut runs ours too)."""
    from transformers import ASTConfig, ASTForAudioClassification

    from indexer.maest.model import MaestRunner, RunOptions

    torch.manual_seed(0)
    config = ASTConfig(hidden_size=32, num_hidden_layers=8, num_attention_heads=2, intermediate_size=64,
                       patch_size=16, frequency_stride=10, time_stride=10, num_mel_bins=96, max_length=66,
                       layer_norm_eps=1e-6, qkv_bias=True, num_labels=5)
    runner = MaestRunner(ASTForAudioClassification(config), RunOptions(precision="bf16"), "cpu")
    x = torch.randn(2, frames, 96).numpy()
    products = _Products()
    with products:
        vectors, styles = runner.run(x)
    assert styles is not None and torch.isfinite(torch.from_numpy(vectors)).all()
    bf16 = [(name, k) for name, k, dtype in products.k if dtype == torch.bfloat16]
    assert {name for name, _ in bf16} >= {"mm", "linear"}  # the attention's products and the layers
    assert [(name, k) for name, k in bf16 if k < 0 or k % 32] == []


@pytest.mark.parametrize("native", [True, False])
def test_the_int8_mode_says_and_runs_the_bf16_attention_where_the_cpu_has_bf16(
        native: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """In the int8 mode on a native-bf16 CPU every block's attention is ours, the last block's
    shortcut too, and ``cpu_bf16_attention`` says so; elsewhere both are torch's."""
    from transformers import ASTConfig, ASTForAudioClassification

    import indexer.cpu
    from indexer.maest.model import MaestRunner, RunOptions

    monkeypatch.setattr(indexer.cpu, "native_bf16", lambda: native)
    torch.manual_seed(0)
    config = ASTConfig(hidden_size=32, num_hidden_layers=8, num_attention_heads=2, intermediate_size=64,
                       patch_size=16, frequency_stride=10, time_stride=10, num_mel_bins=96, max_length=66,
                       layer_norm_eps=1e-6, qkv_bias=True, num_labels=5)
    runner = MaestRunner(ASTForAudioClassification(config), RunOptions(precision="int8"), "cpu")
    assert runner.cpu_bf16_attention is native
    products = _Products()
    with products:
        vectors, styles = runner.run(torch.randn(2, 64, 96).numpy())
    assert styles is not None and torch.isfinite(torch.from_numpy(vectors)).all()
    fused = [name for name, _, _ in products.k if name == "scaled_dot_product_attention"]
    assert (fused == []) is native  # the shortcut (block 8 of 8) runs torch's fused attention only without bf16
