"""Writing a store: the indexer's side, and ``musicmap map``'s.

:class:`WritableStore` is a :class:`store.Store` that can also write; a plain ``Store`` cannot
(read-only is a type). :meth:`WritableStore.create` makes or opens the folder for a model, runs the
schema's migrations and clears what a killed writer left. Every write is one DuckDB transaction
(:meth:`WritableStore._transaction`); a write to ``embeddings`` bumps ``vectors_generation`` (and
``vectors_rewrites`` when a stored vector is replaced or removed), which is how the FAISS file is
known to be stale (:mod:`store.freshness`); :meth:`WritableStore.sync` brings it up to date and
refreshes the manifest. Write, then :meth:`~store.Store.release` between batches so readers get
their turn (:mod:`store.sharing`).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import duckdb
import numpy as np
import pyarrow as pa

from . import freshness, schema
from .errors import NonFiniteVector, StoreError
from .faults import fault_point
from .manifest import Manifest, ModelInfo, write_manifest
from .paths import db_path, raw_bytes, tag_text
from .sharing import CONFIG, LOCK_WAIT_S, connect, stamp
from .store import DB_NAME, Store
from .types import TrackRecord
from .vectors import SIDECAR_NAME, ids_checksum, index_ids, l2_normalise, nonfinite_parts

logger = logging.getLogger(__name__)


NONFINITE_CHECKED = "nonfinite_checked"
"""``meta`` key: the store was checked for NaN vectors saved before they were refused."""


class WritableStore(Store):
    """A store open for writing (:meth:`create`, or ``Store.open(path, read_only=False)``). It
    reads like a :class:`~store.Store`, but runs no user SQL (that needs the read-only sandbox)."""

    read_only: ClassVar[bool] = False

    def __init__(self, path: Path, connect_db: Callable[[], duckdb.DuckDBPyConnection], manifest: Manifest, *,
                 shared: bool = False, opened: duckdb.DuckDBPyConnection | None = None) -> None:
        super().__init__(path, connect_db, manifest, shared=shared)
        if opened is not None:  # the connection create() made the schema with: keep the lock it holds
            self._db.adopt(opened)

    @classmethod
    def create(cls, path: str | Path, model: ModelInfo, *, wait: float = LOCK_WAIT_S) -> WritableStore:
        """Open (creating if needed) a store for writing vectors of ``model``.

        Waits up to ``wait`` seconds while readers hold the file; the indexer calls
        :meth:`release` after each committed batch so that readers get their turn.

        Raises
        ------
        StoreError
            If the folder holds something else, or a store built with another model.
        """
        folder = Path(path).expanduser()
        existing = Store.check_can_index(folder, model)
        db = folder / DB_NAME
        if existing is not None:
            manifest = existing
        else:
            folder.mkdir(parents=True, exist_ok=True)
            manifest = Manifest.new(model)
        con = connect(db, read_only=False, config=CONFIG, wait=wait)
        schema.migrate(con, model.dimension)
        store = cls(folder, lambda: connect(db, read_only=False, config=CONFIG, wait=wait), manifest, opened=con)
        schema.check(con, db)
        store._forget_nonfinite_vectors()
        # Temporary files of a writer that was killed mid-write (atomic writes: never the real
        # files). This process holds the DuckDB lock, so no other writer is still using one.
        for leftover in folder.glob(".*.tmp"):
            leftover.unlink(missing_ok=True)
            logger.info("removed %s, left by an interrupted write", leftover.name)
        write_manifest(folder, manifest)
        return store

    def __enter__(self) -> WritableStore:
        return self

    @contextmanager
    def _transaction(self, *, vectors_changed: bool = False,
                     rewritten: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """One DuckDB transaction; with ``vectors_changed`` it also bumps ``vectors_generation``,
        so a FAISS file built before it is known to be stale, and with ``rewritten`` (a stored
        vector replaced or removed, not only added) ``vectors_rewrites``, so it is rebuilt rather
        than extended."""
        con = self._db.con
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

    def _forget_nonfinite_vectors(self) -> None:
        """Once per store (meta ``nonfinite_checked``): remove the vectors, windows, styles and map
        points of tracks whose vector or style activations are NaN or infinite, saved by a musicmap
        before 2026-12 that let a model's NaN through (MAEST in bf16 on AMX CPUs, issue #29). Such a
        vector matches nothing; with it gone the track has no vector, so the index run that opened the
        store embeds its file again (or records it as a failure), and FAISS is rebuilt once. Windows are not
        scanned: a track's vector is their mean, so a NaN window made the vector NaN too. Stores
        written since never hold one (:class:`~store.errors.NonFiniteVector`), hence once: the scan
        reads every vector (about 1 s per 100k 768-d vectors)."""
        con = self._db.con
        if con.execute("SELECT 1 FROM meta WHERE key = ?", [NONFINITE_CHECKED]).fetchone():
            return
        bad = [int(r[0]) for r in con.execute(  # stored vectors have norm 1: their sum overflows never
            "SELECT track_id FROM embeddings WHERE NOT isfinite(list_sum(vector)) "
            "UNION SELECT DISTINCT track_id FROM styles WHERE NOT isfinite(activation)").fetchall()]
        if not bad:  # the common case: one row, a statement of its own (not a counted write transaction)
            con.execute("INSERT OR REPLACE INTO meta VALUES (?, '1')", [NONFINITE_CHECKED])
            return
        with self._transaction(vectors_changed=True, rewritten=True) as cur:
            for table in ("embeddings", "windows", "styles", "projections"):
                cur.execute(f"DELETE FROM {table} WHERE track_id IN (SELECT unnest(?::BIGINT[]))", [bad])
            cur.execute("INSERT OR REPLACE INTO meta VALUES (?, '1')", [NONFINITE_CHECKED])
        logger.warning("%d tracks in %s had a NaN or infinite vector, saved by an older musicmap: their vectors "
                       "were removed, and an index run embeds their files again", len(bad), self.path)

    def move_track(self, track_id: int, path: str, size: int, mtime: float) -> None:
        """A file moved or renamed: same content, new path. Keeps its id, vector and map position."""
        self._db.con.execute("UPDATE tracks SET path = ?, path_bytes = ?, size = ?, mtime = ?, updated_at = now() "
                          "WHERE id = ?", [db_path(path), raw_bytes(path), size, mtime, track_id])
        self._db.con.execute("DELETE FROM failures WHERE path = ?", [db_path(path)])

    def update_file_stats(self, rows: Sequence[tuple[int, int, float, str | None]]) -> None:
        """``(track_id, size, mtime, fingerprint)``: files whose bytes changed but not their sound
        (tags written by ``musicmap tag``, or put back by its undo), so the next index run does not
        take them for changed files and embed them again."""
        if rows:
            with self._transaction() as con:
                con.executemany("UPDATE tracks SET size = ?, mtime = ?, fingerprint = ?, updated_at = now() "
                                "WHERE id = ?", [[int(s), float(m), f, int(i)] for i, s, m, f in rows])

    def delete_tracks(self, track_ids: Sequence[int]) -> int:
        """Remove tracks and everything about them (vectors, windows, styles, sound tags, map points)."""
        ids = [int(i) for i in track_ids]
        if not ids:
            return 0
        with self._transaction(vectors_changed=True, rewritten=True) as con:
            for table, column in (("embeddings", "track_id"), ("windows", "track_id"), ("styles", "track_id"),
                                  ("sound_tags", "track_id"), ("projections", "track_id"), ("tracks", "id")):
                con.execute(f"DELETE FROM {table} WHERE {column} IN (SELECT unnest(?::BIGINT[]))", [ids])
        for i in ids:
            self._identities.pop(i, None)
        return len(ids)

    def write_tracks(self, records: Sequence[TrackRecord]) -> list[int]:
        """Insert or update ``records`` in one transaction; returns their track ids."""
        if not records:
            return []
        d = self.manifest.model.dimension
        cols = ("path", "path_bytes", "size", "mtime", "fingerprint", *schema.TRACK_FIELDS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in cols[1:])
        for rec in records:
            vec = np.asarray(rec.vector, dtype=np.float32).ravel()
            if vec.shape[0] != d:
                raise StoreError(f"vector of {rec.path} has {vec.shape[0]} dimensions, the store expects {d}")
            _check_finite(rec)
        paths = [db_path(r.path) for r in records]
        if len(set(paths)) != len(paths):
            raise StoreError("write_tracks: the same path twice in one batch")
        table = pa.table({
            "path": pa.array(paths, pa.string()),
            "path_bytes": pa.array([raw_bytes(r.path) for r in records], pa.binary()),
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
            for table in ("styles", "sound_tags"):  # a changed file is tagged again (the tag stage)
                con.execute(f"DELETE FROM {table} WHERE track_id IN (SELECT unnest(?::BIGINT[]))", [ids])
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

    def write_sound_tags(self, tagger: str, tags: dict[int, dict[str, float]]) -> None:
        """Replace ``tagger``'s tags of the tracks in ``tags`` (track id → label → probability), in
        one transaction. Probabilities that are not finite are refused (:class:`NonFiniteVector`)."""
        if not tags:
            return
        ids = [int(i) for i in tags]
        rows = [(tid, label, float(p)) for tid, labels in tags.items() for label, p in labels.items()]
        if not np.isfinite(np.array([p for *_, p in rows], np.float64)).all():
            raise NonFiniteVector(f"the tags of {len(ids)} tracks", f"{tagger} tag probabilities")
        with self._transaction() as con:
            con.execute("DELETE FROM sound_tags WHERE tagger = ? AND track_id IN (SELECT unnest(?::BIGINT[]))",
                        [tagger, ids])
            con.register("_tags", pa.table({
                "track_id": pa.array([r[0] for r in rows], pa.int64()),
                "label": pa.array([r[1] for r in rows], pa.string()),
                "activation": pa.array([r[2] for r in rows], pa.float32()),
            }))
            con.execute("INSERT INTO sound_tags SELECT track_id, ?, label, activation FROM _tags", [tagger])
            con.unregister("_tags")

    def copy_styles_as_tags(self, tagger: str) -> int:
        """Store the ``styles`` of tracks that ``tagger`` has not tagged as its tags: for a store
        whose vectors that very model made (its tags are its styles), so it is not run twice.
        Returns how many tracks gained tags."""
        with self._transaction() as con:
            row = con.execute("SELECT count(DISTINCT track_id) FROM styles WHERE track_id NOT IN "
                              "(SELECT track_id FROM sound_tags WHERE tagger = ?)", [tagger]).fetchone()
            con.execute("INSERT INTO sound_tags SELECT track_id, ?, label, activation FROM styles WHERE track_id "
                        "NOT IN (SELECT track_id FROM sound_tags WHERE tagger = ?)", [tagger, tagger])
        return int(row[0]) if row else 0

    def _replaces_vectors(self, records: Sequence[TrackRecord]) -> bool:
        """Whether writing ``records`` replaces a stored vector (a changed file), not only adds."""
        row = self._db.con.execute("SELECT count(*) FROM embeddings e JOIN tracks t ON t.id = e.track_id "
                                "WHERE t.path IN (SELECT unnest(?::VARCHAR[]))",
                                [[db_path(r.path) for r in records]]).fetchone()
        return bool(row and row[0])

    def record_failure(self, path: str, stage: str, error: str) -> None:
        """Record (or replace) why ``path`` could not be indexed."""
        self._db.con.execute("INSERT OR REPLACE INTO failures (path, stage, error, failed_at) "
                          "VALUES (?, ?, ?, current_timestamp)", [db_path(path), stage, error])

    def forget_failures(self, paths: Sequence[str]) -> None:
        """Drop the failure rows of ``paths`` (files that are gone, folders readable again)."""
        if paths:
            self._db.con.execute("DELETE FROM failures WHERE path IN (SELECT unnest(?::VARCHAR[]))",
                              [[db_path(p) for p in paths]])

    def start_run(self, roots: Iterable[str], settings: dict[str, Any] | None = None) -> int:
        """Record an index run; ``settings`` says how the model ran (precision, patchout, window
        budget, ...), which may differ between runs of one store without changing its model."""
        row = self._db.con.execute(
            "INSERT INTO runs (started_at, model, roots, status, settings) VALUES (?, ?, ?, 'running', ?) "
            "RETURNING id",
            [datetime.now(UTC).replace(tzinfo=None), self.manifest.model.id, json.dumps(list(roots)),
             json.dumps(settings or {}, sort_keys=True)],
        ).fetchone()
        assert row is not None
        return int(row[0])

    def finish_run(self, run_id: int, *, status: str, counts: dict[str, int]) -> None:
        self._db.con.execute(
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
        with self._db.lock, self._cursor() as cur:
            self._index = None
            index, params = freshness.load_or_build(self.path, cur, self.manifest.model, self.index_kind, save=True)
            self._index = index
            self._index_stamp = stamp(self.path / SIDECAR_NAME)
        n = int(index.ntotal)
        counts = {"tracks": self.count("tracks"), "embeddings": n, "failures": self.count("failures")}
        self.manifest = replace(self.manifest, counts=counts,
                                index={**params, "ntotal": n, "ids_checksum": ids_checksum(index_ids(index))})
        write_manifest(self.path, self.manifest)


def _check_finite(rec: TrackRecord) -> None:
    """Refuse a record with a NaN or infinite value where FAISS and the map need numbers."""
    parts = nonfinite_parts(rec.vector, rec.windows, rec.styles)
    if parts:
        raise NonFiniteVector(rec.path, ", ".join(parts))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _disk_full(exc: BaseException) -> bool:
    return "no space left" in str(exc).lower() or getattr(exc, "errno", None) == 28


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
    return pa.array([None if v is None else str(tag_text(v)) for v in values], pa.string())
