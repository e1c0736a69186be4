"""Query by example: an uploaded audio clip, embedded with the store's model and placed on the map.

The explorer never decodes audio itself (it does not import ``indexer`` or torch): ``musicmap serve
--allow-upload`` injects two functions, ``embed(path) -> vector`` (the store's model, exactly as its
tracks were embedded) and ``place(map_name, vectors) -> positions`` (openTSNE ``transform`` into the
stored map). This module owns what happens to the bytes: a size limit, a file name that never comes
from the client (only a known audio suffix is kept), a fresh temporary folder that is deleted after
the embedding whatever happens, and refusals with a clear reason (:class:`UploadError`).
"""

from __future__ import annotations

import base64
import binascii
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from store import l2_normalise

from .limits import MAX_UPLOAD_MB

EmbedFn = Callable[[Path], np.ndarray]
"""``embed(path) -> vector`` of shape (d,); raises :class:`UploadError` for a file it cannot use."""
PlaceFn = Callable[[str, np.ndarray], "np.ndarray | None"]
"""``place(map_name, vectors of shape (m, d)) -> positions (m, 2)``, or None when that map cannot place."""

AUDIO_SUFFIXES = frozenset({".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".mp4", ".aac", ".wav", ".aif",
                            ".aiff", ".wma"})
TEMP_PREFIX = "musicmap-upload-"


class UploadError(ValueError):
    """An upload refused; the message says why. ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def data_url_bytes(contents: str) -> bytes:
    """The bytes of a ``data:...;base64,...`` URL (what the page's upload box sends)."""
    head, sep, body = contents.partition(",")
    if not sep or not head.startswith("data:") or not head.endswith(";base64"):
        raise UploadError("the upload did not arrive as a base64 data URL")
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise UploadError("the upload's base64 data is damaged") from None


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n < 10e6 else f"{n / 1e6:.0f} MB"


@dataclass
class Uploads:
    """Embeds uploads with the injected ``embed`` and places them with ``place``."""

    embed: EmbedFn
    place: PlaceFn | None = None
    max_bytes: int = MAX_UPLOAD_MB * 1_000_000

    def vector(self, data: bytes, filename: str | None = None) -> np.ndarray:
        """The vector of an uploaded file's bytes (checked, embedded from a temporary file that is
        deleted before this returns or raises)."""
        if not data:
            raise UploadError("the upload is empty (0 bytes)")
        if len(data) > self.max_bytes:
            raise UploadError(f"the file is {_megabytes(len(data))}; uploads may be at most "
                              f"{_megabytes(self.max_bytes)}", status=413)
        suffix = Path(filename or "").suffix.lower()
        name = "upload" + (suffix if suffix in AUDIO_SUFFIXES else "")  # nothing else of the client's name is used
        with tempfile.TemporaryDirectory(prefix=TEMP_PREFIX) as folder:
            path = Path(folder) / name
            path.write_bytes(data)
            vector = np.asarray(self.embed(path), np.float32).reshape(-1)
        norm = float(np.linalg.norm(vector))
        if not np.isfinite(norm) or norm == 0.0:
            raise UploadError("the clip's embedding is empty or not finite (is the audio silent or broken?)")
        return l2_normalise(vector)  # as the store's vectors

    def position(self, map_name: str, vector: np.ndarray) -> tuple[float, float] | None:
        """Where ``vector`` lands on map ``map_name`` (its points do not move); None when it cannot say."""
        if self.place is None:
            return None
        placed = self.place(map_name, vector.reshape(1, -1))
        if placed is None or not np.all(np.isfinite(placed)):
            return None
        return float(placed[0, 0]), float(placed[0, 1])
