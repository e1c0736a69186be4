"""The map as the explorer holds it: points, search, hover cards, reloaded when the store changes.

:class:`MapData` reads the store's projection once per change of the map or the track count
(checked at most every few seconds), and derives what the page needs from it: the frame of points,
one trace split per colour field, the hover card of a track, and a search index (every field joined in one
string, so a word is found by one C-speed search over the whole map).
"""

from __future__ import annotations

import ctypes
import gc
import gzip
import os
import re
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from store import MapInfo, Store, genre_key, group_genres
from store.glibc import glibc

from .figure import GENRE_GROUP, Traces, codes, split


def _libc_trim() -> Any:
    """glibc's ``malloc_trim``, or None (not Linux, or another C library)."""
    libc = glibc()
    if libc is None:
        return None
    try:
        trim = libc.malloc_trim
    except AttributeError:  # a libc.so.6 without it: not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    return trim


_MALLOC_TRIM = _libc_trim()


def release_unused_memory() -> None:
    """Give back to the system what the allocators keep after a large build: Arrow's default pool
    (mimalloc in this build, behind pandas' strings) and glibc's heap. After the map's load at 1M
    tracks they held memory no object used: 577 → 429 MB resident in a script, and in the server
    648 → 459 MB after start and a peak 1,575 → 1,372 MB (``bench_explorer``); it takes ~2 ms.
    A pool frees what its own thread holds: the map is built on the thread that calls this."""
    pa.default_memory_pool().release_unused()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


class MapData:
    """The map's points and search text, reloaded when the store's map or track count
    changes (checked at most every ``check_every`` seconds): a page load after ``musicmap index`` /
    ``musicmap map`` shows the new state without restarting the explorer."""

    def __init__(self, store: Store, projection: str, check_every: float = 2.0) -> None:
        self.store, self.projection, self.check_every = store, projection, check_every
        self._key: Any = None
        self.version = 0
        """Counts reloads: caches of what is derived from the map key on it (an ``id()`` of the frame
        could be reused by the next frame's object and serve a stale answer)."""
        self._checked = -1e9
        self.frame = pd.DataFrame()
        self.info: MapInfo | None = None
        self.row_of: pd.Series = pd.Series(dtype=np.int64)
        self._blob, self._blob_starts = joined(pa.array([], pa.string()))
        self._title_blob, self._title_starts = self._blob, self._blob_starts
        self._traces: dict[str, Traces] = {}
        self._binary: dict[str, bytes] = {}
        self._genre_names: dict[str, str] = {}  # genre_key → the map's name of that genre group
        self.token = "0"
        """Names this version of the map in the point renderer's URLs (a browser may cache them):
        unique across reloads and explorer restarts."""
        self.refresh()

    def refresh(self) -> MapData:
        now = time.monotonic()
        if now - self._checked < self.check_every:
            return self
        self._checked = now
        info = self.store.map_info(self.projection)
        key = (info and (info.created_at, info.n_tracks), self.store.count("tracks"))
        if key != self._key:
            frame = self.store.projection(self.projection)
            names: dict[str, str] = {}
            if "genre" in frame:  # spellings of one genre are one colour, legend entry and filter option
                frame[GENRE_GROUP] = group_genres(frame["genre"])
                for name in frame[GENRE_GROUP].cat.categories:
                    names.setdefault(genre_key(name), str(name))
            self.frame = frame
            self.version += 1
            self.row_of = pd.Series(np.arange(len(frame)), index=frame["id"].astype(np.int64)) if len(frame) \
                else pd.Series(dtype=np.int64)
            # One string per field, rows joined by newlines, lower-cased once (not per keystroke): a
            # word is found by C-speed string search over the whole map, then mapped to rows by
            # offset (a Python loop over 100k rows costs 30 ms). Built column-wise (Arrow), never
            # row by row: a per-row join took 8 s at 100k tracks.
            self._blob, self._blob_starts = joined(lowered(frame, ("artist", "title", "album")))
            self._title_blob, self._title_starts = joined(lowered(frame, ("title",)))
            self._traces, self._binary, self._genre_names = {}, {}, names
            self.token = f"{os.getpid():x}{time.time_ns():x}"
            self.info, self._key = info, key
            # The map's data lives as long as the map: out of the cyclic GC's sight, whose full
            # collections (every few seconds under load) otherwise walk it with every thread stopped
            # (73 ms at 100k tracks; ~0 once frozen). Refcounting still frees it when replaced.
            gc.freeze()
            release_unused_memory()
        return self

    def traces(self, color_by: str) -> Traces:
        if color_by not in self._traces:
            self._traces[color_by] = split(self.frame, color_by)
        return self._traces[color_by]

    def points(self) -> bytes:
        """The map's points for the page's renderer, gzipped: every track's id (int32), then x, then
        y (float32), little-endian, 12 bytes a track in frame order. Built once per version of the
        map; only the gzip is kept (a client that takes no gzip gets it decompressed)."""
        if "points" not in self._binary:
            frame = self.frame
            parts = [frame["id"].to_numpy("<i4"), frame["x"].to_numpy("<f4"), frame["y"].to_numpy("<f4")] \
                if len(frame) else []
            self._binary["points"] = _packed(b"".join(p.tobytes() for p in parts))
        return self._binary["points"]

    def codes(self, color_by: str) -> bytes:
        """Each track's category index for ``color_by``, gzipped (one byte a track, frame order: the
        index of its legend trace, :meth:`traces`)."""
        key = "codes:" + color_by
        if key not in self._binary:
            self._binary[key] = _packed(codes(self.traces(color_by), len(self.frame)).tobytes())
        return self._binary[key]

    def search(self, text: str, limit: int) -> list[dict[str, Any]]:
        """Tracks on the map whose artist, title or album contain every word of ``text``; titles
        that start with ``text`` first, then map order. Stops as soon as it has ``limit``."""
        query = " ".join(text.lower().split())
        words = query.split()
        if not words or not len(self.frame) or limit < 1:
            return []
        # Titles starting with the query contain every word: found by one literal search.
        first = first_distinct(rows_with(self._title_blob, self._title_starts, "\n" + query, shift=1), limit)
        chosen = set(first)
        # The rarest word first (counted in the first 256 kB: a full count costs ~3 ms at 100k tracks).
        words.sort(key=lambda w: (self._blob.count(w, 0, 1 << 18), -len(w)))
        blob, starts, rest = self._blob, self._blob_starts, list[int]()
        for r in rows_with(blob, starts, words[0]):
            if len(first) + len(rest) >= limit:
                break
            text = blob[starts[r]:starts[r + 1] - 1]
            if r not in chosen and all(w in text for w in words[1:]):
                rest.append(r)
                chosen.add(r)
        return [self._fields(r) for r in first + rest]

    def _fields(self, row: int) -> dict[str, Any]:
        """:data:`HIT_FIELDS` of the frame's row ``row`` as plain Python values (None for missing)."""
        out: dict[str, Any] = {}
        for k in HIT_FIELDS:
            v = self.frame[k].iat[row]
            out[k] = None if pd.isna(v) else (int(v) if k in ("id", "year") else v)
        return out

    def card(self, track_id: int) -> dict[str, Any] | None:
        """What the map's hover card shows of a track (:data:`HIT_FIELDS`, and its position), from
        memory: no store read; None when the track is not on the map."""
        if not len(self.frame) or track_id not in self.row_of.index:
            return None
        row = int(self.row_of[track_id])
        return {**self._fields(row), "map": self.projection,
                "x": float(self.frame["x"].iat[row]), "y": float(self.frame["y"].iat[row])}

    def options(self, column: str) -> list[str]:
        """The filter's choices for ``column``, the most frequent first (at most 500); for
        ``genre``, one per genre group (its most frequent spelling)."""
        if not len(self.frame) or column not in self.frame:
            return []
        if column == "genre" and GENRE_GROUP in self.frame:  # its categories: the largest group first
            return [str(name) for name in self.frame[GENRE_GROUP].cat.categories[:500]]
        counts = self.frame[column].dropna().astype(str).value_counts()
        return list(counts.index[:500])

    def genre_name(self, genre: str) -> str:
        """The map's name for ``genre``'s group (its filter option), or ``genre`` itself when no
        track on the map has it: ``?genre=game%20soundtrack`` selects "Game Soundtrack"."""
        key = genre_key(genre)
        return self._genre_names.get(key, genre) if key else genre

    def year_range(self) -> tuple[int, int] | None:
        years = pd.to_numeric(self.frame["year"], errors="coerce").dropna() if len(self.frame) else pd.Series()
        return (int(years.min()), int(years.max())) if len(years) else None


def _packed(raw: bytes) -> bytes:
    return gzip.compress(raw, compresslevel=1, mtime=0)


HIT_FIELDS = ("id", "title", "artist", "album", "genre", "year")
"""The fields of a search hit."""


def lowered(frame: pd.DataFrame, columns: tuple[str, ...]) -> pa.Array | pa.ChunkedArray:
    """Per row, ``columns`` joined by spaces, lower-cased, newlines made spaces (missing: ""), as
    one Arrow string array (never a Python object per row)."""
    parts = []
    for c in columns:
        values = pa.array(frame[c].astype("string[pyarrow]").array).cast(pa.large_string()) if len(frame) \
            else pa.array([], pa.large_string())
        parts.append(pc.replace_substring(pc.fill_null(values, ""), "\n", " "))
    joined_parts = pc.binary_join_element_wise(*parts, pa.scalar(" ", pa.large_string())) if len(parts) > 1 \
        else parts[0]
    return pc.utf8_lower(joined_parts)


def joined(texts: pa.Array | pa.ChunkedArray) -> tuple[str, np.ndarray]:
    """``texts`` joined by newlines, with one before the first (newlines cannot be in a query: it
    is split on whitespace), and where each text starts, then one past the end: row ``r`` is
    ``blob[starts[r]:starts[r + 1] - 1]``. Made from Arrow's buffer in one piece: a Python string
    per row first cost ~250 MB of memory at 1M tracks."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    texts = texts.cast(pa.large_string())
    lines = pc.binary_join_element_wise(texts, pa.scalar("", pa.large_string()), pa.scalar("\n", pa.large_string())) \
        if len(texts) \
        else pa.array([], pa.large_string())
    lengths = pc.utf8_length(lines).to_numpy(zero_copy_only=False).astype(np.int64) if len(lines) \
        else np.zeros(0, np.int64)
    starts = np.ones(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=starts[1:])
    starts[1:] += 1
    if not len(lines):
        return "\n", starts
    offsets = np.frombuffer(lines.buffers()[1], np.int64)[lines.offset:lines.offset + len(lines) + 1]
    data = lines.buffers()[2]
    return "\n" + data.to_pybytes()[int(offsets[0]):int(offsets[-1])].decode("utf-8"), starts


def first_distinct(rows: Iterator[int], n: int) -> list[int]:
    out: dict[int, None] = {}
    for r in rows:
        out[r] = None
        if len(out) >= n:
            break
    return list(out)


def rows_with(blob: str, starts: np.ndarray, needle: str, shift: int = 0) -> Iterator[int]:
    """The rows of a :func:`joined` text where ``needle`` occurs, in order (a row once per
    occurrence); ``shift``: characters of the needle before the row's text (its newline)."""
    if not needle.strip() or not blob:
        return
    for match in re.finditer(re.escape(needle), blob):
        yield int(np.searchsorted(starts, match.start() + shift, side="right")) - 1
