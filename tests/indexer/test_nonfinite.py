"""A model's NaN never becomes a stored track, and FAISS says only what happened (issue #29, §4).

- a model that gives NaN (a tiny MAEST with one weight set to NaN: a damaged checkpoint) makes
  every file a recorded failure, stores nothing, and leaves a store FAISS loads as it is;
- a store an older musicmap wrote a NaN vector into loads without a rebuild on every open, and the
  next ``index`` run embeds that file again;
- an incremental run that adds files says it added them, and nothing about stale or rebuilt indexes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import duckdb
import numpy as np
import pytest

from indexer.embedders.base import Embedding
from indexer.errors import FileFailure
from indexer.finite import check_finite
from store import ModelInfo, Store, freshness
from tests.audio import write_tone
from tests.conftest import make_tiny_maest, run_cli

FAISS_TROUBLE = ("stale", "rebuil", "holds other")
"""Words of a FAISS line that says the index was out of date or damaged."""
FEATURES = ("--model", "features", "--no-map", "--no-tags", "--workers", "1")
"""``index`` options here: what FAISS says is the subject (no map, no sound tags, no worker processes)."""


def _faiss_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("store") and "FAISS" in r.getMessage()]


def _model(precision: str | None) -> ModelInfo:
    extra = {"options": {"precision": precision}} if precision else {}
    return ModelInfo(name="m", id="m", kind="maest", label="m", dimension=4, extra=extra)


def test_check_finite_names_what_is_not_finite_and_what_to_try() -> None:
    fine = Embedding(np.ones(4, np.float32), windows=np.ones((2, 4), np.float32), styles={"a": 0.5})
    assert check_finite(fine, _model("bf16")) is fine
    nan_vector = Embedding(np.array([1.0, np.nan, 0.0, 0.0], np.float32),
                           windows=np.array([[1, 0, 0, 0], [np.nan, 0, 0, 0]], np.float32), styles={"a": 0.5})
    with pytest.raises(FileFailure) as bf16:
        check_finite(nan_vector, _model("bf16"))
    assert bf16.value.stage == "embed"
    assert bf16.value.reason == ("the model gave a non-finite (NaN) track vector, 1 of 2 window vectors for this "
                                 "file at --precision bf16; index it again with --precision fp32. Nothing of it "
                                 "was stored")
    with pytest.raises(FileFailure, match=r"non-finite \(infinite\) style activations for this file at "
                                          r"--precision fp32; the model's weights may be damaged"):
        check_finite(Embedding(np.ones(4, np.float32), styles={"a": float("inf")}), _model("fp32"))
    with pytest.raises(FileFailure, match=r"non-finite \(NaN\) track vector for this file\. Nothing"):
        check_finite(Embedding(np.full(4, np.nan, np.float32)), _model(None))  # no precision setting



def test_a_run_records_a_nonfinite_track_as_the_failure_check_finite_names(tmp_path: Path) -> None:
    """``IndexRun.add``, which every engine's tracks go through: a non-finite track becomes a
    ``failures`` row with check_finite's stage and reason (the run's model options give the hint),
    never a track; a finite one is saved."""
    from indexer.run import IndexReport, IndexRun
    from store import TrackRecord

    info = _model("bf16")
    nan = Embedding(np.array([1.0, np.nan, 0.0, 0.0], np.float32), styles={"a": 0.5})
    with pytest.raises(FileFailure) as expected:
        check_finite(nan, info)
    good = TrackRecord(path="/music/good.flac", size=1, mtime=1.0, tags={}, vector=np.ones(4, np.float32))
    bad = TrackRecord(path="/music/bad.flac", size=1, mtime=1.0, tags={}, vector=nan.vector, styles=nan.styles)
    report = IndexReport(store=str(tmp_path / "store"), model=info.id)
    with IndexRun.open(Store.open_for_indexing(tmp_path / "store", info), report, ["/music"],
                       settings=info.extra["options"]) as run:
        assert run.add(good, updated=False) is True
        assert run.add(bad, updated=False) is False
        run.finish("ok")
    assert (report.added, report.failed) == (1, 1)
    assert report.failures == [{"path": "/music/bad.flac", "stage": "embed", "error": expected.value.reason}]
    with Store.open(tmp_path / "store") as opened:
        assert opened.count("tracks") == 1
        failures = opened.failures()
        assert (list(failures["stage"]), list(failures["error"])) == (["embed"], [expected.value.reason])


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("nonfinite") / "library"
    write_tone(root / "short.wav", 0.5, 440.0)
    write_tone(root / "longer.flac", 3.0, 660.0, seed=1)
    return root


def test_a_model_that_gives_nan_makes_failures_not_tracks(library: Path, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    import torch
    from transformers import ASTForAudioClassification

    folder = make_tiny_maest(tmp_path / "tiny-maest", ["Electronic---Techno", "Jazz---Bop"])
    damaged = ASTForAudioClassification.from_pretrained(folder)
    with torch.no_grad():  # one NaN in the CLS token: attention spreads it to every row
        damaged.audio_spectrogram_transformer.embeddings.cls_token[0, 0, 3] = float("nan")
    damaged.save_pretrained(folder)
    store = tmp_path / "store"
    proc = run_cli("index", library, "--store", store, "--model", folder, "--precision", "fp32", "--workers", "1",
                   "--json")
    assert proc.returncode == 1, proc.stderr  # 1: none of the files could be indexed
    assert "none of the 2 files could be indexed" in proc.stderr
    report = json.loads(proc.stdout)
    assert (report["added"], report["failed"]) == (0, 2)
    with Store.open(store) as opened:
        assert opened.count("embeddings") == opened.count("tracks") == 0
        failures = opened.failures()
        assert sorted(Path(p).name for p in failures["path"]) == ["longer.flac", "short.wav"]
        assert set(failures["stage"]) == {"embed"}
        assert all(e.startswith("the model gave a non-finite (NaN) track vector, 1 of 1 window vectors") or
                   e.startswith("the model gave a non-finite (NaN) track vector, 3 of 3 window vectors")
                   for e in failures["error"]), list(failures["error"])
        assert all("at --precision fp32; the model's weights may be damaged" in e for e in failures["error"])
    with caplog.at_level(logging.DEBUG, logger="store"):
        for _ in range(2):
            with Store.open(store) as opened:
                assert opened.index.ntotal == 0
    assert _faiss_lines(caplog) == []  # loaded as saved: nothing to say


def _nan_row_as_an_older_musicmap_left_it(store: Path, name: str) -> int:
    """Write NaN into the stored vector of file ``name`` and save FAISS over it, as a musicmap
    before the check did (its writer bumped the generation and the rewrites, and its stores were
    never checked for NaN); returns the track's id."""
    with Store.open(store) as opened:
        model = opened.manifest.model
    d = int(model.dimension)
    con = duckdb.connect(str(store / "library.duckdb"))
    try:
        row = con.execute("SELECT id FROM tracks WHERE path LIKE ?", [f"%/{name}"]).fetchone()
        assert row is not None
        con.execute(f"UPDATE embeddings SET vector = list_transform(range({d}), lambda i: 'nan'::FLOAT)::FLOAT[{d}] "
                    "WHERE track_id = ?", [row[0]])
        for key in ("vectors_generation", "vectors_rewrites"):
            con.execute("INSERT OR IGNORE INTO meta VALUES (?, '0')", [key])
            con.execute("UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS VARCHAR) WHERE key = ?", [key])
        con.execute("DELETE FROM meta WHERE key = 'nonfinite_checked'")
        freshness.load_or_build(store, con, model, "auto", save=True)
        assert np.isnan(freshness.stored_vectors(con, np.array([row[0]]), d)).all()
    finally:
        con.close()
    return int(row[0])


def test_an_older_store_with_a_nan_vector_loads_as_it_is_and_index_repairs_it(
        library: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = tmp_path / "store"
    run_cli("index", library, "--store", store, *FEATURES, check=True)
    track_id = _nan_row_as_an_older_musicmap_left_it(store, "short.wav")
    caplog.clear()  # the helper's own save rebuilds FAISS (it bumped the rewrites): only the opens are judged
    with caplog.at_level(logging.DEBUG, logger="store"):
        for _ in range(2):  # before, each open rebuilt it (NaN ≠ NaN; logged twice) and saved nothing
            with Store.open(store) as opened:
                assert opened.index.ntotal == 2
    assert not [line for line in _faiss_lines(caplog) if any(w in line for w in FAISS_TROUBLE)], caplog.text
    proc = run_cli("index", library, "--store", store, *FEATURES, "--json")
    assert proc.returncode == 0, proc.stderr
    assert "1 tracks in" in proc.stderr and "had a NaN or infinite vector" in proc.stderr
    report = json.loads(proc.stdout)
    assert (report["updated"], report["unchanged"], report["failed"]) == (1, 1, 0)  # embedded again
    with Store.open(store) as opened:
        ids, vectors = opened.vectors()
        assert len(ids) == 2 and np.all(np.isfinite(vectors)) and track_id in ids.tolist()
        assert opened.search(track_id, k=1)[0].score > 0  # it finds something again
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="store"), Store.open(store) as opened:
        assert opened.index.ntotal == 2
    assert _faiss_lines(caplog) == []


def test_an_incremental_run_says_only_what_happened(library: Path, tmp_path: Path) -> None:
    """index → add a file → index: the second run says it added one vector, and nothing about a
    stale, rebuilt or foreign index (nothing was wrong); a third run with nothing new says nothing."""
    lib = tmp_path / "library"
    write_tone(lib / "a.wav", 2.0, 440.0)
    store = tmp_path / "store"
    first = run_cli("index", lib, "--store", store, *FEATURES, check=True)
    assert "FAISS index built: flat over 1 vectors" in first.stderr
    write_tone(lib / "b.wav", 2.0, 550.0, seed=1)
    second = run_cli("index", lib, "--store", store, *FEATURES, check=True)
    assert "FAISS index: added 1 new vectors" in second.stderr
    assert not [w for w in FAISS_TROUBLE if w in second.stderr.lower()], second.stderr
    third = run_cli("index", lib, "--store", store, *FEATURES, check=True)
    assert "FAISS" not in third.stderr, third.stderr
