"""musicmap from Python (a notebook, a script): one read-only entry point, answers as DataFrames.

    import musicmap

    with musicmap.open("musicmap-demo/store") as lib:
        lib.similar("Artist - Title", k=5)      # a DataFrame: track_id, score, title, artist, ...
        lib.sql("SELECT genre, count(*) FROM tracks GROUP BY genre")
        ids, vectors = lib.vectors()

A track is named by its id, its file, or words of its artist and title (the first match), as on
the command line. Similarity options are the store's (``where``, ``max_per_artist``,
``max_per_album``, ``dedupe``, ``mmr``, ``min_score``, ``taste``: :class:`store.search.SearchOptions`).
Once the person's likes, dislikes, plays or skips are recorded (``lib.like(42)``, the explorer, a
player), every list is steered by them and its ``taste`` column says why a track moved;
``taste=False`` gives plain similarity. The store is opened read-only (the listening journal, a
file of its own, is written by ``like``/``dislike``/``played``/``skipped``) and held until the
``with`` block ends: an index run started meanwhile waits for it (30 s, then "busy");
``musicmap serve`` is the reader that lets one write.
Errors are the store's (:class:`store.StoreError` and its kinds): an unknown id is
:class:`store.TrackNotFound`, a file or words that name no track :class:`store.NoMatchingTrack`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Unpack

import numpy as np
import pandas as pd

from store import Event, Neighbour, Store
from store.search import SimilarOptions, VarietyOptions

TrackRef = int | str | Path
"""A track: its id, its file, or words of its artist and title."""


class Library:
    """A store opened read-only for questions from Python. Use :func:`musicmap.open`."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder).expanduser()
        self.store = Store.open(self.folder)

    def __repr__(self) -> str:
        maps = ", ".join(m.name for m in self.store.maps()) or "none"
        return (f"<musicmap.Library {self.folder}: {self.store.count('tracks')} tracks, "
                f"{self.store.manifest.model.label}, maps: {maps}>")

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.store.close()

    def track_id(self, track: TrackRef) -> int:
        """The id of ``track`` (an id, a file of the library, or artist/title words):
        :meth:`store.Store.resolve_track`."""
        return self.store.resolve_track(track)

    def tracks(self, where: str | None = None, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Every track (or those matching ``where``, one SQL condition over the tracks' columns), by id."""
        if where:
            _, frame = self.store.page_tracks(where=where, limit=2**62, columns=columns)
            return frame.reset_index(drop=True)
        return self.store.tracks(columns=columns)

    def similar(self, track: TrackRef, k: int = 10, **options: Unpack[SimilarOptions]) -> pd.DataFrame:
        """The ``k`` tracks that sound most like ``track`` (never itself), best first."""
        return _neighbours(self.store.similar(self.track_id(track), k=k, **options))

    def similar_to_vector(self, vector: np.ndarray, k: int = 10, **options: Unpack[SimilarOptions]) -> pd.DataFrame:
        """The ``k`` tracks nearest a vector of this store's model (shape (d,))."""
        return _neighbours(self.store.similar_to_vector(np.asarray(vector, np.float32), k=k, **options))

    def find(self, text: str, k: int = 10, *, like: TrackRef | None = None, where: str | None = None,
             max_per_artist: int | None = None, max_per_album: int | None = None, dedupe: bool = False,
             centroid: float = 0.0, taste: bool = True) -> pd.DataFrame:
        """Tracks by a description of their sound (``"calm piano without drums"``), best first; with
        ``like``, that track's neighbours re-ranked by the words. Columns: ``track_id``, ``score``,
        the track's fields and ``matched`` (per word: its strength and the tags that carried it).
        No word to search by (or no tags yet): an empty frame whose ``attrs["reason"]`` says why;
        ``attrs["understood"]`` / ``attrs["unknown"]`` say how the words were read."""
        found = self.store.find(text, k=k, like=None if like is None else self.track_id(like), where=where,
                                max_per_artist=max_per_artist, max_per_album=max_per_album, dedupe=dedupe,
                                centroid=centroid, taste=taste)
        frame = pd.DataFrame([{"track_id": r.track_id, "score": r.score, **r.track, "matched": r.matched,
                               "taste": r.taste.why if r.taste is not None else None} for r in found.results])
        answer = found.to_dict()
        frame.attrs.update({k: answer[k] for k in ("understood", "unknown", "ignored", "reason", "untagged")})
        return frame

    def path(self, start: TrackRef, end: TrackRef, length: int = 10,
             **options: Unpack[VarietyOptions]) -> pd.DataFrame:
        """A song path: ``length`` tracks from ``start`` to ``end``, each close to the one before
        (``to_previous``) and moving toward the end (``to_end``)."""
        steps = self.store.song_path(self.track_id(start), self.track_id(end), length=length, **options)
        return pd.DataFrame([{"track_id": s.track_id, "to_previous": s.to_previous, "to_end": s.to_end,
                              **s.track} for s in steps])

    def extend(self, seeds: Sequence[TrackRef], n: int = 20, mode: str = "centroid",
               **options: Unpack[VarietyOptions]) -> pd.DataFrame:
        """``n`` tracks that fit a playlist of ``seeds`` (``mode``: ``centroid`` or ``seeds``)."""
        return _neighbours(self.store.extend([self.track_id(s) for s in seeds], n=n, mode=mode, **options))

    def sql(self, query: str, *, max_rows: int = 1_000_000, timeout: float = 60.0) -> pd.DataFrame:
        """One read-only SQL query over the store (``musicmap sql``'s views and functions, e.g.
        ``similar(id, k)`` as a table); at most ``max_rows`` rows."""
        return self.store.sql(query, max_rows=max_rows, timeout=timeout).to_frame()

    def map(self, name: str = "tsne") -> pd.DataFrame:
        """The map's points: id, x, y and the tracks' display fields (empty if there is no such map)."""
        return self.store.projection(name)

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids (n,) int64, vectors (n, d) float32, L2-normalised), by id; the model is ``lib.model``."""
        return self.store.vectors()

    # --- taste: the listening journal (store/journal.py) and what it does (store/taste.py) ------

    def like(self, *tracks: TrackRef, undo: bool = False) -> list[dict[str, object]]:
        """Record that the person likes ``tracks`` (``undo``: take it back); every list is then
        steered by it (``taste=False`` in any list turns that off). Returns what was recorded."""
        return self._record("liked", tracks, undo=undo)

    def dislike(self, *tracks: TrackRef, undo: bool = False) -> list[dict[str, object]]:
        """Record that the person dislikes ``tracks``: never offered again, their neighbours move down."""
        return self._record("disliked", tracks, undo=undo)

    def played(self, track: TrackRef, seconds: float | None = None, of: float | None = None, *,
               undo: bool = False) -> list[dict[str, object]]:
        """Record a play (``seconds`` heard, ``of`` the track's length; default: the whole track)."""
        return self._record("played", [track], seconds=seconds, duration=of, undo=undo)

    def skipped(self, track: TrackRef, at: float | None = None, of: float | None = None, *,
                undo: bool = False) -> list[dict[str, object]]:
        """Record a skip at second ``at`` (of ``of``)."""
        return self._record("skipped", [track], seconds=at, duration=of, undo=undo)

    def _record(self, kind: str, tracks: Sequence[TrackRef], *, undo: bool, seconds: float | None = None,
                duration: float | None = None) -> list[dict[str, object]]:
        events = [Event(kind, self.track_id(t), seconds=seconds, duration=duration, source="python", undo=undo)
                  for t in tracks]
        return [r.as_json() for r in self.store.record(events)]

    def taste(self) -> pd.DataFrame:
        """Every track the person did something with: ``track_id``, ``liked``, ``disliked``,
        ``plays``, ``skips``, ``weight`` (> 0 pulls its neighbours up) and ``last`` (Unix seconds),
        the most liked first; ``attrs["summary"]`` has the counts."""
        taste = self.store.taste()
        frame = pd.DataFrame([vars(t) for t in sorted(taste.tracks.values(), key=lambda t: -t.weight)],
                             columns=["track_id", "liked", "disliked", "plays", "skips", "weight", "last"])
        frame.attrs["summary"] = taste.summary()
        return frame

    def events(self) -> pd.DataFrame:
        """The listening journal itself, every event oldest first (undo rows included)."""
        return self.store.journal.events()

    def mix(self, n: int = 30, *, since_days: float = 30.0, where: str | None = None,
            max_per_artist: int | None = None, max_per_album: int | None = None,
            dedupe: bool = False) -> pd.DataFrame:
        """``n`` tracks not heard in the last ``since_days`` that fit what was liked and played
        then (several moods stay several); columns as :meth:`similar` plus ``seed`` and ``why``."""
        items = self.store.mix(n=n, since=time.time() - since_days * 86400.0, where=where,
                               max_per_artist=max_per_artist, max_per_album=max_per_album, dedupe=dedupe)
        return pd.DataFrame([{"track_id": m.neighbour.track_id, "score": m.neighbour.score, **m.neighbour.track,
                              "seed": m.seed, "why": m.why} for m in items])

    @property
    def model(self) -> str:
        """Which model made the vectors, in words (the manifest's label)."""
        return self.store.manifest.model.label


def _neighbours(found: list[Neighbour]) -> pd.DataFrame:
    return pd.DataFrame([{"track_id": n.track_id, "score": n.score, **n.track,
                          "taste": n.taste.why if n.taste is not None else None} for n in found])

