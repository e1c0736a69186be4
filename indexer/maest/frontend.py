"""MAEST's audio front end: Essentia-exact log-mel bands and model windows (spec §1).

The training features were Essentia's ``TensorflowInputMusiCNN``: 16 kHz mono, 512-sample
symmetric Hann frames, hop 256, Essentia framing (the first frame centred on sample 0, so
ceil(N/256)+1 frames), power spectrum, 96 Slaney mel bands 0–8 kHz with Slaney (unit-area)
normalisation, log10(1 + 10⁴·x). MAEST then normalises with (x − 2.0676) / (2 · 1.2683).
"""

from __future__ import annotations

from functools import cache

import numpy as np

SAMPLE_RATE = 16_000
FRAME = 512
HOP = 256
N_MELS = 96
MEAN = 2.06755686098554
STD = 1.268292820667291
CHUNK_FRAMES = 8192
"""Frames per FFT block in :func:`essentia_logmel` (about 2 minutes of audio)."""
PATCH = 16
"""Patch size in frames: the shortest input the model accepts."""

#: Window hop in frames for the published window lengths (Essentia's patchHopSize): the model's
#: clip length, one frame less than its input length.
WINDOW_HOPS = {316: 313, 626: 625, 1256: 1250, 1876: 1875}


@cache
def _mel_basis() -> np.ndarray:
    import librosa

    return np.asarray(
        librosa.filters.mel(sr=SAMPLE_RATE, n_fft=FRAME, n_mels=N_MELS, fmin=0.0, fmax=8000.0,
                            htk=False, norm="slaney"),
        dtype=np.float64,
    )


def n_frames(n_samples: int) -> int:
    """Frames Essentia's FrameCutter emits for ``n_samples``: ceil(n / 256) + 1."""
    return -(-int(n_samples) // HOP) + 1


def essentia_logmel(audio: np.ndarray) -> np.ndarray:
    """Log-compressed mel bands, equal to Essentia's ``TensorflowInputMusiCNN`` frame by frame.

    Parameters
    ----------
    audio : ndarray, shape (n_samples,), float32, mono, 16 kHz

    Returns
    -------
    logmel : ndarray, shape (ceil(n_samples / 256) + 1, 96), float32
    """
    y = np.asarray(audio, dtype=np.float32).ravel()
    n = len(y)
    padded = -(-n // HOP) * HOP  # Essentia zero-pads the end to the next hop
    y = np.pad(y, (FRAME // 2, padded - n + FRAME // 2))  # first frame centred on sample 0
    frames = np.lib.stride_tricks.sliding_window_view(y, FRAME)[::HOP]  # (T, 512), a view
    window = np.hanning(FRAME)  # symmetric Hann, not normalised
    basis = _mel_basis().T
    out = np.empty((len(frames), N_MELS), dtype=np.float32)
    # Blocks of frames keep the float64 FFT's memory bounded for a two-hour mix.
    for start in range(0, len(frames), CHUNK_FRAMES):
        block = frames[start : start + CHUNK_FRAMES].astype(np.float64)
        power = np.abs(np.fft.rfft(block * window, axis=1)) ** 2  # (t, 257)
        out[start : start + len(block)] = np.log10(1.0 + 10_000.0 * (power @ basis))  # (t, 96)
    return out


def normalise(logmel: np.ndarray) -> np.ndarray:
    """MAEST input normalisation: (x − 2.0676) / (2 · 1.2683). Note the factor 2 on the std."""
    return ((logmel - MEAN) / (2.0 * STD)).astype(np.float32)


def window_hop(max_length: int) -> int:
    """Frames between window starts for a model whose input is ``max_length`` frames."""
    return WINDOW_HOPS.get(int(max_length), max(1, int(max_length) - 1))


def window_starts(total: int, max_length: int) -> list[int]:
    """Where the windows of a ``total``-frame track start.

    The rule (spec §1.3 leaves the last partial window open; this is musicmap's choice):

    - full windows of ``max_length`` frames every :func:`window_hop` frames, as Essentia;
    - if the frames after the last full window amount to at least half a window, one more
      window is added, aligned to the end of the track (it overlaps the previous one and holds
      only real audio, never padding); a shorter remainder is dropped, as Essentia does;
    - a track shorter than one window is a single window of its own length (the caller runs it
      with the positional grid sliced, as MAEST does), so the list is ``[0]``.
    """
    if total <= max_length:
        return [0]
    hop = window_hop(max_length)
    starts = list(range(0, total - max_length + 1, hop))
    covered = starts[-1] + max_length
    if total - covered >= max_length // 2:
        starts.append(total - max_length)
    return starts


def windows(logmel: np.ndarray, max_length: int) -> np.ndarray:
    """Normalised model windows of a track.

    Parameters
    ----------
    logmel : ndarray, shape (n_frames, 96), float32
    max_length : int
        The model's input length in frames (``config.max_length``).

    Returns
    -------
    windows : ndarray, shape (n_windows, length, 96), float32
        ``length`` is ``max_length``, or the track's own length (at least 16 frames, the
        patch size; shorter input is zero-padded in the log domain) when it is shorter.
    """
    t = logmel.shape[0]
    if t < PATCH:
        logmel = np.pad(logmel, ((0, PATCH - t), (0, 0)))
        t = PATCH
    length = min(t, max_length)
    return np.stack([normalise(logmel[s : s + length]) for s in window_starts(t, max_length)])
