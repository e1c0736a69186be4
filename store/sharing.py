"""One DuckDB file, several processes: how a store holds its connection, and lets go of it.

DuckDB lets one process write a database file, or several read it, never both at once. musicmap's
explorer reads while an index run writes, so neither may keep the file for long:

- :class:`SharedConnection` opens the connection on first use and closes it on :meth:`release`.
  Reads happen inside :meth:`~SharedConnection.holding` blocks; a *shared* connection (a long-lived
  reader such as the explorer) lets go :data:`LINGER_S` after the last block ends, at once when a
  writer is waiting.
- A writer kept out by the lock leaves a :data:`WRITER_WAITING` marker (its pid) in the folder
  while :func:`connect` retries; shared readers see it, finish their current reads, close the file
  and wait for the writer's turn. The indexer releases after every committed batch.
- :attr:`SharedConnection.epoch` counts openings: what was cached from one connection (rows, the
  manifest) is dropped when the next one opens, because another process may have written between.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from .errors import StoreUnavailable

#: Every connection: no access to files other than the database (no read_csv('/etc/passwd'),
#: COPY, ATTACH, INSTALL/LOAD). Same config everywhere, as DuckDB requires within a process.
#: ``allocator_background_threads``: DuckDB's allocator (jemalloc) hands freed memory back to the
#: system from a background thread; without it a query's working memory stays in the process (the
#: explorer's map query at 1M tracks, in a script: 554 MB resident after it and still 553 MB 3 s
#: later; with it 531 → 355 MB).
CONFIG: dict[str, Any] = {"enable_external_access": False, "allocator_background_threads": True}

LOCK_WAIT_S = 30.0
"""How long opening a store waits while another process holds the database file."""
LINGER_S = 0.5
"""A shared store keeps its connection this long after the last reader (reconnecting costs ~30 ms
at 100k tracks), unless a writer is waiting for the file (:data:`WRITER_WAITING`)."""
WRITER_WAITING = ".writer-waiting"
"""Marker file a writer puts in the store folder while DuckDB's lock keeps it out: shared readers
then let go of the file as soon as their current reads end, and wait for the writer's turn."""


class SharedConnection:
    """The connection of one store: opened by ``connect`` on use, closed by :meth:`release`.

    ``on_open`` runs (under :attr:`lock`) each time a new connection opens; ``on_release`` just
    before one closes (to close cursors made from it).
    """

    def __init__(self, folder: Path, connect: Callable[[], duckdb.DuckDBPyConnection], *, shared: bool,
                 on_open: Callable[[], None] = lambda: None,
                 on_release: Callable[[], None] = lambda: None) -> None:
        self.folder = folder
        self.shared = shared
        self.lock = threading.RLock()
        """Guards the connection and whatever the store caches from it."""
        self.epoch = 0
        """Bumped whenever a connection opens: what was cached from the last one is stale."""
        self._connect = connect
        self._on_open = on_open
        self._on_release = on_release
        self._conn: duckdb.DuckDBPyConnection | None = None
        self._users = 0
        self._idle = threading.Condition(self.lock)  # notified when the last user leaves
        self._linger: threading.Timer | None = None
        self._last_use = 0.0
        self._depth = threading.local()  # how deep each thread is in holding()

    def adopt(self, con: duckdb.DuckDBPyConnection) -> None:
        """Use ``con``, already open (a writer's first connection, made while creating the store)."""
        with self.lock:
            self._conn = con
            self.epoch += 1

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection, opened on first use (and again after :meth:`release`)."""
        with self.lock:
            if self._conn is None:
                self._conn = self._connect()
                self.epoch += 1
                self._on_open()
            return self._conn

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    def release(self) -> None:
        """Close the connection until the next use, unless reads are going on."""
        with self.lock:
            if self._users:
                return
            self._on_release()
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def close(self) -> None:
        """Close now, whoever is reading (the store is being closed)."""
        with self.lock:
            self._users = 0
            if self._linger is not None:
                self._linger.cancel()
                self._linger = None
            self.release()

    @contextmanager
    def holding(self) -> Iterator[None]:
        """Keep the connection open for the block: several reads in one block connect once. A
        shared connection stays open :data:`LINGER_S` longer, and is given up at once, between
        reads, when a writer is waiting for the file."""
        depth = getattr(self._depth, "n", 0)  # this thread's nesting: only its outermost entry yields
        if self.shared and not depth and self.writer_waiting():
            self._yield_to_writer()
        with self.lock:
            self._users += 1
        self._depth.n = depth + 1
        try:
            yield
        finally:
            self._depth.n = depth
            with self.lock:
                self._users -= 1
                if self.shared and not self._users:
                    self._idle.notify_all()
                    if self.writer_waiting():
                        self.release()
                    else:
                        self._release_later()

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor of the held connection for the block (DuckDB connections are not safe to
        share across threads: one cursor per call)."""
        with self.holding():
            with self.lock:
                cur = self.con.cursor()
            try:
                yield cur
            finally:
                cur.close()

    def writer_waiting(self) -> bool:
        """A live writer's marker is in the folder (a dead writer's is removed)."""
        marker = self.folder / WRITER_WAITING
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
        with self.lock:
            if self._conn is not None:
                self._idle.wait_for(lambda: not self._users, timeout=patience)
                self.release()
        deadline = time.monotonic() + patience
        while self.writer_waiting() and time.monotonic() < deadline:
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
        with self.lock:
            self._linger = None
            if self._users:
                return  # the reads going on re-arm it when they end
            left = self._last_use + LINGER_S - time.monotonic()
            if left > 0.01:
                self._arm(left)
            else:
                self.release()


def connect(db: Path, *, read_only: bool, config: dict[str, Any], wait: float) -> duckdb.DuckDBPyConnection:
    """``duckdb.connect``, waiting up to ``wait`` seconds while another process holds the file (a
    writer leaves its :data:`WRITER_WAITING` marker meanwhile).

    Raises
    ------
    StoreUnavailable
        The file stayed busy for ``wait`` seconds, or cannot be opened.
    """
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


def stamp(path: Path) -> tuple[int, int] | None:
    """(mtime in ns, size) of ``path``, or None when it is missing: has a file changed?"""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size
