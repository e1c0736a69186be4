"""The store folder: DuckDB (source of truth) + FAISS (accelerator) + manifest.

A store is one self-describing folder::

    STORE/
      library.duckdb    tracks, embeddings, styles, projections, failures, runs, meta
      vectors.faiss     exact inner-product index keyed by track id (rebuilt when stale)
      vectors.json      which ``vectors_generation`` the FAISS file was built from
      manifest.json     model, normalisation, metric, index type, package versions, counts

Open it with :meth:`Store.open` (read-only: SQL, similarity, exports, the explorer)
or :meth:`Store.open_for_indexing` (creates the folder, checks the model).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Unpack

import duckdb
import faiss
import numpy as np
import pandas as pd
import pyarrow as pa

from . import listening, schema, sql
from .errors import InvalidQuery, StoreError, StoreUnavailable, TrackNotFound
from .faults import fault_point
from .manifest import Manifest, ModelInfo, read_manifest, write_manifest
from .search import SearchOptions, SimilarOptions, VarietyOptions, diversify, knn, mmr_order, song_key, vectors_of
from .types import KnownFile, MapInfo, Neighbour, SQLResult, TrackRecord
from .vectors import (
    KINDS,
    SIDECAR_NAME,
    add_to_index,
    build_index,
    effective_kind,
    ids_checksum,
    index_ids,
    ivf_parts,
    l2_normalise,
    load_index,
    read_sidecar,
    save_index,
)

logger = logging.getLogger(__name__)

DB_NAME = "library.duckdb"
OWN_ENTRIES = frozenset({"shards"})
"""What musicmap may write into a store folder before the store itself exists: ``shards/``, where
``musicmap index --engine ray`` stages its Parquet shards by default (ingested afterwards)."""

#: Every connection: no access to files other than the database (no read_csv('/etc/passwd'),
#: COPY, ATTACH, INSTALL/LOAD). Same config everywhere, as DuckDB requires within a process.
_CONFIG: dict[str, Any] = {"enable_external_access": False}

SQL_MEMORY_LIMIT = "2GB"
"""DuckDB's memory limit on read-only stores (where user SQL runs); the configuration is locked."""
_READ_CONFIG: dict[str, Any] = {**_CONFIG, "memory_limit": SQL_MEMORY_LIMIT, "lock_configuration": True}

LOCK_WAIT_S = 30.0
"""How long opening a store waits while another process holds the database file."""
ROW_CACHE = 20_000
"""Track rows kept in memory while a connection stays open (see ``Store.track_rows``)."""
LINGER_S = 0.5
"""A shared store keeps its connection this long after the last reader (reconnecting costs ~30 ms
at 100k tracks), unless a writer is waiting for the file (:data:`WRITER_WAITING`)."""
WRITER_WAITING = ".writer-waiting"
"""Marker file a writer puts in the store folder while DuckDB's lock keeps it out: shared readers
then let go of the file as soon as their current reads end, and wait for the writer's turn."""

#: Columns of ``tracks`` shown with a result by default.
DISPLAY_COLUMNS: tuple[str, ...] = ("id", "title", "artist", "album", "genre", "year", "duration", "path")


class Store:
    """A musicmap store folder. Use :meth:`open` or :meth:`open_for_indexing`, then :meth:`close`."""

    def __init__(self, path: Path, connect: Callable[[], duckdb.DuckDBPyConnection], manifest: Manifest, *,
                 read_only: bool, shared: bool = False) -> None:
        self.path = path
        self.manifest = manifest
        self.read_only = read_only
        self.shared = shared
        self._connect = connect
        self._conn: duckdb.DuckDBPyConnection | None = None
        self._users = 0
        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)  # notified when the last user leaves
        self._linger: threading.Timer | None = None
        self._last_use = 0.0
        self._depth = threading.local()  # how deep each thread is in holding()
        self._row_cache: dict[int, dict[str, Any]] = {}
        self._epoch = 0  # bumped whenever the connection is opened: cached rows are then dropped
        self._writing = not read_only
        self._index: faiss.Index | None = None
        self._index_stamp: tuple[int, int] | None = None
        self._sql_lock = threading.Lock()
        self._sql_session: duckdb.DuckDBPyConnection | None = None
        self._similarity: sql.Similarity | None = None
        self._sql_index: faiss.Index | None = None
        self.index_kind = "auto"
        """The FAISS index type a rebuild makes: ``auto`` (by size), ``flat``, ``hnsw`` or ``ivfpq``."""

    @property
    def _con(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection, opened on first use (and again after :meth:`release`)."""
        with self._lock:
            if self._conn is None:
                self._conn = self._connect()
                self._epoch += 1
                self._row_cache.clear()
                if self._index is not None and self._index_stamp != _stamp(self.path / SIDECAR_NAME):
                    self._index = None  # the writer saved a newer FAISS index: load it on next use
                if self.read_only and (self.path / "manifest.json").is_file():
                    self.manifest = read_manifest(self.path)
            return self._conn

    def release(self) -> None:
        """Close the DuckDB connection until the next use, so another process can take the file
        (DuckDB allows one writing process, or readers, at a time). Shared stores do it after every
        read; the indexer after every committed batch. In-memory state (the FAISS index) is kept."""
        with self._lock:
            if self._users:
                return
            if self._sql_session is not None:
                self._sql_session.close()
                self._sql_session = None
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # --- opening --------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path, *, read_only: bool = True, memory_limit: str = SQL_MEMORY_LIMIT,
             shared: bool = False, wait: float = LOCK_WAIT_S) -> Store:
        """Open an existing store, read-only by default, with external file access disabled.

        ``read_only=False`` is for maintenance that keeps the model (``musicmap map``). Read-only
        stores run user SQL: DuckDB's ``memory_limit`` applies and its configuration is locked.
        ``shared``: hold the database file only while reading (a long-lived reader such as the
        explorer, beside an index run). While another process writes, opening waits up to
        ``wait`` seconds for it to let go.

        Raises
        ------
        StoreError
            If ``path`` is missing or is not a store.
        """
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise StoreError(f"store folder {folder} does not exist; create it with "
                             f"`musicmap index LIBRARY --store {folder}`")
        manifest = read_manifest(folder)
        db = folder / DB_NAME
        if not db.is_file():
            raise StoreError(f"{folder} has a manifest but no {DB_NAME}; the store is damaged, "
                             f"re-create it with `musicmap index LIBRARY --store {folder}`")
        config = {**_READ_CONFIG, "memory_limit": memory_limit} if read_only else _CONFIG
        store = cls(folder, lambda: _connect(db, read_only=read_only, config=config, wait=wait), manifest,
                    read_only=read_only, shared=shared)
        store._check_schema()
        if shared:
            store.release()
        return store

    @staticmethod
    def check_can_index(path: str | Path, model: ModelInfo) -> Manifest | None:
        """Check, creating nothing, that :meth:`open_for_indexing` can take ``path`` for ``model``:
        a new or empty folder, a store of that model (its manifest is returned), or a folder that
        holds only musicmap's own leftovers from before the store existed (:data:`OWN_ENTRIES`,
        e.g. the ``shards/`` a Ray run stages into). Commands call it before long work.

        Raises
        ------
        StoreError
            If ``path`` is a file, a folder with other files and no store, or a store of another
            model (the message names the field).
        """
        folder = Path(path).expanduser()
        if folder.exists() and not folder.is_dir():
            raise StoreError(f"--store {folder} is a file, not a folder")
        if (folder / "manifest.json").exists():
            manifest = read_manifest(folder)
            manifest.check_model(model)
            return manifest
        if folder.is_dir() and not (folder / DB_NAME).exists():
            foreign = sorted(p.name for p in folder.iterdir() if p.name not in OWN_ENTRIES)
            if foreign:
                shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
                raise StoreError(f"--store {folder} is a folder with other files in it ({shown}) and no store; "
                                 "give an empty or new folder")
        return None

    @classmethod
    def open_for_indexing(cls, path: str | Path, model: ModelInfo, *, wait: float = LOCK_WAIT_S) -> Store:
        """Open (creating if needed) a store for writing vectors of ``model``.

        Waits up to ``wait`` seconds while readers hold the file; the indexer calls
        :meth:`release` after each committed batch so that readers get their turn.

        Raises
        ------
        StoreError
            If the folder holds something else, or a store built with another model.
        """
        folder = Path(path).expanduser()
        existing = cls.check_can_index(folder, model)
        db = folder / DB_NAME
        if existing is not None:
            manifest = existing
        else:
            folder.mkdir(parents=True, exist_ok=True)
            manifest = Manifest.new(model)
        con = _connect(db, read_only=False, config=_CONFIG, wait=wait)
        # Columns added after the first stores were written (no release had them without).
        for table, column, kind in (("tracks", "fingerprint", "VARCHAR"), ("tracks", "path_bytes", "BLOB"),
                                    ("tracks", "extra", "VARCHAR"), ("projections", "cluster", "INTEGER"),
                                    ("runs", "settings", "VARCHAR")):
            con.execute(f"ALTER TABLE IF EXISTS {table} ADD COLUMN IF NOT EXISTS {column} {kind}")
        con.execute(schema.DDL)
        con.execute(schema.embeddings_ddl(model.dimension))
        con.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", [str(schema.SCHEMA_VERSION)])
        con.execute("INSERT OR IGNORE INTO meta VALUES ('vectors_generation', '0')")
        store = cls(folder, lambda: _connect(db, read_only=False, config=_CONFIG, wait=wait), manifest,
                    read_only=False)
        store._conn = con
        store._check_schema()
        # Temporary files of a writer that was killed mid-write (atomic writes: never the real
        # files). This process holds the DuckDB lock, so no other writer is still using one.
        for leftover in folder.glob(".*.tmp"):
            leftover.unlink(missing_ok=True)
            logger.info("removed %s, left by an interrupted write", leftover.name)
        write_manifest(folder, manifest)
        return store

    def _check_schema(self) -> None:
        try:
            row = self._con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except duckdb.Error as exc:
            raise StoreError(f"{self.path / DB_NAME} is not a musicmap database ({exc})") from exc
        version = int(row[0]) if row else 0
        if version != schema.SCHEMA_VERSION:
            raise StoreError(f"{self.path} has schema version {version}; this musicmap reads "
                             f"{schema.SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._users = 0
            if self._linger is not None:
                self._linger.cancel()
                self._linger = None
            self.release()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def holding(self) -> Iterator[None]:
        """Keep the connection open for the block: several reads in one block connect once (the
        explorer wraps each request in it). A shared store keeps it :data:`LINGER_S` longer, and
        gives the file up at once, between reads, when a writer is waiting for it."""
        depth = getattr(self._depth, "n", 0)  # this thread's nesting: only its outermost entry yields
        if self.shared and not depth and self._writer_waiting():
            self._yield_to_writer()
        with self._lock:
            self._users += 1
        self._depth.n = depth + 1
        try:
            yield
        finally:
            self._depth.n = depth
            with self._lock:
                self._users -= 1
                if self.shared and not self._users:
                    self._idle.notify_all()
                    if self._writer_waiting():
                        self.release()
                    else:
                        self._release_later()

    def _writer_waiting(self) -> bool:
        """A live writer's marker is in the folder (a dead writer's is removed)."""
        marker = self.path / WRITER_WAITING
        try:
            pid = int(marker.read_text() or "0")
        except (OSError, ValueError):
            return False
        if pid <= 0:  # being written: not yet a writer to wait for (kill(0) would signal our own group)
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            marker.unlink(missing_ok=True)
            return False
        except PermissionError:
            pass  # alive, someone else's
        return True

    def _yield_to_writer(self, patience: float = 2.0) -> None:
        """Let the waiting writer in: wait for this process's current reads, close the file, and
        give the writer up to ``patience`` seconds to take it (its marker goes when it has)."""
        with self._lock:
            if self._conn is not None:
                self._idle.wait_for(lambda: not self._users, timeout=patience)
                self.release()
        deadline = time.monotonic() + patience
        while self._writer_waiting() and time.monotonic() < deadline:
            time.sleep(0.01)

    def _release_later(self) -> None:
        """Release after :data:`LINGER_S` without readers (one timer, re-armed while reads go on)."""
        self._last_use = time.monotonic()
        if self._linger is None:
            self._arm(LINGER_S)

    def _arm(self, delay: float) -> None:
        self._linger = threading.Timer(delay, self._linger_done)
        self._linger.daemon = True
        self._linger.start()

    def _linger_done(self) -> None:
        with self._lock:
            self._linger = None
            if self._users:
                return  # the reads going on re-arm it when they end
            left = self._last_use + LINGER_S - time.monotonic()
            if left > 0.01:
                self._arm(left)
            else:
                self.release()

    @contextmanager
    def _cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        # One cursor per call: DuckDB connections are not safe to share across threads.
        with self.holding():
            with self._lock:
                cur = self._con.cursor()
            try:
                yield cur
            finally:
                cur.close()

    # --- writing (indexer) ----------------------------------------------------------------

    @contextmanager
    def _transaction(self, *, vectors_changed: bool = False,
                     rewritten: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """One DuckDB transaction; with ``vectors_changed`` it also bumps ``vectors_generation``,
        so a FAISS file built before it is known to be stale, and with ``rewritten`` (a stored
        vector replaced or removed, not only added) ``vectors_rewrites``, so it is rebuilt rather
        than extended."""
        con = self._con
        con.execute("BEGIN TRANSACTION")
        try:
            yield con
            bump = [key for key, on in (("vectors_generation", vectors_changed), ("vectors_rewrites", rewritten)) if on]
            for key in bump:
                con.execute("INSERT OR IGNORE INTO meta VALUES (?, '0')", [key])
                con.execute("UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS VARCHAR) WHERE key = ?", [key])
            fault_point("duckdb-commit")
            con.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(duckdb.Error):  # a COMMIT that failed (a full disk) ended it already
                con.execute("ROLLBACK")
            if isinstance(exc, (duckdb.Error, OSError)) and not isinstance(exc, duckdb.InterruptException):
                raise StoreError(f"could not save to {self.path}: {_first_line(exc)}. What was saved before "
                                 "is kept{}.".format(" (free some space and run again)" if _disk_full(exc)
                                                     else "")) from exc
            raise
        if vectors_changed:
            self._index = None

    def _require_writable(self) -> None:
        if self.read_only:
            raise StoreError("this store was opened read-only")

    def known_files(self) -> dict[str, KnownFile]:
        """Every stored track by path: id, size, mtime, content fingerprint, has a vector."""
        rows = self._con.execute(
            "SELECT t.path, t.path_bytes, t.id, t.size, t.mtime, t.fingerprint, e.track_id IS NOT NULL "
            "FROM tracks t LEFT JOIN embeddings e ON e.track_id = t.id"
        ).fetchall()
        return {_fs_path(r[0], r[1]): KnownFile(int(r[2]), int(r[3]), float(r[4]), r[5], bool(r[6]))
                for r in rows}

    def move_track(self, track_id: int, path: str, size: int, mtime: float) -> None:
        """A file moved or renamed: same content, new path. Keeps its id, vector and map position."""
        self._require_writable()
        self._con.execute("UPDATE tracks SET path = ?, path_bytes = ?, size = ?, mtime = ?, updated_at = now() "
                          "WHERE id = ?", [db_path(path), _raw(path), size, mtime, track_id])
        self._con.execute("DELETE FROM failures WHERE path = ?", [db_path(path)])

    def update_file_stats(self, rows: Sequence[tuple[int, int, float, str | None]]) -> None:
        """``(track_id, size, mtime, fingerprint)``: files whose bytes changed but not their sound
        (tags written by ``musicmap tag``, or put back by its undo), so the next index run does not
        take them for changed files and embed them again."""
        self._require_writable()
        if rows:
            with self._transaction() as con:
                con.executemany("UPDATE tracks SET size = ?, mtime = ?, fingerprint = ?, updated_at = now() "
                                "WHERE id = ?", [[int(s), float(m), f, int(i)] for i, s, m, f in rows])

    def delete_tracks(self, track_ids: Sequence[int]) -> int:
        """Remove tracks and everything about them (vectors, windows, styles, map points)."""
        self._require_writable()
        ids = [int(i) for i in track_ids]
        if not ids:
            return 0
        with self._transaction(vectors_changed=True, rewritten=True) as con:
            for table, column in (("embeddings", "track_id"), ("windows", "track_id"), ("styles", "track_id"),
                                  ("projections", "track_id"), ("tracks", "id")):
                con.execute(f"DELETE FROM {table} WHERE {column} IN (SELECT unnest(?::BIGINT[]))", [ids])
        return len(ids)

    def write_tracks(self, records: Sequence[TrackRecord]) -> list[int]:
        """Insert or update ``records`` in one transaction; returns their track ids."""
        self._require_writable()
        if not records:
            return []
        d = self.manifest.model.dimension
        cols = ("path", "path_bytes", "size", "mtime", "fingerprint", *schema.TRACK_FIELDS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in cols[1:])
        for rec in records:
            vec = np.asarray(rec.vector, dtype=np.float32).ravel()
            if vec.shape[0] != d:
                raise StoreError(f"vector of {rec.path} has {vec.shape[0]} dimensions, the store expects {d}")
        paths = [db_path(r.path) for r in records]
        if len(set(paths)) != len(paths):
            raise StoreError("write_tracks: the same path twice in one batch")
        table = pa.table({
            "path": pa.array(paths, pa.string()),
            "path_bytes": pa.array([_raw(r.path) for r in records], pa.binary()),
            "size": pa.array([int(r.size) for r in records], pa.int64()),
            "mtime": pa.array([float(r.mtime) for r in records], pa.float64()),
            "fingerprint": pa.array([r.fingerprint for r in records], pa.string()),
            **{c: _tag_column(c, [r.tags.get(c) for r in records]) for c in schema.TRACK_FIELDS},
        })
        with self._transaction(vectors_changed=True, rewritten=self._replaces_vectors(records)) as con:
            con.register("_tracks", table)
            returned = con.execute(
                f"INSERT INTO tracks ({', '.join(cols)}) SELECT {', '.join(cols)} FROM _tracks "
                f"ON CONFLICT (path) DO UPDATE SET {updates}, updated_at = now() RETURNING id, path"
            ).fetchall()
            con.unregister("_tracks")
            id_of = {str(p): int(i) for i, p in returned}
            ids = [id_of[p] for p in paths]
            vectors = l2_normalise(np.stack([np.asarray(r.vector, np.float32).ravel() for r in records]))
            batch = pa.table({
                "track_id": pa.array(ids, pa.int64()),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel(), pa.float32()), d),
                "n_windows": pa.array([r.n_windows for r in records], pa.int32()),
            })
            con.register("_batch", batch)
            con.execute(f"INSERT OR REPLACE INTO embeddings SELECT track_id, vector::FLOAT[{d}], "
                        "n_windows FROM _batch")
            con.unregister("_batch")
            con.execute("DELETE FROM windows WHERE track_id IN (SELECT unnest(?::BIGINT[]))", [ids])
            win_rows = [(tid, rec) for tid, rec in zip(ids, records, strict=True) if rec.windows is not None]
            if win_rows:
                stacked = l2_normalise(np.concatenate([np.asarray(r.windows, np.float32).reshape(-1, d)
                                                       for _, r in win_rows]))
                track_col = [tid for tid, r in win_rows for _ in range(len(np.asarray(r.windows)))]
                index_col = [w for _, r in win_rows for w in range(len(np.asarray(r.windows)))]
                start_col = [float(r.window_starts[w]) if w < len(r.window_starts) else None
                             for _, r in win_rows for w in range(len(np.asarray(r.windows)))]
                con.register("_win", pa.table({
                    "track_id": pa.array(track_col, pa.int64()),
                    "window_index": pa.array(index_col, pa.int32()),
                    "start_s": pa.array(start_col, pa.float64()),
                    "vector": pa.FixedSizeListArray.from_arrays(pa.array(stacked.ravel(), pa.float32()), d),
                }))
                con.execute(f"INSERT INTO windows SELECT track_id, window_index, start_s, vector::FLOAT[{d}] FROM _win")
                con.unregister("_win")
            con.execute("DELETE FROM styles WHERE track_id IN (SELECT unnest(?::BIGINT[]))", [ids])
            style_ids = [tid for tid, rec in zip(ids, records, strict=True) for _ in rec.styles]
            if style_ids:  # one Arrow insert (519 labels a MAEST track: executemany cost ~40 ms a track)
                con.register("_styles", pa.table({
                    "track_id": pa.array(style_ids, pa.int64()),
                    "label": pa.array([label for rec in records for label in rec.styles], pa.string()),
                    "activation": pa.array([float(a) for rec in records for a in rec.styles.values()], pa.float32()),
                }))
                con.execute("INSERT INTO styles SELECT track_id, label, activation FROM _styles")
                con.unregister("_styles")
            con.execute("DELETE FROM failures WHERE path IN (SELECT unnest(?::VARCHAR[]))",
                        [[db_path(r.path) for r in records]])
        return ids

    def _replaces_vectors(self, records: Sequence[TrackRecord]) -> bool:
        """Whether writing ``records`` replaces a stored vector (a changed file), not only adds."""
        row = self._con.execute("SELECT count(*) FROM embeddings e JOIN tracks t ON t.id = e.track_id "
                                "WHERE t.path IN (SELECT unnest(?::VARCHAR[]))",
                                [[db_path(r.path) for r in records]]).fetchone()
        return bool(row and row[0])

    def record_failure(self, path: str, stage: str, error: str) -> None:
        """Record (or replace) why ``path`` could not be indexed."""
        self._require_writable()
        self._con.execute("INSERT OR REPLACE INTO failures (path, stage, error, failed_at) "
                          "VALUES (?, ?, ?, current_timestamp)", [db_path(path), stage, error])

    def forget_failures(self, paths: Sequence[str]) -> None:
        """Drop the failure rows of ``paths`` (files that are gone, folders readable again)."""
        self._require_writable()
        if paths:
            self._con.execute("DELETE FROM failures WHERE path IN (SELECT unnest(?::VARCHAR[]))",
                              [[db_path(p) for p in paths]])

    def start_run(self, roots: Iterable[str], settings: dict[str, Any] | None = None) -> int:
        """Record an index run; ``settings`` says how the model ran (precision, patchout, window
        budget, ...), which may differ between runs of one store without changing its model."""
        self._require_writable()
        row = self._con.execute(
            "INSERT INTO runs (started_at, model, roots, status, settings) VALUES (?, ?, ?, 'running', ?) "
            "RETURNING id",
            [datetime.now(UTC).replace(tzinfo=None), self.manifest.model.id, json.dumps(list(roots)),
             json.dumps(settings or {}, sort_keys=True)],
        ).fetchone()
        assert row is not None
        return int(row[0])

    def finish_run(self, run_id: int, *, status: str, counts: dict[str, int]) -> None:
        self._require_writable()
        self._con.execute(
            "UPDATE runs SET finished_at = ?, status = ?, scanned = ?, added = ?, updated = ?, "
            "unchanged = ?, failed = ? WHERE id = ?",
            [datetime.now(UTC).replace(tzinfo=None), status, counts.get("scanned", 0),
             counts.get("added", 0), counts.get("updated", 0), counts.get("unchanged", 0),
             counts.get("failed", 0), run_id],
        )

    def write_projection(self, name: str, track_ids: np.ndarray, xy: np.ndarray, *,
                         method: str, params: dict[str, Any], clusters: np.ndarray | None = None) -> None:
        """Replace projection ``name`` with coordinates ``xy`` (shape (n, 2)) for ``track_ids``, and
        optionally each track's cluster number."""
        self._require_writable()
        frame = pa.table({
            "name": pa.array([name] * len(track_ids), pa.string()),
            "track_id": pa.array(np.asarray(track_ids, np.int64)),
            "x": pa.array(np.asarray(xy[:, 0], np.float64)),
            "y": pa.array(np.asarray(xy[:, 1], np.float64)),
            "cluster": (pa.nulls(len(track_ids), pa.int32()) if clusters is None
                        else pa.array(np.asarray(clusters, np.int32))),
        })
        with self._transaction() as con:
            con.execute("DELETE FROM projections WHERE name = ?", [name])
            con.register("_proj", frame)
            con.execute("INSERT INTO projections SELECT name, track_id, x, y, cluster FROM _proj")
            con.unregister("_proj")
            con.execute("INSERT OR REPLACE INTO projection_info (name, method, params, n_tracks, created_at) "
                        "VALUES (?, ?, ?, ?, current_timestamp)",
                        [name, method, json.dumps(params, sort_keys=True), len(track_ids)])

    def sync(self) -> None:
        """Bring the FAISS index up to date (add new vectors, or rebuild) and save it, and refresh
        the manifest's counts and index description."""
        self._require_writable()
        with self._lock:
            self._index = None
            index, params = self._load_or_build(save=True)
            self._index = index
            self._index_stamp = _stamp(self.path / SIDECAR_NAME)
        n = int(index.ntotal)
        counts = {"tracks": self.count("tracks"), "embeddings": n, "failures": self.count("failures")}
        self.manifest = replace(self.manifest, counts=counts,
                                index={**params, "ntotal": n, "ids_checksum": ids_checksum(index_ids(index))})
        write_manifest(self.path, self.manifest)

    def _index_state(self) -> tuple[dict[str, Any], np.ndarray]:
        """What the FAISS index must match (sidecar keys), and the ids DuckDB holds."""
        with self._cursor() as cur:
            ids = np.asarray(cur.execute("SELECT track_id FROM embeddings").fetchnumpy()["track_id"], np.int64)
            meta = dict(cur.execute("SELECT key, value FROM meta").fetchall())
        model = self.manifest.model
        state = {"generation": int(meta.get("vectors_generation", 0)), "rewrites": int(meta.get("vectors_rewrites", 0)),
                 "model": model.id, "dimension": int(model.dimension), "ntotal": len(ids),
                 "ids_checksum": ids_checksum(ids)}
        return state, ids

    def _load_or_build(self, *, save: bool) -> tuple[faiss.Index, dict[str, Any]]:
        """The current index: loaded if it matches DuckDB, extended if only additions happened since
        it was saved, else rebuilt (saved when ``save``)."""
        state, db_ids = self._index_state()
        side = read_sidecar(self.path) or {}
        index = load_index(self.path, state)
        built_kind = (side.get("params") or {}).get("type", "flat")
        asked = self.index_kind == "auto" or built_kind == self._kind_for(len(db_ids))
        if index is not None and asked and self._vectors_agree(index, db_ids):
            return index, dict(side.get("params") or {"type": "flat"})
        index = None
        params: dict[str, Any] | None = None
        same_base = {k: state[k] for k in ("rewrites", "model", "dimension")}
        if side and all(side.get(k) == v for k, v in same_base.items()):
            # Only additions since it was saved? Then add the new vectors instead of rebuilding.
            old = load_index(self.path, {**same_base, "ids_checksum": side.get("ids_checksum"),
                                         "ntotal": side.get("ntotal")})
            if old is not None and self._vectors_agree(old, index_ids(old)):
                have = index_ids(old)
                if np.isin(have, db_ids).all() and self._kind_for(len(db_ids)) == built_kind:
                    new_ids = np.setdiff1d(db_ids, have)
                    add_to_index(old, new_ids, self._vectors_for(new_ids))
                    index = old
                    params = {**side.get("params", {}),
                              "added_since_build": int((side.get("params") or {}).get("added_since_build", 0))
                              + len(new_ids)}
                    logger.info("FAISS index: added %d new vectors", len(new_ids))
        if index is None or params is None:
            ids, vectors = self.vectors()
            index, params = build_index(ids, vectors, self._kind_for(len(ids)))
            logger.info("FAISS index built: %s over %d vectors", params["type"], len(ids))
        if save:
            save_index(self.path, index, {**{k: state[k] for k in ("generation", "rewrites", "model", "dimension")},
                                          "params": params})
        return index, params

    def _kind_for(self, n: int) -> str:
        if self.index_kind not in KINDS:
            raise StoreError(f"index type {self.index_kind!r}: choose one of {', '.join(KINDS)}")
        return effective_kind(self.index_kind, n, self.manifest.model.dimension)

    def _vectors_agree(self, index: faiss.Index, ids: np.ndarray, sample: int = 16) -> bool:
        """Spot check: a few vectors of the index equal DuckDB's (a file copied from another store
        with the same ids, or written over, fails it). IVF-PQ keeps 8-bit vectors: equal there
        means a cosine over 0.99."""
        if not len(ids):
            return True
        picked = np.random.default_rng(len(ids)).choice(ids, size=min(sample, len(ids)), replace=False)
        try:
            ours = vectors_of(index, picked)
        except RuntimeError:
            return False
        theirs = self._vectors_for(picked)
        if ivf_parts(index) is not None:
            agree = bool(np.all(np.sum(ours * theirs, axis=1) > 0.99))
        else:
            agree = bool(np.allclose(ours, theirs, atol=1e-5))
        if not agree:
            logger.warning("FAISS index in %s holds other vectors than DuckDB; rebuilding", self.path)
        return agree

    def _vectors_for(self, ids: np.ndarray) -> np.ndarray:
        d = self.manifest.model.dimension
        if not len(ids):
            return np.zeros((0, d), np.float32)
        with self._cursor() as cur:
            table = cur.sql("SELECT track_id, vector FROM embeddings WHERE track_id IN (SELECT unnest(?::BIGINT[]))",
                            params=[ids.tolist()]).to_arrow_table()
        got = table.column("track_id").to_numpy().astype(np.int64)
        flat = table.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        vectors = np.asarray(flat, np.float32).reshape(-1, d)
        order = np.argsort(got)
        return vectors[order[np.searchsorted(got[order], ids)]]  # in the order of ``ids``

    # --- reading --------------------------------------------------------------------------

    def _generation(self) -> int:
        with self._cursor() as cur:
            row = cur.execute("SELECT value FROM meta WHERE key = 'vectors_generation'").fetchone()
        return int(row[0]) if row else 0

    def count(self, table: str) -> int:
        if table not in ("tracks", "embeddings", "windows", "styles", "failures", "projections", "runs"):
            raise ValueError(f"unknown table {table!r}")
        with self._cursor() as cur:
            row = cur.execute(f"SELECT count(*) FROM {table}").fetchone()
        return int(row[0]) if row else 0

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """All track vectors.

        Returns
        -------
        ids : ndarray, shape (n,), int64
        vectors : ndarray, shape (n, d), float32, L2-normalised
        """
        d = self.manifest.model.dimension
        with self._cursor() as cur:
            table = cur.sql("SELECT track_id, vector FROM embeddings ORDER BY track_id").to_arrow_table()
        ids = table.column("track_id").to_numpy().astype(np.int64)
        if len(ids) == 0:
            return ids, np.zeros((0, d), np.float32)
        flat = table.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        return ids, np.asarray(flat, np.float32).reshape(-1, d)

    @property
    def index(self) -> faiss.Index:
        """The FAISS index, loaded from disk if it matches DuckDB, else brought up to date (saved
        unless the store is read-only)."""
        with self._lock:
            if self._index is None:
                with self.holding():  # one connection for the whole load
                    self._index, _ = self._load_or_build(save=not self.read_only)
                    self._index_stamp = _stamp(self.path / SIDECAR_NAME)
            return self._index

    def tracks(self, ids: Sequence[int] | None = None, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Rows of ``tracks`` (all, or ``ids`` in the given order), as a DataFrame."""
        cols = ", ".join(f"t.{c}" for c in columns) if columns else "t.* EXCLUDE (path_bytes)"
        with self._cursor() as cur:
            if ids is None:
                return cur.execute(f"SELECT {cols} FROM tracks t ORDER BY t.id").df()
            wanted = [int(i) for i in ids]
            frame = cur.execute(
                f"SELECT {cols}, t.id AS _id FROM tracks t WHERE t.id IN (SELECT unnest(?::BIGINT[]))", [wanted],
            ).df()
        # In the order of ``ids`` (missing ids dropped): a hash join in pandas, not a per-row list search.
        position = pd.Series(range(len(wanted)), index=pd.Index(wanted)).groupby(level=0).first()
        frame["_pos"] = frame["_id"].map(position)
        return frame.sort_values("_pos", kind="stable").drop(columns=["_pos", "_id"]).reset_index(drop=True)

    def page_tracks(self, *, where: str | None = None, offset: int = 0, limit: int = 100,
                    columns: Sequence[str] | None = None, timeout: float = 10.0) -> tuple[int, pd.DataFrame]:
        """(matching count, one page of them by id): the tracks matching ``where`` (one boolean SQL
        expression over ``tracks``, run in the SQL sandbox), rows ``offset`` to ``offset + limit``."""
        if offset < 0 or limit < 0:
            raise InvalidQuery("offset and limit must be 0 or more")
        cols = list(columns or ("id", "title", "artist", "album", "genre", "year", "duration", "format"))
        if where:
            ids = np.sort(self._filter_ids(where, timeout))
            return len(ids), self.tracks(ids[offset : offset + limit].tolist(), columns=cols)
        with self._cursor() as cur:
            total = int(cur.execute("SELECT count(*) FROM tracks").fetchone()[0])  # type: ignore[index]
            frame = cur.execute(f"SELECT {', '.join(f't.{c}' for c in cols)} FROM tracks t ORDER BY t.id "
                                "LIMIT ? OFFSET ?", [int(limit), int(offset)]).df()
        return total, frame

    def file_path(self, track_id: int) -> str:
        """The file of a track, exactly as the file system names it (also for non-UTF-8 names)."""
        with self._cursor() as cur:
            row = cur.execute("SELECT path, path_bytes FROM tracks WHERE id = ?", [int(track_id)]).fetchone()
        if row is None:
            raise TrackNotFound(track_id, self.path)
        return _fs_path(row[0], row[1])

    def track(self, track_id: int) -> dict[str, Any]:
        """One track's row as a dict. Raises StoreError if there is no such track."""
        row = self.track_rows([int(track_id)]).get(int(track_id))
        if row is None:
            raise TrackNotFound(track_id, self.path)
        return row

    def styles(self, track_id: int, top: int = 5) -> list[tuple[str, float]]:
        with self._cursor() as cur:
            rows = cur.execute("SELECT label, activation FROM styles WHERE track_id = ? "
                               "ORDER BY activation DESC LIMIT ?", [track_id, top]).fetchall()
        return [(str(r[0]), float(r[1])) for r in rows]

    def windows(self, track_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(start seconds, vectors (n, d)) of a track's stored windows, in order; empty arrays when
        it has none (the ``features`` embedder, or ``--no-windows``)."""
        with self._cursor() as cur:
            rows = cur.execute("SELECT start_s, vector FROM windows WHERE track_id = ? ORDER BY window_index",
                               [int(track_id)]).fetchall()
        d = self.manifest.model.dimension
        if not rows:
            return np.zeros(0), np.zeros((0, d), np.float32)
        starts = np.array([np.nan if r[0] is None else float(r[0]) for r in rows])
        return starts, np.asarray([r[1] for r in rows], np.float32)

    def track_id_for_path(self, path: str | Path) -> int | None:
        resolved = db_path(str(Path(path).expanduser().resolve()))
        with self._cursor() as cur:
            row = cur.execute("SELECT id FROM tracks WHERE path = ?", [resolved]).fetchone()
        return int(row[0]) if row else None

    def find_tracks(self, text: str, limit: int = 10) -> pd.DataFrame:
        """Tracks whose "artist title" (or title, album) contains every word of ``text``."""
        words = [w for w in text.lower().split() if w]
        if not words:
            raise InvalidQuery("empty search text")
        hay = "lower(concat_ws(' ', artist, title, album, path))"
        where = " AND ".join(f"contains({hay}, ?)" for _ in words)
        with self._cursor() as cur:
            return cur.execute(
                f"SELECT id, title, artist, album, genre FROM tracks WHERE {where} "
                "ORDER BY (lower(concat_ws(' ', artist, title)) = ?) DESC, id LIMIT ?",
                [*words, text.lower(), limit],
            ).df()

    def similar(self, track_id: int, k: int = 10, **options: Unpack[SimilarOptions]) -> list[Neighbour]:
        """The ``k`` tracks most similar to ``track_id`` (never the track itself); ``options`` as
        :meth:`search`."""
        return self.search(int(track_id), k=k, **options)

    def similar_to_vector(self, vector: np.ndarray, k: int = 10, *, exclude: Sequence[int] = (),
                          **options: Unpack[SimilarOptions]) -> list[Neighbour]:
        """The ``k`` tracks most similar to a raw ``vector`` (shape (d,)), skipping ``exclude``."""
        return self.search(vector=vector, k=k, exclude=exclude, **options)

    def song_path(self, start: int, end: int, *, length: int = 10,
                  **options: Unpack[VarietyOptions]) -> list[listening.PathStep]:
        """``length`` tracks from ``start`` to ``end``, each near the last (:func:`store.listening.song_path`)."""
        return listening.song_path(self, start, end, length=length, **options)

    def extend(self, seeds: Sequence[int], *, n: int = 20, mode: str = "centroid",
               **options: Unpack[VarietyOptions]) -> list[Neighbour]:
        """``n`` tracks that fit the playlist ``seeds`` (:func:`store.listening.extend_playlist`)."""
        return listening.extend_playlist(self, seeds, n=n, mode=mode, **options)

    def search(self, seeds: int | Sequence[int] = (), *, vector: np.ndarray | None = None, k: int = 10,
               where: str | None = None, max_per_artist: int | None = None, max_per_album: int | None = None,
               dedupe: bool = False, mmr: float | None = None, min_score: float | None = None,
               exclude: Sequence[int] = (), timeout: float = 10.0) -> list[Neighbour]:
        """Similarity search: seeds (one track id, or several: their centroid) or a raw vector, with
        a SQL filter and variety options (see :mod:`store.search`).

        Returns
        -------
        list of Neighbour
            Best first; never a seed or an ``exclude`` id. With ``min_score``, every track at least
            that similar, at most ``k``.

        Raises
        ------
        StoreError
            A seed that does not exist or has no vector, a vector of the wrong width, a bad
            parameter (named), or a bad ``where`` expression (with DuckDB's message).
        """
        opts = SearchOptions(k=k, where=where, max_per_artist=max_per_artist, max_per_album=max_per_album,
                             dedupe=dedupe, mmr=mmr, min_score=min_score)
        opts.validate()
        seed_ids = [int(seeds)] if isinstance(seeds, (int, np.integer)) else [int(s) for s in seeds]
        if bool(seed_ids) == (vector is not None):
            raise InvalidQuery("give seed track ids or a query vector (exactly one of them)")
        index = self.index
        if seed_ids:
            query = self._seed_vector(seed_ids, index)
        else:
            assert vector is not None
            query = np.asarray(vector, np.float32).ravel()
            d = self.manifest.model.dimension
            if query.shape[0] != d:
                raise InvalidQuery(f"query vector has {query.shape[0]} dimensions, the store's model "
                                 f"({self.manifest.model.id}) has {d}")
            if not np.all(np.isfinite(query)) or not np.any(query):
                raise InvalidQuery("query vector is zero or not finite")
        query = l2_normalise(query)
        allowed = self._filter_ids(opts.where, timeout) if opts.where else None
        skip = set(seed_ids) | {int(i) for i in exclude}
        variety = opts.max_per_artist is not None or opts.max_per_album is not None or opts.dedupe
        seed_keys = set()
        if opts.dedupe and seed_ids:
            seed_keys = {key for r in self.track_rows(seed_ids).values() if (key := song_key(r)) is not None}
        target = max(3 * opts.k, 30) if opts.mmr is not None and opts.mmr < 1.0 else opts.k
        fetch = target + len(skip) if not variety else 2 * target + len(skip)
        while True:
            candidates = knn(index, query, fetch, allowed)
            exhausted = len(candidates) < fetch
            candidates = [c for c in candidates if c[0] not in skip]
            if opts.min_score is not None:
                above = [c for c in candidates if c[1] >= opts.min_score]
                exhausted = exhausted or len(above) < len(candidates)
                candidates = above
            rows = self.track_rows([i for i, _ in candidates])
            picked = diversify(candidates, rows, opts, seed_keys, limit=target)
            if len(picked) >= target or exhausted:
                break
            fetch *= 4
        if opts.mmr is not None and opts.mmr < 1.0 and picked:
            vectors = vectors_of(index, [i for i, _ in picked])
            order = mmr_order(query, vectors, np.array([s for _, s in picked]), float(opts.mmr), opts.k)
            picked = [picked[i] for i in order]
        return [Neighbour(i, s, rows[i]) for i, s in picked[: opts.k]]

    def _seed_vector(self, seed_ids: list[int], index: faiss.Index) -> np.ndarray:
        try:
            vectors = vectors_of(index, seed_ids)
        except RuntimeError:
            known = self.track_rows(seed_ids)
            missing = [i for i in seed_ids if i not in known]
            if missing:
                raise TrackNotFound(missing[0], self.path) from None
            raise InvalidQuery(f"a seed track ({', '.join(map(str, seed_ids))}) has no embedding yet; "
                             "run musicmap index again") from None
        return np.asarray(vectors.mean(axis=0), np.float32)

    def track_rows(self, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Rows of ``tracks`` by id, as plain dicts (no DataFrame on the hot path). Rows read
        through the current connection are cached until it closes: while it is open no other
        process can write (DuckDB's lock), and a point lookup costs ~1 ms at 100k tracks."""
        if not len(ids):
            return {}
        with self.holding():
            with self._lock:
                epoch = self._epoch
                cached = {int(i): self._row_cache[int(i)] for i in ids if int(i) in self._row_cache}
            missing = [int(i) for i in ids if int(i) not in cached]
            if not missing:
                return {k: dict(v) for k, v in cached.items()}
            wanted = ", ".join(str(i) for i in missing)  # integers only: safe to inline
            with self._cursor() as cur:
                result = cur.execute(f"SELECT * EXCLUDE (path_bytes) FROM tracks WHERE id IN ({wanted})")
                names = [str(c[0]) for c in result.description or ()]
                rows = result.fetchall()
            fetched = {}
            for row in rows:
                item = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in zip(names, row, strict=True)}
                fetched[int(item["id"])] = item
            with self._lock:
                if epoch == self._epoch and not self._writing:
                    if len(self._row_cache) + len(fetched) > ROW_CACHE:
                        self._row_cache.clear()
                    self._row_cache.update(fetched)
        return {k: dict(v) for k, v in {**cached, **fetched}.items()}

    def _filter_ids(self, where: str, timeout: float) -> np.ndarray:
        """Ids of the tracks matching ``where`` (run in the SQL sandbox, under its limits)."""
        with self.holding(), self._sql_lock:
            session = self._session()
            query = sql.check_where(session, where)
            timer = threading.Timer(timeout, session.interrupt)
            timer.start()
            try:
                ids = session.execute(query).fetchnumpy()["id"]
            except duckdb.Error as exc:
                err = sql.describe_error(exc, timeout)
                raise InvalidQuery(f"--where {where!r}: {err}") from exc
            finally:
                timer.cancel()
        return np.asarray(ids, dtype=np.int64)

    def _session(self) -> duckdb.DuckDBPyConnection:
        """The SQL connection: its own cursor with the views and ``similarity`` (call under _sql_lock)."""
        if not self.read_only:
            raise StoreError("SQL runs on read-only stores only; open the store with Store.open")
        index = self.index
        if self._sql_session is None or self._sql_index is not index:
            if self._sql_session is not None:
                self._sql_session.close()
            with self._lock:
                self._sql_session = self._con.cursor()
            self._similarity = sql.install(self._sql_session, index)  # kept alive here (see sql._Dispatch)
            self._sql_index = index
        return self._sql_session

    def projection(self, name: str = "tsne") -> pd.DataFrame:
        """Map coordinates joined with display metadata; empty if the projection does not exist.

        ``style`` is the genre part of the track's top predicted Discogs style (``Electronic---Techno``
        → ``Electronic``), NULL without MAEST styles."""
        with self._cursor() as cur:
            has_cluster = cur.execute("SELECT count(*) FROM duckdb_columns() WHERE table_name = 'projections' "
                                      "AND column_name = 'cluster'").fetchone() != (0,)
            return cur.execute(
                "SELECT t.id, p.x, p.y, t.title, t.artist, t.album, t.genre, t.year, t.format, "
                + ("p.cluster, " if has_cluster else "NULL::INTEGER AS cluster, ") +
                "split_part(s.top, '---', 1) AS style "
                "FROM projections p JOIN tracks t ON t.id = p.track_id "
                "LEFT JOIN (SELECT track_id, arg_max(label, activation) AS top FROM styles GROUP BY track_id) s "
                "ON s.track_id = t.id WHERE p.name = ? ORDER BY t.id",
                [name],
            ).df()

    def maps(self) -> list[MapInfo]:
        """The store's maps, by name."""
        with self._cursor() as cur:
            rows = cur.execute("SELECT name, method, params, n_tracks, created_at FROM projection_info "
                               "ORDER BY name").fetchall()
        return [MapInfo(str(r[0]), str(r[1]), json.loads(r[2]), int(r[3]), str(r[4])) for r in rows]

    def map_info(self, name: str = "tsne") -> MapInfo | None:
        """Map ``name``, or None when the store has no such map."""
        return next((m for m in self.maps() if m.name == name), None)

    def projection_info(self) -> list[dict[str, Any]]:
        """:meth:`maps` as plain dicts (for JSON)."""
        return [m.to_dict() for m in self.maps()]

    def failures(self) -> pd.DataFrame:
        with self._cursor() as cur:
            return cur.execute("SELECT path, stage, error, failed_at FROM failures ORDER BY path").df()

    def sql(self, query: str, *, max_rows: int = 10_000, timeout: float = 10.0) -> SQLResult:
        """Run one read-only SQL query over the store (views and functions: :mod:`store.sql`).

        The connection is read-only, cannot touch other files and has a memory limit; the query is
        interrupted after ``timeout`` seconds and cut at ``max_rows`` (``truncated`` says so).

        Raises
        ------
        StoreError
            With the reason: bad SQL (DuckDB's message), a refused statement type, several
            statements, file access, the time or memory limit.
        """
        with self.holding(), self._sql_lock:
            session = self._session()
            sql.check_query(session, query)
            timer = threading.Timer(timeout, session.interrupt)
            timer.start()
            try:
                result = session.execute(query)
                if result.description is None:
                    return SQLResult([], [], False)
                columns = [str(d[0]) for d in result.description]
                rows = result.fetchmany(max_rows + 1)
            except duckdb.Error as exc:
                raise sql.describe_error(exc, timeout) from exc
            finally:
                timer.cancel()
        return SQLResult(columns, [tuple(r) for r in rows[:max_rows]], len(rows) > max_rows)

    def info(self) -> dict[str, Any]:
        """A summary of the store: model, counts, projections, genres, size on disk."""
        m = self.manifest.model
        with self._cursor() as cur:
            genres = cur.execute("SELECT coalesce(genre, '(none)'), count(*) FROM tracks GROUP BY 1 "
                                 "ORDER BY 2 DESC, 1 LIMIT 20").fetchall()
            has_settings = cur.execute("SELECT count(*) FROM duckdb_columns() WHERE table_name = 'runs' "
                                       "AND column_name = 'settings'").fetchone() != (0,)
            last_run = cur.execute("SELECT id, started_at, finished_at, status, scanned, added, updated, "
                                   "unchanged, failed, " + ("settings" if has_settings else "NULL") +
                                   " FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        size = sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())
        run = None
        if last_run:
            keys = ("id", "started_at", "finished_at", "status", "scanned", "added", "updated",
                    "unchanged", "failed", "settings")
            run = {k: (str(v) if isinstance(v, datetime) else v) for k, v in zip(keys, last_run, strict=True)}
            run["settings"] = json.loads(run["settings"]) if run["settings"] else {}
        return {
            "store": str(self.path),
            "model": {"name": m.name, "id": m.id, "kind": m.kind, "label": m.label,
                      "dimension": m.dimension, "revision": m.revision, "layer": m.layer,
                      "pooling": m.pooling},
            "tracks": self.count("tracks"),
            "embeddings": self.count("embeddings"),
            "failures": self.count("failures"),
            "index": dict(self.manifest.index),
            "projections": self.projection_info(),
            "genres": {str(g): int(n) for g, n in genres},
            "last_run": run,
            "size_bytes": size,
            "created_at": self.manifest.created_at,
        }


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _connect(db: Path, *, read_only: bool, config: dict[str, Any], wait: float) -> duckdb.DuckDBPyConnection:
    """``duckdb.connect``, waiting up to ``wait`` seconds while another process holds the file."""
    deadline = time.monotonic() + wait
    delay = 0.01
    marker = db.parent / WRITER_WAITING
    try:
        while True:
            try:
                return duckdb.connect(str(db), read_only=read_only, config=config)
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise StoreUnavailable(f"cannot open {db}: {exc}") from exc
                if not read_only and not marker.exists():  # shared readers: let go, a writer waits
                    with contextlib.suppress(OSError):
                        marker.write_text(str(os.getpid()))
                if time.monotonic() >= deadline:
                    raise StoreUnavailable(
                        f"{db} is busy: another musicmap process is {'writing to' if read_only else 'using'} it "
                        f"(waited {wait:g} s). An index run lets readers in between batches; "
                        f"`musicmap serve` holds the file only while reading.") from exc
            except duckdb.Error as exc:
                raise StoreUnavailable(f"cannot open {db}: {exc}") from exc
            time.sleep(delay)
            delay = min(0.2 if read_only else 0.05, delay * 1.5)
    finally:
        if not read_only:
            with contextlib.suppress(OSError, ValueError):
                if int(marker.read_text() or "0") == os.getpid():
                    marker.unlink()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _disk_full(exc: BaseException) -> bool:
    return "no space left" in str(exc).lower() or getattr(exc, "errno", None) == 28


def db_path(path: str) -> str:
    """``path`` as valid UTF-8 text: undecodable bytes of a file name become ``\\xNN``."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


_INT_TAGS = ("year", "track_number")


def _tag_column(name: str, values: list[Any]) -> pa.Array:
    """One tag column for a batch insert, typed as ``tracks`` wants it (bad values become NULL)."""
    if name in _INT_TAGS:
        out: list[Any] = []
        for v in values:
            try:
                n = int(v) if v is not None and v == v else None  # NaN is not a number of anything
            except (TypeError, ValueError):
                n = None
            out.append(n if n is None or -(2**31) < n < 2**31 else None)
        return pa.array(out, pa.int32())
    if name == "duration":
        return pa.array([float(v) if isinstance(v, (int, float)) and v == v else None for v in values], pa.float64())
    return pa.array([None if v is None else str(_text(v)) for v in values], pa.string())


def _text(value: Any) -> Any:
    """Tag text as valid UTF-8 (a title taken from a non-UTF-8 file name, say); other values as they are."""
    return db_path(value) if isinstance(value, str) else value


def _raw(path: str) -> bytes | None:
    """The exact bytes of a path whose name is not valid UTF-8, else None."""
    return os.fsencode(path) if db_path(path) != path else None


def _fs_path(text: str, raw: bytes | None) -> str:
    return os.fsdecode(raw) if raw is not None else text
