"""Benchmark MAEST inference modes with full-size random weights (no downloads needed), against
this machine's own GEMM peaks.

A MAEST-size model (ViT-B: 768-d, 12 blocks, 12 heads, 519 labels, the window length of the
chosen variant) is initialised randomly once; every mode loads the same weights and embeds the
same windows. Reported per mode: windows/s, audio-seconds/s, the arithmetic it does (GFLOP per
window, counted from the model's shapes) and so its GFLOP/s and **share of the peak of its
precision** measured in the same run (a 1024 × 768 × 3072 GEMM: fp32, bf16, int8), and fidelity
= cosine of each track's embedding to the fp32 full model's over all windows.

Modes (CPU; "auto" is what ``--precision auto`` picks on this machine):
  fp32 (reference)   all 12 blocks (styles on), fp32 — the reference for fidelity
  default            musicmap's default: styles on, --precision auto
  embed-only fp32    styles off: only the 7 blocks the embedding needs
  embed-only         styles off, --precision auto
  int8               embed-only + musicmap's dynamic int8 layers
  patchout           embed-only auto + half the time patches dropped
  int8+patchout, int8+patchout 0.6
  fast               index --fast: int8 + patchout 0.5 + a window budget (fidelity over whole tracks)
  naive              (only with --modes) one window at a time, eager attention, stock forward
  int8-torch-ao      (only with --modes) torch.ao's deprecated quantize_dynamic (issue #17 comparison)
Modes (CUDA): naive, default-fp32, default-fp16, default-bf16, embed-only-fp16, embed-only-bf16.

Only torch, transformers and numpy are needed for the model part, so this also runs on a GPU
machine given windows precomputed with ``--save-windows`` here.

    python benchmarks/bench_maest.py [--variant 30] [--tracks 4] [--windows-per-track 8] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from indexer.maest.model import MaestRunner, RunOptions

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = {5: 316, 10: 626, 20: 1256, 30: 1876}
HOPS = {316: 313, 626: 625, 1256: 1250, 1876: 1875}


def make_windows(variant: int, tracks: int, per_track: int) -> np.ndarray:
    """Real MAEST input: demo-library audio through the Essentia-exact front end."""
    import tempfile

    from data.demo_library import generate_demo_library
    from indexer.decode import load_audio
    from indexer.maest import frontend

    max_length = VARIANTS[variant]
    seconds = (per_track * HOPS[max_length] + 2) * 256 / 16_000
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        demo = generate_demo_library(tmp, n_tracks=tracks, seed=0, min_duration=seconds + 1,
                                     max_duration=seconds + 1, formats=("flac",), untagged_share=0)
        for t in demo:
            wins = frontend.windows(frontend.essentia_logmel(load_audio(t.path)), max_length)
            out.append(wins[:per_track])
    return np.stack(out)  # (tracks, per_track, max_length, 96)


def build_model(max_length: int, attn: str) -> Any:
    import torch
    from transformers import ASTConfig, ASTForAudioClassification

    torch.manual_seed(0)
    config = ASTConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                       patch_size=16, frequency_stride=10, time_stride=10, num_mel_bins=96,
                       max_length=max_length, layer_norm_eps=1e-6, qkv_bias=True, num_labels=519)
    config._attn_implementation = attn
    model = ASTForAudioClassification(config).eval()
    with torch.no_grad():  # a trained-looking positional grid instead of zeros
        model.audio_spectrogram_transformer.embeddings.position_embeddings.normal_(0, 0.02)
    return model


def naive(model: Any, windows: np.ndarray, device: str) -> np.ndarray:
    import torch

    model = model.to(device)
    out = []
    with torch.inference_mode():
        for w in windows.reshape(-1, *windows.shape[2:]):
            hs = model(input_values=torch.from_numpy(w[None]).to(device), output_hidden_states=True).hidden_states[7]
            out.append(torch.cat([hs[:, 0], hs[:, 1], hs[:, 2:].mean(1)], -1).float().cpu().numpy()[0])
    return np.stack(out)


def _run_all(runner: MaestRunner, flat: np.ndarray, batch: int) -> np.ndarray:
    return np.concatenate([runner.run(flat[i : i + batch])[0] for i in range(0, len(flat), batch)])


def timed(fn: Any, device: str) -> tuple[Any, float]:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def track_cosines(vectors: np.ndarray, reference: np.ndarray, tracks: int) -> list[float]:
    """Cosine of each track's mean vector to the reference's mean over all its windows (a mode
    with a window budget has fewer windows per track)."""
    a = vectors.reshape(tracks, -1, vectors.shape[-1]).mean(1)
    b = reference.reshape(tracks, -1, reference.shape[-1]).mean(1)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return [round(float(c), 6) for c in cos]


def flops_per_window(config: Any, frames: int, blocks: int, patchout: float, last_shortcut: bool) -> float:
    """Multiply-adds × 2 of one window through the patch embedding and ``blocks`` blocks (dense
    layers and attention; LayerNorm, softmax and GELU are not counted)."""
    d, inner = int(config.hidden_size), int(config.intermediate_size)
    n_freq = (int(config.num_mel_bins) - int(config.patch_size)) // int(config.frequency_stride) + 1
    n_time = (frames - int(config.patch_size)) // int(config.time_stride) + 1
    if patchout > 0:
        n_time = max(1, round(n_time * (1 - patchout)))
    n = n_freq * n_time + 2
    embed = 2.0 * n_freq * n_time * d * int(config.patch_size) ** 2
    block = 2.0 * n * d * (3 * d + d + 2 * inner) + 4.0 * n * n * d  # qkv, o, mlp; QKᵀ and AV
    last = 2.0 * n * d * 2 * d + 2.0 * 2 * d * (2 * d + 2 * inner) + 4.0 * 2 * n * d  # K, V; 2 rows; attention
    return embed + (blocks - 1) * block + (last if last_shortcut else block)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", type=int, choices=sorted(VARIANTS), default=30, help="window seconds")
    parser.add_argument("--tracks", type=int, default=4)
    parser.add_argument("--windows-per-track", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4, help="windows per forward pass (default mode)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--windows", type=Path, help="precomputed windows (.npy) instead of the demo library")
    parser.add_argument("--save-windows", type=Path, help="write the windows to this .npy and stop")
    parser.add_argument("--repeat", type=int, default=1, help="tile the tracks this many times (GPU timing)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--modes", default="", help="comma-separated subset of modes")
    parser.add_argument("--repeats", type=int, default=2, help="timed rounds; the best time of each mode counts")
    args = parser.parse_args()
    import torch

    from indexer.cpu import auto_precision, cpu_name, gemm_rates
    from indexer.embedders import FAST
    from indexer.maest.frontend import spread

    max_length = VARIANTS[args.variant]
    windows = (np.load(args.windows) if args.windows
               else make_windows(args.variant, args.tracks, args.windows_per_track))
    if args.save_windows:
        np.save(args.save_windows, windows)
        print(f"saved {windows.shape} to {args.save_windows}")
        return
    windows = np.concatenate([windows] * max(1, args.repeat))
    tracks, per_track = windows.shape[0], windows.shape[1]
    clip_seconds = HOPS[max_length] * 256 / 16_000
    dev = args.device
    budget = FAST["maest"]["max_windows"]
    keep = spread(per_track, budget)
    auto = auto_precision(dev).name
    if dev == "cpu":
        modes: dict[str, tuple[str, RunOptions | None, int, list[int] | None]] = {
            "fp32 (reference)": ("sdpa", RunOptions(precision="fp32"), args.batch, None),
            "default": ("sdpa", RunOptions(precision=auto), args.batch, None),
            "embed-only fp32": ("sdpa", RunOptions(styles=False, precision="fp32"), args.batch, None),
            "embed-only": ("sdpa", RunOptions(styles=False, precision=auto), args.batch, None),
            "int8": ("sdpa", RunOptions(styles=False, precision="int8"), args.batch, None),
            "patchout": ("sdpa", RunOptions(styles=False, precision=auto, patchout=0.5), args.batch, None),
            "int8+patchout": ("sdpa", RunOptions(styles=False, precision="int8", patchout=0.5), args.batch, None),
            "int8+patchout 0.6": ("sdpa", RunOptions(styles=False, precision="int8", patchout=0.6), args.batch,
                                  None),
            "fast": ("sdpa", RunOptions(styles=False, precision=FAST["maest"]["precision"],
                                        patchout=FAST["maest"]["patchout"]), args.batch, keep),
            "naive": ("eager", None, 1, None),
            "int8-torch-ao": ("sdpa", RunOptions(styles=False), args.batch, None),
        }
        default_modes = [m for m in modes if m not in ("naive", "int8-torch-ao")]
    else:
        modes = {
            "naive": ("eager", None, 1, None),
            "default-fp32": ("sdpa", RunOptions(precision="fp32"), args.batch, None),
            "default-fp16": ("sdpa", RunOptions(precision="fp16"), args.batch, None),
            "default-bf16": ("sdpa", RunOptions(precision="bf16"), args.batch, None),
            "embed-only-fp16": ("sdpa", RunOptions(styles=False, precision="fp16"), args.batch, None),
            "embed-only-bf16": ("sdpa", RunOptions(styles=False, precision="bf16"), args.batch, None),
        }
        default_modes = list(modes)
    reference_name = next(iter(modes))
    wanted = [reference_name, *[m for m in (args.modes.split(",") if args.modes else default_modes)
                                if m and m != reference_name]]
    peaks: dict[str, float] = gemm_rates(repeats=5) if dev == "cpu" else {}
    # Build every mode once, then time them round-robin `--repeats` times and keep each mode's best
    # time: a slow spell of the machine then hits all modes alike instead of one.
    prepared: dict[str, Any] = {}
    attention: dict[str, str] = {}  # what each mode's model runs (the bf16 modes swap in musicmap's own)
    config = None
    for name in wanted:
        attn, options, batch, chosen = modes[name]
        model = build_model(max_length, attn)
        config = model.config
        if name == "int8-torch-ao":
            import warnings

            with warnings.catch_warnings():  # deprecated: measured here only to compare
                warnings.simplefilter("ignore")
                model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        if options is None:
            prepared[name] = partial(naive, model, windows, dev)
        else:
            runner = MaestRunner(model, options, dev)
            attention[name] = str(getattr(model.config, "_attn_implementation", attn))
            selected = windows[:, chosen] if chosen is not None else windows
            flat = selected.reshape(-1, *windows.shape[2:])
            prepared[name] = partial(_run_all, runner, flat, batch)
        if dev == "cuda":
            prepared[name]()  # warm-up: kernels, autotuning, allocator
    best: dict[str, float] = {}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(max(1, args.repeats)):
        for name in wanted:
            vectors[name], seconds = timed(prepared[name], dev)
            best[name] = min(best.get(name, float("inf")), seconds)
    if dev == "cpu":  # the peaks again after the modes: the better of the two (the machine drifts)
        peaks = {k: max(v, peaks.get(k, 0.0)) for k, v in gemm_rates(repeats=5).items()}
    reference = vectors[reference_name]
    base_rate = None
    results: dict[str, Any] = {}
    for name in wanted:
        attn, options, batch, chosen = modes[name]
        n_windows = tracks * (len(chosen) if chosen is not None else per_track)
        rate = n_windows / best[name]
        base_rate = base_rate or rate
        cos = track_cosines(vectors[name], reference, tracks)
        row: dict[str, Any] = {
            "seconds": round(best[name], 3), "windows_per_s": round(rate, 3),
            "audio_s_per_s": round(rate * clip_seconds, 2), "speedup_vs_reference": round(rate / base_rate, 2),
            "batch": batch, "attention": attention.get(name, attn),
            "options": options.__dict__ if options else "stock forward",
            "window_budget": len(chosen) if chosen is not None else None,
            "track_cosine_min": min(cos), "track_cosines": cos}
        if options is not None and config is not None and dev == "cpu":
            blocks = int(config.num_hidden_layers) if options.styles else options.layer
            flops = flops_per_window(config, max_length, blocks, options.patchout,
                                     last_shortcut=options.styles and options.layer < int(config.num_hidden_layers))
            precision = "int8" if name == "int8-torch-ao" else options.precision
            achieved = rate * flops / 1e9
            row.update({"gflop_per_window": round(flops / 1e9, 1), "gflops": round(achieved, 1),
                        "peak_gflops": peaks.get(precision), "share_of_peak":
                        round(achieved / peaks[precision], 3) if peaks.get(precision) else None})
        results[name] = row
        share = f"  {row['share_of_peak']:.0%} of its {options.precision if options else ''} peak" \
            if row.get("share_of_peak") else ""
        print(f"{name:>18}: {rate:8.3f} windows/s  ×{rate / base_rate:5.2f}  cos_min {min(cos):.6f}{share}",
              flush=True)
    device_name = torch.cuda.get_device_name(0) if dev == "cuda" else cpu_name()
    report = {
        "benchmark": "maest",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"device": dev, "name": device_name, "cpus": os.cpu_count(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "gemm_peak_gflops": peaks, "auto_precision": auto,
                    "platform": platform.platform()},
        "model": {"variant_s": args.variant, "max_length": max_length,
                  "weights": "random, full size (ViT-B, 519 labels)"},
        "tracks": tracks, "windows_per_track": per_track, "clip_seconds": clip_seconds,
        "reference": f"{reference_name}: every window, all blocks, fp32",
        "repeats": args.repeats,
        "modes": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"maest-{dev}-{args.variant}s-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
