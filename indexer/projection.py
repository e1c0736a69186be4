"""The 2-D map: t-SNE (openTSNE) of the track vectors, stored as a named projection.

Vectors are reduced to 50 dimensions with PCA first, then embedded with openTSNE
(cosine affinities, PCA initialisation, all cores). Tiny libraries fall back to a
smaller perplexity, and below five tracks to PCA alone. The method and its parameters
are recorded with the projection.
"""

from __future__ import annotations

import logging
import os
from importlib import metadata
from typing import Any

import numpy as np

from store import Store

logger = logging.getLogger(__name__)

PCA_DIMENSIONS = 50


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
    method : {"tsne", "pca"}

    Returns
    -------
    xy : ndarray, shape (n, 2), float64
    params : dict
        The method actually used and its parameters (recorded with the projection).
    """
    n = vectors.shape[0]
    if method not in ("tsne", "pca"):
        raise ValueError(f"unknown map method {method!r}; use tsne or pca")
    if n == 0:
        return np.zeros((0, 2)), {"method": method}
    if n < 5 or method == "pca":
        xy = _pca(vectors, 2, seed) if n > 1 else np.zeros((n, 2))
        if xy.shape[1] < 2:
            xy = np.pad(xy, ((0, 0), (0, 2 - xy.shape[1])))
        return xy, {"method": "pca", "seed": seed,
                    "reason": "fewer than 5 tracks" if method == "tsne" else "requested"}
    from openTSNE import TSNE

    reduced = _pca(vectors, PCA_DIMENSIONS, seed) if vectors.shape[1] > PCA_DIMENSIONS else vectors
    used_perplexity = float(min(perplexity, max(2.0, (n - 1) / 3.0)))
    jobs = n_jobs or os.cpu_count() or 1
    tsne = TSNE(n_components=2, perplexity=used_perplexity, metric="cosine", initialization="pca",
                random_state=seed, n_jobs=jobs, verbose=False)
    xy = np.asarray(tsne.fit(np.ascontiguousarray(reduced, dtype=np.float64)))
    params = {"method": "tsne", "implementation": "openTSNE", "perplexity": used_perplexity,
              "metric": "cosine", "initialization": "pca", "pca_dimensions": int(reduced.shape[1]),
              "seed": seed, "openTSNE": metadata.version("openTSNE")}
    return xy, params


def compute_map(store: Store, *, name: str = "tsne", method: str = "tsne", perplexity: float = 30.0,
                seed: int = 0) -> dict[str, Any]:
    """Project every embedded track of ``store`` and save it as projection ``name``."""
    ids, vectors = store.vectors()
    xy, params = project(vectors, method=method, perplexity=perplexity, seed=seed)
    store.write_projection(name, ids, xy, method=str(params["method"]), params=params)
    logger.info("map %r: %d tracks (%s)", name, len(ids), params["method"])
    return {"name": name, "n_tracks": len(ids), **params}
