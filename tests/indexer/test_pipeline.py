"""The index pipeline: incremental, failures recorded and retried, MAEST end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from indexer.embedders import FeaturesEmbedder, load_embedder
from indexer.pipeline import index_library
from store import Store, StoreError
from tests.audio import write_tone
from tests.conftest import run_cli


def _library(root: Path, n: int = 5) -> Path:
    root.mkdir(parents=True)
    for i in range(n):
        write_tone(root / f"Artist {i} - Song {i}.flac", 2.0, 200 + 150 * i, seed=i)
    return root


def test_bad_file_never_stops_a_run_and_is_retried(tmp_path: Path) -> None:
    lib = _library(tmp_path / "lib")
    (lib / "broken.mp3").write_text("not audio at all\n" * 100)
    store = tmp_path / "store"
    report = index_library([lib], store, FeaturesEmbedder(), workers=1, tags=False)  # tags: test_tagger.py
    assert (report.added, report.failed) == (5, 1)
    assert report.failures[0]["path"].endswith("broken.mp3") and report.failures[0]["stage"] == "decode"
    with Store.open(store) as s:
        assert s.failures()["path"].str.endswith("broken.mp3").all()
    shutil.copy(lib / "Artist 0 - Song 0.flac", lib / "broken.mp3.flac")
    (lib / "broken.mp3").unlink()
    sf.write(lib / "broken.mp3", np.zeros(16_000, np.float32), 16_000, format="MP3")  # repaired
    report = index_library([lib], store, FeaturesEmbedder(), workers=2, tags=False)
    assert (report.added, report.unchanged, report.failed) == (2, 5, 0)
    with Store.open(store) as s:
        assert s.count("failures") == 0 and s.count("tracks") == 7


def test_changed_file_is_reembedded_with_the_same_id(tmp_path: Path) -> None:
    lib = _library(tmp_path / "lib")
    store = tmp_path / "store"
    index_library([lib], store, FeaturesEmbedder(), tags=False)
    with Store.open(store) as s:
        before_ids, before = s.vectors()
        target = s.track_id_for_path(lib / "Artist 2 - Song 2.flac")
    noise = np.random.default_rng(1).standard_normal(16_000 * 3).astype(np.float32) * 0.3
    sf.write(lib / "Artist 2 - Song 2.flac", noise, 16_000)
    report = index_library([lib], store, FeaturesEmbedder(), tags=False)
    assert (report.updated, report.unchanged, report.added) == (1, 4, 0)
    with Store.open(store) as s:
        ids, after = s.vectors()
        assert ids.tolist() == before_ids.tolist()
        row = ids.tolist().index(target)
        assert not np.allclose(before[row], after[row])
        assert s.track(target)["artist"] == "Artist 2"


def test_maest_index_through_the_cli_and_model_guard(tmp_path: Path) -> None:
    from transformers import ASTConfig, ASTForAudioClassification

    config = ASTConfig(hidden_size=32, num_hidden_layers=8, num_attention_heads=2, intermediate_size=64,
                       patch_size=16, frequency_stride=10, time_stride=10, num_mel_bins=96, max_length=66,
                       num_labels=3, id2label={0: "Jazz---Bop", 1: "Rock---Punk", 2: "Electronic---House"},
                       label2id={"Jazz---Bop": 0, "Rock---Punk": 1, "Electronic---House": 2})
    model_dir = tmp_path / "tiny-maest"
    ASTForAudioClassification(config).save_pretrained(model_dir)
    lib = _library(tmp_path / "lib", n=4)
    store = tmp_path / "store"
    proc = run_cli("index", lib, "--store", store, "--model", model_dir, "--json", "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["added"] == 4
    # the tag stage beside a MAEST model (the other tests here index with tags=False: test_tagger.py)
    assert report["tags"]["taggers"] == ["musicnn-mtt", "musicnn-msd"] and report["tags"]["tagged"] == 4
    with Store.open(store) as s:
        assert s.manifest.model.kind == "maest" and s.manifest.model.dimension == 96
        styles = s.sql("SELECT count(DISTINCT track_id), count(*) FROM styles").rows[0]
        assert styles == (4, 12)
        windows = s.sql("SELECT count(DISTINCT track_id), sum(CASE WHEN start_s >= 0 THEN 1 END) FROM windows")
        assert windows.rows[0][0] == 4 and windows.rows[0][1] >= 4
        # Untagged files get the genre of their top predicted style, marked as predicted.
        genres = s.sql("SELECT genre, tag_source FROM tracks").rows
        assert all(g in ("Jazz", "Rock", "Electronic") and "predicted" in src for g, src in genres)
    manifest = json.loads((store / "manifest.json").read_text())
    assert manifest["model"]["layer"] == "hidden_states[7]" and manifest["counts"]["embeddings"] == 4
    # The map can be coloured by the top predicted style's genre.
    run_cli("map", "--store", store, check=True)
    with Store.open(store) as s:
        assert set(s.projection()["style"]) <= {"Jazz", "Rock", "Electronic"}
    run_cli("export", "--store", store, "--plot", tmp_path / "styles.png", "--color-by", "style", check=True)
    proc = run_cli("index", lib, "--store", store, "--model", "features")
    assert proc.returncode == 1 and "model.id=" in proc.stderr and "Traceback" not in proc.stderr
    with pytest.raises(StoreError):
        index_library([lib], store, FeaturesEmbedder())
    emb = load_embedder(str(model_dir), device="cpu")
    assert emb.info.id == "tiny-maest"


def test_a_run_ends_with_its_map_and_time_and_a_failed_one_leaves_the_map(tmp_path: Path) -> None:
    """The run's tail (``IndexRun.open``, the same for ``index`` and ``ingest``): after an ok run the
    map is brought up to date and the run timed; a run that fails leaves the map as it was, closes
    the store and raises its own error."""
    from indexer.run import IndexReport, IndexRun

    lib = _library(tmp_path / "lib")
    store = tmp_path / "store"
    report = index_library([lib], store, FeaturesEmbedder(), map_name="tsne", tags=False)
    assert report.status == "ok" and report.map is not None
    assert (report.map["name"], report.map["n_tracks"]) == ("tsne", 5)
    assert report.durations["total"] >= report.durations["map"] >= 0
    with Store.open(store) as s:
        assert len(s.projection("tsne")) == 5
    write_tone(lib / "new.flac", 2.0, 990.0, seed=9)
    failing = IndexReport(store=str(store), model="features")
    opened = Store.open_for_indexing(store, FeaturesEmbedder().info)
    with pytest.raises(OSError, match="disk full"), \
            IndexRun.open(opened, failing, [str(lib)], map_name="tsne") as run:
        run.finish("error")
        raise OSError("disk full")
    assert failing.map is None and "total" not in failing.durations
    report = index_library([lib], store, FeaturesEmbedder(), map_name="tsne", tags=False)  # the next run places it
    assert report.added == 1 and report.map is not None and report.map["n_tracks"] == 6
    with Store.open(store) as s:
        assert len(s.projection("tsne")) == 6
