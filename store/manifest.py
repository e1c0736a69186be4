"""``manifest.json``: what a store folder holds and how its vectors were made.

The manifest lets a store describe itself. It names the model (id, revision or file
hash, layer, pooling, dimension), the normalisation and metric, the FAISS index type,
the package versions that wrote it and the current counts. A store opened for
indexing with a different model is refused with a message naming the field.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from .errors import StoreError
from .faults import fault_point

FORMAT = "musicmap-store"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"

#: Fields of the model description that must match for vectors to be comparable.
MODEL_IDENTITY_FIELDS: tuple[str, ...] = ("id", "revision", "layer", "pooling", "dimension")


@dataclass(frozen=True)
class ModelInfo:
    """How a store's vectors were made.

    Parameters
    ----------
    name : str
        Short name given on the command line (``features`` or a hub id / path).
    id : str
        Stable identity: a hub id, a folder name, or ``features-v1``.
    kind : str
        ``maest`` or ``handcrafted``.
    label : str
        What people are shown, e.g. ``handcrafted features (librosa)``.
    dimension : int
        Vector width.
    revision : str, optional
        Hub revision or the hash of the weights file.
    layer, pooling : str, optional
        Which hidden state and how tokens/windows were pooled.
    sample_rate : int
        Sample rate the embedder reads.
    """

    name: str
    id: str
    kind: str
    label: str
    dimension: int
    revision: str | None = None
    layer: str | None = None
    pooling: str | None = None
    sample_rate: int = 16_000
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """The parsed ``manifest.json``."""

    model: ModelInfo
    created_at: str
    normalisation: str = "l2"
    metric: str = "cosine"
    index: dict[str, Any] = field(default_factory=lambda: {"type": "flat-ip"})
    packages: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    @classmethod
    def new(cls, model: ModelInfo) -> Manifest:
        """A manifest for a store about to be created with ``model``."""
        return cls(model=model, created_at=_now(), packages=package_versions())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: Path) -> Manifest:
        if data.get("format") != FORMAT:
            raise StoreError(f"{source} is not a musicmap manifest (format={data.get('format')!r})")
        if int(data.get("format_version", 0)) > FORMAT_VERSION:
            raise StoreError(
                f"{source} was written by a newer musicmap (format_version="
                f"{data.get('format_version')}, this one reads {FORMAT_VERSION}): upgrade musicmap"
            )
        try:
            model = ModelInfo(**data["model"])
            return cls(
                model=model,
                created_at=data["created_at"],
                normalisation=data.get("normalisation", "l2"),
                metric=data.get("metric", "cosine"),
                index=dict(data.get("index", {})),
                packages=dict(data.get("packages", {})),
                counts={k: int(v) for k, v in data.get("counts", {}).items()},
                format=data["format"],
                format_version=int(data["format_version"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"{source} is damaged ({exc!r}); rebuild the store with musicmap index") from exc

    def check_model(self, model: ModelInfo) -> None:
        """Refuse to mix vectors of different models; the message names the field."""
        for name in MODEL_IDENTITY_FIELDS:
            ours, theirs = getattr(self.model, name), getattr(model, name)
            if ours != theirs:
                raise StoreError(
                    f"this store was built with model.{name}={ours!r}, but this run uses "
                    f"model.{name}={theirs!r}. Vectors of different models cannot be mixed: use "
                    f"--model {self.model.name} with this store, or another --store for the new model."
                )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def package_versions() -> dict[str, str]:
    """Versions of the packages whose behaviour shapes the store's contents."""
    out: dict[str, str] = {}
    for name in ("musicmap", "numpy", "duckdb", "faiss-cpu", "librosa", "openTSNE", "torch", "transformers"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON to ``path`` via a temp file + rename, so readers never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True, ensure_ascii=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        fault_point("json-write")
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise StoreError(f"could not write {path}: {exc.strerror or exc}") from exc
        raise


def read_manifest(folder: Path) -> Manifest:
    path = folder / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise StoreError(
            f"{folder} is not a musicmap store (no {MANIFEST_NAME}); create one with "
            f"`musicmap index LIBRARY --store {folder}`"
        ) from exc
    except json.JSONDecodeError as exc:
        raise StoreError(f"{path} is not valid JSON ({exc}); the store is damaged") from exc
    return Manifest.from_dict(data, source=path)


def write_manifest(folder: Path, manifest: Manifest) -> None:
    write_json_atomic(folder / MANIFEST_NAME, manifest.to_dict())
