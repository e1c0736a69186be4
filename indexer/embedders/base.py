"""The embedder interface: audio in, one track vector (and optional styles) out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from store import ModelInfo


@dataclass(frozen=True)
class Embedding:
    """What an embedder returns for one track.

    Parameters
    ----------
    vector : ndarray, shape (d,), float32
        The track vector (the store L2-normalises it).
    n_windows : int
        How many windows were averaged.
    styles : dict of str to float
        Style activations (MAEST's Discogs labels); empty when the model has none.
    windows : ndarray, shape (n_windows, d), float32, optional
        Per-window vectors, when the embedder keeps them.
    window_starts : list of float
        Start of each window in seconds.
    """

    vector: np.ndarray
    n_windows: int = 1
    styles: dict[str, float] = field(default_factory=dict)
    windows: np.ndarray | None = None
    window_starts: list[float] = field(default_factory=list)


@runtime_checkable
class Embedder(Protocol):
    """Turns decoded audio into an :class:`Embedding`.

    ``info`` describes the model for the store's manifest. ``sample_rate`` is the rate
    :meth:`embed` expects. ``parallel_safe`` says the embedder is cheap to pickle and
    CPU-only, so it may run inside the decode worker processes.
    """

    info: ModelInfo
    sample_rate: int
    parallel_safe: bool

    def embed(self, audio: np.ndarray) -> Embedding:
        """Embed mono float32 ``audio`` (shape (n_samples,)) at :attr:`sample_rate`."""
        ...


def can_stream(embedder: object) -> bool:
    """Whether ``embedder`` has ``embed_stream(source: AudioSource) -> Embedding``: it can embed a
    very long file as it is decoded, in bounded memory."""
    return callable(getattr(embedder, "embed_stream", None))


def embed_many(embedder: Embedder, audios: list[np.ndarray]) -> list[Embedding]:
    """Embed several tracks at once when the embedder can batch them, else one by one."""
    many = getattr(embedder, "embed_many", None)
    if callable(many):
        return list(many(audios))
    return [embedder.embed(a) for a in audios]
