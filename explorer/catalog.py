"""The library as albums and artists, for music players (:mod:`explorer.subsonic`).

musicmap's store holds tracks; a player browses artists and albums, and caches their ids. The
catalog groups the tracks into albums and artists by one rule, read with one SQL query and kept
until the tracks change (:meth:`CatalogCache.get`):

- **An album's name** is its album tag; a track without one takes its folder's name (a disc folder,
  ``CD 2``, ``Disc 1``, ``disk-3``, stands for the folder above it).
- **An album's artist** is its album-artist tag; without one, its tracks' artist when they share one
  (among the tracks of that album name in that folder), else ``Various Artists``.
- **One album** is one (album artist, album name), both normalised (artists as
  :func:`store.search.artist_key` has them, names case-folded, spaces tidied): the discs of an album
  are one album wherever their files lie, and the id does not depend on a file's path (a moved file
  keeps its album) or a track's id (a re-index keeps every id).
- **An artist** is a normalised artist name (:func:`store.search.artist_key`, the first credited);
  their albums are those they are the album artist of and those they have a track on.

Ids: ``al-`` and ``ar-`` and a hash of the normalised key (:func:`name_id`); equal whenever the
tags are. Track ids are the store's.
"""

from __future__ import annotations

import hashlib
import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from store import Store, genre_key
from store.search import artist_key

VARIOUS_ARTISTS = "Various Artists"
"""The album artist of an album without an album-artist tag whose tracks have several artists."""
UNKNOWN_ARTIST = "[Unknown Artist]"
UNKNOWN_ALBUM = "[Unknown Album]"
DISC_FOLDER = r"(?i)^(cd|dis[ck])[ ._-]*[0-9]+$"
"""A folder that holds one disc of an album (``CD1``, ``Disc 2``, ``disk-3``): the album is the folder above."""

_QUERY = f"""
WITH t AS (
    SELECT id, artist, album, album_artist, genre, year, duration, added_at, track_number, path,
           regexp_extract(path, '^(.*)/[^/]*$', 1) AS dir
    FROM tracks),
f AS (
    SELECT *, CASE WHEN regexp_matches(regexp_extract(dir, '[^/]*$'), '{DISC_FOLDER}')
                   THEN regexp_extract(dir, '^(.*)/[^/]*$', 1) ELSE dir END AS folder
    FROM t),
n AS (
    SELECT *, coalesce(nullif(trim(album), ''), regexp_extract(folder, '[^/]*$')) AS album_name FROM f),
w AS (
    SELECT *, coalesce(nullif(trim(album_artist), ''),
                       CASE WHEN min(lower(trim(artist))) OVER p IS DISTINCT FROM max(lower(trim(artist))) OVER p
                            THEN '{VARIOUS_ARTISTS}' ELSE nullif(trim(artist), '') END) AS album_by
    FROM n WINDOW p AS (PARTITION BY folder, lower(album_name)))
SELECT album_by, lower(album_name) AS name_key, mode(album_name) AS name,
       list(id ORDER BY dir, track_number NULLS LAST, path) AS ids,
       list(DISTINCT artist) FILTER (WHERE artist IS NOT NULL) AS artists,
       list(DISTINCT genre) FILTER (WHERE genre IS NOT NULL) AS genres, mode(genre) AS genre,
       sum(duration) AS duration, strftime(min(added_at), '%Y-%m-%dT%H:%M:%SZ') AS created, max(year) AS year
FROM w GROUP BY album_by, lower(album_name)
"""
"""One row per (album artist, album name): the album's tracks in order, its artists, genres,
length, when its first track was added, its latest year."""

_STAMP = "SELECT count(*), max(id), max(updated_at), max(added_at) FROM tracks"


def name_id(prefix: str, name: str) -> str:
    """``<prefix>-`` and 16 hex digits of a hash of ``name``: an id that is the same whenever the name is."""
    return f"{prefix}-{hashlib.blake2b(name.encode('utf-8'), digest_size=8).hexdigest()}"


def artist_id(artist: str | None) -> str | None:
    """The id of an artist by name (its :func:`~store.search.artist_key`); None without one."""
    key = artist_key(artist)
    return name_id("ar", key) if key else None


def _fold(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


@dataclass(frozen=True)
class Album:
    """One album: its id, name, album artist (name and id), its tracks in order (ids), every artist
    with a track on it (ids), its genres (:func:`store.genre_key`), length in seconds, when its first
    track was added (ISO 8601), its latest year and most frequent genre."""

    id: str
    name: str
    artist: str
    artist_id: str
    songs: tuple[int, ...]
    artist_ids: frozenset[str]
    genre_keys: frozenset[str]
    duration: float
    created: str
    year: int | None
    genre: str | None


@dataclass
class Artist:
    """One artist: id, name (the spelling seen most), their albums' ids."""

    id: str
    name: str
    albums: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Catalog:
    """Every album and artist, by id; each track's album id; when the tracks last changed (ms)."""

    albums: dict[str, Album]
    artists: dict[str, Artist]
    album_of: dict[int, str]
    modified_ms: int
    _orders: dict[str, list[Album]] = field(default_factory=dict, repr=False, compare=False)
    _artist_order: list[Artist] = field(default_factory=list, repr=False, compare=False)

    def ordered(self, kind: str) -> list[Album]:
        """Every album in the order ``kind`` names (kept): ``newest`` (first added: latest first),
        ``alphabeticalByName``, ``alphabeticalByArtist``, ``byYear`` (earliest first; no year last)."""
        found = self._orders.get(kind)
        if found is None:
            albums = list(self.albums.values())
            if kind == "newest":
                albums.sort(key=lambda a: a.id)
                albums.sort(key=lambda a: a.created, reverse=True)
            elif kind == "alphabeticalByName":
                albums.sort(key=lambda a: (sort_name(a.name), sort_name(a.artist), a.id))
            elif kind == "alphabeticalByArtist":
                albums.sort(key=lambda a: (sort_name(a.artist), sort_name(a.name), a.id))
            elif kind == "byYear":
                albums.sort(key=lambda a: (a.year is None, a.year or 0, sort_name(a.name), a.id))
            else:
                raise ValueError(f"no album order {kind!r}")
            found = self._orders[kind] = albums
        return found

    def ordered_artists(self) -> list[Artist]:
        """Every artist by :func:`sort_name` (kept)."""
        if not self._artist_order:
            self._artist_order.extend(sorted(self.artists.values(), key=lambda a: (sort_name(a.name), a.id)))
        return self._artist_order

    @classmethod
    def from_rows(cls, rows: Iterable[Sequence[object]], modified_ms: int = 0) -> Catalog:
        """The catalog of :data:`_QUERY`'s rows (groups with the same ids are merged)."""
        keys: dict[str | None, str | None] = {}  # artist_key by name: names repeat
        ids: dict[str | None, str | None] = {}

        def key_of(name: str | None) -> str | None:
            if name not in keys:
                keys[name] = artist_key(name)
            return keys[name]

        def artist_id(name: str | None) -> str | None:
            if name not in ids:
                key = key_of(name)
                ids[name] = name_id("ar", key) if key else None
            return ids[name]

        genres: dict[str, str] = {}

        def genre_of(name: str) -> str:
            if name not in genres:
                genres[name] = genre_key(name)
            return genres[name]

        parts: dict[str, list[_Part]] = {}
        for row in rows:
            part = _Part.of(row)
            key = f"{key_of(part.by) or ''}\n{_fold(part.name_key)}"
            parts.setdefault(name_id("al", key), []).append(part)
        albums: dict[str, Album] = {}
        artists: dict[str, Artist] = {}
        spellings: dict[str, Counter[str]] = {}
        album_of: dict[int, str] = {}
        for album_id, group in parts.items():
            group.sort(key=lambda p: -len(p.ids))  # the largest part names it
            first = group[0]
            songs = tuple(i for p in group for i in p.ids)
            by = first.by or UNKNOWN_ARTIST
            by_id = artist_id(by) or name_id("ar", "")
            named = {by: len(songs)} | {a: 1 for p in group for a in p.artists}
            on = set()
            for name, weight in named.items():
                found = artist_id(name) or (by_id if name == UNKNOWN_ARTIST else None)
                if found is not None:
                    on.add(found)
                    spellings.setdefault(found, Counter())[name] += weight
            years = [p.year for p in group if p.year is not None]
            albums[album_id] = Album(
                id=album_id, name=first.name or UNKNOWN_ALBUM, artist=by, artist_id=by_id, songs=songs,
                artist_ids=frozenset(on), genre_keys=frozenset(genre_of(g) for p in group for g in p.genres),
                duration=sum(p.duration for p in group), created=min(p.created for p in group),
                year=max(years) if years else None, genre=first.genre)
            for track_id in songs:
                album_of[track_id] = album_id
            for found in on:
                artists.setdefault(found, Artist(found, "")).albums.append(album_id)
        for found, artist in artists.items():
            artist.name = spellings[found].most_common(1)[0][0]
            artist.albums.sort(key=lambda a: (albums[a].year or 0, _fold(albums[a].name)))
        return cls(albums, artists, album_of, modified_ms)


@dataclass(frozen=True)
class _Part:
    """One row of :data:`_QUERY`: the tracks of one (album artist, album name) as the files spell them."""

    by: str | None
    name_key: str
    name: str
    ids: list[int]
    artists: list[str]
    genres: list[str]
    genre: str | None
    duration: float
    created: str
    year: int | None

    @classmethod
    def of(cls, row: Sequence[object]) -> _Part:
        by, name_key, name, ids, artists, genres, genre, duration, created, year = row
        return cls(str(by) if by else None, str(name_key or ""), str(name or ""),
                   [i for i in _items(ids) if isinstance(i, int)], [str(a) for a in _items(artists)],
                   [str(g) for g in _items(genres)], str(genre) if genre is not None else None,
                   float(duration) if isinstance(duration, (int, float)) else 0.0, str(created or ""),
                   int(year) if isinstance(year, int) else None)


def _items(value: object) -> list[object]:
    return list(value) if isinstance(value, (list, tuple)) else []


class CatalogCache:
    """The catalog of one store, read again only when its tracks changed (their count, largest id,
    latest change: one small query a request)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._cached: tuple[tuple[object, ...], Catalog] | None = None

    def get(self) -> Catalog:
        with self.store.holding():
            stamp = tuple(self.store.sql(_STAMP).rows[0])
            with self._lock:
                if self._cached is not None and self._cached[0] == stamp:
                    return self._cached[1]
            result = self.store.sql(_QUERY, max_rows=100_000_000, timeout=60.0)
        latest = [s for s in stamp[2:] if s is not None]
        modified = max((_ms(s) for s in latest), default=0)
        catalog = Catalog.from_rows(result.rows, modified)
        with self._lock:
            self._cached = (stamp, catalog)
        return catalog


def _ms(value: object) -> int:
    """Milliseconds since 1970 of a timestamp read from DuckDB (a naive UTC ``datetime``)."""
    from datetime import UTC, datetime

    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1000)
    return 0


_ARTICLES = ("The", "A", "An")
IGNORED_ARTICLES = " ".join(_ARTICLES)
"""The articles an artist's index letter skips (``The Beatles`` under B), as OpenSubsonic's ``ignoredArticles``."""
_ARTICLE = re.compile(r"^(?:" + "|".join(_ARTICLES) + r")\s+(?=\S)", re.IGNORECASE)


def sort_name(name: str) -> str:
    """``name`` without a leading article, case-folded: what artists are sorted and indexed by."""
    return _fold(_ARTICLE.sub("", name.strip()))


def index_letter(name: str) -> str:
    """The letter an artist is listed under: the first of :func:`sort_name`, upper case; ``#`` for
    anything but a letter."""
    first = sort_name(name)[:1]
    if not first.isalpha():
        return "#"
    return unicodedata.normalize("NFKD", first)[0].upper()
