"""Generated test audio shared by the tests: a tone with a little noise, as samples or as a file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def tone(seconds: float, freq: float, *, sr: int = 16_000, amp: float = 0.3, noise: float = 0.02,
         seed: int = 0) -> np.ndarray:
    """``amp``·sin(2π·freq·t) plus Gaussian noise of std ``noise`` (seeded), float32, mono."""
    t = np.arange(int(seconds * sr)) / sr
    y = amp * np.sin(2 * np.pi * freq * t) + noise * np.random.default_rng(seed).standard_normal(len(t))
    return y.astype(np.float32)


def write_tone(path: Path, seconds: float, freq: float, *, sr: int = 16_000, amp: float = 0.3, noise: float = 0.02,
               seed: int = 0, channels: int = 1, subtype: str | None = None) -> Path:
    """:func:`tone` written to ``path`` (format from the suffix; parent folders made), ``channels``
    identical channels."""
    y = tone(seconds, freq, sr=sr, amp=amp, noise=noise, seed=seed)
    data = np.repeat(y[:, None], channels, axis=1) if channels > 1 else y
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data, sr, subtype=subtype)
    return path
