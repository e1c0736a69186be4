"""OpenSubsonic browsing (issue #32): folders, artists, albums, genres, search, download; each
method's shape in JSON and XML as the specification has it; the browse chain down to a song's
bytes; what an album is (discs, various artists, a missing album tag) on a library built for it;
ids that hold across re-index runs and file moves; bad input; and py-opensonic (PyPI) browsing a
running ``musicmap serve``."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse
from xml.etree import ElementTree as ET

import dash
import pytest
from flask.testing import FlaskClient

from explorer import create_app
from store import Event, Store
from tests.audio import write_tone
from tests.conftest import DemoStore, run_cli, serving

TOKEN = "sesame-token"
NS = "{http://subsonic.org/restapi}"
AUTH = {"u": "anyone", "p": TOKEN, "v": "1.16.1", "c": "browse-test", "f": "json"}


def call(client: FlaskClient, method: str, ok: bool | None = True, **params: object) -> dict:
    response = client.get(f"/rest/{method}", query_string={**AUTH, **params})
    assert response.status_code == 200 and response.mimetype == "application/json", (method, params)
    body = json.loads(response.get_data(as_text=True))["subsonic-response"]
    assert ok is None or (body["status"] == "ok") is ok, (method, params, body)
    return body


def code(client: FlaskClient, method: str, **params: object) -> int:
    body = call(client, method, ok=False, **params)
    assert "/" not in body["error"]["message"], body  # never a path
    return int(body["error"]["code"])


def xml(client: FlaskClient, method: str, **params: object) -> ET.Element:
    response = client.get(f"/rest/{method}", query_string={**AUTH, "f": "xml", **params})
    assert response.status_code == 200 and response.mimetype == "text/xml"
    root = ET.fromstring(response.get_data())
    assert root.get("status") == "ok", response.get_data(as_text=True)[:300]
    return root


@pytest.fixture(scope="module")
def app(demo_store: DemoStore) -> Iterator[dash.Dash]:
    with Store.open(demo_store.store) as store:
        yield create_app(store, token=TOKEN, record=False)


@pytest.fixture
def client(app: dash.Dash) -> FlaskClient:
    return app.server.test_client()


# -- shapes ---------------------------------------------------------------------------------------
ISO = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$"


def _check_album(album: dict) -> None:
    """An ``AlbumID3``: its required fields and their types."""
    import re

    assert isinstance(album["id"], str) and album["id"].startswith("al-") and isinstance(album["name"], str)
    assert isinstance(album["songCount"], int) and album["songCount"] >= 1
    assert isinstance(album["duration"], int) and re.match(ISO, album["created"])
    assert isinstance(album["artist"], str) and album["artistId"].startswith("ar-")
    assert isinstance(album.get("year", 0), int) and isinstance(album["playCount"], int)


def _check_song(song: dict) -> None:
    """A ``Child``: its required fields and their types."""
    assert isinstance(song["id"], str) and song["id"].isdigit() and song["isDir"] is False
    assert isinstance(song["title"], str) and song["albumId"].startswith("al-") and song["parent"] == song["albumId"]
    assert isinstance(song["duration"], int) and song["type"] == "music" and isinstance(song["album"], str)


def test_every_browse_method_in_json_as_the_specification_has_it(client: FlaskClient, demo_store: DemoStore) -> None:
    assert call(client, "getLicense")["license"] == {"valid": True}
    folders = call(client, "getMusicFolders")["musicFolders"]["musicFolder"]
    assert folders == [{"id": folders[0]["id"], "name": demo_store.library.name}] and isinstance(folders[0]["id"], int)
    user = call(client, "getUser", username="alice")["user"]
    assert user["username"] == "alice" and user["streamRole"] is True and user["downloadRole"] is True
    assert user["adminRole"] is False and user["settingsRole"] is False and user["uploadRole"] is False
    assert user["folder"] == [folders[0]["id"]] and isinstance(user["scrobblingEnabled"], bool)
    roles = ["scrobblingEnabled", "adminRole", "settingsRole", "downloadRole", "uploadRole", "playlistRole",
             "coverArtRole", "commentRole", "podcastRole", "streamRole", "jukeboxRole", "shareRole",
             "videoConversionRole"]
    assert all(isinstance(user[r], bool) for r in roles)

    artists = call(client, "getArtists")["artists"]
    assert artists["ignoredArticles"] == "The A An"
    letters = [i["name"] for i in artists["index"]]
    assert letters == sorted(letters, key=lambda k: (k == "#", k)) and len(set(letters)) == len(letters)
    every = [a for i in artists["index"] for a in i["artist"]]
    assert all(a["id"].startswith("ar-") and a["name"] and a["albumCount"] >= 1 for a in every)
    assert len({a["id"] for a in every}) == len(every)
    with Store.open(demo_store.store) as store:
        named = {r[0] for r in store.sql("SELECT DISTINCT artist FROM tracks WHERE artist IS NOT NULL").rows}
    assert named <= {a["name"] for a in every}  # every artist of the demo (one spelling each) is listed

    indexes = call(client, "getIndexes")["indexes"]
    assert isinstance(indexes["lastModified"], int) and indexes["lastModified"] > 0
    assert [[a["id"] for a in i["artist"]] for i in indexes["index"]] == [[a["id"] for a in i["artist"]]
                                                                         for i in artists["index"]]
    unchanged = call(client, "getIndexes", ifModifiedSince=indexes["lastModified"])["indexes"]
    assert "index" not in unchanged and unchanged["lastModified"] == indexes["lastModified"]

    artist = call(client, "getArtist", id=every[0]["id"])["artist"]
    assert artist["id"] == every[0]["id"] and artist["albumCount"] == len(artist["album"]) >= 1
    for album in artist["album"]:
        _check_album(album)
    album = call(client, "getAlbum", id=artist["album"][0]["id"])["album"]
    _check_album(album)
    assert len(album["song"]) == album["songCount"] and all(s["albumId"] == album["id"] for s in album["song"])
    for song in album["song"]:
        _check_song(song)
    assert album["duration"] == pytest.approx(sum(s["duration"] for s in album["song"]), abs=len(album["song"]))

    genres = call(client, "getGenres")["genres"]["genre"]
    with Store.open(demo_store.store) as store:
        assert sum(g["songCount"] for g in genres) == store.sql("SELECT count(genre) FROM tracks").rows[0][0]
    assert all(isinstance(g["value"], str) and g["albumCount"] >= 1 for g in genres)
    by_genre = call(client, "getSongsByGenre", genre=genres[0]["value"], count=500)["songsByGenre"]["song"]
    assert len(by_genre) == genres[0]["songCount"] and all(s["genre"] == genres[0]["value"] for s in by_genre)
    randoms = call(client, "getRandomSongs", size=7)["randomSongs"]["song"]
    assert len(randoms) == 7 and len({s["id"] for s in randoms}) == 7
    for song in randoms:
        _check_song(song)
    result = call(client, "search3", query="")["searchResult3"]
    assert len(result["artist"]) == len(result["album"]) == len(result["song"]) == 20


def test_xml_follows_the_subsonic_conventions(client: FlaskClient) -> None:
    assert xml(client, "getLicense").find(f"{NS}license").get("valid") == "true"  # type: ignore[union-attr]
    folder = xml(client, "getMusicFolders").find(f"{NS}musicFolders/{NS}musicFolder")
    assert folder is not None and folder.get("id", "").isdigit() and folder.get("name")
    user = xml(client, "getUser", username="bob").find(f"{NS}user")
    assert user is not None and user.get("streamRole") == "true" and user.get("adminRole") == "false"
    assert [f.text for f in user.findall(f"{NS}folder")] == [folder.get("id")]  # a list of ints: elements
    artists = xml(client, "getArtists").find(f"{NS}artists")
    assert artists is not None and artists.get("ignoredArticles") == "The A An"
    first = artists.find(f"{NS}index/{NS}artist")
    assert first is not None and first.get("id", "").startswith("ar-") and first.get("albumCount", "").isdigit()
    indexes = xml(client, "getIndexes").find(f"{NS}indexes")
    assert indexes is not None and indexes.get("lastModified", "").isdigit() and indexes.find(f"{NS}index") is not None
    artist = xml(client, "getArtist", id=first.get("id")).find(f"{NS}artist")
    assert artist is not None and artist.get("name") == first.get("name")
    album_id = artist.find(f"{NS}album").get("id")  # type: ignore[union-attr]
    album = xml(client, "getAlbum", id=album_id).find(f"{NS}album")
    assert album is not None and album.get("songCount") == str(len(album.findall(f"{NS}song")))
    song = album.find(f"{NS}song")
    assert song is not None and song.get("isDir") == "false" and song.get("albumId") == album_id
    listed = xml(client, "getAlbumList2", type="alphabeticalByName", size=3).findall(f"{NS}albumList2/{NS}album")
    assert len(listed) == 3 and all(a.get("created", "").endswith("Z") for a in listed)
    genre = xml(client, "getGenres").find(f"{NS}genres/{NS}genre")
    assert genre is not None and genre.text and genre.get("songCount", "").isdigit() and genre.get("value") is None
    found = xml(client, "search3", query="", artistCount=1, albumCount=1, songCount=1).find(f"{NS}searchResult3")
    assert found is not None and [len(found.findall(f"{NS}{k}")) for k in ("artist", "album", "song")] == [1, 1, 1]
    for method, element in (("getRandomSongs", "randomSongs"), ("getSongsByGenre", "songsByGenre")):
        songs = xml(client, method, genre=genre.text, count=2, size=2).findall(f"{NS}{element}/{NS}song")
        assert len(songs) == 2 and all(s.get("genre") == genre.text for s in songs)


def test_artists_to_album_to_song_to_its_bytes(client: FlaskClient, demo_store: DemoStore) -> None:
    index = call(client, "getArtists")["artists"]["index"]
    artist = call(client, "getArtist", id=index[-1]["artist"][-1]["id"])["artist"]
    album = call(client, "getAlbum", id=artist["album"][-1]["id"])["album"]
    song = call(client, "getSong", id=album["song"][0]["id"])["song"]
    assert song["albumId"] == album["id"] and song["title"] == album["song"][0]["title"]
    with Store.open(demo_store.store) as store:
        data = Path(store.file_path(int(song["id"]))).read_bytes()
    for method in ("stream", "download"):
        response = client.get(f"/rest/{method}", query_string={**AUTH, "id": song["id"]})
        assert response.status_code == 200 and response.get_data() == data, method
    part = client.get("/rest/download", query_string={**AUTH, "id": song["id"]}, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.get_data() == data[10:20]


def test_album_lists_by_each_type_and_page(client: FlaskClient) -> None:
    def albums(kind: str, **params: object) -> list[dict]:
        return call(client, "getAlbumList2", type=kind, **params)["albumList2"]["album"]

    everything = albums("alphabeticalByName", size=500)
    names = [a["name"].casefold() for a in everything]
    assert names == sorted(names) and len({a["id"] for a in everything}) == len(everything)
    assert albums("alphabeticalByName", size=5, offset=5) == everything[5:10]
    assert albums("alphabeticalByName", size=10**12, offset=0) == everything  # a page over 500 is 500
    assert albums("alphabeticalByName", offset=10**30) == []  # past the end: an empty page
    assert len(albums("alphabeticalByName")) == 10  # size defaults to 10
    by_artist = [a["artist"].casefold() for a in albums("alphabeticalByArtist", size=500)]
    assert by_artist == sorted(by_artist)
    newest = albums("newest", size=500)
    assert [a["created"] for a in newest] == sorted((a["created"] for a in newest), reverse=True)
    assert len(albums("random", size=4)) == 4
    years = [a["year"] for a in albums("byYear", fromYear=1990, toYear=2010, size=500)]
    assert years == sorted(years) and years and all(1990 <= y <= 2010 for y in years)
    assert [a["year"] for a in albums("byYear", fromYear=2010, toYear=1990, size=500)] == years[::-1]
    genre = everything[0]["genre"]  # every spelling of it: upper case too
    in_genre = albums("byGenre", genre=genre.upper(), size=500)
    assert everything[0]["id"] in {a["id"] for a in in_genre} and len(in_genre) < len(everything)
    for kind in ("frequent", "recent", "starred", "highest"):  # nothing played or liked in the shared store
        assert albums(kind) == [], kind


def test_frequent_recent_and_starred_follow_the_listening_journal(demo_store: DemoStore, tmp_path: Path) -> None:
    copy = tmp_path / "store"
    shutil.copytree(demo_store.store, copy)
    with Store.open(copy) as store:
        client = create_app(store, token=TOKEN).server.test_client()
        album_list = call(client, "getAlbumList2", type="alphabeticalByName", size=3)["albumList2"]["album"]
        songs = [call(client, "getAlbum", id=a["id"])["album"]["song"][0]["id"] for a in album_list]
        first, second, third = (int(s) for s in songs)
        store.record([Event("played", first, at=1_000.0), Event("played", first, at=1_001.0),
                      Event("played", second, at=2_000.0), Event("liked", third, at=3_000.0)])
        ids = [a["id"] for a in album_list]

        def listed(kind: str) -> list[str]:
            return [a["id"] for a in call(client, "getAlbumList2", type=kind)["albumList2"]["album"]]

        assert listed("frequent") == [ids[0], ids[1]] and listed("recent") == [ids[1], ids[0]]
        assert listed("starred") == [ids[2]] and listed("highest") == [ids[2]]
        played = call(client, "getAlbum", id=ids[0])["album"]
        assert played["playCount"] == 2 and played["played"].startswith("1970-01-01T00:16:41")


def test_search3_matches_words_and_pages_through_everything(client: FlaskClient, demo_store: DemoStore) -> None:
    target = next(t for t in demo_store.tracks if t.title and t.artist)
    words = f"{target.artist.split()[0]} {target.title.split()[0]}".lower()
    found = call(client, "search3", query=words)["searchResult3"]
    assert any(s["title"] == target.title for s in found["song"])
    assert all(target.artist.split()[0].lower() in a["name"].lower() for a in found.get("artist", []))
    assert all(words.split()[0] in f"{a['name']} {a['artist']}".lower() for a in found["album"])
    nothing = call(client, "search3", query="zzzz-no-such-word")["searchResult3"]
    assert nothing == {"artist": [], "album": [], "song": []}
    n = len(demo_store.tracks)
    for empty in ("", '""'):  # some clients send the two quotes
        seen: list[str] = []
        for start in range(0, n + 40, 40):
            page = call(client, "search3", query=empty, artistCount=0, albumCount=0, songCount=40,
                        songOffset=start)["searchResult3"]
            assert page["artist"] == [] and page["album"] == []
            seen += [s["id"] for s in page["song"]]
        assert len(seen) == len(set(seen)) == n
    all_albums = call(client, "getAlbumList2", type="alphabeticalByName", size=500)["albumList2"]["album"]
    paged = [a["id"] for start in (0, 7, 14, 21, 28, 35) for a in
             call(client, "search3", query="", albumCount=7, albumOffset=start, songCount=0)["searchResult3"]["album"]]
    assert sorted(paged) == sorted(a["id"] for a in all_albums[:42])


def test_genres_random_songs_and_filters(client: FlaskClient) -> None:
    genres = call(client, "getGenres")["genres"]["genre"]
    genre = genres[-1]["value"]
    page1 = call(client, "getSongsByGenre", genre=genre, count=2)["songsByGenre"]["song"]
    page2 = call(client, "getSongsByGenre", genre=genre, count=2, offset=2)["songsByGenre"]["song"]
    assert len(page1) == 2 and not {s["id"] for s in page1} & {s["id"] for s in page2}
    assert call(client, "getSongsByGenre", genre="no such genre")["songsByGenre"]["song"] == []
    songs = call(client, "getRandomSongs", size=500, genre=genre.upper())["randomSongs"]["song"]
    assert len(songs) == next(g["songCount"] for g in genres if g["value"] == genre)
    dated = call(client, "getRandomSongs", size=500, fromYear=1995, toYear=2005)["randomSongs"]["song"]
    assert dated and all(1995 <= s["year"] <= 2005 for s in dated)
    assert len(call(client, "getRandomSongs")["randomSongs"]["song"]) == 10


def test_bad_input_gets_the_specifications_codes(client: FlaskClient, demo_store: DemoStore) -> None:
    for tricky in ("al-../../etc/passwd", "../../etc/passwd", "ar-0000000000000000", "al-", "/etc/passwd",
                   "al-%2e%2e%2f", "ar-" + "f" * 5000, "al-\x00"):
        assert code(client, "getAlbum", id=tricky) == 70
        assert code(client, "getArtist", id=tricky) == 70
    for tricky in ("../../etc/passwd", "1/../2", "-1", "1e3", str(10**30)):
        assert code(client, "download", id=tricky) == 70, tricky
        assert code(client, "stream", id=tricky) == 70, tricky
    for method, params in (("getArtist", {}), ("getAlbum", {}), ("getAlbumList2", {}), ("getUser", {}),
                           ("getAlbumList2", {"type": "byYear", "fromYear": 1990}),
                           ("getAlbumList2", {"type": "byGenre"}), ("getSongsByGenre", {}), ("search3", {}),
                           ("download", {})):
        assert code(client, method, **params) == 10, (method, params)
    for method, params in (("getAlbumList2", {"type": "bogus"}), ("getAlbumList2", {"type": "newest", "size": -1}),
                           ("getAlbumList2", {"type": "newest", "offset": "abc"}),
                           ("getRandomSongs", {"size": "²"}), ("search3", {"query": "x", "songCount": "-5"}),
                           ("getAlbumList2", {"type": "byYear", "fromYear": "then", "toYear": 2000})):
        assert code(client, method, **params) == 0, (method, params)
    huge = call(client, "search3", query="", songCount=10**40, songOffset=10**40, albumCount=10**9)["searchResult3"]
    assert huge["song"] == [] and len(huge["album"]) <= 500
    assert len(call(client, "getRandomSongs", size=10**9)["randomSongs"]["song"]) == len(demo_store.tracks)


# -- what an album is -----------------------------------------------------------------------------
def _flac(path: Path, seed: int, **tags: str) -> None:
    from mutagen.flac import FLAC

    write_tone(path, 2.0, 150.0 + 40 * seed, seed=seed)
    audio = FLAC(path)
    for key, value in tags.items():
        audio[key] = value
    audio.save()


def _albums_library(root: Path) -> Path:
    """Two discs of one album (folders CD1, CD2), a compilation without album-artist tags, a folder
    of songs without an album tag, and two albums of one name by two artists."""
    lib = root / "library"
    _flac(lib / "Twin Band" / "Double" / "CD1" / "01.flac", 1, title="One", artist="Twin Band", album="Double",
          tracknumber="1")
    _flac(lib / "Twin Band" / "Double" / "CD1" / "02.flac", 2, title="Two", artist="Twin Band", album="Double",
          tracknumber="2")
    _flac(lib / "Twin Band" / "Double" / "CD2" / "01.flac", 3, title="Three", artist="Twin Band", album="Double",
          tracknumber="1")
    _flac(lib / "Compilations" / "Summer Mix" / "01.flac", 4, title="Sun", artist="Alpha", album="Summer Mix")
    _flac(lib / "Compilations" / "Summer Mix" / "02.flac", 5, title="Sea", artist="Beta", album="Summer Mix")
    _flac(lib / "Loose" / "Field Recordings" / "a.flac", 6, title="Rain", artist="The Walkers")
    _flac(lib / "Loose" / "Field Recordings" / "b.flac", 7, title="Wind", artist="The Walkers")
    _flac(lib / "Gamma" / "Greatest Hits" / "01.flac", 8, title="G1", artist="Gamma feat. Delta",
          albumartist="Gamma", album="Greatest Hits")
    _flac(lib / "Epsilon" / "Greatest Hits" / "01.flac", 9, title="E1", artist="Epsilon", album="Greatest Hits")
    return lib


def _index(lib: Path, store: Path) -> None:
    run_cli("index", lib, "--store", store, "--model", "features", "--no-tags", "--no-map", "--workers", "1",
            "--quiet", check=True)


@pytest.fixture(scope="module")
def albums_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("albums")
    lib = _albums_library(root)
    _index(lib, root / "store")
    return lib, root / "store"


def _identity(store_path: Path) -> dict[str, dict]:
    """What a client caches: every artist id and name, album id, name, artist, and songs (by title)."""
    with Store.open(store_path) as store:
        client = create_app(store, token=TOKEN, record=False).server.test_client()
        artists = {a["id"]: a["name"] for i in call(client, "getArtists")["artists"]["index"] for a in i["artist"]}
        albums = {}
        for a in call(client, "getAlbumList2", type="alphabeticalByName", size=500)["albumList2"]["album"]:
            songs = call(client, "getAlbum", id=a["id"])["album"]["song"]
            albums[a["id"]] = (a["name"], a["artist"], a["artistId"], [(s["id"], s["title"]) for s in songs])
    return {"artists": artists, "albums": albums}


def test_what_an_album_is(albums_store: tuple[Path, Path]) -> None:
    _, store_path = albums_store
    with Store.open(store_path) as store:
        client = create_app(store, token=TOKEN, record=False).server.test_client()
        listed = call(client, "getAlbumList2", type="alphabeticalByName", size=500)["albumList2"]["album"]
        by_name: dict[str, list[dict]] = {}
        for album in listed:
            by_name.setdefault(album["name"], []).append(album)
        assert sorted(by_name) == ["Double", "Field Recordings", "Greatest Hits", "Summer Mix"]
        (double,) = by_name["Double"]  # two disc folders, one album, in disc order
        songs = call(client, "getAlbum", id=double["id"])["album"]["song"]
        assert [s["title"] for s in songs] == ["One", "Two", "Three"] and double["artist"] == "Twin Band"
        (mix,) = by_name["Summer Mix"]  # several artists, no album-artist tag
        assert mix["artist"] == "Various Artists" and mix["songCount"] == 2
        mix_songs = call(client, "getAlbum", id=mix["id"])["album"]["song"]
        assert {s["artist"] for s in mix_songs} == {"Alpha", "Beta"}
        (field,) = by_name["Field Recordings"]  # no album tag: the folder's name
        assert field["artist"] == "The Walkers" and field["songCount"] == 2
        field_songs = call(client, "getAlbum", id=field["id"])["album"]["song"]
        assert all(s["album"] == "Field Recordings" and s["albumId"] == field["id"] for s in field_songs)
        hits = by_name["Greatest Hits"]  # one name, two album artists: two albums
        assert sorted(a["artist"] for a in hits) == ["Epsilon", "Gamma"] and len({a["id"] for a in hits}) == 2

        index = call(client, "getArtists")["artists"]["index"]
        letters = {a["name"]: i["name"] for i in index for a in i["artist"]}
        assert letters["The Walkers"] == "W" and letters["Various Artists"] == "V"  # "The" ignored
        artists = {a["name"]: a for i in index for a in i["artist"]}
        for name in ("Alpha", "Beta", "Various Artists"):  # each leads to the compilation
            albums = call(client, "getArtist", id=artists[name]["id"])["artist"]["album"]
            assert mix["id"] in {a["id"] for a in albums}, name
        gamma = call(client, "getArtist", id=artists["Gamma"]["id"])["artist"]
        assert [a["name"] for a in gamma["album"]] == ["Greatest Hits"] and gamma["albumCount"] == 1
        song = call(client, "getSong", id=songs[2]["id"])["song"]
        assert song["albumId"] == double["id"] and song["parent"] == double["id"]


def test_ids_hold_across_re_index_runs_and_file_moves(albums_store: tuple[Path, Path], tmp_path: Path) -> None:
    lib, store_path = albums_store
    before = _identity(store_path)
    moved_lib, moved_store = tmp_path / "library", tmp_path / "store"
    shutil.copytree(lib, moved_lib)
    _index(moved_lib, moved_store)  # another store, built from nothing: the same artist and album ids
    settled = _identity(moved_store)
    assert settled["artists"] == before["artists"]
    assert {k: v[:3] for k, v in settled["albums"].items()} == {k: v[:3] for k, v in before["albums"].items()}

    (moved_lib / "Elsewhere").mkdir()
    shutil.move(moved_lib / "Loose" / "Field Recordings", moved_lib / "Elsewhere" / "Field Recordings")
    shutil.move(moved_lib / "Twin Band" / "Double" / "CD2" / "01.flac", moved_lib / "Elsewhere" / "three.flac")
    _index(moved_lib, moved_store)
    after = _identity(moved_store)
    assert after["artists"] == settled["artists"]
    # the same albums with the same songs and song ids (a song moved to another folder may sort elsewhere)
    assert {k: (*v[:3], sorted(v[3])) for k, v in after["albums"].items()} == \
        {k: (*v[:3], sorted(v[3])) for k, v in settled["albums"].items()}


@pytest.mark.subprocess
def test_py_opensonic_browses_searches_and_plays(demo_store: DemoStore) -> None:
    """py-opensonic (PyPI), as a player browses: artists → artist → album → song → its bytes."""
    import libopensonic

    with serving(demo_store.store, "--token", TOKEN, "--no-record") as url:
        parsed = urlparse(url)
        conn = libopensonic.Connection(f"{parsed.scheme}://{parsed.hostname}", username="player", password=TOKEN,
                                       port=int(parsed.port or 80), app_name="musicmap-test")
        try:
            # (not get_music_folders: py-opensonic reads the musicFolders object as its list; its bug)
            assert conn.get_user("player").stream_role is True
            artists = conn.get_artists()
            assert artists.ignored_articles == "The A An" and artists.index
            first = artists.index[0].artist[0]
            artist = conn.get_artist(first.id)
            assert artist.name == first.name and artist.album
            album = conn.get_album(artist.album[0].id)
            assert album.song and album.song_count == len(album.song)
            song = conn.get_song(album.song[0].id)
            assert song.album_id == album.id
            response = conn.stream(song.id)
            data = asyncio.run_coroutine_threadsafe(response.read(), conn._loop).result(30)
            with Store.open(demo_store.store) as store:
                assert data == Path(store.file_path(int(song.id))).read_bytes()
            found = conn.search3(song.title, song_count=5)
            assert song.id in [s.id for s in found.song or []]
            everything = conn.search3("", artist_count=1, album_count=1, song_count=500)
            assert len(everything.song or []) == len(demo_store.tracks)
            newest = conn.get_album_list2("newest", size=5)
            assert len(newest) == 5 and all(a.song_count >= 1 for a in newest)
            genres = conn.get_genres()
            assert genres and conn.get_songs_by_genre(genres[0].value, count=3)
            assert len(conn.get_random_songs(size=4)) == 4
            assert conn.get_indexes().index
        finally:
            conn.cleanup()
