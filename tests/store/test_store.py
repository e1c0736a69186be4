"""The store: FAISS agrees with NumPy, ids are track ids, SQL is read-only, mismatches refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from store import InvalidQuery, ModelInfo, NoMatchingTrack, Store, StoreError, TrackNotFound, TrackRecord
from store.vectors import INDEX_NAME, SIDECAR_NAME
from tests.fakes import write_store

D = 16


def _model(**changes: object) -> ModelInfo:
    base = {"name": "test", "id": "test-model", "kind": "handcrafted", "label": "test vectors", "dimension": D}
    base.update(changes)
    return ModelInfo(**base)  # type: ignore[arg-type]


def _records(n: int, seed: int = 0, prefix: str = "/music/t") -> list[TrackRecord]:
    rng = np.random.default_rng(seed)
    return [
        TrackRecord(path=f"{prefix}{i}.flac", size=100 + i, mtime=1.0 + i,
                    tags={"title": f"Song {i}", "artist": f"Artist {i % 5}", "genre": ["jazz", "rock"][i % 2],
                          "year": 1960 + i},
                    vector=rng.standard_normal(D).astype(np.float32) * (1 + i))
        for i in range(n)
    ]


@pytest.fixture
def filled(tmp_path: Path) -> Path:
    return write_store(tmp_path / "store", _model(), _records(200))


def test_faiss_matches_numpy_cosine_and_uses_track_ids(filled: Path) -> None:
    with Store.open(filled) as store:
        ids, vectors = store.vectors()
        assert ids.tolist() == list(range(1, 201))  # DuckDB ids, not row positions
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
        for seed in (1, 50, 199):
            got = store.similar(seed, k=10)
            sims = vectors @ vectors[ids.tolist().index(seed)]
            order = [int(ids[i]) for i in np.argsort(-sims) if int(ids[i]) != seed][:10]
            assert [n.track_id for n in got] == order
            np.testing.assert_allclose([n.score for n in got], np.sort(sims)[::-1][1:11], atol=1e-5)
            assert seed not in [n.track_id for n in got]
            assert got[0].track["title"] == f"Song {got[0].track_id - 1}"


def test_rewrites_keep_ids_and_faiss_is_rebuilt_when_stale(filled: Path) -> None:
    with Store.open_for_indexing(filled, _model()) as store:
        new = _records(3, seed=9)  # same paths as tracks 1..3, new vectors
        assert store.write_tracks(new) == [1, 2, 3]
        store.sync()
        assert store.count("tracks") == 200
    side = json.loads((filled / SIDECAR_NAME).read_text())
    assert side["ntotal"] == 200
    with Store.open(filled) as store:
        _, vectors = store.vectors()
        target = new[0].vector / np.linalg.norm(new[0].vector)
        np.testing.assert_allclose(vectors[0], target, rtol=1e-5)
    (filled / INDEX_NAME).write_bytes(b"garbage")  # a damaged accelerator is rebuilt, not trusted
    with Store.open(filled) as store:
        assert store.index.ntotal == 200
        assert len(store.similar(5, k=3)) == 3


def test_model_mismatch_is_refused_naming_the_field(filled: Path) -> None:
    with pytest.raises(StoreError, match=r"model\.id='test-model'.*model\.id='other'"):
        Store.open_for_indexing(filled, _model(id="other"))
    with pytest.raises(StoreError, match=r"model\.dimension"):
        Store.open_for_indexing(filled, _model(dimension=D + 1))


def test_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        Store.open(tmp_path / "missing")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(StoreError, match="not a musicmap store"):
        Store.open(tmp_path / "folder")
    with pytest.raises(StoreError, match="other files in it"):
        Store.open_for_indexing(tmp_path / "folder", _model())
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{not json")
    with pytest.raises(StoreError, match="not valid JSON"):
        Store.open(tmp_path / "bad")


def test_sql_is_read_only_sandboxed_and_limited(filled: Path) -> None:
    with Store.open(filled) as store:
        result = store.sql("SELECT genre, count(*) AS n FROM tracks GROUP BY genre ORDER BY genre")
        assert result.columns == ["genre", "n"] and result.rows == [("jazz", 100), ("rock", 100)]
        capped = store.sql("SELECT id FROM tracks", max_rows=7)
        assert len(capped.rows) == 7 and capped.truncated
        for bad in ("DELETE FROM tracks", "INSERT INTO meta VALUES ('a', 'b')", "DROP TABLE tracks",
                    "SELECT * FROM read_csv('/etc/passwd')", "COPY tracks TO '/tmp/x.csv'",
                    "ATTACH '/tmp/other.duckdb' AS o", "INSTALL httpfs", "SET enable_external_access = true"):
            with pytest.raises(InvalidQuery):
                store.sql(bad)
        with pytest.raises(InvalidQuery, match="SQL error"):
            store.sql("SELEC nonsense")
        with pytest.raises(StoreError, match="interrupted"):
            store.sql("SELECT count(*) FROM range(100000000000) a", timeout=0.5)
        assert store.count("tracks") == 200


def test_similar_errors(filled: Path) -> None:
    with Store.open(filled) as store:
        with pytest.raises(StoreError, match="no track with id 9999"):
            store.similar(9999)
        with pytest.raises(StoreError, match="k must be"):
            store.similar(1, k=0)
        with pytest.raises(StoreError, match="dimensions"):
            store.similar_to_vector(np.ones(D + 3))


def test_a_track_named_by_id_file_or_words(filled: Path, tmp_path: Path) -> None:
    """``resolve_track``: what the CLI and the Python API accept for a track, each bad case named."""
    held = tmp_path / "music" / "t7.flac"
    held.parent.mkdir()
    held.write_bytes(b"x")
    stray = tmp_path / "stray.flac"
    stray.write_bytes(b"x")
    with Store.open_for_indexing(filled, _model()) as store:  # a track at a real file, so is_file() holds
        [held_id] = store.write_tracks([TrackRecord(path=str(held), size=1, mtime=1.0, tags={"title": "Held"},
                                                    vector=np.ones(D, np.float32))])
        store.sync()
    with Store.open(filled) as store:
        assert store.resolve_track(7) == store.resolve_track("7") == store.resolve_track(np.int64(7)) == 7
        assert store.resolve_track(held) == store.resolve_track(str(held)) == held_id
        assert store.resolve_track("artist 3 song 8") == 9  # the exact artist and title first (not "Song 88")
        assert store.resolve_track("  Song 12 ") == 13  # several match ("Song 112", ...): the first by id
        with pytest.raises(TrackNotFound, match="no track with id 9999"):
            store.resolve_track("9999")
        with pytest.raises(TrackNotFound, match="no track with id 9999"):
            store.resolve_track(9999)
        with pytest.raises(NoMatchingTrack, match=f"{stray} is not a track of .*; index it first"):
            store.resolve_track(stray)
        with pytest.raises(NoMatchingTrack, match="no track id, file or artist/title matches 'zzz qqq'"):
            store.resolve_track("zzz qqq")
        with pytest.raises(InvalidQuery, match="empty search text"):
            store.resolve_track("  ")


def test_maps_from_before_clusters_still_open(filled: Path) -> None:
    """A store whose ``projections`` has no ``cluster`` column (written before it existed) opens
    read-only with clusters unknown, and gains the column at the next write."""
    import duckdb

    with Store.open(filled, read_only=False) as store:
        ids, _ = store.vectors()
        store.write_projection("tsne", ids, np.zeros((len(ids), 2)), method="pca", params={},
                               clusters=np.arange(len(ids)) % 3)
    con = duckdb.connect(str(filled / "library.duckdb"))
    con.execute("ALTER TABLE projections DROP COLUMN cluster")
    con.close()
    with Store.open(filled) as store:
        frame = store.projection("tsne")
    assert len(frame) == len(ids) and frame["cluster"].isna().all()
    with Store.open_for_indexing(filled, _model()) as store:
        store.write_projection("tsne", ids, np.ones((len(ids), 2)), method="pca", params={},
                               clusters=np.arange(len(ids)) % 3)
        assert store.projection("tsne")["cluster"].tolist() == (np.arange(len(ids)) % 3).tolist()


def test_library_roots_and_paths_relative_to_them(filled: Path) -> None:
    from store import relative_to_roots

    with Store.open_for_indexing(filled, _model()) as store:
        for roots in (["/music"], ["/music/jazz", "s3://bucket/shards"]):
            store.finish_run(store.start_run(roots), status="ok", counts={})
    with Store.open(filled) as store:
        roots = store.library_roots()
    assert roots == ["/music/jazz", "/music"]  # longest first; a staging URL is not a library folder
    assert relative_to_roots("/music/jazz/Miles/So What.flac", roots) == "Miles/So What.flac"
    assert relative_to_roots("/music/rock/a.mp3", roots) == "rock/a.mp3"
    assert relative_to_roots("/elsewhere/b.mp3", roots) == "b.mp3"  # outside every root: its name
    assert relative_to_roots("/musical/c.mp3", roots) == "c.mp3"  # a prefix is not a parent folder


def test_a_file_is_unchanged_only_with_the_same_size_and_mtime_and_a_vector(filled: Path) -> None:
    """``is_unchanged``: the one rule behind every engine's "skip it, it is as indexed"."""
    from store import KnownFile, is_unchanged

    with Store.open(filled) as store:
        known = store.known_files()
    seen = known["/music/t7.flac"]  # written with size 107, mtime 8.0
    assert is_unchanged(seen, 107, 8.0)
    assert not is_unchanged(seen, 108, 8.0) and not is_unchanged(seen, 107, 8.5)
    assert not is_unchanged(None, 107, 8.0)  # never indexed
    no_vector = KnownFile(seen.track_id, seen.size, seen.mtime, seen.fingerprint, has_vector=False)
    assert not is_unchanged(no_vector, 107, 8.0)


def test_glibc_is_found_once_and_is_none_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes
    import platform
    import sys

    from store.glibc import glibc

    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        libc = glibc()
        assert isinstance(libc, ctypes.CDLL) and glibc() is libc  # loaded once, then cached
        assert callable(libc.malloc_trim) and callable(libc.mallopt)
    glibc.cache_clear()
    monkeypatch.setattr(sys, "platform", "darwin")  # macOS (and Windows): no glibc, no error
    try:
        assert glibc() is None
    finally:
        glibc.cache_clear()  # the next caller finds the real one again
