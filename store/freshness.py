"""Is the FAISS file the vectors DuckDB holds? Load it if so, extend it or rebuild it if not.

DuckDB is the source of truth; ``vectors.faiss`` is an accelerator that may be stale (a writer
killed before saving it), foreign (copied from another store) or of another type than asked. Its
sidecar (``vectors.json``, :mod:`store.vectors`) records what it was built from:
``vectors_generation`` (bumped by every write to ``embeddings``), ``vectors_rewrites`` (bumped when a
stored vector is replaced or removed), the model, the dimension, the id count and checksum.
:func:`load_or_build` then picks, cheapest first:

1. **load** the file: every key matches DuckDB and a sample of its vectors equals DuckDB's;
2. **extend** it: nothing was rewritten since it was saved, only added (its ids are a subset of
   DuckDB's, same type for the new size): add the new vectors;
3. **rebuild** it from all vectors (:func:`store.vectors.build_index`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import duckdb
import faiss
import numpy as np

from .errors import StoreError
from .manifest import ModelInfo
from .search import vectors_of
from .vectors import (
    KINDS,
    add_to_index,
    build_index,
    effective_kind,
    ids_checksum,
    index_ids,
    load_index,
    read_sidecar,
    save_index,
    storage_kind,
)

logger = logging.getLogger(__name__)

AGREE_SAMPLE = 16
"""Vectors compared between the FAISS file and DuckDB before trusting the file."""


def index_state(cur: duckdb.DuckDBPyConnection, model: ModelInfo) -> tuple[dict[str, Any], np.ndarray]:
    """What the FAISS index must match (the sidecar's keys), and the ids DuckDB holds."""
    ids = np.asarray(cur.execute("SELECT track_id FROM embeddings").fetchnumpy()["track_id"], np.int64)
    meta = dict(cur.execute("SELECT key, value FROM meta").fetchall())
    state = {"generation": int(meta.get("vectors_generation", 0)), "rewrites": int(meta.get("vectors_rewrites", 0)),
             "model": model.id, "dimension": int(model.dimension), "ntotal": len(ids),
             "ids_checksum": ids_checksum(ids)}
    return state, ids


def all_vectors(cur: duckdb.DuckDBPyConnection, dimension: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids (n,) int64, vectors (n, d) float32) of every track with a vector, by id."""
    table = cur.sql("SELECT track_id, vector FROM embeddings ORDER BY track_id").to_arrow_table()
    ids = table.column("track_id").to_numpy().astype(np.int64)
    if len(ids) == 0:
        return ids, np.zeros((0, dimension), np.float32)
    flat = table.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return ids, np.asarray(flat, np.float32).reshape(-1, dimension)


def stored_vectors(cur: duckdb.DuckDBPyConnection, ids: np.ndarray, dimension: int) -> np.ndarray:
    """DuckDB's vectors of ``ids`` (all of which must have one), in the order of ``ids``."""
    if not len(ids):
        return np.zeros((0, dimension), np.float32)
    table = cur.sql("SELECT track_id, vector FROM embeddings WHERE track_id IN (SELECT unnest(?::BIGINT[]))",
                    params=[ids.tolist()]).to_arrow_table()
    got = table.column("track_id").to_numpy().astype(np.int64)
    flat = table.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    vectors = np.asarray(flat, np.float32).reshape(-1, dimension)
    order = np.argsort(got)
    return vectors[order[np.searchsorted(got[order], ids)]]


def kind_for(asked: str, n: int, dimension: int) -> str:
    """The index type to build for ``n`` vectors when ``asked`` is ``auto``, ``flat``, ``hnsw`` or ``ivfpq``."""
    if asked not in KINDS:
        raise StoreError(f"index type {asked!r}: choose one of {', '.join(KINDS)}")
    return effective_kind(asked, n, dimension)


def vectors_agree(cur: duckdb.DuckDBPyConnection, index: faiss.Index, ids: np.ndarray, dimension: int,
                  folder: Path) -> bool:
    """Spot check: a few vectors of the index equal DuckDB's (a file copied from another store
    with the same ids, or written over, fails it). IVF-PQ keeps 8-bit vectors: equal there
    means a cosine over 0.99 (HNSW's float16 ones: over 0.9999)."""
    if not len(ids):
        return True
    picked = np.random.default_rng(len(ids)).choice(ids, size=min(AGREE_SAMPLE, len(ids)), replace=False)
    try:
        ours = vectors_of(index, picked)
    except RuntimeError:
        return False
    theirs = stored_vectors(cur, picked, dimension)
    kind = storage_kind(index)
    if kind == "float32":
        agree = bool(np.allclose(ours, theirs, atol=1e-5))
    else:  # 8-bit vectors: a cosine over 0.99; float16: over 0.9999 (~1e-7 off in fact)
        agree = bool(np.all(np.sum(ours * theirs, axis=1) > (0.99 if kind == "sq8" else 0.9999)))
    if not agree:
        logger.warning("FAISS index in %s holds other vectors than DuckDB; rebuilding", folder)
    return agree


def load_or_build(folder: Path, cur: duckdb.DuckDBPyConnection, model: ModelInfo, asked: str, *,
                  save: bool) -> tuple[faiss.Index, dict[str, Any]]:
    """The index of the store in ``folder`` (read through ``cur``), loaded, extended or rebuilt
    (see the module docstring), and its parameters; saved when ``save`` and it changed."""
    d = int(model.dimension)
    state, db_ids = index_state(cur, model)
    side = read_sidecar(folder) or {}
    built_kind = (side.get("params") or {}).get("type", "flat")
    index = load_index(folder, state)
    as_asked = asked == "auto" or built_kind == kind_for(asked, len(db_ids), d)
    if index is not None and as_asked and vectors_agree(cur, index, db_ids, d, folder):
        return index, dict(side.get("params") or {"type": "flat"})
    index = None
    params: dict[str, Any] | None = None
    same_base = {k: state[k] for k in ("rewrites", "model", "dimension")}
    if side and all(side.get(k) == v for k, v in same_base.items()):
        old = load_index(folder, {**same_base, "ids_checksum": side.get("ids_checksum"), "ntotal": side.get("ntotal")})
        if old is not None and vectors_agree(cur, old, index_ids(old), d, folder):
            have = index_ids(old)
            if np.isin(have, db_ids).all() and kind_for(asked, len(db_ids), d) == built_kind:
                new_ids = np.setdiff1d(db_ids, have)
                add_to_index(old, new_ids, stored_vectors(cur, new_ids, d))
                index = old
                params = {**side.get("params", {}),
                          "added_since_build": int((side.get("params") or {}).get("added_since_build", 0))
                          + len(new_ids)}
                logger.info("FAISS index: added %d new vectors", len(new_ids))
    if index is None or params is None:
        ids, vectors = all_vectors(cur, d)
        index, params = build_index(ids, vectors, kind_for(asked, len(ids), d))
        logger.info("FAISS index built: %s over %d vectors", params["type"], len(ids))
    if save:
        save_index(folder, index, {**{k: state[k] for k in ("generation", "rewrites", "model", "dimension")},
                                   "params": params})
    return index, params
