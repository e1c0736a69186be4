"""The 2-D map: t-SNE (openTSNE) of the track vectors, stored as a named projection.

Vectors are reduced to 50 dimensions with PCA first, then embedded with openTSNE
(cosine affinities, PCA initialisation, all cores), or scikit-learn's TSNE on request.
Tiny libraries fall back to a smaller perplexity, and below five tracks to PCA alone.
The method, its parameters, package versions, the time taken and the map's measured
quality (trustworthiness, kNN preservation, category agreement) are recorded with the
projection.
"""

from __future__ import annotations

import logging
import os
import time
from importlib import metadata
from typing import Any

import numpy as np

from store import Store

logger = logging.getLogger(__name__)

PCA_DIMENSIONS = 50
METHODS = ("tsne", "sklearn-tsne", "pca")
QUALITY_K = 10
QUALITY_SAMPLE = 2000
"""Map quality is measured on this many tracks (all of them when fewer), against every track."""


def _pca(vectors: np.ndarray, n_components: int, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    n_components = max(1, min(n_components, vectors.shape[0], vectors.shape[1]))
    return np.asarray(PCA(n_components=n_components, random_state=seed).fit_transform(vectors))


def project(vectors: np.ndarray, *, method: str = "tsne", perplexity: float = 30.0,
            seed: int = 0, n_jobs: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """2-D coordinates of ``vectors``.

    Parameters
    ----------
    vectors : ndarray, shape (n, d), float32
    method : {"tsne", "sklearn-tsne", "pca"}
        ``tsne`` is openTSNE (FFT-accelerated, all cores); ``sklearn-tsne`` scikit-learn's TSNE
        (Barnes-Hut, the original demo's method), both on the same PCA-reduced input.

    Returns
    -------
    xy : ndarray, shape (n, 2), float64
    params : dict
        The method actually used and its parameters (recorded with the projection).
    """
    n = vectors.shape[0]
    if method not in METHODS:
        raise ValueError(f"unknown map method {method!r}; use {', '.join(METHODS)}")
    if n == 0:
        return np.zeros((0, 2)), {"method": method}
    if n < 5 or method == "pca":
        xy = _pca(vectors, 2, seed) if n > 1 else np.zeros((n, 2))
        if xy.shape[1] < 2:
            xy = np.pad(xy, ((0, 0), (0, 2 - xy.shape[1])))
        return xy, {"method": "pca", "seed": seed,
                    "reason": "requested" if method == "pca" else "fewer than 5 tracks"}
    reduced = _pca(vectors, PCA_DIMENSIONS, seed) if vectors.shape[1] > PCA_DIMENSIONS else vectors
    used_perplexity = float(min(perplexity, max(2.0, (n - 1) / 3.0)))
    jobs = n_jobs or os.cpu_count() or 1
    if method == "sklearn-tsne":
        from sklearn.manifold import TSNE as SklearnTSNE

        model = SklearnTSNE(n_components=2, perplexity=used_perplexity, metric="cosine", init="pca",
                            random_state=seed, n_jobs=jobs)
        xy = np.asarray(model.fit_transform(np.ascontiguousarray(reduced, dtype=np.float64)))
        return xy, {"method": "sklearn-tsne", "implementation": "scikit-learn", "perplexity": used_perplexity,
                    "metric": "cosine", "initialization": "pca", "pca_dimensions": int(reduced.shape[1]),
                    "seed": seed, "scikit-learn": metadata.version("scikit-learn")}
    from openTSNE import TSNE

    tsne = TSNE(n_components=2, perplexity=used_perplexity, metric="cosine", initialization="pca",
                random_state=seed, n_jobs=jobs, verbose=False)
    xy = np.asarray(tsne.fit(np.ascontiguousarray(reduced, dtype=np.float64)))
    params = {"method": "tsne", "implementation": "openTSNE", "perplexity": used_perplexity,
              "metric": "cosine", "initialization": "pca", "pca_dimensions": int(reduced.shape[1]),
              "seed": seed, "openTSNE": metadata.version("openTSNE")}
    return xy, params


def map_quality(vectors: np.ndarray, xy: np.ndarray, categories: np.ndarray | None = None, *,
                k: int = QUALITY_K, sample: int = QUALITY_SAMPLE, seed: int = 0) -> dict[str, float]:
    """How faithful a 2-D map is to the vectors, on ``sample`` tracks against all of them.

    - ``trustworthiness``: Venna & Kaski's T(k): 1 when every track's k nearest on the map are also
      among its nearest in the embedding; lower when the map puts strangers next to each other.
    - ``knn_preservation``: the share of each track's k nearest neighbours in the embedding (cosine)
      that are among its k nearest on the map.
    - ``category_agreement`` (with ``categories``): the share of each track's k nearest on the map
      that have its category (tracks without one left out).

    Parameters
    ----------
    vectors : ndarray, shape (n, d), L2-normalised
    xy : ndarray, shape (n, 2)
    categories : ndarray of object, shape (n,), optional
    """
    import faiss

    n = len(vectors)
    if n <= 2 * k + 1:
        return {}
    rows = np.arange(n) if n <= sample else np.sort(np.random.default_rng(seed).choice(n, sample, replace=False))
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    p = np.ascontiguousarray(xy, dtype=np.float32)
    map_index = faiss.IndexFlatL2(2)
    map_index.add(p)
    _, near_2d = map_index.search(p[rows], k + 1)
    penalty = 0.0
    kept = 0.0
    for start in range(0, len(rows), 256):  # full high-d ranks, a block of rows at a time
        block = rows[start : start + 256]
        sims = v[block] @ v.T  # (b, n)
        sims[np.arange(len(block)), block] = np.inf  # each track first in its own ranking
        order = np.argsort(-sims, axis=1, kind="stable")
        ranks = np.empty_like(order)
        ranks[np.arange(len(block))[:, None], order] = np.arange(n)[None, :]
        for j, i in enumerate(block):
            mapped = [int(m) for m in near_2d[start + j] if m != i][:k]
            r = ranks[j, mapped]  # rank 0 is the track itself, so neighbour ranks start at 1
            penalty += float(np.sum(np.maximum(r - k, 0)))
            kept += float(np.sum(r <= k)) / k
    m = len(rows)
    trust = 1.0 - 2.0 / (m * k * (2 * n - 3 * k - 1)) * penalty
    out = {"trustworthiness": round(trust, 4), "knn_preservation": round(kept / m, 4), "k": k,
           "sample": int(m)}
    if categories is not None:
        cats = np.asarray(categories, dtype=object)
        shares = []
        for j, i in enumerate(rows):
            if cats[i] is None or (isinstance(cats[i], float) and np.isnan(cats[i])):
                continue
            mapped = [int(q) for q in near_2d[j] if q != i][:k]
            shares.append(float(np.mean([cats[q] == cats[i] for q in mapped])))
        if shares:
            out["category_agreement"] = round(float(np.mean(shares)), 4)
    return out


def compute_map(store: Store, *, name: str = "tsne", method: str = "tsne", perplexity: float = 30.0,
                seed: int = 0, category: str = "genre") -> dict[str, Any]:
    """Project every embedded track of ``store``, measure the map's quality (:func:`map_quality`,
    ``category`` for the agreement share) and save both as projection ``name``."""
    ids, vectors = store.vectors()
    started = time.perf_counter()
    xy, params = project(vectors, method=method, perplexity=perplexity, seed=seed)
    params["seconds"] = round(time.perf_counter() - started, 2)
    cats = store.tracks(ids.tolist(), columns=("id", category))[category].to_numpy(dtype=object) if len(ids) else None
    params["quality"] = {**map_quality(vectors, xy, cats, seed=seed), "category": category}
    store.write_projection(name, ids, xy, method=str(params["method"]), params=params)
    logger.debug("map %r: %d tracks (%s), quality %s", name, len(ids), params["method"], params["quality"])
    return {"name": name, "n_tracks": len(ids), **params}
