"""musicmap's store: one self-describing folder (DuckDB + FAISS + manifest).

Imports nothing else of musicmap's; the indexer writes it, the explorer and the CLI read it.
"""

from .errors import InvalidQuery, StoreError, StoreUnavailable, TrackNotFound
from .listening import PathStep
from .m3u import m3u_bytes, playlist_tracks, read_m3u, write_m3u
from .manifest import Manifest, ModelInfo
from .store import Store, db_path
from .types import KnownFile, MapInfo, Neighbour, SQLResult, TrackRecord
from .vectors import l2_normalise

__all__ = ["InvalidQuery", "KnownFile", "Manifest", "MapInfo", "ModelInfo", "Neighbour", "PathStep", "SQLResult",
           "Store", "StoreError", "StoreUnavailable", "TrackNotFound", "TrackRecord", "db_path", "l2_normalise",
           "m3u_bytes", "playlist_tracks", "read_m3u", "write_m3u"]
