"""DuckDB schema of ``library.duckdb``, the store's source of truth.

Tables
------
tracks
    One row per audio file. ``id`` is also the FAISS id of the track's vector. ``path`` is text;
    a file name that is not valid UTF-8 is shown with ``\\xNN`` escapes and its exact bytes are
    kept in ``path_bytes`` (NULL otherwise).
embeddings
    One L2-normalised vector per track (``FLOAT[dimension]``), from the manifest's model.
windows
    Per-window vectors (L2-normalised) of MAEST tracks, with each window's start in seconds;
    the track vector is their mean (before normalisation).
styles
    Style activations per track (MAEST's Discogs labels, or the MusiCNN model's own tags when it
    made the vectors); empty for the ``features`` embedder.
sound_tags
    Tag probabilities per track from the taggers that run beside every model (``tagger`` is
    ``musicnn-mtt``: MagnaTagATune's 50 tags, ``musicnn-msd``: the Million Song Dataset's 50
    last.fm tags), whatever made the vectors: what ``musicmap find`` reads words against.
projections, projection_info
    2-D map coordinates per named projection, and how each projection was made.
failures
    Files that could not be read, decoded or embedded, with the stage and the reason.
runs
    What each index run did.
meta
    Key/value pairs: ``schema_version`` and ``vectors_generation`` (bumped on every write
    to ``embeddings``; the FAISS file records the generation it was built from).
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from .errors import StoreError

SCHEMA_VERSION = 1

TRACK_FIELDS: tuple[str, ...] = (
    "title",
    "artist",
    "album",
    "album_artist",
    "genre",
    "year",
    "track_number",
    "duration",
    "format",
    "tag_source",
    "extra",
)
"""Metadata columns of ``tracks`` filled from tags (or fallbacks)."""

DDL = """
CREATE SEQUENCE IF NOT EXISTS track_ids START 1;
CREATE TABLE IF NOT EXISTS tracks (
    id BIGINT PRIMARY KEY DEFAULT nextval('track_ids'),
    path VARCHAR NOT NULL UNIQUE,
    size BIGINT NOT NULL,
    mtime DOUBLE NOT NULL,
    fingerprint VARCHAR,
    path_bytes BLOB,
    title VARCHAR,
    artist VARCHAR,
    album VARCHAR,
    album_artist VARCHAR,
    genre VARCHAR,
    year INTEGER,
    track_number INTEGER,
    duration DOUBLE,
    format VARCHAR,
    tag_source VARCHAR,
    extra VARCHAR,
    added_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    updated_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS styles (
    track_id BIGINT NOT NULL,
    label VARCHAR NOT NULL,
    activation FLOAT NOT NULL,
    PRIMARY KEY (track_id, label)
);
CREATE TABLE IF NOT EXISTS sound_tags (
    track_id BIGINT NOT NULL,
    tagger VARCHAR NOT NULL,
    label VARCHAR NOT NULL,
    activation FLOAT NOT NULL,
    PRIMARY KEY (track_id, tagger, label)
);
CREATE TABLE IF NOT EXISTS projections (
    name VARCHAR NOT NULL,
    track_id BIGINT NOT NULL,
    x DOUBLE NOT NULL,
    y DOUBLE NOT NULL,
    cluster INTEGER,
    PRIMARY KEY (name, track_id)
);
CREATE TABLE IF NOT EXISTS projection_info (
    name VARCHAR PRIMARY KEY,
    method VARCHAR NOT NULL,
    params VARCHAR NOT NULL,
    n_tracks INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS failures (
    path VARCHAR PRIMARY KEY,
    stage VARCHAR NOT NULL,
    error VARCHAR NOT NULL,
    failed_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
CREATE SEQUENCE IF NOT EXISTS run_ids START 1;
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY DEFAULT nextval('run_ids'),
    started_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP,
    model VARCHAR NOT NULL,
    roots VARCHAR NOT NULL,
    scanned INTEGER,
    added INTEGER,
    updated INTEGER,
    unchanged INTEGER,
    failed INTEGER,
    status VARCHAR NOT NULL,
    settings VARCHAR
);
CREATE TABLE IF NOT EXISTS meta (
    key VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);
"""


def embeddings_ddl(dimension: int) -> str:
    """DDL of the ``embeddings`` table, whose vector width is fixed by the model."""
    if dimension < 1:
        raise ValueError(f"dimension must be positive, got {dimension}")
    return f"""
CREATE TABLE IF NOT EXISTS embeddings (
    track_id BIGINT PRIMARY KEY,
    vector FLOAT[{int(dimension)}] NOT NULL,
    n_windows INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS windows (
    track_id BIGINT NOT NULL,
    window_index INTEGER NOT NULL,
    start_s DOUBLE,
    vector FLOAT[{int(dimension)}] NOT NULL,
    PRIMARY KEY (track_id, window_index)
);
"""


#: Columns added after the first stores were written (no release had them without), added by
#: :func:`migrate` when a store is opened for writing; readers of older stores check for them.
ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("tracks", "fingerprint", "VARCHAR"), ("tracks", "path_bytes", "BLOB"), ("tracks", "extra", "VARCHAR"),
    ("projections", "cluster", "INTEGER"), ("runs", "settings", "VARCHAR"),
)


def migrate(con: duckdb.DuckDBPyConnection, dimension: int) -> None:
    """Bring a database opened for writing to this schema: create what is missing, add the
    columns of :data:`ADDED_COLUMNS`, set ``schema_version`` and ``vectors_generation``."""
    for table, column, kind in ADDED_COLUMNS:
        con.execute(f"ALTER TABLE IF EXISTS {table} ADD COLUMN IF NOT EXISTS {column} {kind}")
    con.execute(DDL)
    con.execute(embeddings_ddl(dimension))
    con.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
    con.execute("INSERT OR IGNORE INTO meta VALUES ('vectors_generation', '0')")


def check(con: duckdb.DuckDBPyConnection, db: Path) -> None:
    """Refuse a database ``db`` that is not musicmap's, or of another schema version."""
    try:
        row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except duckdb.Error as exc:
        raise StoreError(f"{db} is not a musicmap database ({exc})") from exc
    version = int(row[0]) if row else 0
    if version != SCHEMA_VERSION:
        raise StoreError(f"{db.parent} has schema version {version}; this musicmap reads {SCHEMA_VERSION}")


def has_column(con: duckdb.DuckDBPyConnection, table: str, column: str) -> bool:
    """Whether ``table`` has ``column`` (a read-only store written before it was added may not)."""
    row = con.execute("SELECT count(*) FROM duckdb_columns() WHERE table_name = ? AND column_name = ?",
                      [table, column]).fetchone()
    return row != (0,)
