"""How good a map and the similar lists are: the map's faithfulness to the vectors
(:func:`map_quality`) and how unevenly tracks turn up in each other's lists (:func:`hubness`).
Both are measured when a map is fitted and kept with it."""

from __future__ import annotations

from typing import Any

import numpy as np

from store import l2_normalise

QUALITY_K = 10
QUALITY_SAMPLE = 2000
"""Map quality is measured on this many tracks (all of them when fewer), against every track."""

HUB_K = 10
HUB_SAMPLE = 20_000
"""Hubness is counted over the top-10 lists of this many tracks (all of them when fewer)."""


def _rows(n: int, sample: int, seed: int) -> np.ndarray:
    """Every row when ``n <= sample``, else ``sample`` of them drawn with ``seed``, sorted."""
    return np.arange(n) if n <= sample else np.sort(np.random.default_rng(seed).choice(n, sample, replace=False))


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
    rows = _rows(n, sample, seed)
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
    rows = _rows(n, sample, seed)
    q = l2_normalise(vectors[rows])
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
