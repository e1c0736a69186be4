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
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from store import Store, WritableStore

logger = logging.getLogger(__name__)

PCA_DIMENSIONS = 50
METHODS = ("tsne", "sklearn-tsne", "pca")
QUALITY_K = 10
QUALITY_SAMPLE = 2000
"""Map quality is measured on this many tracks (all of them when fewer), against every track."""


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
    PCA-reduced input; ``pca`` a linear map.

    Returns
    -------
    xy : ndarray, shape (n, 2)
    params : dict
        The method actually used and its parameters (recorded with the map).
    model : dict
        What :func:`place` needs to add tracks later: the PCA (``mean``, ``components``) the map
        was made from (empty for scikit-learn's t-SNE).
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
    jobs = n_jobs or os.cpu_count() or 1
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


INTS_IN_INTERVAL = 2
"""openTSNE's FFT repulsion interpolates on a grid with one interval per this many map units (its
default is 1). The map spreads to 150-220 units, and the grid's cost grows with the square of its
intervals, so this is what the late iterations spend their time on. Measured at 20k tracks
(``benchmarks/bench_map.py``, genre/style/artist data): 2 instead of 1 cuts the optimisation from
61 s to 16 s, while kNN preservation moves from 0.784 to 0.777 and same-artist neighbours from 0.944
to 0.941 (scikit-learn: 0.786, 0.944); 3 loses more (0.742, 0.909)."""

EXACT_KNN_MAX = 200_000
"""t-SNE's neighbour graph is exact (FAISS, cosine) up to this many tracks, HNSW above."""


def _knn_affinities(data: np.ndarray, perplexity: float, n_jobs: int) -> Any:
    """openTSNE's perplexity-based affinities, from FAISS nearest neighbours (cosine) instead of
    Annoy: exact up to :data:`EXACT_KNN_MAX` tracks (and ~15× faster than Annoy at 20k here)."""
    import faiss
    from openTSNE.affinity import PrecomputedAffinities, joint_probabilities_nn

    n = len(data)
    k = min(n - 1, int(3 * perplexity))
    x = np.ascontiguousarray(data, dtype=np.float32)
    faiss.normalize_L2(x)
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


HUB_K = 10
HUB_SAMPLE = 20_000
"""Hubness is counted over the top-10 lists of this many tracks (all of them when fewer)."""


def hubness(index: Any, ids: np.ndarray, vectors: np.ndarray, *, k: int = HUB_K, sample: int = HUB_SAMPLE,
            top: int = 20, seed: int = 0) -> dict[str, Any]:
    """How unevenly tracks appear in each other's top-``k`` similar lists (the store's own index).

    A "hub" turns up in many lists and makes them feel repetitive. Returns the k-occurrence
    skewness (0 for an even spread; high-dimensional embeddings are often above 1), the share of
    tracks in no list at all, and the ``top`` hubs as ``[track id, lists it is in]`` (estimated from
    ``sample`` lists on large libraries, scaled to all of them).
    """
    n = len(ids)
    if n <= k + 1:
        return {}
    rows = np.arange(n) if n <= sample else np.sort(np.random.default_rng(seed).choice(n, sample, replace=False))
    q = np.ascontiguousarray(vectors[rows], dtype=np.float32).copy()
    q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    _, found = index.search(q, k + 1)
    lists = [[int(t) for t in hits if t != ids[r] and t >= 0][:k] for r, hits in zip(rows, found, strict=True)]
    counted, counts = np.unique(np.concatenate([np.asarray(x, np.int64) for x in lists]), return_counts=True)
    scale = n / len(rows)
    occurrences = np.zeros(n)
    position = {int(t): i for i, t in enumerate(ids)}
    for t, c in zip(counted, counts, strict=True):
        if int(t) in position:
            occurrences[position[int(t)]] = c * scale
    std = float(occurrences.std())
    skew = float(np.mean((occurrences - occurrences.mean()) ** 3) / std**3) if std > 0 else 0.0
    order = np.argsort(-counts, kind="stable")[:top]
    return {"k": k, "lists": len(rows), "skewness": round(skew, 3),
            "never_listed": round(float(np.mean(occurrences == 0)), 4),
            "hubs": [[int(counted[i]), round(float(counts[i] * scale), 1)] for i in order]}


RECOMPUTE_SHARE = 0.2
"""``update_map`` places new tracks into the existing map while they are at most this share of
the library; beyond it (and on request) the map is recomputed."""

MAPS_DIR = "maps"

PLACE_ITERATIONS = 20
"""Optimisation steps when placing new tracks (openTSNE's transform defaults to 250). Each step costs
time in proportion to the whole map (0.15 s at 100k tracks here), while the median-of-neighbours
start already puts a track among its own kind: on 20k clustered tracks, 25 to 250 steps all put
500 new tracks among their cluster (5 of 5 map neighbours), in 0.7 s to 4.3 s."""


def _model_file(store: Store, name: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return store.path / MAPS_DIR / f"{safe}.npz"


def _save_model(store: Store, name: str, model: dict[str, np.ndarray]) -> None:
    """The PCA a map was fitted on and its cluster centres, as plain arrays (``.npz``, loaded
    without pickle)."""
    path = _model_file(store, name)
    if not model:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, **model)  # type: ignore[arg-type]
    os.replace(tmp, path)


def _load_model(store: Store, name: str) -> dict[str, np.ndarray] | None:
    """The saved PCA (``mean``, ``components``) and ``centroids`` of map ``name``; None when
    missing, unreadable or made for vectors of another dimension."""
    try:
        with np.load(_model_file(store, name), allow_pickle=False) as data:
            model = {key: np.asarray(data[key]) for key in ("mean", "components", "centroids") if key in data}
    except (OSError, ValueError) as exc:
        logger.debug("no usable map model for %r (%s)", name, exc)
        return None
    d = store.manifest.model.dimension
    if ("mean" not in model or "components" not in model or model["mean"].shape != (d,)
            or model["components"].ndim != 2 or model["components"].shape[1] != d):
        return None
    if "centroids" in model and (model["centroids"].ndim != 2 or model["centroids"].shape[1] != d):
        del model["centroids"]
    return model


def n_clusters(n: int) -> int:
    """How many clusters the ``cluster`` colouring has for ``n`` tracks: about sqrt(n/4), 2 to 20."""
    return int(min(20, max(2, round(np.sqrt(n / 4)))))


def clusters(vectors: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(cluster of each track, centroids): spherical k-means of the vectors (FAISS), numbered by
    size (0 the largest), for colouring the map by what the model hears as one kind of music."""
    import faiss

    n, d = vectors.shape
    if n < 4:
        return np.zeros(n, np.int32), np.asarray(vectors[:1], np.float32).reshape(-1, d)
    x = np.ascontiguousarray(vectors, dtype=np.float32).copy()
    faiss.normalize_L2(x)
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
    """The nearest centroid (cosine) of each vector."""
    x = np.asarray(vectors, np.float32)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return np.argmax(x @ np.asarray(centroids, np.float32).T, axis=1).astype(np.int32)


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
        ref = np.ascontiguousarray(reference, dtype=np.float32)
        faiss.normalize_L2(ref)
        self._index = faiss.IndexFlatIP(ref.shape[1])
        self._index.add(ref)

    def to_new(self, data: np.ndarray, perplexity: float = 5.0, return_distances: bool = False,
               k_neighbors: int | str = "auto") -> Any:
        import faiss
        from openTSNE.affinity import joint_probabilities_nn

        k = min(self.n_samples, int(3 * perplexity)) if k_neighbors == "auto" else int(k_neighbors)
        perplexity = min(perplexity, k / 3)
        q = np.ascontiguousarray(data, dtype=np.float32)
        faiss.normalize_L2(q)
        sims, neighbors = self._index.search(q, k)
        distances = np.maximum(1.0 - sims, 0.0).astype(np.float64)
        P = joint_probabilities_nn(neighbors, distances, [perplexity], symmetrize=False,
                                   normalization="point-wise", n_reference_samples=self.n_samples,
                                   n_jobs=self.n_jobs)
        return (P, neighbors, distances) if return_distances else P


class MapReference:
    """A stored map ready to place new vectors into, its points fixed (built once, used many times).

    t-SNE maps: openTSNE's ``transform`` (affinities to the map's tracks, initialised at the median
    of the nearest ones, then optimised with the map fixed). PCA maps: the same linear projection.
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

        jobs = n_jobs or os.cpu_count() or 1
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
    """2-D positions for ``new_vectors`` in an existing map; the reference points do not move
    (:class:`MapReference`)."""
    return MapReference(reference_vectors, reference_xy, model, method=method, seed=seed,
                        n_jobs=n_jobs).place(new_vectors)


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
        model = _load_model(self.store, name)
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
        reference = MapReference(vectors[rows], placed[["x", "y"]].to_numpy(), model, method=method, seed=self.seed)
        logger.debug("map %r ready for placing (%d tracks, %.1f s)", name, len(rows), time.perf_counter() - started)
        return reference


def compute_map(store: WritableStore, *, name: str = "tsne", method: str = "tsne", perplexity: float = 30.0,
                seed: int = 0, category: str = "genre") -> dict[str, Any]:
    """Fit a new map of every embedded track of ``store``, measure its quality (:func:`map_quality`,
    ``category`` for the agreement share) and save both as projection ``name``, with the PCA it was
    fitted on (``STORE/maps/NAME.npz``) so that later tracks can be placed into it."""
    ids, vectors = store.vectors()
    started = time.perf_counter()
    xy, params, model = fit(vectors, method=method, perplexity=perplexity, seed=seed)
    params["seconds"] = round(time.perf_counter() - started, 2)
    cats = store.tracks(ids.tolist(), columns=("id", category))[category].to_numpy(dtype=object) if len(ids) else None
    params["quality"] = {**map_quality(vectors, xy, cats, seed=seed), "category": category}
    params["placed_since_fit"] = 0
    if len(ids):
        params["hubness"] = hubness(store.index, ids, vectors, seed=seed)
    labels, centroids = clusters(vectors, seed) if len(ids) else (np.zeros(0, np.int32), np.zeros((0, 0)))
    params["clusters"] = len(centroids)
    store.write_projection(name, ids, xy, method=str(params["method"]), params=params, clusters=labels)
    _save_model(store, name, {**model, "centroids": centroids} if len(ids) else {})
    logger.debug("map %r: %d tracks (%s), quality %s", name, len(ids), params["method"], params["quality"])
    return {"name": name, "n_tracks": len(ids), "action": "fitted", **params}


def update_map(store: WritableStore, *, name: str = "tsne", method: str | None = None, perplexity: float = 30.0,
               seed: int = 0, recompute: bool = False) -> dict[str, Any]:
    """Bring map ``name`` up to date: place tracks that have no position yet into it (existing
    points do not move), or fit it anew when asked, when there is no map or no saved model, when
    the method changes, or when new tracks exceed :data:`RECOMPUTE_SHARE` of the library."""
    info = store.map_info(name)
    method = method or (info.method if info else "tsne")
    ids, vectors = store.vectors()
    placed = store.projection(name)
    placed = placed[placed["id"].isin(ids)]
    known = set(placed["id"].astype(int))
    new_rows = np.array([i for i, t in enumerate(ids) if int(t) not in known], dtype=np.int64)
    share = len(new_rows) / max(1, len(ids))
    model = _load_model(store, name) if info else None
    reason = ("requested" if recompute else "no map yet" if info is None else "no saved model" if model is None
              else "another method" if method != info.method else "scikit-learn maps cannot place tracks"
              if method == "sklearn-tsne" else f"{share:.0%} of the tracks are new" if share > RECOMPUTE_SHARE
              else "too few tracks" if len(known) < 5 else None)
    if reason is not None:
        logger.info("map %r: fitting anew (%s)", name, reason)
        return {**compute_map(store, name=name, method=method, perplexity=perplexity, seed=seed), "reason": reason}
    assert info is not None and model is not None
    if len(new_rows) == 0:
        return {"name": name, "n_tracks": len(known), "action": "up to date", "placed": 0, **info.params}
    started = time.perf_counter()
    order = {int(t): i for i, t in enumerate(ids)}
    ref_rows = np.array([order[int(t)] for t in placed["id"]], dtype=np.int64)
    new_xy = place(vectors[ref_rows], placed[["x", "y"]].to_numpy(), vectors[new_rows], model,
                   method=method, seed=seed)
    all_ids = np.concatenate([ids[ref_rows], ids[new_rows]])
    all_xy = np.concatenate([placed[["x", "y"]].to_numpy(), new_xy])
    all_clusters = None
    if "centroids" in model and placed["cluster"].notna().all():
        all_clusters = np.concatenate([placed["cluster"].to_numpy(np.int32),
                                       assign_clusters(vectors[new_rows], model["centroids"])])
    params = dict(info.params)
    params["placed_since_fit"] = int(params.get("placed_since_fit", 0)) + len(new_rows)
    params["last_place_seconds"] = round(time.perf_counter() - started, 2)
    store.write_projection(name, all_ids, all_xy, method=method, params=params, clusters=all_clusters)
    logger.debug("map %r: placed %d new tracks in %.1f s", name, len(new_rows), params["last_place_seconds"])
    return {"name": name, "n_tracks": len(all_ids), "action": "placed", "placed": len(new_rows), **params}
