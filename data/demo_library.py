"""Generate a synthetic, tagged demo music library.

The demo library lets musicmap run end to end on a machine with no music and no
network. Each track is synthesised from one of eight clearly different *styles*
(instrumentation and timbre, tempo, rhythm, harmony, noise), written in a mix of
formats (mp3, flac, ogg, opus, m4a, wav) with real tags written by mutagen.

Layout of the generated folder::

    LIBRARY/
      <Artist>/<Album>/<NN> - <Title>.<ext>     tagged tracks (title, artist, album,
                                                 album artist, genre, year, track number)
      gtzan/<style>/<style>.000NN.wav            untagged tracks, the GTZAN layout: the
                                                 folder name is the only label
      tracks.csv                                 ground truth: path, style, format, tagged

Everything is deterministic given ``seed``: the same call writes the same audio
(up to the encoders) and the same tags.

Example
-------
>>> from data.demo_library import generate_demo_library
>>> tracks = generate_demo_library("/tmp/demo", n_tracks=16, seed=0)  # doctest: +SKIP
>>> sorted({t.style for t in tracks})[:2]  # doctest: +SKIP
['ambient', 'chiptune']
"""

from __future__ import annotations

import csv
import logging
import multiprocessing
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

logger = logging.getLogger(__name__)

SR = 24_000
"""Sample rate of the generated audio. 24 kHz is valid for every target codec (opus included)."""

STYLES: tuple[str, ...] = (
    "ambient",
    "techno",
    "chiptune",
    "piano",
    "noise-rock",
    "jazz",
    "drum-and-bass",
    "strings",
)
"""The synthetic styles, also used as the genre tag and the GTZAN folder name."""

FORMATS: tuple[str, ...] = ("mp3", "flac", "ogg", "opus", "m4a", "wav")

_ARTIST_WORDS = {
    "ambient": ["Glacier", "Hollow Sky", "Umbra"],
    "techno": ["Kraftwerk Jr", "Pulse Unit", "Berghain Tapes"],
    "chiptune": ["8-Bit Heroes", "Pixel Fox", "NES Ghost"],
    "piano": ["Clara Wieck Trio", "Quiet Keys", "Erik S."],
    "noise-rock": ["Shellac Ghosts", "Static Wolves", "Amp Burn"],
    "jazz": ["Blue Note Cats", "Walking Bass Quartet", "Sœur Swing"],
    "drum-and-bass": ["Amen Break", "Sub Pressure", "Jungle Lab"],
    "strings": ["Camerata Nova", "Bow & Bridge", "Viola Dreams"],
}
_TITLE_WORDS = (
    "Night", "River", "Signal", "Glass", "Echo", "Dust", "Orbit", "Velvet", "Neon", "Harbour",
    "Ember", "Winter", "Mirror", "Static", "Bloom", "Tide", "Copper", "Lantern", "Drift", "Halo",
)
_UNICODE_TITLES = ("Café Ñandú", "Ωmega Drift", "東京 Night", "Smörgåsbord", "Żółw Echo")


@dataclass(frozen=True)
class DemoTrack:
    """One generated file and its ground truth."""

    path: Path
    style: str
    format: str
    tagged: bool
    title: str
    artist: str
    album: str
    year: int
    duration: float


# --- synthesis -------------------------------------------------------------------------------

def _midi_hz(note: np.ndarray | float) -> np.ndarray:
    return np.asarray(440.0 * 2.0 ** ((np.asarray(note, dtype=np.float64) - 69.0) / 12.0))


def _env(n: int, attack: float, decay: float) -> np.ndarray:
    """Attack/exponential-decay envelope of ``n`` samples (times in seconds)."""
    t = np.arange(n) / SR
    a = np.clip(t / max(attack, 1e-4), 0.0, 1.0)
    return np.asarray(a * np.exp(-np.maximum(t - attack, 0.0) / max(decay, 1e-4)))


def _place(out: np.ndarray, start: int, sig: np.ndarray) -> None:
    end = min(len(out), start + len(sig))
    if start < end:
        out[start:end] += sig[: end - start]


def _tone(freq: float, n: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / SR
    phase = 2 * np.pi * freq * t
    if kind == "sine":
        return np.sin(phase)
    if kind == "square":
        return np.sign(np.sin(phase))
    if kind == "saw":
        return 2.0 * ((freq * t) % 1.0) - 1.0
    if kind == "piano":  # a few decaying partials, slightly inharmonic
        partials = [(k, 0.6 / k, 1.0 / (1 + 0.6 * k)) for k in range(1, 7)]
        sig = np.zeros(n)
        for k, amp, dec in partials:
            sig += amp * np.sin(phase * k * (1 + 0.0004 * k * k)) * np.exp(-t / (1.2 * dec))
        return sig
    if kind == "rhodes":
        return np.sin(phase + 1.5 * np.sin(phase) * np.exp(-t * 3)) * np.exp(-t * 1.5)
    if kind == "bowed":  # saw with vibrato, low-passed by averaging
        vib = 1 + 0.006 * np.sin(2 * np.pi * 5.5 * t)
        saw = 2.0 * ((freq * np.cumsum(vib) / SR) % 1.0) - 1.0
        kernel = np.ones(6) / 6
        return np.convolve(saw, kernel, mode="same")
    raise ValueError(f"unknown tone kind {kind!r}")


def _kick(n_sec: float = 0.35) -> np.ndarray:
    n = int(n_sec * SR)
    t = np.arange(n) / SR
    f = 50 + 90 * np.exp(-t * 30)
    return np.asarray(np.sin(2 * np.pi * np.cumsum(f) / SR) * np.exp(-t * 9))


def _noise_hit(rng: np.random.Generator, n_sec: float, decay: float, hp: bool) -> np.ndarray:
    n = int(n_sec * SR)
    noise = rng.standard_normal(n)
    if hp:  # crude high-pass: first difference
        noise = np.diff(noise, prepend=0.0)
    return np.asarray(noise * _env(n, 0.001, decay))


def _snare(rng: np.random.Generator) -> np.ndarray:
    n = int(0.25 * SR)
    t = np.arange(n) / SR
    body = np.sin(2 * np.pi * 190 * t) * np.exp(-t * 25)
    return np.asarray(0.6 * body + 0.7 * _noise_hit(rng, 0.25, 0.06, hp=False))


_MAJOR = np.array([0, 4, 7])
_MINOR = np.array([0, 3, 7])
_SEVENTH = np.array([0, 4, 7, 10])


def _progression(rng: np.random.Generator, root: int, minor: bool) -> list[np.ndarray]:
    degrees = [0, 5, 7, 3] if not minor else [0, 8, 3, 10]
    rng.shuffle(degrees[1:])
    chord = _MINOR if minor else _MAJOR
    return [root + d + chord for d in degrees]


def _synth(style: str, duration: float, rng: np.random.Generator) -> np.ndarray:
    """Synthesise ``duration`` seconds of one style. Returns float64 mono in [-1, 1]."""
    n = int(duration * SR)
    out = np.zeros(n)
    root = int(rng.integers(45, 57))
    jitter = float(rng.uniform(0.96, 1.04))

    if style == "ambient":
        # Slow evolving sine pads, no percussion, soft noise wash.
        prog = _progression(rng, root, minor=bool(rng.integers(2)))
        seg = int(8.0 * SR)
        for i, start in enumerate(range(0, n, seg)):
            chord = prog[i % len(prog)]
            m = min(seg + SR * 2, n - start)
            env = np.sin(np.linspace(0, np.pi, m)) ** 2
            for note in chord:
                _place(out, start, 0.25 * env * _tone(float(_midi_hz(note)), m, "sine", rng))
                _place(out, start, 0.1 * env * _tone(float(_midi_hz(note + 12)), m, "sine", rng))
        out += 0.02 * np.convolve(rng.standard_normal(n), np.ones(40) / 40, mode="same")
    elif style == "techno":
        bpm = 128 * jitter
        beat = int(60 / bpm * SR)
        kick, hat = _kick(), None
        for i, start in enumerate(range(0, n, beat)):
            _place(out, start, 0.9 * kick)
            hat = _noise_hit(rng, 0.05, 0.01, hp=True)
            _place(out, start + beat // 2, 0.25 * hat)
            bass_note = root - 12 + (0 if (i // 8) % 2 == 0 else 3)
            b = _tone(float(_midi_hz(bass_note)), beat // 2, "saw", rng) * _env(beat // 2, 0.005, 0.1)
            _place(out, start + beat // 2, 0.35 * b)
    elif style == "chiptune":
        bpm = 150 * jitter
        step = int(60 / bpm / 4 * SR)
        prog = _progression(rng, root + 12, minor=False)
        for i, start in enumerate(range(0, n, step)):
            chord = prog[(i // 16) % len(prog)]
            note = chord[i % 3] + 12 * ((i // 3) % 2)
            _place(out, start, 0.3 * _tone(float(_midi_hz(note)), step, "square", rng))
            if i % 4 == 0:
                _place(out, start, 0.3 * _tone(float(_midi_hz(chord[0] - 12)), step * 2, "square", rng))
    elif style == "piano":
        bpm = 70 * jitter
        beat = int(60 / bpm * SR)
        prog = _progression(rng, root + 5, minor=False)
        for i, start in enumerate(range(0, n, beat)):
            chord = prog[(i // 4) % len(prog)]
            if i % 4 == 0:
                for note in chord - 12:
                    _place(out, start, 0.2 * _tone(float(_midi_hz(note)), beat * 4, "piano", rng))
            melody = chord[int(rng.integers(3))] + 12
            _place(out, start, 0.25 * _tone(float(_midi_hz(melody)), beat * 2, "piano", rng))
    elif style == "noise-rock":
        bpm = 160 * jitter
        beat = int(60 / bpm * SR)
        for i, start in enumerate(range(0, n, beat)):
            _place(out, start, 0.7 * (_kick() if i % 2 == 0 else _snare(rng)))
            power = root - 12 + (0 if (i // 8) % 2 == 0 else 5)
            chord = _tone(float(_midi_hz(power)), beat, "saw", rng) + _tone(
                float(_midi_hz(power + 7)), beat, "saw", rng
            )
            _place(out, start, np.tanh(4 * chord) * 0.35)
        out += 0.12 * rng.standard_normal(n)
    elif style == "jazz":
        bpm = 120 * jitter
        beat = int(60 / bpm * SR)
        swing = int(beat * 2 / 3)
        for i, start in enumerate(range(0, n, beat)):
            # Walking bass, ride cymbal with swung eighths, Rhodes 7th chords.
            bass = root - 12 + int(rng.choice([0, 2, 4, 5, 7, 9, 10]))
            _place(out, start, 0.45 * _tone(float(_midi_hz(bass)), beat, "sine", rng) * _env(beat, 0.01, 0.3))
            ride = _noise_hit(rng, 0.3, 0.15, hp=True)
            _place(out, start, 0.12 * ride)
            if i % 2 == 1:
                _place(out, start + swing, 0.08 * ride)
            if i % 4 == 0:
                chord_root = root + int(rng.choice([0, 2, 5, 7]))
                for note in chord_root + _SEVENTH:
                    _place(out, start, 0.12 * _tone(float(_midi_hz(note)), beat * 3, "rhodes", rng))
    elif style == "drum-and-bass":
        bpm = 174 * jitter
        beat = int(60 / bpm * SR)
        pattern = [("k", 0.0), ("s", 1.0), ("k", 1.75), ("k", 2.5), ("s", 3.0)]
        bar = beat * 4
        for bar_start in range(0, n, bar):
            for kind, pos in pattern:
                hit = _kick(0.2) if kind == "k" else _snare(rng)
                _place(out, bar_start + int(pos * beat), 0.7 * hit)
            for j in range(8):
                _place(out, bar_start + j * beat // 2, 0.15 * _noise_hit(rng, 0.04, 0.01, hp=True))
            sub = _tone(float(_midi_hz(root - 24)), bar, "sine", rng)
            _place(out, bar_start, 0.5 * sub * _env(bar, 0.01, 1.2))
    elif style == "strings":
        prog = _progression(rng, root, minor=True)
        seg = int(4.0 * SR * jitter)
        for i, start in enumerate(range(0, n, seg)):
            chord = prog[i % len(prog)]
            m = min(seg + SR // 2, n - start)
            env = np.minimum(1.0, np.minimum(np.arange(m) / (0.6 * SR), (m - np.arange(m)) / (0.4 * SR)))
            for note in (*chord, chord[0] - 12, chord[2] + 12):
                _place(out, start, 0.12 * env * _tone(float(_midi_hz(note)), m, "bowed", rng))
    else:
        raise ValueError(f"unknown style {style!r}; known: {', '.join(STYLES)}")

    peak = float(np.max(np.abs(out))) or 1.0
    out = out / peak * float(rng.uniform(0.6, 0.9))
    fade = min(n // 4, SR)
    out[:fade] *= np.linspace(0, 1, fade)
    out[-fade:] *= np.linspace(1, 0, fade)
    return out


# --- writing ---------------------------------------------------------------------------------

def synthesise(style: str, duration: float, seed: int = 0) -> tuple[np.ndarray, int]:
    """``duration`` seconds of a fresh clip in one of :data:`STYLES` (not a track of the library):
    float32 mono audio and its sample rate. For query-by-example tests and demos."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; choose one of {', '.join(STYLES)}")
    return _synth(style, duration, np.random.default_rng(seed)).astype(np.float32), SR


def _write_blocks(path: Path, audio: np.ndarray, fmt: str, subtype: str | None) -> None:
    # One big sf.write of a long OGG can segfault in libsndfile: write in blocks.
    with sf.SoundFile(path, "w", samplerate=SR, channels=1, format=fmt, subtype=subtype) as f:
        for start in range(0, len(audio), SR * 5):
            f.write(audio[start : start + SR * 5].astype(np.float32))


def _write_audio(path: Path, audio: np.ndarray, ext: str) -> None:
    if ext == "wav" or ext == "flac":
        sf.write(path, audio.astype(np.float32), SR, subtype="PCM_16")
    elif ext == "ogg":
        _write_blocks(path, audio, "OGG", "VORBIS")
    elif ext == "opus":
        _write_blocks(path, audio, "OGG", "OPUS")
    elif ext == "mp3":
        _write_blocks(path, audio, "MP3", "MPEG_LAYER_III")
    elif ext == "m4a":
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg is None:
            raise RuntimeError("writing .m4a needs ffmpeg on PATH (Debian: apt-get install ffmpeg)")
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "in.wav"
            sf.write(wav, audio.astype(np.float32), SR, subtype="PCM_16")
            subprocess.run(
                [ffmpeg, "-nostdin", "-v", "error", "-y", "-i", str(wav), "-c:a", "aac",
                 "-b:a", "96k", str(path)],
                check=True,
            )
    else:
        raise ValueError(f"unknown format {ext!r}; known: {', '.join(FORMATS)}")


def _write_tags(path: Path, ext: str, tags: dict[str, str]) -> None:
    """Write tags with mutagen, in each format's native tag system."""
    if ext in ("mp3", "wav"):
        from mutagen.id3 import ID3, TALB, TCON, TDRC, TIT2, TPE1, TPE2, TRCK

        if ext == "wav":
            from mutagen.wave import WAVE

            wave = WAVE(path)
            wave.add_tags()
            id3 = wave.tags
        else:
            id3 = ID3()
        assert id3 is not None
        id3.add(TIT2(encoding=3, text=tags["title"]))
        id3.add(TPE1(encoding=3, text=tags["artist"]))
        id3.add(TPE2(encoding=3, text=tags["albumartist"]))
        id3.add(TALB(encoding=3, text=tags["album"]))
        id3.add(TCON(encoding=3, text=tags["genre"]))
        id3.add(TDRC(encoding=3, text=tags["date"]))
        id3.add(TRCK(encoding=3, text=tags["tracknumber"]))
        if ext == "wav":
            wave.save()
        else:
            id3.save(path)
        return
    if ext == "m4a":
        from mutagen.mp4 import MP4

        mp4 = MP4(path)
        if mp4.tags is None:
            mp4.add_tags()
        assert mp4.tags is not None
        mp4.tags["\xa9nam"] = [tags["title"]]
        mp4.tags["\xa9ART"] = [tags["artist"]]
        mp4.tags["aART"] = [tags["albumartist"]]
        mp4.tags["\xa9alb"] = [tags["album"]]
        mp4.tags["\xa9gen"] = [tags["genre"]]
        mp4.tags["\xa9day"] = [tags["date"]]
        mp4.tags["trkn"] = [(int(tags["tracknumber"]), 0)]
        mp4.save()
        return
    import mutagen

    f = mutagen.File(path)  # FLAC, OggVorbis, OggOpus: Vorbis comments
    if f is None:
        raise RuntimeError(f"mutagen cannot open {path}")
    if f.tags is None:
        f.add_tags()
    for key, value in tags.items():
        f.tags[key] = [value]
    f.save()


def _safe(name: str) -> str:
    return "".join(c if c not in '/\\:*?"<>|' else "_" for c in name).strip()


def _make_track(job: tuple[int, int, DemoTrack, dict[str, str] | None]) -> None:
    """Synthesise one planned track, write it, tag it (runs in a worker process)."""
    seed, i, track, tags = job
    audio = _synth(track.style, track.duration, np.random.default_rng([seed, i, 1]))
    track.path.parent.mkdir(parents=True, exist_ok=True)
    _write_audio(track.path, audio, track.format)
    if tags is not None:
        _write_tags(track.path, track.format, tags)


def generate_demo_library(
    root: str | Path,
    *,
    n_tracks: int = 240,
    seed: int = 0,
    min_duration: float = 20.0,
    max_duration: float = 90.0,
    untagged_share: float = 0.1,
    formats: tuple[str, ...] = FORMATS,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
) -> list[DemoTrack]:
    """Write ``n_tracks`` synthetic tracks under ``root`` and return their ground truth.

    Parameters
    ----------
    root : path
        Folder to write into (created). Existing files with the same names are overwritten.
    n_tracks : int
        Number of tracks; styles are assigned round-robin so every style has
        ``n_tracks // 8`` or one more.
    seed : int
        Seed of everything random: audio, durations, formats, names.
    min_duration, max_duration : float
        Track length range in seconds.
    untagged_share : float
        Share of tracks written as untagged WAV files under ``gtzan/<style>/``.
    formats : tuple of str
        Formats to rotate through for tagged tracks.
    progress : callable, optional
        Called as ``progress(done, total)`` after each track.
    workers : int, optional
        Processes that synthesise and encode (default: all cores). The output does not
        depend on it.

    Returns
    -------
    list of DemoTrack
        One entry per written file, in generation order. Also written to ``root/tracks.csv``.
    """
    if n_tracks < 1:
        raise ValueError(f"n_tracks must be at least 1, got {n_tracks}")
    if not 0 < min_duration <= max_duration:
        raise ValueError(f"bad duration range {min_duration}..{max_duration}")
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown formats {sorted(unknown)}; known: {', '.join(FORMATS)}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    master = np.random.default_rng(seed)
    n_untagged = round(n_tracks * untagged_share)
    untagged = set(master.choice(n_tracks, size=n_untagged, replace=False).tolist()) if n_untagged else set()
    unicode_slots = set(range(3, n_tracks, max(n_tracks // 5, 7)))
    # Plan every track first (names, paths, tags: cheap and sequential), then synthesise and
    # write in parallel. Audio comes from its own per-track seed, so output never depends on
    # the number of workers.
    tracks: list[DemoTrack] = []
    jobs: list[tuple[int, int, DemoTrack, dict[str, str] | None]] = []
    track_counter: dict[tuple[str, str], int] = {}
    gtzan_counter: dict[str, int] = {}
    for i in range(n_tracks):
        style = STYLES[i % len(STYLES)]
        rng = np.random.default_rng([seed, i, 0])
        duration = float(rng.uniform(min_duration, max_duration))
        artist = _ARTIST_WORDS[style][int(rng.integers(3))]
        album = f"{artist.split()[0]} {('Sessions', 'Volume II')[int(rng.integers(2))]}"
        year = int(rng.integers(1965, 2025))
        words = rng.choice(len(_TITLE_WORDS), size=2, replace=False)
        title = f"{_TITLE_WORDS[words[0]]} {_TITLE_WORDS[words[1]]}"
        if i in unicode_slots:
            title = _UNICODE_TITLES[i % len(_UNICODE_TITLES)]
        tags: dict[str, str] | None = None
        if i in untagged:
            ext = "wav"
            number = gtzan_counter[style] = gtzan_counter.get(style, -1) + 1
            path = root / "gtzan" / style / f"{style}.{number:05d}.wav"
        else:
            ext = formats[(i // len(STYLES) + i) % len(formats)]
            key = (artist, album)
            track_counter[key] = track_counter.get(key, 0) + 1
            path = root / _safe(artist) / _safe(album) / f"{track_counter[key]:02d} - {_safe(title)}.{ext}"
            tags = {"title": title, "artist": artist, "albumartist": artist, "album": album, "genre": style,
                    "date": str(year), "tracknumber": str(track_counter[key])}
        track = DemoTrack(path=path, style=style, format=ext, tagged=tags is not None, title=title,
                          artist=artist, album=album, year=year, duration=duration)
        tracks.append(track)
        jobs.append((seed, i, track, tags))
    n_workers = max(1, min(workers or os.cpu_count() or 1, n_tracks))
    if n_workers == 1:
        for done, job in enumerate(jobs, start=1):
            _make_track(job)
            if progress is not None:
                progress(done, n_tracks)
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx) as pool:
            for done, _ in enumerate(pool.map(_make_track, jobs), start=1):
                if progress is not None:
                    progress(done, n_tracks)
    with open(root / "tracks.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "style", "format", "tagged", "title", "artist", "album", "year"])
        for t in tracks:
            writer.writerow([t.path.relative_to(root).as_posix(), t.style, t.format, int(t.tagged),
                             t.title, t.artist, t.album, t.year])
    logger.info("wrote %d demo tracks under %s", len(tracks), root)
    return tracks
