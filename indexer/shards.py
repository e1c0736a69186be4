"""Parquet shards: what an index run on Ray (or any other engine) hands to ``musicmap ingest``.

A staging folder (a local path or any fsspec URL) holds one folder of Parquet files per run and a
manifest naming the model (a re-run must match it)::

    STAGING/musicmap-shards.json    the model (ModelInfo) and how to load it (EmbedderSpec)
    STAGING/run-<time>-<id>/*.parquet    one row per file (:func:`shard_schema`): a success or a failure

A shard file is complete or unreadable (Parquet writes its footer last): an interrupted run leaves
the files it finished, and the next run skips the tracks they hold (:func:`latest_rows`).
:func:`ingest` merges the newest row of every file into a store, through the same
:class:`indexer.run.IndexRun` bookkeeping the local engine uses. Nothing here imports Ray.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from store import ModelInfo, Store, TrackRecord, is_unchanged

from .errors import IndexerError
from .metadata import CATEGORY_SOURCES, apply_metadata, fill_genre, read_metadata
from .run import IndexReport, IndexRun, ProgressFn
from .tagger import MAX_PATCHES, tag_store

logger = logging.getLogger(__name__)

SHARDS_MANIFEST = "musicmap-shards.json"
SHARD_FORMAT = 1


def shard_schema(dimension: int) -> pa.Schema:
    """The columns of a shard file: one row per file, a success or a failure."""
    return pa.schema([
        ("path", pa.string()),  # as the store shows it (undecodable bytes as \\xNN)
        ("path_bytes", pa.binary()),  # the file system's own bytes: what ingest uses
        ("size", pa.int64()),
        ("mtime", pa.float64()),
        ("fingerprint", pa.string()),
        ("status", pa.string()),  # "ok" or "failed"
        ("stage", pa.string()),
        ("error", pa.string()),
        ("tags", pa.string()),  # JSON
        ("vector", pa.list_(pa.float32(), dimension)),
        ("n_windows", pa.int32()),
        ("windows", pa.list_(pa.float32())),  # n_windows × dimension, row-major; null when not kept
        ("window_starts", pa.list_(pa.float64())),
        ("style_labels", pa.list_(pa.string())),
        ("style_values", pa.list_(pa.float32())),
        ("model", pa.string()),
        ("processed_at", pa.float64()),
    ])


@dataclass(frozen=True)
class EmbedderSpec:
    """How every actor loads the same model the driver checked (``load_embedder``'s arguments)."""

    model: str
    device: str = "auto"
    batch_size: int = 4
    options: dict[str, Any] | None = None

    def load(self) -> Any:
        from .embedders import load_embedder

        return load_embedder(self.model, device=self.device, batch_size=self.batch_size, **(self.options or {}))


# ---------------------------------------------------------------------------------------------
# The staging folder (local or fsspec)


def filesystem(url: str) -> tuple[Any, str]:
    """A pyarrow file system and the path inside it for a local folder or an fsspec URL."""
    import pyarrow.fs as pafs

    if "://" not in url or url.startswith("file://"):
        local = url[len("file://"):] if url.startswith("file://") else url
        return pafs.LocalFileSystem(), str(Path(local).expanduser().resolve())
    try:
        import fsspec
    except ImportError:
        raise IndexerError(f"staging {url}: URLs need fsspec (pip install 'musicmap[ray]')") from None
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise IndexerError(f"staging {url}: {exc}") from None
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), str(path)


def _read_json(fs: Any, path: str) -> dict[str, Any] | None:
    import pyarrow.fs as pafs

    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as fh:
        data = json.loads(fh.read().decode("utf-8"))
    return data if isinstance(data, dict) else None


def prepare_staging(url: str, info: ModelInfo, spec: EmbedderSpec) -> None:
    """Create the staging folder, or check that the shards already there are of the same model."""
    fs, root = filesystem(url)
    fs.create_dir(root, recursive=True)
    path = f"{root}/{SHARDS_MANIFEST}"
    existing = _read_json(fs, path)
    if existing is not None:
        have = existing.get("model", {})
        for key in ("id", "dimension", "layer", "pooling", "revision"):
            if have.get(key) != getattr(info, key):
                raise IndexerError(f"staging {url} holds shards of another model ({key}: {have.get(key)!r}, "
                                   f"now {getattr(info, key)!r}); use another --staging folder")
        return
    manifest = {"format": "musicmap-shards", "format_version": SHARD_FORMAT, "model": asdict(info),
                "embedder": asdict(spec), "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with fs.open_output_stream(path) as fh:
        fh.write(json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8"))


def staging_model(url: str) -> ModelInfo:
    """The model the shards under ``url`` were made with."""
    fs, root = filesystem(url)
    manifest = _read_json(fs, f"{root}/{SHARDS_MANIFEST}")
    if manifest is None or manifest.get("format") != "musicmap-shards":
        raise IndexerError(f"{url} is not a musicmap shard folder (no {SHARDS_MANIFEST}); make one with "
                           "musicmap index --engine ray --staging ...")
    if int(manifest.get("format_version", 0)) > SHARD_FORMAT:
        raise IndexerError(f"{url}: shard format {manifest['format_version']} is newer than this musicmap "
                           f"reads ({SHARD_FORMAT}); upgrade musicmap")
    return ModelInfo(**manifest["model"])


def shard_files(url: str) -> list[str]:
    """Every ``.parquet`` file under the staging folder, oldest run first."""
    import pyarrow.fs as pafs

    fs, root = filesystem(url)
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    return sorted(i.path for i in infos if i.type == pafs.FileType.File and i.path.endswith(".parquet"))


def _readable(fs: Any, path: str, columns: Sequence[str] | None = None) -> pa.Table | None:
    """A shard file's table, or None (with a warning) when it is incomplete or not a shard."""
    try:
        return pq.read_table(path, filesystem=fs, columns=list(columns) if columns else None)
    except (OSError, pa.ArrowInvalid, KeyError) as exc:
        logger.warning("skipping shard %s: unreadable (%s); its files are indexed again on the next run",
                       path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return None


class LatestRow(NamedTuple):
    """A file's newest row in the shards (:func:`latest_rows`)."""

    processed_at: float
    shard: str
    """The shard file that holds the row."""
    row: int
    """The row's index in that file."""
    size: int
    mtime: float
    status: str
    """``ok`` or ``failed``."""

    @property
    def has_vector(self) -> bool:
        """The file was embedded (for :func:`store.is_unchanged`: the shards hold it unchanged)."""
        return self.status == "ok"


def latest_rows(url: str) -> dict[bytes, LatestRow]:
    """For each file (its path bytes): its newest shard row."""
    fs, _ = filesystem(url)
    latest: dict[bytes, LatestRow] = {}
    for f in shard_files(url):
        t = _readable(fs, f, ["path_bytes", "processed_at", "size", "mtime", "status"])
        if t is None:
            continue
        cols = [t.column(c).to_pylist() for c in ("path_bytes", "processed_at", "size", "mtime", "status")]
        for row, (pb, at, size, mtime, status) in enumerate(zip(*cols, strict=True)):
            seen = latest.get(pb)
            if seen is None or at >= seen.processed_at:
                latest[pb] = LatestRow(float(at), f, row, int(size), float(mtime), str(status))
    return latest


# ---------------------------------------------------------------------------------------------
# Ingest


def _records(url: str, latest: dict[bytes, LatestRow]) -> Iterator[dict[str, Any]]:
    """The newest shard row of every file (``latest``: :func:`latest_rows`), one shard file in
    memory at a time."""
    fs, _ = filesystem(url)
    chosen: dict[str, set[int]] = {}
    for held in latest.values():
        chosen.setdefault(held.shard, set()).add(held.row)
    for f in sorted(chosen):
        table = _readable(fs, f)
        if table is not None:
            yield from table.take(pa.array(sorted(chosen[f]), pa.int64())).to_pylist()


def ingest(shards: str, store_path: str | Path, *, commit_every: int = 256, metadata: str | Path | None = None,
           category_from: str = "tag", index_kind: str = "auto", map_name: str | None = None,
           progress: ProgressFn | None = None, tags: bool = True, tag_patches: int = MAX_PATCHES,
           workers: int = 1) -> IndexReport:
    """Merge the shards under ``shards`` into the store at ``store_path`` (created if missing) and
    build its FAISS index (``index_kind``: ``auto`` picks by size; see :mod:`store.vectors`).

    A file the store already holds with the same size and mtime and a vector is left alone
    (ingesting twice changes nothing); failed rows become ``failures`` rows. With ``tags``, the
    tracks without sound tags whose files this machine can read get them, as at the end of an
    index run (:func:`indexer.tagger.tag_store`, decoding with ``workers`` processes).
    """
    started = time.monotonic()
    if category_from not in CATEGORY_SOURCES:
        raise IndexerError(f"--category-from {category_from!r}: choose one of {', '.join(CATEGORY_SOURCES)}")
    if tags and tag_patches < 1:
        raise IndexerError(f"--tag-patches {tag_patches}: give 1 or more")
    rows_meta = read_metadata(metadata) if metadata is not None else None
    info = staging_model(shards)
    store = Store.open_for_indexing(store_path, info)
    store.index_kind = index_kind
    report = IndexReport(store=str(store.path), model=info.id)
    with IndexRun.open(store, report, [shards], settings=info.extra.get("options"), commit_every=commit_every,
                       started=started, map_name=map_name) as run:
        known = store.known_files()
        status = "error"
        latest = latest_rows(shards)
        try:
            for done, row in enumerate(_records(shards, latest), start=1):
                path = os.fsdecode(row["path_bytes"])
                report.scanned += 1
                if progress is not None:
                    progress(done, len(latest), path, report.audio_seconds)
                if row["status"] != "ok":
                    run.fail(path, str(row["stage"]), str(row["error"]), log=False)
                    continue
                seen = known.get(path)
                if is_unchanged(seen, row["size"], row["mtime"]):
                    report.unchanged += 1
                    continue
                file_tags = json.loads(row["tags"]) if row["tags"] else {}
                styles = dict(zip(row["style_labels"] or [], row["style_values"] or [], strict=True))
                d = info.dimension
                windows = None if row["windows"] is None else np.asarray(row["windows"], np.float32).reshape(-1, d)
                vector = np.asarray(row["vector"], np.float32)
                # shards written before the actors checked it may hold a NaN vector: a failure (IndexRun.add)
                added = run.add(TrackRecord(
                    path=path, size=int(row["size"]), mtime=float(row["mtime"]),
                    tags=fill_genre(apply_metadata(file_tags, path, rows=rows_meta, category_from=category_from),
                                    styles, info.extra.get("genre_labels")),
                    fingerprint=row["fingerprint"], vector=vector,
                    n_windows=int(row["n_windows"] or 1), styles=styles, windows=windows,
                    window_starts=list(row["window_starts"] or []),
                ), updated=seen is not None)
                if added:
                    report.audio_seconds += float(file_tags.get("duration") or 0.0)
            run.flush()
            if tags:
                tagged = tag_store(store, own_model=info.id, workers=workers, commit_every=commit_every,
                                   max_patches=tag_patches)
                report.tags = asdict(tagged)
                report.durations["tags"] = tagged.seconds
            status = "ok"
        except KeyboardInterrupt:  # what was committed stays; ingesting again goes on from there
            status = "interrupted"
            raise
        finally:
            run.finish(status)
    return report
