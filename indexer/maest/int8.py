"""Dynamic int8 ``Linear`` layers for CPU inference, without torch's deprecated quantisation API.

torch's eager quantisation (``torch.ao.quantization.quantize_dynamic`` and the quantised tensor
types it rests on) is deprecated and marked for removal, so musicmap quantises by itself, on
plain int8/uint8 tensors:

- **weights**: symmetric int8, one scale per output channel (``quantize_dynamic`` used one per
  tensor), computed once at load;
- **activations**: quantised at every call (dynamic);
- **product**, by the first kernel this torch has:

  1. ``onednn`` — oneDNN's int8 GEMM (``torch.ops.onednn.qlinear_pointwise``, the kernel torch's
     own x86 int8 inference uses; VNNI/AMX where the CPU has them) with uint8 activations (one
     scale and zero point per call) and the dequantisation and bias fused into the GEMM's output;
  2. ``int_mm`` — ``torch._int_mm`` (int8 × int8 → int32) with symmetric int8 activations per row,
     then the scales and bias applied in two passes: for builds without oneDNN.

Measured on a 2-core AVX-512 VNNI CPU, 4,800 rows (4 MAEST windows of 1,200 tokens), best of 3
(`/tmp` micro-benchmark, figures in the #17 closing note): oneDNN 40–55 ms per 768↔3072 layer,
the same as ``quantize_dynamic`` (38–56 ms) at half its error (relative error 0.012 vs 0.024 on
Gaussian input); ``_int_mm`` 40–75 % slower (the separate passes), error 0.009.

Rows go through in blocks of :data:`ROW_BLOCK`, so that each temporary stays in cache and below
glibc's ``mmap`` threshold (a fresh 59 MB tensor per call costs page faults that took longer than
the arithmetic).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)

ROW_BLOCK = 1024
"""Rows per kernel call: 1024 × 3072 float32 = 12.6 MB of output (256 and 1024 measured alike
with oneDNN; whole 4,800-row batches were slower)."""


def _onednn_pack(weight_q: torch.Tensor) -> torch.Tensor | None:
    """oneDNN's packed form of an int8 weight (out, in), or None where this torch has no oneDNN
    int8 kernels (a non-x86 build, or one without mkldnn)."""
    try:
        if not torch.backends.mkldnn.is_available():
            return None
        packed = torch.ops.onednn.qlinear_prepack(weight_q, None)
        return packed if isinstance(packed, torch.Tensor) else None
    except (AttributeError, RuntimeError, NotImplementedError) as exc:
        logger.debug("oneDNN int8 kernels unavailable (%s); using torch._int_mm", exc)
        return None


class Int8Linear(nn.Module):
    """A ``Linear`` with int8 weights and dynamically quantised activations (CPU).

    Parameters
    ----------
    linear : nn.Linear
        The float layer; its weight is quantised per output channel, its bias kept in float32.
    backend : {"auto", "onednn", "int_mm"}
        ``auto``: oneDNN where available, else ``torch._int_mm``.
    gelu : bool
        Apply the exact (erf) GELU to the output: fused into oneDNN's GEMM, a saved pass over the
        largest activation of a transformer block (its MLP's 3072-wide hidden layer).
    """

    weight_scale: torch.Tensor
    bias: torch.Tensor
    weight_packed: torch.Tensor
    weight_zero: torch.Tensor
    weight_t: torch.Tensor

    def __init__(self, linear: nn.Linear, backend: str = "auto", *, gelu: bool = False) -> None:
        super().__init__()
        self.gelu = gelu
        weight = linear.weight.detach().float()  # (out, in)
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127
        q = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.register_buffer("weight_scale", scale.float())  # (out,)
        bias = linear.bias.detach().float() if linear.bias is not None else torch.zeros(linear.out_features)
        self.register_buffer("bias", bias)
        packed = _onednn_pack(q) if backend in ("auto", "onednn") else None
        if backend == "onednn" and packed is None:
            raise RuntimeError("this torch has no oneDNN int8 kernels")
        self.backend = "onednn" if packed is not None else "int_mm"
        if packed is not None:
            self.register_buffer("weight_packed", packed)
            self.register_buffer("weight_zero", torch.zeros(self.out_features, dtype=torch.int64))
        else:
            self.register_buffer("weight_t", q.t().contiguous())  # (in, out), as _int_mm wants it

    def _onednn(self, rows: torch.Tensor, out: torch.Tensor) -> None:
        low, high = torch.aminmax(rows)
        low_f, high_f = min(float(low), 0.0), max(float(high), 0.0)  # zero must be exact
        if not math.isfinite(high_f - low_f):  # NaN or inf in: no scale fits; NaN out, as in float
            out.fill_(float("nan"))  # (a damaged model's NaN is then a recorded failure: indexer.finite)
            return
        scale = max((high_f - low_f) / 255.0, 1e-12)
        zero = min(255, max(0, round(-low_f / scale)))
        for start in range(0, rows.shape[0], ROW_BLOCK):
            block = rows[start : start + ROW_BLOCK]
            q = torch.mul(block, 1.0 / scale).add_(zero).round_().clamp_(0, 255).to(torch.uint8)
            out[start : start + len(block)] = torch.ops.onednn.qlinear_pointwise(
                q, scale, zero, self.weight_packed, self.weight_scale, self.weight_zero, self.bias,
                1.0, 0, torch.float32, "gelu" if self.gelu else "none", [], "none" if self.gelu else "")

    def _int_mm(self, rows: torch.Tensor, out: torch.Tensor) -> None:
        for start in range(0, rows.shape[0], ROW_BLOCK):
            block = rows[start : start + ROW_BLOCK]
            scale = torch.linalg.vector_norm(block, ord=float("inf"), dim=1, keepdim=True)
            scale = scale.clamp_(min=1e-12).mul_(1 / 127)
            q = torch.div(block, scale).round_().clamp_(-127, 127).to(torch.int8)
            y = torch.mul(torch._int_mm(q, self.weight_t), scale)  # int32 × float → float32
            y = torch.addcmul(self.bias, y, self.weight_scale, out=y)
            out[start : start + len(block)] = torch.nn.functional.gelu(y) if self.gelu else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        rows = x.reshape(-1, shape[-1]).float().contiguous()
        out = torch.empty(rows.shape[0], self.out_features)
        if self.backend == "onednn":
            self._onednn(rows, out)
        else:
            self._int_mm(rows, out)
        return out.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, int8 dynamic ({self.backend})"
                + (", GELU" if self.gelu else ""))


def _exact_gelu(module: Any) -> bool:
    """transformers' ``GELUActivation`` (erf GELU through ``F.gelu``) or torch's exact ``nn.GELU``."""
    if isinstance(module, nn.GELU):
        return module.approximate == "none"
    return type(module).__name__ == "GELUActivation" and getattr(module, "act", None) is torch.nn.functional.gelu


def quantize_linears(model: Any, backend: str = "auto") -> Any:
    """Replace every ``nn.Linear`` of ``model`` (in place) by an :class:`Int8Linear`; returns it.

    A transformer MLP (a module with ``fc1``, ``activation_fn`` = exact GELU and ``fc2``, as
    transformers' AST has) gets the GELU fused into ``fc1`` and its ``activation_fn`` replaced by
    ``nn.Identity``.
    """
    fc1, act = getattr(model, "fc1", None), getattr(model, "activation_fn", None)
    if isinstance(fc1, nn.Linear) and act is not None and _exact_gelu(act):
        model.fc1 = Int8Linear(fc1, backend, gelu=True)
        model.activation_fn = nn.Identity()
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Linear):
            setattr(model, name, Int8Linear(child, backend))
        else:
            quantize_linears(child, backend)
    return model
