"""How much each faster mode changes the results, measured on the user's own music and weights
(``musicmap doctor --fidelity LIBRARY --model M``).

A sample of the library's files is embedded by the full computation (fp32, every window, no
patchout) and by each faster mode; per mode:

- **speed** here: windows per second and audio seconds per second over the sample (decoding aside);
- **track cosine** of each track's vector to the full computation's (min and mean);
- **top-10 overlap**: how many of each track's nearest tracks *within the sample* stay the same
  (k = 10, or the sample size − 1 when smaller);
- **top-5 label agreement**: how many of each track's 5 highest styles/tags stay the same (models
  with labels).

Random weights are not trained weights: the figures of a real checkpoint can differ, which is why
this runs on the user's own model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from store import l2_normalise

from .decode import load_audio
from .errors import FileFailure, IndexerError
from .scan import scan

logger = logging.getLogger(__name__)

SAFE_COSINE = 0.9999
FAST_COSINE = 0.99


@dataclass(frozen=True)
class Mode:
    name: str
    options: dict[str, Any]


@dataclass
class ModeResult:
    name: str
    options: dict[str, Any]
    windows: int
    seconds: float
    audio_seconds: float
    cosine_min: float
    cosine_mean: float
    topk_overlap: float
    labels_top5: float | None

    @property
    def windows_per_s(self) -> float:
        return self.windows / max(self.seconds, 1e-9)

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.name, "options": self.options, "windows": self.windows,
                "windows_per_s": round(self.windows_per_s, 3),
                "audio_s_per_s": round(self.audio_seconds / max(self.seconds, 1e-9), 1),
                "cosine_min": round(self.cosine_min, 6), "cosine_mean": round(self.cosine_mean, 6),
                "top10_overlap": round(self.topk_overlap, 4),
                "labels_top5": None if self.labels_top5 is None else round(self.labels_top5, 4)}


def modes_for(kind: str) -> list[Mode]:
    """The faster modes worth comparing for a model kind (the reference is always first)."""
    from .embedders import FAST

    if kind == "maest":
        return [Mode("fp32 (reference)", {"precision": "fp32"}),
                Mode("auto", {"precision": "auto"}),
                Mode("bf16", {"precision": "bf16"}),
                Mode("int8", {"precision": "int8"}),
                Mode("patchout 0.5", {"precision": "fp32", "patchout": 0.5}),
                Mode(f"max-windows {FAST['maest']['max_windows']}",
                     {"precision": "fp32", "max_windows": FAST["maest"]["max_windows"]}),
                Mode("--fast", {"fast": True})]
    if kind == "musicnn":
        return [Mode("all patches (reference)", {}),
                *[Mode(f"max-windows {n}", {"max_windows": n}) for n in (64, 32, 16, 8)],
                Mode("--fast", {"fast": True})]
    return []


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray((l2_normalise(a) * l2_normalise(b)).sum(axis=1))


def _neighbours(x: np.ndarray, k: int) -> np.ndarray:
    x = l2_normalise(x)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1)[:, :k]


def _top_labels(styles: dict[str, float], n: int = 5) -> list[str]:
    return [label for label, _ in sorted(styles.items(), key=lambda item: -item[1])[:n]]


def sample_files(library: Sequence[str | Path], n: int) -> list[Path]:
    """``n`` audio files spread evenly over the sorted library (all when fewer)."""
    files = scan(library)
    if n >= len(files):
        return files
    return [files[int(i)] for i in np.linspace(0, len(files) - 1, n)]


def measure(files: Sequence[Path], load: Callable[[dict[str, Any]], Any], kind: str,
            progress: Callable[[str], None] | None = None) -> tuple[list[ModeResult], int]:
    """Every mode of :func:`modes_for` on ``files``; ``load(options)`` builds the embedder.

    Returns the results (the reference first) and how many files could be decoded.

    Raises
    ------
    IndexerError
        Fewer than 3 decodable files, or a model kind without faster modes.
    """
    modes = modes_for(kind)
    if not modes:
        raise IndexerError("--fidelity compares faster modes of MAEST and MusiCNN; this model has none")
    audio = []
    for path in files:
        try:
            audio.append(load_audio(path))
        except FileFailure as exc:
            logger.warning("skipped %s: %s", path, exc.reason)
    if len(audio) < 3:
        raise IndexerError(f"--fidelity needs at least 3 decodable files, found {len(audio)}")
    seconds_of_audio = sum(len(a) for a in audio) / 16_000
    results: list[ModeResult] = []
    reference: tuple[np.ndarray, list[list[str]]] | None = None
    k = min(10, len(audio) - 1)
    for mode in modes:
        if progress is not None:
            progress(mode.name)
        embedder = load(mode.options)
        started = time.perf_counter()
        out = [embedder.embed(a) for a in audio]
        spent = time.perf_counter() - started
        vectors = np.stack([e.vector for e in out])
        labels = [_top_labels(e.styles) for e in out]
        if reference is None:
            reference = (vectors, labels)
        ref_vectors, ref_labels = reference
        cos = _cosines(vectors, ref_vectors)
        ours, theirs = _neighbours(vectors, k), _neighbours(ref_vectors, k)
        overlap = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ours, theirs, strict=True)]))
        agree = (float(np.mean([len(set(a) & set(b)) / max(1, len(b)) for a, b in zip(labels, ref_labels,
                                                                                     strict=True)]))
                 if any(ref_labels) else None)
        results.append(ModeResult(mode.name, mode.options, sum(e.n_windows for e in out), spent, seconds_of_audio,
                                  float(cos.min()), float(cos.mean()), overlap, agree))
    return results, len(audio)


def recommend(results: Sequence[ModeResult]) -> dict[str, str | None]:
    """The fastest mode within :data:`SAFE_COSINE` of the reference (every track), and the fastest
    within :data:`FAST_COSINE`."""
    def fastest(threshold: float) -> str | None:
        ok = [r for r in results if r.cosine_min >= threshold]
        return min(ok, key=lambda r: r.seconds).name if ok else None
    return {"same_results": fastest(SAFE_COSINE), "fast": fastest(FAST_COSINE)}
