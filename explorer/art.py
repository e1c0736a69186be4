"""Cover art by track id: the picture in the file, or the folder's image, as small cached thumbnails.

Where a picture comes from, first found wins:

1. embedded in the file, read with mutagen: ID3 ``APIC`` frames (MP3, also ID3 in WAV/AIFF), MP4
   ``covr`` atoms (M4A), FLAC picture blocks, and Vorbis comments' ``METADATA_BLOCK_PICTURE`` (Ogg
   Vorbis, Opus). The front cover (picture type 3) is preferred over other pictures;
2. an image beside the file: :data:`FOLDER_NAMES` (``cover.jpg``, ``folder.jpg``, ...; any case).

Pictures are decoded with Pillow and shrunk to fit ``size`` × ``size`` (JPEG, quality 85): a 3,000-px
scan costs ~60 ms once, then comes from memory (:class:`CoverArt` keeps :data:`CACHE_ENTRIES`
thumbnails, keyed by track, size and the file's and folder image's mtimes). A file without a picture,
or whose picture does not decode (truncated, not an image), gets :func:`placeholder`: a neutral SVG,
never an error. The client names a track id, never a path.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

FOLDER_NAMES = ("cover", "folder", "front", "album", "albumart", "albumartsmall")
"""Image files beside a track taken as its album's cover (stems; ``.jpg``, ``.jpeg``, ``.png``, ``.webp``)."""
FOLDER_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
SIZES = (32, 512)
"""The smallest and largest thumbnail edge a client may ask for, in pixels."""
CACHE_ENTRIES = 4096
"""Thumbnails kept in memory (~5 kB each at 96 px)."""
MAX_PICTURE_BYTES = 20_000_000
"""Larger embedded or folder pictures are ignored (a damaged tag can claim any size)."""
FRONT_COVER = 3
"""The picture type of a front cover (ID3 APIC and FLAC/Vorbis picture blocks share the numbering)."""


@dataclass(frozen=True)
class Thumbnail:
    """Image bytes, their MIME type, and where the picture came from (``embedded``, ``folder`` or
    ``none``: the placeholder)."""

    data: bytes
    mimetype: str
    source: str


def placeholder(size: int) -> Thumbnail:
    """A neutral square with a note: what a track without a (readable) picture shows."""
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" viewBox="0 0 48 48">'
           '<rect width="48" height="48" rx="4" fill="#e4e6eb"/>'
           '<path d="M20 14v15.3a5 5 0 1 0 3 4.6V20h9v-6z" fill="#9aa0aa"/></svg>')
    return Thumbnail(svg.encode(), "image/svg+xml", "none")


def embedded_picture(path: str) -> bytes | None:
    """The file's own picture (front cover first), or None. Never raises for a bad file."""
    try:
        import mutagen

        audio = mutagen.File(path)
    except Exception as exc:  # mutagen raises many kinds for damaged files; a cover is never worth failing
        logger.debug("cover art: %s: %s", path, exc)
        return None
    if audio is None:
        return None
    pictures: list[tuple[int, bytes]] = []  # (picture type, bytes)
    tags = getattr(audio, "tags", None)
    for picture in getattr(audio, "pictures", None) or []:  # FLAC picture blocks
        pictures.append((int(picture.type), bytes(picture.data)))
    if tags is not None:
        if hasattr(tags, "getall"):  # ID3
            pictures += [(int(frame.type), bytes(frame.data)) for frame in tags.getall("APIC")]
        if "covr" in tags:  # MP4
            pictures += [(FRONT_COVER, bytes(cover)) for cover in tags["covr"]]
        blocks = tags.get("metadata_block_picture") if hasattr(tags, "get") and not hasattr(tags, "getall") \
            else None
        for block in blocks or []:  # Vorbis comments (Ogg Vorbis, Opus, also FLAC's own comments)
            decoded = _picture_block(block)
            if decoded is not None:
                pictures.append(decoded)
    pictures = [(kind, data) for kind, data in pictures if 0 < len(data) <= MAX_PICTURE_BYTES]
    if not pictures:
        return None
    return sorted(pictures, key=lambda p: p[0] != FRONT_COVER)[0][1]


def _picture_block(text: str) -> tuple[int, bytes] | None:
    """A base64 ``METADATA_BLOCK_PICTURE`` comment (a FLAC picture block) as (type, bytes)."""
    try:
        from mutagen.flac import Picture

        picture = Picture(base64.b64decode(text))
    except Exception:  # not base64, or not a picture block
        return None
    return int(picture.type), bytes(picture.data)


def folder_picture(path: str) -> Path | None:
    """An image beside ``path`` named like an album cover (:data:`FOLDER_NAMES`), or None."""
    folder = Path(path).parent
    try:
        names = {entry.name.lower(): entry.name for entry in os.scandir(folder) if entry.is_file()}
    except OSError:
        return None
    for stem in FOLDER_NAMES:
        for suffix in FOLDER_SUFFIXES:
            found = names.get(stem + suffix)
            if found is not None:
                return folder / found
    return None


def thumbnail(data: bytes, size: int) -> bytes:
    """``data`` (any image Pillow reads) as a JPEG fitting ``size`` × ``size``.

    Raises
    ------
    ValueError
        When ``data`` is not a readable image (truncated, corrupt, another format).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.draft("RGB", (size, size))  # JPEG: decode at a reduced scale, much faster for big scans
            image = opened.convert("RGB")
            image.thumbnail((size, size))
            out = io.BytesIO()
            image.save(out, "JPEG", quality=85, optimize=True)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"not a readable image ({exc})") from exc
    return out.getvalue()


class CoverArt:
    """Thumbnails of tracks' cover art, kept in memory (see the module docstring)."""

    def __init__(self, entries: int = CACHE_ENTRIES) -> None:
        self._cache: OrderedDict[tuple[int, int, tuple[int, ...]], Thumbnail] = OrderedDict()
        self._lock = threading.Lock()
        self._entries = entries

    def get(self, track_id: int, path: str, size: int) -> Thumbnail:
        """The thumbnail of the track whose file is ``path``: embedded picture, folder image, or
        the placeholder."""
        folder_image = folder_picture(path)
        key = (int(track_id), int(size), (*_mtime(path), *_mtime(folder_image)))
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        made = self._make(path, folder_image, size)
        with self._lock:
            self._cache[key] = made
            while len(self._cache) > self._entries:
                self._cache.popitem(last=False)
        return made

    @staticmethod
    def _make(path: str, folder_image: Path | None, size: int) -> Thumbnail:
        for source, data in (("embedded", lambda: embedded_picture(path)),
                             ("folder", lambda: _read(folder_image))):
            picture = data()
            if picture is None:
                continue
            try:
                return Thumbnail(thumbnail(picture, size), "image/jpeg", source)
            except ValueError as exc:
                logger.info("cover art of %s (%s): %s", path, source, exc)
        return placeholder(size)


def _mtime(path: str | Path | None) -> tuple[int, ...]:
    if path is None:
        return (0,)
    try:
        return (os.stat(path).st_mtime_ns,)
    except OSError:
        return (-1,)


def _read(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        if path.stat().st_size > MAX_PICTURE_BYTES:
            return None
        return path.read_bytes()
    except OSError:
        return None
