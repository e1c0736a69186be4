"""Find audio files under one or more folders."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from .errors import IndexerError, NoAudioFiles

logger = logging.getLogger(__name__)

AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".mp4", ".aac", ".wav", ".wave", ".aif",
     ".aiff", ".wma"}
)


#: Extensions never sniffed for audio content (covers, notes, playlists, ...).
NOT_AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".txt", ".nfo", ".cue", ".log", ".pdf", ".m3u",
     ".m3u8", ".pls", ".xml", ".json", ".csv", ".html", ".htm", ".db", ".ini", ".sfv", ".md5", ".accurip",
     ".lrc", ".doc", ".docx", ".zip", ".rar", ".7z", ".exe", ".py", ".sh", ".ds_store", ".tmp", ".part"}
)


def audio_suffix(path: Path) -> str | None:
    """The usual extension of the audio container whose first bytes ``path`` has, or None.

    Recognised: FLAC (``fLaC``), Ogg (``OggS``), RIFF/WAVE, AIFF (``FORM…AIFF``), MP3 (``ID3`` or
    an MPEG frame sync), MP4/M4A (``ftyp``), ASF/WMA.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
    except OSError:
        return None
    if head[:4] == b"fLaC":
        return ".flac"
    if head[:4] == b"OggS":
        return ".ogg"
    if head[:3] == b"ID3":
        return ".mp3"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return ".wav"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return ".aiff"
    if head[4:8] == b"ftyp":
        return ".m4a"
    if head[:4] == bytes.fromhex("3026b275"):  # ASF (WMA)
        return ".wma"
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0 and (head[1] & 0x06) != 0:
        return ".mp3"
    return None


def looks_like_audio(path: Path) -> bool:
    """True when the first bytes are those of an audio container (for unknown extensions)."""
    return audio_suffix(path) is not None


FINGERPRINT_BYTES = 64 * 1024


def fingerprint(path: Path, size: int | None = None) -> str:
    """A content fingerprint: BLAKE2b of the size, the first and the last 64 KiB.

    Cheap (two small reads, whatever the file's size) and, for audio files, unique in practice:
    a moved or renamed file keeps its fingerprint, an edited one changes it.
    """
    size = path.stat().st_size if size is None else size
    digest = hashlib.blake2b(str(size).encode(), digest_size=16)
    with open(path, "rb") as fh:
        digest.update(fh.read(FINGERPRINT_BYTES))
        if size > 2 * FINGERPRINT_BYTES:
            fh.seek(size - FINGERPRINT_BYTES)
            digest.update(fh.read(FINGERPRINT_BYTES))
    return digest.hexdigest()


def scan(roots: Iterable[str | Path], problems: list[tuple[str, str]] | None = None) -> list[Path]:
    """Audio files under ``roots`` (files or folders), recursively, sorted, without duplicates.

    A file is audio by its extension (:data:`AUDIO_EXTENSIONS`) or, with any other extension
    not known to be something else, by its first bytes (:func:`looks_like_audio`): a ``.dat``
    that holds FLAC is found; a ``.mp3`` that holds text is found too and fails to decode, with
    a reason, in the run. Symbolic links to folders are followed, but a folder is visited once.
    Folders that cannot be listed (permissions) are skipped and appended to ``problems`` as
    ``(path, reason)``.

    Raises
    ------
    IndexerError
        If a root does not exist; :class:`~indexer.errors.NoAudioFiles` if no audio file is found
        at all.
    """
    found: dict[str, Path] = {}
    paths = [Path(r).expanduser() for r in roots]
    if not paths:
        raise IndexerError("give at least one folder to index")
    for root in paths:
        if not root.exists():
            raise IndexerError(f"{root} does not exist; give a folder of music files")
        if root.is_file():
            if root.suffix.lower() in AUDIO_EXTENSIONS:
                found.setdefault(str(root.resolve()), root.resolve())
            else:
                raise IndexerError(f"{root} is not an audio file (known: {', '.join(sorted(AUDIO_EXTENSIONS))})")
            continue
        seen_dirs: set[tuple[int, int]] = set()

        def unlisted(exc: OSError) -> None:
            reason = f"{type(exc).__name__}: {exc.strerror or exc} (the folder cannot be listed)"
            logger.warning("skipped folder %s: %s", exc.filename, reason)
            if problems is not None:
                problems.append((str(exc.filename), reason))

        for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=unlisted):
            st = os.stat(dirpath)
            key = (st.st_dev, st.st_ino)
            if key in seen_dirs:
                dirnames[:] = []
                continue
            seen_dirs.add(key)
            dirnames.sort()
            for name in filenames:
                if name.startswith("._"):  # macOS resource forks
                    continue
                suffix = Path(name).suffix.lower()
                if suffix not in AUDIO_EXTENSIONS and (
                    suffix in NOT_AUDIO_EXTENSIONS or not looks_like_audio(Path(dirpath, name))
                ):
                    continue
                path = Path(dirpath, name)
                try:
                    real = path.resolve()
                    is_file = real.is_file()
                except (OSError, RuntimeError) as exc:  # a symlink loop, a vanished file
                    logger.info("skipped %s: %s", path, exc)
                    continue
                if is_file:
                    found.setdefault(str(real), real)
                else:
                    logger.info("skipped %s: not a file (a broken link?)", path)
    if not found:
        names = ", ".join(str(r) for r in paths)
        raise NoAudioFiles(f"no audio files found under {names} "
                           f"(looked for {', '.join(sorted(AUDIO_EXTENSIONS))})", [str(p) for p in paths])
    return sorted(found.values())
