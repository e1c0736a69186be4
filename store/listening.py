"""Listening on top of the similarity API: a path from one song to another, and a playlist grown
by tracks that fit it. Both keep the store's variety rules (caps per artist and album, one
version of each song) over the whole list, never repeat a track, and honour a SQL filter.

Song path: the two tracks' vectors are joined by the great circle between them (they are unit
vectors; similarity is the cosine); step ``i`` of ``n`` aims at the point ``i/(n-1)`` along it and
takes the real track nearest that point (the track before it breaking near-ties), among those
closer to the end track than the last step — so each step is a close neighbour of the last, and
the sequence moves steadily toward the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InvalidQuery, TrackNotFound
from .search import SearchOptions, Variety, vectors_of
from .types import Neighbour, TasteNote, TrackRow
from .vectors import l2_normalise

if TYPE_CHECKING:
    from .store import Store

PATH_CANDIDATES = 32
"""Tracks near each waypoint considered for a step."""
CONTINUITY = 0.1
"""Weight of "close to the previous track" against "close to the waypoint" when choosing a step: a
tie-breaker where the library is dense, a pull toward the last track where the waypoint's
neighbourhood is empty."""
MAX_PATH = 200
MAX_EXTEND = 1000


@dataclass(frozen=True)
class PathStep:
    """One track of a song path: ``to_previous`` and ``to_end`` are cosine similarities."""

    track_id: int
    to_previous: float | None
    to_end: float
    track: TrackRow
    taste: TasteNote | None = None


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """The point ``t`` (0..1) of the way from unit vector ``a`` to ``b`` along the great circle
    (a straight line, renormalised, when they are (anti)parallel)."""
    dot = float(np.clip(np.dot(a, b), -1.0, 1.0))
    omega = float(np.arccos(dot))
    if omega < 1e-6 or np.pi - omega < 1e-6:
        return l2_normalise((1.0 - t) * a + t * b)
    return l2_normalise((np.sin((1.0 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega))


def song_path(store: Store, start: int, end: int, *, length: int = 10, where: str | None = None,
              max_per_artist: int | None = None, max_per_album: int | None = None,
              dedupe: bool = False, taste: bool = True) -> list[PathStep]:
    """``length`` tracks from ``start`` to ``end`` (both included), each a close neighbour of the
    one before and closer to ``end`` than the last when the library allows; no track twice; the
    variety rules count over the whole path (the two ends included). Fewer tracks when the library
    (or ``where``) runs out of candidates. With ``taste`` (and a taste recorded), each step's choice
    adds the person's taste shift (:mod:`store.taste`), and disliked tracks are never steps.

    Raises
    ------
    StoreError
        An unknown track (:class:`TrackNotFound`), start = end, a bad length or filter.
    """
    if not isinstance(length, int) or not 2 <= length <= MAX_PATH:
        raise InvalidQuery(f"length must be a whole number from 2 to {MAX_PATH}, got {length!r}")
    start, end = int(start), int(end)
    if start == end:
        raise InvalidQuery("a path needs two different tracks")
    ends = store.track_rows([start, end])
    for track_id in (start, end):
        if track_id not in ends:
            raise TrackNotFound(track_id, store.path)
    options = SearchOptions(k=length, where=where, max_per_artist=max_per_artist, max_per_album=max_per_album,
                            dedupe=dedupe)
    options.validate()
    index = store.index
    try:
        va, vb = l2_normalise(vectors_of(index, [start, end]))
    except RuntimeError:
        raise InvalidQuery("a track of the path has no embedding yet; run musicmap index again") from None
    variety = Variety(options)
    for row in (ends[start], ends[end]):
        variety.take(row)
    used = {start, end}
    steps = [PathStep(start, None, float(np.dot(va, vb)), ends[start])]
    previous = va
    for i in range(1, length - 1):
        waypoint = slerp(va, vb, i / (length - 1))
        chosen = None
        for k in (PATH_CANDIDATES, 4 * PATH_CANDIDATES):
            found = store.search(vector=waypoint, k=k, where=where, exclude=sorted(used), taste=taste)
            admitted = [n for n in found if variety.admits(n.track)]
            if admitted:
                vectors = l2_normalise(vectors_of(index, [n.track_id for n in admitted]))
                shift = np.array([n.taste.shift if n.taste is not None else 0.0 for n in admitted])
                fit = vectors @ waypoint + CONTINUITY * (vectors @ previous) + shift
                closer = vectors @ vb > float(np.dot(previous, vb))  # a step toward the end, when there is one
                if closer.any():
                    fit = np.where(closer, fit, -np.inf)
                best = int(np.argmax(fit))
                chosen = (admitted[best], vectors[best])
                break
            if len(found) < k:
                break
        if chosen is None:
            break
        neighbour, vector = chosen
        variety.take(neighbour.track)
        used.add(neighbour.track_id)
        steps.append(PathStep(neighbour.track_id, float(np.dot(previous, vector)), float(np.dot(vector, vb)),
                              neighbour.track, neighbour.taste))
        previous = vector
    steps.append(PathStep(end, float(np.dot(previous, vb)), 1.0, ends[end]))
    return steps


def extend_playlist(store: Store, seeds: Sequence[int], *, n: int = 20, mode: str = "centroid",
                    where: str | None = None, max_per_artist: int | None = None,
                    max_per_album: int | None = None, dedupe: bool = False, taste: bool = True) -> list[Neighbour]:
    """``n`` tracks that fit the playlist ``seeds`` — never one of them (nor, with ``dedupe``, a
    version of one of their songs) — best first, with the variety rules counted over the
    playlist and its extension together.

    ``mode``: ``centroid`` (tracks like the playlist as a whole: the mean of its vectors) or
    ``seeds`` (each member's own neighbours in turn, for a playlist that mixes moods).
    Returns :class:`store.Neighbour` s (the score is the similarity to the centroid, or to the
    member that brought the track in), steered by the person's taste unless ``taste`` is False.
    """
    if mode not in ("centroid", "seeds"):
        raise InvalidQuery(f"mode must be 'centroid' or 'seeds', got {mode!r}")
    if not isinstance(n, int) or not 1 <= n <= MAX_EXTEND:
        raise InvalidQuery(f"n must be a whole number from 1 to {MAX_EXTEND}, got {n!r}")
    members = list(dict.fromkeys(int(s) for s in seeds))
    if not members:
        raise InvalidQuery("the playlist has no tracks of this store")
    rows = store.track_rows(members)
    for track_id in members:
        if track_id not in rows:
            raise TrackNotFound(track_id, store.path)
    options = SearchOptions(k=n, where=where, max_per_artist=max_per_artist, max_per_album=max_per_album,
                            dedupe=dedupe)
    options.validate()
    variety = Variety(options)
    for track_id in members:
        variety.take(rows[track_id])
    picked: list[Neighbour] = []
    taken = set(members)
    fetch = 2 * n + 10
    while True:
        if mode == "centroid":
            ranked = [store.search(members, k=fetch, where=where, taste=taste)]
        else:
            ranked = [store.search(m, k=fetch, where=where, exclude=members, taste=taste) for m in members]
        exhausted = all(len(r) < fetch for r in ranked)
        for neighbour in _interleave(ranked):
            if neighbour.track_id in taken or not variety.admits(neighbour.track):
                continue
            variety.take(neighbour.track)
            taken.add(neighbour.track_id)
            picked.append(neighbour)
            if len(picked) >= n:
                return picked
        if exhausted or fetch > 50 * n + 1000:
            return picked
        fetch *= 4
        picked.clear()
        taken = set(members)
        variety = Variety(options)
        for track_id in members:
            variety.take(rows[track_id])


def _interleave(lists: list[list[Any]]) -> list[Any]:
    """First of each list, then the second of each, ... (one list: itself)."""
    out: list[Any] = []
    for i in range(max((len(x) for x in lists), default=0)):
        out.extend(x[i] for x in lists if i < len(x))
    return out
