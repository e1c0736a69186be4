"""Embedders: MAEST (transformers) and the offline handcrafted ``features``."""

from __future__ import annotations

from typing import Any

from .base import Embedder, Embedding
from .features import FeaturesEmbedder

__all__ = ["Embedder", "Embedding", "FeaturesEmbedder", "load_embedder"]


def load_embedder(model: str, *, device: str = "auto", batch_size: int = 4,
                  local_files_only: bool | None = None, **maest_options: Any) -> Embedder:
    """The embedder named by ``--model``: ``features``, a hub id, a local folder or a ``.ckpt``.

    ``maest_options`` (layer, pooling, styles, precision, patchout, keep_windows) go to
    :meth:`MaestEmbedder.load`; they are ignored for ``features``.

    Raises
    ------
    IndexerError
        When MAEST weights cannot be loaded; the message says how to fix it.
    """
    if model == "features":
        return FeaturesEmbedder()
    from .maest import MaestEmbedder  # imports torch: only when a model is asked for

    return MaestEmbedder.load(model, device=device, batch_size=batch_size,
                              local_files_only=local_files_only, **maest_options)
