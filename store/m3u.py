"""Playlists as files: M3U/M3U8 read (a playlist's tracks, for ``musicmap extend``) and written (a
selection, a path or an extension, from the CLI and the explorer). Extended M3U (``#EXTINF``),
UTF-8, exact bytes for file names that are not UTF-8, paths absolute or relative to the
playlist's folder; reading also takes ``file://`` URLs and Latin-1 ``.m3u`` files."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

import pandas as pd

from .errors import StoreError, TrackNotFound

if TYPE_CHECKING:
    from .store import Store


def read_m3u(path: str | Path) -> list[str]:
    """The file paths of an M3U/M3U8 playlist, in order: comments and ``#EXT`` lines skipped,
    ``file://`` URLs decoded, relative paths taken from the playlist's folder; UTF-8 (M3U8), or
    Latin-1 for an old ``.m3u`` that is not valid UTF-8.

    Raises
    ------
    StoreError
        The playlist cannot be read.
    """
    playlist = Path(path).expanduser()
    try:
        raw = playlist.read_bytes()
    except OSError as exc:
        raise StoreError(f"cannot read playlist {playlist}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    out = []
    for line in text.splitlines():
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if entry.startswith("file://"):
            entry = unquote(urlparse(entry).path)
        elif "://" in entry:
            continue  # a stream URL: not a file of this library
        p = Path(entry)
        out.append(str(p) if p.is_absolute() else os.path.normpath(playlist.resolve().parent / p))
    return out


def playlist_tracks(store: Store, paths: Sequence[str]) -> tuple[list[int], list[str]]:
    """(track ids of the playlist's files the store holds, in order; the paths it does not hold)."""
    ids: list[int] = []
    unknown: list[str] = []
    for p in paths:
        track_id = store.track_id_for_path(p)  # resolved: links and ../ as the indexer saw them
        if track_id is None:
            unknown.append(p)
        elif track_id not in ids:
            ids.append(track_id)
    return ids, unknown


def m3u_bytes(store: Store, track_ids: list[int], *, relative_to: str | Path | None = None) -> bytes:
    """``track_ids`` (in order) as an extended M3U playlist: UTF-8 (``#EXTM3U`` with
    ``#EXTINF:seconds,Artist - Title``), absolute paths, or relative to the folder ``relative_to``
    (where the playlist is meant to be saved); a file name that is not valid UTF-8 is written as its
    exact bytes, so players still find the file."""
    rows = store.tracks(track_ids, columns=("id", "title", "artist", "duration", "path", "path_bytes"))
    by_id = {int(r["id"]): r for _, r in rows.iterrows()}
    lines = [b"#EXTM3U"]
    for track_id in track_ids:
        row = by_id.get(int(track_id))
        if row is None:
            raise TrackNotFound(track_id, store.path)
        seconds = round(float(row["duration"])) if pd.notna(row["duration"]) else -1
        label = " - ".join(str(v) for v in (row["artist"], row["title"]) if isinstance(v, str) and v)
        lines.append(f"#EXTINF:{seconds},{label.replace(chr(10), ' ')}".encode())
        raw = row["path_bytes"]
        path = os.fsdecode(bytes(raw)) if isinstance(raw, (bytes, bytearray, memoryview)) else str(row["path"])
        if relative_to is not None:
            path = os.path.relpath(path, os.fspath(relative_to))
        lines.append(os.fsencode(path))
    return b"\n".join(lines) + b"\n"


def common_folder(store: Store, track_ids: list[int]) -> str:
    """The deepest folder holding all of ``track_ids``' files (where a relative playlist goes)."""
    paths = store.tracks(track_ids, columns=("id", "path"))["path"].dropna().astype(str).tolist()
    if not paths:
        raise StoreError("no tracks given")
    return os.path.commonpath([os.path.dirname(p) for p in paths])


def write_m3u(store: Store, track_ids: list[int], path: str | Path, *, relative: bool = False) -> int:
    """Write ``track_ids`` (in order) as an extended M3U playlist (:func:`m3u_bytes`), with paths
    relative to the playlist's folder when ``relative``; returns the count."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise StoreError(f"{target} is a folder; give a playlist file name (.m3u or .m3u8)")
    data = m3u_bytes(store, track_ids, relative_to=target.resolve().parent if relative else None)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)
    return len(track_ids)
