"""Players feed the person's taste through OpenSubsonic (issue #31): scrobble (played, now playing,
skipped), star/unstar, setRating, getStarred2, the "musicmap · For you" playlist; the lists steered
by it; the protocol's error codes. Every test records into its own copy of the demo store."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode, urlparse
from urllib.request import urlopen

import pytest
from flask.testing import FlaskClient

from explorer import create_app
from store import Store
from tests.conftest import DemoStore, serving

TOKEN = "sesame-token"
AUTH = {"u": "anyone", "p": TOKEN, "v": "1.16.1", "c": "Test Player/2", "f": "json"}


@pytest.fixture
def own_store(demo_store: DemoStore, tmp_path: Path) -> Path:
    """A copy of the demo store this test may record into (the shared one stays read-only)."""
    copy = tmp_path / "store"
    shutil.copytree(demo_store.store, copy)
    return copy


@pytest.fixture
def store(own_store: Path) -> Iterator[Store]:
    with Store.open(own_store) as opened:
        yield opened


@pytest.fixture
def client(store: Store) -> FlaskClient:
    return create_app(store, token=TOKEN).server.test_client()


def call(client: FlaskClient, method: str, params: dict[str, object] | list[tuple[str, object]] | None = None,
         ok: bool | None = True) -> dict:
    given = list(params.items()) if isinstance(params, dict) else list(params or [])
    query = [(k, v) for k, v in AUTH.items() if k not in {name for name, _ in given}] + given
    response = client.get(f"/rest/{method}?{urlencode(query)}")
    assert response.status_code == 200 and response.mimetype == "application/json"
    body = json.loads(response.get_data(as_text=True))["subsonic-response"]
    assert ok is None or (body["status"] == "ok") is ok, (method, params, body)
    return body


def error(client: FlaskClient, method: str, params: dict[str, object] | None = None) -> tuple[int, str]:
    body = call(client, method, params, ok=False)
    assert "/" not in body["error"]["message"].replace("Test Player/2", "")  # never the store's folder
    return body["error"]["code"], body["error"]["message"]


def events(store: Store) -> list[dict]:
    return store.journal.events().to_dict("records")


def test_star_lists_it_and_unstar_takes_it_back(client: FlaskClient, store: Store) -> None:
    call(client, "star", [("id", 5), ("id", 7)])
    assert {5, 7} <= {i for i, t in store.taste().tracks.items() if t.liked}
    starred = call(client, "getStarred2")["starred2"]["song"]
    assert {s["id"] for s in starred} == {"5", "7"} and all(s["starred"].endswith("Z") for s in starred)
    assert all(s["title"] and s["isDir"] is False for s in starred)  # songs as Child entries
    assert call(client, "getSong", {"id": 5})["song"]["starred"]  # the heart shows everywhere
    assert {e["source"] for e in events(store)} == {"subsonic:Test Player_2"}
    call(client, "unstar", {"id": 5})
    taste = store.taste().tracks
    assert 5 not in taste or not taste[5].liked
    assert taste[7].liked
    assert [s["id"] for s in call(client, "getStarred2")["starred2"]["song"]] == ["7"]
    assert "starred" not in call(client, "getSong", {"id": 5})["song"]


def test_ratings_and_a_disliked_song_never_listed(client: FlaskClient, store: Store) -> None:
    similar = [s["id"] for s in call(client, "getSimilarSongs2", {"id": 5, "count": 10})["similarSongs2"]["song"]]
    gone = int(similar[0])
    call(client, "setRating", {"id": gone, "rating": 1})
    assert store.taste().tracks[gone].disliked
    for count in (10, 50):
        songs = call(client, "getSimilarSongs2", {"id": 5, "count": count})["similarSongs2"]["song"]
        assert str(gone) not in {s["id"] for s in songs} and len(songs) == count
    sonic = call(client, "getSonicSimilarTracks", {"id": 5, "count": 20})["sonicMatch"]
    assert str(gone) not in {m["entry"]["id"] for m in sonic}
    path = call(client, "findSonicPath", {"startSongId": 5, "endSongId": 60, "count": 12})["sonicMatch"]
    assert str(gone) not in {m["entry"]["id"] for m in path}
    call(client, "setRating", {"id": gone, "rating": 0})
    assert gone not in store.taste().tracks or not store.taste().tracks[gone].disliked
    call(client, "setRating", {"id": 9, "rating": 5})
    assert store.taste().tracks[9].liked
    call(client, "setRating", {"id": 9, "rating": 3})
    assert 9 not in store.taste().tracks or not store.taste().tracks[9].liked


def test_scrobbles_once_per_time_and_now_playing_then_skip(client: FlaskClient, store: Store) -> None:
    t = int(time.time() * 1000) - 600_000
    for _ in range(2):  # sent twice: recorded once
        call(client, "scrobble", {"id": 11, "time": t})
    played = [e for e in events(store) if e["kind"] == "played"]
    duration = store.track(11)["duration"]
    assert len(played) == 1 and played[0]["track_id"] == 11 and played[0]["at"] == t / 1000
    assert played[0]["seconds"] == pytest.approx(duration)
    assert played[0]["key"] == f"subsonic:Test Player_2|scrobble:11:{t}"
    assert store.taste().tracks[11].plays == 1

    call(client, "scrobble", {"id": 12, "time": t + 10_000, "submission": "false"})  # now playing A
    assert not [e for e in events(store) if e["track_id"] == 12]
    call(client, "scrobble", {"id": 13, "time": t + 15_000, "submission": "false"})  # B, 5 s later
    skipped = [e for e in events(store) if e["kind"] == "skipped"]
    assert [(e["track_id"], e["seconds"]) for e in skipped] == [(12, 5.0)]
    assert store.taste().tracks[12].skips == 1
    # B scrobbled as played: then C is not a skip of B; another client's now playing is its own
    call(client, "scrobble", {"id": 13, "time": t + 16_000})
    call(client, "scrobble", {"id": 14, "time": t + 20_000, "submission": "false"})
    call(client, "scrobble", {"id": 15, "time": t + 21_000, "submission": "false", "c": "Other"})
    assert [e["track_id"] for e in events(store) if e["kind"] == "skipped"] == [12]
    # a later now playing after A's end is not a skip
    call(client, "scrobble", {"id": 16, "time": t + 20_000 + round(store.track(14)["duration"] * 1000) + 1000,
                              "submission": "false"})
    assert [e["track_id"] for e in events(store) if e["kind"] == "skipped"] == [12]


def test_an_artists_top_songs_are_what_was_played(client: FlaskClient, store: Store) -> None:
    artist = str(store.track(21)["artist"])
    same = [int(i) for (i,) in store.sql(f"SELECT id FROM tracks WHERE artist = '{artist}' ORDER BY id").rows]
    assert len(same) >= 3, same
    a, b, c = same[:3]
    assert call(client, "getTopSongs", {"artist": artist})["topSongs"] == {"song": []}  # nothing played yet
    t = int(time.time() * 1000) - 600_000
    for i, track in enumerate([b, b, a]):
        call(client, "scrobble", {"id": track, "time": t + i})
    call(client, "star", {"id": c})
    top = call(client, "getTopSongs", {"artist": artist.upper(), "count": 5})["topSongs"]["song"]
    assert [s["id"] for s in top] == [str(b), str(a), str(c)]  # two plays, one play, a like
    assert call(client, "getTopSongs", {"artist": artist, "count": 1})["topSongs"]["song"][0]["id"] == str(b)
    assert call(client, "getTopSongs", {"artist": "Nobody at all"})["topSongs"] == {"song": []}
    assert error(client, "getTopSongs")[0] == 10


def test_the_for_you_playlist(client: FlaskClient) -> None:
    listed = call(client, "getPlaylists")["playlists"]["playlist"]
    assert [(p["id"], p["name"], p["songCount"]) for p in listed] == [("foryou", "musicmap · For you", 0)]
    empty = call(client, "getPlaylist", {"id": "foryou"})["playlist"]
    assert empty["songCount"] == 0 and not empty.get("entry") and "Nothing to mix" in empty["comment"]
    call(client, "star", [("id", 3), ("id", 4), ("id", 30)])
    mix = call(client, "getPlaylist", {"id": "foryou"})["playlist"]
    ids = [e["id"] for e in mix["entry"]]
    assert mix["name"] == "musicmap · For you" and mix["songCount"] == len(ids) > 0 and len(set(ids)) == len(ids)
    assert not {"3", "4", "30"} & set(ids) and all(e["title"] for e in mix["entry"])
    assert call(client, "getPlaylists")["playlists"]["playlist"][0]["songCount"] == len(ids)
    assert error(client, "getPlaylist", {"id": "other"})[0] == 70


def test_errors(client: FlaskClient, store: Store) -> None:
    now_ms = int(time.time() * 1000)
    for method, params, code, words in (
            ("scrobble", {}, 10, "id"), ("star", {}, 10, "id"), ("unstar", {}, 10, "id"),
            ("setRating", {"id": 5}, 10, "rating"),
            ("setRating", {"rating": 1}, 10, "id"), ("getPlaylist", {}, 10, "id"),
            ("scrobble", {"id": 999999}, 70, "999999"), ("star", {"id": 999999}, 70, "999999"),
            ("star", {"id": "abc"}, 70, "abc"), ("setRating", {"id": 999999, "rating": 1}, 70, "999999"),
            ("setRating", {"id": 5, "rating": 6}, 0, "rating"), ("setRating", {"id": 5, "rating": "x"}, 0, "rating"),
            ("scrobble", {"id": 5, "time": now_ms + 3_600_000}, 0, "future"),
            ("scrobble", {"id": 5, "time": -5}, 0, "1970"), ("scrobble", {"id": 5, "time": "soon"}, 0, "1970"),
            ("scrobble", {"id": 5, "submission": "maybe"}, 0, "submission"),
            ("star", {"albumId": "al-1"}, 0, "songs only")):
        got, message = error(client, method, params)
        assert got == code and words in message, (method, params, got, message)
    assert events(store) == []


def test_a_flood_is_refused_with_its_message(client: FlaskClient, store: Store) -> None:
    ids = [("id", i) for i in range(1, 61)]
    body: dict = {}
    for _ in range(60):  # 3,600 likes at once: beyond the burst of 2,000
        body = call(client, "star", ids, ok=None)
        if body["status"] == "failed":
            break
    assert body["status"] == "failed" and body["error"]["code"] == 0 and "too many events" in body["error"]["message"]


def test_a_server_that_does_not_record(own_store: Path) -> None:
    with Store.open(own_store) as store:
        store.record_events = False
        client = create_app(store, token=TOKEN).server.test_client()
        for method, params in (("scrobble", {"id": 5}), ("star", {"id": 5}), ("setRating", {"id": 5, "rating": 1})):
            code, message = error(client, method, params)
            assert code == 0 and "cannot record" in message
        assert call(client, "getStarred2")["starred2"] == {"song": []}
        assert call(client, "getPlaylists")["playlists"]["playlist"][0]["songCount"] == 0


@pytest.mark.subprocess
def test_a_player_library_scrobbles_and_stars_over_http(own_store: Path) -> None:
    """py-sonic (PyPI ``py-sonic``, module ``libsonic``), as a Subsonic player would use it,
    against a running ``musicmap serve``; skipped where it is not installed."""
    libsonic = pytest.importorskip("libsonic")
    with serving(own_store, "--token", TOKEN) as url:
        parsed = urlparse(url)
        conn = libsonic.Connection(f"{parsed.scheme}://{parsed.hostname}", "player", TOKEN,
                                   port=int(parsed.port or 80), appName="py-sonic test")
        assert conn.ping()
        t = int(time.time()) - 60  # py-sonic takes Unix seconds, and sends milliseconds
        conn.scrobble(21, submission=True, listenTime=t)
        conn.scrobble(21, submission=True, listenTime=t)
        conn.star(sids=[22])
        conn.setRating(23, 1)
        starred = conn.getStarred2()["starred2"]["song"]
        assert [s["id"] for s in (starred if isinstance(starred, list) else [starred])] == ["22"]
        listed = conn.getPlaylists()["playlists"]["playlist"]
        assert (listed if isinstance(listed, list) else [listed])[0]["name"] == "musicmap · For you"
        query = urlencode({"u": "x", "p": TOKEN, "f": "json", "id": 21, "count": 50})
        with urlopen(f"{url}/rest/getSimilarSongs2?{query}") as response:
            listed_ids = {s["id"] for s in json.load(response)["subsonic-response"]["similarSongs2"]["song"]}
        assert "23" not in listed_ids
    with Store.open(own_store) as store:
        kinds = [(e["kind"], e["track_id"]) for e in store.journal.events().to_dict("records")]
        assert kinds.count(("played", 21)) == 1 and ("liked", 22) in kinds and ("disliked", 23) in kinds
        assert all(e["source"] == "subsonic:py-sonic test" for e in store.journal.events().to_dict("records"))
