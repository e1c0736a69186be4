"""Song paths and playlist extension, on stores whose vectors are known: a line of tracks along a
great circle (the path must follow it), clusters, artists and versions placed on purpose."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from store import InvalidQuery, Store, StoreError, TrackNotFound, TrackRecord, playlist_tracks, read_m3u
from tests.conftest import run_cli
from tests.fakes import fake_model, write_store

D = 16
LINE = 21  # tracks 1..21 along a quarter circle from e0 to e1


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


@pytest.fixture(scope="module")
def line_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tracks 1–21 on the arc from e0 to e1 (artist L{i // 2}: two per artist), then 200 tracks in
    four far clusters (e2..e5) with repeated artists, and versions of songs ("(Live)")."""
    folder = tmp_path_factory.mktemp("listening") / "store"
    rng = np.random.default_rng(0)
    records = []
    for i in range(LINE):
        theta = (np.pi / 2) * i / (LINE - 1)
        v = np.zeros(D)
        v[0], v[1] = np.cos(theta), np.sin(theta)
        v[6:] = 0.003 * rng.standard_normal(D - 6)
        records.append(TrackRecord(path=f"/music/line/{i:02d}.flac", size=1, mtime=1.0, vector=_unit(v),
                                   tags={"title": f"Step {i}", "artist": f"L{i // 2}", "genre": "line",
                                         "album": f"Line {i // 2}", "duration": 200.0}))
    for c in range(4):
        for j in range(50):
            v = np.zeros(D)
            v[2 + c] = 1.0
            v += 0.15 * rng.standard_normal(D)
            title = f"Song {c}-{j // 2}" + (" (Live)" if j % 2 else "")
            records.append(TrackRecord(path=f"/music/c{c}/{j:02d}.flac", size=1, mtime=1.0, vector=_unit(v),
                                       tags={"title": title, "artist": f"C{c}-{j % 5}", "genre": f"g{c}",
                                             "album": f"Album {c}-{j % 3}", "duration": 180.0}))
    info = fake_model(D)
    return write_store(folder, info, records)


def test_the_path_follows_the_line_in_order(line_store: Path) -> None:
    with Store.open(line_store) as store:
        steps = store.song_path(1, LINE, length=LINE)
        assert [s.track_id for s in steps] == list(range(1, LINE + 1))
        every_other = store.song_path(1, LINE, length=11)
        assert [s.track_id for s in every_other] == list(range(1, LINE + 1, 2))
        to_end = [s.to_end for s in every_other]
        assert to_end == sorted(to_end) and to_end[-1] == 1.0  # steadily toward B
        assert all(s.to_previous is not None and s.to_previous > 0.95 for s in every_other[1:])  # close steps
        backwards = store.song_path(LINE, 1, length=LINE)
        assert [s.track_id for s in backwards] == list(range(LINE, 0, -1))


def test_the_path_keeps_variety_rules_and_filters_over_the_whole_path(line_store: Path) -> None:
    with Store.open(line_store) as store:
        steps = store.song_path(1, LINE, length=LINE, max_per_artist=1)
        ids = [s.track_id for s in steps]
        artists = [s.track["artist"] for s in steps]
        assert ids[0] == 1 and ids[-1] == LINE and len(set(ids)) == len(ids)
        assert len(set(artists)) == len(artists)  # the ends count too
        line_ids = [i for i in ids if i <= LINE]
        assert line_ids == sorted(line_ids)  # what it takes from the line it takes in order
        only_line = store.song_path(1, LINE, length=LINE, max_per_album=1, where="genre = 'line'")
        assert all(s.track["genre"] == "line" for s in only_line)
        assert len(only_line) == 11  # 11 albums on the line: then it runs out, and says so by its length
        assert only_line[-1].track_id == LINE


def test_path_errors_are_named(line_store: Path) -> None:
    with Store.open(line_store) as store:
        with pytest.raises(TrackNotFound, match="no track with id 99999"):
            store.song_path(1, 99999)
        with pytest.raises(InvalidQuery, match="two different tracks"):
            store.song_path(3, 3)
        with pytest.raises(InvalidQuery, match="length must be"):
            store.song_path(1, 2, length=1)
        with pytest.raises(InvalidQuery, match="where"):
            store.song_path(1, 2, where="nonsense ((")


def test_extension_fits_the_playlist_never_repeats_it_and_keeps_caps(line_store: Path) -> None:
    with Store.open(line_store) as store:
        cluster0 = [int(r[0]) for r in store.sql("SELECT id FROM tracks WHERE genre = 'g0' ORDER BY id").rows]
        members = cluster0[:4]
        added = store.extend(members, n=10)
        ids = [a.track_id for a in added]
        assert len(ids) == 10 and not set(ids) & set(members) and len(set(ids)) == 10
        assert all(a.track["genre"] == "g0" for a in added)  # it fits: the same cluster
        capped = store.extend(members, n=10, max_per_artist=2)
        counts: dict[str, int] = {}
        for t in [store.track(m) for m in members] + [a.track for a in capped]:
            counts[t["artist"]] = counts.get(t["artist"], 0) + 1
        assert max(counts.values()) <= 2  # the playlist's own tracks count
        # the cluster's 5 artists × 2 leave 6 places (4 are the playlist's): the rest comes from further away
        assert len(capped) == 10 and sum(a.track["genre"] == "g0" for a in capped) == 6
        deduped = store.extend(members, n=10, dedupe=True)
        member_songs = {store.track(m)["title"].replace(" (Live)", "") for m in members}
        assert not {a.track["title"].replace(" (Live)", "") for a in deduped} & member_songs


def test_extension_by_seeds_draws_from_each_member(line_store: Path) -> None:
    with Store.open(line_store) as store:
        g1 = int(store.sql("SELECT min(id) FROM tracks WHERE genre = 'g1'").rows[0][0])
        g3 = int(store.sql("SELECT min(id) FROM tracks WHERE genre = 'g3'").rows[0][0])
        mixed = store.extend([g1, g3], n=8, mode="seeds")
        genres = [a.track["genre"] for a in mixed]
        assert genres[:2] in (["g1", "g3"], ["g3", "g1"]) and genres.count("g1") == genres.count("g3") == 4
        with pytest.raises(InvalidQuery, match="mode must be"):
            store.extend([g1], mode="random")
        with pytest.raises(TrackNotFound):
            store.extend([g1, 99999])
        with pytest.raises(InvalidQuery, match="n must be"):
            store.extend([g1], n=0)


def test_m3u_reading(tmp_path: Path, line_store: Path) -> None:
    lists = tmp_path / "lists"
    lists.mkdir()
    playlist = lists / "mix.m3u"
    playlist.write_bytes(
        b"#EXTM3U\n#EXTINF:200,L0 - Step 0\n/music/line/00.flac\n\n# a comment\n"
        b"file:///music/line/05%20x/../04.flac\nhttp://radio.example/stream\n"
        b"../elsewhere/not-in-store.flac\n/music/line/00.flac\n/music/c0/03.flac\r\n")
    paths = read_m3u(playlist)
    assert paths == ["/music/line/00.flac", "/music/line/05 x/../04.flac", str(tmp_path / "elsewhere" /
                     "not-in-store.flac"), "/music/line/00.flac", "/music/c0/03.flac"]
    with Store.open(line_store) as store:
        ids, unknown = playlist_tracks(store, paths)
    assert ids == [1, 5, LINE + 4] and unknown == [str(tmp_path / "elsewhere" / "not-in-store.flac")]
    latin = lists / "old.m3u"
    latin.write_bytes("/music/caf\xe9.flac\n".encode("latin-1"))
    assert read_m3u(latin) == ["/music/café.flac"]
    with pytest.raises(StoreError, match="cannot read playlist"):
        read_m3u(lists / "missing.m3u")


def test_cli_path_and_extend(tmp_path: Path, line_store: Path) -> None:
    proc = run_cli("path", "1", str(LINE), "--store", line_store, "--steps", "6", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert [s["track_id"] for s in out["steps"]][0::5] == [1, LINE] and len(out["steps"]) == 6
    proc = run_cli("path", "L0 Step 0", "L10 Step 20", "--store", line_store, "--steps", "21", "--m3u", "-")
    assert proc.returncode == 0, proc.stderr
    assert [line for line in proc.stdout.splitlines() if line.startswith("/")] == \
        [f"/music/line/{i:02d}.flac" for i in range(LINE)]
    playlist = tmp_path / "p.m3u8"
    playlist.write_text("#EXTM3U\n/music/c2/00.flac\n/music/c2/02.flac\n/gone.flac\n", encoding="utf-8")
    out_m3u = tmp_path / "more.m3u"
    proc = run_cli("extend", playlist, "--store", line_store, "-n", "5", "--with-playlist", "--m3u", out_m3u)
    assert proc.returncode == 0, proc.stderr
    assert "not in the store, skipped: /gone.flac" in proc.stderr
    lines = [line for line in out_m3u.read_text().splitlines() if not line.startswith("#")]
    assert lines[:2] == ["/music/c2/00.flac", "/music/c2/02.flac"] and len(lines) == 7
    assert all(line.startswith("/music/c2/") for line in lines) and len(set(lines)) == 7
    proc = run_cli("extend", playlist, "--store", line_store, "-n", "3", "--json")
    added = json.loads(proc.stdout)["added"]
    assert len(added) == 3 and json.loads(proc.stdout)["unknown"] == ["/gone.flac"]
    # bad input: named, exit 1
    for args, message in ((("path", "1", "99999"), "no track with id 99999"),
                          (("path", "4", "4"), "same track"),
                          (("path", "1", "2", "--steps", "1"), "length must be"),
                          (("extend", tmp_path / "nope.m3u"), "cannot read playlist"),
                          (("extend", tmp_path / "empty.m3u"), "the playlist is empty")):
        if "empty.m3u" in str(args[-1]):
            (tmp_path / "empty.m3u").write_text("#EXTM3U\n")
        proc = run_cli(*args, "--store", line_store)
        assert proc.returncode == 1 and message in proc.stderr, (args, proc.stderr)
