"""File paths as the database keeps them: text, with the exact bytes beside it when needed.

A file name need not be valid UTF-8 (old FAT copies, Latin-1 tags turned into names), but DuckDB
text must be. ``tracks.path`` holds :func:`db_path` (undecodable bytes as ``\\xNN``, so a person
can read and query it) and ``tracks.path_bytes`` the exact bytes (:func:`raw_bytes`, NULL for
ordinary names); :func:`fs_path` turns a row back into the name the file system knows.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import PurePath
from typing import Any


def db_path(path: str) -> str:
    """``path`` as valid UTF-8 text: undecodable bytes of a file name become ``\\xNN``."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def raw_bytes(path: str) -> bytes | None:
    """The exact bytes of a path whose name is not valid UTF-8, else None."""
    return os.fsencode(path) if db_path(path) != path else None


def fs_path(text: str, raw: bytes | None) -> str:
    """A file's name as the file system knows it, from its ``path`` and ``path_bytes`` columns."""
    return os.fsdecode(raw) if raw is not None else text


def tag_text(value: Any) -> Any:
    """Tag text as valid UTF-8 (a title taken from a non-UTF-8 file name, say); other values as they are."""
    return db_path(value) if isinstance(value, str) else value


def relative_to_roots(path: str, roots: Sequence[str]) -> str:
    """``path`` relative to the longest of ``roots`` (library folders) holding it, else its name."""
    for root in sorted(roots, key=len, reverse=True):
        base = root.rstrip("/")
        if base and path.startswith(base + "/"):
            return path[len(base) + 1:]
    return PurePath(path).name
