"""Benchmark the foundation pipeline on a generated demo library (features embedder, CPU).

Measures: demo-library generation, first index run (files/s), an unchanged re-run,
the t-SNE map, similarity queries (exact FAISS) and SQL latency. Writes
``benchmarks/results/pipeline-<date>.json``.

    python benchmarks/bench_pipeline.py [--tracks 96] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _report import save  # benchmarks/ is on sys.path when a script runs

from data.demo_library import generate_demo_library
from indexer.embedders import FeaturesEmbedder
from indexer.pipeline import index_library
from indexer.projection import compute_map
from store import Store


def timed(fn):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tracks", type=int, default=96)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        lib, store_dir = Path(tmp) / "library", Path(tmp) / "store"
        tracks, t_gen = timed(lambda: generate_demo_library(lib, n_tracks=args.tracks, seed=0))
        audio_seconds = sum(t.duration for t in tracks)
        report1, t_index = timed(lambda: index_library([lib], store_dir, FeaturesEmbedder(), workers=args.workers))
        report2, t_rerun = timed(lambda: index_library([lib], store_dir, FeaturesEmbedder(), workers=args.workers))
        with Store.open(store_dir, read_only=False) as store:
            _, t_map = timed(lambda: compute_map(store))
        with Store.open(store_dir) as store:
            ids, _ = store.vectors()
            rng = np.random.default_rng(0)
            store.similar(int(ids[0]), 10)  # warm the index
            lat = []
            for tid in rng.choice(ids, size=args.queries):
                _, dt = timed(lambda tid=tid: store.similar(int(tid), 10))
                lat.append(dt * 1000)
            sql_lat = []
            for _ in range(50):
                _, dt = timed(lambda: store.sql("SELECT genre, count(*) FROM tracks GROUP BY genre"))
                sql_lat.append(dt * 1000)
    result = {
        "tracks": args.tracks,
        "workers": args.workers,
        "audio_minutes": round(audio_seconds / 60, 1),
        "generate_s": round(t_gen, 2),
        "index_first_run_s": round(t_index, 2),
        "index_files_per_s": round(report1.added / t_index, 2),
        "index_audio_x_realtime": round(audio_seconds / t_index, 1),
        "index_unchanged_rerun_s": round(t_rerun, 3),
        "rerun_unchanged": report2.unchanged,
        "map_tsne_s": round(t_map, 2),
        "similar_ms_p50": round(statistics.median(lat), 3),
        "similar_ms_p99": round(float(np.percentile(lat, 99)), 3),
        "sql_groupby_ms_p50": round(statistics.median(sql_lat), 3),
    }
    save("pipeline", result)


if __name__ == "__main__":
    main()
