"""The map's ``cluster`` colouring: spherical k-means of the vectors, fitted with the map, and
the nearest centre for tracks placed into it later."""

from __future__ import annotations

from typing import Any

import numpy as np

from store import l2_normalise


def n_clusters(n: int) -> int:
    """How many clusters the ``cluster`` colouring has for ``n`` tracks: about sqrt(n/4), 2 to 20."""
    return int(min(20, max(2, round(np.sqrt(n / 4)))))


def clusters(vectors: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(cluster of each track, centroids): spherical k-means of the vectors (FAISS), numbered by
    size (0 the largest), for colouring the map by what the model hears as one kind of music.

    Parameters
    ----------
    vectors : ndarray, shape (n, d)

    Returns
    -------
    labels : ndarray, shape (n,), int32
    centroids : ndarray, shape (n_clusters(n), d), float32 (one row when n < 4)
    """
    import faiss

    n, d = vectors.shape
    if n < 4:
        return np.zeros(n, np.int32), np.asarray(vectors[:1], np.float32).reshape(-1, d)
    x = l2_normalise(vectors)
    # min_points_per_centroid=1: a small library is fine to cluster (FAISS would print a WARNING line
    # asking for 39 points per cluster, which a newcomer reads as an error).
    kmeans = faiss.Kmeans(d, n_clusters(n), niter=25, seed=seed + 1, spherical=True, verbose=False,
                          min_points_per_centroid=1)
    kmeans.train(x)
    _, labels = kmeans.index.search(x, 1)
    labels = labels[:, 0]
    by_size = np.argsort(-np.bincount(labels, minlength=kmeans.k), kind="stable")
    renumber = np.empty_like(by_size)
    renumber[by_size] = np.arange(len(by_size))
    centroids: Any = kmeans.centroids
    return renumber[labels].astype(np.int32), np.asarray(centroids, np.float32)[by_size]


def assign_clusters(vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """The nearest centroid (cosine) of each vector: shape (m,), int32."""
    return np.argmax(l2_normalise(vectors) @ np.asarray(centroids, np.float32).T, axis=1).astype(np.int32)
