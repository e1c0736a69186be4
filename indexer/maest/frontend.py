"""MAEST's audio front end: Essentia-exact log-mel bands and model windows (spec §1).

The training features were Essentia's ``TensorflowInputMusiCNN``: 16 kHz mono, 512-sample
symmetric Hann frames, hop 256, Essentia framing (the first frame centred on sample 0, so
ceil(N/256)+1 frames), power spectrum, 96 Slaney mel bands 0–8 kHz with Slaney (unit-area)
normalisation, log10(1 + 10⁴·x). MAEST then normalises with (x − 2.0676) / (2 · 1.2683).
"""

from __future__ import annotations

from collections.abc import Callable
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
def mel_basis() -> np.ndarray:
    """The 96 Slaney mel bands (Slaney area normalisation) over the 257 bins of a 512-point FFT
    at 16 kHz, 0–8 kHz: shape (96, 257), float64. MusiCNN's front end uses the same bands."""
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
    out = np.empty((len(frames), N_MELS), dtype=np.float32)
    # Blocks of frames keep the float64 FFT's memory bounded for a two-hour mix.
    for start in range(0, len(frames), CHUNK_FRAMES):
        out[start : start + CHUNK_FRAMES] = _logmel_of_frames(frames[start : start + CHUNK_FRAMES])
    return out


def _logmel_of_frames(frames: np.ndarray) -> np.ndarray:
    """(t, 512) sample frames → (t, 96) float32 log-mel bands (one FFT block)."""
    power = np.abs(np.fft.rfft(frames.astype(np.float64) * _hann(), axis=1)) ** 2  # (t, 257)
    return log_compress(power @ mel_basis().T)  # (t, 96)


def log_compress(mel: np.ndarray) -> np.ndarray:
    """log10(1 + 10⁴·x) as float32: the "logC" compression both MAEST and MusiCNN were trained on."""
    return np.log10(1.0 + 10_000.0 * np.asarray(mel, dtype=np.float64)).astype(np.float32)


@cache
def _hann() -> np.ndarray:
    return np.hanning(FRAME)  # symmetric Hann, not normalised


def normalise(logmel: np.ndarray) -> np.ndarray:
    """MAEST input normalisation: (x − 2.0676) / (2 · 1.2683). Note the factor 2 on the std."""
    return ((logmel - MEAN) / (2.0 * STD)).astype(np.float32)


def window_hop(max_length: int) -> int:
    """Frames between window starts for a model whose input is ``max_length`` frames."""
    return WINDOW_HOPS.get(int(max_length), max(1, int(max_length) - 1))


def window_starts(total: int, max_length: int, hop: int | None = None) -> list[int]:
    """Where the windows of a ``total``-frame track start.

    The rule (spec §1.3 leaves the last partial window open; this is musicmap's choice):

    - full windows of ``max_length`` frames every :func:`window_hop` frames, as Essentia;
    - if the frames after the last full window amount to at least half a window, one more
      window is added, aligned to the end of the track (it overlaps the previous one and holds
      only real audio, never padding); a shorter remainder is dropped, as Essentia does;
    - a track shorter than one window is a single window of its own length (the caller runs it
      with the positional grid sliced, as MAEST does), so the list is ``[0]``.

    ``hop`` overrides MAEST's window hop (MusiCNN's patches: 187, no overlap).
    """
    if total <= max_length:
        return [0]
    hop = hop or window_hop(max_length)
    starts = list(range(0, total - max_length + 1, hop))
    covered = starts[-1] + max_length
    if total - covered >= max_length // 2:
        starts.append(total - max_length)
    return starts


def spread(count: int, budget: int | None) -> list[int]:
    """Which of ``count`` windows a window budget keeps: all when ``budget`` is None or at least
    ``count``, else ``budget`` of them spread evenly from the first to the last (``--max-windows``).
    """
    if budget is None or budget >= count:
        return list(range(count))
    if budget < 1:
        raise ValueError(f"a window budget must be at least 1, got {budget}")
    return sorted(set(np.round(np.linspace(0, count - 1, budget)).astype(int).tolist()))


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


class LogmelStream:
    """A log-mel front end fed block by block: the same frames, memory bounded by a block.

    ``feed(samples)`` returns the frames completed by these samples; ``finish()`` the last ones.
    Concatenated, they equal the whole-signal function: :func:`essentia_logmel` by default, or,
    given ``of_frames`` and ``centred_end=True``, a librosa-style front end (``center=True``:
    half a frame of zeros at each end; MusiCNN's).

    Parameters
    ----------
    of_frames : callable, optional
        (t, 512) sample frames → (t, 96) float32 bands (default: Essentia's).
    centred_end : bool
        End padding: False = Essentia's (to the next hop, plus half a frame: ceil(n/256)+1
        frames); True = librosa's ``center=True`` (half a frame: n//256+1 frames).
    """

    def __init__(self, of_frames: Callable[[np.ndarray], np.ndarray] | None = None, *,
                 centred_end: bool = False) -> None:
        self._of_frames = of_frames or _logmel_of_frames
        self._centred_end = centred_end
        self._buf = np.zeros(FRAME // 2, dtype=np.float32)  # the first frame is centred on sample 0
        self._n = 0  # samples fed
        self._done = False

    def feed(self, samples: np.ndarray) -> np.ndarray:
        if self._done:
            raise RuntimeError("LogmelStream.feed after finish")
        samples = np.asarray(samples, dtype=np.float32).ravel()
        self._n += len(samples)
        self._buf = np.concatenate([self._buf, samples])
        return self._take()

    def finish(self) -> np.ndarray:
        """The remaining frames, with the end padding of the front end."""
        self._done = True
        padded = self._n if self._centred_end else -(-self._n // HOP) * HOP
        self._buf = np.concatenate([self._buf, np.zeros(padded - self._n + FRAME // 2, np.float32)])
        return self._take()

    def _take(self) -> np.ndarray:
        count = (len(self._buf) - FRAME) // HOP + 1 if len(self._buf) >= FRAME else 0
        if count <= 0:
            return np.zeros((0, N_MELS), np.float32)
        frames = np.lib.stride_tricks.sliding_window_view(self._buf, FRAME)[::HOP][:count]
        out = np.concatenate([self._of_frames(frames[s : s + CHUNK_FRAMES])
                              for s in range(0, count, CHUNK_FRAMES)])
        self._buf = self._buf[count * HOP :].copy()
        return out


class WindowStream:
    """:func:`windows` for a stream of log-mel frames: yields ``(start_frame, window)`` as soon as
    each window is complete, keeping about one window of frames. ``finish()`` adds the windows that
    need the track's length (the end-aligned one, or a track shorter than one window).

    Parameters
    ----------
    max_length : int
        Window length in frames.
    hop : int, optional
        Frames between window starts (default: :func:`window_hop`, MAEST's).
    prepare : callable
        Applied to each window (default: MAEST's :func:`normalise`).
    min_frames : int
        A track shorter than this is zero-padded to it (MAEST: one patch, 16 frames).
    """

    def __init__(self, max_length: int, *, hop: int | None = None,
                 prepare: Callable[[np.ndarray], np.ndarray] = normalise, min_frames: int = PATCH) -> None:
        self.max_length = int(max_length)
        self.hop = int(hop) if hop else window_hop(self.max_length)
        self._prepare = prepare
        self._min_frames = min_frames
        self._frames = np.zeros((0, N_MELS), np.float32)
        self._base = 0  # frame index of self._frames[0]
        self._total = 0
        self._next = 0  # start of the next full window
        self._emitted = 0

    def feed(self, logmel: np.ndarray) -> list[tuple[int, np.ndarray]]:
        self._frames = np.concatenate([self._frames, logmel])
        self._total += len(logmel)
        out = []
        length = self.max_length
        while self._next + length <= self._total:
            lo = self._next - self._base
            out.append((self._next, self._prepare(self._frames[lo : lo + length])))
            self._next += self.hop
        keep_from = max(self._base, min(self._next, self._total - length))  # the end window may need them
        self._frames = self._frames[keep_from - self._base :]
        self._base = keep_from
        self._emitted += len(out)
        return out

    def finish(self) -> list[tuple[int, np.ndarray]]:
        total, length = self._total, self.max_length
        if self._emitted == 0:  # shorter than one window: one window of its own length
            frames = self._frames
            if len(frames) < self._min_frames:
                frames = np.pad(frames, ((0, self._min_frames - len(frames)), (0, 0)))
            return [(0, self._prepare(frames[:length]))]
        last = self._next - self.hop
        if total - (last + length) >= length // 2:
            start = total - length
            return [(start, self._prepare(self._frames[start - self._base : start - self._base + length]))]
        return []
