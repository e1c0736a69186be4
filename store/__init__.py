"""musicmap's store: one self-describing folder (DuckDB + FAISS + manifest).

Imports nothing else of musicmap's; the indexer writes it, the explorer and the CLI read it.
"""

from .errors import StoreError, TrackNotFound
from .listening import PathStep, playlist_tracks, read_m3u
from .manifest import Manifest, ModelInfo
from .store import KnownFile, Neighbour, SQLResult, Store, TrackRecord
from .vectors import l2_normalise

__all__ = ["KnownFile", "Manifest", "ModelInfo", "Neighbour", "PathStep", "SQLResult", "Store", "StoreError",
           "TrackNotFound", "TrackRecord", "l2_normalise", "playlist_tracks", "read_m3u"]
