"""Embedders: MAEST (transformers) and the offline handcrafted ``features``."""

from __future__ import annotations

from .base import Embedder, Embedding
from .features import FeaturesEmbedder

__all__ = ["Embedder", "Embedding", "FeaturesEmbedder", "load_embedder"]


def load_embedder(model: str, *, device: str = "auto", batch_size: int = 4,
                  local_files_only: bool | None = None) -> Embedder:
    """The embedder named by ``--model``: ``features``, a hub id, or a local folder.

    Raises
    ------
    IndexerError
        When MAEST weights cannot be loaded; the message says how to fix it.
    """
    if model == "features":
        return FeaturesEmbedder()
    from .maest import MaestEmbedder  # imports torch: only when a model is asked for

    return MaestEmbedder.load(model, device=device, batch_size=batch_size,
                              local_files_only=local_files_only)
