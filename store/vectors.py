"""FAISS: the similarity accelerator, always rebuildable from DuckDB.

Vectors are L2-normalised, so inner product equals cosine similarity. FAISS ids are
track ids (``add_with_ids``), never row positions. The index type follows size: exact
flat while it meets the latency goal, then HNSW with efSearch tuned at build for
recall@10 ≥ 0.97 (measured, recorded), and IVF-PQ once the vectors would not fit one machine's
memory comfortably (codes of d/8 bytes; the best 16 × k re-ranked with 8-bit scalar-quantised
vectors; nprobe tuned at build the same way). The index file is written atomically (temp file +
rename) beside a JSON sidecar recording what it was built from: ``vectors_generation``,
``vectors_rewrites``, the model and dimension, the count and a checksum of the track ids.
On open, any mismatch (or an unreadable file) means "rebuild from DuckDB"; only additions
since the build mean "add the new vectors" (:mod:`store.freshness` decides, and says which).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from .errors import StoreError
from .faults import fault_point
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


def nonfinite_parts(vector: np.ndarray, windows: np.ndarray | None = None,
                    styles: Mapping[str, float] | None = None) -> list[str]:
    """What of one track's embedding is not finite, in words (empty when all of it is): the
    indexer's failure reason (``indexer.finite``) and the writer's refusal say it alike.

    Parameters
    ----------
    vector : ndarray, shape (d,)
    windows : ndarray, shape (n_windows, d), optional
    styles : mapping of str to float, optional
    """
    parts = []
    if not np.isfinite(np.asarray(vector, np.float32)).all():
        parts.append("track vector")
    if windows is not None and np.size(windows):
        rows = np.asarray(windows, np.float32)
        bad = int((~np.isfinite(rows.reshape(rows.shape[0], -1))).any(axis=1).sum())
        if bad:
            parts.append(f"{bad} of {rows.shape[0]} window vectors")
    if styles and not np.isfinite(np.fromiter(styles.values(), np.float64, len(styles))).all():
        parts.append("style activations")
    return parts


FLAT_MAX_FLOATS = 5_000_000
"""Exact (flat) search while tracks × dimension stays under this: about 2 ms per query on 2 cores
(flat search reads every vector: ~0.4 ns per float here; 6,500 tracks at 768-d, 2,200 at 2304-d).
Above it, HNSW. Set from ``benchmarks/bench_store.py``."""

HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
EF_SEARCH_CANDIDATES = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
RECALL_TARGET = 0.97
"""The smallest efSearch reaching this recall@10 (measured at build, tracks as queries) is kept."""
RECALL_QUERIES = 200


HNSW_MAX_FLOATS = 3_000_000_000
"""HNSW keeps every vector as float16 plus its graph (~1.8 kB a track at 768-d, ~4.9 kB at 2304-d;
indexes built before 2026-11-29 keep float32, ~3.3 and ~9.5 kB, and still load): above 6 GB of
vectors (3.9M tracks at 768-d, 1.3M at 2304-d), IVF-PQ (~0.9 kB and ~2.6 kB)."""

KINDS = ("auto", "flat", "hnsw", "ivfpq")
NPROBE_CANDIDATES = (4, 8, 16, 32, 64, 128, 256, 512, 1024)
IVFPQ_REFINE = 16
"""IVF-PQ asks its lists for ``IVFPQ_REFINE × k`` candidates and re-ranks them with 8-bit vectors
(more, up to ``IVFPQ_REFINE_MAX × k``, when the build's recall check needs it)."""
IVFPQ_REFINE_MAX = 128
IVFPQ_TRAIN_PER_LIST = 40
"""Training sample: this many vectors per inverted list (FAISS warns below 39)."""
IVFPQ_KMEANS_ITERATIONS = 10
"""k-means iterations for the lists (FAISS's default is 25; the lists' quality barely moves after
10, and training is most of the build: 160k vectors × 4,096 lists at 1M tracks)."""


def choose_kind(n: int, d: int) -> str:
    """``flat`` (exact) while it meets the latency goal, ``hnsw`` while the vectors fit memory
    comfortably, else ``ivfpq``."""
    if n * d <= FLAT_MAX_FLOATS:
        return "flat"
    return "hnsw" if n * d <= HNSW_MAX_FLOATS else "ivfpq"


IVFPQ_MIN_VECTORS = 10_000
"""Below this, IVF-PQ is not built even when asked (its codebooks need thousands of vectors to
train, and exact search is fast there): the size rule's pick instead."""


def effective_kind(asked: str, n: int, d: int) -> str:
    """The index built for ``asked`` (``auto`` or a kind) over ``n`` vectors of ``d`` dimensions."""
    if asked not in KINDS:
        raise ValueError(f"unknown index kind {asked!r}")
    if asked == "auto" or (asked == "ivfpq" and n < IVFPQ_MIN_VECTORS):
        kind = choose_kind(n, d)
        return "hnsw" if kind == "ivfpq" and n < IVFPQ_MIN_VECTORS else kind
    return asked


def ivfpq_shape(n: int, d: int) -> tuple[int, int]:
    """(nlist, m) for ``n`` vectors of ``d`` dimensions: about 4·√n lists (a power of two, 16 to
    65,536, at least 39 training vectors each) and one 8-bit code per 8 dimensions (fewer when d is
    not a multiple of 8: the largest divisor of d at most d/8)."""
    nlist = 1 << max(4, round(np.log2(max(1.0, 4.0 * np.sqrt(max(n, 1))))))
    while nlist > 16 and nlist * 39 > n:
        nlist //= 2
    nlist = min(nlist, 65_536)
    m = max(k for k in range(1, max(1, d // 8) + 1) if d % k == 0)
    return nlist, m


def ids_checksum(ids: np.ndarray) -> str:
    """An order-independent checksum of a set of track ids (BLAKE2b of the sorted int64s)."""
    ordered = np.sort(np.asarray(ids, dtype=np.int64))
    return hashlib.blake2b(ordered.tobytes(), digest_size=12).hexdigest()


def index_ids(index: faiss.Index) -> np.ndarray:
    """The track ids an index holds."""
    return faiss.vector_to_array(faiss.downcast_index(index).id_map).astype(np.int64)  # type: ignore[attr-defined]


def build_index(ids: np.ndarray, vectors: np.ndarray, kind: str = "auto") -> tuple[faiss.Index, dict[str, Any]]:
    """An inner-product index over ``vectors`` (already L2-normalised), keyed by ``ids``.

    ``kind``: ``flat`` (exact), ``hnsw`` (efSearch tuned here to reach :data:`RECALL_TARGET`
    recall@10, measured against exact search), ``ivfpq`` (nprobe tuned the same way; the size
    rule's pick below :data:`IVFPQ_MIN_VECTORS`), or ``auto`` (:func:`choose_kind`).

    Parameters
    ----------
    ids : ndarray, shape (n,), int64
    vectors : ndarray, shape (n, d), float32, L2-normalised

    Returns
    -------
    index : faiss.Index (an ``IndexIDMap2``)
    params : dict
        What was built: ``type`` and, for HNSW, ``M``, ``efConstruction``, ``efSearch``,
        ``recall_at_10``, ``build_s`` (recorded in the manifest).
    """
    n, d = int(vectors.shape[0]), int(vectors.shape[1])
    kind = effective_kind(kind, n, d)
    started = time.perf_counter()
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if kind == "flat":
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(d))
        if n:
            index.add_with_ids(x, np.ascontiguousarray(ids, dtype=np.int64))
        return index, {"type": "flat", "metric": "inner_product", "exact": True}
    if kind == "ivfpq":
        return _build_ivfpq(ids, x, started)
    if kind != "hnsw":
        raise ValueError(f"unknown index kind {kind!r}")
    # The vectors kept as float16 beside the graph: half the memory of float32 (a 1M × 256-d map's
    # index 1.3 GB → 0.8 GB), scores within ~1e-3, recall unchanged (bench_store.py measures both).
    hnsw = faiss.IndexHNSWSQ(d, faiss.ScalarQuantizer.QT_fp16, HNSW_M,  # type: ignore[arg-type]
                            faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    index = faiss.IndexIDMap2(hnsw)
    index.train(x[:1])  # float16 needs no statistics; FAISS asks for the call
    index.add_with_ids(x, np.ascontiguousarray(ids, dtype=np.int64))
    build_s = time.perf_counter() - started
    ef, recall = tune_ef_search(index, x)
    return index, {"type": "hnsw", "metric": "inner_product", "exact": False, "storage": "fp16", "M": HNSW_M,
                   "efConstruction": HNSW_EF_CONSTRUCTION, "efSearch": ef, "recall_at_10": round(recall, 4),
                   "recall_queries": min(RECALL_QUERIES, n), "build_s": round(build_s, 2)}


def _build_ivfpq(ids: np.ndarray, x: np.ndarray, started: float) -> tuple[faiss.Index, dict[str, Any]]:
    n, d = x.shape
    nlist, m = ivfpq_shape(n, d)
    index = faiss.index_factory(d, f"IDMap2,IVF{nlist},PQ{m}x8,Refine(SQ8)", faiss.METRIC_INNER_PRODUCT)
    refine: Any = faiss.downcast_index(faiss.downcast_index(index).index)  # type: ignore[attr-defined]
    faiss.extract_index_ivf(refine.base_index).cp.niter = IVFPQ_KMEANS_ITERATIONS
    train_n = min(n, max(IVFPQ_TRAIN_PER_LIST * nlist, IVFPQ_MIN_VECTORS))  # PQ's 256 codes want ~10k too
    sample = x[np.sort(np.random.default_rng(0).choice(n, size=train_n, replace=False))] if train_n < n else x
    index.train(sample)
    for start in range(0, n, 100_000):  # in slices: FAISS's add makes a few copies of what it is given
        index.add_with_ids(x[start:start + 100_000], np.ascontiguousarray(ids[start:start + 100_000], np.int64))
    build_s = time.perf_counter() - started
    nprobe, recall = tune_nprobe(index, x)
    k_factor = float(refine.k_factor)
    return index, {"type": "ivfpq", "metric": "inner_product", "exact": False, "nlist": nlist, "m": m, "nbits": 8,
                   "refine": "SQ8", "k_factor": int(k_factor), "nprobe": nprobe, "train_n": int(train_n),
                   "bytes_per_vector": m + d, "recall_at_10": round(recall, 4),
                   "recall_queries": min(RECALL_QUERIES, n), "build_s": round(build_s, 2)}


def storage_kind(index: faiss.Index) -> str:
    """How an index keeps its vectors: ``float32`` (flat, older HNSW), ``float16`` (HNSW) or
    ``sq8`` (IVF-PQ's re-ranking vectors)."""
    inner: Any = faiss.downcast_index(faiss.downcast_index(index).index)  # type: ignore[attr-defined]
    if isinstance(inner, faiss.IndexRefine):
        return "sq8"
    if isinstance(inner, faiss.IndexHNSW):
        storage: Any = faiss.downcast_index(inner.storage)
        if isinstance(storage, faiss.IndexScalarQuantizer):
            return "float16" if storage.sq.qtype == faiss.ScalarQuantizer.QT_fp16 else "sq8"
    return "float32"


def ivf_parts(index: faiss.Index) -> tuple[Any, Any] | None:
    """(the refine wrapper, the IVF) of an IVF-PQ index, or None for other kinds."""
    refine: Any = faiss.downcast_index(faiss.downcast_index(index).index)  # type: ignore[attr-defined]
    if not isinstance(refine, faiss.IndexRefine):
        return None
    return refine, faiss.extract_index_ivf(refine.base_index)


def _recall_at_10(index: faiss.Index, vectors: np.ndarray, set_param: Any, candidates: tuple[int, ...],
                  seed: int = 0, plateau: bool = False) -> tuple[int, float]:
    """The first of ``candidates`` whose recall@10 on sampled tracks reaches :data:`RECALL_TARGET`
    (``set_param(value)`` applies it to the index), and that recall; else the last — or, with
    ``plateau``, the first after which recall stops rising (IVF-PQ's codes cap it: visiting more
    lists then costs time for nothing)."""
    n = len(vectors)
    k = min(10, n - 1)
    if k < 1:
        set_param(candidates[0])
        return candidates[0], 1.0
    rows = np.random.default_rng(seed).choice(n, size=min(RECALL_QUERIES, n), replace=False)
    queries = vectors[rows]
    ids = index_ids(index)
    own = ids[rows]
    # The queries are tracks of the index: each finds itself, which says nothing about recall, so
    # the top k+1 are asked for and the query's own id is left out of both lists.
    _, exact_rows = faiss.knn(queries, vectors, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
    truth = [[t for t in ids[r] if t != me][:k] for r, me in zip(exact_rows, own, strict=True)]
    recall, value = 0.0, candidates[0]
    previous: tuple[int, float] | None = None
    for value in candidates:
        set_param(value)
        _, found = index.search(queries, k + 1)
        recall = float(np.mean([len(set(t) & {f for f in row if f != me}) / k
                                for row, t, me in zip(found, truth, own, strict=True)]))
        if recall >= RECALL_TARGET:
            break
        if plateau and previous is not None and recall <= previous[1] + 0.002:
            set_param(previous[0])
            return previous
        previous = (value, recall)
    return value, recall


def tune_nprobe(index: faiss.Index, vectors: np.ndarray) -> tuple[int, float]:
    """Set the smallest nprobe (lists visited) whose recall@10 reaches :data:`RECALL_TARGET`, or
    where recall stops rising; when that is short of the target, re-rank more candidates
    (``k_factor`` ×2, up to :data:`IVFPQ_REFINE_MAX`) and tune again. Returns (nprobe, recall);
    the index keeps the chosen nprobe and ``k_factor``."""
    parts = ivf_parts(index)
    assert parts is not None
    refine, ivf = parts
    usable = tuple(p for p in NPROBE_CANDIDATES if p <= ivf.nlist) or (int(ivf.nlist),)

    def set_nprobe(value: int) -> None:
        ivf.nprobe = int(value)

    refine.k_factor = IVFPQ_REFINE
    if len(vectors) == 0:
        set_nprobe(usable[0])
        return usable[0], 1.0
    best: tuple[float, int, float] | None = None  # (k_factor, nprobe, recall)
    factor = IVFPQ_REFINE
    while factor <= IVFPQ_REFINE_MAX:
        refine.k_factor = factor
        nprobe, recall = _recall_at_10(index, vectors, set_nprobe, usable, plateau=True)
        if best is None or recall > best[2] + 0.002:
            best = (factor, nprobe, recall)
        if recall >= RECALL_TARGET:
            break
        factor *= 2
    assert best is not None
    refine.k_factor, ivf.nprobe = best[0], best[1]
    return best[1], best[2]


def tune_ef_search(index: faiss.Index, vectors: np.ndarray, seed: int = 0) -> tuple[int, float]:
    """Set the smallest efSearch whose recall@10 on sampled tracks reaches :data:`RECALL_TARGET`;
    returns (efSearch, its recall)."""
    hnsw: Any = faiss.downcast_index(faiss.downcast_index(index).index)  # type: ignore[attr-defined]
    if len(vectors) == 0:
        return int(hnsw.hnsw.efSearch), 1.0
    k = min(10, len(vectors) - 1)

    def set_ef(value: int) -> None:
        hnsw.hnsw.efSearch = max(value, k + 1)

    _, recall = _recall_at_10(index, vectors, set_ef, EF_SEARCH_CANDIDATES, seed)
    return int(hnsw.hnsw.efSearch), recall


def add_to_index(index: faiss.Index, ids: np.ndarray, vectors: np.ndarray) -> None:
    """Add new vectors to an existing index (every kind supports it; HNSW keeps its efSearch,
    IVF-PQ its trained lists and codebooks)."""
    if len(ids):
        index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.ascontiguousarray(ids, dtype=np.int64))


def save_index(folder: Path, index: faiss.Index, state: dict[str, Any]) -> None:
    """Write the index and its sidecar (``state``: generation, rewrites, model, checksum, params) atomically."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{INDEX_NAME}.", suffix=".tmp")
    os.close(fd)
    try:
        faiss.write_index(index, tmp)
        with open(tmp, "rb+") as fh:  # on disk before the rename: a power cut never leaves an empty file
            os.fsync(fh.fileno())
        fault_point("faiss-write")
        os.replace(tmp, folder / INDEX_NAME)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, (RuntimeError, OSError)):  # FAISS reports a full disk as a RuntimeError
            why = "no space left on device" if "no space left" in str(exc).lower() else str(exc).strip()
            raise StoreError(f"could not write the FAISS index in {folder}: {why}. It is rebuilt from DuckDB on "
                             "the next open.") from exc
        raise
    fault_point("faiss-sidecar")
    write_json_atomic(folder / SIDECAR_NAME, {**state, "ntotal": int(index.ntotal),
                                              "ids_checksum": ids_checksum(index_ids(index))})


def read_sidecar(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / SIDECAR_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def open_index(folder: Path, expect: dict[str, Any]) -> tuple[faiss.Index | None, str | None]:
    """(the saved index, None) if its sidecar matches ``expect`` (generation, model, dimension,
    count and the checksum of the ids DuckDB holds) and the file itself holds exactly those ids;
    else (None, why not: missing, stale, corrupt, other ids), for the caller to say once what it
    does about it. (None, None): a new store, with neither file yet."""
    side = read_sidecar(folder)
    if side is None or not (folder / INDEX_NAME).is_file():
        if side is None and not (folder / INDEX_NAME).exists():
            return None, None
        return None, f"its {SIDECAR_NAME} is missing or unreadable" if side is None else "its file is missing"
    for key, value in expect.items():
        if side.get(key) != value:
            return None, f"it was built from other vectors ({key}: {side.get(key)!r}, DuckDB: {value!r})"
    try:
        index = faiss.read_index(str(folder / INDEX_NAME))
    except (RuntimeError, ValueError, MemoryError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, f"its file is corrupt ({first})"
    if int(index.ntotal) != int(expect.get("ntotal", index.ntotal)) \
            or int(index.d) != int(expect.get("dimension", index.d)):
        return None, f"its file holds {index.ntotal} × {index.d} vectors, not what its {SIDECAR_NAME} says"
    try:
        checksum = ids_checksum(index_ids(index))
    except (RuntimeError, AttributeError):
        return None, "its file is no index of track ids"
    if checksum != expect.get("ids_checksum", checksum):
        return None, "it holds other track ids than DuckDB"
    apply_params(index, side.get("params") or {})
    return index, None


def apply_params(index: faiss.Index, params: dict[str, Any]) -> None:
    """Set the search-time parameters recorded at build (HNSW's efSearch, IVF-PQ's nprobe and
    re-ranking factor): they are not part of the saved file."""
    inner: Any = faiss.downcast_index(faiss.downcast_index(index).index)  # type: ignore[attr-defined]
    if isinstance(inner, faiss.IndexHNSW) and params.get("efSearch"):
        inner.hnsw.efSearch = int(params["efSearch"])
    parts = ivf_parts(index)
    if parts is not None:
        refine, ivf = parts
        ivf.nprobe = int(params.get("nprobe") or ivf.nprobe)
        refine.k_factor = float(params.get("k_factor") or IVFPQ_REFINE)
