"""Scale-out benchmarks (issue #10): the Ray engine against the local one, and shard sizes.

``engines``: one generated library (``--files`` tracks of ``--seconds`` s), indexed with the
``features`` embedder by the local engine (``--workers``) and by ``--engine ray`` on a local Ray
(``ray.init(num_cpus=2)``): wall time of each part (Ray start, embedding into shards, ingest),
files per second, and the largest difference between the two engines' vectors.

``shards``: bytes per track of a shard file as the Ray engine writes it (the real writer,
:class:`indexer.distributed.EmbedActor`), for 768-d and 2304-d vectors with and without
per-window vectors, 519 style activations and typical tags; and the store's DuckDB bytes per
track after ingesting them. Vectors are random (incompressible, like real embeddings).

    python benchmarks/bench_scale.py engines [--files 200] [--seconds 30]
    python benchmarks/bench_scale.py shards [--rows 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _report import save  # benchmarks/ is on sys.path when a script runs

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def engines(files: int, seconds: float, workers: int) -> dict[str, Any]:
    import ray

    from data.demo_library import generate_demo_library
    from indexer.distributed import connect, run_ray
    from indexer.embedders import load_embedder
    from indexer.pipeline import index_library
    from indexer.shards import EmbedderSpec, ingest
    from store import Store

    out: dict[str, Any] = {"files": files, "seconds_each": seconds, "embedder": "features (not MAEST)"}
    with tempfile.TemporaryDirectory() as tmp:
        lib = Path(tmp) / "lib"
        generate_demo_library(lib, n_tracks=files, seed=3, min_duration=seconds, max_duration=seconds)
        started = time.perf_counter()
        local = index_library([lib], Path(tmp) / "local", load_embedder("features"), workers=workers)
        local_s = time.perf_counter() - started
        out["local"] = {"workers": workers, "seconds": round(local_s, 2), "files_per_s": round(files / local_s, 2),
                        "added": local.added}
        started = time.perf_counter()
        cluster = connect(None, 2)
        start_s = time.perf_counter() - started
        spec = EmbedderSpec("features")
        started = time.perf_counter()
        run = run_ray([lib], str(Path(tmp) / "shards"), spec, spec.load().info)
        embed_s = time.perf_counter() - started
        started = time.perf_counter()
        report = ingest(str(Path(tmp) / "shards"), Path(tmp) / "ray-store")
        ingest_s = time.perf_counter() - started
        out["ray"] = {"cluster": cluster, "start_s": round(start_s, 2), "embed_to_shards_s": round(embed_s, 2),
                      "ingest_s": round(ingest_s, 2), "files_per_s": round(files / (embed_s + ingest_s), 2),
                      "files_per_s_embedding": round(files / embed_s, 2), "processed": run.processed,
                      "added": report.added}
        out["ray_over_local_time"] = round((embed_s + ingest_s) / local_s, 2)
        with Store.open(Path(tmp) / "local") as a, Store.open(Path(tmp) / "ray-store") as b:
            pa_ = dict(a.sql("SELECT id, path FROM tracks").rows)
            pb = dict(b.sql("SELECT id, path FROM tracks").rows)
            ia, va = a.vectors()
            ib, vb = b.vectors()
            by_a = {pa_[int(i)]: v for i, v in zip(ia, va, strict=True)}
            by_b = {pb[int(i)]: v for i, v in zip(ib, vb, strict=True)}
        out["max_abs_vector_difference"] = float(max(np.abs(by_a[p] - by_b[p]).max() for p in by_a))
        ray.shutdown()
    print(json.dumps(out), flush=True)
    return out


def shards(rows: int) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from indexer.distributed import EmbedActor
    from indexer.embedders.base import Embedding
    from indexer.shards import EmbedderSpec, ingest, prepare_staging, shard_schema
    from store import ModelInfo

    rng = np.random.default_rng(0)
    labels = [f"Genre{i // 20}---Style {i}" for i in range(519)]
    out: dict[str, Any] = {"rows": rows, "cases": []}
    for d in (768, 2304):
        for windows in (0, 8):  # 8 windows: a 4-min track in 30-s windows
            actor = EmbedActor.__new__(EmbedActor)  # the writer without a model: its table code only
            actor.schema, actor.model_id = shard_schema(d), f"bench-{d}"
            tags = json.dumps({"title": "A Song Title Of Usual Length", "artist": "Some Artist", "album": "An Album",
                               "album_artist": None, "genre": "Electronic", "year": 1999, "track_number": 4,
                               "duration": 241.3, "format": "flac", "tag_source": "tags"})
            batch, results = [], []
            for i in range(rows):
                path = f"/music/Some Artist/An Album/{i:07d} - A Song Title Of Usual Length.flac"
                batch.append({"path_bytes": path.encode(), "size": 30_000_000 + i, "mtime": 1.7e9 + i,
                              "fingerprint": f"{i:024x}", "tags": tags})
                act = rng.random(519).astype(np.float32)
                results.append(Embedding(
                    vector=rng.standard_normal(d).astype(np.float32), n_windows=max(1, windows),
                    styles=dict(zip(labels, act.tolist(), strict=True)),
                    windows=rng.standard_normal((windows, d)).astype(np.float32) if windows else None,
                    window_starts=[30.0 * w for w in range(windows)]))
            table = actor._table(batch, results)
            with tempfile.TemporaryDirectory() as tmp:
                staging = Path(tmp) / "shards"
                info = ModelInfo(name=f"bench-{d}", id=f"bench-{d}", kind="handcrafted", label="benchmark vectors",
                                 dimension=d)
                prepare_staging(str(staging), info, EmbedderSpec("features"))
                (staging / "run-bench").mkdir()
                shard = staging / "run-bench" / "part-0.parquet"
                pq.write_table(table, shard)  # Ray Data's writer: pyarrow, default (snappy) compression
                started = time.perf_counter()
                ingest(str(staging), Path(tmp) / "store")
                ingest_s = time.perf_counter() - started
                db = (Path(tmp) / "store" / "library.duckdb").stat().st_size
                case = {"dimension": d, "windows_per_track": windows,
                        "shard_bytes_per_track": round(shard.stat().st_size / rows),
                        "duckdb_bytes_per_track": round(db / rows), "ingest_tracks_per_s": round(rows / ingest_s, 1)}
            out["cases"].append(case)
            print(json.dumps(case), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", choices=("engines", "shards"))
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rows", type=int, default=2000)
    args = parser.parse_args()
    if args.which == "engines":
        save("scale-engines", {"result": engines(args.files, args.seconds, args.workers)})
    else:
        save("scale-shards", {"result": shards(args.rows)})


if __name__ == "__main__":
    main()
