"""Exports: ``embeddings.csv`` / ``.parquet`` and the static ``tsne_plot.png`` / ``.svg``.

These are the two outputs of the original MAEST + t-SNE demo that musicmap grew from.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import StoreError
from .genres import NO_GENRE, group_genres
from .store import Store

logger = logging.getLogger(__name__)

METADATA_COLUMNS: tuple[str, ...] = ("id", "path", "title", "artist", "album", "genre", "year", "duration")


def embeddings_frame(store: Store, *, projection: str = "tsne") -> tuple[pd.DataFrame, np.ndarray]:
    """Track metadata (+ map x/y when present) aligned with the vector matrix, by track id."""
    ids, vectors = store.vectors()
    meta = store.tracks(ids.tolist(), columns=METADATA_COLUMNS)
    proj = store.projection(projection)
    if not proj.empty:
        meta = meta.merge(proj[["id", "x", "y"]], on="id", how="left")
    return meta, vectors


def export_embeddings(store: Store, path: str | Path) -> int:
    """Write one row per embedded track: metadata, x/y, then the vector.

    ``.csv`` gets one column per dimension (``e0`` … ``e{d-1}``); ``.parquet`` gets a
    ``vector`` list column. Returns the number of rows written.
    """
    out = Path(path).expanduser()
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise StoreError(f"--embeddings {out}: use a .csv or .parquet file name")
    if not out.parent.is_dir():
        raise StoreError(f"--embeddings {out}: folder {out.parent} does not exist")
    meta, vectors = embeddings_frame(store)
    meta.insert(1, "model", store.manifest.model.id)
    if suffix == ".csv":
        dims = pd.DataFrame(vectors, columns=[f"e{i}" for i in range(vectors.shape[1])])
        pd.concat([meta.reset_index(drop=True), dims], axis=1).to_csv(out, index=False, float_format="%.7g")
    else:
        table = pa.Table.from_pandas(meta, preserve_index=False)
        d = vectors.shape[1]
        vec = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel(), pa.float32()), d)
        table = table.append_column("vector", vec)
        pq.write_table(table, out)
    logger.info("wrote %d embeddings to %s", len(meta), out)
    return len(meta)


COLOR_FIELDS: tuple[str, ...] = ("genre", "style", "artist", "album", "year", "format")
"""Fields a map can be coloured by; ``style`` is the top predicted Discogs genre (MAEST)."""


def export_plot(store: Store, path: str | Path, *, color_by: str = "genre", projection: str = "tsne",
                top_n: int = 12, dpi: int = 150, labels: bool = False) -> int:
    """Draw the map as a static image (PNG, SVG or PDF by the file name), coloured by a field.

    Categories beyond the ``top_n`` most frequent are grouped as "other"; the legend sits
    outside the points; ``labels`` writes each category's name at its centre (the median of its
    points). The title names the model, the track count and the map method. Returns the number
    of points drawn.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(path).expanduser()
    if out.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise StoreError(f"--plot {out}: use a .png, .svg or .pdf file name")
    if not out.parent.is_dir():
        raise StoreError(f"--plot {out}: folder {out.parent} does not exist")
    frame = store.projection(projection)
    if frame.empty:
        raise StoreError(f"the store has no '{projection}' map yet; run `musicmap map --store {store.path}`")
    if color_by not in COLOR_FIELDS:
        raise StoreError(f"--color-by {color_by!r}: choose one of {', '.join(COLOR_FIELDS)}")
    if color_by == "style" and frame["style"].isna().all():
        raise StoreError(f"--color-by style needs MAEST style predictions; this store's vectors "
                         f"({store.manifest.model.label}) have none. Use --color-by genre")
    # Genres that differ only in spelling are one category (store.genres), named as most files spell it.
    values = pd.Series(group_genres(frame["genre"]), index=frame.index) if color_by == "genre" else frame[color_by]
    names = values.astype("string").fillna(NO_GENRE)
    counts = names.value_counts()
    keep = list(counts.index[:top_n])
    names = names.where(names.isin(keep), "other")
    order = keep + (["other"] if (names == "other").any() else [])

    fig, ax = plt.subplots(figsize=(11, 8))
    cmap = plt.get_cmap("tab20" if len(order) > 10 else "tab10")
    size = float(np.clip(4000 / max(len(frame), 1), 2, 40))
    for i, name in enumerate(order):
        mask = (names == name).to_numpy()
        color = "#bbbbbb" if name == "other" else cmap(i % cmap.N)
        ax.scatter(frame["x"][mask], frame["y"][mask], s=size, color=color, alpha=0.8,
                   linewidths=0, label=f"{name} ({int(mask.sum())})")
        if labels and name not in ("other", "(none)"):
            ax.annotate(str(name), (float(frame["x"][mask].median()), float(frame["y"][mask].median())),
                        ha="center", va="center", fontsize=9, weight="bold",
                        bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": color, "alpha": 0.85})
    model = store.manifest.model
    label = model.id if model.kind == "maest" else model.label + " — not MAEST"
    info = store.map_info(projection)
    method = info.method if info else projection
    ax.set_title(f"musicmap — {len(frame)} tracks, {method} map of {label}, coloured by {color_by}")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, markerscale=max(1.0, 30 / size),
              title=color_by)
    fig.tight_layout()
    fig.savefig(out, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    logger.info("wrote %s (%d points)", out, len(frame))
    return len(frame)


def export_projection(store: Store, path: str | Path, *, projection: str = "tsne") -> int:
    """Write the map's coordinates with display metadata as CSV; returns the number of rows."""
    frame = store.projection(projection)
    if frame.empty:
        raise StoreError(f"the store has no {projection!r} map yet; run `musicmap map --store {store.path}`")
    frame.rename(columns={"id": "track_id"}).to_csv(Path(path).expanduser(), index=False)
    return len(frame)
