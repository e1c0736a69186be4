"""FAISS follows DuckDB: extended on additions, rebuilt on rewrites or damage, HNSW above the flat limit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest

import store.vectors as vectors_mod
from store import ModelInfo, Store, TrackRecord, freshness
from store.vectors import INDEX_NAME, SIDECAR_NAME
from tests.fakes import fake_model

D = 32


def _model() -> ModelInfo:
    return fake_model(D)


def _records(start: int, n: int, seed: int, clusters: int = 20) -> list[TrackRecord]:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).standard_normal((clusters, D))
    return [TrackRecord(path=f"/music/{i:05d}.flac", size=1, mtime=1.0,
                        tags={"title": f"Song {i}", "artist": f"Artist {i % 40}", "genre": ["a", "b"][i % 2],
                              "year": 1950 + i % 70},
                        vector=(centres[i % clusters] + 0.5 * rng.standard_normal(D)).astype(np.float32))
            for i in range(start, start + n)]


def _exact(store: Store, seed: int, k: int, allowed: set[int] | None = None) -> list[int]:
    ids, vectors = store.vectors()
    sims = vectors @ vectors[ids.tolist().index(seed)]
    order = [int(ids[i]) for i in np.argsort(-sims, kind="stable")]
    return [i for i in order if i != seed and (allowed is None or i in allowed)][:k]


def _sidecar(folder: Path) -> dict:
    return json.loads((folder / SIDECAR_NAME).read_text())


def test_additions_extend_the_index_and_rewrites_rebuild_it(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    with Store.open_for_indexing(folder, _model()) as store:
        store.write_tracks(_records(0, 200, seed=0))
        store.sync()
        assert _sidecar(folder)["params"].get("added_since_build") is None
        store.write_tracks(_records(200, 50, seed=1))
        store.sync()
        assert _sidecar(folder)["params"]["added_since_build"] == 50 and _sidecar(folder)["ntotal"] == 250
        assert [n.track_id for n in store.search(7, k=10)] == _exact(store, 7, 10)
        store.write_tracks(_records(0, 3, seed=5))  # three files changed: their vectors are replaced
        store.sync()
        assert _sidecar(folder)["params"].get("added_since_build") is None  # rebuilt, not extended
    with Store.open(folder) as store:
        assert [n.track_id for n in store.search(1, k=10)] == _exact(store, 1, 10)
        assert store.manifest.index["type"] == "flat" and store.manifest.index["ntotal"] == 250


@pytest.mark.parametrize("damage", ["missing", "garbage", "truncated", "no-sidecar", "other-store", "stale"])
def test_damaged_or_stale_faiss_files_are_detected_and_rebuilt(tmp_path: Path, damage: str) -> None:
    folder, other = tmp_path / "store", tmp_path / "other"
    with Store.open_for_indexing(folder, _model()) as store:
        store.write_tracks(_records(0, 300, seed=0))
        store.sync()
    index_file = folder / INDEX_NAME
    if damage == "missing":
        index_file.unlink()
    elif damage == "garbage":
        index_file.write_bytes(b"\x00garbage" * 100)
    elif damage == "truncated":
        index_file.write_bytes(index_file.read_bytes()[: index_file.stat().st_size // 2])
    elif damage == "no-sidecar":
        (folder / SIDECAR_NAME).unlink()
    elif damage == "other-store":  # same model, same count, other tracks: only the id checksum tells
        with Store.open_for_indexing(other, _model()) as o:
            o.write_tracks(_records(5000, 300, seed=3))
            o.sync()
        side = _sidecar(folder)
        shutil.copy(other / INDEX_NAME, index_file)
        (folder / SIDECAR_NAME).write_text(json.dumps(side))  # the sidecar claims it is ours
    elif damage == "stale":  # an old index file beside a newer database
        saved = index_file.read_bytes(), (folder / SIDECAR_NAME).read_text()
        with Store.open_for_indexing(folder, _model()) as store:
            store.write_tracks(_records(0, 2, seed=8))
            store.sync()
        index_file.write_bytes(saved[0])
        (folder / SIDECAR_NAME).write_text(saved[1])
    with Store.open(folder) as store:
        assert store.index.ntotal == 300
        assert [n.track_id for n in store.search(3, k=10)] == _exact(store, 3, 10)
    with Store.open_for_indexing(folder, _model()) as store:
        store.sync()  # the writer repairs the files
    assert _sidecar(folder)["ntotal"] == 300
    con = duckdb.connect(str(folder / "library.duckdb"), read_only=True)
    try:
        loaded, _ = vectors_mod.open_index(folder, freshness.index_state(con, _model())[0])
    finally:
        con.close()
    assert loaded is not None and loaded.ntotal == 300


def test_hnsw_above_the_flat_limit_records_recall_and_filters_return_k(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vectors_mod, "FLAT_MAX_FLOATS", 1000 * D)  # HNSW from 1,000 tracks on
    folder = tmp_path / "store"
    with Store.open_for_indexing(folder, _model()) as store:
        store.write_tracks(_records(0, 3000, seed=0))
        store.sync()
    params = json.loads((folder / "manifest.json").read_text())["index"]
    assert params["type"] == "hnsw" and params["recall_at_10"] >= 0.97 and params["efSearch"] >= 16
    assert params["M"] == vectors_mod.HNSW_M and params["ntotal"] == 3000 and params["storage"] == "fp16"
    with Store.open(folder) as store:
        recall = np.mean([len(set(n.track_id for n in store.search(s, k=10)) & set(_exact(store, s, 10))) / 10
                          for s in range(1, 3001, 60)])
        assert recall >= 0.95
        # Small filtered sets are searched exactly, even when no match is near the query (genre 'a' holds
        # none of track 2's cluster): exact top 10.
        for where, allowed_ids in (("genre = 'a'", {i + 1 for i in range(3000) if i % 2 == 0}),
                                   ("year = 1960", {i + 1 for i in range(3000) if i % 70 == 10})):
            got = [n.track_id for n in store.search(2, k=10, where=where)]
            assert got == _exact(store, 2, 10, allowed_ids)
        # Large filtered sets go through HNSW with the id selector: still k results, high recall.
        monkeypatch.setattr("store.search.FILTER_EXACT_FLOATS", 0)
        half = {int(r[0]) for r in store.sql("SELECT id FROM tracks WHERE hash(id) % 2 = 0", max_rows=5000).rows}
        recalls = []
        for seed in range(1, 3001, 100):
            got = [n.track_id for n in store.search(seed, k=10, where="hash(id) % 2 = 0")]
            assert len(got) == 10 and set(got) <= half
            recalls.append(len(set(got) & set(_exact(store, seed, 10, half))) / 10)
        assert np.mean(recalls) >= 0.9, recalls
        sql = store.sql("SELECT id FROM similar_to(2, 5)").rows
        assert [r[0] for r in sql] == _exact(store, 2, 5)  # similarity() in SQL is exact
    with Store.open_for_indexing(folder, _model()) as store:  # additions extend the HNSW graph
        store.write_tracks(_records(3000, 100, seed=4))
        store.sync()
        assert _sidecar(folder)["params"]["type"] == "hnsw" and _sidecar(folder)["params"]["added_since_build"] == 100
        assert store.search(3050, k=1)[0].track_id != 3050


@pytest.mark.heavy  # trains IVF-PQ on enough vectors to be one
def test_ivfpq_when_asked_records_its_parameters_and_searches_like_the_others(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The index for stores beyond one machine's memory, asked for explicitly (by size it starts at
    billions of floats): codebooks trained, nprobe tuned to the recall target, filters still give k,
    a reopened store loads it (8-bit vectors pass the consistency check), additions extend it."""
    folder = tmp_path / "store"
    n = 12_000
    with Store.open_for_indexing(folder, _model()) as store:
        store.write_tracks(_records(0, n, seed=0))
        store.index_kind = "ivfpq"
        store.sync()
    params = json.loads((folder / "manifest.json").read_text())["index"]
    nlist, m = vectors_mod.ivfpq_shape(n, D)
    assert (params["type"], params["nlist"], params["m"], params["refine"]) == ("ivfpq", nlist, m, "SQ8")
    assert (nlist, m) == (256, 4) and params["train_n"] == 10_240 and params["bytes_per_vector"] == m + D
    # 4 codes of 8 dimensions rank these vectors coarsely: the build re-ranks more candidates (k_factor
    # above 16) rather than visit every list
    assert params["recall_at_10"] >= 0.95 and params["k_factor"] > 16 and 1 <= params["nprobe"] < nlist
    stamp = (folder / INDEX_NAME).stat().st_mtime_ns
    with Store.open(folder) as store:
        recall = np.mean([len({t.track_id for t in store.search(s, k=10)} & set(_exact(store, s, 10))) / 10
                          for s in range(1, n + 1, 240)])
        assert recall >= 0.88
        monkeypatch.setattr("store.search.FILTER_EXACT_FLOATS", 0)  # through the IVF with a selector
        half = {int(r[0]) for r in store.sql("SELECT id FROM tracks WHERE hash(id) % 2 = 0", max_rows=n).rows}
        recalls = []
        for seed in range(1, n + 1, 600):
            got = [n.track_id for n in store.search(seed, k=10, where="hash(id) % 2 = 0")]
            assert len(got) == 10 and set(got) <= half
            recalls.append(len(set(got) & set(_exact(store, seed, 10, half))) / 10)
        assert np.mean(recalls) >= 0.85, recalls
        rare = [n.track_id for n in store.search(2, k=10, where="year = 1960")]  # few matches, none near
        assert len(rare) == 10 and all((t - 1) % 70 == 10 for t in rare)
        # similarity() in SQL scores every track from the 8-bit vectors: nearly the exact cosine
        ids, vectors = store.vectors()
        exact = dict(zip(ids.tolist(), (vectors @ vectors[ids.tolist().index(2)]).tolist(), strict=True))
        rows = store.sql("SELECT id, similarity(id, 2) FROM tracks", max_rows=n + 100).rows
        assert len(rows) == n and max(abs(s - exact[i]) for i, s in rows) < 0.02
        top = [r[0] for r in store.sql("SELECT id FROM similar_to(2, 10)").rows]
        assert len(set(top) & set(_exact(store, 2, 10))) >= 8
    assert (folder / INDEX_NAME).stat().st_mtime_ns == stamp  # loaded as it was, not rebuilt
    with Store.open_for_indexing(folder, _model()) as store:
        store.index_kind = "ivfpq"
        store.write_tracks(_records(n, 100, seed=4))
        store.sync()
        side = _sidecar(folder)["params"]
        assert side["type"] == "ivfpq" and side["added_since_build"] == 100 and side["nprobe"] == params["nprobe"]
        assert store.search(n + 50, k=1)[0].track_id != n + 50
    # Too few vectors for codebooks: the size rule's pick, whatever was asked.
    assert vectors_mod.effective_kind("ivfpq", 500, D) == "flat"
    assert vectors_mod.effective_kind("auto", 10**7, 768) == "ivfpq"
    assert vectors_mod.effective_kind("auto", 10**6, 768) == "hnsw"


def test_hnsw_keeps_float16_vectors_and_an_older_float32_index_still_serves(tmp_path: Path) -> None:
    import faiss

    from store.search import knn
    from store.sql import Similarity

    rng = np.random.default_rng(7)
    x = vectors_mod.l2_normalise(rng.standard_normal((2000, D)))
    ids = np.arange(1, 2001, dtype=np.int64)
    new, params = vectors_mod.build_index(ids, x, "hnsw")
    old = faiss.IndexIDMap2(faiss.IndexHNSWFlat(D, 16, faiss.METRIC_INNER_PRODUCT))  # as built before
    old.add_with_ids(x, ids)
    assert params["storage"] == "fp16" and vectors_mod.storage_kind(new) == "float16"
    assert vectors_mod.storage_kind(old) == "float32"
    exact = x @ x[4]
    for index in (new, old):
        got = knn(index, x[4], 10)
        assert got[0][0] == 5 and abs(got[0][1] - 1.0) < 1e-3  # itself, at cosine 1
        scores = Similarity(index).scores(5)  # similarity() in SQL over the stored vectors
        assert np.allclose(scores, exact, atol=2e-3)
        filtered = knn(index, x[4], 5, allowed=ids[1::2])  # exact over the stored vectors
        assert [t for t, _ in filtered] == [int(ids[i]) for i in np.argsort(-exact) if i % 2 == 1][:5]


@pytest.mark.parametrize(("part", "words"), [("vector", "track vector"), ("window vectors", "1 of 2 window vectors"),
                                            ("style activations", "style activations")])
def test_the_store_refuses_a_nonfinite_vector_and_saves_nothing_of_the_batch(tmp_path: Path, part: str,
                                                                            words: str) -> None:
    from store import NonFiniteVector

    folder = tmp_path / "store"
    good, bad = _records(0, 2, seed=0)
    nan = np.full(D, np.nan, np.float32)
    bad = TrackRecord(path=bad.path, size=1, mtime=1.0, tags={}, vector=nan if part == "vector" else bad.vector,
                      windows=np.stack([bad.vector, nan if part == "window vectors" else bad.vector]),
                      styles={"a": float("inf") if part == "style activations" else 0.5})
    with Store.open_for_indexing(folder, _model()) as store:
        with pytest.raises(NonFiniteVector) as refused:
            store.write_tracks([good, bad])
        assert str(refused.value) == (f"refusing to save {bad.path}: NaN or infinity in its {words} (such a vector "
                                      "matches nothing). Nothing of this batch was saved; record the file as a "
                                      "failure instead")
        assert store.count("tracks") == store.count("embeddings") == 0
        store.write_tracks([good])  # the store is as it was: the next batch is saved
        assert store.count("embeddings") == 1


def test_a_rebuild_is_said_once_with_its_reason(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Vectors written over (same ids, other values): one WARNING saying so, not one per check
    (it was logged twice per open); vectors replaced by the writer: one INFO with that reason."""
    import logging

    folder, other = tmp_path / "store", tmp_path / "other"
    for where, seed in ((folder, 0), (other, 3)):
        with Store.open_for_indexing(where, _model()) as store:
            store.write_tracks(_records(0, 100, seed=seed))
            store.sync()
    shutil.copy(other / INDEX_NAME, folder / INDEX_NAME)  # same ids and record, other vectors
    caplog.clear()  # the two builds above are logged too where an earlier test left "store" at INFO
    with caplog.at_level(logging.DEBUG, logger="store"), Store.open_for_indexing(folder, _model()) as store:
        store.sync()
        lines = [(r.levelname, r.getMessage()) for r in caplog.records if "FAISS" in r.getMessage()]
        assert lines == [("WARNING", f"FAISS index in {folder} rebuilt from DuckDB (it holds other vectors than "
                                     "DuckDB): flat over 100 vectors")]
        caplog.clear()
        store.write_tracks(_records(0, 1, seed=9))  # a changed file: its vector is replaced
        store.sync()
        lines = [(r.levelname, r.getMessage()) for r in caplog.records if "FAISS" in r.getMessage()]
        assert lines == [("INFO", f"FAISS index in {folder} rebuilt from DuckDB (stored vectors were replaced or "
                                  "removed since it was built): flat over 100 vectors")]
