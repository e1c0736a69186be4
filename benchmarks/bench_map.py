"""Map benchmarks (issue #6): openTSNE vs scikit-learn's TSNE, and placing new tracks.

Synthetic clustered 768-d track vectors (as ``bench_store.py``), each run in a fresh process
(wall time, peak RSS growth):

- ``fit``: ``indexer.projection.fit`` with ``tsne`` (openTSNE) and ``sklearn-tsne`` at each size,
  both after PCA to 50 dimensions; scikit-learn is skipped above ``--sklearn-max`` tracks (it would
  take more than 30 minutes here); the map's quality (trustworthiness@10, kNN preservation) too.
- ``place``: fit openTSNE on ``--base`` tracks, then place ``--new`` more into it
  (``indexer.projection.place``), timed on its own.

    python benchmarks/bench_map.py fit [--sizes 5000,20000,100000] [--sklearn-max 20000]
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


def _hwm_mb() -> float:
    with open("/proc/self/status") as fh:
        return int(next(r for r in fh if r.startswith("VmHWM")).split()[1]) / 1024


def _child_fit(n: int, method: str) -> None:
    from indexer.projection import fit, map_quality

    x = clustered(n, 768)
    base = _hwm_mb()
    started = time.perf_counter()
    xy, params, _ = fit(x, method=method)
    wall = time.perf_counter() - started
    peak = _hwm_mb() - base
    quality = map_quality(x, xy, sample=2000)
    print(json.dumps({"n": n, "method": method, "wall_s": round(wall, 1), "peak_rss_growth_mb": round(peak, 1),
                      "quality": quality, "params": params}))


def _child_place(base_n: int, new_n: int) -> None:
    from indexer.projection import fit, place

    x = clustered(base_n + new_n, 768)
    ref, new = x[:base_n], x[base_n:]
    started = time.perf_counter()
    xy, _, model = fit(ref, method="tsne")
    fit_s = time.perf_counter() - started
    base = _hwm_mb()
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
        _child_fit(int(sys.argv[2]), sys.argv[3])
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
    args = parser.parse_args()
    if args.which == "fit":
        runs = []
        for n in map(int, args.sizes.split(",")):
            for method in ("tsne", "sklearn-tsne"):
                if method == "sklearn-tsne" and n > args.sklearn_max:
                    runs.append({"n": n, "method": method, "skipped": f"over --sklearn-max {args.sklearn_max}"})
                    continue
                runs.append({"n": n, "method": method, **_run_child("_child_fit", str(n), method)})
        speedups = {}
        for n in {r["n"] for r in runs}:
            times = {r["method"]: r.get("wall_s") for r in runs if r["n"] == n}
            if times.get("tsne") and times.get("sklearn-tsne"):
                speedups[str(n)] = round(times["sklearn-tsne"] / times["tsne"], 2)
        save("map-fit", {"runs": runs, "openTSNE_speedup_vs_sklearn": speedups})
    else:
        save("map-place", {"result": _run_child("_child_place", str(args.base), str(args.new))})


if __name__ == "__main__":
    main()
