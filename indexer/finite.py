"""The one check every engine runs before an embedding becomes a stored track: all of it is finite.

A model can give NaN or infinity: a damaged checkpoint, or a kernel bug in reduced precision (MAEST
in bf16 on CPUs with AMX gave NaN vectors for clips shorter than about a second, issue #29). Such a
vector is worse than none: it matches nothing, and FAISS's consistency check cannot compare it. So
the file becomes a recorded failure (stage ``embed``, the reason below) and the run goes on:
:meth:`indexer.run.IndexRun.add`, which every engine's tracks go through (both local paths, in the
workers or the main process, and ``ingest`` of Ray shards, also those written before this check),
calls :func:`check_record`; the Ray actors (:mod:`indexer.distributed`) call :func:`check_finite`
on the worker side too, so a shard never holds such a vector. The store refuses such a vector too
(:class:`store.NonFiniteVector`), as the last line of defence.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from store import ModelInfo, TrackRecord, nonfinite_parts

from .embedders.base import Embedding
from .errors import FileFailure


def check_finite(embedding: Embedding, info: ModelInfo | None = None) -> Embedding:
    """Return ``embedding`` if all of it is finite.

    Raises
    ------
    FileFailure
        Stage ``embed``, naming what is not finite and, for a model with a precision setting
        (``info.extra["options"]["precision"]``), what to try.
    """
    _check(embedding.vector, embedding.windows, embedding.styles,
           info.extra.get("options") if info is not None else None)
    return embedding


def check_record(record: TrackRecord, options: Mapping[str, object] | None = None) -> None:
    """:func:`check_finite` for a track about to be written (``options``: the model's options,
    ``info.extra["options"]``, as the run records them).

    Raises
    ------
    FileFailure
        As :func:`check_finite`.
    """
    _check(record.vector, record.windows, record.styles, options)


def _check(vector: np.ndarray, windows: np.ndarray | None, styles: Mapping[str, float] | None,
           options: object) -> None:
    parts = nonfinite_parts(vector, windows, styles)
    if not parts:
        return
    values = [np.asarray(vector, np.float32).ravel()]
    if windows is not None:
        values.append(np.asarray(windows, np.float32).ravel())
    if styles:
        values.append(np.fromiter(styles.values(), np.float32, len(styles)))
    kind = "NaN" if any(np.isnan(v).any() for v in values) else "infinite"
    precision = options.get("precision") if isinstance(options, dict) else None
    if precision in ("bf16", "fp16"):
        hint = f" at --precision {precision}; index it again with --precision fp32"
    elif precision is not None:
        hint = f" at --precision {precision}; the model's weights may be damaged"
    else:
        hint = ""
    raise FileFailure("embed", f"the model gave a non-finite ({kind}) {', '.join(parts)} for this file{hint}. "
                      "Nothing of it was stored")
