"""``musicmap index``: a chain of small stages from files to the store.

    scan ─> sort (unchanged: one stat; moved: keeps its vector) ─> per file: tags ─> decode ─> embed
         ─> write in batches ─> wrap up (FAISS, the run's record) ─> the map
                          └──────── failure (path, stage, reason) ──> failures

The stages, each a named unit: :func:`indexer.scan.scan`; :func:`sort_files`; the per-file stages
in :mod:`indexer.files` (in a pool of worker processes when ``workers > 1``: decoding always,
embedding too when the embedder is ``parallel_safe``, i.e. CPU-only and cheap to ship, like
``features``); :class:`EmbedStage` here (batches tracks for the model, streams long files); the writes
(a non-finite embedding made a failure: :mod:`indexer.finite`) and the wrap-up in
:class:`indexer.run.IndexRun` (its tail, :meth:`~indexer.run.IndexRun.open`), which ``ingest`` of
Ray shards uses too.

Files longer than ``stream_seconds`` (default :data:`STREAM_SECONDS`) are never decoded whole:
embedders with ``embed_stream`` read them as a stream of blocks, window by window (in the
worker when it holds the embedder, else in the main process with decoding running ahead in a
thread), so a two-hour mix costs a few MB, not 460 MB.

Results are written to the store in transactions of ``commit_every`` tracks, so an interrupted
run keeps what it finished and the next run continues. One bad file never stops a run: it becomes
a ``failures`` row and is retried next time.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from store import KnownFile, Store, TrackRecord, WritableStore, db_path, is_unchanged

from .decode import AudioSource
from .embedders.base import Embedder, Embedding, embed_many
from .errors import FileFailure, IndexerError, NoAudioFiles
from .files import STREAM_SECONDS, Decoded, Failed, run_files
from .metadata import CATEGORY_SOURCES, apply_metadata, fill_genre, read_metadata
from .run import IndexReport, IndexRun, ProgressFn
from .scan import fingerprint, scan
from .tagger import MAX_PATCHES, tag_store

__all__ = ["STREAM_SECONDS", "IndexReport", "ProgressFn", "index_library", "sort_files"]

logger = logging.getLogger(__name__)


@dataclass
class Sorted:
    """The scanned files, sorted by what this run must do with them (:func:`sort_files`)."""

    todo: list[str] = field(default_factory=list)
    """Files to tag, decode and embed: new, changed, or with no vector yet."""
    existing: set[str] = field(default_factory=set)
    """Those of ``todo`` the store holds an older version of."""
    fingerprints: dict[str, str] = field(default_factory=dict)
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    """(path, stage, reason) of files that failed before decoding (unreadable, gone since the scan)."""
    gone: list[str] = field(default_factory=list)
    """Stored tracks under the roots whose files are no longer there (and did not move)."""


def sort_files(files: Sequence[Path], known: dict[str, KnownFile], roots: Sequence[str | Path], store: WritableStore,
               report: IndexReport) -> Sorted:
    """Unchanged files (same size and mtime, with a vector) cost one ``stat``. A new path whose
    content fingerprint matches a stored track whose file is gone is a move: the track keeps its id
    and vector (moved in the store here). The rest is to embed."""
    scanned = {str(f) for f in files}
    # Stored tracks whose file is no longer where it was: candidates for "moved or renamed".
    vanished = {k.fingerprint: path for path, k in known.items()
                if path not in scanned and k.fingerprint and k.has_vector}
    out = Sorted()
    for f in files:
        path = str(f)
        try:
            st = f.stat()
            seen = known.get(path)
            if is_unchanged(seen, st.st_size, st.st_mtime):
                report.unchanged += 1  # the fast path: one stat
                continue
            out.fingerprints[path] = fingerprint(f, st.st_size)
        except OSError as exc:  # deleted since the scan, unreadable...
            out.failures.append((path, "read", f"{type(exc).__name__}: {exc.strerror or exc}"))
            continue
        if seen is None and out.fingerprints[path] in vanished:
            old = vanished.pop(out.fingerprints[path])
            store.move_track(known[old].track_id, path, st.st_size, st.st_mtime)
            report.moved += 1
            logger.info("moved: %s -> %s (kept its vector)", old, path)
            continue
        if seen is not None:
            out.existing.add(path)
        out.todo.append(path)
    folders = _folders(roots)
    out.gone = [p for p in vanished.values() if _under(p, folders)]
    return out


class EmbedStage:
    """Decoded files → the model → the run's writes, with progress counted as files finish.

    Tracks wait to be embedded together (MAEST batches windows across tracks); a batch that fails
    is embedded one track at a time to find the culprit; files too long to decode whole are
    embedded as a stream here (decoding runs ahead in a thread). A file counts as done when it is
    embedded or has failed — not when decoded: decoding runs ahead of the model.
    """

    def __init__(self, run: IndexRun, embedder: Embedder, files: Sorted, *, rows: dict[str, dict[str, str]] | None,
                 category_from: str, progress: ProgressFn | None) -> None:
        self.run = run
        self.embedder = embedder
        self.files = files
        self.todo = set(files.todo)
        self.rows = rows
        self.category_from = category_from
        self.progress = progress
        self.finished = 0
        self.waiting: list[Decoded] = []
        self.batch_tracks = max(1, int(getattr(embedder, "batch_size", 1)))

    def take(self, result: Decoded | Failed) -> None:
        """One file back from :func:`indexer.files.run_files`."""
        if isinstance(result, Failed):
            self.fail(result.path, result.stage, result.reason)
        elif result.embedding is not None:
            self._accept(result, result.embedding)
        elif result.stream:
            self._embed_streamed(result)
        else:
            self.waiting.append(result)
            if len(self.waiting) >= self.batch_tracks:
                self.embed_waiting()

    def fail(self, path: str, stage: str, reason: str) -> None:
        self.run.fail(path, stage, reason)
        if path in self.todo:
            self._advance(path, 0.0)

    def embed_waiting(self) -> None:
        """Embed the tracks that wait, together."""
        if not self.waiting:
            return
        batch = list(self.waiting)
        self.waiting.clear()
        try:
            embeddings: list[Embedding | None] = list(embed_many(self.embedder, [r.audio for r in batch
                                                                                 if r.audio is not None]))
        except Exception:  # find the culprit: embed one by one
            embeddings = []
            for r in batch:
                try:
                    assert r.audio is not None
                    embeddings.append(self.embedder.embed(r.audio))
                except Exception as exc:
                    self.fail(r.path, "embed", f"{type(exc).__name__}: {exc}")
                    embeddings.append(None)
        for r, e in zip(batch, embeddings, strict=True):
            if e is not None:
                self._accept(r, e, show=False)
        # A batch is shown once, after its last track: shown after its first, the line would lag
        # the work by a whole batch (the throttled display skips the rest) and the ETA would run high.
        if self.progress is not None:
            self.progress(self.finished, len(self.files.todo), batch[-1].path, self.run.report.audio_seconds)

    def _embed_streamed(self, result: Decoded) -> None:
        source = AudioSource(result.path, self.embedder.sample_rate, prefetch_depth=2)
        try:
            embedding = self.embedder.embed_stream(source)  # type: ignore[attr-defined]
        except FileFailure as exc:
            self.fail(result.path, exc.stage, exc.reason)
        except Exception as exc:
            self.fail(result.path, "embed", f"{type(exc).__name__}: {exc}")
        else:
            self._accept(result, embedding)

    def _advance(self, path: str, audio: float, *, show: bool = True) -> None:
        self.finished += 1
        self.run.report.audio_seconds += audio
        if show and self.progress is not None:
            self.progress(self.finished, len(self.files.todo), path, self.run.report.audio_seconds)

    def _accept(self, result: Decoded, embedding: Embedding, *, show: bool = True) -> None:
        try:
            st = Path(result.path).stat()
        except OSError as exc:  # gone (or unreadable) since it was decoded: this file's failure, not the run's
            self.fail(result.path, "read", f"{type(exc).__name__}: {exc.strerror or exc}")
            return
        tags = apply_metadata(result.tags, result.path, rows=self.rows, category_from=self.category_from)
        added = self.run.add(TrackRecord(  # a NaN vector is a failure, never a track (IndexRun.add)
            path=result.path, size=st.st_size, mtime=st.st_mtime,
            tags=fill_genre(tags, embedding.styles, self.embedder.info.extra.get("genre_labels")),
            fingerprint=self.files.fingerprints.get(result.path),
            vector=embedding.vector, n_windows=embedding.n_windows, styles=embedding.styles,
            windows=embedding.windows, window_starts=embedding.window_starts,
        ), updated=result.path in self.files.existing)
        if added:
            self._advance(result.path, float(result.tags.get("duration") or 0.0), show=show)
        elif result.path in self.todo:  # failed: counted as self.fail counts it
            self._advance(result.path, 0.0)


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



_NOT_PRUNED = ("nothing was pruned: --prune never removes every track of a folder given (a folder on a drive "
               "that is not mounted looks empty too).")


def _roots_without_files(roots: Sequence[str | Path], files: Sequence[Path]) -> list[str]:
    """The folders among ``roots`` under which ``files`` (resolved paths) has none."""
    paths = [str(f) for f in files]
    return [str(root) for root, folder in zip(roots, _folders(roots), strict=True)
            if Path(root).expanduser().is_dir() and not any(_under(p, [folder]) for p in paths)]


def _folders(roots: Sequence[str | Path]) -> list[str]:
    """``roots`` resolved, as :func:`_under` takes them (resolved once, not once per path)."""
    return [str(Path(root).expanduser().resolve()) for root in roots]


def _under(path: str, folders: Sequence[str]) -> bool:
    """``path`` is one of ``folders`` (resolved: :func:`_folders`) or inside one."""
    return any(path == f or path.startswith(f.rstrip(os.sep) + os.sep) for f in folders)


def index_library(roots: Sequence[str | Path], store_path: str | Path, embedder: Embedder, *,
                  workers: int = 1, commit_every: int = 32, prune: bool = False,
                  metadata: str | Path | None = None, category_from: str = "tag",
                  stream_seconds: float | None = STREAM_SECONDS, map_name: str | None = None,
                  tags: bool = True, tag_patches: int = MAX_PATCHES, progress: ProgressFn | None = None,
                  run_settings: dict[str, object] | None = None) -> IndexReport:
    """Index the audio under ``roots`` into the store at ``store_path``.

    Unchanged files cost one ``stat``; moved files keep their tracks (:func:`sort_files`). Changed
    and new files are tagged, decoded and embedded; failures are recorded. Stored tracks under
    ``roots`` whose files are gone are reported, and removed with ``prune``. Files longer than
    ``stream_seconds`` are embedded as a stream (None: never). The FAISS index and the manifest are
    brought up to date at the end, and with ``map_name`` that map too (new tracks placed into it, or
    a refit: :func:`indexer.projection.update_map`). With ``tags``, tracks without sound tags get
    them (:func:`indexer.tagger.tag_store`: new tracks, and those of a store indexed before), from at
    most ``tag_patches`` 3-s patches a track. ``run_settings`` join the model's options in the run's
    recorded settings (``index --background``/``--cores``: how the run shared the machine).

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
    if tags and tag_patches < 1:
        raise IndexerError(f"--tag-patches {tag_patches}: give 1 or more")
    if category_from == "csv" and metadata is None:
        raise IndexerError("--category-from csv needs --metadata FILE.csv with a genre (or category) column")
    rows = read_metadata(metadata) if metadata is not None else None
    problems: list[tuple[str, str]] = []
    try:
        files = scan(roots, problems)
    except NoAudioFiles as exc:
        if prune:
            raise IndexerError(f"{exc}; {_NOT_PRUNED} To start afresh, delete the store folder {store_path}") from None
        raise
    if prune:
        empty = _roots_without_files(roots, files)
        if empty:
            raise IndexerError(f"no audio files found under {', '.join(empty)}; {_NOT_PRUNED} Index without "
                               "--prune, or leave that folder out (its tracks then stay as they are).")
    scanned_at = time.monotonic()
    store = Store.open_for_indexing(store_path, embedder.info)
    report = IndexReport(store=str(store.path), model=embedder.info.id, scanned=len(files))
    report.durations["scan"] = round(scanned_at - started, 3)
    with IndexRun.open(store, report, (str(Path(r).expanduser().resolve()) for r in roots),
                       settings={**(embedder.info.extra.get("options") or {}), **(run_settings or {})} or None,
                       commit_every=commit_every, started=started, map_name=map_name) as run:
        known = store.known_files()
        # Failures of files that are gone (or folders now readable) are this run's to forget.
        listed = {db_path(str(f)) for f in files}  # failures store paths as text (see store.db_path)
        folders = _folders(roots)
        store.forget_failures([p for p in store.failures()["path"] if p not in listed and _under(p, folders)])
        work = sort_files(files, known, roots, store, report)
        report.missing = len(work.gone)
        if work.gone and prune:
            report.pruned = store.delete_tracks([known[p].track_id for p in work.gone])
            logger.info("pruned %d tracks whose files are gone", report.pruned)
        elif work.gone:
            logger.warning("%d stored tracks have no file any more under the given folders; "
                           "run with --prune to remove them", len(work.gone))
        logger.info("%d files: %d unchanged, %d moved, %d to index", len(files), report.unchanged,
                    report.moved, len(work.todo))
        store.release()
        stage = EmbedStage(run, embedder, work, rows=rows, category_from=category_from, progress=progress)
        for path, where, reason in [*((p, "scan", r) for p, r in problems), *work.failures]:
            stage.fail(path, where, reason)
        status = "interrupted"
        stop = _StopOnCtrlC()
        try:
            for result in run_files(work.todo, embedder, workers, stream_seconds):
                if stop.requested:
                    break
                stage.take(result)
            stage.embed_waiting()
            run.flush()
            if tags and not stop.requested:
                tagged = tag_store(store, own_model=embedder.info.id, workers=workers, stream_seconds=stream_seconds,
                                   commit_every=commit_every, stop=lambda: stop.requested, max_patches=tag_patches)
                report.tags = asdict(tagged)
                report.durations["tags"] = tagged.seconds
            status = "interrupted" if stop.requested else "ok"
        except KeyboardInterrupt:
            raise
        except BaseException:
            status = "error"
            raise
        finally:
            stop.restore()
            run.finish(status)
    return report
