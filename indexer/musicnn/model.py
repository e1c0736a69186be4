"""MusiCNN and its VGG baseline in torch, with weights from the package's TF1 checkpoints
(musicnn-spec §3; Pons & Serra, ISMIR 2019 LBD).

Tensors here are NCHW with H = time and W = frequency: a batch of log-mel patches (b, t, 96)
enters as (b, 1, t, 96). TensorFlow's layers were NHWC with kernels [kh, kw, in, out]; the loader
permutes them. Batch norm is inference-mode (moving statistics, epsilon 1e-3) and always comes
after the ReLU: conv → ReLU → BN.

musicnn (all shapes per patch of t frames):

    input BN (1 channel)
    front end   timbral  7×38 and 7×67 convs (time padded 3+3, 'valid'), 204 filters each
                temporal 128×1, 64×1, 32×1 convs ('SAME' in time), 51 filters each
                each: ReLU, BN, max over frequency              → 204+204+51+51+51 = 561 × t
    mid end     three 1-D convs over time (k=7, padded 3+3), 64 filters, ReLU, BN;
                the 2nd and 3rd add their input (residual)     → [561, 64, 64, 64] = 753 × t
    back end    max and mean over time, interleaved            → 1506
                BN → dense 200 → ReLU → BN                     → "penultimate" (200)
                dense 50 → sigmoid                             → tag probabilities

vgg: input BN, five 3×3 convs of 128 filters ('same'), each ReLU, BN, max-pool
((4,1)/(2,2), then (2,2)/(2,2) three times, then (4,4)/(4,4)), flattened in NHWC order → 256
("pool5"), dense 50 → sigmoid. Needs exactly 187 frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-3
PATCH_FRAMES = 187
"""3 s at 16 kHz, hop 256: the models' training input length."""


@dataclass(frozen=True)
class Outputs:
    """What one forward pass gives, per patch.

    Attributes
    ----------
    tags : Tensor, shape (b, 50)
        Sigmoid tag probabilities.
    penultimate : Tensor, shape (b, 200) or (b, 256)
        musicnn: BN(ReLU(dense)); vgg: pool5.
    dense : Tensor, shape (b, 200) or (b, 256)
        musicnn: the dense layer's output before ReLU and BN (Essentia's "embedding");
        vgg: pool5 again.
    """

    tags: torch.Tensor
    penultimate: torch.Tensor
    dense: torch.Tensor


class BatchNorm(nn.Module):
    """Inference batch norm over dimension ``dim`` from TF's four variables, as a scale and shift."""

    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(self, n: int, dim: int = 1) -> None:
        super().__init__()
        self.dim = dim
        self.register_buffer("scale", torch.ones(n))
        self.register_buffer("shift", torch.zeros(n))

    def load(self, gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray, var: np.ndarray) -> None:
        scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + BN_EPS)
        self.scale = torch.from_numpy(scale.astype(np.float32))
        self.shift = torch.from_numpy((beta - mean * scale).astype(np.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = [1] * x.dim()
        shape[self.dim] = -1
        return x * self.scale.view(shape) + self.shift.view(shape)


def _max_over_frequency(z: torch.Tensor, bn: BatchNorm) -> torch.Tensor:
    """max over frequency of BN(ReLU(z)) for z of shape (b, c, t, f), computed on the reduced tensor.

    BN is s·x + t per channel and ReLU is monotone, so the maximum over frequency is
    s·ReLU(max z) + t where s ≥ 0 and s·ReLU(min z) + t where s < 0: one min/max pass over the
    front end's largest tensor (204 × t × 59 per patch) instead of three elementwise passes and a
    reduction (equal to within float rounding; the parity test checks it).
    """
    low, high = torch.aminmax(z, dim=3)  # (b, c, t) each
    picked = torch.where((bn.scale < 0).view(1, -1, 1), low, high)
    return bn(F.relu(picked))


class MusiCNN(nn.Module):
    """The musically motivated CNN (Pons et al.): 50 tags and a 200-d penultimate layer."""

    kind = "musicnn"

    def __init__(self, n_tags: int = 50) -> None:
        super().__init__()
        self.input_bn = BatchNorm(1)
        self.timbral = nn.ModuleList([nn.Conv2d(1, 204, (7, 38)), nn.Conv2d(1, 204, (7, 67))])
        self.temporal = nn.ModuleList([nn.Conv2d(1, 51, (k, 1)) for k in (128, 64, 32)])
        self.front_bn = nn.ModuleList([BatchNorm(204), BatchNorm(204), BatchNorm(51), BatchNorm(51), BatchNorm(51)])
        self.mid = nn.ModuleList([nn.Conv1d(561, 64, 7), nn.Conv1d(64, 64, 7), nn.Conv1d(64, 64, 7)])
        self.mid_bn = nn.ModuleList([BatchNorm(64), BatchNorm(64), BatchNorm(64)])
        self.pool_bn = BatchNorm(1506)
        self.dense = nn.Linear(1506, 200)
        self.dense_bn = BatchNorm(200)
        self.out = nn.Linear(200, n_tags)

    def forward(self, logmel: torch.Tensor) -> Outputs:
        """``logmel``: (b, t, 96) float32 log-compressed mel patches; any t ≥ 1."""
        x = self.input_bn(logmel.unsqueeze(1))  # (b, 1, t, 96)
        features = []
        padded = F.pad(x, (0, 0, 3, 3))  # time 3+3, 'valid' below
        bns = _bns(self.front_bn)
        for conv, bn in zip(_convs(self.timbral), bns[:2], strict=True):
            features.append(_max_over_frequency(conv(padded), bn))  # (b, 204, t)
        for conv, bn in zip(_convs(self.temporal), bns[2:], strict=True):
            k = conv.kernel_size[0]
            same = F.pad(x, (0, 0, (k - 1) // 2, k // 2))  # TF 'SAME': the odd frame goes at the end
            features.append(_max_over_frequency(conv(same), bn))  # (b, 51, t)
        front = torch.cat(features, dim=1)  # (b, 561, t)
        cnn1 = self.mid_bn[0](F.relu(self.mid[0](F.pad(front, (3, 3)))))
        cnn2 = self.mid_bn[1](F.relu(self.mid[1](F.pad(cnn1, (3, 3))))) + cnn1
        cnn3 = self.mid_bn[2](F.relu(self.mid[2](F.pad(cnn2, (3, 3))))) + cnn2
        mid = torch.cat([front, cnn1, cnn2, cnn3], dim=1)  # (b, 753, t)
        pooled = torch.stack([mid.amax(dim=2), mid.mean(dim=2)], dim=2).flatten(1)  # (b, 1506): max₀, mean₀, ...
        dense = self.dense(self.pool_bn(pooled))
        penultimate = self.dense_bn(F.relu(dense))
        return Outputs(torch.sigmoid(self.out(penultimate)), penultimate, dense)

    def load_tf(self, tensors: dict[str, np.ndarray]) -> None:
        """Weights from the checkpoint's variables (names and shapes as in musicnn-spec §3)."""
        get = _getter(tensors)
        _load_bn(self.input_bn, get, "batch_normalization")
        for i, conv in enumerate([*_convs(self.timbral), *_convs(self.temporal)]):
            scope = "conv2d" if i == 0 else f"conv2d_{i}"
            kh, kw = conv.kernel_size
            _load_conv2d(conv, get, scope, (kh, kw, 1, conv.out_channels))
            _load_bn(_bns(self.front_bn)[i], get, f"batch_normalization_{i + 1}")
        for i, mid in enumerate(cast(list[nn.Conv1d], list(self.mid))):
            scope = f"conv2d_{i + 5}"
            kernel = get(f"{scope}/kernel", (7, mid.in_channels, 1, 64))  # a 1-D conv over time
            mid.weight.data = torch.from_numpy(np.ascontiguousarray(kernel[:, :, 0, :].transpose(2, 1, 0)))
            assert mid.bias is not None
            mid.bias.data = torch.from_numpy(get(f"{scope}/bias", (64,)).copy())
            _load_bn(_bns(self.mid_bn)[i], get, f"batch_normalization_{i + 6}")
        _load_bn(self.pool_bn, get, "batch_normalization_9")
        _load_dense(self.dense, get, "dense", (1506, 200))
        _load_bn(self.dense_bn, get, "batch_normalization_10")
        _load_dense(self.out, get, "dense_1", (200, self.out.out_features))


class VGG(nn.Module):
    """The VGG-like baseline of the musicnn package: 50 tags and a 256-d pool5 vector."""

    kind = "vgg"
    POOLS = (((4, 1), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((4, 4), (4, 4)))

    def __init__(self, n_tags: int = 50) -> None:
        super().__init__()
        self.input_bn = BatchNorm(1)
        self.convs = nn.ModuleList([nn.Conv2d(1 if i == 0 else 128, 128, 3, padding=1) for i in range(5)])
        self.bns = nn.ModuleList([BatchNorm(128) for _ in range(5)])
        self.out = nn.Linear(256, n_tags)

    def forward(self, logmel: torch.Tensor) -> Outputs:
        """``logmel``: (b, 187, 96) float32 (exactly 187 frames)."""
        if logmel.shape[1] != PATCH_FRAMES:
            raise ValueError(f"the VGG model takes {PATCH_FRAMES}-frame patches, not {logmel.shape[1]}")
        x = self.input_bn(logmel.unsqueeze(1))
        for conv, bn, (pool, stride) in zip(_convs(self.convs), _bns(self.bns), self.POOLS, strict=True):
            x = F.max_pool2d(bn(F.relu(conv(x))), pool, stride)
        pool5 = x.permute(0, 2, 3, 1).flatten(1)  # NHWC order, as TF flattened it: (b, 256)
        return Outputs(torch.sigmoid(self.out(pool5)), pool5, pool5)

    def load_tf(self, tensors: dict[str, np.ndarray]) -> None:
        get = _getter(tensors)
        _load_bn(self.input_bn, get, "batch_normalization")
        for i, (conv, bn) in enumerate(zip(_convs(self.convs), _bns(self.bns), strict=True)):
            _load_conv2d(conv, get, f"{i + 1}CNN", (3, 3, conv.in_channels, 128))
            _load_bn(bn, get, f"batch_normalization_{i + 1}")
        _load_dense(self.out, get, "dense", (256, self.out.out_features))


def _convs(modules: nn.ModuleList) -> list[nn.Conv2d]:
    return cast(list[nn.Conv2d], list(modules))


def _bns(modules: nn.ModuleList) -> list[BatchNorm]:
    return cast(list[BatchNorm], list(modules))


class WeightError(ValueError):
    """A checkpoint that lacks a variable the network needs, or holds one of another shape."""


def _getter(tensors: dict[str, np.ndarray]):  # type: ignore[no-untyped-def]
    def get(name: str, shape: tuple[int, ...]) -> np.ndarray:
        if name not in tensors:
            raise WeightError(f"the checkpoint has no variable {name!r}")
        value = np.asarray(tensors[name], dtype=np.float32)
        if value.shape != shape:
            raise WeightError(f"variable {name!r} has shape {value.shape}, the network needs {shape}")
        return value
    return get


def _load_bn(bn: BatchNorm, get, scope: str) -> None:  # type: ignore[no-untyped-def]
    n = bn.scale.numel()
    bn.load(*(get(f"{scope}/{v}", (n,)) for v in ("gamma", "beta", "moving_mean", "moving_variance")))


def _load_conv2d(conv: nn.Conv2d, get, scope: str, shape: tuple[int, int, int, int]) -> None:  # type: ignore[no-untyped-def]
    kernel = get(f"{scope}/kernel", shape)  # [kh, kw, in, out] → [out, in, kh, kw]
    conv.weight.data = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
    assert conv.bias is not None
    conv.bias.data = torch.from_numpy(get(f"{scope}/bias", (shape[3],)).copy())


def _load_dense(linear: nn.Linear, get, scope: str, shape: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    linear.weight.data = torch.from_numpy(np.ascontiguousarray(get(f"{scope}/kernel", shape).T))
    linear.bias.data = torch.from_numpy(get(f"{scope}/bias", (shape[1],)).copy())
