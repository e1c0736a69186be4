"""The offline ``features`` embedder: handcrafted librosa statistics, no model weights.

This is **not** MAEST. It exists so musicmap runs end to end where no weights can be
loaded (a demo, an offline machine, CI). Wherever its vectors are shown they are
labelled "handcrafted features (librosa)".

The vector (dimension :data:`DIMENSION`) concatenates fixed-scaled blocks, so that no
block dominates the cosine and vectors do not depend on the rest of the library:

=================  ====  =====================================================
block              dims  what
=================  ====  =====================================================
mfcc mean          19    MFCC 1–19 means (timbre), / 40
mfcc std           19    MFCC 1–19 standard deviations (timbre dynamics), / 20
chroma             12    mean chroma, centred (harmony / key colour)
contrast           14    spectral contrast mean and std per band (dB), scaled
spectral shape     10    log centroid, bandwidth, rolloff, flatness, zcr: mean and std
loudness           2     log RMS mean and std
rhythm             20    tempo (log2 of BPM / 120), onset strength mean/std/skew,
                         normalised onset autocorrelation over 16 lags (0.12–1.5 s)
=================  ====  =====================================================
"""

from __future__ import annotations

from importlib import metadata

import librosa
import numpy as np

from store import ModelInfo

from ..decode import AudioSource
from .base import Embedding

SAMPLE_RATE = 16_000
N_FFT = 1024
HOP = 512
MAX_SECONDS = 180.0
"""Only the central ``MAX_SECONDS`` of longer tracks are analysed (bounded cost)."""

_BLOCKS = (19, 19, 12, 14, 10, 2, 20)
DIMENSION = int(sum(_BLOCKS))
VERSION = "features-v1"


def _block(x: np.ndarray | list[float], weight: float = 1.0) -> np.ndarray:
    x = np.nan_to_num(np.asarray(x, dtype=np.float64).ravel())
    return x * weight


def compute_features(audio: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """The handcrafted feature vector of ``audio``.

    Parameters
    ----------
    audio : ndarray, shape (n_samples,), float32, mono
    sr : int

    Returns
    -------
    vector : ndarray, shape (DIMENSION,), float32 (not normalised)
    """
    y = np.asarray(audio, dtype=np.float32)
    limit = int(MAX_SECONDS * sr)
    if len(y) > limit:
        start = (len(y) - limit) // 2
        y = y[start : start + limit]
    if len(y) < N_FFT:
        y = np.pad(y, (0, N_FFT - len(y)))
    spec = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP)) ** 2
    mel = librosa.feature.melspectrogram(S=spec, sr=sr, n_mels=64)
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=20)[1:]
    chroma = librosa.feature.chroma_stft(S=spec, sr=sr, n_fft=N_FFT, tuning=0.0)  # no tuning estimate
    contrast = librosa.feature.spectral_contrast(S=np.sqrt(spec), sr=sr, n_fft=N_FFT)
    centroid = librosa.feature.spectral_centroid(S=np.sqrt(spec), sr=sr)
    bandwidth = librosa.feature.spectral_bandwidth(S=np.sqrt(spec), sr=sr)
    rolloff = librosa.feature.spectral_rolloff(S=np.sqrt(spec), sr=sr)
    flatness = librosa.feature.spectral_flatness(S=np.sqrt(spec))
    zcr = librosa.feature.zero_crossing_rate(y, frame_length=N_FFT, hop_length=HOP)
    rms = librosa.feature.rms(S=np.sqrt(spec), frame_length=N_FFT)

    onset = librosa.onset.onset_strength(S=librosa.power_to_db(mel), sr=sr, hop_length=HOP)
    tempo = float(np.atleast_1d(librosa.feature.tempo(onset_envelope=onset, sr=sr, hop_length=HOP))[0])
    frame_rate = sr / HOP
    lags = np.unique(np.round(np.geomspace(0.12, 1.5, 16) * frame_rate).astype(int))
    centred = onset - onset.mean()
    ac = np.correlate(centred, centred, mode="full")[len(centred) - 1 :]
    ac = ac / (ac[0] + 1e-9)
    rhythm_ac = np.zeros(16)
    valid = lags[lags < len(ac)]
    rhythm_ac[: len(valid)] = ac[valid]
    o_std = onset.std() + 1e-9
    skew = float(((onset - onset.mean()) ** 3).mean() / o_std**3)

    def log_stats(x: np.ndarray, ref: float) -> list[float]:
        lx = np.log(np.maximum(x, 1e-10) / ref)
        return [float(lx.mean()), float(lx.std())]

    shape = [
        *log_stats(centroid, 1000.0),
        *log_stats(bandwidth, 1000.0),
        *log_stats(rolloff, 2000.0),
        *[v / 5 for v in log_stats(flatness, 1e-2)],
        *log_stats(zcr, 0.05),
    ]
    parts = [
        _block(mfcc.mean(axis=1), 1 / 40),
        _block(mfcc.std(axis=1), 1 / 20),
        _block(chroma.mean(axis=1) - chroma.mean(), 2.0),
        _block(np.concatenate([(contrast.mean(axis=1) - 20) / 10, contrast.std(axis=1) / 5])),
        _block(shape, 0.7),
        _block([np.log(rms.mean() + 1e-6) / 3, rms.std() / (rms.mean() + 1e-6)]),
        _block([np.log2(max(tempo, 1.0) / 120), onset.mean() / 2, o_std / 2, skew / 5, *rhythm_ac], 0.8),
    ]
    vector = np.concatenate(parts).astype(np.float32)
    assert vector.shape == (DIMENSION,), vector.shape
    return vector


class FeaturesEmbedder:
    """The ``features`` embedder (handcrafted, offline). See the module docstring."""

    sample_rate = SAMPLE_RATE
    parallel_safe = True

    def __init__(self) -> None:
        self.info = ModelInfo(
            name="features",
            id=VERSION,
            kind="handcrafted",
            label="handcrafted features (librosa)",
            dimension=DIMENSION,
            revision=None,
            layer=None,
            pooling="track statistics",
            sample_rate=SAMPLE_RATE,
            extra={"librosa": metadata.version("librosa")},
        )

    def embed(self, audio: np.ndarray) -> Embedding:
        return Embedding(vector=compute_features(audio, self.sample_rate), n_windows=1)

    def embed_stream(self, source: AudioSource) -> Embedding:
        """:meth:`embed` of a long file in bounded memory: one pass counts its samples, a second
        keeps only the central ``MAX_SECONDS`` (what :func:`compute_features` analyses)."""
        total = sum(len(block) for block in source.blocks())
        limit = int(MAX_SECONDS * self.sample_rate)
        lo = (total - limit) // 2 if total > limit else 0
        hi = lo + limit
        parts, pos = [], 0
        for block in source.blocks():
            end = pos + len(block)
            if end > lo and pos < hi:
                parts.append(block[max(0, lo - pos) : min(len(block), hi - pos)])
            pos = end
            if pos >= hi:
                break
        return self.embed(np.concatenate(parts))
