"""Store benchmarks (issue #5): similarity latency and recall, filtered queries, SQL + similarity.

``index``: synthetic clustered vectors (tracks as queries, the query itself left out) at each size
and dimension: top-10 latency (p50, p99, one query at a time) and recall@10 against exact search,
for the index the store picks (``store.vectors.build_index(kind="auto")``), exact FAISS flat, and
NumPy brute force; build time; a filtered query at 10 % selectivity through the store's search
(``store.search.knn`` with an id selector): latency, recall and "always k".

``sql``: a real store (DuckDB + FAISS) of ``--sql-size`` tracks: the statement
``SELECT title, artist, similarity(id, SEED) AS s FROM tracks WHERE genre = 'Jazz' ORDER BY s DESC
LIMIT 20`` and ``Store.search(seed, where="genre = 'Jazz'")`` (10 % of tracks), p50/p99.

    python benchmarks/bench_store.py index [--sizes 10000,100000] [--dims 768,2304] [--kind ivfpq]
    python benchmarks/bench_store.py sql [--sql-size 100000]
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _report import save  # benchmarks/ is on sys.path when a script runs

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))



def clustered(n: int, d: int, seed: int = 0) -> np.ndarray:
    """``n`` unit vectors around ``n / 100`` cluster centres (music libraries are clumpy), float32."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(10, n // 100), d)).astype(np.float32)
    out = np.empty((n, d), np.float32)
    for start in range(0, n, 50_000):  # in chunks: 1M × 2304 is 9 GB already
        stop = min(n, start + 50_000)
        labels = rng.integers(0, len(centres), stop - start)
        block = centres[labels] + 0.6 * rng.standard_normal((stop - start, d)).astype(np.float32)
        out[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def _timings(fn: Any, queries: np.ndarray) -> tuple[list[float], list[Any]]:
    times, results = [], []
    for q in queries:
        started = time.perf_counter()
        results.append(fn(q))
        times.append((time.perf_counter() - started) * 1000)
    return times, results


def _summary(times: list[float]) -> dict[str, float]:
    return {"p50_ms": round(float(np.percentile(times, 50)), 3), "p99_ms": round(float(np.percentile(times, 99)), 3)}


def _recall(found: list[list[int]], truth: list[list[int]]) -> float:
    return round(float(np.mean([len(set(f) & set(t)) / max(1, len(t)) for f, t in zip(found, truth, strict=True)])), 4)


def index_bench(n: int, d: int, n_queries: int, kind: str = "auto") -> dict[str, Any]:
    import faiss

    from store.search import knn
    from store.vectors import build_index

    x = clustered(n, d)
    ids = np.arange(1, n + 1, dtype=np.int64)
    rng = np.random.default_rng(1)
    rows = rng.choice(n, size=n_queries, replace=False)
    queries = x[rows]
    k = 10
    _, exact_rows = faiss.knn(queries, x, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
    truth = [[int(ids[r]) for r in rr if r != q][:k] for rr, q in zip(exact_rows, rows, strict=True)]
    out: dict[str, Any] = {"n": n, "d": d, "queries": n_queries}

    numpy_queries = queries[: max(10, n_queries // (10 if n * d > 200_000_000 else 1))]

    def brute(q: np.ndarray) -> list[int]:
        scores = x @ q
        top = np.argpartition(-scores, k + 1)[: k + 1]
        return [int(ids[i]) for i in top[np.argsort(-scores[top])]]

    t, _ = _timings(brute, numpy_queries)
    out["numpy_brute_force"] = {**_summary(t), "recall_at_10": 1.0, "queries": len(numpy_queries)}

    if n * d <= 1_000_000_000:  # beyond, a second copy of the vectors would not fit: NumPy is the reference
        started = time.perf_counter()
        flat, _ = build_index(ids, x, kind="flat")
        flat_build = time.perf_counter() - started
        t, res = _timings(lambda q: flat.search(q[None], k + 1)[1][0], queries)
        found = [[int(i) for i in r if i != ids[q]][:k] for r, q in zip(res, rows, strict=True)]
        out["faiss_flat"] = {**_summary(t), "recall_at_10": _recall(found, truth), "build_s": round(flat_build, 2)}
        del flat  # free it before the next index
        gc.collect()

    started = time.perf_counter()
    index, params = build_index(ids, x, kind=kind)
    build = time.perf_counter() - started
    t, res = _timings(lambda q: index.search(q[None], k + 1)[1][0], queries)
    found = [[int(i) for i in r if i != ids[q]][:k] for r, q in zip(res, rows, strict=True)]
    out["store_pick"] = {"type": params["type"], "asked": kind, "params": params, **_summary(t),
                         "recall_at_10": _recall(found, truth), "build_s": round(build, 2),
                         "index_bytes": len(faiss.serialize_index(index)),
                         "float32_bytes": int(n * d * 4)}

    allowed = np.sort(rng.choice(ids, size=n // 10, replace=False))
    allowed_set = set(allowed.tolist())
    sub_rows = allowed - 1
    _, sub_exact = faiss.knn(queries, x[sub_rows], k + 1, metric=faiss.METRIC_INNER_PRODUCT)
    sub_truth = [[int(allowed[r]) for r in rr if allowed[r] != ids[q]][:k]
                 for rr, q in zip(sub_exact, rows, strict=True)]
    t, res = _timings(lambda q: [i for i, _ in knn(index, q, k + 1, allowed)], queries)
    found = [[i for i in r if i != ids[q]][:k] for r, q in zip(res, rows, strict=True)]
    out["filtered_10pct"] = {**_summary(t), "recall_at_10": _recall(found, sub_truth),
                             "always_k": all(len(f) == k and set(f) <= allowed_set for f in found)}
    print(json.dumps(out), flush=True)
    return out


def sql_bench(n: int, n_queries: int = 30) -> dict[str, Any]:
    from store import ModelInfo, Store, TrackRecord

    d = 768
    x = clustered(n, d, seed=3)
    genres = ["Jazz", "Rock", "Pop", "Techno", "Folk", "Soul", "Metal", "Blues", "Reggae", "Classical"]
    model = ModelInfo(name="bench", id="bench-768", kind="handcrafted", label="benchmark vectors", dimension=d)
    out: dict[str, Any] = {"n": n, "d": d}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "store"
        started = time.perf_counter()
        with Store.open_for_indexing(folder, model) as store:
            for start in range(0, n, 5000):
                store.write_tracks([TrackRecord(path=f"/music/{i:07d}.flac", size=1, mtime=1.0,
                                                tags={"title": f"Song {i}", "artist": f"Artist {i % 5000}",
                                                      "album": f"Album {i % 20000}", "genre": genres[i % 10],
                                                      "year": 1950 + i % 70},
                                                vector=x[i]) for i in range(start, min(n, start + 5000))])
            store.sync()
        out["write_s"] = round(time.perf_counter() - started, 1)
        del x
        gc.collect()
        with Store.open(folder) as store:
            started = time.perf_counter()
            store.sql("SELECT similarity(1, 2)")  # loads FAISS, installs the function
            out["first_query_s"] = round(time.perf_counter() - started, 2)
            seeds = np.random.default_rng(5).choice(np.arange(1, n + 1), size=n_queries, replace=False)
            statement = ("SELECT title, artist, similarity(id, {seed}) AS s FROM tracks WHERE genre = 'Jazz' "
                         "ORDER BY s DESC LIMIT 20")
            t, res = _timings(lambda s: store.sql(statement.format(seed=int(s))).rows, seeds)
            assert all(len(r) == 20 for r in res)
            out["sql_similarity"] = {**_summary(t), "statement": statement, "note": "a new seed each time"}
            t, res = _timings(lambda s: store.search(int(s), k=10, where="genre = 'Jazz'"), seeds)
            assert all(len(r) == 10 for r in res)
            out["search_filtered_10pct"] = _summary(t)
            t, _ = _timings(lambda s: store.search(int(s), k=10), seeds)
            out["search_plain"] = _summary(t)
            t, _ = _timings(lambda s: store.search(int(s), k=10, max_per_artist=1, dedupe=True, mmr=0.7), seeds)
            out["search_variety"] = _summary(t)
            out["index"] = store.manifest.index
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", choices=("index", "sql"))
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--dims", default="768,2304")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--kind", choices=("auto", "flat", "hnsw", "ivfpq"), default="auto",
                        help="the index to measure (default: the one the store picks by size)")
    parser.add_argument("--sql-size", dest="sql_size", type=int, default=100_000)
    args = parser.parse_args()
    if args.which == "index":
        result: Any = [index_bench(n, d, args.queries, args.kind) for d in map(int, args.dims.split(","))
                       for n in map(int, args.sizes.split(","))]
    else:
        result = sql_bench(args.sql_size)
    save(f"store-{args.which}" + (f"-{args.kind}" if args.which == "index" and args.kind != "auto" else ""),
         {"result": result})


if __name__ == "__main__":
    main()
