"""Embedders, in tiers: the handcrafted ``features`` (no model), MusiCNN (a trained model whose
weights come in a PyPI package) and MAEST (the product's model: weights from the hub or a file)."""

from __future__ import annotations

from typing import Any

from .base import Embedder, Embedding
from .features import FeaturesEmbedder

__all__ = ["FAST", "Embedder", "Embedding", "FeaturesEmbedder", "load_embedder"]

FAST: dict[str, dict[str, Any]] = {
    "maest": {"precision": "int8", "patchout": 0.6, "max_windows": 6},
    "musicnn": {"max_windows": 32},
}
"""``musicmap index --fast`` per model kind: the fastest settings measured to keep track vectors
within cosine 0.99 of the full computation. MAEST (full-size random weights,
``benchmarks/bench_maest.py``): int8 with patchout 0.6 runs 5.4 windows/s here at cosine 0.9996;
patchout 0.7 fell to 0.967. The window budgets come from real music with real weights
(``bench_musicnn.py budget``, the demo's 117 tracks): 6 of MAEST's 30-s windows keep 99 % of tracks
at cosine ≥ 0.99 (MusiCNN's vectors averaged over 30 s standing in for MAEST's), 32 of MusiCNN's
3-s patches keep all of them. Random weights are not trained weights: check a real checkpoint
with ``musicmap doctor --fidelity``."""


def _is_musicnn_folder(model: str) -> bool:
    """A folder holding a MusiCNN checkpoint (``.index`` and ``checkpoint``, as the package has them)."""
    from pathlib import Path

    folder = Path(model).expanduser()
    return folder.is_dir() and (folder / ".index").exists() and (folder / "checkpoint").exists()


def load_embedder(model: str, *, device: str = "auto", batch_size: int = 4,
                  local_files_only: bool | None = None, **maest_options: Any) -> Embedder:
    """The embedder named by ``--model``: ``features``, ``musicnn-msd`` (and the other MusiCNN names),
    a MAEST hub id, a local folder or a ``.ckpt``.

    ``maest_options`` (layer, pooling, styles, precision, patchout, keep_windows) go to
    :meth:`MaestEmbedder.load`; ``features`` ignores them, MusiCNN takes ``keep_windows``.

    Raises
    ------
    IndexerError
        When MAEST weights cannot be loaded; the message says how to fix it.
    """
    if model == "features":
        return FeaturesEmbedder()
    if model.startswith("musicnn-") or _is_musicnn_folder(model):
        from .musicnn import MusicnnEmbedder  # imports torch

        fast = bool(maest_options.get("fast"))
        return MusicnnEmbedder.load(model, batch_size=max(batch_size, 1) * 4,
                                    keep_windows=bool(maest_options.get("keep_windows", True)),
                                    max_windows=FAST["musicnn"]["max_windows"] if fast
                                    else maest_options.get("max_windows"), fast=fast)
    from .maest import MaestEmbedder  # imports torch: only when a model is asked for

    return MaestEmbedder.load(model, device=device, batch_size=batch_size,
                              local_files_only=local_files_only, **maest_options)
