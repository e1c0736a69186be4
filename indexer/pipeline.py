"""``musicmap index``: a chain of small stages from files to the store.

    scan ─> skip unchanged (one stat) ─> read tags ─> decode ─> embed ─> write in batches
                                              └──────── failure (path, stage, reason) ──> failures

Files longer than ``stream_seconds`` (default :data:`STREAM_SECONDS`) are never decoded whole:
embedders with ``embed_stream`` read them as a stream of blocks, window by window (in the
worker when it holds the embedder, else in the main process with decoding running ahead in a
thread), so a two-hour mix costs a few MB, not 460 MB.

Stages *tags → decode → embed* run per file. With ``workers > 1`` they run in a pool of
worker processes (decode always; embedding too when the embedder is ``parallel_safe``,
i.e. CPU-only and cheap to ship, like ``features``). Results are written to the store in
transactions of ``commit_every`` tracks, so an interrupted run keeps what it finished and
the next run continues. One bad file never stops a run: it becomes a ``failures`` row
and is retried next time.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from store import Store, StoreError, TrackRecord
from store.store import db_path

from .decode import AudioSource, load_audio, probe_seconds
from .embedders.base import Embedder, Embedding, can_stream, embed_many
from .errors import FileFailure, IndexerError
from .metadata import CATEGORY_SOURCES, apply_metadata, read_metadata
from .scan import fingerprint, scan
from .tags import read_tags

logger = logging.getLogger(__name__)

STREAM_SECONDS = 20 * 60.0
"""Files longer than this (by their tags or header) are decoded and embedded as a stream."""

ProgressFn = Callable[[int, int, str, float], None]
"""``progress(done, total, path, audio_seconds_so_far)``, called after each processed file."""


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
    durations: dict[str, float] = field(default_factory=dict)
    """Seconds per stage: ``scan`` (listing and stat), ``files`` (decode, embed, write), ``map``, ``total``."""

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


@dataclass(frozen=True)
class _Done:
    path: str
    tags: dict[str, Any]
    embedding: Embedding | None
    audio: np.ndarray | None
    stream: bool = False
    """Long file left for the main process to embed as a stream (neither audio nor embedding)."""


@dataclass(frozen=True)
class _Failed:
    path: str
    stage: str
    reason: str


# Worker-process state: set once per process by the pool initializer.
_worker_embedder: Embedder | None = None
_worker_sr: int = 16_000
_worker_stream_seconds: float | None = None


def _init_worker(embedder: Embedder | None, sr: int, stream_seconds: float | None = None,
                 in_pool: bool = False) -> None:
    global _worker_embedder, _worker_sr, _worker_stream_seconds
    _worker_embedder, _worker_sr, _worker_stream_seconds = embedder, sr, stream_seconds
    if in_pool:  # Ctrl-C is the main process's to handle: it stops the run and saves what is done
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _process_file(path: str) -> _Done | _Failed:
    """Tags → decode (→ embed when this process holds the embedder). Never raises."""
    p = Path(path)
    try:
        try:
            tags = read_tags(p)
        except Exception as exc:  # damaged tags are not fatal: fall back to the file name
            logger.debug("tags of %s unreadable (%s)", p, exc)
            tags = read_tags_fallback(p)
        if _worker_stream_seconds is not None:
            seconds = tags.get("duration") or probe_seconds(p)
            if seconds is not None and seconds > _worker_stream_seconds:
                if tags.get("duration") is None:
                    tags["duration"] = seconds
                if _worker_embedder is None:
                    return _Done(path, tags, None, None, stream=True)
                try:
                    streamed = _worker_embedder.embed_stream(AudioSource(p, _worker_sr))  # type: ignore[attr-defined]
                    return _Done(path, tags, streamed, None)
                except FileFailure:
                    raise
                except Exception as exc:
                    raise FileFailure("embed", f"{type(exc).__name__}: {exc}") from exc
        audio = load_audio(p, _worker_sr)
        if tags.get("duration") is None:
            tags["duration"] = len(audio) / _worker_sr
        if _worker_embedder is None:
            return _Done(path, tags, None, audio)
        try:
            embedding = _worker_embedder.embed(audio)
        except Exception as exc:
            raise FileFailure("embed", f"{type(exc).__name__}: {exc}") from exc
        return _Done(path, tags, embedding, None)
    except FileFailure as exc:
        return _Failed(path, exc.stage, exc.reason)
    except Exception as exc:  # anything unexpected is this file's failure, not the run's
        logger.debug("unexpected failure on %s", p, exc_info=True)
        return _Failed(path, "decode", f"{type(exc).__name__}: {exc}")


def fill_genre(tags: dict[str, Any], styles: dict[str, float],
               genre_labels: Collection[str] | None = None) -> dict[str, Any]:
    """A track with no genre tag gets a predicted genre, marked predicted.

    MAEST's labels read ``"Genre---Style"``: the genre part of the top style (``"Electronic---Techno"``
    → ``Electronic``). A model whose labels mix genres with moods and instruments (MusiCNN's tags)
    names its genre labels (``ModelInfo.extra["genre_labels"]``): the highest-scoring of those.
    """
    if tags.get("genre") or not styles:
        return tags
    if genre_labels is not None:
        candidates = [label for label in styles if label in genre_labels]
        if not candidates:
            return tags
        top = max(candidates, key=lambda label: styles[label])
        genre = top[:1].upper() + top[1:]
    else:
        top = max(styles, key=lambda label: styles[label])
        genre = top.split("---", 1)[0].strip()
    if not genre or genre.startswith("LABEL_"):
        return tags
    source = ",".join(filter(None, [tags.get("tag_source"), "predicted"]))
    return {**tags, "genre": genre, "tag_source": source}


def read_tags_fallback(path: Path) -> dict[str, Any]:
    """Tags from the file name alone, for files whose tags mutagen cannot parse."""
    return {"title": path.stem, "artist": None, "album": None, "album_artist": None, "genre": None,
            "year": None, "track_number": None, "duration": None,
            "format": path.suffix.lower().lstrip("."), "tag_source": "filename"}


def _run_files(paths: Sequence[str], embedder: Embedder, workers: int,
               stream_seconds: float | None) -> Iterator[_Done | _Failed]:
    """Process ``paths``, in worker processes when ``workers > 1``; yields in completion order."""
    in_worker = embedder if embedder.parallel_safe else None
    if not can_stream(embedder):
        stream_seconds = None
    if workers <= 1 or len(paths) <= 1:
        _init_worker(embedder, embedder.sample_rate, stream_seconds)
        for path in paths:
            yield _process_file(path)
        return
    ctx = multiprocessing.get_context("spawn")  # never fork a process that may hold torch threads
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(in_worker, embedder.sample_rate, stream_seconds, True)) as pool:
        queue = iter(paths)
        in_flight: set[Future[_Done | _Failed]] = set()
        try:
            for path in queue:  # bounded: at most 2 × workers files in flight
                in_flight.add(pool.submit(_process_file, path))
                if len(in_flight) >= 2 * workers:
                    done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                    for fut in done:
                        yield fut.result()
            while in_flight:
                done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield fut.result()
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


class _StopOnCtrlC:
    """The first Ctrl-C asks the run to stop after the file in hand (what is done is saved and the
    run is recorded as interrupted); a second one stops at once. A flag instead of an exception,
    so that no DuckDB statement is interrupted halfway."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, _signum: int, _frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        logger.warning("stopping after the current file; Ctrl-C again to stop at once")

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def _under(path: str, roots: Sequence[str | Path]) -> bool:
    for root in roots:
        r = str(Path(root).expanduser().resolve())
        if path == r or path.startswith(r.rstrip(os.sep) + os.sep):
            return True
    return False


def index_library(roots: Sequence[str | Path], store_path: str | Path, embedder: Embedder, *,
                  workers: int = 1, commit_every: int = 32, prune: bool = False,
                  metadata: str | Path | None = None, category_from: str = "tag",
                  stream_seconds: float | None = STREAM_SECONDS, map_name: str | None = None,
                  progress: ProgressFn | None = None) -> IndexReport:
    """Index the audio under ``roots`` into the store at ``store_path``.

    Unchanged files (same size and mtime, with a vector) cost one ``stat``. A new path whose
    content fingerprint matches a stored track whose file is gone is a move: the track keeps its
    id and vector. Changed and new files are tagged, decoded and embedded; failures are
    recorded. Stored tracks under ``roots`` whose files are gone are reported, and removed with
    ``prune``. Files longer than ``stream_seconds`` are embedded as a stream (None: never). The
    FAISS index and the manifest are brought up to date at the end, and with ``map_name`` that
    map too (new tracks placed into it, or a refit: :func:`indexer.projection.update_map`).

    Raises
    ------
    IndexerError
        A root is missing or holds no audio.
    StoreError
        The store folder is not a store, or holds vectors of another model.
    """
    started = time.monotonic()
    if category_from not in CATEGORY_SOURCES:
        raise IndexerError(f"--category-from {category_from!r}: choose one of {', '.join(CATEGORY_SOURCES)}")
    if category_from == "csv" and metadata is None:
        raise IndexerError("--category-from csv needs --metadata FILE.csv with a genre (or category) column")
    rows = read_metadata(metadata) if metadata is not None else None
    problems: list[tuple[str, str]] = []
    files = scan(roots, problems)
    scanned_at = time.monotonic()
    store = Store.open_for_indexing(store_path, embedder.info)
    report = IndexReport(store=str(store.path), model=embedder.info.id, scanned=len(files))
    report.durations["scan"] = round(scanned_at - started, 3)
    try:
        run_id = store.start_run((str(Path(r).expanduser().resolve()) for r in roots),
                                 embedder.info.extra.get("options"))
        known = store.known_files()
        scanned = {str(f) for f in files}
        # Failures of files that are gone (or folders now readable) are this run's to forget.
        listed = {db_path(p) for p in scanned}  # failures store paths as text (see store.db_path)
        store.forget_failures([p for p in store.failures()["path"] if p not in listed and _under(p, roots)])
        # Stored tracks whose file is no longer where it was: candidates for "moved or renamed".
        vanished = {k.fingerprint: path for path, k in known.items()
                    if path not in scanned and k.fingerprint and k.has_vector}
        todo: list[str] = []
        existing: set[str] = set()
        fingerprints: dict[str, str] = {}
        early_failures: list[tuple[str, str, str]] = [(path, "scan", reason) for path, reason in problems]
        for f in files:
            path = str(f)
            try:
                st = f.stat()
                seen = known.get(path)
                if seen is not None and seen.size == st.st_size and seen.mtime == st.st_mtime and seen.has_vector:
                    report.unchanged += 1  # the fast path: one stat
                    continue
                fingerprints[path] = fingerprint(f, st.st_size)
            except OSError as exc:  # deleted since the scan, unreadable...
                early_failures.append((path, "read", f"{type(exc).__name__}: {exc.strerror or exc}"))
                continue
            if seen is None and fingerprints[path] in vanished:
                old = vanished.pop(fingerprints[path])
                store.move_track(known[old].track_id, path, st.st_size, st.st_mtime)
                report.moved += 1
                logger.info("moved: %s -> %s (kept its vector)", old, path)
                continue
            if seen is not None:
                existing.add(path)
            todo.append(path)
        gone = [p for p in vanished.values() if _under(p, roots)]
        report.missing = len(gone)
        if gone and prune:
            report.pruned = store.delete_tracks([known[p].track_id for p in gone])
            logger.info("pruned %d tracks whose files are gone", report.pruned)
        elif gone:
            logger.warning("%d stored tracks have no file any more under the given folders; "
                           "run with --prune to remove them", len(gone))
        logger.info("%d files: %d unchanged, %d moved, %d to index", len(files), report.unchanged,
                    report.moved, len(todo))
        store.release()
        pending: list[TrackRecord] = []
        waiting: list[_Done] = []  # decoded, waiting to be embedded together (MAEST batches across tracks)
        batch_tracks = max(1, int(getattr(embedder, "batch_size", 1)))

        def flush() -> None:
            if pending:
                store.write_tracks(pending)
                logger.debug("saved %d tracks (%d added, %d updated so far)", len(pending), report.added,
                             report.updated)
                pending.clear()
            store.release()  # readers (musicmap serve, sql) get the file between batches

        def fail(path: str, stage: str, reason: str) -> None:
            report.failed += 1
            report.failures.append({"path": path, "stage": stage, "error": reason})
            store.record_failure(path, stage, reason)
            store.release()
            logger.warning("failed %s (%s): %s", path, stage, reason)
            if path in todo_set:
                advance(path, 0.0)

        finished = 0

        def advance(path: str, audio: float, *, show: bool = True) -> None:
            """A file is done (embedded or failed): progress counts finished files and their audio,
            not decoded ones (decoding runs ahead of the model). A batch of tracks embedded together
            is shown once, after its last track: shown after its first, the line would lag the work
            by a whole batch (the throttled display skips the rest) and the ETA would run high."""
            nonlocal finished
            finished += 1
            report.audio_seconds += audio
            if show and progress is not None:
                progress(finished, len(todo), path, report.audio_seconds)

        def accept(result: _Done, embedding: Embedding, *, show: bool = True) -> None:
            advance(result.path, float(result.tags.get("duration") or 0.0), show=show)
            st = Path(result.path).stat()
            pending.append(TrackRecord(
                path=result.path, size=st.st_size, mtime=st.st_mtime,
                tags=fill_genre(apply_metadata(result.tags, result.path, rows=rows, category_from=category_from),
                                embedding.styles, embedder.info.extra.get("genre_labels")),
                fingerprint=fingerprints.get(result.path),
                vector=embedding.vector, n_windows=embedding.n_windows, styles=embedding.styles,
                windows=embedding.windows, window_starts=embedding.window_starts,
            ))
            if result.path in existing:
                report.updated += 1
            else:
                report.added += 1
            if len(pending) >= commit_every:
                flush()

        def embed_waiting() -> None:
            if not waiting:
                return
            batch = list(waiting)
            waiting.clear()
            try:
                embeddings = embed_many(embedder, [r.audio for r in batch if r.audio is not None])
            except Exception:  # find the culprit: embed one by one
                embeddings = []
                for r in batch:
                    try:
                        assert r.audio is not None
                        embeddings.append(embedder.embed(r.audio))
                    except Exception as exc:
                        fail(r.path, "embed", f"{type(exc).__name__}: {exc}")
                        embeddings.append(None)  # type: ignore[arg-type]
            for r, e in zip(batch, embeddings, strict=True):
                if e is not None:
                    accept(r, e, show=False)
            if progress is not None:
                progress(finished, len(todo), batch[-1].path, report.audio_seconds)

        def embed_streamed(result: _Done) -> None:
            source = AudioSource(result.path, embedder.sample_rate, prefetch_depth=2)
            try:
                embedding = embedder.embed_stream(source)  # type: ignore[attr-defined]
            except FileFailure as exc:
                fail(result.path, exc.stage, exc.reason)
            except Exception as exc:
                fail(result.path, "embed", f"{type(exc).__name__}: {exc}")
            else:
                accept(result, embedding)

        todo_set = set(todo)
        for path, stage, reason in early_failures:
            fail(path, stage, reason)
        status = "interrupted"
        stop = _StopOnCtrlC()
        try:
            for result in _run_files(todo, embedder, workers, stream_seconds):
                if stop.requested:
                    break
                if isinstance(result, _Failed):
                    fail(result.path, result.stage, result.reason)
                elif result.embedding is not None:
                    accept(result, result.embedding)
                elif result.stream:
                    embed_streamed(result)
                else:
                    waiting.append(result)
                    if len(waiting) >= batch_tracks:
                        embed_waiting()
            embed_waiting()
            flush()
            status = "interrupted" if stop.requested else "ok"
        except KeyboardInterrupt:
            raise
        except BaseException:
            status = "error"
            raise
        finally:
            stop.restore()
            # After an error (a full disk...), the wrap-up is best effort: its own failures are
            # logged, and the first error is the one the user sees.
            wrap_up = _best_effort if status == "error" else _must
            try:
                wrap_up(flush, "saving the last tracks")  # keep what was finished before an interruption
            finally:
                wrap_up(store.sync, "updating the FAISS index")
                report.status = status
                report.seconds = round(time.monotonic() - started, 3)
                report.durations["files"] = round(time.monotonic() - scanned_at, 3)
                wrap_up(lambda: store.finish_run(run_id, status=status, counts=report.counts()), "recording the run")
        if map_name is not None and status == "ok" and store.count("embeddings") > 0:
            map_started = time.monotonic()
            report.map = _update_map(store, map_name)
            report.durations["map"] = round(time.monotonic() - map_started, 3)
    finally:
        store.close()
    report.durations["total"] = round(time.monotonic() - started, 3)
    return report


def _must(fn: Callable[[], Any], _what: str) -> None:
    fn()


def _best_effort(fn: Callable[[], Any], what: str) -> None:
    try:
        fn()
    except StoreError as exc:
        logger.warning("while stopping after an error, %s failed too: %s", what, exc)


def _update_map(store: Store, name: str) -> dict[str, Any]:
    """Keep the map current after a run (new tracks placed, or a refit); a failure here is reported,
    never the run's."""
    from .projection import update_map

    started = time.monotonic()
    try:
        result = update_map(store, name=name)
    except KeyboardInterrupt:  # Ctrl-C during the map: the index is complete, the old map stays
        logger.warning("map update interrupted; the index is complete. Run musicmap map to update the map")
        return {"name": name, "action": "interrupted"}
    except Exception as exc:  # the index itself is done and saved
        logger.warning("the map could not be updated (%s: %s); run musicmap map", type(exc).__name__, exc)
        return {"name": name, "action": "failed", "error": f"{type(exc).__name__}: {exc}"}
    keep = ("name", "action", "n_tracks", "placed", "method", "reason")
    return {**{k: result[k] for k in keep if k in result}, "seconds": round(time.monotonic() - started, 2)}
