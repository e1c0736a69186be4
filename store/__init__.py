"""musicmap's store: one self-describing folder (DuckDB + FAISS + manifest).

Imports nothing else of musicmap's; the indexer writes it, the explorer and the CLI read it.

Where each idea lives: reading a store (``Store``: opening, rows, search, SQL, the map) in
``store.py``; writing it (``WritableStore``: tracks, failures, runs, maps, sync) in ``writer.py``;
holding one DuckDB file between processes (linger, writer marker, epochs) in ``sharing.py``;
whether the FAISS file is current (load, extend or rebuild) in ``freshness.py``; FAISS indexes in
``vectors.py``; the search, its options and variety rules in ``search.py``; the SQL sandbox and
its functions in ``sql.py``; the schema and its migrations in ``schema.py``; path text in
``paths.py``; the value types (``TrackRecord``, ``TrackRow``, ``Neighbour``, ``MapInfo``) and the
rule for a file unchanged since it was indexed (``is_unchanged``) in ``types.py``; errors by
meaning in ``errors.py``; song paths and playlist extension in ``listening.py``; tracks by a
description of their sound in ``find.py`` (the words read by ``words.py`` and its table
``words.toml``); M3U in
``m3u.py``; ``embeddings.csv`` and plots in ``export.py``; the manifest in ``manifest.py``; fault
points for the crash tests in ``faults.py``; glibc, when the process has it (the indexer's and the
explorer's memory calls), in ``glibc.py``; genres that differ only in spelling grouped as one category
(the rule, its display names and its SQL spellings) in ``genres.py``.
"""

from .errors import InvalidQuery, NoMatchingTrack, NonFiniteVector, StoreError, StoreUnavailable, TrackNotFound
from .find import FindResult, Found
from .genres import GenreGroups, genre_key, genre_keys, group_genres
from .journal import Event, NothingToMix, NotRecording, Recorded, TooManyEvents
from .listening import PathStep
from .m3u import m3u_bytes, playlist_tracks, read_m3u, write_m3u
from .manifest import Manifest, ModelInfo
from .paths import db_path, relative_to_roots
from .store import Store
from .taste import MixItem, Taste, TrackTaste
from .types import (
           IndexedFile,
           KnownFile,
           MapInfo,
           Neighbour,
           SQLResult,
           TasteNote,
           TrackRecord,
           TrackRow,
           is_unchanged,
           is_whole_number,
)
from .vectors import l2_normalise, nonfinite_parts
from .writer import WritableStore

__all__ = [
           "Event",
           "FindResult",
           "Found",
           "GenreGroups",
           "IndexedFile",
           "InvalidQuery",
           "KnownFile",
           "Manifest",
           "MapInfo",
           "MixItem",
           "ModelInfo",
           "Neighbour",
           "NoMatchingTrack",
           "NonFiniteVector",
           "NotRecording",
           "NothingToMix",
           "PathStep",
           "Recorded",
           "SQLResult",
           "Store",
           "StoreError",
           "StoreUnavailable",
           "Taste",
           "TasteNote",
           "TooManyEvents",
           "TrackNotFound",
           "TrackRecord",
           "TrackRow",
           "TrackTaste",
           "WritableStore",
           "db_path",
           "genre_key",
           "genre_keys",
           "group_genres",
           "is_unchanged",
           "is_whole_number",
           "l2_normalise",
           "m3u_bytes",
           "nonfinite_parts",
           "playlist_tracks",
           "read_m3u",
           "relative_to_roots",
           "write_m3u",
]
