"""Real music for the demo and the tests: freely licensed game soundtracks from Debian's archive.

``apt-get download PACKAGE`` fetches a ``.deb`` without root; ``dpkg-deb --fsys-tarfile`` streams
its files, and only the music (and the package's ``copyright`` file) is written out, one folder
per package. A folder that is complete (its ``.musicmap-source.json`` lists its files) is reused:
a second run downloads nothing. Files shorter than :data:`MIN_SECONDS` (jingles, stingers) are
left out.

:data:`DEMO_SOURCES` (six soundtracks, 125 tracks, about 4 hours of music, 364 MB of downloads)
is what ``musicmap demo`` uses; :data:`TEST_SOURCES` the three smaller ones the tests fetch.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import cast

logger = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".ogg", ".oga", ".mp3", ".flac", ".wav", ".opus")
MIN_SECONDS = 20.0
MARKER = ".musicmap-source.json"


class MusicUnavailable(RuntimeError):
    """Debian's music cannot be fetched here (no apt-get, no archive, a failed download)."""


@dataclass(frozen=True)
class Source:
    """One Debian package whose music the demo uses.

    Attributes
    ----------
    package : str
        The Debian package.
    name : str
        The game, shown as the album of its tracks.
    folders : tuple of str
        Folders inside the package that hold its music (``./usr/share/...``).
    credit : str
        Who made the music and its licence, from the package's copyright file (kept beside
        the music).
    """

    package: str
    name: str
    folders: tuple[str, ...]
    credit: str


DEMO_SOURCES: tuple[Source, ...] = (
    Source("drascula-music", "Drascula: The Vampire Strikes Back", ("./usr/share/scummvm/drascula/audio/",),
           "© 1996-2008 Alcachofa Soft S.L., freely redistributable (Drascula licence)"),
    Source("hyperrogue-music", "HyperRogue", ("./usr/share/hyperrogue/music/",),
           "Shawn Parrotte, Lincoln Domina, Will Savino and others, CC BY-SA 3.0 / 4.0"),
    Source("singularity-music", "Endgame: Singularity", ("./usr/share/games/singularity/music/",),
           "© 2007-2008, 2012 Max McCracken, CC BY-SA 3.0"),
    Source("supertux-data", "SuperTux", ("./usr/share/games/supertux2/music/",),
           "Marek Moeckel and the SuperTux team, GPL-2+ / CC BY-SA (per file)"),
    Source("extremetuxracer-data", "Extreme Tux Racer", ("./usr/share/games/etr/music/",),
           "the Tux Racer and Extreme Tux Racer teams, GPL-2+"),
    Source("asc-music", "Advanced Strategic Command", ("./usr/share/games/asc/music/",),
           "© 2002 Michael Kievernagel, GPL-2+"),
)
TEST_SOURCES: tuple[Source, ...] = tuple(s for s in DEMO_SOURCES
                                         if s.package in ("drascula-music", "hyperrogue-music", "extremetuxracer-data"))


@dataclass(frozen=True)
class Fetched:
    """What :func:`fetch` left in a source's folder."""

    source: Source
    folder: Path
    version: str
    files: list[str]
    seconds: float
    downloaded_bytes: int
    """Bytes downloaded by this call (0 when the folder was reused)."""

    def credit_line(self) -> str:
        return (f"{self.source.name} ({self.source.package} {self.version}, {len(self.files)} tracks): "
                f"{self.source.credit}; terms in {self.folder / 'copyright'}")


def available() -> str | None:
    """None when ``apt-get`` and ``dpkg-deb`` are here, else why not."""
    missing = [tool for tool in ("apt-get", "dpkg-deb") if shutil.which(tool) is None]
    return f"{' and '.join(missing)} not found (not a Debian-based system)" if missing else None


def _read_marker(folder: Path) -> dict[str, object] | None:
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        return None
    if not all((folder / str(f)).is_file() for f in data["files"]):
        return None
    return data


def _duration(path: Path) -> float:
    import soundfile as sf

    try:
        return float(sf.info(str(path)).duration)
    except (RuntimeError, sf.LibsndfileError):
        return 0.0


def _download(package: str, into: Path, timeout: float) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    for old in into.glob(f"{package}_*.deb"):
        old.unlink()
    try:
        proc = subprocess.run(["apt-get", "download", package], cwd=into, capture_output=True, text=True,
                              timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MusicUnavailable(f"apt-get download {package} failed: {exc}") from exc
    debs = sorted(into.glob(f"{package}_*.deb"))
    if proc.returncode != 0 or not debs:
        why = (proc.stderr.strip().splitlines() or ["no .deb was written"])[-1]
        raise MusicUnavailable(f"apt-get download {package} failed: {why}")
    return debs[-1]


def _extract(deb: Path, source: Source, folder: Path) -> None:
    """Stream the package's files and write out only its music and its copyright file."""
    copyright_name = f"./usr/share/doc/{source.package}/copyright"
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                name = member.name if member.name.startswith("./") else "./" + member.name
                if name == copyright_name:
                    target = folder / "copyright"
                else:
                    prefix = next((f for f in source.folders if name.startswith(f)), None)
                    if prefix is None or not name.lower().endswith(AUDIO_SUFFIXES):
                        continue
                    relative = Path(name[len(prefix):])
                    if ".." in relative.parts:
                        continue
                    target = folder / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                data = tar.extractfile(member)
                if data is not None:
                    with open(target, "wb") as out:
                        shutil.copyfileobj(data, out)
    except tarfile.TarError as exc:
        raise MusicUnavailable(f"cannot read {deb.name}: {exc}") from exc
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
        if proc.wait() != 0:
            raise MusicUnavailable(f"dpkg-deb could not unpack {deb.name}: {err.strip()}")


def _version(deb: Path) -> str:
    proc = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True)
    return proc.stdout.strip() or "unknown"


def fetch_source(source: Source, root: str | Path, *, timeout: float = 900) -> Fetched:
    """The music of one package under ``root/PACKAGE/``, downloaded unless already there.

    Raises
    ------
    MusicUnavailable
        No apt-get/dpkg-deb, the download or the unpacking failed, or the package holds no music.
    """
    root = Path(root)
    folder = root / source.package
    marker = _read_marker(folder)
    if marker is not None:
        files = [str(f) for f in cast(list[object], marker["files"])]
        seconds = float(cast(float, marker.get("seconds", 0.0)))
        return Fetched(source, folder, str(marker.get("version", "unknown")), files, seconds, 0)
    why = available()
    if why is not None:
        raise MusicUnavailable(why)
    if folder.exists():
        shutil.rmtree(folder)  # an incomplete earlier attempt
    folder.mkdir(parents=True)
    deb = _download(source.package, root / ".downloads", timeout)
    size = deb.stat().st_size
    try:
        version = _version(deb)
        _extract(deb, source, folder)
    finally:
        deb.unlink(missing_ok=True)
    files, seconds = [], 0.0
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES):
        length = _duration(path)
        if length < MIN_SECONDS:
            path.unlink()  # a jingle or a sound effect, not a piece of music
            continue
        files.append(path.relative_to(folder).as_posix())
        seconds += length
    if not files:
        raise MusicUnavailable(f"{source.package} {version} holds no music under {', '.join(source.folders)}")
    data = {"source": asdict(source), "version": version, "files": files, "seconds": round(seconds, 1),
            "downloaded_bytes": size, "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (folder / MARKER).write_text(json.dumps(data, indent=1), encoding="utf-8")
    return Fetched(source, folder, version, files, seconds, size)


def fetch(root: str | Path, sources: Sequence[Source] = DEMO_SOURCES,
          progress: Callable[[Fetched], None] | None = None) -> list[Fetched]:
    """Every source's music under ``root`` (see :func:`fetch_source`), in order."""
    out = []
    for source in sources:
        got = fetch_source(source, root)
        if progress is not None:
            progress(got)
        out.append(got)
    shutil.rmtree(Path(root) / ".downloads", ignore_errors=True)
    return out


def write_metadata(fetched: Sequence[Fetched], csv_path: str | Path) -> Path:
    """A ``--metadata`` CSV for the fetched music: the soundtrack as every track's album (some
    files tag their own album, in several spellings — "SuperTux Soundtrack", "Supertux Soundtrack"
    — which would split one soundtrack into many; theirs is kept as ``file_album``), and the
    package as ``source`` (both kept in ``tracks.extra``; ``source`` is the ground truth the tests
    and benchmarks score neighbours by). Titles and artists stay the files' own."""
    import csv

    import mutagen

    csv_path = Path(csv_path)
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "album", "source", "file_album"])
        for got in fetched:
            for name in got.files:
                path = got.folder / name
                try:
                    tags = mutagen.File(path, easy=True)
                    own = (tags.get("album") or [""])[0] if tags is not None and tags.tags is not None else ""
                except Exception:  # an unreadable tag block
                    own = ""
                writer.writerow([str(path.resolve()), got.source.name, got.source.package, own])
    return csv_path
