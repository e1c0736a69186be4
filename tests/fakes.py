"""Small stand-ins the tests share: a model description for vectors made by the test, and a store
written from records the test makes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from store import ModelInfo, Store, TrackRecord


def fake_model(dimension: int, *, kind: str = "handcrafted", name: str = "test", model_id: str = "test-model",
               label: str = "test vectors") -> ModelInfo:
    """A :class:`ModelInfo` for vectors the test writes itself (no embedder behind them)."""
    return ModelInfo(name=name, id=model_id, kind=kind, label=label, dimension=dimension)


def write_store(folder: Path, model: ModelInfo, records: Sequence[TrackRecord], *,
                positions: np.ndarray | None = None) -> Path:
    """A store at ``folder`` holding ``records`` (written and synced as the indexer does), and with
    ``positions`` (one (x, y) row per record, in order) a ``tsne`` map; returns ``folder``."""
    with Store.open_for_indexing(folder, model) as store:
        ids = store.write_tracks(records)
        store.sync()
        if positions is not None:
            store.write_projection("tsne", np.asarray(ids, np.int64), np.asarray(positions, np.float64),
                                   method="synthetic", params={})
    return folder
