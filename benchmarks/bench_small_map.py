"""A small map on real music (issue #29): how much a 40-track map's quality moves by chance alone.

The library: the four soundtracks of :data:`data.debian_music.DEMO_SOURCES` that have at least ten
tracks (Drascula, HyperRogue, Endgame: Singularity, SuperTux), the first ten files of each in the
package's own sorted order, fetched into ``benchmarks/work/debian-music`` and linked into
``benchmarks/work/small-map/library``, indexed through the CLI with ``--model features``.

On those vectors (store order) the t-SNE map is fitted once per seed, then, at seed 0, once per
shuffled row order (a store's track ids follow the order its files finished indexing, so two
indexings of the same files give the fit rows in another order). Each map is scored with
:func:`indexer.mapping.quality.map_quality` (trustworthiness@10, kNN preservation@10) and by the
share of each track's 5 and 10 nearest on the map that come from its soundtrack. ``--against
TREE`` fits the same vectors with another checkout's ``indexer.projection`` (``fit``, or
``project`` before 01df10c) in a child process, scored the same way: an old commit beside this one.

    python benchmarks/bench_small_map.py [--seeds 50] [--orders 50] [--against /path/to/old/checkout]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from _report import save

ROOT = Path(__file__).resolve().parents[1]
WORK = Path(__file__).resolve().parent / "work"
PER_SOURCE = 10


def _library() -> Path:
    """The 40-track library (linked, else copied, from the fetched soundtracks)."""
    from data.debian_music import DEMO_SOURCES, fetch

    fetched = [got for got in fetch(WORK / "debian-music", DEMO_SOURCES) if len(got.files) >= PER_SOURCE]
    library = WORK / "small-map" / "library"
    for got in fetched:
        for name in got.files[:PER_SOURCE]:
            target = library / got.source.package / name.replace("/", "__")
            if target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(got.folder / name, target)
            except OSError:  # another file system
                shutil.copy2(got.folder / name, target)
    return library


def _vectors(library: Path) -> tuple[np.ndarray, np.ndarray]:
    """(vectors in store order, each track's soundtrack), indexed with ``features`` once."""
    from store import Store

    store_dir = WORK / "small-map" / "store"
    subprocess.run([sys.executable, "-m", "musicmap.cli", "index", str(library), "--store", str(store_dir),
                    "--model", "features", "-q"], check=True, cwd=ROOT)
    with Store.open(store_dir) as store:
        ids, vectors = store.vectors()
        paths = store.tracks(ids.tolist(), columns=("id", "path"))["path"]
    return vectors, np.array([Path(p).parent.name for p in paths])


def _score(vectors: np.ndarray, sources: np.ndarray, xy: np.ndarray) -> dict[str, float]:
    from indexer.mapping.quality import map_quality

    q = map_quality(vectors, xy)
    d = ((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    near = np.argsort(d, axis=1, kind="stable")
    same = sources[near] == sources[:, None]
    return {"trustworthiness": q["trustworthiness"], "knn_preservation": q["knn_preservation"],
            "same_source_5": round(float(same[:, :5].mean()), 4),
            "same_source_10": round(float(same[:, :10].mean()), 4)}


def _summary(rows: list[dict[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": len(rows)}
    for key in rows[0]:
        a = np.array([r[key] for r in rows])
        out[key] = {"mean": round(float(a.mean()), 4), "sd": round(float(a.std(ddof=1)), 4),
                    "min": round(float(a.min()), 4), "max": round(float(a.max()), 4)}
    out["trustworthiness"]["below_0.85"] = int(sum(r["trustworthiness"] < 0.85 for r in rows))
    return out


def _fit_child(tree: str, vectors_file: str, seeds: int) -> None:
    """In a child process: fit with ``tree``'s code, one JSON line of coordinates per seed."""
    sys.path.insert(0, tree)
    import indexer.projection as projection

    fit = getattr(projection, "fit", None) or projection.project  # ``project`` before 01df10c
    vectors = np.load(vectors_file)
    for seed in range(seeds):
        print(json.dumps(np.asarray(fit(vectors, method="tsne", seed=seed, n_jobs=1)[0]).tolist()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--orders", type=int, default=50)
    parser.add_argument("--against", help="another checkout whose map code to compare on the same vectors")
    parser.add_argument("--fit-child", nargs=2, metavar=("TREE", "VECTORS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fit_child:
        _fit_child(args.fit_child[0], args.fit_child[1], args.seeds)
        return
    from indexer.mapping.fit import fit

    vectors, sources = _vectors(_library())
    # n_jobs=1: the same maps as on all cores (openTSNE's Barnes-Hut is deterministic), and far
    # faster for 40 tracks on a busy machine, where threads wait for each other.
    by_seed = [_score(vectors, sources, fit(vectors, seed=s, n_jobs=1)[0]) for s in range(args.seeds)]
    by_order = []
    for r in range(args.orders):
        perm = np.random.default_rng(r).permutation(len(vectors))
        by_order.append(_score(vectors[perm], sources[perm], fit(vectors[perm], seed=0, n_jobs=1)[0]))
    body: dict[str, Any] = {
        "tracks": len(vectors), "sources": {str(s): int((sources == s).sum()) for s in np.unique(sources)},
        "model": "features", "method": "tsne (openTSNE, default settings)",
        "seeds": _summary(by_seed), "row_orders_at_seed_0": _summary(by_order),
        "per_seed_trustworthiness": [r["trustworthiness"] for r in by_seed],
    }
    if args.against:
        vectors_file = WORK / "small-map" / "vectors.npy"
        np.save(vectors_file, vectors)
        proc = subprocess.run([sys.executable, __file__, "--seeds", str(args.seeds), "--fit-child", args.against,
                               str(vectors_file)], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONPATH": args.against})
        theirs = [_score(vectors, sources, np.array(json.loads(line))) for line in proc.stdout.splitlines()]
        commit = subprocess.run(["git", "-C", args.against, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
        body["against"] = {"tree": args.against, "commit": commit, "seeds": _summary(theirs),
                           "per_seed_trustworthiness": [r["trustworthiness"] for r in theirs]}
    save("small-map", body)


if __name__ == "__main__":
    main()
