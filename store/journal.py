"""The listening journal: what a person did with each track, as events, in ``STORE/taste.sqlite``.

Events, not aggregates: ``played`` (seconds heard, of how many), ``skipped`` (at which second),
``liked``, ``disliked``, and ``undo`` (of an earlier event, by its id). "Liked now" is derived from
them (:mod:`store.taste`); nothing recorded is ever rewritten, so a rule can change later and
still read the whole history.

**Why SQLite, beside DuckDB.** DuckDB lets one process write a file at a time, and an ``index`` run
holds ``library.duckdb`` for minutes; a player's scrobble must not wait for it, and the explorer,
``musicmap like`` and a player may all record at once. SQLite in WAL mode takes short write locks
from any number of processes (``busy_timeout``), commits with an fsync (``synchronous=FULL``) before
it answers, so an acknowledged event survives a SIGKILL or a power cut, and it ships with Python.
The journal is small (a year of heavy listening is ~10⁵ rows) and is read whole into memory.

**Identity.** Each event keeps the track's id and, beside it, the file's path and fingerprint at
the time: an id survives re-indexing and moves (the indexer keeps it); a pruned track that comes
back gets a new id, and its events find it again by fingerprint, then by path
(:meth:`Journal.resolve`).

**Duplicates.** Each event has a ``key``: the client's own (a scrobble's time, an idempotency key),
or ``source|kind|track|time`` to the millisecond (and the seconds heard or skipped at); a second
event with the same key is recognised and not stored again (the answer says so).
"""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .errors import InvalidQuery, StoreError, StoreUnavailable

JOURNAL_NAME = "taste.sqlite"
KINDS = ("played", "skipped", "liked", "disliked")
"""What can happen to a track (``undo`` takes one of them back)."""
STATE_KINDS = ("liked", "disliked")
"""Kinds that are a state: their undo takes back every active one of the track. ``played`` and
``skipped`` happen again and again: their undo takes back the latest."""
SOURCE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@ -]{0,63}$")
MAX_CONTEXT = 2000
"""Characters of an event's context (as JSON) kept at most."""
MAX_SECONDS = 7 * 24 * 3600.0
"""The longest ``seconds`` or ``duration`` taken (a week: a very long file, not a typo's 10¹²)."""
FUTURE_SLACK_S = 300.0
"""An event may be dated this far ahead of the clock (another device's clock); later is refused."""
RATE_PER_S = 200.0
RATE_BURST = 2000.0
"""A flood from one source is refused beyond a burst of 2,000 events, refilled at 200 a second
(:class:`TooManyEvents`); the journal, the disk and the taste model stay bounded."""
MAX_BATCH = 1000
"""Events in one call of :meth:`Journal.record` at most."""
BUSY_TIMEOUT_MS = 10_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    recorded REAL NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('played', 'skipped', 'liked', 'disliked', 'undo')),
    track_id INTEGER NOT NULL,
    path TEXT,
    fingerprint TEXT,
    seconds REAL,
    duration REAL,
    source TEXT NOT NULL,
    context TEXT,
    key TEXT NOT NULL UNIQUE,
    undoes INTEGER REFERENCES events(id)
);
CREATE INDEX IF NOT EXISTS events_track ON events(track_id);
CREATE INDEX IF NOT EXISTS events_at ON events(at);
"""
COLUMNS = ("id", "at", "recorded", "kind", "track_id", "path", "fingerprint", "seconds", "duration", "source",
           "context", "key", "undoes")


class TooManyEvents(InvalidQuery):
    """One source sent more events than :data:`RATE_BURST` at :data:`RATE_PER_S` allows."""

    def __init__(self, source: str, retry_after: float) -> None:
        super().__init__(f"too many events from {source!r}: at most {RATE_BURST:.0f} at once and "
                         f"{RATE_PER_S:.0f} a second; try again in {retry_after:.1f} s")
        self.retry_after = retry_after


class NothingToMix(InvalidQuery):
    """A mix was asked for before anything was liked or played (in the time asked)."""


class NotRecording(StoreError):
    """The journal cannot be written (a read-only folder or file, or the store was opened so)."""


@dataclass(frozen=True)
class Event:
    """One thing that happened to a track. ``at`` is Unix seconds (None: now); ``seconds`` is the
    time heard (``played``) or the second skipped at (``skipped``); ``duration`` the track's
    length when the client knows it; ``source`` who recorded it (``explorer``, ``cli``, ``api``,
    ``subsonic:<client>``); ``context`` the list it was in (``{"list": "similar", "of": 12}``).
    ``undo=True`` takes back the track's earlier ``kind`` event(s) (see :data:`STATE_KINDS`)."""

    kind: str
    track_id: int
    at: float | None = None
    seconds: float | None = None
    duration: float | None = None
    source: str = "api"
    context: dict[str, object] | str | None = None
    key: str | None = None
    undo: bool = False

    def checked(self, now: float) -> Event:
        """This event with ``at`` filled in, or :class:`InvalidQuery` naming what is wrong."""
        if self.kind not in KINDS:
            raise InvalidQuery(f"event kind {self.kind!r}: choose one of {', '.join(KINDS)}")
        if isinstance(self.track_id, bool) or not isinstance(self.track_id, int) or self.track_id < 0:
            raise InvalidQuery(f"track id {self.track_id!r}: a whole number")
        at = now if self.at is None else self.at
        if not isinstance(at, (int, float)) or not math.isfinite(at) or at < 0:
            raise InvalidQuery(f"event time {self.at!r}: Unix seconds from 1970 on")
        if at > now + FUTURE_SLACK_S:
            raise InvalidQuery(f"event time {at:.0f} is {at - now:.0f} s in the future (the clock allows "
                               f"{FUTURE_SLACK_S:.0f} s)")
        for name in ("seconds", "duration"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or not 0 <= value <= MAX_SECONDS):
                raise InvalidQuery(f"{name} {value!r}: seconds from 0 to {MAX_SECONDS:.0f}")
        if not isinstance(self.source, str) or not SOURCE_RE.match(self.source):
            raise InvalidQuery(f"source {self.source!r}: 1-64 letters, digits and _.:@- (explorer, cli, "
                               "subsonic:Feishin ...)")
        if self.key is not None and (not isinstance(self.key, str) or not 0 < len(self.key) <= 200):
            raise InvalidQuery("key: 1-200 characters")
        context = self.context
        if context is not None and not isinstance(context, str):
            try:
                context = json.dumps(context, ensure_ascii=False, sort_keys=True)
            except (TypeError, ValueError) as exc:
                raise InvalidQuery(f"context is not JSON: {exc}") from None
        if context is not None and len(context) > MAX_CONTEXT:
            raise InvalidQuery(f"context: at most {MAX_CONTEXT} characters, got {len(context)}")
        return Event(self.kind, int(self.track_id), float(at), self.seconds, self.duration, self.source, context,
                     self.key, bool(self.undo))

    def dedupe_key(self) -> str:
        if self.key is not None:
            return f"{self.source}|{self.key}"
        assert self.at is not None
        seconds = "" if self.seconds is None else f"|{self.seconds:.3f}"
        return f"{self.source}|{'undo ' if self.undo else ''}{self.kind}|{self.track_id}|{self.at:.3f}{seconds}"


@dataclass(frozen=True)
class Recorded:
    """What became of one event: ``ids`` of the rows written (an undo may take back several
    events: one row each), ``duplicate`` when it had been recorded before (nothing written)."""

    event: Event
    ids: tuple[int, ...] = ()
    duplicate: bool = False
    undone: tuple[int, ...] = field(default=())

    def as_json(self) -> dict[str, object]:
        e = self.event
        return {"kind": e.kind, "track_id": e.track_id, "at": e.at, "undo": e.undo, "ids": list(self.ids),
                "duplicate": self.duplicate, "undone": list(self.undone)}


class Journal:
    """The journal of one store folder. Thread-safe; any number of processes may write at once.

    ``read_only``: never write (the file is opened read-only, or not at all while it does not
    exist); :meth:`record` then raises :class:`NotRecording`. A folder that cannot be written
    makes the journal read-only by itself, and :attr:`why_not` says why.
    """

    def __init__(self, folder: Path, *, read_only: bool = False) -> None:
        self.path = Path(folder) / JOURNAL_NAME
        self._lock = threading.Lock()
        self._con: sqlite3.Connection | None = None
        self._buckets: dict[str, tuple[float, float]] = {}
        self.why_not: str | None = None
        """Why nothing can be recorded (None: it can)."""
        if read_only:
            self.stop_recording()
        elif not os.access(folder, os.W_OK) or (self.path.exists() and not os.access(self.path, os.W_OK)):
            self.why_not = f"{self.path if self.path.exists() else folder} is not writable"

    def stop_recording(self) -> None:
        """From now on :meth:`record` and :meth:`forget` refuse (reading goes on)."""
        self.why_not = "the store was opened read-only"

    @property
    def writable(self) -> bool:
        return self.why_not is None

    def _connect(self, *, create: bool = False) -> sqlite3.Connection | None:
        """The connection (opened once); None while there is no journal file yet and ``create`` is
        False (reading never makes one: a store nobody recorded in stays as it was)."""
        if self._con is not None:
            return self._con
        if not create and not self.path.is_file():
            return None
        try:
            if self.writable:
                con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False,
                                      isolation_level=None)
                con.execute("PRAGMA journal_mode=WAL")
                con.execute("PRAGMA synchronous=FULL")
                con.executescript(SCHEMA)
            elif self.path.is_file():
                con = sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000,
                                      check_same_thread=False, isolation_level=None)
            else:
                return None
            con.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open the listening journal {self.path}: {exc}") from exc
        self._con = con
        return con

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None

    def stamp(self) -> tuple[int, ...]:
        """Changes whenever the journal does (any process): the main file's and its WAL's size and time."""
        out: list[int] = []
        for p in (self.path, self.path.with_name(JOURNAL_NAME + "-wal")):
            try:
                st = p.stat()
                out += [st.st_size, st.st_mtime_ns]
            except OSError:
                out += [0, 0]
        return tuple(out)

    def _admit(self, source: str, n: int, now: float) -> None:
        tokens, last = self._buckets.get(source, (RATE_BURST, now))
        tokens = min(RATE_BURST, tokens + (now - last) * RATE_PER_S)
        if n > tokens:
            raise TooManyEvents(source, (n - tokens) / RATE_PER_S)
        self._buckets[source] = (tokens - n, now)

    def record(self, events: Sequence[Event], identity: dict[int, tuple[str | None, str | None]]) -> list[Recorded]:
        """Write ``events`` (checked first: a bad one refuses the whole call, nothing written) in
        one transaction, committed to disk before this returns. ``identity``: each track's
        ``(path, fingerprint)``, kept beside its id.

        Raises
        ------
        InvalidQuery
            A bad event (named), more than :data:`MAX_BATCH`, or :class:`TooManyEvents`.
        NotRecording
            The journal is read-only.
        """
        if self.why_not is not None:
            raise NotRecording(f"cannot record listening events: {self.why_not}")
        if len(events) > MAX_BATCH:
            raise InvalidQuery(f"at most {MAX_BATCH} events at once, got {len(events)}")
        now = time.time()
        checked = [e.checked(now) for e in events]
        out: list[Recorded] = []
        with self._lock:
            for source in {e.source for e in checked}:
                self._admit(source, sum(e.source == source for e in checked), now)
            con = self._connect(create=True)
            assert con is not None
            try:
                con.execute("BEGIN IMMEDIATE")
                for e in checked:
                    out.append(self._write(con, e, identity.get(e.track_id, (None, None)), now))
                con.execute("COMMIT")
            except sqlite3.Error as exc:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise StoreUnavailable(f"could not record in {self.path}: {exc}") from exc
        return out

    @staticmethod
    def _write(con: sqlite3.Connection, e: Event, ident: tuple[str | None, str | None], now: float) -> Recorded:
        key = e.dedupe_key()
        if con.execute("SELECT 1 FROM events WHERE key = ?", (key,)).fetchone():
            return Recorded(e, duplicate=True)
        undoes: list[int | None] = [None]
        if e.undo:
            active = [r[0] for r in con.execute(
                "SELECT id FROM events e WHERE track_id = ? AND kind = ? AND NOT EXISTS "
                "(SELECT 1 FROM events u WHERE u.undoes = e.id) ORDER BY at DESC, id DESC", (e.track_id, e.kind))]
            if not active:
                return Recorded(e)
            undoes = list(active if e.kind in STATE_KINDS else active[:1])
        ids: list[int] = []
        for i, target in enumerate(undoes):
            cur = con.execute(
                "INSERT INTO events (at, recorded, kind, track_id, path, fingerprint, seconds, duration, source, "
                "context, key, undoes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (e.at, now, "undo" if e.undo else e.kind, e.track_id, ident[0], ident[1], e.seconds, e.duration,
                 e.source, e.context, key if i == 0 else f"{key}#{i}", target))
            ids.append(int(cur.lastrowid or 0))
        return Recorded(e, ids=tuple(ids), undone=tuple(u for u in undoes if u is not None))

    def events(self, *, since: float | None = None, track_ids: Iterable[int] | None = None,
               limit: int | None = None) -> pd.DataFrame:
        """Events (newest last) as a DataFrame with :data:`COLUMNS`; undo rows included (``kind``
        ``undo``, ``undoes`` the id taken back)."""
        with self._lock:
            con = self._connect()
            if con is None:
                return pd.DataFrame({c: [] for c in COLUMNS})
            sql = f"SELECT {', '.join(COLUMNS)} FROM events WHERE 1=1"
            params: list[object] = []
            if since is not None:
                sql += " AND at >= ?"
                params.append(float(since))
            if track_ids is not None:
                ids = [int(t) for t in track_ids]
                sql += f" AND track_id IN ({', '.join('?' * len(ids)) or 'NULL'})"
                params += ids
            sql += " ORDER BY at, id"
            if limit is not None:
                sql = f"SELECT * FROM ({sql.replace(' ORDER BY at, id', ' ORDER BY at DESC, id DESC')} LIMIT ?) " \
                      "ORDER BY at, id"
                params.append(int(limit))
            try:
                rows = con.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"could not read the listening journal {self.path}: {exc}") from exc
        return pd.DataFrame(rows, columns=list(COLUMNS))

    def count(self) -> int:
        with self._lock:
            con = self._connect()
            return 0 if con is None else int(con.execute("SELECT count(*) FROM events").fetchone()[0])

    def forget(self, track_ids: Sequence[int] | None = None) -> int:
        """Delete every event (``track_ids`` None) or those of the given tracks, undo rows
        included; returns how many rows went. The file itself stays (an empty journal)."""
        if self.why_not is not None:
            raise NotRecording(f"cannot forget listening events: {self.why_not}")
        with self._lock:
            con = self._connect()
            if con is None:
                return 0
            if track_ids is None:
                n = con.execute("DELETE FROM events").rowcount
            else:
                ids = [int(t) for t in track_ids]
                marks = ", ".join("?" * len(ids)) or "NULL"
                n = con.execute(f"DELETE FROM events WHERE track_id IN ({marks})", ids).rowcount
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            con.execute("VACUUM")  # forgotten means gone from the file too
        return int(n)
