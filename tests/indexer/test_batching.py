"""The batching of windows into forward passes, shared by MAEST and MusiCNN (indexer.embedders.batching).

The model here is a plain function of each window (its mean and its first frame's sum), so what each
window gets back can be checked exactly, and every batch it was handed is recorded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexer.decode import AudioSource, load_audio
from indexer.embedders.batching import run_stream, run_tracks, stream_budget
from indexer.maest import frontend
from tests.audio import write_tone

SR = 16_000


class Model:
    """Per window: vector (mean, first frame's sum), score (window length); records each batch's shape."""

    def __init__(self, *, scores: bool = True) -> None:
        self.batches: list[tuple[int, ...]] = []
        self.scores = scores

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        self.batches.append(batch.shape)
        return self.expected(batch), (np.full((len(batch), 1), batch.shape[1], np.float32) if self.scores else None)

    @staticmethod
    def expected(windows: np.ndarray) -> np.ndarray:
        return np.stack([windows.mean(axis=(1, 2)), windows[:, 0].sum(axis=1)], axis=1)


def _track(n: int, length: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, length, 96)).astype(np.float32)


@pytest.mark.parametrize("batch_size", [1, 3, 4, 100])
def test_windows_are_batched_across_tracks_by_length_and_come_back_in_order(batch_size: int) -> None:
    tracks = [_track(5, 66, 0), _track(1, 20, 1), _track(2, 66, 2), _track(1, 20, 3), _track(3, 66, 4)]
    starts = [list(range(0, 10 * len(t), 10)) for t in tracks]
    model = Model()
    outputs = run_tracks(list(zip(tracks, starts, strict=True)), model, batch_size=batch_size)
    assert len(outputs) == len(tracks)
    for windows, first, out in zip(tracks, starts, outputs, strict=True):
        assert out.starts == first
        np.testing.assert_array_equal(out.vectors, Model.expected(windows))
        assert out.scores is not None and out.scores[:, 0].tolist() == [windows.shape[1]] * len(windows)
    assert all(1 <= b[0] <= batch_size for b in model.batches)  # never more than batch_size a pass
    full, short = [b[0] for b in model.batches if b[1] == 66], [b[0] for b in model.batches if b[1] == 20]
    # Full windows of all tracks go together: as few passes as batch_size allows (10 windows, then 2).
    assert len(full) == -(-10 // batch_size) and len(short) == -(-2 // batch_size)
    assert [b[1] for b in model.batches] == sorted((b[1] for b in model.batches), reverse=True)  # groups in turn
    assert run_tracks([(tracks[0], starts[0])], Model(scores=False), batch_size=batch_size)[0].scores is None
    # A window budget keeps the windows spread() keeps of each track, and only those are run.
    budget = Model()
    kept = run_tracks(list(zip(tracks, starts, strict=True)), budget, batch_size=batch_size, max_windows=2)
    for windows, first, out in zip(tracks, starts, kept, strict=True):
        keep = frontend.spread(len(windows), 2)
        assert out.starts == [first[i] for i in keep]
        np.testing.assert_array_equal(out.vectors, Model.expected(windows[keep]))
    assert sum(b[0] for b in budget.batches) == 2 + 1 + 2 + 1 + 2


@pytest.mark.parametrize(("batch_size", "budget"), [(1, None), (3, None), (4, 3), (2, 1)])
def test_a_stream_gives_the_windows_of_the_whole_track(tmp_path: Path, batch_size: int, budget: int | None) -> None:
    """Streamed, each kept window gets what it gets from the whole track, in batches of one length
    and at most ``batch_size``; windows outside the budget never reach the model."""
    path = write_tone(tmp_path / "long.flac", 9.3, 330.0, seed=4)  # 583 frames: 8 full windows of 66 + an end one
    whole = frontend.essentia_logmel(load_audio(path, SR))
    length = 66
    starts_all = frontend.window_starts(len(whole), length)
    windows_all = frontend.windows(whole, length)
    source = AudioSource(path, SR, block_seconds=0.7)

    def count(samples: int) -> int:
        return len(frontend.window_starts(frontend.n_frames(samples), length))

    keep = stream_budget(source, budget, count)
    kept = frontend.spread(len(starts_all), budget)
    assert (keep is None) == (budget is None) and (keep is None or sorted(keep) == kept)
    model = Model()
    out = run_stream(source, frontend.LogmelStream(), frontend.WindowStream(length), model,
                     batch_size=batch_size, keep=keep)
    assert out.starts == [starts_all[i] for i in kept]
    np.testing.assert_allclose(out.vectors, Model.expected(windows_all[kept]), rtol=1e-5, atol=1e-6)
    assert out.scores is not None and len(out.scores) == len(kept)
    assert sum(b[0] for b in model.batches) == len(kept) and all(b[0] <= batch_size for b in model.batches)
