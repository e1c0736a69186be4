"""OpenSubsonic under /rest/: the specification's shapes in JSON and XML, its authentication mapped
to the server's token, its errors; and a real client library from PyPI (py-opensonic) against a
running ``musicmap serve``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from urllib.parse import urlparse
from xml.etree import ElementTree as ET

import dash
import pytest
from flask.testing import FlaskClient

from explorer import create_app
from store import Store
from tests.conftest import DemoStore, serving

TOKEN = "sesame-token"
NS = "{http://subsonic.org/restapi}"


@pytest.fixture(scope="module")
def app(demo_store: DemoStore) -> Iterator[dash.Dash]:
    with Store.open(demo_store.store) as store:
        yield create_app(store, token=TOKEN)


@pytest.fixture
def client(app: dash.Dash) -> FlaskClient:
    return app.server.test_client()


AUTH = {"u": "anyone", "p": TOKEN, "v": "1.16.1", "c": "test", "f": "json"}


def _json(client: FlaskClient, method: str, **params: object) -> dict:
    response = client.get(f"/rest/{method}", query_string={**AUTH, **params})
    assert response.status_code == 200 and response.mimetype == "application/json"
    body = json.loads(response.get_data(as_text=True))["subsonic-response"]
    assert body["version"] == "1.16.1" and body["type"] == "musicmap" and body["openSubsonic"] is True
    assert isinstance(body["serverVersion"], str)
    return body


def test_every_credential_form_and_each_refusal(client: FlaskClient) -> None:
    salt = "c19b2d"
    good = [{"u": "x", "p": TOKEN}, {"u": "x", "p": "enc:" + TOKEN.encode().hex()},
            {"u": "x", "t": hashlib.md5((TOKEN + salt).encode()).hexdigest(), "s": salt}, {"apiKey": TOKEN}]
    for creds in good:
        body = client.get("/rest/ping.view", query_string={**creds, "f": "json", "v": "1.16.1", "c": "t"}).get_json()
        assert body["subsonic-response"]["status"] == "ok", creds
    bad = [({"u": "x", "p": "wrong"}, 40), ({"u": "x", "p": "enc:zz"}, 40),
           ({"u": "x", "t": hashlib.md5(b"wrong" + salt.encode()).hexdigest(), "s": salt}, 40),
           ({"apiKey": "nope"}, 44), ({"apiKey": TOKEN, "u": "x"}, 43),
           ({"u": "x", "p": TOKEN, "t": "a", "s": "b"}, 43), ({}, 10), ({"u": "x"}, 10)]
    for creds, code in bad:
        response = client.get("/rest/ping", query_string={**creds, "f": "json"})
        body = response.get_json()["subsonic-response"]
        assert response.status_code == 200 and body["status"] == "failed" and body["error"]["code"] == code, creds
        assert body["error"]["message"]
    # from another machine over plain HTTP a password is refused (42); the salted token and apiKey are not
    far = {"REMOTE_ADDR": "192.168.1.20"}
    for creds in good:
        body = client.get("/rest/ping", query_string={**creds, "f": "json"}, environ_base=far).get_json()
        body = body["subsonic-response"]
        if "p" in creds:
            assert body["status"] == "failed" and body["error"]["code"] == 42 and "salted token" in body["error"][
                "message"]
        else:
            assert body["status"] == "ok", creds
    secure = client.get("/rest/ping", query_string={"u": "x", "p": TOKEN, "f": "json"}, environ_base=far,
                        base_url="https://musicmap.example").get_json()["subsonic-response"]
    assert secure["status"] == "ok"  # over HTTPS the password is not in the clear
    # the explorer's own token check does not stand in the way, and does not open the rest of it
    assert client.get("/api/v1/tracks").status_code == 401
    # public, as the specification requires
    ext = client.get("/rest/getOpenSubsonicExtensions?f=json").get_json()["subsonic-response"]
    assert {"name": "sonicSimilarity", "versions": [1]} in ext["openSubsonicExtensions"]


def test_sonic_similar_tracks_and_path_shapes(client: FlaskClient, demo_store: DemoStore) -> None:
    body = _json(client, "getSonicSimilarTracks", id=5, count=7)
    matches = body["sonicMatch"]
    assert body["status"] == "ok" and len(matches) == 7
    sims = [m["similarity"] for m in matches]
    assert sims == sorted(sims, reverse=True) and all(0.0 <= s <= 1.0 for s in sims)
    assert all(m["entry"]["id"] != "5" for m in matches)
    entry = matches[0]["entry"]
    assert entry["isDir"] is False and isinstance(entry["id"], str) and entry["title"]
    assert isinstance(entry["duration"], int) and entry["suffix"] in ("mp3", "flac", "ogg", "opus", "m4a", "wav")
    assert entry["contentType"].startswith("audio/") and not entry["path"].startswith("/")
    with Store.open(demo_store.store) as store:
        track = store.track(int(entry["id"]))
        assert entry["title"] == track["title"] and entry.get("artist") == track["artist"]
        assert store.file_path(int(entry["id"])).endswith(entry["path"])
    assert _json(client, "getSonicSimilarTracks", id=5)["sonicMatch"].__len__() == 10  # count defaults to 10

    path = _json(client, "findSonicPath", startSongId=3, endSongId=60, count=6)["sonicMatch"]
    ids = [m["entry"]["id"] for m in path]
    assert ids[0] == "3" and ids[-1] == "60" and len(ids) == 6 and len(set(ids)) == 6
    assert path[0]["similarity"] == 1.0  # relative to the start song

    song = _json(client, "getSimilarSongs2", id=5, count=4)["similarSongs2"]["song"]
    assert len(song) == 4 and all(s["id"] != "5" for s in song)
    by_artist = _json(client, "getSimilarSongs2", id=entry["artistId"], count=3)["similarSongs2"]["song"]
    assert len(by_artist) == 3
    assert _json(client, "getSong", id=5)["song"]["id"] == "5"


def test_xml_form_follows_subsonic_conventions(client: FlaskClient) -> None:
    response = client.get("/rest/getSonicSimilarTracks", query_string={**AUTH, "f": "xml", "id": 5, "count": 3})
    assert response.status_code == 200 and response.mimetype == "text/xml"
    root = ET.fromstring(response.get_data())
    assert root.tag == f"{NS}subsonic-response" and root.get("status") == "ok" and root.get("openSubsonic") == "true"
    matches = root.findall(f"{NS}sonicMatch")
    assert len(matches) == 3 and all(0 <= float(m.get("similarity")) <= 1 for m in matches)
    entry = matches[0].find(f"{NS}entry")
    assert entry is not None and entry.get("isDir") == "false" and entry.get("id") and entry.get("title")
    failed = ET.fromstring(client.get("/rest/ping", query_string={"u": "x", "p": "wrong"}).get_data())
    error = failed.find(f"{NS}error")
    assert failed.get("status") == "failed" and error is not None and error.get("code") == "40"
    ext = ET.fromstring(client.get("/rest/getOpenSubsonicExtensions").get_data())
    names = [e.get("name") for e in ext.findall(f"{NS}openSubsonicExtensions")]
    assert "sonicSimilarity" in names
    jsonp = client.get("/rest/ping", query_string={**AUTH, "f": "jsonp", "callback": "cb_1"})
    assert jsonp.get_data(as_text=True).startswith("cb_1({") and jsonp.mimetype == "application/javascript"


def test_errors_and_form_posts(client: FlaskClient) -> None:
    for method, params, code in (("getSonicSimilarTracks", {}, 10), ("getSonicSimilarTracks", {"id": 999999}, 70),
                                 ("getSonicSimilarTracks", {"id": "abc"}, 70),
                                 ("getSonicSimilarTracks", {"id": 5, "count": 0}, 0),
                                 ("findSonicPath", {"startSongId": 3}, 10),
                                 ("findSonicPath", {"startSongId": 3, "endSongId": 3}, 0),
                                 ("getSimilarSongs2", {"id": "ar-0000"}, 70), ("getSong", {"id": 999999}, 70)):
        body = _json(client, method, **params)
        assert body["status"] == "failed" and body["error"]["code"] == code, (method, params, body)
        assert "/" not in body["error"]["message"]  # never the store's folder
    unknown = client.get("/rest/getPodcasts", query_string=AUTH)
    assert unknown.status_code == 404 and unknown.get_json()["subsonic-response"]["error"]["code"] == 0
    posted = client.post("/rest/getSonicSimilarTracks.view", data={**AUTH, "id": 5, "count": 2})
    assert posted.status_code == 200 and len(posted.get_json()["subsonic-response"]["sonicMatch"]) == 2
    audio = client.get("/rest/stream", query_string={**AUTH, "id": 5})
    assert audio.status_code == 200 and audio.mimetype.startswith("audio/")


@pytest.mark.subprocess
def test_a_real_client_library_against_a_running_server(demo_store: DemoStore) -> None:
    """py-opensonic (PyPI), as a music player would use it: POST, .view, salted-token auth."""
    import libopensonic

    with serving(demo_store.store, "--token", TOKEN) as url:
        parsed = urlparse(url)
        conn = libopensonic.Connection(f"{parsed.scheme}://{parsed.hostname}", username="player", password=TOKEN,
                                       port=int(parsed.port or 80), app_name="musicmap-test")
        assert conn.ping() is True
        names = [e.name for e in conn.get_open_subsonic_extensions()]
        assert "sonicSimilarity" in names
        similar = conn.get_sonic_similar_tracks("5", count=5)
        assert len(similar) == 5 and all(m.entry.id != "5" and 0 <= m.similarity <= 1 for m in similar)
        path = conn.find_sonic_path("3", "60", count=5)
        assert [m.entry.id for m in path][0::4] == ["3", "60"]
        songs = conn.get_similar_songs2("5", count=3)
        assert len(songs) == 3 and all(s.title for s in songs)
        wrong = libopensonic.Connection(f"{parsed.scheme}://{parsed.hostname}", username="player",
                                        password="not-it", port=int(parsed.port or 80), app_name="musicmap-test")
        with pytest.raises(Exception, match=r"(?i)wrong username or password|40"):
            wrong.ping()


def test_each_method_is_a_row_of_the_table_and_documented() -> None:
    """Each OpenSubsonic method is one :class:`Subsonic` method and one row of ``METHODS`` (its name
    and parameters); the module's docstring lists every one."""
    from explorer import subsonic

    assert set(subsonic.METHODS) == {"ping", "getOpenSubsonicExtensions", "getSonicSimilarTracks", "findSonicPath",
                                     "getSimilarSongs2", "getSong", "stream", "scrobble", "star", "unstar",
                                     "setRating", "getStarred2", "getPlaylists", "getPlaylist", "download",
                                     "getLicense", "getMusicFolders", "getUser", "getIndexes", "getArtists",
                                     "getArtist", "getAlbum", "getAlbumList2", "getGenres", "getSongsByGenre",
                                     "getRandomSongs", "search3", "getCoverArt", "getTopSongs"}
    for name, declared in subsonic.METHODS.items():
        assert callable(getattr(subsonic.Subsonic, declared.attribute)) and name in (subsonic.__doc__ or ""), name
    assert [m.name for m in subsonic.METHODS.values() if m.public] == ["getOpenSubsonicExtensions"]
