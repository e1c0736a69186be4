"""find over a store whose tags the test writes: ranking on the library's own distributions, all
words counting, negation, filters, like=, the centroid step, explanations, and stores without tags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexer.embedders.musicnn import MSD_TAGS, MTT_TAGS
from store import InvalidQuery, Store, TrackRecord

from ..fakes import fake_model, write_store

N = 60
D = 8


def records(n: int = N) -> list[TrackRecord]:
    rng = np.random.default_rng(3)
    return [TrackRecord(path=f"/music/a{i % 6}/t{i}.ogg", size=1, mtime=1.0,
                        tags={"title": f"song {i}", "artist": f"artist {i % 6}", "album": f"album {i % 6}",
                              "genre": "Rock" if i < n // 2 else "Jazz"},
                        vector=rng.normal(size=D).astype(np.float32)) for i in range(n)]


def tag_values(n: int = N) -> dict[str, dict[int, dict[str, float]]]:
    """Probabilities with the taggers' kind of bias: "rock" is high everywhere, "piano" low everywhere.

    Track 1: the most piano, quiet, no drums. Track 2: most piano but loud drums. Track 3: quiet, no
    drums, little piano. The rest: random in the same ranges."""
    rng = np.random.default_rng(5)
    out: dict[str, dict[int, dict[str, float]]] = {"musicnn-mtt": {}, "musicnn-msd": {}}
    for tid in range(1, n + 1):
        mtt = {t: float(rng.uniform(0.01, 0.2)) for t in MTT_TAGS}
        mtt["rock"] = float(rng.uniform(0.5, 0.9))
        mtt["piano"] = float(rng.uniform(0.01, 0.05))
        out["musicnn-mtt"][tid] = mtt
        out["musicnn-msd"][tid] = {t: float(rng.uniform(0.01, 0.2)) for t in MSD_TAGS}
    quiet = {"quiet": 0.3, "soft": 0.3, "slow": 0.3, "ambient": 0.3, "new age": 0.3}
    no_drums = {"drums": 0.001, "beat": 0.001, "beats": 0.001}
    out["musicnn-mtt"][1].update(piano=0.09, **quiet, **no_drums)
    out["musicnn-mtt"][2].update(piano=0.10, drums=0.5, beat=0.5, beats=0.5, loud=0.5, quiet=0.001, soft=0.001)
    out["musicnn-mtt"][3].update(piano=0.011, **quiet, **no_drums)
    out["musicnn-mtt"][4].update(rock=0.95, piano=0.01)  # the loudest tag, and no piano at all
    for tid in (1, 3):
        out["musicnn-msd"][tid].update({"chillout": 0.3, "chill": 0.3, "Mellow": 0.3, "easy listening": 0.3})
    return out


@pytest.fixture(scope="module")
def tagged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = write_store(tmp_path_factory.mktemp("find") / "store", fake_model(D), records())
    with Store.open_for_indexing(folder, fake_model(D)) as store:
        for tagger, tags in tag_values().items():
            store.write_sound_tags(tagger, tags)
    return folder


def ids(found) -> list[int]:  # type: ignore[no-untyped-def]
    return [r.track_id for r in found.results]


def test_every_word_counts(tagged: Path) -> None:
    with Store.open(tagged) as store:
        piano = store.find("piano", k=3)
        assert ids(piano)[:2] == [2, 1]  # percentiles: 0.10 and 0.09 are this library's most piano
        both = store.find("calm piano without drums", k=3)
        # 1 has all three; 2 is the most piano but loud with drums; 3 is calm without drums but no piano
        assert ids(both)[0] == 1
        assert ids(both).index(1) < (ids(both).index(3) if 3 in ids(both) else 99)
        assert 2 not in ids(both)
        top = both.results[0]
        assert [m["word"] for m in top.matched] == ["calm", "piano", "drums"]
        piano_match = top.matched[1]
        assert piano_match["tags"][0]["tag"] == "piano" and piano_match["tags"][0]["percentile"] > 0.95
        assert piano_match["tags"][0]["probability"] == pytest.approx(0.09, abs=1e-4)
        assert top.matched[2]["negated"] and top.matched[2]["tags"][0]["inverted"]
        assert 0 < top.score <= 1


def test_a_tag_with_a_high_prior_does_not_drown_the_others(tagged: Path) -> None:
    """Raw probabilities would let rock (0.5-0.9) outweigh piano (0.01-0.1); percentiles do not."""
    with Store.open(tagged) as store:
        order = ids(store.find("rock and piano", k=N))
        assert order.index(1) < order.index(4) and order.index(2) < order.index(4)
        assert order.index(4) > N // 4  # a sum of probabilities would put it first (0.96 against 0.8)


def test_filters_variety_and_like(tagged: Path) -> None:
    with Store.open(tagged) as store:
        jazz = store.find("piano", k=10, where="genre = 'Jazz'")
        assert ids(jazz) and all(r.track["genre"] == "Jazz" for r in jazz.results)
        capped = store.find("piano", k=6, max_per_artist=1)
        assert len({r.track["artist"] for r in capped.results}) == 6
        like = store.find("piano", k=5, like=10)
        assert 10 not in ids(like) and all(r.similarity is not None for r in like.results)
        neighbours = {n.track_id for n in store.similar(10, k=50)}
        assert set(ids(like)) <= neighbours
        scores = [r.score for r in like.results]
        assert scores == sorted(scores, reverse=True)  # the neighbours re-ranked by the words
        moved = store.find("piano", k=5, centroid=0.5)
        assert len(moved.results) == 5
        every = store.find("piano", k=N, centroid=0.5, max_per_artist=N)  # more than the re-ranked pool would hold
        assert len(every.results) == N and all(0 <= r.score <= 1 for r in every.results)
        with pytest.raises(InvalidQuery, match="centroid"):
            store.find("piano", centroid=2)
        with pytest.raises(InvalidQuery, match="k must be"):
            store.find("piano", k=0)
        nothing = store.find("piano", where="genre = 'Polka'")
        assert nothing.results == [] and "filter" in (nothing.reason or "")


def test_bad_text_gives_a_reason_not_an_error(tagged: Path) -> None:
    with Store.open(tagged) as store:
        for text, reason in [("some music", "no word that describes a sound"), ("zzxq", 'no tag matches "zzxq"'),
                             ("音楽", "no tag matches"), ("<b>x</b>'; DROP TABLE tracks", "no tag matches")]:
            found = store.find(text)
            assert found.results == [] and reason in (found.reason or ""), text
        assert store.count("tracks") == N
        with pytest.raises(InvalidQuery):
            store.find("")
        with pytest.raises(InvalidQuery):
            store.find("x" * 1000)


def test_a_store_without_tags_says_how_to_add_them(tmp_path: Path) -> None:
    folder = write_store(tmp_path / "store", fake_model(D), records(5))
    with Store.open(folder) as store:
        found = store.find("calm piano")
    assert found.results == [] and found.untagged == 5
    assert "musicmap index" in (found.reason or "") and "nothing is embedded again" in (found.reason or "")


def test_tags_written_later_are_seen_by_an_open_store(tmp_path: Path) -> None:
    folder = write_store(tmp_path / "store", fake_model(D), records(8))
    reader = Store.open(folder)
    try:
        assert reader.find("piano").results == []
        reader.release()
        with Store.open_for_indexing(folder, fake_model(D)) as store:
            values = tag_values(8)
            for tagger, tags in values.items():
                store.write_sound_tags(tagger, tags)
        assert ids(reader.find("piano", k=2)) == [2, 1]
    finally:
        reader.close()


def test_maest_styles_are_words_too(tmp_path: Path) -> None:
    """Where MAEST made the vectors its Discogs styles are read (a style or a genre by name); a style
    below a track's stored top 20 counts as 0 for it, not as unknown."""
    styles = ["Electronic---Dark Ambient", "Electronic---Techno", "Classical---Baroque", "Rock---Punk"]
    rng = np.random.default_rng(1)
    recs = []
    for i in range(12):
        kept = {"Electronic---Techno": 0.4, "Rock---Punk": 0.3} if i % 2 else {"Classical---Baroque": 0.5}
        if i == 4:
            kept["Electronic---Dark Ambient"] = 0.6
        recs.append(TrackRecord(path=f"/m/{i}.ogg", size=1, mtime=1.0, tags={"title": f"t{i}"},
                                vector=rng.normal(size=D).astype(np.float32), styles=kept))
    folder = write_store(tmp_path / "store", fake_model(D, kind="maest"), recs)
    with Store.open(folder) as store:
        dark = store.find("dark ambient", k=3)
        assert dark.parsed.words[0].how == "discogs" and ids(dark)[0] == 5  # track ids start at 1
        assert dark.results[0].matched[0]["tags"][0]["tag"] == "Electronic---Dark Ambient"
        assert dark.results[1].matched[0]["tags"][0]["probability"] == 0.0
        electronic = store.find("electronic", k=6)  # the genre: the sum of its styles
        # Electronic's styles summed: 0.6 for id 5 (Dark Ambient), 0.4 for the even ids (Techno), 0 for the rest
        assert ids(electronic)[0] == 5 and set(ids(electronic)) < {2, 4, 5, 6, 8, 10, 12} and len(ids(electronic)) == 6
        assert len(styles) == 4
