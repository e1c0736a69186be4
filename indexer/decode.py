"""Decode audio files to mono float32 at a target sample rate.

soundfile (libsndfile) reads WAV, FLAC, OGG/Vorbis, Opus and MP3 in-process; everything
else (m4a/AAC, WMA, ...) and anything soundfile refuses goes through ``ffmpeg``.
Resampling uses soxr (high quality).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .errors import FileFailure

logger = logging.getLogger(__name__)

_SOUNDFILE_EXTENSIONS = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff"})


def _to_mono(audio: np.ndarray) -> np.ndarray:
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    return np.asarray(audio, dtype=np.float32)


def _with_soundfile(path: Path, sr: int) -> np.ndarray:
    """Read in blocks, mix to mono and resample as a stream: memory is the 16 kHz mono output
    plus one block, not the whole file at its native rate and channel count."""
    # Open the file ourselves: libsndfile wants UTF-8 names, file systems may hold any bytes.
    with open(path, "rb") as fh, sf.SoundFile(fh) as f:
        native = int(f.samplerate)
        stream = soxr.ResampleStream(native, sr, 1, dtype="float32", quality="HQ") if native != sr else None
        parts = []
        for block in f.blocks(blocksize=native * 30, dtype="float32", always_2d=True):
            mono = _to_mono(block)
            parts.append(stream.resample_chunk(mono) if stream is not None else mono)
        if stream is not None:
            parts.append(stream.resample_chunk(np.zeros(0, np.float32), last=True))
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def _with_ffmpeg(path: Path, sr: int) -> np.ndarray:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise FileFailure("decode", f"{path.suffix} files need ffmpeg, which is not installed "
                                    "(Debian/Ubuntu: apt-get install ffmpeg)")
    cmd = [ffmpeg, "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "f32le",
           "-ac", "1", "-ar", str(sr), "-"]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        message = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise FileFailure("decode", f"ffmpeg could not decode it: {message[-1] if message else 'unknown error'}")
    return np.frombuffer(proc.stdout, dtype="<f4")  # a read-only view of ffmpeg's output, no copy


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
    if path.stat().st_size == 0:
        raise FileFailure("decode", "the file is empty (0 bytes)")
    audio: np.ndarray | None = None
    if path.suffix.lower() in _SOUNDFILE_EXTENSIONS:
        try:
            audio = _with_soundfile(path, sr)
        except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
            logger.debug("soundfile could not read %s (%s); trying ffmpeg", path, exc)
    if audio is None:
        audio = _with_ffmpeg(path, sr)
    if audio.size == 0:
        raise FileFailure("decode", "the file holds no audio samples")
    if not np.all(np.isfinite(audio)):
        raise FileFailure("decode", "decoded audio contains NaN or infinite samples")
    return audio
