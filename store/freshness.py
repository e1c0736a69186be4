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
    open_index,
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


def vectors_agree(cur: duckdb.DuckDBPyConnection, index: faiss.Index, ids: np.ndarray, dimension: int) -> bool:
    """Spot check: a few vectors of the index equal DuckDB's (a file copied from another store
    with the same ids, or written over, fails it). IVF-PQ keeps 8-bit vectors: equal there
    means a cosine over 0.99 (HNSW's float16 ones: over 0.9999).

    A vector DuckDB holds as NaN or infinity (saved by a musicmap before 2026-12, which let a
    model's NaN through) is left out of the comparison: NaN equals nothing, not even itself, so
    counting it would rebuild the index on every open, to the same result. Such tracks are
    embedded again by the next index run (:meth:`store.writer.WritableStore.create`)."""
    if not len(ids):
        return True
    picked = np.random.default_rng(len(ids)).choice(ids, size=min(AGREE_SAMPLE, len(ids)), replace=False)
    try:
        ours = vectors_of(index, picked)
    except RuntimeError:
        return False
    theirs = stored_vectors(cur, picked, dimension)
    finite = np.isfinite(theirs).all(axis=1)
    if not finite.all():
        logger.debug("%d of the %d vectors compared are not finite in DuckDB; left out", int((~finite).sum()),
                     len(picked))
        ours, theirs = ours[finite], theirs[finite]
    kind = storage_kind(index)
    if kind == "float32":
        return bool(np.allclose(ours, theirs, atol=1e-5))
    # 8-bit vectors: a cosine over 0.99; float16: over 0.9999 (~1e-7 off in fact)
    return bool(np.all(np.sum(ours * theirs, axis=1) > (0.99 if kind == "sq8" else 0.9999)))


def load_or_build(folder: Path, cur: duckdb.DuckDBPyConnection, model: ModelInfo, asked: str, *,
                  save: bool) -> tuple[faiss.Index, dict[str, Any]]:
    """The index of the store in ``folder`` (read through ``cur``), loaded, extended or rebuilt
    (see the module docstring), and its parameters; saved when ``save`` and it changed.

    What it did is logged once, and only what happened: nothing when the file is loaded; "added N
    new vectors" when it is extended; when it is rebuilt, why (at INFO for the ordinary reasons,
    such as vectors replaced since the build; at WARNING for a damaged or foreign file).
    """
    d = int(model.dimension)
    state, db_ids = index_state(cur, model)
    side = read_sidecar(folder) or {}
    side_params = dict(side.get("params") or {"type": "flat"})
    built_kind = side_params.get("type", "flat")
    kind = kind_for(asked, len(db_ids), d)
    index: faiss.Index | None = None
    params: dict[str, Any] | None = None
    why: str | None = None  # why it is rebuilt (None: a new store, built for the first time)
    damaged = False
    base = ("rewrites", "model", "dimension")
    if all(side.get(k) == v for k, v in state.items()) or not side:  # as saved, or no record of it
        index, why = open_index(folder, state)
        damaged = why is not None
        if index is not None:
            if not vectors_agree(cur, index, db_ids, d):
                why, damaged = "it holds other vectors than DuckDB", True
            elif asked == "auto" or built_kind == kind:
                return index, side_params
            else:
                why = f"a {kind} index was asked for, it is {built_kind}"
            index = None
    elif all(side.get(k) == state[k] for k in base):  # only additions since it was saved: extend it
        old, why = open_index(folder, {**{k: state[k] for k in base}, "ids_checksum": side.get("ids_checksum"),
                                       "ntotal": side.get("ntotal")})
        damaged = why is not None
        if old is not None:
            have = index_ids(old)
            if not vectors_agree(cur, old, have, d):
                why, damaged = "it holds other vectors than DuckDB", True
            elif not np.isin(have, db_ids).all():
                why, damaged = "it holds tracks DuckDB does not", True
            elif kind != built_kind:
                why = f"{len(db_ids)} vectors call for a {kind} index, it is {built_kind}"
            else:
                new_ids = np.setdiff1d(db_ids, have)
                add_to_index(old, new_ids, stored_vectors(cur, new_ids, d))
                index = old
                params = {**side_params, "added_since_build": int(side_params.get("added_since_build", 0))
                          + len(new_ids)}
                logger.info("FAISS index: added %d new vectors", len(new_ids))
    elif side.get("model") != state["model"] or side.get("dimension") != state["dimension"]:
        why, damaged = (f"it was built for {side.get('model')!r} ({side.get('dimension')}-d), the store holds "
                        f"{state['model']!r} ({state['dimension']}-d)"), True
    else:
        why = "stored vectors were replaced or removed since it was built"
    if index is None or params is None:
        ids, vectors = all_vectors(cur, d)
        index, params = build_index(ids, vectors, kind_for(asked, len(ids), d))
        if why is None:
            logger.info("FAISS index built: %s over %d vectors", params["type"], len(ids))
        else:
            logger.log(logging.WARNING if damaged else logging.INFO, "FAISS index in %s rebuilt from DuckDB (%s): "
                       "%s over %d vectors", folder, why, params["type"], len(ids))
    if save:
        save_index(folder, index, {**{k: state[k] for k in ("generation", "rewrites", "model", "dimension")},
                                   "params": params})
    return index, params
