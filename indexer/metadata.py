"""Labels that live outside the files: ``--metadata FILE.csv`` and ``--category-from``.

``--metadata`` reads a CSV with a ``path`` column and any other columns. Paths may be absolute
or relative to the CSV's folder. Columns named like track fields (title, artist, album,
album_artist, genre, year, track_number) override the tags; every other column is kept as JSON
in ``tracks.extra`` (query it with ``json_extract_string(extra, '$.mood')``).

``--category-from`` says where ``genre`` comes from: ``tag`` (tags, then the GTZAN folder
fallback), ``folder`` (always the parent folder's name) or ``csv`` (the metadata file's
``genre`` or ``category`` column). A track still without a genre gets its model's prediction
(:func:`fill_genre`), marked ``predicted`` in ``tag_source``.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Collection
from pathlib import Path
from typing import Any

from .errors import IndexerError

logger = logging.getLogger(__name__)

CATEGORY_SOURCES = ("tag", "folder", "csv")
_FIELDS = {"title", "artist", "album", "album_artist", "genre", "year", "track_number"}
_INT_FIELDS = {"year", "track_number"}


def read_metadata(csv_path: str | Path) -> dict[str, dict[str, str]]:
    """Rows of the metadata CSV keyed by resolved absolute path.

    Raises
    ------
    IndexerError
        The file is missing, unreadable, or has no ``path`` column.
    """
    path = Path(csv_path).expanduser()
    if not path.is_file():
        raise IndexerError(f"--metadata {path}: no such file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or "path" not in reader.fieldnames:
                raise IndexerError(f"--metadata {path}: the CSV needs a 'path' column "
                                   f"(found: {', '.join(reader.fieldnames or []) or 'no header'})")
            rows: dict[str, dict[str, str]] = {}
            for row in reader:
                raw = (row.get("path") or "").strip()
                if not raw:
                    continue
                p = Path(raw).expanduser()
                if not p.is_absolute():
                    p = path.parent / p
                rows[str(p.resolve())] = {k: (v or "").strip() for k, v in row.items() if k and k != "path"}
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise IndexerError(f"--metadata {path}: cannot read it as UTF-8 CSV ({exc})") from exc
    logger.info("metadata: %d rows from %s", len(rows), path)
    return rows


def apply_metadata(tags: dict[str, Any], path: str, *, rows: dict[str, dict[str, str]] | None,
                   category_from: str) -> dict[str, Any]:
    """Tags with the metadata row of ``path`` and the chosen category source applied."""
    out = dict(tags)
    sources = [s for s in (out.get("tag_source") or "").split(",") if s]
    row = (rows or {}).get(path)
    if row:
        extra: dict[str, str] = {}
        for key, value in row.items():
            if key in _FIELDS and value:
                if key in _INT_FIELDS:
                    try:
                        out[key] = int(float(value))
                    except ValueError:
                        logger.warning("metadata for %s: %s=%r is not a number; ignored", path, key, value)
                        continue
                elif key == "genre" and category_from != "csv":
                    continue  # genre comes from where --category-from says
                else:
                    out[key] = value
            elif key not in _FIELDS and key != "category" and value:
                extra[key] = value
        if extra:
            out["extra"] = json.dumps(extra, ensure_ascii=False, sort_keys=True)
        sources.append("csv")
    if category_from == "folder":
        out["genre"] = Path(path).parent.name or out.get("genre")
        sources.append("folder")
    elif category_from == "csv":
        label = (row or {}).get("genre") or (row or {}).get("category")
        out["genre"] = label or None
    out["tag_source"] = ",".join(dict.fromkeys(sources)) or None
    return out


def fill_genre(tags: dict[str, Any], styles: dict[str, float],
               genre_labels: Collection[str] | None = None) -> dict[str, Any]:
    """A track with no genre tag gets a predicted genre, marked predicted.

    MAEST's labels read ``"Genre---Style"``: the genre part of the top style (``"Electronic---Techno"``
    → ``Electronic``). A model whose labels mix genres with moods and instruments (MusiCNN's tags)
    names its genre labels (``ModelInfo.extra["genre_labels"]``): the highest-scoring of those.
    """
    if tags.get("genre") or not styles:
        return tags
    if genre_labels is not None:
        candidates = [label for label in styles if label in genre_labels]
        if not candidates:
            return tags
        top = max(candidates, key=lambda label: styles[label])
        genre = top[:1].upper() + top[1:]
    else:
        top = max(styles, key=lambda label: styles[label])
        genre = top.split("---", 1)[0].strip()
    if not genre or genre.startswith("LABEL_"):
        return tags
    source = ",".join(filter(None, [tags.get("tag_source"), "predicted"]))
    return {**tags, "genre": genre, "tag_source": source}
