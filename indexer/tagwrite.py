"""Writing musicmap's predictions back into the files' own tags (opt-in), with a byte-exact undo.

Values go into each format's native tag system through mutagen:

    field      ID3 (mp3, wav)          Vorbis comments (flac, ogg, opus)   MP4 (m4a)
    grouping   TIT1                    GROUPING                            ©grp
    genre      TCON                    GENRE                               ©gen
    comment    COMM (lang eng, "")     COMMENT                             ©cmt
    custom     TXXX:MUSICMAP_STYLES    MUSICMAP_STYLES                     ----:com.apple.iTunes:MUSICMAP_STYLES
    cluster    TXXX:MUSICMAP_CLUSTER   MUSICMAP_CLUSTER                    ----:com.apple.iTunes:MUSICMAP_CLUSTER

The backup is a binary diff, so it works for every format and is exact to the byte: before a
file is written it is copied aside; afterwards the bytes that differ (between the common prefix
and the common suffix of the old and new file — the tag region, wherever the format keeps it)
are saved with the new file's size, mtime and a hash of its changed region. ``undo`` puts those
bytes back only if the file is still exactly as musicmap left it (a file edited since is
skipped and reported), and restores its mtime, so the file is byte-identical to the original.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FIELDS = ("grouping", "genre", "comment", "custom")
BACKUPS = "tag-backups"
_CHUNK = 1 << 20


class TagWriteError(Exception):
    """A file whose tags could not be written (unsupported format, unreadable, read-only)."""


def _set(audio: Any, field: str, value: str) -> None:
    """Set ``field`` (one of :data:`FIELDS`, or ``cluster``) to ``value`` in a mutagen file object."""
    from mutagen.id3 import COMM, ID3, TCON, TIT1, TXXX
    from mutagen.mp4 import MP4, MP4FreeForm

    if isinstance(audio, MP4):
        if audio.tags is None:
            audio.add_tags()
        mp4: Any = audio.tags
        key = {"grouping": "\xa9grp", "genre": "\xa9gen", "comment": "\xa9cmt"}.get(field)
        if key is not None:
            mp4[key] = [value]
        else:
            name = "MUSICMAP_CLUSTER" if field == "cluster" else "MUSICMAP_STYLES"
            mp4[f"----:com.apple.iTunes:{name}"] = [MP4FreeForm(value.encode("utf-8"))]
        return
    tags = audio.tags
    if tags is None:
        audio.add_tags()
        tags = audio.tags
    if isinstance(tags, ID3):
        if field == "grouping":
            tags.setall("TIT1", [TIT1(encoding=3, text=[value])])
        elif field == "genre":
            tags.setall("TCON", [TCON(encoding=3, text=[value])])
        elif field == "comment":
            tags.setall("COMM", [COMM(encoding=3, lang="eng", desc="", text=[value])])
        else:
            name = "MUSICMAP_CLUSTER" if field == "cluster" else "MUSICMAP_STYLES"
            tags.delall(f"TXXX:{name}")
            tags.add(TXXX(encoding=3, desc=name, text=[value]))
        return
    if hasattr(tags, "__setitem__"):  # Vorbis comments (FLAC, Ogg Vorbis, Opus)
        key = {"grouping": "GROUPING", "genre": "GENRE", "comment": "COMMENT", "cluster": "MUSICMAP_CLUSTER"}.get(
            field, "MUSICMAP_STYLES")
        tags[key] = [value]
        return
    raise TagWriteError(f"{type(audio).__name__} files: tag writing is not supported")


def read_field(path: str | Path, field: str) -> str | None:
    """The current value of ``field`` in ``path``'s tags (None when absent), as :func:`write` sets it."""
    import mutagen
    from mutagen.id3 import ID3
    from mutagen.mp4 import MP4

    audio = mutagen.File(path)
    if audio is None or audio.tags is None:
        return None
    tags = audio.tags
    name = "MUSICMAP_CLUSTER" if field == "cluster" else "MUSICMAP_STYLES"
    if isinstance(audio, MP4):
        key = {"grouping": "\xa9grp", "genre": "\xa9gen", "comment": "\xa9cmt"}.get(
            field, f"----:com.apple.iTunes:{name}")
        values = tags.get(key)
        if not values:
            return None
        v = values[0]
        return bytes(v).decode("utf-8") if isinstance(v, bytes) else str(v)
    if isinstance(tags, ID3):
        frame_id = {"grouping": "TIT1", "genre": "TCON", "comment": "COMM::eng"}.get(field, f"TXXX:{name}")
        frame = tags.get(frame_id)
        return str(frame.text[0]) if frame is not None and frame.text else None
    key = {"grouping": "GROUPING", "genre": "GENRE", "comment": "COMMENT"}.get(field, name)
    values = tags.get(key)
    return str(values[0]) if values else None


@dataclass(frozen=True)
class Change:
    """One file's tag write: where the bytes changed and how to put them back."""

    path: str
    prefix: int
    suffix: int
    old_size: int
    old_mtime_ns: int
    new_size: int
    new_mtime_ns: int
    new_hash: str
    old_bytes: bytes


def _common_prefix(a: Path, b: Path) -> int:
    """Equal leading bytes of ``a`` and ``b``."""
    n = 0
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(_CHUNK), fb.read(_CHUNK)
            m = min(len(x), len(y))
            if m == 0:
                return n
            if x[:m] == y[:m]:
                n += m
                if len(x) != len(y):
                    return n
                continue
            return n + next(i for i in range(m) if x[i] != y[i])


def _common_suffix(a: Path, b: Path, limit: int) -> int:
    """Equal trailing bytes of ``a`` and ``b``, at most ``limit``."""
    sa, sb = a.stat().st_size, b.stat().st_size
    n = 0
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while n < limit:
            step = min(_CHUNK, limit - n)
            fa.seek(sa - n - step)
            fb.seek(sb - n - step)
            x, y = fa.read(step), fb.read(step)
            if x == y:
                n += step
                continue
            i = next((i for i in range(1, step + 1) if x[-i] != y[-i]), step + 1)
            return n + i - 1
    return n


def _region_hash(path: Path, start: int, end: int) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        fh.seek(start)
        left = end - start
        while left > 0:
            block = fh.read(min(_CHUNK, left))
            if not block:
                break
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()


def write(path: str | Path, values: dict[str, str], scratch: Path) -> Change | None:
    """Set ``values`` (field → text) in ``path``'s tags; returns how to undo it, or None when the
    file already held exactly these values (nothing written).

    Raises
    ------
    TagWriteError
        The file cannot be read or written, or its format has no writable tags.
    """
    import mutagen

    p = Path(path)
    try:
        before = p.stat()
        audio = mutagen.File(p)
    except (OSError, mutagen.MutagenError) as exc:
        raise TagWriteError(f"{type(exc).__name__}: {exc}") from None
    if audio is None:
        raise TagWriteError("not a format mutagen can tag")
    if all(read_field(p, f) == v for f, v in values.items()):
        return None
    copy = scratch / "original"
    shutil.copy2(p, copy)
    try:
        for field, value in values.items():
            _set(audio, field, value)
        audio.save()
    except (OSError, mutagen.MutagenError, ValueError) as exc:
        shutil.copy2(copy, p)  # a half-written file is put back as it was
        raise TagWriteError(f"{type(exc).__name__}: {exc}") from None
    after = p.stat()
    prefix = _common_prefix(copy, p)
    suffix = _common_suffix(copy, p, min(before.st_size, after.st_size) - prefix)
    with open(copy, "rb") as fh:
        fh.seek(prefix)
        old_bytes = fh.read(before.st_size - prefix - suffix)
    copy.unlink()
    return Change(str(p), prefix, suffix, before.st_size, before.st_mtime_ns, after.st_size, after.st_mtime_ns,
                  _region_hash(p, prefix, after.st_size - suffix), old_bytes)


class Backup:
    """A folder of changes, one JSON line each, written (and flushed) before the next file is touched."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._log = open(folder / "changes.jsonl", "a", encoding="utf-8")  # noqa: SIM115 (held until close)

    @classmethod
    def new(cls, store_path: Path) -> Backup:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        folder = store_path / BACKUPS / stamp
        n = 1
        while folder.exists():
            n += 1
            folder = store_path / BACKUPS / f"{stamp}-{n}"
        return cls(folder)

    def add(self, change: Change, extra: dict[str, Any]) -> None:
        row = {**{k: v for k, v in change.__dict__.items() if k != "old_bytes"},
               "old_bytes": base64.b64encode(change.old_bytes).decode("ascii"), **extra}
        self._log.write(json.dumps(row) + "\n")
        self._log.flush()
        os.fsync(self._log.fileno())

    def close(self) -> None:
        self._log.close()


def backups(store_path: Path) -> list[Path]:
    """Backups not yet undone, oldest first."""
    root = store_path / BACKUPS
    if not root.is_dir():
        return []
    return sorted(f for f in root.iterdir() if (f / "changes.jsonl").is_file() and not (f / "UNDONE").exists())


def changes(folder: Path) -> Iterator[dict[str, Any]]:
    with open(folder / "changes.jsonl", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                row["old_bytes"] = base64.b64decode(row["old_bytes"])
                yield row


def undo_one(row: dict[str, Any]) -> str:
    """Put one file's original bytes back. Returns ``restored``, ``gone`` or ``changed since``."""
    p = Path(row["path"])
    try:
        st = p.stat()
    except FileNotFoundError:
        return "gone"
    if st.st_size != row["new_size"] or _region_hash(p, row["prefix"], st.st_size - row["suffix"]) != row["new_hash"]:
        return "changed since"
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".undo")
    try:
        with os.fdopen(fd, "wb") as out, open(p, "rb") as src:
            out.write(src.read(row["prefix"]))
            out.write(row["old_bytes"])
            src.seek(st.st_size - row["suffix"])
            while block := src.read(_CHUNK):
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        shutil.copymode(p, tmp)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    os.utime(p, ns=(row["old_mtime_ns"], row["old_mtime_ns"]))
    return "restored"
