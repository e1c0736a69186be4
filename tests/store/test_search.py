"""Similarity search with filters and variety, and similarity inside SQL, on real DuckDB + FAISS."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from store import InvalidQuery, ModelInfo, Store, TrackNotFound, TrackRecord
from store.search import artist_key, song_key, song_title
from tests.fakes import fake_model

D = 24
N = 600


def _model() -> ModelInfo:
    return fake_model(D)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, list[dict[str, object]]]:
    """600 tracks in 6 clusters; 30 are Jazz (5 %); 20 artists, 3 albums each; a few songs in versions."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((6, D))
    vectors = np.stack([centres[i % 6] + 0.6 * rng.standard_normal(D) for i in range(N)]).astype(np.float32)
    tags: list[dict[str, object]] = []
    for i in range(N):
        tags.append({"title": f"Song {i}", "artist": f"Artist {i % 20}", "album": f"Album {i % 60}",
                     "genre": "Jazz" if i % 20 == 3 else ["Rock", "Pop", "Techno"][i % 3], "year": 1950 + i % 70})
    # Versions of song 0 (the seed in the dedupe test) and of song 6, by the same artists.
    for j, title in ((120, "Song 0 (Live at Leeds)"), (240, "SONG 0 - 2011 Remaster"), (246, "Song 6 [Radio Edit]"),
                     (366, "Song 6 (Demo)")):
        tags[j] = {**tags[j], "title": title, "artist": tags[0 if "0" in title.split()[1] else 6]["artist"]}
    folder = tmp_path_factory.mktemp("search") / "store"
    with Store.open_for_indexing(folder, _model()) as store:
        store.write_tracks([TrackRecord(path=f"/music/{i:04d}.flac", size=1, mtime=1.0, tags=tags[i],
                                        vector=vectors[i]) for i in range(N)])
        store.sync()
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return folder, unit, tags


def _brute(unit: np.ndarray, query: np.ndarray, allowed: np.ndarray, exclude: set[int], k: int) -> list[int]:
    q = query / np.linalg.norm(query)
    scores = unit @ q
    order = [int(i) for i in np.argsort(-scores, kind="stable") if allowed[i] and (i + 1) not in exclude]
    return [i + 1 for i in order[:k]]  # track ids are rows + 1


def test_filter_is_inside_the_search_and_returns_k(library) -> None:
    folder, unit, tags = library
    jazz = np.array([t["genre"] == "Jazz" for t in tags])
    with Store.open(folder) as store:
        got = store.similar(1, k=10, where="genre = 'Jazz'")
        assert len(got) == 10 and all(n.track["genre"] == "Jazz" for n in got)
        assert [n.track_id for n in got] == _brute(unit, unit[0], jazz, {1}, 10)
        assert all(abs(n.score - float(unit[n.track_id - 1] @ unit[0])) < 1e-5 for n in got)
        rare = store.similar(1, k=10, where="genre = 'Jazz' AND year < 1960")
        expected = sum(1 for t in tags if t["genre"] == "Jazz" and int(t["year"]) < 1960)  # type: ignore[call-overload]
        assert 0 < expected < 10 and len(rare) == expected  # all there are, no fewer
        assert store.similar(1, k=5, where="genre = 'Polka'") == []


def test_seeds_centroid_and_raw_vector(library) -> None:
    folder, unit, _ = library
    everything = np.ones(N, bool)
    with Store.open(folder) as store:
        got = store.search([1, 2, 3], k=8)
        assert [n.track_id for n in got] == _brute(unit, unit[:3].mean(axis=0), everything, {1, 2, 3}, 8)
        q = np.random.default_rng(5).standard_normal(D).astype(np.float32)
        got = store.search(vector=q, k=8, where="year >= 2000")
        years = np.array([1950 + i % 70 >= 2000 for i in range(N)])
        assert [n.track_id for n in got] == _brute(unit, q, years, set(), 8)


def test_artist_and_album_caps_still_fill_k(library) -> None:
    folder, _, _ = library
    with Store.open(folder) as store:
        plain = store.similar(1, k=20)
        assert max(_counts([n.track["artist"] for n in plain]).values()) > 1  # caps have work to do
        capped = store.similar(1, k=20, max_per_artist=1)
        assert len(capped) == 20 and max(_counts([n.track["artist"] for n in capped]).values()) == 1
        albums = store.similar(1, k=20, max_per_album=1)
        assert len(albums) == 20 and max(_counts([n.track["album"] for n in albums]).values()) == 1
        assert [n.score for n in capped] == sorted((n.score for n in capped), reverse=True)


def _counts(values: list[object]) -> dict[object, int]:
    out: dict[object, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def test_dedupe_collapses_versions_and_the_seeds_own(library) -> None:
    folder, _, _ = library
    with Store.open(folder) as store:
        everything = store.similar(1, k=N)
        ids = [n.track_id for n in everything]
        assert 121 in ids and 241 in ids  # versions of the seed's song are there without dedupe
        deduped = store.similar(1, k=N, dedupe=True)
        dids = [n.track_id for n in deduped]
        assert 121 not in dids and 241 not in dids
        song6 = [i for i in (7, 247, 367) if i in dids]
        assert len(song6) == 1  # one version of "Song 6" kept: the most similar one
        assert song6[0] == min((7, 247, 367), key=ids.index)
        assert len(dids) == N - 1 - 4


def test_mmr_diversifies_and_min_score_returns_all_above(library) -> None:
    folder, unit, _ = library
    with Store.open(folder) as store:
        plain = store.similar(1, k=10)
        diverse = store.similar(1, k=10, mmr=0.3)
        assert len(diverse) == 10 and diverse[0].track_id == plain[0].track_id

        def spread(ns: list) -> float:
            v = unit[[n.track_id - 1 for n in ns]]
            sims = v @ v.T
            return float(sims[np.triu_indices(len(ns), 1)].mean())

        assert spread(diverse) < spread(plain) - 0.05
        assert store.similar(1, k=10, mmr=1.0) == plain
        scores = unit @ unit[0]
        threshold = float(np.sort(scores)[-40])  # about 39 tracks besides the seed
        above = store.similar(1, k=1000, min_score=threshold)
        expected = {i + 1 for i in np.flatnonzero(scores >= threshold)} - {1}
        assert {n.track_id for n in above} == expected and all(n.score >= threshold - 1e-6 for n in above)
        assert len(store.similar(1, k=5, min_score=threshold)) == 5  # k caps it


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"k": 0}, "k must be"), ({"max_per_artist": 0}, "max_per_artist"), ({"mmr": 1.5}, "mmr"),
    ({"min_score": 2.0}, "min_score"), ({"where": "  "}, "where is empty"),
    ({"where": "no_such_column = 1"}, "no_such_column"),
    ({"where": "1=1); DROP TABLE tracks; --"}, "one boolean expression"),
    ({"where": "id IN (SELECT 1 FROM read_csv('/etc/passwd'))"}, "outside the store|disabled"),
])
def test_bad_search_parameters_are_named(library, kwargs: dict[str, object], message: str) -> None:
    folder, _, _ = library
    with Store.open(folder) as store:
        with pytest.raises(InvalidQuery, match=message):
            store.similar(1, **kwargs)  # type: ignore[arg-type]
        assert store.count("tracks") == N
    with Store.open(folder) as store:
        with pytest.raises(InvalidQuery, match="exactly one"):
            store.search()
        with pytest.raises(TrackNotFound, match="no track with id 99999"):
            store.search([1, 99999])
        with pytest.raises(InvalidQuery, match="zero"):
            store.search(vector=np.zeros(D))


def test_version_and_artist_normalisation() -> None:
    assert song_title("Song (Live at Leeds) - 2011 Remaster") == "song"
    assert song_title("Héroes [Radio Edit]") == "heroes"
    assert song_title("Love Song (feat. X) (Acoustic)") == "love song"
    assert song_title("Love Song ft. X") == "love song"
    assert song_title("Song (Part 2)") == "song part 2"  # not a version mark: another song
    assert song_title("Live and Let Die") == "live and let die"  # a title that *is* "live ..."
    assert song_title("Under Pressure - Remastered 2011") == "under pressure"
    assert artist_key("The Beatles") == "beatles" and artist_key("Queen & David Bowie") == "queen"
    assert artist_key(None) is None and artist_key("  ") is None
    assert song_key({"title": "Help! (Remastered)", "artist": "The Beatles"}) == ("beatles", "help")
    assert song_key({"title": None, "artist": "x"}) is None


def test_similarity_inside_sql(library) -> None:
    folder, unit, _ = library
    with Store.open(folder) as store:
        res = store.sql("SELECT id, similarity(id, 1) AS s FROM tracks WHERE genre = 'Jazz' ORDER BY s DESC LIMIT 5")
        jazz = np.array([i % 20 == 3 for i in range(N)])
        assert [r[0] for r in res.rows] == _brute(unit, unit[0], jazz, set(), 5)
        assert all(abs(r[1] - float(unit[r[0] - 1] @ unit[0])) < 1e-5 for r in res.rows)
        table = store.sql("SELECT id, score FROM similar_to(1, 10)")
        assert [r[0] for r in table.rows] == [n.track_id for n in store.similar(1, k=10)]
        two = store.sql("SELECT similarity(2, 1), similarity(1, 1), similarity(NULL, 1), similarity(99999, 1)").rows[0]
        assert abs(two[0] - float(unit[1] @ unit[0])) < 1e-5 and abs(two[1] - 1) < 1e-5
        assert two[2] is None and two[3] is None
        with pytest.raises(InvalidQuery, match="no embedding"):
            store.sql("SELECT similarity(id, 99999) FROM tracks")
        cols = store.sql("DESCRIBE embeddings").rows
        assert [c[0] for c in cols] == ["track_id", "n_windows"]  # the vector is in `vectors`
        assert store.sql("SELECT len(vector) FROM vectors LIMIT 1").rows == [(D,)]


def test_sql_refusals_name_their_reason(library) -> None:
    folder, _, _ = library
    with Store.open(folder, memory_limit="64MB") as store:
        for query, reason in (("SELECT 1; SELECT 2", "one SQL statement"),
                              ("DELETE FROM tracks", "DELETE statements are refused"),
                              ("COPY tracks TO '/tmp/x.csv'", "COPY statements are refused"),
                              ("ATTACH ':memory:' AS m", "ATTACH statements are refused"),
                              ("SET memory_limit = '8GB'", "SET statements are refused"),
                              ("SELECT * FROM read_csv('/etc/passwd')", "outside the store"),
                              ("SELECT length(string_agg(repeat('x', 10000), ',')) FROM range(100000)",
                               "more memory than the limit"),
                              ("SELECT count(*) FROM range(100000000000)", "time limit")):
            with pytest.raises(InvalidQuery, match=reason):
                store.sql(query, timeout=1.0)
        assert store.sql("SELECT count(*) FROM tracks").rows == [(N,)]


@pytest.mark.subprocess
def test_the_database_opens_in_a_plain_duckdb_client(library) -> None:
    """No musicmap code: DuckDB alone reads the documented tables (another process, read-only)."""
    import subprocess
    import sys

    folder, _, _ = library
    code = ("import duckdb, sys\n"
            "con = duckdb.connect(sys.argv[1], read_only=True)\n"
            "print(con.execute('SELECT count(*), count(DISTINCT genre) FROM tracks').fetchone())\n"
            "print(con.execute('SELECT len(vector) FROM embeddings LIMIT 1').fetchone())\n")
    out = subprocess.run([sys.executable, "-c", code, str(folder / "library.duckdb")], capture_output=True,
                         text=True, check=True).stdout.split("\n")
    assert out[0] == f"({N}, 4)" and out[1] == f"({D},)"


def test_the_keyword_options_are_search_options_fields() -> None:
    """``similar``/``song_path``/``extend`` take typed keywords (mypy checks their names and types);
    they must stay :class:`SearchOptions`' fields, which validates them."""
    import dataclasses

    from store.search import SearchOptions, SimilarOptions, VarietyOptions

    fields = {f.name for f in dataclasses.fields(SearchOptions)} - {"k"}
    assert set(SimilarOptions.__annotations__) | set(VarietyOptions.__annotations__) == fields
    assert set(VarietyOptions.__annotations__) == {"where", "max_per_artist", "max_per_album", "dedupe", "taste"}
