"""Small stand-ins the store tests share: a model description for vectors made by the test."""

from __future__ import annotations

from store import ModelInfo


def fake_model(dimension: int, *, kind: str = "handcrafted", name: str = "test", model_id: str = "test-model",
               label: str = "test vectors") -> ModelInfo:
    """A :class:`ModelInfo` for vectors the test writes itself (no embedder behind them)."""
    return ModelInfo(name=name, id=model_id, kind=kind, label=label, dimension=dimension)
