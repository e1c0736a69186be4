"""What a fitted map keeps beside the store so that tracks can be placed into it later: the PCA
it was fitted on (``mean``, ``components``) and its cluster centres (``centroids``), as plain
arrays in ``STORE/maps/NAME.npz`` (loaded without pickle)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from store import Store

logger = logging.getLogger(__name__)

MAPS_DIR = "maps"


def model_file(store: Store, name: str) -> Path:
    """Where map ``name``'s model is kept (the name made safe for a file name)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return store.path / MAPS_DIR / f"{safe}.npz"


def save_model(store: Store, name: str, model: dict[str, np.ndarray]) -> None:
    """Save map ``name``'s model (replacing it at once, never half-written); an empty ``model``
    removes the file."""
    path = model_file(store, name)
    if not model:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, **model)  # type: ignore[arg-type]
    os.replace(tmp, path)


def load_model(store: Store, name: str) -> dict[str, np.ndarray] | None:
    """The saved PCA (``mean``, ``components``) and ``centroids`` of map ``name``; None when
    missing, unreadable or made for vectors of another dimension (``centroids`` left out when
    only they do not fit)."""
    try:
        with np.load(model_file(store, name), allow_pickle=False) as data:
            model = {key: np.asarray(data[key]) for key in ("mean", "components", "centroids") if key in data}
    except (OSError, ValueError) as exc:
        logger.debug("no usable map model for %r (%s)", name, exc)
        return None
    d = store.manifest.model.dimension
    if ("mean" not in model or "components" not in model or model["mean"].shape != (d,)
            or model["components"].ndim != 2 or model["components"].shape[1] != d):
        return None
    if "centroids" in model and (model["centroids"].ndim != 2 or model["centroids"].shape[1] != d):
        del model["centroids"]
    return model
