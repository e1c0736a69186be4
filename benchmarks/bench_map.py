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

    python benchmarks/bench_map.py fit [--sizes 5000,20000,100000] [--sklearn-max 20000] [--data both]
    python benchmarks/bench_map.py place [--base 100000] [--new 1000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
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


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child_fit":
        _child_fit(int(sys.argv[2]), sys.argv[3], sys.argv[4])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_child_place":
        _child_place(int(sys.argv[2]), int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", choices=("fit", "place"))
    parser.add_argument("--sizes", default="5000,20000,100000")
    parser.add_argument("--sklearn-max", dest="sklearn_max", type=int, default=20000)
    parser.add_argument("--base", type=int, default=100_000)
    parser.add_argument("--new", type=int, default=1000)
    parser.add_argument("--data", choices=("clustered", "hierarchy", "both"), default="both")
    args = parser.parse_args()
    if args.which == "fit":
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
