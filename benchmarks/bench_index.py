"""Indexing benchmarks (issue #4).

``scale``: a synthetic library of short WAV files, indexed with the `features` embedder at two
sizes (default 1,000 and 10,000 files), each in a fresh process: wall time, files/s, peak RSS of
the indexing process and of its decode workers, and the time of an unchanged re-run.

``efficiency``: ~20 tracks through the whole pipeline with a full-size random MAEST (saved with
save_pretrained and loaded like a real model): model-only time / wall time of the index run.

``long``: one two-hour file (a DJ mix; 16 kHz mono FLAC) indexed in a fresh process, streamed
(the default for files over 20 minutes) and decoded whole, with `features` and with a MAEST of
the real window length (1,876 frames) but small random weights: wall time and peak RSS growth.

    python benchmarks/bench_index.py scale [--sizes 1000,10000]
    python benchmarks/bench_index.py efficiency [--tracks 20]
    python benchmarks/bench_index.py long [--minutes 120]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _report import save  # benchmarks/ is on sys.path when a script runs


def _write_library(root: Path, n: int, seconds: float = 1.0) -> None:
    import soundfile as sf

    rng = np.random.default_rng(0)
    t = np.arange(int(16_000 * seconds)) / 16_000
    for i in range(n):
        folder = root / f"artist{i // 100:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        y = 0.3 * np.sin(2 * np.pi * (80 + (i % 500) * 3) * t) + 0.02 * rng.standard_normal(len(t))
        sf.write(folder / f"Artist {i // 100} - Track {i:05d}.wav", y.astype(np.float32), 16_000)


def _child_scale(library: str, store: str, workers: int) -> None:
    """Runs in a fresh process: index, re-run, print JSON with timings and peak memory."""
    from indexer.embedders import FeaturesEmbedder
    from indexer.pipeline import index_library

    started = time.perf_counter()
    first = index_library([library], store, FeaturesEmbedder(), workers=workers)
    wall = time.perf_counter() - started
    started = time.perf_counter()
    second = index_library([library], store, FeaturesEmbedder(), workers=workers)
    rerun = time.perf_counter() - started
    print(json.dumps({
        "files": first.scanned, "added": first.added, "failed": first.failed, "wall_s": round(wall, 2),
        "files_per_s": round(first.added / wall, 1), "rerun_unchanged_s": round(rerun, 3),
        "rerun_unchanged": second.unchanged,
        "peak_rss_main_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_rss_worker_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
    }))


def scale(sizes: list[int], workers: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            lib, store = Path(tmp) / f"lib{n}", Path(tmp) / f"store{n}"
            _write_library(lib, n)
            proc = subprocess.run([sys.executable, __file__, "_child_scale", str(lib), str(store), str(workers)],
                                  capture_output=True, text=True, check=True)
            out[str(n)] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(n, out[str(n)], flush=True)
    if len(sizes) >= 2:
        small, large = out[str(sizes[0])], out[str(sizes[-1])]
        out["peak_rss_ratio_main"] = round(large["peak_rss_main_mb"] / small["peak_rss_main_mb"], 3)
    return out


def efficiency(tracks: int, seconds: float) -> dict[str, Any]:
    import torch
    from transformers import ASTConfig, ASTForAudioClassification

    from data.demo_library import generate_demo_library
    from indexer.embedders import load_embedder
    from indexer.pipeline import index_library

    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        config = ASTConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                           num_mel_bins=96, max_length=1876, num_labels=519)
        ASTForAudioClassification(config).save_pretrained(Path(tmp) / "maest-random")
        generate_demo_library(Path(tmp) / "lib", n_tracks=tracks, seed=0, min_duration=seconds,
                              max_duration=seconds, untagged_share=0)
        embedder = load_embedder(str(Path(tmp) / "maest-random"), device="cpu", batch_size=4)
        started = time.perf_counter()
        report = index_library([Path(tmp) / "lib"], Path(tmp) / "store", embedder, workers=2)
        wall = time.perf_counter() - started
        model = embedder.model_seconds  # type: ignore[attr-defined]
    return {"tracks": tracks, "track_seconds": seconds, "added": report.added, "failed": report.failed,
            "wall_s": round(wall, 2), "model_s": round(model, 2), "model_share_of_wall": round(model / wall, 3),
            "audio_s_per_s": round(report.audio_seconds / wall, 2)}


def _vm_hwm_mb() -> float:
    """Peak RSS of this process (VmHWM; ru_maxrss would carry the parent's peak across exec)."""
    with open("/proc/self/status") as fh:
        line = next(row for row in fh if row.startswith("VmHWM"))
    return int(line.split()[1]) / 1024


def _child_long(library: str, store: str, model: str, stream: str) -> None:
    """Runs in a fresh process: index one long file, print JSON with time and peak RSS growth."""
    from indexer.embedders import load_embedder
    from indexer.pipeline import index_library

    embedder = load_embedder(model, device="cpu", batch_size=4, layer=2) if model != "features" else None
    if embedder is None:
        from indexer.embedders import FeaturesEmbedder

        embedder = FeaturesEmbedder()
    embedder.embed(np.zeros(16_000, np.float32))  # warm: libraries loaded before the baseline
    base = _vm_hwm_mb()
    started = time.perf_counter()
    report = index_library([library], store, embedder, workers=1,
                           stream_seconds=None if stream == "none" else float(stream))
    wall = time.perf_counter() - started
    print(json.dumps({"added": report.added, "failed": report.failed, "wall_s": round(wall, 2),
                      "peak_rss_growth_mb": round(_vm_hwm_mb() - base, 1), "baseline_rss_mb": round(base, 1)}))


def long_file(minutes: float) -> dict[str, Any]:
    import soundfile as sf
    import torch
    from transformers import ASTConfig, ASTForAudioClassification

    out: dict[str, Any] = {"minutes": minutes, "decoded_audio_mb": round(minutes * 60 * 16_000 * 4 / 1e6, 1)}
    with tempfile.TemporaryDirectory() as tmp:
        lib = Path(tmp) / "lib"
        lib.mkdir()
        with sf.SoundFile(lib / "dj mix.flac", "w", 16_000, 1) as f:  # written in blocks, 1 minute each
            rng = np.random.default_rng(0)
            t = np.arange(16_000 * 60) / 16_000
            for m in range(int(minutes)):
                f.write((0.3 * np.sin(2 * np.pi * (110 + 5 * m) * t) + 0.02 * rng.standard_normal(len(t)))
                        .astype(np.float32))
        torch.manual_seed(0)
        config = ASTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                           num_mel_bins=96, max_length=1876, num_labels=519)
        ASTForAudioClassification(config).save_pretrained(Path(tmp) / "maest-small")
        for model in ("features", str(Path(tmp) / "maest-small")):
            name = "features" if model == "features" else "maest-small-random"
            for stream in ("1200", "none"):
                store = Path(tmp) / f"store-{name}-{stream}"
                proc = subprocess.run([sys.executable, __file__, "_child_long", str(lib), str(store), model, stream],
                                      capture_output=True, text=True, check=True)
                key = f"{name}/{'streamed' if stream != 'none' else 'whole'}"
                out[key] = json.loads(proc.stdout.strip().splitlines()[-1])
                print(key, out[key], flush=True)
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child_scale":
        _child_scale(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_child_long":
        _child_long(*sys.argv[2:6])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", choices=("scale", "efficiency", "long"))
    parser.add_argument("--minutes", type=float, default=120.0, help="length of the long file")
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--tracks", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=40.0, help="length of each efficiency track")
    args = parser.parse_args()
    if args.which == "scale":
        result = scale([int(s) for s in args.sizes.split(",")], args.workers)
    elif args.which == "long":
        result = long_file(args.minutes)
    else:
        result = efficiency(args.tracks, args.seconds)
    save(f"index-{args.which}", {"workers": args.workers, "result": result})


if __name__ == "__main__":
    main()
