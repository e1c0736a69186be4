"""FAISS: the similarity accelerator, always rebuildable from DuckDB.

Vectors are L2-normalised, so inner product equals cosine similarity. FAISS ids are
track ids (``add_with_ids``), never row positions. The index file is written
atomically (temp file + rename) beside a small JSON sidecar recording the
``vectors_generation`` it was built from; a mismatch means "rebuild".
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

import faiss
import numpy as np

from .manifest import write_json_atomic

logger = logging.getLogger(__name__)

INDEX_NAME = "vectors.faiss"
SIDECAR_NAME = "vectors.json"


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Return float32 rows scaled to unit L2 norm (zero rows stay zero).

    Parameters
    ----------
    vectors : ndarray, shape (n, d) or (d,)
    """
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.asarray(v / np.where(norms > 0, norms, 1.0), dtype=np.float32)


def build_index(ids: np.ndarray, vectors: np.ndarray) -> faiss.Index:
    """Exact inner-product index over ``vectors`` (already L2-normalised), keyed by ``ids``.

    Parameters
    ----------
    ids : ndarray, shape (n,), int64
    vectors : ndarray, shape (n, d), float32, L2-normalised
    """
    d = int(vectors.shape[1])
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(d))
    if len(ids):
        index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32),
                           np.ascontiguousarray(ids, dtype=np.int64))
    return index


def save_index(folder: Path, index: faiss.Index, generation: int) -> None:
    """Write the index and its sidecar atomically."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{INDEX_NAME}.", suffix=".tmp")
    os.close(fd)
    try:
        faiss.write_index(index, tmp)
        os.replace(tmp, folder / INDEX_NAME)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    write_json_atomic(folder / SIDECAR_NAME,
                      {"generation": generation, "ntotal": int(index.ntotal), "type": "flat-ip"})


def load_index(folder: Path, generation: int, expected: int) -> faiss.Index | None:
    """Load the saved index if it matches ``generation`` and has ``expected`` vectors, else None."""
    try:
        side = json.loads((folder / SIDECAR_NAME).read_text(encoding="utf-8"))
        if int(side.get("generation", -1)) != generation:
            return None
        index = faiss.read_index(str(folder / INDEX_NAME))
    except (OSError, ValueError, RuntimeError) as exc:
        logger.debug("FAISS index in %s not usable (%s); it will be rebuilt", folder, exc)
        return None
    if int(index.ntotal) != expected:
        logger.warning("FAISS index in %s holds %d vectors, DuckDB %d: rebuilding",
                       folder, index.ntotal, expected)
        return None
    return index


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` by cosine. Returns (scores, ids), each shape (n_queries, k); missing ids are -1."""
    q = l2_normalise(np.atleast_2d(queries))
    k = max(1, min(k, int(index.ntotal)))
    scores, ids = index.search(q, k)
    return scores, ids
