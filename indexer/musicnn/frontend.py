"""MusiCNN's front end, as the models were trained (musicnn-spec §5).

``librosa.feature.melspectrogram(y, sr=16000, n_fft=512, hop_length=256, n_mels=96)`` with
librosa's defaults otherwise — a *periodic* Hann window, ``center=True`` (half a frame of zeros
at each end: n//256 + 1 frames), power 2, the Slaney mel bands 0–8 kHz (the same bands as MAEST:
:func:`indexer.maest.frontend.mel_basis`) — transposed to (t, 96), **rounded to float16** as the
training data was stored, then ``log10(1 + 10⁴·x)``.

Two traps (spec §5): computing ``10⁴·x`` in float16 overflows to ``inf`` for x > 6.55 (loud
music), so only the rounding happens in float16 and the arithmetic in float32; and a band value
above float16's largest (65504) would round to ``inf``, so it is clipped there first.

Patches: 187 frames (3 s) without overlap; a remainder of at least half a patch gets one more
patch aligned to the end; a track shorter than one patch is one patch of its own length (the
musicnn network pools over time; the VGG pads it by repetition to 187 frames).
"""

from __future__ import annotations

from functools import cache

import numpy as np

from ..maest import frontend as maest_frontend
from .model import PATCH_FRAMES

SAMPLE_RATE = maest_frontend.SAMPLE_RATE
FRAME = maest_frontend.FRAME
HOP = maest_frontend.HOP
N_MELS = maest_frontend.N_MELS
FLOAT16_MAX = float(np.finfo(np.float16).max)


@cache
def _periodic_hann() -> np.ndarray:
    n = np.arange(FRAME)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / FRAME)).astype(np.float32)  # scipy's hann(512, sym=False)


def logmel_of_frames(frames: np.ndarray) -> np.ndarray:
    """(t, 512) sample frames → (t, 96) float32 log-compressed mel bands, float16-rounded first."""
    spectrum = np.fft.rfft(np.asarray(frames, np.float32) * _periodic_hann(), axis=1)  # (t, 257) complex64
    power = spectrum.real.astype(np.float32) ** 2 + spectrum.imag.astype(np.float32) ** 2
    mel = power @ maest_frontend.mel_basis().astype(np.float32).T  # (t, 96)
    rounded = np.minimum(mel, FLOAT16_MAX).astype(np.float16).astype(np.float32)
    return np.log10(1.0 + 10_000.0 * rounded).astype(np.float32)


def logmel(audio: np.ndarray) -> np.ndarray:
    """Log-mel bands of a whole track.

    Parameters
    ----------
    audio : ndarray, shape (n_samples,), float32, mono, 16 kHz

    Returns
    -------
    logmel : ndarray, shape (n_samples // 256 + 1, 96), float32
    """
    y = np.pad(np.asarray(audio, dtype=np.float32).ravel(), FRAME // 2)  # center=True, zeros
    frames = np.lib.stride_tricks.sliding_window_view(y, FRAME)[::HOP]
    chunk = maest_frontend.CHUNK_FRAMES
    return np.concatenate([logmel_of_frames(frames[s : s + chunk]) for s in range(0, len(frames), chunk)])


def stream() -> maest_frontend.LogmelStream:
    """:func:`logmel` block by block (for files too long to decode whole)."""
    return maest_frontend.LogmelStream(logmel_of_frames, centred_end=True)


def patch_starts(total: int) -> list[int]:
    """Start frames of the patches of a ``total``-frame track (see the module docstring)."""
    return maest_frontend.window_starts(total, PATCH_FRAMES, hop=PATCH_FRAMES)


def patches(bands: np.ndarray) -> np.ndarray:
    """The patches of a track's log-mel bands: shape (n, min(t, 187), 96), float32."""
    t = max(1, bands.shape[0])
    length = min(t, PATCH_FRAMES)
    return np.stack([bands[s : s + length] for s in patch_starts(t)])


def patch_stream() -> maest_frontend.WindowStream:
    """:func:`patches` for a stream of log-mel frames."""
    return maest_frontend.WindowStream(PATCH_FRAMES, hop=PATCH_FRAMES, prepare=_same, min_frames=1)


def _same(x: np.ndarray) -> np.ndarray:
    return x


def repeat_pad(patch: np.ndarray, frames: int = PATCH_FRAMES) -> np.ndarray:
    """A patch shorter than ``frames`` repeated to that length (the VGG needs exactly 187 frames;
    musicnn trained with 'repeat-pad' for short clips)."""
    if len(patch) >= frames:
        return patch[:frames]
    reps = -(-frames // max(1, len(patch)))
    return np.tile(patch, (reps, 1))[:frames]
