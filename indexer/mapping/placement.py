"""Placing new vectors into a fitted map whose points stay where they are: tracks indexed since the
map was fitted, and (in the explorer) an uploaded clip.

t-SNE maps use openTSNE's ``transform`` over FAISS affinities to the map's tracks (no pickled
openTSNE fit is kept: the PCA the map was fitted on is enough, :mod:`indexer.mapping.model`);
PCA maps the same linear projection.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import numpy as np
import pandas as pd

from store import Store, l2_normalise

from .fit import map_threads
from .model import load_model

logger = logging.getLogger(__name__)

PLACE_ITERATIONS = 20
"""Optimisation steps when placing new tracks (openTSNE's transform defaults to 250). Each step costs
time in proportion to the whole map (0.15 s at 100k tracks here), while the median-of-neighbours
start already puts a track among its own kind: on 20k clustered tracks, 25 to 250 steps all put
500 new tracks among their cluster (5 of 5 map neighbours), in 0.7 s to 4.3 s."""


class _FaissAffinities:
    """openTSNE affinities of new points to the map's tracks, from an exact FAISS kNN search over
    the PCA-reduced tracks (cosine, as the map was fitted): what ``TSNEEmbedding.transform`` needs,
    without keeping openTSNE's pickled fit around."""

    def __init__(self, reference: np.ndarray, n_jobs: int) -> None:
        import faiss
        import scipy.sparse as sp

        self.n_samples = len(reference)
        self.n_jobs = n_jobs
        self.verbose = False
        # The map's own affinities are only needed to optimise the map itself, which never happens
        # here; openTSNE checks their shape.
        self.P = sp.csr_matrix((self.n_samples, self.n_samples))
        ref = l2_normalise(reference)
        self._index = faiss.IndexFlatIP(ref.shape[1])
        self._index.add(ref)

    def to_new(self, data: np.ndarray, perplexity: float = 5.0, return_distances: bool = False,
               k_neighbors: int | str = "auto") -> Any:
        from openTSNE.affinity import joint_probabilities_nn

        k = min(self.n_samples, int(3 * perplexity)) if k_neighbors == "auto" else int(k_neighbors)
        perplexity = min(perplexity, k / 3)
        sims, neighbors = self._index.search(l2_normalise(data), k)
        distances = np.maximum(1.0 - sims, 0.0).astype(np.float64)
        P = joint_probabilities_nn(neighbors, distances, [perplexity], symmetrize=False,
                                   normalization="point-wise", n_reference_samples=self.n_samples,
                                   n_jobs=self.n_jobs)
        return (P, neighbors, distances) if return_distances else P


class MapReference:
    """A stored map ready to place new vectors into, its points fixed (built once, used many times).

    t-SNE maps: openTSNE's ``transform`` (affinities to the map's tracks, initialised at the median
    of the nearest ones, then optimised with the map fixed). PCA maps: the same linear projection.

    Parameters
    ----------
    reference_vectors : ndarray, shape (n, d)
        The map's tracks' vectors, in the order of ``reference_xy``.
    reference_xy : ndarray, shape (n, 2)
    model : dict
        The map's PCA (``mean`` shape (d,), ``components`` shape (c, d)), as saved with it.
    """

    def __init__(self, reference_vectors: np.ndarray, reference_xy: np.ndarray, model: dict[str, np.ndarray], *,
                 method: str, seed: int = 0, n_jobs: int | None = None) -> None:
        self.method = method
        self.mean = model["mean"].astype(np.float32)
        self.components = model["components"].astype(np.float32)
        self._embedding: Any = None
        if method == "pca":
            return
        from openTSNE import TSNEEmbedding

        jobs = n_jobs or os.cpu_count() or 1  # place() and Placer choose by the points placed (map_threads)
        reduced_ref = (np.asarray(reference_vectors, np.float32) - self.mean) @ self.components.T
        ref_xy = np.array(reference_xy, dtype=np.float64)
        self._shift = (ref_xy.max(axis=0) + ref_xy.min(axis=0)) / 2  # transform() centres the reference map
        self._embedding = TSNEEmbedding(ref_xy, _FaissAffinities(reduced_ref, jobs), random_state=seed, n_jobs=jobs)

    def place(self, new_vectors: np.ndarray) -> np.ndarray:
        """2-D positions, shape (m, 2), for ``new_vectors`` (shape (m, d))."""
        reduced_new = (np.asarray(new_vectors, np.float32) - self.mean) @ self.components.T  # float32: 5× faster
        if self._embedding is None:
            return np.asarray(reduced_new[:, :2], np.float64)
        placed = self._embedding.transform(np.ascontiguousarray(reduced_new, dtype=np.float64),
                                           n_iter=PLACE_ITERATIONS)
        return np.asarray(placed) + self._shift


def place(reference_vectors: np.ndarray, reference_xy: np.ndarray, new_vectors: np.ndarray,
          model: dict[str, np.ndarray], *, method: str, seed: int = 0, n_jobs: int | None = None) -> np.ndarray:
    """2-D positions, shape (m, 2), for ``new_vectors`` (shape (m, d)) in an existing map; the
    reference points do not move (:class:`MapReference`)."""
    return MapReference(reference_vectors, reference_xy, model, method=method, seed=seed,
                        n_jobs=map_threads(len(new_vectors), n_jobs)).place(new_vectors)


class Placer:
    """Places outside vectors (an uploaded clip) into the maps of a store, for the explorer.

    ``placer(name, vectors)`` returns their positions in map ``name`` without changing the store;
    the map's :class:`MapReference` is built on first use and rebuilt when the map changes. Returns
    None when the map does not exist or cannot place (no saved model, a scikit-learn map).
    """

    def __init__(self, store: Store, *, seed: int = 0) -> None:
        self.store, self.seed = store, seed
        self._lock = threading.Lock()
        self._references: dict[str, tuple[Any, MapReference | None]] = {}

    def __call__(self, name: str, vectors: np.ndarray) -> np.ndarray | None:
        with self._lock:  # one build at a time; openTSNE's transform is not meant for threads either
            with self.store.holding():
                info = self.store.map_info(name)
                if info is None:
                    return None
                key = (info.created_at, info.n_tracks, info.params.get("placed_since_fit"))
                cached = self._references.get(name)
                if cached is None or cached[0] != key:
                    cached = (key, self._build(name, info.method))
                    self._references[name] = cached
            reference = cached[1]
            return None if reference is None else reference.place(np.atleast_2d(vectors))

    def _build(self, name: str, method: str) -> MapReference | None:
        model = load_model(self.store, name)
        if model is None or "mean" not in model or method == "sklearn-tsne":
            return None
        ids, vectors = self.store.vectors()
        placed = self.store.projection(name)
        order = pd.Series(np.arange(len(ids)), index=ids)
        placed = placed[placed["id"].isin(order.index)]
        if len(placed) < 5:
            return None
        rows = order[placed["id"].astype(np.int64)].to_numpy()
        started = time.perf_counter()
        reference = MapReference(vectors[rows], placed[["x", "y"]].to_numpy(), model, method=method, seed=self.seed,
                                 n_jobs=1)  # uploads: a clip or a few at a time (map_threads)
        logger.debug("map %r ready for placing (%d tracks, %.1f s)", name, len(rows), time.perf_counter() - started)
        return reference
