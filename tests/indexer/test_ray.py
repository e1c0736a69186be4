"""``index --engine ray`` and ``ingest``: a real local Ray (``ray.init(num_cpus=2)``, started once for the
module: the CLI runs in this process join it), real files, real shards, real stores; the vectors must
equal the one-machine engine's."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import ray
import soundfile as sf

from indexer.distributed import run_ray
from indexer.embedders import load_embedder
from indexer.errors import IndexerError
from indexer.pipeline import index_library
from indexer.shards import EmbedderSpec, ingest, latest_rows, shard_files, staging_model
from store import Store, StoreError
from tests.conftest import make_tiny_maest, run_cli

pytestmark = pytest.mark.ray

SR = 16_000
STREAM_S = 4.0  # the 6-s file goes through the streaming path on both engines


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _library(root: Path) -> Path:
    """Five FLACs of different sounds named "Artist - Title" (one long enough to stream, one with
    a non-ASCII name) and a file that is not audio."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(5):
        seconds = 6.0 if i == 4 else 2.0
        t = np.arange(int(SR * seconds)) / SR
        y = 0.3 * np.sin(2 * np.pi * (200 + 150 * i) * t) + 0.02 * rng.standard_normal(len(t))
        name = "Sigur Rós - Hoppípolla.flac" if i == 3 else f"Artist {i} - Song {i}.flac"
        sf.write(root / name, y.astype(np.float32), SR)
    (root / "broken.mp3").write_text("not audio at all\n" * 100)
    return root


def _vectors_by_path(store: Path) -> dict[str, np.ndarray]:
    with Store.open(store) as s:
        ids, vectors = s.vectors()
        paths = dict(s.sql("SELECT id, path FROM tracks").rows)
    return {paths[int(i)]: v for i, v in zip(ids, vectors, strict=True)}


def _both_engines(tmp_path: Path, model: str, **options: object) -> tuple[Path, Path, Path]:
    lib = _library(tmp_path / "lib")
    local, distributed, staging = tmp_path / "local", tmp_path / "ray-store", tmp_path / "shards"
    embedder = load_embedder(model, device="cpu", batch_size=2, **options)
    index_library([lib], local, embedder, workers=1, stream_seconds=STREAM_S)
    spec = EmbedderSpec(model, device="cpu", batch_size=2, options=dict(options) or None)
    run = run_ray([lib], str(staging), spec, embedder.info, stream_seconds=STREAM_S)
    assert (run.scanned, run.processed, run.failed) == (6, 6, 1)
    assert run.cluster is not None and run.cluster["cpus"] == 2
    report = ingest(str(staging), distributed)
    assert (report.added, report.failed) == (5, 1)
    return lib, local, distributed


def test_features_same_vectors_tags_and_failures_on_both_engines(tmp_path: Path) -> None:
    lib, local, distributed = _both_engines(tmp_path, "features")
    ours, theirs = _vectors_by_path(local), _vectors_by_path(distributed)
    assert sorted(ours) == sorted(theirs) and len(ours) == 5
    assert any("Hoppípolla" in p for p in ours)
    for path in ours:
        assert np.abs(ours[path] - theirs[path]).max() <= 1e-5, path
    with Store.open(local) as a, Store.open(distributed) as b:
        cols = "path, title, artist, album, genre, duration, format, tag_source, size, mtime, fingerprint"
        assert a.sql(f"SELECT {cols} FROM tracks ORDER BY path").rows == \
            b.sql(f"SELECT {cols} FROM tracks ORDER BY path").rows
        fa, fb = a.failures(), b.failures()
        assert fa["path"].tolist() == fb["path"].tolist() == [str(lib / "broken.mp3")]
        assert fa["stage"].tolist() == fb["stage"].tolist()
        assert b.manifest.model == a.manifest.model
        assert b.manifest.index["type"] == "flat"
        # ingest tags as the local engine does: the same words for the same files
        q = ("SELECT t.path, s.tagger, s.label, s.activation FROM sound_tags s JOIN tracks t ON t.id = s.track_id "
             "ORDER BY 1, 2, 3")
        ta, tb = a.sql(q).rows, b.sql(q).rows
        assert len(ta) == len(tb) == 5 * 100
        assert all(x[:3] == y[:3] and abs(x[3] - y[3]) <= 1e-4 for x, y in zip(ta, tb, strict=True))


def test_ingest_leaves_tracks_it_cannot_read_for_a_later_run(tmp_path: Path) -> None:
    """The Ray workers read files that the ingesting machine may not: such tracks are stored with
    their vectors, counted as unreachable, and tagged by the next ingest that can read them."""
    lib = _library(tmp_path / "lib")
    staging, store = tmp_path / "shards", tmp_path / "store"
    spec = EmbedderSpec("features")
    run_ray([lib], str(staging), spec, spec.load().info)
    away = lib.rename(tmp_path / "elsewhere")
    report = ingest(str(staging), store)
    assert report.added == 5 and report.tags is not None
    assert (report.tags["unreachable"], report.tags["tagged"], report.tags["failed"]) == (5, 0, 0)
    with Store.open(store) as s:
        assert s.count("sound_tags") == 0 and s.count("embeddings") == 5
    away.rename(lib)
    again = ingest(str(staging), store)
    assert again.unchanged == 5 and again.tags is not None
    assert (again.tags["tagged"], again.tags["unreachable"]) == (5, 0)
    with Store.open(store) as s:
        assert s.sql("SELECT count(DISTINCT track_id), count(DISTINCT tagger) FROM sound_tags").rows == [(5, 2)]


@pytest.fixture(scope="module")
def tiny_maest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_maest(tmp_path_factory.mktemp("models") / "tiny-maest",
                           ["Electronic---Techno", "Jazz---Bop", "Rock---Noise"])


def test_maest_same_vectors_windows_and_styles_on_both_engines(tmp_path: Path, tiny_maest: Path) -> None:
    _, local, distributed = _both_engines(tmp_path, str(tiny_maest), keep_windows=True)
    ours, theirs = _vectors_by_path(local), _vectors_by_path(distributed)
    assert sorted(ours) == sorted(theirs) and len(ours) == 5
    worst = max(float(np.abs(ours[p] - theirs[p]).max()) for p in ours)
    assert worst <= 1e-5
    with Store.open(local) as a, Store.open(distributed) as b:
        assert b.manifest.model.kind == "maest" and b.manifest.model == a.manifest.model
        q = ("SELECT t.path, s.label, s.activation FROM styles s JOIN tracks t ON t.id = s.track_id "
             "ORDER BY t.path, s.label")
        sa, sb = a.sql(q).rows, b.sql(q).rows
        assert len(sa) == len(sb) == 15
        assert all(x[:2] == y[:2] and abs(x[2] - y[2]) <= 1e-5 for x, y in zip(sa, sb, strict=True))
        w = "SELECT t.path, w.window_index, w.start_s FROM windows w JOIN tracks t ON t.id = w.track_id ORDER BY 1, 2"
        assert a.sql(w).rows == b.sql(w).rows
        assert len({r[0] for r in b.sql(w).rows}) == 5
        genres = b.sql("SELECT genre, tag_source FROM tracks").rows
        assert all(g in ("Electronic", "Jazz", "Rock") and "predicted" in src for g, src in genres)


def test_rerun_skips_what_the_shards_hold_and_ingest_twice_changes_nothing(tmp_path: Path) -> None:
    lib = _library(tmp_path / "lib")
    staging, store = tmp_path / "shards", tmp_path / "store"
    spec = EmbedderSpec("features")
    info = spec.load().info
    first = run_ray([lib], str(staging), spec, info)
    assert (first.processed, first.failed, first.in_shards) == (6, 1, 0)
    again = run_ray([lib], str(staging), spec, info)
    # the embedded files are skipped; the failed one is tried again (as on one machine)
    assert (again.in_shards, again.processed, again.failed) == (5, 1, 1)
    report = ingest(str(staging), store, tags=False)
    assert (report.added, report.failed, report.unchanged) == (5, 1, 0)
    twice = ingest(str(staging), store, tags=False)
    assert (twice.added, twice.updated, twice.unchanged, twice.failed) == (0, 0, 5, 1)
    with Store.open(store) as s:
        assert s.count("tracks") == 5 and s.count("embeddings") == 5
        assert s.sql("SELECT count(*) FROM (SELECT path FROM tracks GROUP BY path HAVING count(*) > 1)").rows == [(0,)]

    # A changed file is embedded again; with --store, files the store holds unchanged are skipped.
    y = 0.3 * np.sign(np.sin(2 * np.pi * 90 * np.arange(SR * 2) / SR)).astype(np.float32)
    sf.write(lib / "Artist 0 - Song 0.flac", y, SR)
    shutil.copy(lib / "Artist 1 - Song 1.flac", lib / "Artist 9 - Song 9.flac")
    third = run_ray([lib], str(staging), spec, info, store_path=store)
    assert (third.unchanged, third.in_shards, third.processed) == (4, 0, 3)  # changed, new, broken
    with Store.open(store) as s:
        before = s.vectors()[1][0].copy()
    report = ingest(str(staging), store)
    assert (report.added, report.updated, report.unchanged) == (1, 1, 4)
    with Store.open(store) as s:
        assert s.count("tracks") == 6
        changed = s.track_id_for_path(str(lib / "Artist 0 - Song 0.flac"))
        ids, vectors = s.vectors()
        assert not np.allclose(vectors[list(ids).index(changed)], before)


def test_an_unreadable_shard_is_skipped_and_its_files_done_again(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    lib = _library(tmp_path / "lib")
    staging = tmp_path / "shards"
    spec = EmbedderSpec("features")
    info = spec.load().info
    run_ray([lib], str(staging), spec, info)
    files = shard_files(str(staging))
    assert files and all(f.endswith(".parquet") for f in files)
    total = sum(pq.read_metadata(f).num_rows for f in files)
    assert total == 6
    # a shard cut short, as a killed writer would leave it: no footer
    victim = Path(files[0])
    lost = pq.read_metadata(victim).num_rows
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    assert len(latest_rows(str(staging))) == 6 - lost
    assert "unreadable" in caplog.text
    again = run_ray([lib], str(staging), spec, info)
    assert again.processed >= lost
    report = ingest(str(staging), tmp_path / "store")
    assert (report.added, report.failed) == (5, 1)


def test_fsspec_url_staging(tmp_path: Path) -> None:
    """A staging URL goes through fsspec (``local://`` here; ``s3://`` etc. the same way)."""
    lib = _library(tmp_path / "lib")
    url = f"local://{tmp_path / 'remote-shards'}"
    spec = EmbedderSpec("features")
    run = run_ray([lib], url, spec, spec.load().info)
    assert run.processed == 6
    assert staging_model(url).id == "features-v1"
    report = ingest(url, tmp_path / "store")
    assert report.added == 5
    assert list((tmp_path / "remote-shards").glob("run-*/*.parquet"))


def test_bad_shard_folders_and_models_are_clear_errors(tmp_path: Path, tiny_maest: Path) -> None:
    lib = _library(tmp_path / "lib")
    with pytest.raises(IndexerError, match="not a musicmap shard folder"):
        ingest(str(tmp_path), tmp_path / "store")
    staging = tmp_path / "shards"
    spec = EmbedderSpec("features")
    run_ray([lib], str(staging), spec, spec.load().info)
    maest = EmbedderSpec(str(tiny_maest), device="cpu")
    with pytest.raises(IndexerError, match="shards of another model"):
        run_ray([lib], str(staging), maest, maest.load().info)
    # a store of another model refuses the shards, naming the field
    other = tmp_path / "maest-store"
    index_library([lib], other, maest.load(), workers=1)
    with pytest.raises(StoreError, match="model"):
        ingest(str(staging), other)
    with pytest.raises(IndexerError, match="holds vectors of"):
        run_ray([lib], str(staging), spec, spec.load().info, store_path=other)
    with pytest.raises(IndexerError, match="GPUs"):
        run_ray([lib], str(tmp_path / "fresh"), spec, spec.load().info, gpus_per_worker=1)


def test_a_run_that_cannot_finish_says_what_is_kept(tmp_path: Path) -> None:
    """Workers that cannot embed (here: they load another model than the driver checked) stop the
    run with a clear error, not a hang or a traceback."""
    lib = _library(tmp_path / "lib")
    spec = EmbedderSpec("features")
    info = replace(spec.load().info, id="features-v0")
    with pytest.raises(IndexerError, match=r"the Ray run stopped: .*IndexerError: a worker loaded features-v1 .*"
                                           r"the driver features-v0.* 0 of 6 files .* run the same command again"):
        run_ray([lib], str(tmp_path / "shards"), spec, info)


def test_cli_engine_ray_then_ingest(tmp_path: Path) -> None:
    lib = _library(tmp_path / "lib")
    store, staging = tmp_path / "store", tmp_path / "shards"
    # The console's own process, which starts a local Ray of its own; the other CLI runs here are in this
    # process and join the module's Ray (indexer.distributed.connect), as they would a cluster.
    proc = run_cli("index", lib, "--store", store, "--model", "features", "--engine", "ray", "--staging", staging,
                   "--shards-only", "--json", timeout=600, process=True)
    assert proc.returncode == 3, proc.stderr  # shards written; one file failed
    out = json.loads(proc.stdout)["ray"]
    assert (out["processed"], out["failed"]) == (6, 1)
    assert not (store / "manifest.json").exists()
    proc = run_cli("ingest", staging, "--store", store, "--json", "--no-map")
    assert proc.returncode == 3, proc.stderr
    report = json.loads(proc.stdout)
    assert (report["added"], report["failed"]) == (5, 1)
    # the whole thing in one command, into the store's own shards/ folder: nothing left to do
    proc = run_cli("index", lib, "--store", store, "--model", "features", "--engine", "ray", "--json", timeout=600)
    assert proc.returncode == 3, proc.stderr
    both = json.loads(proc.stdout)
    assert both["ray"]["unchanged"] == 5 and both["ingest"]["failed"] == 1
    assert (store / "shards" / "musicmap-shards.json").is_file()
    info = run_cli("info", "--store", store, check=True).stdout
    assert "tracks     5" in info


def test_cli_engine_ray_into_a_new_store_an_existing_one_and_a_folder_of_shards(tmp_path: Path) -> None:
    """The default staging folder is the store's own shards/: a new store folder, a store that
    exists, and a folder holding only the shards of an earlier --shards-only run all work."""
    lib = _library(tmp_path / "lib")
    new = tmp_path / "new-store"
    proc = run_cli("index", lib, "--store", new, "--model", "features", "--engine", "ray", "--json", timeout=600)
    assert proc.returncode == 3, proc.stderr  # one file is not audio
    first = json.loads(proc.stdout)
    assert (first["ray"]["processed"], first["ingest"]["added"], first["ingest"]["failed"]) == (6, 5, 1)
    proc = run_cli("index", lib, "--store", new, "--model", "features", "--engine", "ray", "--json", timeout=600)
    assert proc.returncode == 3, proc.stderr
    again = json.loads(proc.stdout)
    assert again["ray"]["unchanged"] == 5 and again["ingest"]["added"] == 0

    only_shards = tmp_path / "shards-first"
    proc = run_cli("index", lib, "--store", only_shards, "--model", "features", "--engine", "ray", "--shards-only",
                   timeout=600)
    assert proc.returncode == 3, proc.stderr
    assert sorted(p.name for p in only_shards.iterdir()) == ["shards"]
    proc = run_cli("index", lib, "--store", only_shards, "--model", "features", "--engine", "ray", "--json",
                   timeout=600)
    assert proc.returncode == 3, proc.stderr
    done = json.loads(proc.stdout)
    assert done["ray"]["in_shards"] == 5 and done["ray"]["processed"] == 1  # only the failed file is tried again
    assert done["ingest"]["added"] == 5
    with Store.open(only_shards) as store:
        assert store.count("tracks") == 5 and store.index.ntotal == 5

    foreign = tmp_path / "my-documents"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    proc = run_cli("index", lib, "--store", foreign, "--model", "features", "--engine", "ray", timeout=600)
    assert proc.returncode == 1 and "other files in it (notes.txt)" in proc.stderr, proc.stderr
    assert "embedded on Ray" not in proc.stdout and sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


def test_cli_ray_flags_need_the_ray_engine(tmp_path: Path) -> None:
    lib = _library(tmp_path / "lib")
    for flags in (["--staging", str(tmp_path / "s")], ["--shards-only"], ["--gpus-per-worker", "1"]):
        proc = run_cli("index", lib, "--store", tmp_path / "store", "--model", "features", *flags)
        assert proc.returncode == 1 and "is for --engine ray" in proc.stderr
    proc = run_cli("index", lib, "--store", tmp_path / "store", "--model", "features", "--engine", "ray", "--prune")
    assert proc.returncode == 1 and "--prune is for the local engine" in proc.stderr
    proc = run_cli("ingest", tmp_path / "nothing-here", "--store", tmp_path / "store")
    assert proc.returncode == 1 and "not a musicmap shard folder" in proc.stderr
    assert not os.path.exists(tmp_path / "store" / "manifest.json")


def test_nan_vectors_are_failures_on_ray_and_on_ingest(tmp_path: Path) -> None:
    """A model that gives NaN (a tiny MAEST with a NaN weight) makes failed shard rows, not tracks;
    and a shard row an older run wrote with a NaN vector is a failure on ingest, not a track."""
    import torch
    from transformers import ASTForAudioClassification

    lib = _library(tmp_path / "lib")
    folder = make_tiny_maest(tmp_path / "nan-maest", ["Electronic---Techno", "Jazz---Bop"])
    damaged = ASTForAudioClassification.from_pretrained(folder)
    with torch.no_grad():
        damaged.audio_spectrogram_transformer.embeddings.cls_token[0, 0, 3] = float("nan")
    damaged.save_pretrained(folder)
    spec = EmbedderSpec(str(folder), device="cpu", batch_size=2, options={"precision": "fp32"})
    run = run_ray([lib], str(tmp_path / "nan-shards"), spec, spec.load().info, stream_seconds=STREAM_S)
    assert (run.processed, run.failed) == (6, 6)
    report = ingest(str(tmp_path / "nan-shards"), tmp_path / "nan-store", tags=False)
    assert (report.added, report.failed) == (0, 6)
    reasons = {Path(f["path"]).name: f["error"] for f in report.failures}
    assert reasons["Artist 0 - Song 0.flac"].startswith("the model gave a non-finite (NaN) track vector")

    staging = tmp_path / "shards"  # features, then one row's vector made NaN, as before the check
    spec = EmbedderSpec("features")
    run_ray([lib], str(staging), spec, spec.load().info)
    shard = next(f for f in shard_files(str(staging)) if "ok" in pq.read_table(f).column("status").to_pylist())
    table = pq.read_table(shard)
    rows = table.to_pylist()
    victim = next(i for i, r in enumerate(rows) if r["status"] == "ok")
    rows[victim]["vector"] = [float("nan")] * len(rows[victim]["vector"])
    pq.write_table(type(table).from_pylist(rows, schema=table.schema), shard)
    report = ingest(str(staging), tmp_path / "store")
    assert (report.added, report.failed) == (4, 2)  # the broken file and the NaN row
    failed = {f["path"]: f["error"] for f in report.failures}
    assert failed[os.fsdecode(rows[victim]["path_bytes"])].startswith(
        "the model gave a non-finite (NaN) track vector for this file")
    with Store.open(tmp_path / "store") as s:
        assert s.count("embeddings") == 4 and np.all(np.isfinite(s.vectors()[1]))
