"""The store folder: DuckDB (source of truth) + FAISS (accelerator) + manifest.

A store is one self-describing folder::

    STORE/
      library.duckdb    tracks, embeddings, windows, styles, sound_tags, projections,
                        projection_info, failures, runs, meta (the source of truth)
      vectors.faiss     inner-product index keyed by track id: flat, HNSW (float16) or IVF-PQ by
                        size; loaded, extended or rebuilt when stale (``freshness.py``)
      vectors.json      what the FAISS file was built from (generation, rewrites, model, ids)
      manifest.json     model, normalisation, metric, index type, package versions, counts
      maps/NAME.npz     what map NAME needs to place new tracks (written by the indexer)

Open it with :meth:`Store.open` (read-only: SQL, similarity, exports, the explorer) or
:meth:`Store.open_for_indexing` (creates the folder, checks the model, returns a
:class:`store.writer.WritableStore`). This module is the reading side; the pieces it stands on
live beside it: holding the file between processes (``sharing.py``), the FAISS file's freshness
(``freshness.py``), the search (``search.py``), the SQL sandbox (``sql.py``), the schema and its
migrations (``schema.py``), writing (``writer.py``), genre groups (``genres.py``). Naming a track by
id, file or words has one rule here, :meth:`Store.resolve_track`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Unpack, cast, overload

import duckdb
import faiss
import numpy as np
import pandas as pd

from . import freshness, listening, schema, search, sql
from .errors import InvalidQuery, NoMatchingTrack, StoreError, TrackNotFound
from .find import FindOptions, FindResult, SoundTags, run_find
from .genres import NO_GENRE, GenreGroups
from .journal import Event, Journal, NothingToMix, Recorded
from .manifest import Manifest, ModelInfo, read_manifest
from .paths import db_path, fs_path
from .search import SearchOptions, SimilarOptions, VarietyOptions
from .sharing import CONFIG, LOCK_WAIT_S, SharedConnection, connect, stamp
from .taste import Closeness, MixItem, Steer, Taste, closeness, derive, mix, resolve_ids
from .types import KnownFile, MapInfo, Neighbour, SQLResult, TrackRow, is_whole_number
from .vectors import SIDECAR_NAME, index_ids

if TYPE_CHECKING:
    from .writer import WritableStore

logger = logging.getLogger(__name__)

DB_NAME = "library.duckdb"
OWN_ENTRIES = frozenset({"shards"})
"""What musicmap may write into a store folder before the store itself exists: ``shards/``, where
``musicmap index --engine ray`` stages its Parquet shards by default (ingested afterwards)."""

MIX_SINCE_S = 30 * 86400.0
"""A mix starts from what was played and liked in the last 30 days unless told otherwise."""
ROW_CACHE = 20_000
"""Track rows kept in memory while a connection stays open (see ``Store.track_rows``)."""


class Store:
    """A musicmap store folder, read-only. Use :meth:`open` (or :meth:`open_for_indexing` for a
    :class:`~store.writer.WritableStore`), then :meth:`close`."""

    read_only: ClassVar[bool] = True

    def __init__(self, path: Path, connect_db: Callable[[], duckdb.DuckDBPyConnection], manifest: Manifest, *,
                 shared: bool = False) -> None:
        self.path = path
        self.manifest = manifest
        self._db = SharedConnection(path, connect_db, shared=shared, on_open=self._reopened,
                                    on_release=lambda: self._sandbox.close())
        self._row_cache: dict[int, TrackRow] = {}
        self._identities: dict[int, tuple[str | None, str | None]] = {}
        """Track id → (path, fingerprint) for :meth:`record`, kept across connections: an id names
        one track for good (a pruned track that comes back gets a new one), so recording an event
        of a track this process has seen never waits for the library while an index run writes it."""
        self._genre_cache: tuple[int, GenreGroups] | None = None  # (connection epoch, groups)
        self._index: faiss.Index | None = None
        self._index_stamp: tuple[int, int] | None = None
        self._sound_tags: tuple[object, SoundTags] | None = None
        self._journal: Journal | None = None
        self._steer: tuple[object, Steer | None] | None = None
        self._closeness: tuple[object, Closeness] | None = None
        self._record_events = True
        self._sandbox = sql.Sandbox(self._new_cursor, lambda: self.index, lambda: self._index)
        self.index_kind = "auto"
        """The FAISS index type a rebuild makes: ``auto`` (by size), ``flat``, ``hnsw`` or ``ivfpq``."""

    def _reopened(self) -> None:
        """A new connection: what was cached from the last one may be stale (another process
        may have written in between)."""
        self._row_cache.clear()
        if self._index is not None and self._index_stamp != stamp(self.path / SIDECAR_NAME):
            self._index = None  # the writer saved a newer FAISS index: load it on next use
        if self.read_only and (self.path / "manifest.json").is_file():
            self.manifest = read_manifest(self.path)

    def _new_cursor(self) -> duckdb.DuckDBPyConnection:
        with self._db.lock:
            return self._db.con.cursor()

    @property
    def shared(self) -> bool:
        """Whether the store holds its file only while reading (see :mod:`store.sharing`)."""
        return self._db.shared

    # --- opening --------------------------------------------------------------------------

    @overload
    @classmethod
    def open(cls, path: str | Path, *, read_only: Literal[True] = ..., memory_limit: str = ...,
             shared: bool = ..., wait: float = ...) -> Store: ...

    @overload
    @classmethod
    def open(cls, path: str | Path, *, read_only: Literal[False], memory_limit: str = ...,
             shared: bool = ..., wait: float = ...) -> WritableStore: ...

    @classmethod
    def open(cls, path: str | Path, *, read_only: bool = True, memory_limit: str = sql.SQL_MEMORY_LIMIT,
             shared: bool = False, wait: float = LOCK_WAIT_S) -> Store:
        """Open an existing store, read-only by default, with external file access disabled.

        ``read_only=False`` gives a :class:`~store.writer.WritableStore` for maintenance that keeps
        the model (``musicmap map``). Read-only stores run user SQL: DuckDB's ``memory_limit``
        applies and its configuration is locked. ``shared``: hold the database file only while
        reading (a long-lived reader such as the explorer, beside an index run). While another
        process writes, opening waits up to ``wait`` seconds for it to let go.

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
        kind: type[Store] = cls
        config = CONFIG
        if read_only:
            config = {**CONFIG, "memory_limit": memory_limit, "lock_configuration": True}
        else:
            from .writer import WritableStore
            kind = WritableStore
        store = kind(folder, lambda: connect(db, read_only=read_only, config=config, wait=wait), manifest,
                     shared=shared)
        with store._db.cursor() as cur:
            schema.check(cur, db)
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

    @staticmethod
    def open_for_indexing(path: str | Path, model: ModelInfo, *, wait: float = LOCK_WAIT_S) -> WritableStore:
        """Open (creating if needed) a store for writing vectors of ``model``: see
        :meth:`store.writer.WritableStore.create`."""
        from .writer import WritableStore
        return WritableStore.create(path, model, wait=wait)

    # --- holding the file -----------------------------------------------------------------

    def release(self) -> None:
        """Close the DuckDB connection until the next use, so another process can take the file
        (DuckDB allows one writing process, or readers, at a time). Shared stores do it after every
        read; the indexer after every committed batch. In-memory state (the FAISS index) is kept."""
        self._db.release()

    def close(self) -> None:
        self._db.close()
        if self._journal is not None:
            self._journal.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def holding(self) -> AbstractContextManager[None]:
        """Keep the connection open for the block: several reads in one block connect once (the
        explorer wraps each request in it); see :meth:`store.sharing.SharedConnection.holding`."""
        return self._db.holding()

    @contextmanager
    def _cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._db.cursor() as cur:
            yield cur

    # --- reading --------------------------------------------------------------------------

    def genre_groups(self) -> GenreGroups:
        """The store's genres grouped by spelling (:mod:`store.genres`): "Game soundtrack" and
        "Game Soundtrack" are one group, shown by its most frequent spelling. Its ``spellings``
        match a group in SQL: ``genre IN (...)``. Kept, as rows are (:meth:`track_rows`), while the
        connection that read them stays open: a full ``GROUP BY`` per ``?genre=`` request otherwise."""
        with self.holding():
            with self._db.lock:
                cached = self._genre_cache
                if cached is not None and self._db.is_open and cached[0] == self._db.epoch:
                    return cached[1]
            with self._cursor() as cur:
                epoch = self._db.epoch  # the connection this cursor reads
                rows = cur.execute("SELECT genre, count(*) FROM tracks WHERE genre IS NOT NULL "
                                   "GROUP BY genre").fetchall()
            groups = GenreGroups.from_counts((str(g), int(n)) for g, n in rows)
            if self.read_only:  # a writer's genres change under it
                with self._db.lock:
                    self._genre_cache = (epoch, groups)
        return groups

    def count(self, table: str) -> int:
        if table not in ("tracks", "embeddings", "windows", "styles", "sound_tags", "failures", "projections", "runs"):
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
        with self._cursor() as cur:
            return freshness.all_vectors(cur, self.manifest.model.dimension)

    @property
    def index(self) -> faiss.Index:
        """The FAISS index, loaded from disk if it matches DuckDB, else brought up to date (saved
        unless the store is read-only); see :mod:`store.freshness`."""
        with self._db.lock:
            if self._index is None:
                with self._cursor() as cur:  # one connection for the whole load
                    self._index, _ = freshness.load_or_build(self.path, cur, self.manifest.model, self.index_kind,
                                                             save=not self.read_only)
                self._index_stamp = stamp(self.path / SIDECAR_NAME)
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
            ids = np.sort(self.filter_ids(where, timeout))
            return len(ids), self.tracks(ids[offset : offset + limit].tolist(), columns=cols)
        with self._cursor() as cur:
            total = int(cur.execute("SELECT count(*) FROM tracks").fetchone()[0])  # type: ignore[index]
            frame = cur.execute(f"SELECT {', '.join(f't.{c}' for c in cols)} FROM tracks t ORDER BY t.id "
                                "LIMIT ? OFFSET ?", [int(limit), int(offset)]).df()
        return total, frame

    def known_files(self) -> dict[str, KnownFile]:
        """Every stored track by path: id, size, mtime, content fingerprint, has a vector."""
        with self._cursor() as cur:
            rows = cur.execute(
                "SELECT t.path, t.path_bytes, t.id, t.size, t.mtime, t.fingerprint, e.track_id IS NOT NULL "
                "FROM tracks t LEFT JOIN embeddings e ON e.track_id = t.id"
            ).fetchall()
        return {fs_path(r[0], r[1]): KnownFile(int(r[2]), int(r[3]), float(r[4]), r[5], bool(r[6]))
                for r in rows}

    def untagged(self, taggers: Sequence[str]) -> dict[str, list[tuple[int, str]]]:
        """For each of ``taggers``, the tracks with a vector that it has not tagged yet, as
        ``(track_id, file path)`` (the file as the file system names it), in id order."""
        out: dict[str, list[tuple[int, str]]] = {}
        with self._cursor() as cur:
            for tagger in taggers:
                rows = cur.execute(
                    "SELECT t.id, t.path, t.path_bytes FROM tracks t JOIN embeddings e ON e.track_id = t.id "
                    "WHERE t.id NOT IN (SELECT track_id FROM sound_tags WHERE tagger = ?) ORDER BY t.id",
                    [tagger]).fetchall()
                out[tagger] = [(int(r[0]), fs_path(r[1], r[2])) for r in rows]
        return out

    def file_path(self, track_id: int) -> str:
        """The file of a track, exactly as the file system names it (also for non-UTF-8 names)."""
        with self._cursor() as cur:
            row = cur.execute("SELECT path, path_bytes FROM tracks WHERE id = ?", [int(track_id)]).fetchone()
        if row is None:
            raise TrackNotFound(track_id, self.path)
        return fs_path(row[0], row[1])

    def track(self, track_id: int) -> TrackRow:
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

    def resolve_track(self, query: int | str | Path) -> int:
        """The id of the track ``query`` names: its id (an int, or digits), a file the store holds,
        or words of its artist and title (the best match of :meth:`find_tracks`; when several
        match, which one is logged). The CLI, the Python API and any other caller name tracks
        this one way.

        Raises
        ------
        TrackNotFound
            An id no track has.
        NoMatchingTrack
            A file the store does not hold, or words no track matches.
        """
        if isinstance(query, (int, np.integer)):
            return int(self.track(int(query))["id"])
        text = str(query).strip()
        if is_whole_number(text):
            self.track(int(text))  # TrackNotFound names it
            return int(text)
        path = Path(text).expanduser()
        if path.is_file():
            track_id = self.track_id_for_path(path)
            if track_id is None:
                raise NoMatchingTrack(f"{path} is not a track of {self.path}; index it first")
            return track_id
        matches = self.find_tracks(text, limit=5)
        if matches.empty:
            raise NoMatchingTrack(f"no track id, file or artist/title matches {text!r}; list the tracks with "
                                  "SQL: SELECT id, artist, title FROM tracks")
        first = int(matches.iloc[0]["id"])
        if len(matches) > 1:
            logger.info("%r matched %d+ tracks; using #%d (%s - %s). Give a track id to choose another.",
                        text, len(matches), first, matches.iloc[0]["artist"], matches.iloc[0]["title"])
        return first

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
               exclude: Sequence[int] = (), timeout: float = 10.0, taste: bool = True) -> list[Neighbour]:
        """Similarity search: seeds (one track id, or several: their centroid) or a raw vector, with
        a SQL filter and variety options (see :mod:`store.search`).

        ``taste`` (the default): once the person has liked, disliked, played or skipped anything
        (:meth:`record`), the list is steered by it (:mod:`store.taste`): disliked tracks never
        appear, tracks near liked ones move up, near disliked or skipped ones down, each with its
        :class:`~store.TasteNote`. ``taste=False`` gives plain similarity.

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
                             dedupe=dedupe, mmr=mmr, min_score=min_score, taste=taste)
        seed_ids = [int(seeds)] if isinstance(seeds, (int, np.integer)) else [int(s) for s in seeds]
        return search.run(self, seed_ids, vector, opts, exclude=exclude, timeout=timeout,
                          steer=self.steer() if opts.taste else None)

    # --- taste: the listening journal (store/journal.py) and what it does (store/taste.py) ----

    @property
    def record_events(self) -> bool:
        """Whether the listening journal may be written (``musicmap serve --no-record`` says no);
        set it False at any time and recording stops."""
        return self._record_events

    @record_events.setter
    def record_events(self, on: bool) -> None:
        self._record_events = bool(on)
        if not on and self._journal is not None:
            self._journal.stop_recording()

    @property
    def journal(self) -> Journal:
        """The listening journal of this store (``taste.sqlite``), opened on first use."""
        if self._journal is None:
            self._journal = Journal(self.path, read_only=not self.record_events)
        return self._journal

    def record(self, events: Sequence[Event]) -> list[Recorded]:
        """Record listening events (:class:`store.Event`): each track must exist now.

        Raises
        ------
        TrackNotFound
            An id that is not a track of the store (never was, or was pruned).
        InvalidQuery
            A bad event (named), too many at once or too fast (:class:`store.TooManyEvents`).
        NotRecording
            The journal cannot be written (read-only).
        """
        ids = sorted({int(e.track_id) for e in events
                      if isinstance(e.track_id, int) and not isinstance(e.track_id, bool)})
        return self.journal.record(events, self._identity(ids))

    def _identity(self, ids: Sequence[int]) -> dict[int, tuple[str | None, str | None]]:
        """(path, fingerprint) of each id, from :attr:`_identities` or else the library (which an
        index run may hold for a moment). Raises TrackNotFound for an id that is no track."""
        identity = {i: self._identities[i] for i in ids if i in self._identities}
        missing = [i for i in ids if i not in identity]
        if missing:
            with self._cursor() as cur:
                rows = cur.execute("SELECT id, path, fingerprint FROM tracks WHERE id IN (SELECT unnest(?::BIGINT[]))",
                                   [missing]).fetchall()
            found = {int(r[0]): (r[1], r[2]) for r in rows}
            for track_id in missing:
                if track_id not in found:
                    raise TrackNotFound(track_id, self.path)
            self._remember(found)
            identity.update(found)
        return identity

    def _remember(self, identities: dict[int, tuple[str | None, str | None]]) -> None:
        if len(self._identities) + len(identities) > ROW_CACHE:
            self._identities.clear()
        self._identities.update(identities)

    def _current_ids(self, events: pd.DataFrame) -> pd.Series:
        """Each event's current track id (:func:`store.taste.resolve_ids`), reading only the tracks
        the events name (by id, fingerprint or path)."""
        if events.empty:
            return pd.Series([], dtype="int64")
        ids = sorted({int(i) for i in events["track_id"]})
        fps = sorted({f for f in events["fingerprint"] if isinstance(f, str)})
        paths = sorted({p for p in events["path"] if isinstance(p, str)})
        with self._cursor() as cur:
            tracks = cur.execute(
                "SELECT id, path, fingerprint FROM tracks WHERE id IN (SELECT unnest(?::BIGINT[])) "
                "OR fingerprint IN (SELECT unnest(?::VARCHAR[])) OR path IN (SELECT unnest(?::VARCHAR[]))",
                [ids, fps, paths]).df()
        return resolve_ids(events, tracks)

    def taste(self, *, since: float | None = None) -> Taste:
        """The person's taste as the journal has it now (:func:`store.taste.derive`); ``since``
        (Unix seconds) counts only the events from then on."""
        events = self.journal.events()
        with self.holding():
            return derive(events, self._current_ids(events), since=since)

    def closeness(self) -> Closeness:
        """The library's scale of "close" (:class:`store.taste.Closeness`), measured once per index."""
        index = self.index
        key = (id(index), int(index.ntotal))
        if self._closeness is None or self._closeness[0] != key:
            with self._cursor() as cur:
                ids = np.asarray(cur.execute("SELECT track_id FROM embeddings").fetchnumpy()["track_id"], np.int64)
            self._closeness = (key, closeness(index, ids))
        return self._closeness[1]

    def steer(self) -> Steer | None:
        """The person's taste bound to this store's vectors, or None while there is none
        (kept until the journal or the index changes)."""
        index = self.index
        key = (self.journal.stamp(), id(index), int(index.ntotal))
        if self._steer is None or self._steer[0] != key:
            taste = self.taste()
            steer = None
            if not taste.empty:
                held = index_ids(index)
                indexed = {i for i in taste.tracks if i in set(held[np.isin(held, list(taste.tracks))].tolist())}
                steer = Steer.bind(taste, index, self.closeness(), indexed)
            self._steer = (key, steer)
        return self._steer[1]

    def mix(self, *, n: int = 30, since: float | None = None, where: str | None = None,
            max_per_artist: int | None = None, max_per_album: int | None = None,
            dedupe: bool = False) -> list[MixItem]:
        """``n`` tracks from what the person played and liked since ``since`` (Unix seconds;
        default 30 days ago) and has not heard since (:func:`store.taste.mix`).

        Raises
        ------
        InvalidQuery
            Nothing liked or played in that time, or a bad option.
        """
        since = time.time() - MIX_SINCE_S if since is None else float(since)
        steer = self.steer()
        if steer is None:
            raise NothingToMix("nothing to mix from yet: no track was liked or played (like a few, or play "
                               "them, then ask again)")
        with self.holding():
            return mix(self, steer, n=n, since=since, where=where, max_per_artist=max_per_artist,
                       max_per_album=max_per_album, dedupe=dedupe)

    def sound_tags(self) -> SoundTags:
        """The tags ``find`` reads (:class:`store.SoundTags`), kept until the database changes."""
        key = (stamp(self.path / DB_NAME), stamp(self.path / (DB_NAME + ".wal")))
        cached = self._sound_tags
        if cached is None or cached[0] != key:
            cached = (key, SoundTags(self._cursor, styles=self.manifest.model.kind == "maest"))
            self._sound_tags = cached
        return cached[1]

    def warm_sound_tags(self) -> int:
        """Read and rank every sound tag now (:meth:`store.find.SoundTags.load_all`), so that no
        later ``find`` waits for its columns; the explorer does it in the background at start.
        Returns how many tags were loaded."""
        with self.holding():
            return self.sound_tags().load_all()

    def find(self, text: str, *, k: int = 10, where: str | None = None, max_per_artist: int | None = None,
             max_per_album: int | None = None, dedupe: bool = False, like: int | None = None,
             centroid: float = 0.0, synonyms: bool = True, fuzzy: bool = True,
             timeout: float = 10.0, taste: bool = True) -> FindResult:
        """Tracks by a description of their sound: ``store.find("calm piano without drums")``, or
        ``like=42`` for that track's neighbours re-ranked by the words (see :mod:`store.find`).

        Returns
        -------
        FindResult
            ``results`` best first, each with what matched; no results and ``reason`` when the text
            has no word to search by or the store has no tags yet.

        Raises
        ------
        StoreError
            Empty or overlong text, a bad option (named), a bad ``where``, an unknown ``like`` track.
        """
        opts = FindOptions(k=k, where=where, max_per_artist=max_per_artist, max_per_album=max_per_album,
                                dedupe=dedupe, like=like, centroid=centroid, synonyms=synonyms, fuzzy=fuzzy)
        with self.holding():
            steer = self.steer() if taste else None
            result = run_find(self, self.sound_tags(), text, opts, timeout=timeout, steer=steer)
            result.taste = steer.taste.summary() if steer is not None else None
            return result

    def track_rows(self, ids: Sequence[int]) -> dict[int, TrackRow]:
        """Rows of ``tracks`` by id, as plain dicts (no DataFrame on the hot path). Rows read
        through the current connection are cached until it closes: while it is open no other
        process can write (DuckDB's lock), and a point lookup costs ~1 ms at 100k tracks."""
        if not len(ids):
            return {}
        with self.holding():
            with self._db.lock:
                epoch = self._db.epoch
                cached = {int(i): self._row_cache[int(i)] for i in ids if int(i) in self._row_cache}
            missing = [int(i) for i in ids if int(i) not in cached]
            if not missing:
                return {k: TrackRow(**v) for k, v in cached.items()}
            wanted = ", ".join(str(i) for i in missing)  # integers only: safe to inline
            with self._cursor() as cur:
                result = cur.execute(f"SELECT * EXCLUDE (path_bytes) FROM tracks WHERE id IN ({wanted})")
                names = [str(c[0]) for c in result.description or ()]
                rows = result.fetchall()
            fetched: dict[int, TrackRow] = {}
            for row in rows:  # the columns are the table's: the TrackRow keys
                item = cast(TrackRow, {k: (v.isoformat() if isinstance(v, datetime) else v)
                                       for k, v in zip(names, row, strict=True)})
                fetched[int(item["id"])] = item
            with self._db.lock:
                if epoch == self._db.epoch and self.read_only:  # a writer's rows change under it
                    if len(self._row_cache) + len(fetched) > ROW_CACHE:
                        self._row_cache.clear()
                    self._row_cache.update(fetched)
                self._remember({i: (r["path"], r.get("fingerprint")) for i, r in fetched.items()})
        return {k: TrackRow(**v) for k, v in {**cached, **fetched}.items()}

    def filter_ids(self, where: str, timeout: float = 10.0) -> np.ndarray:
        """Ids of the tracks matching ``where`` (one boolean SQL expression over ``tracks``, run in
        the SQL sandbox under its limits)."""
        with self.holding():
            return self._sql_sandbox().matching_ids(where, timeout)

    def _sql_sandbox(self) -> sql.Sandbox:
        if not self.read_only:
            raise StoreError("SQL runs on read-only stores only; open the store with Store.open")
        return self._sandbox

    def projection(self, name: str = "tsne") -> pd.DataFrame:
        """Map coordinates joined with display metadata; empty if the projection does not exist.

        ``style`` is the genre part of the track's top predicted Discogs style (``Electronic---Techno``
        → ``Electronic``), NULL without MAEST styles."""
        with self._cursor() as cur:
            has_cluster = schema.has_column(cur, "projections", "cluster")
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

    def library_roots(self) -> list[str]:
        """The library folders index runs were given (not a Ray run's staging URL), longest first."""
        with self._cursor() as cur:
            rows = cur.execute("SELECT DISTINCT roots FROM runs").fetchall()
        found: set[str] = set()
        for (text,) in rows:
            try:
                found.update(str(r) for r in json.loads(text or "[]"))
            except ValueError:
                continue
        return sorted((r for r in found if "://" not in r), key=len, reverse=True)

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
        with self.holding():
            columns, rows, truncated = self._sql_sandbox().run(query, max_rows=max_rows, timeout=timeout)
        return SQLResult(columns, rows, truncated)

    def info(self) -> dict[str, Any]:
        """A summary of the store: model, counts, projections, genres, size on disk."""
        m = self.manifest.model
        with self.holding():  # one connection: the genre groups and the track count agree
            tracks = self.count("tracks")
            genres = _genre_counts(self.genre_groups(), tracks)
            with self._cursor() as cur:
                has_settings = schema.has_column(cur, "runs", "settings")
                last_run = cur.execute("SELECT id, started_at, finished_at, status, scanned, added, updated, "
                                       "unchanged, failed, " + ("settings" if has_settings else "NULL") +
                                       " FROM runs ORDER BY id DESC LIMIT 1").fetchone()
                tagged_row = cur.execute("SELECT count(DISTINCT track_id) FROM sound_tags").fetchone() \
                    if schema.has_column(cur, "sound_tags", "track_id") else None
        tagged = tagged_row[0] if tagged_row else 0
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
            "tracks": tracks,
            "embeddings": self.count("embeddings"),
            "failures": self.count("failures"),
            "sound_tagged": int(tagged),
            "taste": self.taste().summary(),
            "index": dict(self.manifest.index),
            "projections": self.projection_info(),
            "genres": genres,
            "last_run": run,
            "size_bytes": size,
            "created_at": self.manifest.created_at,
        }


def _genre_counts(groups: GenreGroups, tracks: int, top: int = 20) -> dict[str, int]:
    """The ``top`` largest genre groups (:mod:`store.genres`) and their tracks, the rest of the
    ``tracks`` (no genre: none, empty, only punctuation) as "(none)", the largest first (ties: by name)."""
    rows = list(groups.counts().items())
    none = tracks - sum(groups.tracks.values())
    if none:
        rows.append((NO_GENRE, none))
    rows.sort(key=lambda row: (-row[1], row[0]))
    return dict(rows[:top])
