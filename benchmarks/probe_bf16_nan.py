"""Where does MAEST in bf16 first turn NaN on this CPU? A probe for Xeons with AMX (issue #29).

MAEST's vectors for clips shorter than about a second came out NaN in bf16 on CPUs with
``amx_bf16`` (full-size and the tests' tiny model alike); it could not be reproduced on the
machines the fix was written on (no AMX). Run this on an AMX machine: for each clip length it
runs a MAEST-shaped model (tiny: the tests' 32-d one; full: ViT-B, random weights) in bf16 on the
CPU and prints, for the first module whose output holds a NaN or infinity, its name and input
shapes; then whether the track vector and styles are finite. With ``ONEDNN_VERBOSE=1`` set, oneDNN
also prints every primitive it runs (implementation names ending in ``_amx`` on such a CPU), so
the last lines before the first NaN name the kernel::

    ONEDNN_VERBOSE=1 python benchmarks/probe_bf16_nan.py --model tiny --seconds 0.3 1 3

Found on a Xeon with amx_bf16 (torch 2.13, 2026-12-05): the patch embedding's Conv2d (1 → D,
16 × 16, stride 10) in bf16 returns garbage (|x| up to 1e34, varying from call to call) when its
output is one patch wide in time, a window of 16-25 frames; the first LayerNorm then makes NaN.
Wider windows are fine. The fix (``indexer.maest.model.MaestRunner``): the patch embedding runs in
fp32 whatever the precision. Run with PYTHONPATH=. (it imports ``tests.audio``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np


def build(model: str) -> Any:
    import torch
    from transformers import ASTConfig, ASTForAudioClassification

    torch.manual_seed(0)
    if model == "tiny":  # tests/conftest.py make_tiny_maest's shape
        config = ASTConfig(hidden_size=32, num_hidden_layers=8, num_attention_heads=2, intermediate_size=64,
                           patch_size=16, frequency_stride=10, time_stride=10, num_mel_bins=96, max_length=66,
                           layer_norm_eps=1e-6, qkv_bias=True, num_labels=5)
    else:
        config = ASTConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                           patch_size=16, frequency_stride=10, time_stride=10, num_mel_bins=96, max_length=1876,
                           layer_norm_eps=1e-6, qkv_bias=True, num_labels=519)
    net = ASTForAudioClassification(config).eval()
    with torch.no_grad():
        net.audio_spectrogram_transformer.embeddings.position_embeddings.normal_(0, 0.5)
    return net


def probe(model: str, seconds: float, precision: str) -> None:
    import torch

    from indexer.maest.frontend import essentia_logmel, windows
    from indexer.maest.model import MaestRunner, RunOptions
    from tests.audio import tone

    net = build(model)
    runner = MaestRunner(net, RunOptions(precision=precision), "cpu")
    spec = windows(essentia_logmel(tone(seconds, 440.0, sr=16_000, amp=0.4, noise=0.05, seed=0)),
                   int(net.config.max_length))
    first: list[str] = []

    def hook(module: Any, inputs: Any, output: Any) -> None:
        out = output[0] if isinstance(output, tuple) else output
        if not first and isinstance(out, torch.Tensor) and not torch.isfinite(out.float()).all():
            shapes = [tuple(i.shape) for i in inputs if isinstance(i, torch.Tensor)]
            first.append(f"{names[module]} ({type(module).__name__}) in {shapes} out {tuple(out.shape)}")
            print(f"first non-finite output: {first[0]}", file=sys.stderr, flush=True)

    names = {m: n or "model" for n, m in runner.model.named_modules()}
    for m in names:
        m.register_forward_hook(hook)
    vectors, styles = runner.run(spec[:1])
    print(f"{model} {precision} {seconds:g} s ({spec.shape[1]} frames): vector finite "
          f"{bool(np.isfinite(vectors).all())}, styles finite {bool(styles is None or np.isfinite(styles).all())}; "
          f"first non-finite module: {first[0] if first else 'none'}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("tiny", "full"), default="tiny")
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--seconds", type=float, nargs="+", default=[0.3, 0.5, 1.0, 3.0])
    args = parser.parse_args()
    for seconds in args.seconds:
        probe(args.model, seconds, args.precision)


if __name__ == "__main__":
    main()
