"""Find audio files under one or more folders."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from .errors import IndexerError

logger = logging.getLogger(__name__)

AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".mp4", ".aac", ".wav", ".wave", ".aif",
     ".aiff", ".wma"}
)


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


def scan(roots: Iterable[str | Path]) -> list[Path]:
    """Audio files under ``roots`` (files or folders), recursively, sorted, without duplicates.

    Symbolic links to folders are followed, but a folder is visited once (no loops).

    Raises
    ------
    IndexerError
        If a root does not exist, or no audio file is found at all.
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
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            st = os.stat(dirpath)
            key = (st.st_dev, st.st_ino)
            if key in seen_dirs:
                dirnames[:] = []
                continue
            seen_dirs.add(key)
            dirnames.sort()
            for name in filenames:
                if Path(name).suffix.lower() in AUDIO_EXTENSIONS and not name.startswith("._"):
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
        raise IndexerError(f"no audio files found under {names} "
                           f"(looked for {', '.join(sorted(AUDIO_EXTENSIONS))})")
    return sorted(found.values())
