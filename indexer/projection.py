"""The 2-D map of a store: fitted, kept up to date and measured, as a named projection.

:func:`compute_map` fits a map of every embedded track and saves it with what it was fitted on;
:func:`update_map` places tracks indexed since into it, or fits it anew when that is due. The
pieces live in :mod:`indexer.mapping` (``fit``, ``placement``, ``quality``, ``clusters``,
``model``): import them from there (``fit`` is importable from here too). The method, its
parameters, package versions, the time taken and the map's measured quality (trustworthiness, kNN
preservation, category agreement, hubness) are recorded with the projection.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from store import WritableStore, genre_keys

from .mapping.clusters import assign_clusters, clusters
from .mapping.fit import fit
from .mapping.model import load_model, save_model
from .mapping.placement import place
from .mapping.quality import hubness, map_quality

__all__ = ["RECOMPUTE_SHARE", "compute_map", "fit", "update_map"]

logger = logging.getLogger(__name__)

RECOMPUTE_SHARE = 0.2
"""``update_map`` places new tracks into the existing map while they are at most this share of
the library; beyond it (and on request) the map is recomputed."""


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
    if cats is not None and category == "genre":  # spellings of one genre are one category (store.genres)
        codes, spellings = pd.factorize(cats)  # one key per distinct spelling, not per track
        cats = genre_keys([*spellings, None])[codes]  # code -1 (no genre) → the last: None
    params["quality"] = {**map_quality(vectors, xy, cats, seed=seed), "category": category}
    params["placed_since_fit"] = 0
    if len(ids):
        params["hubness"] = hubness(store.index, ids, vectors, seed=seed)
    labels, centroids = clusters(vectors, seed) if len(ids) else (np.zeros(0, np.int32), np.zeros((0, 0)))
    params["clusters"] = len(centroids)
    store.write_projection(name, ids, xy, method=str(params["method"]), params=params, clusters=labels)
    save_model(store, name, {**model, "centroids": centroids} if len(ids) else {})
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
    model = load_model(store, name) if info else None
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
