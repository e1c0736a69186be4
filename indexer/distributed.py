"""Indexing on a Ray cluster (``musicmap index --engine ray``); its output is merged by ``musicmap ingest``.

    driver: scan ─> skip (unchanged in the store, or already in the shards)
      Ray Data: files ─> tags + decode (CPU tasks) ─> embed (actor pool, a GPU each when asked)
                ─> Parquet shards in a staging folder (a local path or any fsspec URL)
    ingest: shards ─> DuckDB (tracks, embeddings, windows, styles, failures) ─> FAISS

Each step runs the code the one-machine path runs (:func:`indexer.files.process_file` for
tags and decoding, :func:`indexer.embedders.base.embed_many` for the model), so both engines give
the same vectors (to float rounding). A file that fails is a shard row with its stage and reason,
and becomes a ``failures`` row on ingest. A shard file is complete or unreadable (Parquet writes
its footer last): an interrupted run leaves the files it finished, and the next run skips the
tracks they hold. The staging folder's format and ``ingest`` live in :mod:`indexer.shards`.

Ray is an optional dependency (``pip install musicmap[ray]``); it is imported only here, and only
when this engine is used.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from store import ModelInfo, Store, db_path, is_unchanged

from .embedders.base import Embedding, embed_many
from .errors import IndexerError
from .files import STREAM_SECONDS, Failed, init_worker, process_file
from .finite import check_finite
from .scan import fingerprint, scan
from .shards import EmbedderSpec, filesystem, latest_rows, prepare_staging, shard_schema

logger = logging.getLogger(__name__)

DECODE_BATCH = 4
"""Files per decode task."""
EMBED_MEMORY_MAEST = 2 << 30
EMBED_MEMORY_FEATURES = 256 << 20
"""Memory each embedding actor reserves from Ray (MAEST: weights, activations, a batch of audio)."""


# ---------------------------------------------------------------------------------------------
# The Ray stages (run in Ray workers: plain functions and one class, no closures over the driver)


def _decode_batch(batch: pa.Table, sr: int, stream_seconds: float | None) -> pa.Table:
    """Tags and audio for a batch of files (a CPU task). The audio travels as float32 bytes."""
    init_worker(None, sr, stream_seconds)
    out: dict[str, list[Any]] = {k: [] for k in ("path_bytes", "size", "mtime", "fingerprint", "tags", "audio",
                                                 "stream", "stage", "error")}
    for pb, size, mtime, fp in zip(*(batch.column(c).to_pylist() for c in ("path_bytes", "size", "mtime",
                                                                            "fingerprint")), strict=True):
        result = process_file(os.fsdecode(pb))
        out["path_bytes"].append(pb)
        out["size"].append(size)
        out["mtime"].append(mtime)
        out["fingerprint"].append(fp)
        if isinstance(result, Failed):
            out["tags"].append(None)
            out["audio"].append(None)
            out["stream"].append(False)
            out["stage"].append(result.stage)
            out["error"].append(result.reason)
            continue
        out["tags"].append(json.dumps(result.tags, default=str))
        out["audio"].append(None if result.audio is None else np.asarray(result.audio, np.float32).tobytes())
        out["stream"].append(bool(result.stream))
        out["stage"].append(None)
        out["error"].append(None)
    return pa.table({
        "path_bytes": pa.array(out["path_bytes"], pa.binary()), "size": pa.array(out["size"], pa.int64()),
        "mtime": pa.array(out["mtime"], pa.float64()), "fingerprint": pa.array(out["fingerprint"], pa.string()),
        "tags": pa.array(out["tags"], pa.string()), "audio": pa.array(out["audio"], pa.large_binary()),
        "stream": pa.array(out["stream"], pa.bool_()), "stage": pa.array(out["stage"], pa.string()),
        "error": pa.array(out["error"], pa.string()),
    })


class EmbedActor:
    """Holds the model (loaded once per actor) and embeds batches of decoded files."""

    def __init__(self, spec: EmbedderSpec, model_id: str, dimension: int) -> None:
        self.embedder = spec.load()
        if self.embedder.info.id != model_id or self.embedder.info.dimension != dimension:
            raise IndexerError(f"a worker loaded {self.embedder.info.id} ({self.embedder.info.dimension}-d), "
                               f"the driver {model_id} ({dimension}-d): is the model the same on every node?")
        self.schema = shard_schema(dimension)
        self.model_id = model_id

    def __call__(self, batch: pa.Table) -> pa.Table:
        from .decode import AudioSource

        rows = batch.to_pylist()
        results: list[Embedding | tuple[str, str]] = [("", "")] * len(rows)
        plain = [i for i, r in enumerate(rows) if r["stage"] is None and not r["stream"]]
        for i, r in enumerate(rows):
            if r["stage"] is not None:
                results[i] = (r["stage"], r["error"])
            elif r["stream"]:  # a long file: decoded here, window by window, as on one machine
                source = AudioSource(os.fsdecode(r["path_bytes"]), self.embedder.sample_rate, prefetch_depth=2)
                results[i] = self._guard(partial(self.embedder.embed_stream, source))
        audios = [np.frombuffer(rows[i]["audio"], dtype=np.float32) for i in plain]
        try:
            for i, e in zip(plain, embed_many(self.embedder, audios), strict=True):
                results[i] = e
        except Exception:  # find the culprit: one by one
            for i, audio in zip(plain, audios, strict=True):
                results[i] = self._guard(partial(self.embedder.embed, audio))
        return self._table(rows, [self._finite(r) for r in results])

    def _finite(self, result: Embedding | tuple[str, str]) -> Embedding | tuple[str, str]:
        """A non-finite embedding becomes a failed row (:mod:`indexer.finite`), as on one machine."""
        if isinstance(result, Embedding):
            return self._guard(partial(check_finite, result, self.embedder.info))
        return result

    @staticmethod
    def _guard(fn: Callable[[], Embedding]) -> Embedding | tuple[str, str]:
        from .errors import FileFailure

        try:
            return fn()
        except FileFailure as exc:
            return exc.stage, exc.reason
        except Exception as exc:
            return "embed", f"{type(exc).__name__}: {exc}"

    def _table(self, rows: list[dict[str, Any]], results: Sequence[Embedding | tuple[str, str]]) -> pa.Table:
        now = time.time()
        cols: dict[str, list[Any]] = {name: [] for name in self.schema.names}
        for r, res in zip(rows, results, strict=True):
            ok = isinstance(res, Embedding)
            cols["path"].append(db_path(os.fsdecode(r["path_bytes"])))
            for k in ("path_bytes", "size", "mtime", "fingerprint", "tags"):
                cols[k].append(r[k])
            cols["status"].append("ok" if ok else "failed")
            cols["stage"].append(None if ok else res[0])  # type: ignore[index]
            cols["error"].append(None if ok else res[1])  # type: ignore[index]
            if isinstance(res, Embedding):
                cols["vector"].append(np.asarray(res.vector, np.float32).ravel())
                cols["n_windows"].append(int(res.n_windows))
                cols["windows"].append(None if res.windows is None else np.asarray(res.windows, np.float32).ravel())
                cols["window_starts"].append([float(s) for s in res.window_starts])
                cols["style_labels"].append(list(res.styles))
                cols["style_values"].append([float(v) for v in res.styles.values()])
            else:
                for k in ("vector", "n_windows", "windows", "window_starts", "style_labels", "style_values"):
                    cols[k].append(None)
            cols["model"].append(self.model_id)
            cols["processed_at"].append(now)
        return pa.table({name: pa.array(cols[name], self.schema.field(name).type) for name in self.schema.names},
                        schema=self.schema)


# ---------------------------------------------------------------------------------------------
# The driver


@dataclass
class RayRun:
    """What ``index --engine ray`` did before ingest."""

    staging: str
    scanned: int = 0
    unchanged: int = 0
    """Skipped: in the store with the same size and mtime."""
    in_shards: int = 0
    """Skipped: the shards already hold them (same size and mtime)."""
    processed: int = 0
    failed: int = 0
    seconds: float = 0.0
    cluster: dict[str, Any] | None = None
    run_folder: str | None = None


def connect(address: str | None = None, num_cpus: int | None = None) -> dict[str, Any]:
    """Join the Ray cluster at ``address`` (None: start a local Ray, ``num_cpus`` CPUs) unless this
    process already has; returns its address, CPUs, GPUs and nodes.

    Raises
    ------
    IndexerError
        Ray is not installed, or the cluster cannot be reached.
    """
    try:
        import ray
    except ImportError:
        raise IndexerError("--engine ray needs Ray: pip install 'musicmap[ray]'") from None
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "configure_logging": False}
        if address:
            kwargs["address"] = address
        elif num_cpus:
            kwargs["num_cpus"] = num_cpus
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise IndexerError(f"cannot reach the Ray cluster at {address or 'a local Ray'}: {exc}") from None
    resources = ray.cluster_resources()
    return {"address": address or "local", "cpus": float(resources.get("CPU", 0)),
            "gpus": float(resources.get("GPU", 0)), "nodes": len(ray.nodes())}


def run_ray(roots: Sequence[str | Path], staging: str, spec: EmbedderSpec, info: ModelInfo, *,
            store_path: str | Path | None = None, ray_address: str | None = None, num_cpus: int | None = None,
            gpus_per_worker: float = 0.0, embed_workers: int | None = None,
            stream_seconds: float | None = STREAM_SECONDS, batch_size: int | None = None,
            progress: bool = False) -> RayRun:
    """Embed the audio under ``roots`` on Ray into Parquet shards under ``staging``.

    Skips files the store at ``store_path`` (when it exists) holds unchanged, and files the shards
    already hold (same size and mtime, embedded; failed ones are tried again). ``gpus_per_worker``
    (may be fractional): each embedding actor asks Ray for that many GPUs; 0 = CPU actors.

    Raises
    ------
    IndexerError
        Ray missing or unreachable, a staging folder of another model, no audio under ``roots``.
    """
    import ray
    import ray.data

    started = time.monotonic()
    prepare_staging(staging, info, spec)
    files = scan(roots)
    run = RayRun(staging=staging, scanned=len(files))
    known = {}
    if store_path is not None and (Path(store_path) / "manifest.json").is_file():
        with Store.open(store_path) as store:
            if store.manifest.model.id != info.id:
                raise IndexerError(f"store {store_path} holds vectors of {store.manifest.model.id}, not {info.id}")
            known = store.known_files()
    shards = latest_rows(staging)
    todo: list[dict[str, Any]] = []
    for f in files:
        path = str(f)
        try:
            st = f.stat()
        except OSError:
            st = None
        if st is not None and is_unchanged(known.get(path), st.st_size, st.st_mtime):
            run.unchanged += 1
            continue
        if st is not None and is_unchanged(shards.get(os.fsencode(path)), st.st_size, st.st_mtime):
            run.in_shards += 1
            continue
        try:
            fp = fingerprint(f, st.st_size) if st is not None else None
        except OSError:
            fp = None
        todo.append({"path_bytes": os.fsencode(path), "size": st.st_size if st else -1,
                     "mtime": st.st_mtime if st else 0.0, "fingerprint": fp})
    logger.info("%d files: %d unchanged in the store, %d already in the shards, %d to embed on Ray",
                len(files), run.unchanged, run.in_shards, len(todo))
    if not todo:
        run.seconds = round(time.monotonic() - started, 3)
        return run
    run.cluster = connect(ray_address, num_cpus)
    gpus = run.cluster["gpus"]
    if gpus_per_worker > 0 and gpus < gpus_per_worker:
        raise IndexerError(f"--gpus-per-worker {gpus_per_worker}: the Ray cluster has {gpus:g} GPUs")
    if embed_workers is None:
        embed_workers = int(gpus // gpus_per_worker) if gpus_per_worker > 0 else max(1, int(run.cluster["cpus"]) // 2)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress  # Ray Data's own bars: one per stage, rows and rate
    run_folder = f"run-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"
    fs, root = filesystem(staging)
    ds: Any = ray.data.from_items(todo, override_num_blocks=max(1, -(-len(todo) // DECODE_BATCH)))
    ds = ds.map_batches(_decode_batch, batch_size=DECODE_BATCH, batch_format="pyarrow", num_cpus=1,
                        fn_kwargs={"sr": info.sample_rate, "stream_seconds": stream_seconds})
    ds = ds.map_batches(EmbedActor, batch_size=max(1, batch_size or spec.batch_size), batch_format="pyarrow",
                        fn_constructor_kwargs={"spec": spec, "model_id": info.id, "dimension": info.dimension},
                        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, embed_workers)),
                        num_gpus=gpus_per_worker or None, num_cpus=0 if gpus_per_worker > 0 else 1,
                        # a model's worth of memory per actor; it also keeps Ray from fusing decoding
                        # into the actors (operators with equal resources are fused)
                        memory=EMBED_MEMORY_FEATURES if spec.model == "features" else EMBED_MEMORY_MAEST)
    try:
        ds.write_parquet(f"{root}/{run_folder}", filesystem=fs, min_rows_per_file=256)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a lost node, an actor that cannot load the model, a full staging disk...
        held = latest_rows(staging)
        done = sum(1 for item in todo if item["path_bytes"] in held)
        raise IndexerError(f"the Ray run stopped: {_root_cause(exc)}. {done} of {len(todo)} files are in complete "
                           f"shards under {staging}; run the same command again to continue from there") from exc
    written = latest_rows(staging)
    for item in todo:
        row = written.get(item["path_bytes"])
        run.processed += 1
        if row is None or row.status != "ok":
            run.failed += 1
    run.run_folder = f"{staging.rstrip('/')}/{run_folder}"
    run.seconds = round(time.monotonic() - started, 3)
    return run


def _root_cause(exc: BaseException) -> str:
    """The line of a Ray error that says what went wrong: Ray wraps a worker's exception in its
    own (ActorDiedError, RayTaskError) whose text ends with the original one."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    causes = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|Failure): ", line)]
    return (causes[-1] if causes else f"{type(exc).__name__}: {lines[0] if lines else ''}")[:500]
