"""SQL over a store: read-only and safe by construction, with similarity inside SQL.

What a query sees (temporary views on its own connection, over the tables of ``library.duckdb``):

=================  =====================================================================
``tracks``         one row per file: id, path, title, artist, album, album_artist, genre,
                   year, track_number, duration, format, tag_source, extra, added_at, ...
``embeddings``     track_id, n_windows (the vectors themselves: ``vectors``)
``vectors``        track_id, vector (``FLOAT[d]``, L2-normalised)
``styles``         track_id, label, activation (MAEST's Discogs styles)
``sound_tags``     track_id, tagger, label, activation (MusiCNN's MTT and MSD tags, every track)
``projections``    name, track_id, x, y, cluster (the maps; cluster: k-means of the vectors)
``failures``       path, stage, error, failed_at
``windows``        track_id, window_index, start_s, vector (MAEST, per window)
``runs``           what each index run did
=================  =====================================================================

Functions:

- ``similarity(id, seed)``: cosine similarity of track ``id`` to track ``seed`` (vectorised:
  one matrix-vector product per distinct seed, then a lookup per row), e.g.
  ``SELECT title, similarity(id, 42) AS s FROM tracks WHERE genre = 'Jazz' ORDER BY s DESC LIMIT 20``.
- ``similar_to(seed, k)``: a table of the ``k`` tracks most like ``seed`` (seed excluded), with
  every ``tracks`` column and ``score``: ``SELECT title, score FROM similar_to(42, 10)``.

Limits, each refused with a message naming it: one statement per query; only ``SELECT`` (with
``WITH``, ``DESCRIBE``, ``SHOW``, ``SUMMARIZE``) and ``EXPLAIN``; the connection is read-only,
``enable_external_access = false`` (no files, ``ATTACH``, ``COPY``, ``INSTALL``/``LOAD``), a
memory limit and locked configuration (no ``SET``); a time limit (the query is interrupted)
and a row cap.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import duckdb
import duckdb.func as udf
import faiss
import numpy as np
import pyarrow as pa

from .errors import InvalidQuery

ALLOWED_STATEMENTS = {"SELECT", "EXPLAIN"}

#: Temporary views shadowing tables of the database ``{db}`` (by name: temp comes first).
VIEWS = {
    "embeddings": "SELECT track_id, n_windows FROM {db}.main.embeddings",
    "vectors": "SELECT track_id, vector FROM {db}.main.embeddings",
}

SIMILAR_TO = ("CREATE OR REPLACE TEMP MACRO similar_to(seed, k) AS TABLE "
              "SELECT t.* EXCLUDE (path_bytes), similarity(t.id, seed) AS score FROM {db}.main.tracks t "
              "WHERE t.id <> seed AND similarity(t.id, seed) IS NOT NULL ORDER BY score DESC, t.id LIMIT k")


def database(con: duckdb.DuckDBPyConnection) -> str:
    """The store database's catalog name, quoted (``"library"``)."""
    row = con.execute("SELECT current_database()").fetchone()
    assert row is not None
    return '"' + str(row[0]).replace('"', '""') + '"'


def check_query(con: duckdb.DuckDBPyConnection, query: str) -> None:
    """Refuse anything but one read-only statement, with a message naming the reason."""
    if not query.strip():
        raise InvalidQuery("empty SQL query")
    try:
        statements = con.extract_statements(query)
    except duckdb.Error as exc:
        raise InvalidQuery(f"SQL error: {exc}") from exc
    if len(statements) != 1:
        raise InvalidQuery(f"one SQL statement at a time, got {len(statements)} (refused: several statements)")
    kind = statements[0].type.name
    if kind not in ALLOWED_STATEMENTS:
        raise InvalidQuery(f"{kind} statements are refused: SQL over a store is read-only "
                         "(SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE and EXPLAIN are allowed)")


def check_where(con: duckdb.DuckDBPyConnection, where: str) -> str:
    """A filter expression as the body of ``SELECT id FROM tracks WHERE (...)``; refused if it is
    not one expression (a ``)`` closing early, a ``;``, a sub-statement)."""
    query = f"SELECT id FROM {database(con)}.main.tracks WHERE ({where})"
    try:
        statements = con.extract_statements(query)
    except duckdb.Error as exc:
        raise InvalidQuery(f"where {where!r}: {exc}") from exc
    if len(statements) != 1 or statements[0].type.name != "SELECT" or where.count("(") != where.count(")"):
        raise InvalidQuery(f"where {where!r}: give one boolean expression over tracks' columns, "
                         "e.g. \"genre = 'Jazz' AND year >= 1970\"")
    return query


DECODE_ROWS = 65_536
"""IVF-PQ stores keep 8-bit vectors: ``similarity()`` decodes this many at a time (~200 MB at 768-d)."""


class Similarity:
    """``similarity(id, seed)`` for DuckDB: cosine similarity from the store's FAISS vectors.

    Holds a view of the index's vectors (no copy), the ids sorted for a vectorised lookup, and the
    score vectors of the last few seeds (one ``n × d`` product each).
    """

    def __init__(self, index: faiss.Index | Callable[[], faiss.Index], cache: int = 16) -> None:
        self._source = index
        self._bound = False
        self._scores: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache = cache

    def _bind(self) -> None:
        """Take the index's vectors and ids: on the first call, so a session that never asks for a
        similarity never loads the index (a 1M-track HNSW index is ~0.8 GB)."""
        if self._bound:
            return
        index = self._source() if callable(self._source) else self._source
        outer: Any = faiss.downcast_index(index)
        inner: Any = faiss.downcast_index(outer.index)
        self._index = index  # keeps the memory behind the views alive
        self._coded: Any = None
        storage: Any = None if isinstance(inner, (faiss.IndexFlat, faiss.IndexRefine)) \
            else faiss.downcast_index(inner.storage)
        if isinstance(inner, faiss.IndexRefine) or isinstance(storage, faiss.IndexScalarQuantizer):
            # IVF-PQ's 8-bit vectors, HNSW's float16 ones: decoded a slice at a time
            self._coded = faiss.downcast_index(inner.refine_index) if storage is None else storage
            n, d = int(self._coded.ntotal), int(self._coded.d)
            size = int(self._coded.code_size)
            self._codes = faiss.rev_swig_ptr(self._coded.codes.data(), n * size).reshape(n, size) if n \
                else np.zeros((0, size), np.uint8)
            self.matrix = np.zeros((0, d), np.float32)
        else:
            flat: Any = inner if isinstance(inner, faiss.IndexFlat) else storage
            n, d = int(flat.ntotal), int(flat.d)
            self.matrix = faiss.rev_swig_ptr(flat.get_xb(), n * d).reshape(n, d) if n else np.zeros((0, d), np.float32)
        ids = faiss.vector_to_array(outer.id_map).astype(np.int64)
        self._order = np.argsort(ids, kind="stable")
        self._sorted = ids[self._order]
        self._bound = True

    @property
    def bound_to(self) -> faiss.Index | None:
        """The index whose vectors this reads (None until the first call)."""
        return self._index if self._bound else None

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Row of each id in :attr:`matrix`, −1 where the id has no vector."""
        self._bind()
        pos = np.searchsorted(self._sorted, ids)
        pos = np.minimum(pos, max(len(self._sorted) - 1, 0))
        found = (len(self._sorted) > 0) & (self._sorted[pos] == ids) if len(self._sorted) else np.zeros(len(ids), bool)
        return np.where(found, self._order[pos] if len(self._order) else -1, -1)

    def scores(self, seed: int) -> np.ndarray:
        """Similarity of every row to ``seed``."""
        cached = self._scores.get(seed)
        if cached is not None:
            self._scores.move_to_end(seed)
            return cached
        row = int(self.rows(np.array([seed], np.int64))[0])
        if row < 0:
            raise ValueError(f"similarity(id, {seed}): track {seed} has no embedding (no such track, or not "
                             "indexed yet)")
        if self._coded is None:
            out = self.matrix @ self.matrix[row]
        else:
            query = self._coded.sa_decode(self._codes[row:row + 1])[0]
            out = np.concatenate([self._coded.sa_decode(self._codes[i:i + DECODE_ROWS]) @ query
                                  for i in range(0, len(self._codes), DECODE_ROWS)]) if len(self._codes) \
                else np.zeros(0, np.float32)
        self._scores[seed] = out
        if len(self._scores) > self._cache:
            self._scores.popitem(last=False)
        return out

    def __call__(self, ids: pa.Array, seeds: pa.Array) -> pa.Array:
        id_arr = np.asarray(ids.to_numpy(zero_copy_only=False), dtype=np.float64)
        seed_arr = np.asarray(seeds.to_numpy(zero_copy_only=False), dtype=np.float64)
        valid = np.isfinite(id_arr) & np.isfinite(seed_arr)  # NULLs arrive as NaN
        out = np.full(len(id_arr), np.nan)
        if valid.any():
            rows = self.rows(id_arr[valid].astype(np.int64))
            vals = np.full(len(rows), np.nan)
            seeds_valid = seed_arr[valid].astype(np.int64)
            for seed in np.unique(seeds_valid):
                mask = (seeds_valid == seed) & (rows >= 0)
                if mask.any():
                    vals[mask] = self.scores(int(seed))[rows[mask]]
            out[valid] = vals
        return pa.array(out, type=pa.float64(), mask=np.isnan(out))


class _Dispatch:
    """The ``similarity`` function DuckDB calls: DuckDB keeps scalar functions per database
    instance, which every connection to one file in this process shares, so the function is
    registered once and answers with the newest live :class:`Similarity` installed for that file."""

    def __init__(self) -> None:
        self.providers: list[weakref.ref[Similarity]] = []

    def add(self, fn: Similarity) -> None:
        self.providers = [r for r in self.providers if r() is not None] + [weakref.ref(fn)]

    def __call__(self, ids: pa.Array, seeds: pa.Array) -> pa.Array:
        for ref in reversed(self.providers):
            fn = ref()
            if fn is not None:
                return fn(ids, seeds)
        raise ValueError("similarity(): the store this session belonged to is closed")


_dispatchers: dict[str, _Dispatch] = {}
_dispatch_lock = threading.Lock()


def install(session: duckdb.DuckDBPyConnection, index: faiss.Index | Callable[[], faiss.Index]) -> Similarity:
    """Register ``similarity``, the views and ``similar_to`` on the SQL ``session`` (temporary views
    live per connection; the function per database instance, see :class:`_Dispatch`). ``index``
    may be a function giving it: called when a query first asks for a similarity."""
    fn = Similarity(index)
    found = session.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
                            ).fetchall()
    with _dispatch_lock:
        dispatch = _dispatchers.setdefault(str(found[0][0] if found else id(session)), _Dispatch())
        dispatch.add(fn)
        try:
            session.create_function("similarity", dispatch, [duckdb.sqltype("BIGINT"), duckdb.sqltype("BIGINT")],
                                    duckdb.sqltype("DOUBLE"), type=udf.ARROW, null_handling=udf.SPECIAL,
                                    side_effects=False)
        except duckdb.CatalogException as exc:
            if "already exists" not in str(exc):
                raise  # else: registered by another connection to this file; the dispatcher now knows fn
    db = database(session)
    for name, body in VIEWS.items():
        session.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {body.format(db=db)}")
    session.execute(SIMILAR_TO.format(db=db))
    return fn


def describe_error(exc: duckdb.Error, timeout: float) -> InvalidQuery:
    """DuckDB's error as an InvalidQuery naming the limit that refused the query."""
    text = str(exc)
    if isinstance(exc, duckdb.InterruptException):
        return InvalidQuery(f"SQL query interrupted after {timeout:g} s (time limit)")
    if "memory" in text.lower() and ("limit" in text.lower() or "out of memory" in text.lower()):
        return InvalidQuery(f"SQL query refused: it needs more memory than the limit ({text.splitlines()[0]})")
    if "external access" in text.lower() or "disabled by configuration" in text.lower():
        return InvalidQuery(f"SQL query refused: it reads or writes files outside the store, which is disabled "
                          f"({text.splitlines()[0]})")
    if "configuration has been locked" in text.lower():
        return InvalidQuery(f"SQL query refused: settings cannot be changed ({text.splitlines()[0]})")
    return InvalidQuery(f"SQL error: {text}")


SQL_MEMORY_LIMIT = "2GB"
"""DuckDB's memory limit on read-only stores (where user SQL runs); the configuration is locked."""


class Sandbox:
    """A store's SQL session: one cursor of its connection with the views and functions above,
    remade when the connection or the FAISS index changes; one query at a time.

    ``cursor`` makes a cursor of the (held) connection; ``index`` returns the current FAISS index.
    """

    def __init__(self, cursor: Callable[[], duckdb.DuckDBPyConnection], index: Callable[[], faiss.Index],
                 loaded: Callable[[], faiss.Index | None] | None = None) -> None:
        self._cursor = cursor
        self._index = index
        self._loaded = loaded or index  # the index if it is in memory (None: not loaded yet)
        self._lock = threading.Lock()
        self._session: duckdb.DuckDBPyConnection | None = None
        self._similarity: Similarity | None = None  # kept alive here (see _Dispatch)

    def close(self) -> None:
        """Drop the session (before its connection closes)."""
        if self._session is not None:
            self._session.close()
            self._session = None

    def _current(self) -> duckdb.DuckDBPyConnection:
        # A session's similarity() binds to the index on its first use: a query that never asks for
        # one (the explorer's schema, most user SQL) never loads it. Bound to an index the store no
        # longer holds (rebuilt, reloaded): a new session.
        bound = self._similarity.bound_to if self._similarity is not None else None
        if self._session is None or (bound is not None and bound is not self._loaded()):
            self.close()
            self._session = self._cursor()
            self._similarity = install(self._session, self._index)
        return self._session

    def run(self, query: str, *, max_rows: int, timeout: float) -> tuple[list[str], list[tuple[Any, ...]], bool]:
        """(columns, rows, truncated) of one checked read-only ``query``, interrupted after
        ``timeout`` seconds and cut at ``max_rows``."""
        with self._lock:
            session = self._current()
            check_query(session, query)
            timer = threading.Timer(timeout, session.interrupt)
            timer.start()
            try:
                result = session.execute(query)
                if result.description is None:
                    return [], [], False
                columns = [str(d[0]) for d in result.description]
                rows = result.fetchmany(max_rows + 1)
            except duckdb.Error as exc:
                raise describe_error(exc, timeout) from exc
            finally:
                timer.cancel()
        return columns, [tuple(r) for r in rows[:max_rows]], len(rows) > max_rows

    def matching_ids(self, where: str, timeout: float) -> np.ndarray:
        """Ids of the tracks matching the boolean expression ``where``, under the same limits."""
        with self._lock:
            session = self._current()
            query = check_where(session, where)
            timer = threading.Timer(timeout, session.interrupt)
            timer.start()
            try:
                ids = session.execute(query).fetchnumpy()["id"]
            except duckdb.Error as exc:
                raise InvalidQuery(f"where {where!r}: {describe_error(exc, timeout)}") from exc
            finally:
                timer.cancel()
        return np.asarray(ids, dtype=np.int64)
