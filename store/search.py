"""Similarity search with filters and variety: the one search behind the CLI, the explorer and the API.

A query has *seeds* (track ids, averaged into their centroid) or a raw *vector* (an uploaded
clip), and optionally:

- ``where``: a SQL boolean expression over ``tracks`` (``genre = 'Jazz' AND year >= 1970``),
  turned into a FAISS id selector, so the search itself only sees matching tracks and a filtered
  query returns ``k`` results whenever ``k`` tracks match;
- variety: ``max_per_artist`` / ``max_per_album`` caps, ``dedupe`` (one version of each song:
  same normalised artist + title, "Live" / "Remastered" / "Radio Edit" suffixes ignored; versions
  of the seeds themselves are dropped too) and ``mmr`` (maximal marginal relevance, λ in (0, 1]:
  1 is pure similarity, lower trades similarity for diversity among the results);
- ``min_score``: every track at least this similar (up to ``k``), instead of the top ``k``.

The seeds are never returned. Scores are cosine similarities (vectors are L2-normalised).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypedDict

import faiss
import numpy as np

from .errors import InvalidQuery, TrackNotFound
from .manifest import Manifest
from .types import Neighbour, TasteNote, TrackRow
from .vectors import ivf_parts, l2_normalise

#: Words that mark a version of a song rather than another song, inside brackets or after " - ".
VERSION_WORDS = ("live", "remaster", "remastered", "remasterised", "remasterized", "mono", "stereo", "version",
                 "edit", "demo", "deluxe", "bonus", "single", "explicit", "clean", "take", "mix", "remix",
                 "acoustic", "unplugged", "session", "instrumental", "reprise", "mixed", "anniversary")
_VERSION_RE = re.compile(r"\b(" + "|".join(VERSION_WORDS) + r")\b")
_BRACKETS_RE = re.compile(r"[\(\[\{]([^\)\]\}]*)[\)\]\}]")
_FEAT_RE = re.compile(r"\s+(feat\.?|ft\.?|featuring)\s+.*$")
_FEAT_WORD_RE = re.compile(r"^\s*(feat\.?|ft\.?|featuring|with)\s")


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    return "".join(c for c in text if not unicodedata.combining(c)).casefold().strip()


def song_title(title: str) -> str:
    """A title without its version marks: ``"Song (Live at X) - 2011 Remaster"`` → ``"song"``."""
    t = _fold(title)
    t = _BRACKETS_RE.sub(lambda m: " " if _VERSION_RE.search(m.group(1)) or _FEAT_WORD_RE.match(m.group(1))
                         else m.group(0), t)
    parts = re.split(r"\s+[-–—/]\s+", t)
    while len(parts) > 1 and _VERSION_RE.search(parts[-1]):
        parts.pop()
    t = _FEAT_RE.sub("", " - ".join(parts))
    return " ".join(re.sub(r"[^\w]+", " ", t).split())


def artist_key(artist: Any) -> str | None:
    """A normalised artist (first credited one), or None when unknown."""
    if not isinstance(artist, str) or not artist.strip():
        return None
    a = _FEAT_RE.sub("", _fold(artist))
    a = re.split(r"\s*(?:;|,|&|\band\b|\bx\b|/)\s*", a)[0]
    a = re.sub(r"^the\s+", "", a)
    return " ".join(re.sub(r"[^\w]+", " ", a).split()) or None


def song_key(row: TrackRow) -> tuple[str, str] | None:
    """``(artist, title)`` normalised: equal for two versions of one song; None without a title."""
    title = row.get("title")
    if not isinstance(title, str) or not title.strip():
        return None
    artist = artist_key(row.get("artist")) or artist_key(row.get("album_artist")) or ""
    return artist, song_title(title)


class VarietyOptions(TypedDict, total=False):
    """The keyword options of every similarity question (``similar``, ``song_path``, ``extend``):
    :class:`SearchOptions`' filter and variety rules. Typed, so a misspelt option is a type error."""

    where: str | None
    max_per_artist: int | None
    max_per_album: int | None
    dedupe: bool
    taste: bool


class SimilarOptions(VarietyOptions, total=False):
    """:class:`VarietyOptions` and the ranking options of a similarity search (``similar``,
    ``similar_to_vector``): together, :class:`SearchOptions`' fields but ``k``."""

    mmr: float | None
    min_score: float | None


@dataclass(frozen=True)
class SearchOptions:
    """What a similarity query asks for, beyond its seeds. See the module docstring."""

    k: int = 10
    where: str | None = None
    max_per_artist: int | None = None
    max_per_album: int | None = None
    dedupe: bool = False
    mmr: float | None = None
    min_score: float | None = None
    taste: bool = True
    """Steer by the person's taste when there is one (:meth:`store.Store.search` binds it)."""

    def validate(self) -> None:
        """Raises InvalidQuery naming the first bad parameter."""
        if not isinstance(self.k, int) or self.k < 1:
            raise InvalidQuery(f"k must be a whole number of at least 1, got {self.k!r}")
        for name in ("max_per_artist", "max_per_album"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise InvalidQuery(f"{name} must be at least 1, got {value!r}")
        if self.mmr is not None and not 0.0 < float(self.mmr) <= 1.0:
            raise InvalidQuery(f"mmr is λ in (0, 1] (1 = pure similarity), got {self.mmr!r}")
        if self.min_score is not None and not -1.0 <= float(self.min_score) <= 1.0:
            raise InvalidQuery(f"min_score is a cosine similarity in [-1, 1], got {self.min_score!r}")
        if self.where is not None and not self.where.strip():
            raise InvalidQuery("where is empty; leave it out to search every track")


def _flat_part(index: faiss.Index) -> tuple[faiss.Index, np.ndarray]:
    """The flat storage under ``index`` (exact vectors; IVF-PQ's 8-bit ones) and the track id of
    each of its rows."""
    outer: Any = faiss.downcast_index(index)
    inner: Any = faiss.downcast_index(outer.index)
    flat: Any
    if isinstance(inner, faiss.IndexFlat):
        flat = inner
    elif isinstance(inner, faiss.IndexRefine):
        flat = faiss.downcast_index(inner.refine_index)
    else:
        flat = faiss.downcast_index(inner.storage)
    return flat, faiss.vector_to_array(outer.id_map).astype(np.int64)


FILTER_EXACT_FLOATS = 50_000_000
"""A filtered query on an approximate index is answered exactly over the matching tracks while
matching tracks × dimension stays under this (about 20 ms here): exact results, whatever the
filter. Larger filtered sets go through HNSW with the id selector and an efSearch raised by
1 / selectivity; a filter that correlates with the query (all matches far from it) then costs
recall, never the count."""


def knn(index: faiss.Index, query: np.ndarray, k: int, allowed: np.ndarray | None = None,
        *, ef_search: int | None = None) -> list[tuple[int, float]]:
    """Top-``k`` ``(track_id, score)`` for one normalised ``query`` (shape (d,)), restricted to
    ``allowed`` ids when given (a FAISS id selector inside the search).

    Exact indexes are searched as they are. On an approximate (HNSW) index, a filter matching few
    enough tracks (:data:`FILTER_EXACT_FLOATS`) is answered exactly over them; a larger one goes
    through HNSW with the selector and a raised ``efSearch``, and if that leaves it short of
    results the allowed rows are searched exactly, so the count is always ``min(k, len(allowed))``.
    """
    n = int(index.ntotal)
    if n == 0:
        return []
    q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
    if allowed is not None:
        allowed = np.unique(np.asarray(allowed, np.int64))
        if len(allowed) == 0:
            return []
    want = min(k, n if allowed is None else len(allowed))
    inner: Any = faiss.downcast_index(faiss.downcast_index(index).index)  # type: ignore[attr-defined]
    approximate = not isinstance(inner, faiss.IndexFlat)
    if approximate and allowed is not None and len(allowed) * int(index.d) <= FILTER_EXACT_FLOATS:
        return _exact_subset(index, q, want, allowed)
    parts = ivf_parts(index)
    if parts is not None:
        pairs = _ivf_search(index, parts, q, want, allowed)
        return pairs if len(pairs) >= want else _exact_subset(index, q, want, allowed)
    if approximate:
        ef = max(ef_search or int(inner.hnsw.efSearch), 2 * want)
        if allowed is not None:
            ef = min(1024, int(ef * n / len(allowed)))
        params: Any = faiss.SearchParametersHNSW(efSearch=ef)  # type: ignore[attr-defined]
    else:
        params = faiss.SearchParameters()
    if allowed is not None:
        params.sel = faiss.IDSelectorBatch(allowed)
    scores, ids = index.search(q, want, params=params)
    pairs = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
    if approximate and len(pairs) < want:
        return _exact_subset(index, q, want, allowed)
    return pairs


def _ivf_search(index: faiss.Index, parts: tuple[Any, Any], q: np.ndarray, k: int,
                allowed: np.ndarray | None) -> list[tuple[int, float]]:
    """IVF-PQ: the lists nearest the query (more of them for a filter, by 1 / selectivity), the
    best ``k_factor × k`` codes re-ranked with 8-bit vectors. The filter is given to the IVF as
    index rows (FAISS's id map does not pass a selector through the re-ranking wrapper)."""
    if allowed is None:  # the nprobe and k_factor set at load
        scores, ids = index.search(q, k)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
    refine, ivf = parts
    row_ids = faiss.vector_to_array(faiss.downcast_index(index).id_map).astype(np.int64)  # type: ignore[attr-defined]
    base: Any = faiss.SearchParametersIVF()
    base.sel = faiss.IDSelectorBatch(np.flatnonzero(np.isin(row_ids, allowed)).astype(np.int64))
    base.nprobe = min(int(ivf.nlist), int(np.ceil(int(ivf.nprobe) * int(index.ntotal) / len(allowed))))
    params: Any = faiss.IndexRefineSearchParameters()
    params.k_factor = float(refine.k_factor)
    params.base_index_params = base
    scores, rows = refine.search(q, k, params=params)
    return [(int(row_ids[r]), float(s)) for r, s in zip(rows[0], scores[0], strict=True) if r >= 0]


def _exact_subset(index: faiss.Index, q: np.ndarray, k: int, allowed: np.ndarray | None) -> list[tuple[int, float]]:
    flat, row_ids = _flat_part(index)
    params = faiss.SearchParameters()
    if allowed is not None:
        params.sel = faiss.IDSelectorBatch(np.flatnonzero(np.isin(row_ids, allowed)).astype(np.int64))
    scores, rows = flat.search(q, k, params=params)
    return [(int(row_ids[r]), float(s)) for r, s in zip(rows[0], scores[0], strict=True) if r >= 0]


def vectors_of(index: faiss.Index, ids: Sequence[int] | np.ndarray) -> np.ndarray:
    """The stored (normalised) vectors of ``ids``, shape (len(ids), d)."""
    if not len(ids):
        return np.zeros((0, index.d), np.float32)
    return np.asarray(index.reconstruct_batch(np.asarray(ids, np.int64)), np.float32)


def mmr_order(query: np.ndarray, vectors: np.ndarray, scores: np.ndarray, lam: float, k: int) -> list[int]:
    """Maximal marginal relevance: greedily pick ``argmax λ·score − (1−λ)·max sim(selected)``.

    Parameters
    ----------
    query : ndarray, shape (d,)
    vectors : ndarray, shape (n, d), normalised candidates
    scores : ndarray, shape (n,), their similarity to the query
    lam : float in (0, 1]
    k : int

    Returns
    -------
    order : list of int, candidate positions, at most ``k``
    """
    n = len(vectors)
    if n == 0:
        return []
    chosen: list[int] = []
    closest = np.full(n, -np.inf, dtype=np.float64)  # max similarity to anything chosen so far
    free = np.ones(n, dtype=bool)
    for _ in range(min(k, n)):
        penalty = np.where(np.isfinite(closest), closest, 0.0)
        gain = lam * scores - (1.0 - lam) * penalty
        gain[~free] = -np.inf
        best = int(np.argmax(gain))
        chosen.append(best)
        free[best] = False
        closest = np.maximum(closest, vectors @ vectors[best])
    return chosen


class Variety:
    """The artist / album caps and version dedupe of :class:`SearchOptions`, counted over a list as
    it grows (a result list, a song path, a playlist's extension)."""

    def __init__(self, options: SearchOptions, seed_keys: set[tuple[str, str]] | None = None) -> None:
        self.options = options
        self.per_artist: dict[str, int] = {}
        self.per_album: dict[tuple[str, str], int] = {}
        self.songs = set(seed_keys or ())

    @staticmethod
    def _keys(row: TrackRow) -> tuple[str | None, tuple[str, str] | None]:
        artist = artist_key(row.get("artist")) or artist_key(row.get("album_artist"))
        album = row.get("album")
        album_key = (artist_key(row.get("album_artist")) or artist or "", _fold(album)) \
            if isinstance(album, str) and album.strip() else None
        return artist, album_key

    def admits(self, row: TrackRow) -> bool:
        """Whether ``row`` may join the list (nothing is recorded)."""
        artist, album_key = self._keys(row)
        o = self.options
        if o.max_per_artist is not None and artist is not None and self.per_artist.get(artist, 0) >= o.max_per_artist:
            return False
        if o.max_per_album is not None and album_key is not None \
                and self.per_album.get(album_key, 0) >= o.max_per_album:
            return False
        return not (o.dedupe and (key := song_key(row)) is not None and key in self.songs)

    def take(self, row: TrackRow) -> None:
        """Count ``row`` as part of the list."""
        artist, album_key = self._keys(row)
        if artist is not None:
            self.per_artist[artist] = self.per_artist.get(artist, 0) + 1
        if album_key is not None:
            self.per_album[album_key] = self.per_album.get(album_key, 0) + 1
        if self.options.dedupe and (key := song_key(row)) is not None:
            self.songs.add(key)


def diversify(candidates: list[tuple[int, float]], rows: dict[int, TrackRow], options: SearchOptions,
              seed_keys: set[tuple[str, str]], limit: int) -> list[tuple[int, float]]:
    """Apply the artist / album caps and version dedupe to ranked ``candidates`` (best first)."""
    variety = Variety(options, seed_keys)
    out: list[tuple[int, float]] = []
    for track_id, score in candidates:
        row = rows.get(track_id)
        if row is None or not variety.admits(row):
            continue
        variety.take(row)
        out.append((track_id, score))
        if len(out) >= limit:
            break
    return out


class Searchable(Protocol):
    """What :func:`run` needs of a store (:class:`store.Store` has it)."""

    path: Path
    manifest: Manifest

    @property
    def index(self) -> faiss.Index: ...

    def track_rows(self, ids: Sequence[int]) -> dict[int, TrackRow]: ...

    def filter_ids(self, where: str, timeout: float = 10.0) -> np.ndarray: ...


class Steering(Protocol):
    """What :func:`run` needs of the person's taste (:class:`store.taste.Steer` has it)."""

    @property
    def disliked(self) -> set[int]: ...

    def rerank(self, index: faiss.Index, candidates: list[tuple[int, float]], *, unit: float | None = None
               ) -> tuple[list[tuple[int, float]], dict[int, TasteNote]]: ...


TASTE_POOL = 4
"""A list steered by taste re-ranks this many times its length of nearest candidates (40 more at least)."""


def run(store: Searchable, seeds: Sequence[int], vector: np.ndarray | None, opts: SearchOptions, *,
        exclude: Sequence[int] = (), timeout: float = 10.0, steer: Steering | None = None) -> list[Neighbour]:
    """The search behind :meth:`store.Store.search`: the query vector (the seeds' centroid, or
    ``vector``), the ``where`` filter as an id selector, then candidates fetched in growing
    rounds until the variety rules leave ``k`` (or nothing more matches), then MMR. With
    ``steer`` (the person's taste), disliked tracks are left out and a larger pool of candidates
    is re-ranked by it before the variety rules (:mod:`store.taste`)."""
    opts.validate()
    seed_ids = [int(s) for s in seeds]
    if bool(seed_ids) == (vector is not None):
        raise InvalidQuery("give seed track ids or a query vector (exactly one of them)")
    index = store.index
    query = seed_vector(store, seed_ids, index) if seed_ids else _query_vector(store, vector)
    query = l2_normalise(query)
    allowed = store.filter_ids(opts.where, timeout) if opts.where else None
    skip = set(seed_ids) | {int(i) for i in exclude}
    if steer is not None:
        skip |= steer.disliked - set(seed_ids)
    variety = opts.max_per_artist is not None or opts.max_per_album is not None or opts.dedupe
    seed_keys = set()
    if opts.dedupe and seed_ids:
        seed_keys = {key for r in store.track_rows(seed_ids).values() if (key := song_key(r)) is not None}
    target = max(3 * opts.k, 30) if opts.mmr is not None and opts.mmr < 1.0 else opts.k
    fetch = target + len(skip) if not variety else 2 * target + len(skip)
    if steer is not None:
        fetch = max(TASTE_POOL * fetch, fetch + 40)
    notes: dict[int, TasteNote] = {}
    while True:
        candidates = knn(index, query, fetch, allowed)
        exhausted = len(candidates) < fetch
        candidates = [c for c in candidates if c[0] not in skip]
        if opts.min_score is not None:
            above = [c for c in candidates if c[1] >= opts.min_score]
            exhausted = exhausted or len(above) < len(candidates)
            candidates = above
        if steer is not None:
            candidates, notes = steer.rerank(index, candidates)
        rows = store.track_rows([i for i, _ in candidates])
        picked = diversify(candidates, rows, opts, seed_keys, limit=target)
        if len(picked) >= target or exhausted:
            break
        fetch *= 4
    if opts.mmr is not None and opts.mmr < 1.0 and picked:
        vectors = vectors_of(index, [i for i, _ in picked])
        ranked = np.array([s + (notes[i].shift if i in notes else 0.0) for i, s in picked])
        order = mmr_order(query, vectors, ranked, float(opts.mmr), opts.k)
        picked = [picked[i] for i in order]
    return [Neighbour(i, s, rows[i], notes.get(i)) for i, s in picked[: opts.k]]


def seed_vector(store: Searchable, seed_ids: list[int], index: faiss.Index) -> np.ndarray:
    """The mean of the stored vectors of ``seed_ids`` (not normalised).

    Raises
    ------
    TrackNotFound, InvalidQuery
        A seed that does not exist, or has no vector yet.
    """
    for seed in seed_ids:
        if not 0 <= seed < 2**63:  # no track has it (and FAISS would overflow on it)
            raise TrackNotFound(seed, store.path)
    try:
        vectors = vectors_of(index, seed_ids)
    except RuntimeError:
        known = store.track_rows(seed_ids)
        missing = [i for i in seed_ids if i not in known]
        if missing:
            raise TrackNotFound(missing[0], store.path) from None
        raise InvalidQuery(f"a seed track ({', '.join(map(str, seed_ids))}) has no embedding yet; "
                           "run musicmap index again") from None
    return np.asarray(vectors.mean(axis=0), np.float32)


def _query_vector(store: Searchable, vector: np.ndarray | None) -> np.ndarray:
    query = np.asarray(vector, np.float32).ravel()
    model = store.manifest.model
    if query.shape[0] != model.dimension:
        raise InvalidQuery(f"query vector has {query.shape[0]} dimensions, the store's model "
                           f"({model.id}) has {model.dimension}")
    if not np.all(np.isfinite(query)) or not np.any(query):
        raise InvalidQuery("query vector is zero or not finite")
    return query
