"""Fitting a 2-D map of track vectors: t-SNE (openTSNE) on a PCA reduction, or a linear map.

Vectors are reduced to 50 dimensions with PCA first, then embedded with openTSNE (cosine
affinities from FAISS nearest neighbours, PCA initialisation; threads by :func:`map_threads`), or scikit-learn's TSNE
on request. Tiny libraries fall back to a smaller perplexity, and below five tracks to PCA alone.
"""

from __future__ import annotations

import os
from importlib import metadata
from typing import Any

import numpy as np

from store import l2_normalise

PCA_DIMENSIONS = 50
METHODS = ("tsne", "sklearn-tsne", "pca")

INTS_IN_INTERVAL = 2
"""openTSNE's FFT repulsion interpolates on a grid with one interval per this many map units (its
default is 1). The map spreads to 150-220 units, and the grid's cost grows with the square of its
intervals, so this is what the late iterations spend their time on. Measured at 20k tracks
(``benchmarks/bench_map.py``, genre/style/artist data): 2 instead of 1 cuts the optimisation from
61 s to 16 s, while kNN preservation moves from 0.784 to 0.777 and same-artist neighbours from 0.944
to 0.941 (scikit-learn: 0.786, 0.944); 3 loses more (0.742, 0.909)."""

SMALL_MAP_POINTS = 1_000
"""openTSNE runs on one thread below this many points (fitted, or placed into a map), on every core
from it on (:func:`map_threads`)."""

EXACT_KNN_MAX = 200_000
"""t-SNE's neighbour graph is exact (FAISS, cosine) up to this many tracks, HNSW above."""


def map_threads(n_points: int, n_jobs: int | None = None) -> int:
    """openTSNE's threads for fitting or placing ``n_points``: ``n_jobs`` when given, else one below
    :data:`SMALL_MAP_POINTS` and every core from it on.

    Measured on 2 cores (``bench_map.py threads``, ``benchmarks/results/map-threads-20261205-181904.json``):
    below a thousand points a second thread gains nothing on an idle machine (500 points: 0.80 s on
    one thread, 0.88 s on two; placing 1 to 500 uploads into a 3,000-track map: one thread twice as
    fast), and costs a great deal beside another busy process, because openTSNE's OpenMP threads
    spin while they wait for a core (500 points: 0.87 s against 2.59 s; one upload: 0.04 s against
    1.09 s; ad hoc, a 16-track map took 10-17 s on two threads now and then, 0.06 s on one). From a
    thousand points on, two threads save a third on an idle machine (1,000: 1.81 → 1.20 s; 4,000:
    9.7 → 5.9 s), though beside a busy process they still lose (4,000: 14.0 against 32.2 s).
    """
    if n_jobs:
        return n_jobs
    return 1 if n_points < SMALL_MAP_POINTS else (os.cpu_count() or 1)


def _fit_pca(vectors: np.ndarray, n_components: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(reduced, mean, components): ``reduced = (vectors - mean) @ components.T``, so new tracks
    can be reduced the same way later."""
    from sklearn.decomposition import PCA

    n_components = max(1, min(n_components, vectors.shape[0], vectors.shape[1]))
    pca = PCA(n_components=n_components, random_state=seed)
    reduced = np.asarray(pca.fit_transform(vectors))
    return reduced, np.asarray(pca.mean_, np.float64), np.asarray(pca.components_, np.float64)


def fit(vectors: np.ndarray, *, method: str = "tsne", perplexity: float = 30.0, seed: int = 0,
        n_jobs: int | None = None) -> tuple[np.ndarray, dict[str, Any], dict[str, np.ndarray]]:
    """2-D coordinates of ``vectors`` (shape (n, d)): ``tsne`` is openTSNE (FFT-accelerated, all
    cores), ``sklearn-tsne`` scikit-learn's TSNE (the original demo's method), both on the same
    PCA-reduced input; ``pca`` a linear map. ``n_jobs``: threads (default :func:`map_threads`).

    Returns
    -------
    xy : ndarray, shape (n, 2)
    params : dict
        The method actually used and its parameters (recorded with the map).
    model : dict
        What :func:`indexer.mapping.placement.place` needs to add tracks later: the PCA
        (``mean``, ``components``) the map was made from (empty for scikit-learn's t-SNE).
    """
    n = vectors.shape[0]
    if method not in METHODS:
        raise ValueError(f"unknown map method {method!r}; use {', '.join(METHODS)}")
    if n == 0:
        return np.zeros((0, 2)), {"method": method}, {}
    if n < 5 or method == "pca":
        if n > 1:
            xy, mean, components = _fit_pca(vectors, 2, seed)
        else:
            xy, mean, components = np.zeros((n, 2)), np.zeros(vectors.shape[1]), np.zeros((2, vectors.shape[1]))
        if xy.shape[1] < 2:
            xy = np.pad(xy, ((0, 0), (0, 2 - xy.shape[1])))
            components = np.pad(components, ((0, 2 - components.shape[0]), (0, 0)))
        return xy, {"method": "pca", "seed": seed,
                    "reason": "requested" if method == "pca" else "fewer than 5 tracks"}, \
            {"mean": mean, "components": components}
    if vectors.shape[1] > PCA_DIMENSIONS:
        reduced, mean, components = _fit_pca(vectors, PCA_DIMENSIONS, seed)
    else:
        reduced = np.asarray(vectors, np.float64)
        mean, components = np.zeros(vectors.shape[1]), np.eye(vectors.shape[1])
    used_perplexity = float(min(perplexity, max(2.0, (n - 1) / 3.0)))
    jobs = map_threads(n, n_jobs)
    if method == "sklearn-tsne":
        from sklearn.manifold import TSNE as SklearnTSNE

        model = SklearnTSNE(n_components=2, perplexity=used_perplexity, metric="cosine", init="pca",
                            random_state=seed, n_jobs=jobs)
        xy = np.asarray(model.fit_transform(np.ascontiguousarray(reduced, dtype=np.float64)))
        return xy, {"method": "sklearn-tsne", "implementation": "scikit-learn", "perplexity": used_perplexity,
                    "metric": "cosine", "initialization": "pca", "pca_dimensions": int(reduced.shape[1]),
                    "seed": seed, "scikit-learn": metadata.version("scikit-learn")}, {}
    from openTSNE import TSNE
    from openTSNE import initialization as init_schemes

    data = np.ascontiguousarray(reduced, dtype=np.float64)
    tsne = TSNE(n_components=2, perplexity=used_perplexity, metric="cosine", random_state=seed, n_jobs=jobs,
                ints_in_interval=INTS_IN_INTERVAL, verbose=False)
    affinities = _knn_affinities(data, used_perplexity, jobs)
    start = init_schemes.pca(data, n_components=2, random_state=seed)
    xy = np.asarray(tsne.fit(affinities=affinities, initialization=start))
    params = {"method": "tsne", "implementation": "openTSNE", "perplexity": used_perplexity,
              "metric": "cosine", "neighbors": "faiss-exact" if len(data) <= EXACT_KNN_MAX else "faiss-hnsw",
              "initialization": "pca", "pca_dimensions": int(reduced.shape[1]),
              "ints_in_interval": INTS_IN_INTERVAL, "seed": seed, "openTSNE": metadata.version("openTSNE")}
    return xy, params, {"mean": mean, "components": components}


def _knn_affinities(data: np.ndarray, perplexity: float, n_jobs: int) -> Any:
    """openTSNE's perplexity-based affinities, from FAISS nearest neighbours (cosine) instead of
    Annoy: exact up to :data:`EXACT_KNN_MAX` tracks (and ~15× faster than Annoy at 20k here)."""
    import faiss
    from openTSNE.affinity import PrecomputedAffinities, joint_probabilities_nn

    n = len(data)
    k = min(n - 1, int(3 * perplexity))
    x = l2_normalise(data)
    if n <= EXACT_KNN_MAX:
        index: Any = faiss.IndexFlatIP(x.shape[1])
    else:
        index = faiss.IndexHNSWFlat(x.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = max(64, 2 * k)
    index.add(x)
    sims, neighbors = index.search(x, k + 1)
    # Drop each track itself (normally the first hit; with exact duplicates it may be elsewhere).
    rows = np.arange(n)[:, None]
    self_hit = neighbors == rows
    keep = ~self_hit
    keep[~self_hit.any(axis=1), -1] = False  # no self among the hits: drop the farthest instead
    neighbors = neighbors[keep].reshape(n, k)
    distances = np.maximum(1.0 - sims[keep].reshape(n, k), 0.0).astype(np.float64)
    P = joint_probabilities_nn(neighbors, distances, [perplexity], symmetrize=True, n_jobs=n_jobs)
    return PrecomputedAffinities(P, normalize=False)
