"""The store's value types: what the indexer writes (:class:`TrackRecord`), what the store knows
of a file (:class:`KnownFile`, and :func:`is_unchanged`: the indexer's "unchanged since it was
indexed?"), a track's row as readers get it (:class:`TrackRow`), a similarity result
(:class:`Neighbour`), a SQL result (:class:`SQLResult`) and a map (:class:`MapInfo`). Plain
frozen dataclasses and a TypedDict, importable without opening anything."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypedDict

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class TrackRecord:
    """Everything the indexer writes for one successfully processed file.

    Parameters
    ----------
    path : str
        Absolute path of the file.
    size, mtime : int, float
        From ``os.stat``, the cheap "unchanged?" check.
    tags : dict
        Values for :data:`store.schema.TRACK_FIELDS` (missing keys are NULL).
    vector : ndarray, shape (d,), float32
        The track embedding (normalised on write).
    n_windows : int
        Windows averaged into ``vector``.
    styles : dict of str to float, optional
        Style activations (MAEST), empty for the ``features`` embedder.
    windows : ndarray, shape (n_windows, d), optional
        Per-window vectors (normalised on write), stored in ``windows``.
    window_starts : sequence of float
        Start of each window in seconds.
    fingerprint : str, optional
        Content fingerprint (see ``indexer.scan.fingerprint``): a moved file keeps its track.
    """

    path: str
    size: int
    mtime: float
    tags: dict[str, Any]
    vector: np.ndarray
    n_windows: int = 1
    styles: dict[str, float] = field(default_factory=dict)
    windows: np.ndarray | None = None
    window_starts: Sequence[float] = ()
    fingerprint: str | None = None


@dataclass(frozen=True)
class KnownFile:
    """What the store knows of one file, for the indexer's "unchanged / moved?" checks."""

    track_id: int
    size: int
    mtime: float
    fingerprint: str | None
    has_vector: bool


class IndexedFile(Protocol):
    """What was recorded of a file when it was indexed: its ``os.stat`` size and mtime, and whether a
    vector came of it. A :class:`KnownFile`, or a row of a Ray run's shards."""

    @property
    def size(self) -> int: ...
    @property
    def mtime(self) -> float: ...
    @property
    def has_vector(self) -> bool: ...


def is_whole_number(text: str) -> bool:
    """Whether ``text`` is a whole number written in ASCII digits (a track id, a count, a year).
    ``str.isdigit`` alone also accepts ``"²"``, which ``int`` refuses, and ``"١٢"``, which it reads."""
    return text.isascii() and text.isdigit()


def is_unchanged(indexed: IndexedFile | None, size: int, mtime: float) -> bool:
    """Whether a file whose ``os.stat`` now gives ``size`` and ``mtime`` is still the one ``indexed``:
    the same size and mtime, and a vector came of it. It is the indexer's fast path (one ``stat``,
    the file is not read again); a file never indexed (``indexed`` None) is not unchanged.
    """
    return indexed is not None and indexed.has_vector and indexed.size == size and indexed.mtime == mtime


class TrackRow(TypedDict, total=False):
    """A row of ``tracks`` as :meth:`store.Store.track_rows` returns it (every column but
    ``path_bytes``; timestamps as ISO text). Tag columns are None where the file said nothing.
    Partial rows (a search hit's few fields) use the same keys."""

    id: int
    path: str
    size: int
    mtime: float
    fingerprint: str | None
    title: str | None
    artist: str | None
    album: str | None
    album_artist: str | None
    genre: str | None
    year: int | None
    track_number: int | None
    duration: float | None
    format: str | None
    tag_source: str | None
    extra: str | None
    added_at: str
    updated_at: str


@dataclass(frozen=True)
class TasteNote:
    """How the person's taste moved a track in a list: ``shift`` added to its cosine for the
    ranking (the score shown stays the cosine), and ``why`` in words."""

    shift: float
    why: str

    def as_json(self) -> dict[str, object]:
        return {"shift": self.shift, "why": self.why}


@dataclass(frozen=True)
class Neighbour:
    """One similarity result. ``score`` is the cosine similarity to the query; ``taste``, when the
    person's taste moved it in the list, by how much and why (:mod:`store.taste`)."""

    track_id: int
    score: float
    track: TrackRow
    taste: TasteNote | None = None


@dataclass(frozen=True)
class SQLResult:
    """Rows of a read-only query; ``truncated`` is True when ``max_rows`` cut it."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=self.columns)


@dataclass(frozen=True)
class MapInfo:
    """One map of the store (a row of ``projection_info``): how it was made and how good it is."""

    name: str
    method: str
    params: dict[str, Any]
    """Its fit's parameters and measurements: perplexity, seed, quality, hubness, clusters,
    ``placed_since_fit``..."""
    n_tracks: int
    created_at: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "method": self.method, "params": self.params, "n_tracks": self.n_tracks,
                "created_at": self.created_at}
