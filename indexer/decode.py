"""Decode audio files to mono float32 at a target sample rate, whole or as a stream.

soundfile (libsndfile) reads WAV, FLAC, OGG/Vorbis, Opus and MP3 in-process; everything
else (m4a/AAC, WMA, ...) and anything soundfile refuses goes through ``ffmpeg``.
Resampling uses soxr (high quality).

Two ways in:

- :func:`load_audio` returns the whole track (most tracks: a 5-minute song is 19 MB).
- :class:`AudioSource` streams it in blocks (:func:`iter_audio`), for very long files (a
  two-hour DJ mix is 460 MB of 16 kHz float32): the embedders that can
  (``embed_stream``) consume it window by window, so memory stays bounded by the block size,
  not the file's length.
"""

from __future__ import annotations

import logging
import queue
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
import soundfile as sf
import soxr

from .errors import FileFailure

logger = logging.getLogger(__name__)

_SOUNDFILE_EXTENSIONS = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff"})
BLOCK_SECONDS = 30.0
"""Native-rate seconds read per block."""

T = TypeVar("T")


def _to_mono(audio: np.ndarray) -> np.ndarray:
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    return np.asarray(audio, dtype=np.float32)


def _read_into(f: sf.SoundFile, buffer: np.ndarray) -> int:
    """Read up to ``len(buffer)`` frames of ``f`` into ``buffer`` (float32, C order, (n, channels));
    the number of frames read, 0 at the end.

    Straight through libsndfile's ``sf_readf_float``: soundfile's own ``read`` seeks back to its
    position after every call, and for MP3 each such seek restarts libmpg123 at a frame whose bit
    reservoir it no longer has, which prints ``part2_3_length ... too large`` on the process's
    stderr and decodes that frame again. Without the seeks, block reads equal one whole read.
    """
    lib, ffi, handle = getattr(sf, "_snd", None), getattr(sf, "_ffi", None), getattr(f, "_file", None)
    if lib is None or ffi is None or handle is None:  # a soundfile without these internals: its own read
        return len(f.read(out=buffer))
    n = int(lib.sf_readf_float(handle, ffi.cast("float *", ffi.from_buffer(buffer)), len(buffer)))
    if n == 0 and lib.sf_error(handle):
        raise RuntimeError(ffi.string(lib.sf_strerror(handle)).decode("utf-8", "replace"))
    return n


def _soundfile_blocks(path: Path, sr: int, block_seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """Read in blocks, mix to mono and resample as a stream: memory is one block, not the file."""
    # Open the file ourselves: libsndfile wants UTF-8 names, file systems may hold any bytes.
    with open(path, "rb") as fh, sf.SoundFile(fh) as f:
        native = int(f.samplerate)
        stream = soxr.ResampleStream(native, sr, 1, dtype="float32", quality="HQ") if native != sr else None
        buffer = np.empty((max(1, int(native * block_seconds)), f.channels), np.float32)
        while n := _read_into(f, buffer):
            mono = _to_mono(buffer[:n])
            out = stream.resample_chunk(mono) if stream is not None else mono
            if out.size:
                yield out
        if stream is not None:
            tail = stream.resample_chunk(np.zeros(0, np.float32), last=True)
            if tail.size:
                yield tail


def _ffmpeg_command(path: Path, sr: int) -> list[str]:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise FileFailure("decode", f"{path.suffix} files need ffmpeg, which is not installed "
                                    "(Debian/Ubuntu: apt-get install ffmpeg)")
    return [ffmpeg, "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "f32le",
            "-ac", "1", "-ar", str(sr), "-"]


def _ffmpeg_failure(stderr: bytes) -> FileFailure:
    message = stderr.decode("utf-8", "replace").strip().splitlines()
    return FileFailure("decode", f"ffmpeg could not decode it: {message[-1] if message else 'unknown error'}")


def _with_ffmpeg(path: Path, sr: int) -> np.ndarray:
    proc = subprocess.run(_ffmpeg_command(path, sr), capture_output=True, check=False)
    if proc.returncode != 0:
        raise _ffmpeg_failure(proc.stderr)
    return np.frombuffer(proc.stdout, dtype="<f4")  # a read-only view of ffmpeg's output, no copy


def _ffmpeg_blocks(path: Path, sr: int, block_seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """ffmpeg's output read a block at a time; the process is killed if the reader stops early."""
    cmd = _ffmpeg_command(path, sr)
    block_bytes = max(4, int(sr * block_seconds)) * 4
    with tempfile.TemporaryFile() as errors:  # stderr to a file: a full pipe would block ffmpeg
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors, stdin=subprocess.DEVNULL)
        assert proc.stdout is not None
        try:
            leftover = b""
            while True:
                data = proc.stdout.read(block_bytes)
                if not data:
                    break
                data = leftover + data
                usable = len(data) - len(data) % 4
                leftover = data[usable:]
                if usable:
                    yield np.frombuffer(data[:usable], dtype="<f4").copy()
            if proc.wait() != 0:
                errors.seek(0)
                raise _ffmpeg_failure(errors.read())
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stdout.close()
            proc.wait()


def _checked(path: Path) -> None:
    if path.stat().st_size == 0:
        raise FileFailure("decode", "the file is empty (0 bytes)")


def load_audio(path: str | Path, sr: int = 16_000) -> np.ndarray:
    """Decode ``path`` to mono float32 at ``sr`` Hz.

    Returns
    -------
    audio : ndarray, shape (n_samples,), float32

    Raises
    ------
    FileFailure
        Stage ``decode``, when no decoder can read the file or it holds no audio.
    """
    path = Path(path)
    _checked(path)
    audio: np.ndarray | None = None
    if path.suffix.lower() in _SOUNDFILE_EXTENSIONS:
        try:
            parts = list(_soundfile_blocks(path, sr))
            audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
            logger.debug("soundfile could not read %s (%s); trying ffmpeg", path, exc)
    if audio is None:
        audio = _with_ffmpeg(path, sr)
    if audio.size == 0:
        raise FileFailure("decode", "the file holds no audio samples")
    if not np.all(np.isfinite(audio)):
        raise FileFailure("decode", "decoded audio contains NaN or infinite samples")
    return audio


def iter_audio(path: str | Path, sr: int = 16_000, block_seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """Decode ``path`` to mono float32 at ``sr`` Hz as a stream of blocks.

    The same decoders and checks as :func:`load_audio`; concatenated, the blocks equal its
    output. soundfile falls back to ffmpeg only before the first block; a decoder that fails
    later raises.

    Yields
    ------
    block : ndarray, shape (n,), float32, n > 0

    Raises
    ------
    FileFailure
        Stage ``decode``, when no decoder can read the file or it holds no audio.
    """
    path = Path(path)
    _checked(path)
    blocks: Iterator[np.ndarray] | None = None
    first: np.ndarray | None = None
    if path.suffix.lower() in _SOUNDFILE_EXTENSIONS:
        blocks = _soundfile_blocks(path, sr, block_seconds)
        try:
            first = next(blocks, None)
        except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
            logger.debug("soundfile could not read %s (%s); trying ffmpeg", path, exc)
            blocks = None
    if blocks is None:
        blocks = _ffmpeg_blocks(path, sr, block_seconds)
        first = next(blocks, None)
    if first is None:
        raise FileFailure("decode", "the file holds no audio samples")
    seen = 0
    try:
        for block in _chain(first, blocks):
            if not np.all(np.isfinite(block)):
                raise FileFailure("decode", "decoded audio contains NaN or infinite samples")
            seen += len(block)
            yield block
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise FileFailure("decode", f"decoding stopped after {seen / sr:.1f} s: {exc}") from exc


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Run ``items`` in a thread, at most ``depth`` ahead of the consumer (decode overlaps the model;
    libsndfile, soxr and ffmpeg's pipe release the GIL). Exceptions reach the consumer."""
    q: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("end", None))
        except BaseException as exc:  # handed to the consumer
            q.put(("error", exc))
        finally:
            close = getattr(items, "close", None)
            if stop.is_set() and callable(close):
                close()

    thread = threading.Thread(target=produce, name="musicmap-decode", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "end":
                return
            if kind == "error":
                assert isinstance(value, BaseException)
                raise value
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.05)


def probe_seconds(path: str | Path) -> float | None:
    """The duration from the container header (soundfile), or None when it cannot tell."""
    try:
        with open(path, "rb") as fh, sf.SoundFile(fh) as f:
            if f.frames > 0 and f.samplerate > 0:
                return float(f.frames) / float(f.samplerate)
    except Exception:
        return None
    return None


class AudioSource:
    """A file to be decoded as a stream; each :meth:`blocks` call decodes it anew.

    Streaming embedders (``embed_stream``) take one of these instead of an array: MAEST reads it
    once, window by window; ``features`` reads it twice (its length, then its centre).
    """

    def __init__(self, path: str | Path, sr: int, block_seconds: float = BLOCK_SECONDS,
                 prefetch_depth: int = 0) -> None:
        self.path = Path(path)
        self.sample_rate = int(sr)
        self.block_seconds = block_seconds
        self.prefetch_depth = prefetch_depth

    def blocks(self) -> Iterator[np.ndarray]:
        """Mono float32 blocks at :attr:`sample_rate` (decoded ahead in a thread when ``prefetch_depth``)."""
        it = iter_audio(self.path, self.sample_rate, self.block_seconds)
        return prefetch(it, self.prefetch_depth) if self.prefetch_depth > 0 else it

    def __repr__(self) -> str:
        return f"AudioSource({str(self.path)!r}, sr={self.sample_rate})"
