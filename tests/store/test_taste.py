"""Taste: the listening journal (events, undo, duplicates, bad input, read-only, identity across
prune) and what it does to every list (steering, dislikes, explanations, the mix), on a store
whose vectors are known: four moods of 30 tracks, each mood five albums of six."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from store import Event, InvalidQuery, NotRecording, Store, TooManyEvents, TrackNotFound, TrackRecord
from store import journal as journal_module
from store import taste as taste_module
from tests.fakes import fake_model, write_store

D = 16
MOODS = 4
PER_MOOD = 30
DAY = 86400.0


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


@pytest.fixture
def moods(tmp_path: Path) -> Path:
    """Mood m's tracks lie around axis m (ids 30m+1 .. 30m+30, in that order), with a shared
    'bridge' direction so that moods 0 and 1 are each other's nearest."""
    rng = np.random.default_rng(3)
    records = []
    for m in range(MOODS):
        for j in range(PER_MOOD):
            v = np.zeros(D)
            v[m] = 1.0
            v[4] = 0.8 if m in (0, 1) else 0.0  # moods 0 and 1 share a direction
            v += 0.25 * rng.standard_normal(D)
            records.append(TrackRecord(path=f"/music/m{m}/a{j // 6}/{j:02d}.flac", size=1000 + j, mtime=1.0,
                                       vector=_unit(v), fingerprint=f"fp-{m}-{j}",
                                       tags={"title": f"Song {m}.{j}", "artist": f"Artist {m}.{j // 6}",
                                             "album": f"Album {m}.{j // 6}", "genre": f"mood{m}",
                                             "duration": 200.0}))
    return write_store(tmp_path / "store", fake_model(D), records)


def _mood(track_id: int) -> int:
    return (track_id - 1) // PER_MOOD


def _ids(mood: int) -> list[int]:
    return list(range(mood * PER_MOOD + 1, (mood + 1) * PER_MOOD + 1))


def test_events_are_recorded_undone_and_recognised_twice(moods: Path) -> None:
    with Store.open(moods) as store:
        first = store.record([Event("liked", 1, source="cli"), Event("played", 2, seconds=180, duration=200,
                                                                     source="cli", key="scrobble:2:1000")])
        assert [r.duplicate for r in first] == [False, False] and all(r.ids for r in first)
        again = store.record([Event("played", 2, seconds=180, duration=200, source="cli", key="scrobble:2:1000")])
        assert again[0].duplicate and not again[0].ids  # the same scrobble twice: recognised, stored once
        assert store.journal.count() == 2
        taste = store.taste()
        assert taste.tracks[1].liked and taste.tracks[2].plays == 1
        undo = store.record([Event("liked", 1, source="cli", undo=True)])
        assert undo[0].undone == first[0].ids
        assert 1 not in store.taste().tracks  # taken back: nothing left of it
        nothing = store.record([Event("disliked", 1, source="cli", undo=True)])
        assert nothing[0].undone == () and not nothing[0].ids  # nothing to undo: said, nothing written
    with Store.open(moods) as store:  # on disk, and read back by a new handle
        kinds = store.journal.events()["kind"].tolist()
        assert kinds == ["liked", "played", "undo"]


def test_state_follows_the_latest_like_or_dislike_and_events_fade(moods: Path) -> None:
    now = time.time()
    with Store.open(moods) as store:
        store.record([Event("liked", 5, at=now - 60, source="cli"), Event("disliked", 5, at=now - 30, source="cli"),
                      Event("liked", 6, at=now - 90 * DAY, source="cli"), Event("liked", 7, at=now - 10, source="cli"),
                      Event("skipped", 8, seconds=195, duration=200, source="cli"),  # after 90 %: a play
                      Event("skipped", 9, seconds=10, duration=200, source="cli"),
                      Event("skipped", 9, seconds=12, duration=200, source="cli")])
        t = store.taste().tracks
    assert t[5].disliked and not t[5].liked
    assert 0 < t[6].weight < 0.2 < t[7].weight  # 90 days = three half-lives: an eighth of a like
    assert (t[8].plays, t[8].skips, t[9].skips) == (1, 0, 2) and t[9].weight < 0


def test_bad_events_are_refused_with_nothing_written(moods: Path) -> None:
    now = time.time()
    with Store.open(moods) as store:
        bad = [(Event("loved", 1), "event kind"), (Event("liked", 1, at=now + 3600), "in the future"),
               (Event("liked", 1, at=-5.0), "from 1970"), (Event("played", 1, seconds=-3), "seconds"),
               (Event("played", 1, seconds=float("nan")), "seconds"), (Event("liked", 1, source=""), "source"),
               (Event("liked", 1, context="x" * 5000), "context")]
        for event, words in bad:
            with pytest.raises(InvalidQuery, match=words):
                store.record([Event("liked", 2, source="api"), event])  # one bad event refuses the call
        with pytest.raises(TrackNotFound, match="no track with id 999"):
            store.record([Event("liked", 999)])
        with pytest.raises(InvalidQuery, match="at most 1000 events"):
            store.record([Event("played", 1)] * 1001)
        assert store.journal.count() == 0


def test_a_flood_from_one_source_is_bounded(moods: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_module, "RATE_BURST", 50.0)
    monkeypatch.setattr(journal_module, "RATE_PER_S", 1.0)
    with Store.open(moods) as store:
        store.record([Event("played", 1 + i % 100, at=1.7e9 + i, source="flood") for i in range(50)])
        with pytest.raises(TooManyEvents, match="too many events from 'flood'") as caught:
            store.record([Event("played", 1, at=1.75e9, source="flood")])
        assert caught.value.retry_after > 0
        store.record([Event("played", 1, at=1.75e9, source="another")])  # other sources go on
        assert store.journal.count() == 51


def test_a_read_only_journal_says_so_and_lists_still_work(moods: Path) -> None:
    with Store.open(moods) as store:
        store.record([Event("disliked", 2, source="cli")])
    with Store.open(moods) as store:
        store.record_events = False
        with pytest.raises(NotRecording, match="cannot record listening events: the store was opened read-only"):
            store.record([Event("liked", 1)])
        assert 2 not in [n.track_id for n in store.similar(1, k=40)]  # what was recorded still steers


def test_dislikes_are_never_offered_and_likes_pull_their_neighbours_up(moods: Path) -> None:
    with Store.open(moods) as store:
        seed = _ids(2)[0]  # a neutral seed, in mood 2
        plain = store.similar(seed, k=20)
        assert not any(_mood(n.track_id) == 0 for n in plain[:10])
        disliked = plain[0].track_id
        store.record([Event("disliked", disliked, source="cli")]
                     + [Event("liked", i, source="cli") for i in _ids(0)[:5]])
        steered = store.similar(seed, k=20)
        assert disliked not in [n.track_id for n in steered]
        assert disliked in [n.track_id for n in store.similar(seed, k=20, taste=False)]  # --no-taste: plain
        assert [n.track_id for n in store.similar(seed, k=20, taste=False)] == [n.track_id for n in plain]
        liked_share = sum(_mood(n.track_id) == 0 for n in steered[:10]) / 10
        assert liked_share >= 0.3, [(n.track_id, n.taste) for n in steered]
        moved_up = [n for n in steered if n.taste is not None and n.taste.shift > 0]
        assert moved_up and all(n.taste is not None and n.taste.why.startswith("↑ close to") for n in moved_up)
        assert all(n.score == pytest.approx(float(np.dot(*store.vectors()[1][[seed - 1, n.track_id - 1]])), abs=1e-5)
                   for n in steered[:5])  # the score shown stays the cosine
        # a disliked track asked for by id still answers
        assert store.similar(disliked, k=3)


def test_skips_push_neighbours_down_and_say_how_often(moods: Path) -> None:
    with Store.open(moods) as store:
        seed = _ids(1)[0]
        plain = [n.track_id for n in store.similar(seed, k=10, taste=False)]
        skipped = plain[1]
        store.record([Event("skipped", skipped, seconds=5, duration=200, source="cli"),
                      Event("skipped", skipped, seconds=8, duration=200, source="cli")])
        steered = store.similar(seed, k=119)
        notes = {n.track_id: n.taste for n in steered}
        assert notes[skipped] is not None and notes[skipped].why == "↓ sounds like one you skipped twice"
        assert [n.track_id for n in steered].index(skipped) > plain.index(skipped)
        pushed = [-note.shift for i, note in notes.items() if note is not None and i != skipped]
        assert -notes[skipped].shift > max(pushed)  # the skipped track moves down most: its neighbours only
        assert [n.track_id for n in store.similar(seed, k=10, taste=False)] == plain  # sound like it


def test_path_and_extend_are_steered_too(moods: Path) -> None:
    with Store.open(moods) as store:
        start, end = _ids(0)[0], _ids(1)[0]
        plain = store.song_path(start, end, length=6, taste=False)
        banned = [s.track_id for s in plain[1:-1]]
        store.record([Event("disliked", i, source="cli") for i in banned])
        steered = store.song_path(start, end, length=6)
        assert not set(banned) & {s.track_id for s in steered[1:-1]}
        added = store.extend([_ids(3)[0]], n=10)
        assert not set(banned) & {a.track_id for a in added}


def test_the_mix_keeps_several_moods_and_leaves_out_what_was_heard(moods: Path) -> None:
    with Store.open(moods) as store:
        with pytest.raises(InvalidQuery, match="nothing to mix from yet"):
            store.mix(n=10)
        heard = _ids(0)[:4] + _ids(3)[:2]
        store.record([Event("liked", i, source="cli") for i in heard]
                     + [Event("played", i, source="cli") for i in heard])
        mix = store.mix(n=12, max_per_album=3)
    ids = [m.neighbour.track_id for m in mix]
    assert len(ids) == 12 and not set(ids) & set(heard)
    by_mood = {m: sum(_mood(i) == m for i in ids) for m in range(MOODS)}
    assert by_mood[0] >= 5 and by_mood[3] >= 2, by_mood  # both moods, in proportion (4 : 2 seeds)
    assert all(m.why.startswith("like #") and m.seed in heard for m in mix)
    albums = [m.neighbour.track["album"] for m in mix]
    assert max(albums.count(a) for a in albums) <= 3


def test_events_of_a_pruned_track_come_back_with_it(moods: Path) -> None:
    with Store.open(moods) as store:
        store.record([Event("liked", 1, source="cli"), Event("disliked", 2, source="cli")])
        row = store.tracks([1]).iloc[0]
    with Store.open_for_indexing(moods, fake_model(D)) as writable:
        writable.delete_tracks([1])
        writable.sync()
    with Store.open(moods) as store:
        assert 1 not in store.taste().tracks and store.taste().tracks[2].disliked
        with pytest.raises(TrackNotFound):
            store.record([Event("liked", 1)])
    vector = np.zeros(D, np.float32)
    vector[0] = 1.0
    with Store.open_for_indexing(moods, fake_model(D)) as writable:  # the file is back: a new id
        (new_id,) = writable.write_tracks([TrackRecord(path=str(row["path"]), size=int(row["size"]), mtime=1.0,
                                                       vector=vector, fingerprint=str(row["fingerprint"]),
                                                       tags={"title": "Song 0.0"})])
        writable.sync()
    assert new_id != 1
    with Store.open(moods) as store:
        assert store.taste().tracks[new_id].liked


def test_forgetting_removes_events_from_the_file(moods: Path) -> None:
    with Store.open(moods) as store:
        store.record([Event("liked", 1, source="cli", context={"list": "similar", "of": 12}),
                      Event("liked", 2, source="cli")])
        assert store.journal.forget([1]) == 1
        assert store.journal.events()["track_id"].tolist() == [2]
        assert store.journal.forget() == 1 and store.journal.count() == 0
    assert b"similar" not in (moods / journal_module.JOURNAL_NAME).read_bytes()  # gone from the file too


def test_closeness_is_measured_on_the_library(moods: Path) -> None:
    with Store.open(moods) as store:
        scale = store.closeness()
    assert 0.0 < scale.mu < scale.tau < 1.0  # random pairs far, tenth neighbours close
    kernel = taste_module.Closeness(scale.mu, scale.tau).kernel(np.array([scale.mu - 0.1, scale.tau, 1.0]))
    assert kernel.tolist() == pytest.approx([0.0, 0.5, 1.0])
