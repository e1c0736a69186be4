"""One index run's bookkeeping, the same for both engines (``index`` here, ``ingest`` of Ray shards).

    with IndexRun.open(store, report, roots, map_name=...) as run:
                                     the run is recorded in ``runs`` as running; at the end of the
                                     block its tail: the map, the store closed, the run's time
      run.add(record)                tracks written in transactions of ``commit_every`` (a
                                     non-finite embedding recorded as a failure instead)
      run.fail(path, stage, reason)  a ``failures`` row; the run goes on
      run.finish(status)             the wrap-up: the last tracks saved, FAISS brought up to date,
                                     the run recorded with its counts
      run.update_map(name)           new tracks placed into the map (or a refit): reported, never fatal

The wrap-up runs however the run ends. After an error (a full disk...) each of its steps is best
effort: its own failure is logged and the first error is the one the user sees. After an
interruption (Ctrl-C) what was finished is saved and the run is recorded as ``interrupted``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from store import StoreError, TrackRecord, WritableStore

from .errors import FileFailure
from .finite import check_record

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, str, float], None]
"""``progress(done, total, path, audio_seconds_so_far)``, called as files are finished."""


@dataclass
class IndexReport:
    """What one index run did (also stored in ``runs``)."""

    store: str
    model: str
    scanned: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    moved: int = 0
    missing: int = 0
    pruned: int = 0
    failed: int = 0
    seconds: float = 0.0
    audio_seconds: float = 0.0
    status: str = "running"
    failures: list[dict[str, str]] = field(default_factory=list)
    map: dict[str, Any] | None = None
    """What updating the map did at the end of the run (``map_name``), or why it failed."""
    tags: dict[str, Any] | None = None
    """What the tag stage did (:class:`indexer.tagger.TagReport`), None when it did not run."""
    durations: dict[str, float] = field(default_factory=dict)
    """Seconds per stage: ``scan`` (listing and stat), ``files`` (decode, embed, write), ``index``
    (bringing FAISS up to date), ``map``, ``total``."""

    @property
    def indexed(self) -> int:
        """Files embedded in this run (new or changed)."""
        return self.added + self.updated

    def counts(self) -> dict[str, int]:
        return {"scanned": self.scanned, "added": self.added, "updated": self.updated,
                "unchanged": self.unchanged, "failed": self.failed}

    def to_dict(self) -> dict[str, Any]:
        """Everything, plus ``indexed`` (added + updated) and ``skipped`` (unchanged: one stat each)."""
        return {**asdict(self), "indexed": self.indexed, "skipped": self.unchanged}


class IndexRun:
    """The writes and the wrap-up of one run into ``store`` (opened for indexing by the caller, who
    also closes it: :meth:`open` does). ``started`` is when the run began (``time.monotonic()``),
    for its report."""

    def __init__(self, store: WritableStore, report: IndexReport, roots: Iterable[str], *,
                 settings: dict[str, Any] | None = None, commit_every: int = 32,
                 started: float | None = None) -> None:
        self.store = store
        self.report = report
        self.settings = settings
        self.commit_every = commit_every
        self.started = time.monotonic() if started is None else started
        self.files_started = time.monotonic()
        self.pending: list[TrackRecord] = []
        self.run_id = store.start_run(roots, settings)

    @classmethod
    @contextmanager
    def open(cls, store: WritableStore, report: IndexReport, roots: Iterable[str], *,
             settings: dict[str, Any] | None = None, commit_every: int = 32, started: float | None = None,
             map_name: str | None = None) -> Iterator[IndexRun]:
        """A run into ``store``, which it owns from here: the block does the work and calls
        :meth:`finish`; then the run's tail, the same for both engines: map ``map_name`` brought up
        to date when the run ended ``ok`` (:meth:`update_map`), the store closed (always, also
        when the run could not start or the block raised), and ``report.durations["total"]``.

        Parameters are those of :class:`IndexRun`, plus ``map_name`` (None: no map is touched).
        """
        try:
            run = cls(store, report, roots, settings=settings, commit_every=commit_every, started=started)
            yield run
            if map_name is not None and report.status == "ok":
                run.update_map(map_name)
        finally:
            store.close()
        report.durations["total"] = round(time.monotonic() - run.started, 3)

    def add(self, record: TrackRecord, *, updated: bool) -> bool:
        """Queue a finished track (``updated``: the store held an older version of the file), or,
        when its embedding is not finite, record the file as a failure instead (:mod:`indexer.finite`;
        every engine's tracks come through here). Returns whether the track was queued."""
        try:  # a NaN vector is a failure, never a track
            check_record(record, self.settings)
        except FileFailure as exc:
            self.fail(record.path, exc.stage, exc.reason)
            return False
        self.pending.append(record)
        if updated:
            self.report.updated += 1
        else:
            self.report.added += 1
        if len(self.pending) >= self.commit_every:
            self.flush()
        return True

    def flush(self) -> None:
        """Write the queued tracks in one transaction, then let readers in (``musicmap serve``, ``sql``
        get the database file between batches)."""
        if self.pending:
            self.store.write_tracks(self.pending)
            logger.debug("saved %d tracks (%d added, %d updated so far)", len(self.pending), self.report.added,
                         self.report.updated)
            self.pending.clear()
        self.store.release()

    def fail(self, path: str, stage: str, reason: str, *, log: bool = True) -> None:
        """Record a file that failed (the next run tries it again)."""
        self.report.failed += 1
        self.report.failures.append({"path": path, "stage": stage, "error": reason})
        self.store.record_failure(path, stage, reason)
        self.store.release()
        if log:
            logger.warning("failed %s (%s): %s", path, stage, reason)

    def finish(self, status: str) -> None:
        """The wrap-up (``status``: ``ok``, ``interrupted`` or ``error``): save the last tracks, bring
        FAISS up to date, record the run. After an error each step is best effort."""
        wrap_up = _best_effort if status == "error" else _must
        report = self.report
        try:
            wrap_up(self.flush, "saving the last tracks")  # keep what was finished before an interruption
        finally:
            report.durations["files"] = round(time.monotonic() - self.files_started, 3)
            synced = time.monotonic()
            try:
                wrap_up(self.store.sync, "updating the FAISS index")
            finally:
                report.durations["index"] = round(time.monotonic() - synced, 3)
                report.status = status
                report.seconds = round(time.monotonic() - self.started, 3)
                wrap_up(lambda: self.store.finish_run(self.run_id, status=status, counts=report.counts()),
                        "recording the run")

    def update_map(self, name: str) -> None:
        """Keep map ``name`` current after a finished run: new tracks placed, or a refit
        (:func:`indexer.projection.update_map`). A failure here is reported in ``report.map``,
        never the run's: the index itself is complete and saved."""
        if self.store.count("embeddings") == 0:
            return
        from .projection import update_map

        started = time.monotonic()
        try:
            result = update_map(self.store, name=name)
        except KeyboardInterrupt:  # Ctrl-C during the map: the index is complete, the old map stays
            logger.warning("map update interrupted; the index is complete. Run musicmap map to update the map")
            self.report.map = {"name": name, "action": "interrupted"}
            return
        except Exception as exc:
            logger.warning("the map could not be updated (%s: %s); run musicmap map", type(exc).__name__, exc)
            self.report.map = {"name": name, "action": "failed", "error": f"{type(exc).__name__}: {exc}"}
            return
        finally:
            self.report.durations["map"] = round(time.monotonic() - started, 3)
        keep = ("name", "action", "n_tracks", "placed", "method", "reason")
        self.report.map = {**{k: result[k] for k in keep if k in result},
                           "seconds": round(time.monotonic() - started, 2)}


def _must(fn: Callable[[], Any], _what: str) -> None:
    fn()


def _best_effort(fn: Callable[[], Any], what: str) -> None:
    try:
        fn()
    except StoreError as exc:
        logger.warning("while stopping after an error, %s failed too: %s", what, exc)
