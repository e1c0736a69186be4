"""One file's stages, in whichever process runs them: tags → decode (→ embed).

:func:`process_file` never raises: a file ends as :class:`Decoded` (tags and audio, or its
embedding when this process holds the embedder, or a note that it is long enough to be streamed)
or as :class:`Failed` (the stage and the reason). Both engines run it: the local one in a pool of
worker processes (:func:`run_files`), the Ray one in its decode tasks (:mod:`indexer.distributed`).
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .decode import AudioSource, load_audio, probe_seconds
from .embedders.base import Embedder, Embedding, can_stream
from .errors import FileFailure
from .tags import read_tags

logger = logging.getLogger(__name__)

STREAM_SECONDS = 20 * 60.0
"""Files longer than this (by their tags or header) are decoded and embedded as a stream."""


@dataclass(frozen=True)
class Decoded:
    """A file read: its tags, and its audio or its embedding (or neither: ``stream``)."""

    path: str
    tags: dict[str, Any]
    embedding: Embedding | None
    audio: np.ndarray | None
    stream: bool = False
    """Long file left for the main process to embed as a stream (neither audio nor embedding)."""


@dataclass(frozen=True)
class Failed:
    """A file that could not be read, decoded or embedded: the stage and the reason."""

    path: str
    stage: str
    reason: str


# Worker-process state: set once per process by the pool initializer.
_worker_embedder: Embedder | None = None
_worker_sr: int = 16_000
_worker_stream_seconds: float | None = None


def init_worker(embedder: Embedder | None, sr: int, stream_seconds: float | None = None,
                in_pool: bool = False) -> None:
    """Set this process's state for :func:`process_file`: the embedder it holds (None: decode
    only), the sample rate, and the length from which a file is streamed (None: never)."""
    global _worker_embedder, _worker_sr, _worker_stream_seconds
    _worker_embedder, _worker_sr, _worker_stream_seconds = embedder, sr, stream_seconds
    if in_pool:  # Ctrl-C is the main process's to handle: it stops the run and saves what is done
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def process_file(path: str) -> Decoded | Failed:
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
                    return Decoded(path, tags, None, None, stream=True)
                try:
                    streamed = _worker_embedder.embed_stream(AudioSource(p, _worker_sr))  # type: ignore[attr-defined]
                    return Decoded(path, tags, streamed, None)
                except FileFailure:
                    raise
                except Exception as exc:
                    raise FileFailure("embed", f"{type(exc).__name__}: {exc}") from exc
        audio = load_audio(p, _worker_sr)
        if tags.get("duration") is None:
            tags["duration"] = len(audio) / _worker_sr
        if _worker_embedder is None:
            return Decoded(path, tags, None, audio)
        try:
            embedding = _worker_embedder.embed(audio)
        except Exception as exc:
            raise FileFailure("embed", f"{type(exc).__name__}: {exc}") from exc
        return Decoded(path, tags, embedding, None)
    except FileFailure as exc:
        return Failed(path, exc.stage, exc.reason)
    except Exception as exc:  # anything unexpected is this file's failure, not the run's
        logger.debug("unexpected failure on %s", p, exc_info=True)
        return Failed(path, "decode", f"{type(exc).__name__}: {exc}")


def read_tags_fallback(path: Path) -> dict[str, Any]:
    """Tags from the file name alone, for files whose tags mutagen cannot parse."""
    return {"title": path.stem, "artist": None, "album": None, "album_artist": None, "genre": None,
            "year": None, "track_number": None, "duration": None,
            "format": path.suffix.lower().lstrip("."), "tag_source": "filename"}


def run_files(paths: Sequence[str], embedder: Embedder, workers: int,
              stream_seconds: float | None, *, decode_only: bool = False) -> Iterator[Decoded | Failed]:
    """Process ``paths``, in worker processes when ``workers > 1``; yields in completion order.
    With ``decode_only`` nothing is embedded here (the caller batches the decoded audio itself)."""
    in_worker = embedder if embedder.parallel_safe and not decode_only else None
    if not can_stream(embedder):
        stream_seconds = None
    if workers <= 1 or len(paths) <= 1:
        init_worker(None if decode_only else embedder, embedder.sample_rate, stream_seconds)
        for path in paths:
            yield process_file(path)
        return
    ctx = multiprocessing.get_context("spawn")  # never fork a process that may hold torch threads
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=init_worker,
                             initargs=(in_worker, embedder.sample_rate, stream_seconds, True)) as pool:
        queue = iter(paths)
        in_flight: set[Future[Decoded | Failed]] = set()
        try:
            for path in queue:  # bounded: at most 2 × workers files in flight
                in_flight.add(pool.submit(process_file, path))
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
