"""Windows into forward passes: how MAEST's windows and MusiCNN's patches are batched for the model.

Both embedders cut a track into windows of mel frames and run their model on batches of them; the
batching rule is the same for both, so it lives here, given the model as ``run(batch)``
(:data:`RunBatch`):

- :func:`run_tracks`, several decoded tracks at once: the window budget (``--max-windows``) picks
  each track's windows, windows of equal length are batched across tracks (all full windows
  together; a track shorter than one window has a window of its own length, batched with its
  equals), ``batch_size`` to a forward pass, and the outputs are put back per track in window order.
- :func:`run_stream`, one long file as it is decoded: windows are taken as they are complete, those
  outside the window budget (:func:`stream_budget`, the same windows as for the whole track) never
  reach the model, and a batch runs when it is full or when the
  next window's length differs (the short window of a short track).

A window's output does not depend on which others share its batch (to float rounding), so the
two give the same vectors; each is deterministic on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import numpy as np

from ..decode import AudioSource
from ..maest.frontend import LogmelStream, WindowStream, spread

RunBatch = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]
"""The model on one batch: windows of equal length, shape (b, t, 96), float32 → (vectors, shape
(b, d); label scores, shape (b, n_labels), or None when the model gives none)."""


class Outputs(NamedTuple):
    """The model's outputs for the windows of one track that were run, in window order."""

    starts: list[int]
    """Start frame of each window."""
    vectors: np.ndarray
    """shape (n_windows, d), as ``run`` returns them"""
    scores: np.ndarray | None
    """shape (n_windows, n_labels) (MAEST's style activations, MusiCNN's tag probabilities), or None"""


def run_tracks(tracks: Sequence[tuple[np.ndarray, list[int]]], run: RunBatch, *, batch_size: int,
               max_windows: int | None = None) -> list[Outputs]:
    """Run the windows of several tracks through the model, batched across tracks.

    Parameters
    ----------
    tracks : sequence of (ndarray, list of int)
        Each track's windows, shape (n_windows, t, 96), float32 (``t`` may differ between tracks: a
        track shorter than one window), and their start frames.
    run : RunBatch
        The model on one batch.
    batch_size : int
        Windows per forward pass (at least 1).
    max_windows : int, optional
        The window budget (``--max-windows``): the windows :func:`spread` keeps of each track.

    Returns
    -------
    outputs : list of Outputs
        One per track, its kept windows in order.
    """
    kept = []
    for windows, starts in tracks:
        keep = spread(len(starts), max_windows)
        kept.append((windows[keep], [starts[i] for i in keep]))
    # Windows of equal length go together, in the order their tracks came (dicts keep it).
    groups: dict[int, list[tuple[int, int]]] = {}
    for t, (windows, _) in enumerate(kept):
        for w in range(len(windows)):
            groups.setdefault(windows.shape[1], []).append((t, w))
    vectors: dict[tuple[int, int], np.ndarray] = {}
    scores: dict[tuple[int, int], np.ndarray] = {}
    for members in groups.values():
        for start in range(0, len(members), batch_size):
            chunk = members[start : start + batch_size]
            emb, score = run(np.stack([kept[t][0][w] for t, w in chunk]))
            for j, key in enumerate(chunk):
                vectors[key] = emb[j]
                if score is not None:
                    scores[key] = score[j]
    out = []
    for t, (windows, starts) in enumerate(kept):
        keys = [(t, w) for w in range(len(windows))]
        out.append(Outputs(starts, np.stack([vectors[k] for k in keys]),
                           np.stack([scores[k] for k in keys]) if scores else None))
    return out


def stream_budget(source: AudioSource, max_windows: int | None, count: Callable[[int], int]) -> set[int] | None:
    """Which windows of a streamed file the window budget keeps: the ones :func:`spread` keeps of
    all its windows, as for the whole decoded track; None (all) without a budget.

    Parameters
    ----------
    source : AudioSource
        Read once more to count its samples (only with a budget).
    max_windows : int or None
        The budget (``--max-windows``).
    count : callable
        Samples → how many windows the embedder cuts from a track of that length.
    """
    if max_windows is None:
        return None
    samples = sum(len(block) for block in source.blocks())
    return set(spread(count(samples), max_windows))


def run_stream(source: AudioSource, mels: LogmelStream, cutter: WindowStream, run: RunBatch, *,
               batch_size: int, keep: set[int] | None = None) -> Outputs:
    """Run a file's windows through the model as it is decoded: memory holds one decode block, about
    one window of mel frames, one batch and the outputs, never the whole track.

    Parameters
    ----------
    source : AudioSource
        The file, read block by block.
    mels, cutter : LogmelStream, WindowStream
        The embedder's front end: samples → mel frames → ``(start_frame, window)``.
    run : RunBatch
        The model on one batch.
    batch_size : int
        Windows per forward pass (at least 1).
    keep : set of int, optional
        Indices of the windows to run (:func:`stream_budget`); the rest never reach the model.

    Returns
    -------
    outputs : Outputs
        The windows run: their starts, vectors and scores, in order.
    """
    starts: list[int] = []
    pending: list[np.ndarray] = []
    vectors: list[np.ndarray] = []
    scores: list[np.ndarray] = []

    def flush() -> None:
        if pending:
            emb, score = run(np.stack(pending))
            vectors.append(emb)
            if score is not None:
                scores.append(score)
            pending.clear()

    for seen, (start, window) in enumerate(_windows(source, mels, cutter)):
        if keep is not None and seen not in keep:
            continue  # outside the window budget: never reaches the model
        if pending and pending[0].shape != window.shape:
            flush()
        starts.append(start)
        pending.append(window)
        if len(pending) >= batch_size:
            flush()
    flush()
    return Outputs(starts, np.concatenate(vectors), np.concatenate(scores) if scores else None)


def _windows(source: AudioSource, mels: LogmelStream, cutter: WindowStream) -> Iterator[tuple[int, np.ndarray]]:
    """``(start_frame, window)`` of ``source`` as each is complete, in order."""
    for block in source.blocks():
        yield from cutter.feed(mels.feed(block))
    yield from cutter.feed(mels.finish())
    yield from cutter.finish()
