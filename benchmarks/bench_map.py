"""Map benchmarks (issue #6): openTSNE vs scikit-learn's TSNE, and placing new tracks.

Synthetic 768-d track vectors, each run in a fresh process (wall time, peak RSS growth), on two
kinds of data (``--data``):

- ``clustered``: unit vectors around n/100 centres (as ``bench_store.py``); within a cluster the
  neighbours are random, so kNN preservation is low for any method;
- ``hierarchy``: 20 genres, 10 styles each, n/12 artists in those styles, tracks around their
  artist: a library's structure, where a good map keeps an artist's tracks together (quality also
  reports the share of map neighbours with the same genre and with the same artist).

- ``fit``: ``indexer.mapping.fit.fit`` with ``tsne`` (openTSNE) and ``sklearn-tsne`` at each size,
  both after PCA to 50 dimensions; scikit-learn is skipped above ``--sklearn-max`` tracks (it would
  take more than 30 minutes here); the map's quality (trustworthiness@10, kNN preservation) too.
- ``place``: fit openTSNE on ``--base`` tracks, then place ``--new`` more into it
  (``indexer.mapping.placement.place``), timed on its own.
- ``threads``: small maps on one thread and on every core (``indexer.mapping.fit.map_threads``),
  with the machine idle and with one core kept busy by a spinning process: ``fit`` at each of
  ``--sizes`` (64-d clustered vectors, ``--repeats`` times; the median and the worst), and placing
  1, 50 and 500 uploads into a 3,000-track map.

    python benchmarks/bench_map.py fit [--sizes 5000,20000,100000] [--sklearn-max 20000] [--data both]
    python benchmarks/bench_map.py place [--base 100000] [--new 1000]
    python benchmarks/bench_map.py threads [--sizes 16,100,500,1000,2000,4000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from _report import save  # benchmarks/ is on sys.path when a script runs
from bench_store import clustered

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _hwm_mb(field: str = "VmHWM") -> float:
    with open("/proc/self/status") as fh:
        return int(next(r for r in fh if r.startswith(field)).split()[1]) / 1024


def _peak_from_here() -> float:
    """Reset the peak-RSS mark (what making the data peaked at is not the method's) and return the
    current RSS, the base the peak growth is measured from."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    return _hwm_mb("VmRSS")


def hierarchy(n: int, d: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vectors, genre, artist): unit vectors of tracks around their artist, artists around one of
    10 styles of one of 20 genres (float32)."""
    rng = np.random.default_rng(seed)
    n_artists = max(50, n // 12)
    genres = rng.standard_normal((20, d))
    styles = genres[:, None, :] + 0.7 * rng.standard_normal((20, 10, d))
    artist_genre = rng.integers(0, 20, n_artists)
    artists = styles[artist_genre, rng.integers(0, 10, n_artists)] + 0.5 * rng.standard_normal((n_artists, d))
    artist = rng.integers(0, n_artists, n)
    x = artists[artist] + 0.45 * rng.standard_normal((n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), artist_genre[artist], artist


def _child_fit(n: int, method: str, data: str) -> None:
    from indexer.mapping.fit import fit
    from indexer.mapping.quality import map_quality

    genre = artist = None
    if data == "hierarchy":
        x, genre, artist = hierarchy(n, 768)
    else:
        x = clustered(n, 768)
    base = _peak_from_here()
    started = time.perf_counter()
    xy, params, _ = fit(x, method=method)
    wall = time.perf_counter() - started
    peak = _hwm_mb() - base
    quality: dict[str, Any] = map_quality(x, xy, None if genre is None else genre.astype(object), sample=2000)
    if artist is not None:
        quality["artist_agreement"] = map_quality(x, xy, artist.astype(object), sample=2000)["category_agreement"]
        quality["genre_agreement"] = quality.pop("category_agreement")
    print(json.dumps({"n": n, "data": data, "method": method, "wall_s": round(wall, 1),
                      "peak_rss_growth_mb": round(peak, 1), "quality": quality, "params": params}))


def _child_place(base_n: int, new_n: int) -> None:
    from indexer.mapping.fit import fit
    from indexer.mapping.placement import place

    x = clustered(base_n + new_n, 768)
    ref, new = x[:base_n], x[base_n:]
    started = time.perf_counter()
    xy, _, model = fit(ref, method="tsne")
    fit_s = time.perf_counter() - started
    base = _peak_from_here()
    started = time.perf_counter()
    placed = place(ref, xy, new, model, method="tsne")
    place_s = time.perf_counter() - started
    assert placed.shape == (new_n, 2) and np.all(np.isfinite(placed))
    print(json.dumps({"base": base_n, "new": new_n, "fit_s": round(fit_s, 1), "place_s": round(place_s, 2),
                      "place_peak_rss_growth_mb": round(_hwm_mb() - base, 1)}))


def _run_child(*args: str, timeout: float = 3600) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(out), flush=True)
    return out


def _timed(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def threads(sizes: list[int], repeats: int) -> dict[str, Any]:
    """Fit and place on one thread and on all cores, idle and beside a busy core (see the docstring)."""
    import os

    from indexer.cpu import cpu_flags, cpu_name
    from indexer.mapping.fit import SMALL_MAP_POINTS, fit
    from indexer.mapping.placement import MapReference

    cores = os.cpu_count() or 1
    fit(clustered(50, 64), n_jobs=1)  # imports and first-call costs out of the timings
    base = clustered(3000, 64, seed=1)
    base_xy, _, model = fit(base, n_jobs=cores)
    runs: list[dict[str, Any]] = []
    for load in ("idle", "one core busy"):
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if load != "idle" else None
        try:
            for n in sizes:
                x = clustered(n, 64, seed=n)
                for jobs in (1, cores):
                    times = sorted(_timed(partial(fit, x, n_jobs=jobs)) for _ in range(repeats if n <= 1000 else 1))
                    runs.append({"what": "fit", "n": n, "load": load, "threads": jobs,
                                 "median_s": round(times[len(times) // 2], 3), "worst_s": round(times[-1], 3)})
            for m in (1, 50, 500):
                new = clustered(m, 64, seed=m)
                for jobs in (1, cores):
                    reference = MapReference(base, base_xy, model, method="tsne", n_jobs=jobs)
                    times = sorted(_timed(partial(reference.place, new)) for _ in range(repeats))
                    runs.append({"what": "place into 3000", "n": m, "load": load, "threads": jobs,
                                 "median_s": round(times[len(times) // 2], 3), "worst_s": round(times[-1], 3)})
        finally:
            if spinner is not None:
                spinner.kill()
                spinner.wait()
    flags = sorted(f for f in cpu_flags() if f.startswith(("avx512", "amx")) or f in ("avx2", "fma"))
    return {"cpu": cpu_name(), "cpu_flags": flags, "cores": cores, "small_map_points": SMALL_MAP_POINTS,
            "repeats": repeats, "runs": runs}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child_fit":
        _child_fit(int(sys.argv[2]), sys.argv[3], sys.argv[4])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_child_place":
        _child_place(int(sys.argv[2]), int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", choices=("fit", "place", "threads"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default="5000,20000,100000")
    parser.add_argument("--sklearn-max", dest="sklearn_max", type=int, default=20000)
    parser.add_argument("--base", type=int, default=100_000)
    parser.add_argument("--new", type=int, default=1000)
    parser.add_argument("--data", choices=("clustered", "hierarchy", "both"), default="both")
    args = parser.parse_args()
    if args.which == "threads":
        sizes = [int(n) for n in args.sizes.split(",")] if args.sizes != "5000,20000,100000" \
            else [16, 100, 500, 1000, 2000, 4000]
        save("map-threads", threads(sizes, args.repeats))
    elif args.which == "fit":
        runs: list[dict[str, Any]] = []
        kinds = ("clustered", "hierarchy") if args.data == "both" else (args.data,)
        for data in kinds:
            for n in map(int, args.sizes.split(",")):
                for method in ("tsne", "sklearn-tsne"):
                    if method == "sklearn-tsne" and n > args.sklearn_max:
                        runs.append({"n": n, "data": data, "method": method,
                                     "skipped": f"over --sklearn-max {args.sklearn_max}"})
                        continue
                    runs.append({"n": n, "data": data, "method": method,
                                 **_run_child("_child_fit", str(n), method, data)})
        speedups: dict[str, float] = {}
        for data in kinds:
            for n in sorted({r["n"] for r in runs}):
                times = {r["method"]: r.get("wall_s") for r in runs if r["n"] == n and r["data"] == data}
                fast, slow = times.get("tsne"), times.get("sklearn-tsne")
                if fast and slow:
                    speedups[f"{data}-{n}"] = round(slow / fast, 2)
        save("map-fit", {"runs": runs, "openTSNE_speedup_vs_sklearn": speedups})
    else:
        save("map-place", {"result": _run_child("_child_place", str(args.base), str(args.new))})


if __name__ == "__main__":
    main()
