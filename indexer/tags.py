"""Read tags with mutagen, with fallbacks for files that have none.

Fallbacks, in order, for a file without the tag:
- title and artist from a file name like ``Artist - Title.ext`` (``NN - Title`` gives the title);
- genre from the parent folder when the file follows the GTZAN layout
  (``blues/blues.00012.wav``): the folder is the only label such libraries have.

``tag_source`` records where the title/genre came from: ``tags``, ``filename`` or ``folder``
(comma-separated when mixed).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import mutagen
from mutagen.id3 import ID3

logger = logging.getLogger(__name__)

_EASY_KEYS = {
    "title": "title",
    "artist": "artist",
    "album": "album",
    "album_artist": "albumartist",
    "genre": "genre",
    "date": "date",
    "track_number": "tracknumber",
}
_ID3_FRAMES = {
    "title": "TIT2",
    "artist": "TPE1",
    "album": "TALB",
    "album_artist": "TPE2",
    "genre": "TCON",
    "date": "TDRC",
    "track_number": "TRCK",
}
_NUMBERED = re.compile(r"^\s*(\d{1,3})\s*[-._ ]\s*(.+)$")


def _first(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    if value is None:
        return None
    text = str(value).strip().replace("\x00", "")
    return text or None


def _parse_int(text: str | None, pattern: str) -> int | None:
    if not text:
        return None
    match = re.search(pattern, text)
    return int(match.group(1)) if match else None


def read_tags(path: Path) -> dict[str, Any]:
    """Tags of ``path`` as the store's track fields.

    Returns
    -------
    dict
        ``title, artist, album, album_artist, genre, year, track_number, duration, format,
        tag_source``; missing values are None. ``duration`` is None when mutagen cannot tell.

    Raises
    ------
    mutagen.MutagenError
        When the file is damaged in a way mutagen reports (the caller records it).
    """
    raw: dict[str, str | None] = dict.fromkeys(_EASY_KEYS)
    duration: float | None = None
    audio = mutagen.File(path, easy=True)
    if audio is not None:
        info = getattr(audio, "info", None)
        length = getattr(info, "length", None)
        duration = float(length) if length else None
        tags = audio.tags
        if isinstance(tags, ID3):  # WAV/AIFF carry plain ID3 even with easy=True
            for key, frame in _ID3_FRAMES.items():
                found = tags.get(frame)
                raw[key] = _first(found.text if found is not None else None)
        elif tags is not None:
            for key, easy in _EASY_KEYS.items():
                try:
                    raw[key] = _first(tags.get(easy))
                except (KeyError, ValueError):
                    raw[key] = None

    sources = ["tags"] if any(raw.values()) else []
    title, artist = raw["title"], raw["artist"]
    if title is None:
        stem = path.stem
        if " - " in stem and not _NUMBERED.match(stem):
            left, right = stem.split(" - ", 1)
            artist = artist or left.strip() or None
            title = right.strip() or stem
        else:
            m = _NUMBERED.match(stem)
            title = m.group(2).strip() if m else stem
        sources.append("filename")
    genre = raw["genre"]
    parent = path.parent.name
    if genre is None and parent and path.stem.lower().startswith(parent.lower() + "."):
        genre = parent
        sources.append("folder")
    return {
        "title": title,
        "artist": artist,
        "album": raw["album"],
        "album_artist": raw["album_artist"],
        "genre": genre,
        "year": _parse_int(raw["date"], r"(\d{4})"),
        "track_number": _parse_int(raw["track_number"], r"^\s*(\d+)"),
        "duration": duration,
        "format": path.suffix.lower().lstrip("."),
        "tag_source": ",".join(dict.fromkeys(sources)) or None,
    }
