"""The explorer's server side: the JSON API and audio through Flask's test client, the Dash
callbacks as plain functions, and no torch in its process."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dash
import pytest
from flask.testing import FlaskClient

from explorer import create_app, panels
from explorer.api import OPENAPI
from explorer.callbacks import Callbacks
from explorer.controls import ListControls
from explorer.limits import K_DEFAULT, K_PAGE_MAX, PATH_STEPS, SOUND_LIST
from explorer.panels import listed
from explorer.state import ViewState, encode, parse
from store import Store, TrackNotFound
from store.listening import MAX_PATH
from tests.conftest import DemoStore, serving
from tests.fakes import fake_model, write_store


@pytest.fixture(scope="module")
def app(demo_store: DemoStore) -> Iterator[dash.Dash]:
    store = Store.open(demo_store.store)
    yield create_app(store)
    store.close()


@pytest.fixture
def client(app: dash.Dash) -> FlaskClient:
    return app.server.test_client()


@pytest.fixture
def cb(app: dash.Dash) -> Callbacks:
    callbacks: Callbacks = app.server.extensions["musicmap_callbacks"]
    return callbacks


def _texts(component: Any) -> str:
    """Every string inside a Dash component tree."""
    return json.dumps(component.to_plotly_json() if hasattr(component, "to_plotly_json") else component,
                      default=lambda o: o.to_plotly_json() if hasattr(o, "to_plotly_json") else str(o),
                      ensure_ascii=False)


def _find(component: Any, wanted: str) -> Any:
    """The component with id ``wanted`` inside a tree (a list of components or one)."""
    stack = list(component) if isinstance(component, list) else [component]
    while stack:
        node = stack.pop()
        if getattr(node, "id", None) == wanted:
            return node
        children = getattr(node, "children", None)
        stack += children if isinstance(children, list) else [children] if children is not None else []
    raise AssertionError(f"no #{wanted}")


def test_page_and_honest_status_line(client: FlaskClient) -> None:
    assert client.get("/").status_code == 200
    text = json.dumps(client.get("/_dash-layout").get_json())
    assert "handcrafted features (librosa)" in text and "not MAEST" in text and "96 tracks" in text
    assert "map: tsne (openTSNE)" in text and "trustworthiness 0." in text and "kNN preservation 0." in text
    assert "map quality and hubs" in text and text.count('"type": "hub"') == 10  # the 10 biggest hubs, clickable
    # the figure is compressed on the wire when the browser accepts gzip
    response = client.get("/_dash-layout", headers={"Accept-Encoding": "gzip"})
    assert response.headers.get("Content-Encoding") == "gzip"


def test_layout_is_built_once_per_version_of_the_map(app: dash.Dash, cb: Callbacks, client: FlaskClient,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import gzip

    built = []
    serve = app.serve_layout
    monkeypatch.setattr(app, "serve_layout", lambda: built.append(1) or serve())
    monkeypatch.setattr(cb.data, "check_every", 1e9)  # no reload from the store during the test
    cb.data.version += 1  # as a reload does (a new map, new tracks)
    first = client.get("/_dash-layout")
    again = client.get("/_dash-layout", headers={"Accept-Encoding": "gzip"})
    assert len(built) == 1 and again.headers["Content-Encoding"] == "gzip"
    assert first.headers["Vary"] == "Accept-Encoding"
    assert gzip.decompress(again.data) == first.data and "96 tracks" in first.get_data(as_text=True)
    cb.data.version += 1
    assert client.get("/_dash-layout").data == first.data and len(built) == 2  # built again for the new version


def test_store_without_a_map_says_what_to_do(tmp_path: Path) -> None:
    import numpy as np

    from store import ModelInfo, TrackRecord

    model = ModelInfo(name="features", id="features-v1", kind="handcrafted",
                      label="handcrafted features (librosa)", dimension=4)
    write_store(tmp_path / "s", model, [TrackRecord(path="/x/a.flac", size=1, mtime=1.0, tags={"title": "A"},
                                                    vector=np.ones(4, np.float32))])
    with Store.open(tmp_path / "s") as store:
        client = create_app(store).server.test_client()
        layout = json.dumps(client.get("/_dash-layout").get_json())
        assert client.get("/api/v1/map").get_json()["n"] == 0
    assert "no map yet" in layout and "musicmap map" in layout


# -- audio ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("prefix", ["/audio", "/api/v1/audio"])
def test_audio_by_id_with_range(client: FlaskClient, demo_store: DemoStore, prefix: str) -> None:
    with Store.open(demo_store.store) as store:
        path = store.track(1)["path"]
    size = Path(path).stat().st_size
    full = client.get(f"{prefix}/1")
    assert full.status_code == 200 and len(full.data) == size and full.headers["Accept-Ranges"] == "bytes"
    part = client.get(f"{prefix}/1", headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and len(part.data) == 10 and part.data == Path(path).read_bytes()[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{size}"
    missing = client.get(f"{prefix}/99999")
    assert missing.status_code == 404 and "no track" in missing.get_json()["error"]
    for trick in (f"{prefix}/..%2F..%2Fetc%2Fpasswd", f"{prefix}/%2Fetc%2Fpasswd", f"{prefix}/-1"):
        response = client.get(trick)  # never a file: Dash's catch-all page or a JSON 404
        assert b"root:" not in response.data and not response.mimetype.startswith("audio/")


def test_audio_of_a_file_gone_from_disk(tmp_path: Path, demo_store: DemoStore) -> None:
    import shutil

    store_copy, library_copy = tmp_path / "store", tmp_path / "lib"
    shutil.copytree(demo_store.store, store_copy)
    with Store.open(store_copy) as store:
        path = Path(store.track(1)["path"])
        client = create_app(store).server.test_client()
        path.rename(path.with_suffix(".moved"))  # the demo library is shared: put it back after
        try:
            response = client.get("/audio/1")
        finally:
            path.with_suffix(".moved").rename(path)
    assert response.status_code == 404 and "no longer readable" in response.get_json()["error"]
    assert not library_copy.exists()


# -- the JSON API ----------------------------------------------------------------------------------

def test_api_tracks_paged_and_filtered(client: FlaskClient) -> None:
    first = client.get("/api/v1/tracks?limit=10").get_json()
    assert first["total"] == 96 and [r["id"] for r in first["results"]] == list(range(1, 11))
    second = client.get("/api/v1/tracks?limit=10&offset=10").get_json()
    assert [r["id"] for r in second["results"]] == list(range(11, 21))
    genre = first["results"][0]["genre"]
    by_genre = client.get("/api/v1/tracks", query_string={"genre": genre, "limit": 1000}).get_json()
    assert by_genre["total"] == len(by_genre["results"]) > 1 and {r["genre"] for r in by_genre["results"]} == {genre}
    years = client.get("/api/v1/tracks?year_min=1990&year_max=1999&limit=1000").get_json()["results"]
    assert years and all(1990 <= r["year"] <= 1999 for r in years)
    quoted = client.get("/api/v1/tracks", query_string={"artist": "O'Brien'; DROP TABLE tracks; --"})
    assert quoted.status_code == 200 and quoted.get_json()["total"] == 0  # a value, never SQL
    where = client.get("/api/v1/tracks", query_string={"where": "year < 1980", "limit": 1000}).get_json()
    assert where["total"] == len(where["results"]) and all(r["year"] < 1980 for r in where["results"])
    for bad, named in (("limit=5000", "limit"), ("offset=-1", "offset"), ("year_min=x", "year_min"),
                       ("where=nope%20%3D%201", "nope"), ("where=1%3B%20DROP%20TABLE%20tracks", "where"),
                       ("sort=title", "sort")):
        response = client.get(f"/api/v1/tracks?{bad}")
        assert response.status_code == 400 and named in response.get_json()["error"], (bad, response.get_json())


def test_api_find(client: FlaskClient) -> None:
    """GET /api/v1/find: the JSON of `find --json` (results as /similar's, each with what matched),
    M3U, and every bad input a 400 with a message or an empty list with the reason."""
    body = client.get("/api/v1/find", query_string={"q": "quiet ambient, no drums", "k": 5}).get_json()
    assert body["query"]["text"] == "quiet ambient, no drums" and body["model"] and len(body["results"]) == 5
    first = body["results"][0]
    assert {"track_id", "id", "path", "title", "artist", "album", "score", "matched"} <= set(first)
    assert [m["word"] for m in first["matched"]] == ["quiet", "ambient", "drums"]
    assert all(t["percentile"] is not None for m in first["matched"] for t in m["tags"])
    like = client.get("/api/v1/find", query_string={"q": "calmer", "like": 3, "k": 4,
                                                    "max_per_artist": 2}).get_json()
    assert like["query"]["like"] == 3 and 3 not in [r["track_id"] for r in like["results"]]
    m3u = client.get("/api/v1/find", query_string={"q": "calm", "k": 3, "format": "m3u"})
    assert m3u.status_code == 200 and m3u.get_data(as_text=True).count("#EXTINF") == 3
    for params, reason in (({"q": "xyzzy"}, 'no tag matches "xyzzy"'), ({"q": "the music"}, "no word"),
                           ({"q": "音楽"}, "no tag matches"), ({"q": "<script>alert(1)</script>"}, "no tag matches"),
                           ({"q": "'; DROP TABLE tracks; --"}, "no tag matches")):
        response = client.get("/api/v1/find", query_string=params)
        assert response.status_code == 200 and response.get_json()["results"] == [], params
        assert reason in response.get_json()["reason"], params
    for params, message in (({}, "q: describe the sound"), ({"q": "calm " * 100}, "at most 300"),
                            ({"q": "calm", "k": "0"}, "k"), ({"q": "calm", "like": "99999"}, "99999"),
                            ({"q": "calm", "where": "nope ="}, "where"), ({"q": "calm", "centroid": "2"}, "centroid")):
        response = client.get("/api/v1/find", query_string=params)
        assert response.status_code in (400, 404) and message in response.get_json()["error"], params
    assert "/api/v1/find" in OPENAPI["paths"]


def test_api_genre_groups_are_kept_until_the_store_may_have_changed(tmp_path: Path, demo_store: DemoStore,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """``?genre=`` groups the store's genres once while the store's connection stays open (no other
    process can write then), and again once it was let go: another process's change is seen."""
    import shutil

    import store.store
    from store import GenreGroups
    from store.sharing import CONFIG, connect

    grouped = []

    class Counted(GenreGroups):
        @classmethod
        def from_counts(cls, counts: Any) -> GenreGroups:
            grouped.append(1)
            return GenreGroups.from_counts(counts)

    folder = tmp_path / "store"
    shutil.copytree(demo_store.store, folder)
    monkeypatch.setattr(store.store, "GenreGroups", Counted)
    with Store.open(folder) as opened:
        client = create_app(opened).server.test_client()  # its status line may group them (info)
        genre = opened.track(2)["genre"]
        first = client.get("/api/v1/tracks", query_string={"genre": genre, "limit": 1000}).get_json()
        once = len(grouped)
        again = client.get("/api/v1/tracks", query_string={"genre": genre, "limit": 1000}).get_json()
        assert first == again and first["total"] > 1 and len(grouped) == once == 1  # not grouped again
        opened.release()  # the file let go: another process may write now
        writer = connect(folder / "library.duckdb", read_only=False, config=CONFIG, wait=5)
        writer.execute("UPDATE tracks SET genre = 'Polka' WHERE id = 2")
        writer.close()
        polka = client.get("/api/v1/tracks", query_string={"genre": "polka", "limit": 1000}).get_json()
        assert [r["id"] for r in polka["results"]] == [2] and len(grouped) == 2
        after = client.get("/api/v1/tracks", query_string={"genre": genre, "limit": 1000}).get_json()
        assert after["total"] == first["total"] - 1 and len(grouped) == 2


def test_api_track_similar_search_and_map(client: FlaskClient, demo_store: DemoStore) -> None:
    track = client.get("/api/v1/tracks/3").get_json()
    assert track["id"] == 3 and track["audio"] == "/api/v1/audio/3" and track["position"]["map"] == "tsne"
    assert isinstance(track["styles"], list)
    assert client.get("/api/v1/tracks/99999").status_code == 404

    ok = client.get("/api/v1/similar/1?k=4").get_json()
    assert len(ok["results"]) == 4 and all(0 < r["score"] <= 1 for r in ok["results"])
    for bad in ("k=0", "k=-1", "k=abc", "k=100000"):
        response = client.get(f"/api/v1/similar/1?{bad}")
        assert response.status_code == 400 and "k=" in response.get_json()["error"]
    assert client.get("/api/v1/similar/99999").status_code == 404
    genre = client.get("/api/v1/tracks/2").get_json()["genre"]
    filtered = client.get("/api/v1/similar/1", query_string={"k": 6, "where": f"genre = '{genre}'",
                                                             "dedupe": "true", "mmr": 0.8})
    results = filtered.get_json()["results"]
    assert filtered.status_code == 200 and len(results) == 6 and {r["genre"] for r in results} == {genre}
    varied = client.get("/api/v1/similar/1", query_string={"k": 6, "max_per_artist": 1}).get_json()["results"]
    artists = [r["artist"] for r in varied if r["artist"]]
    assert len(varied) == 6 and len(artists) == len(set(artists))
    for bad, named in (("mmr=9", "mmr"), ("max_per_album=x", "max_per_album"), ("where=nope%20%3D%201", "nope"),
                       ("min_score=2", "min_score"), ("colour=red", "colour"), ("dedupe=maybe", "dedupe"),
                       ("min_score=nan", "min_score")):
        response = client.get(f"/api/v1/similar/1?{bad}")
        assert response.status_code == 400 and named in response.get_json()["error"], (bad, response.get_json())

    tagged = next(t for t in demo_store.tracks if t.title and t.artist)
    found = client.get("/api/v1/search", query_string={"q": f"{tagged.artist} {tagged.title}"}).get_json()
    assert found["results"] and found["results"][0]["title"] == tagged.title
    assert client.get("/api/v1/search").status_code == 400
    assert client.get("/api/v1/search?q=a&limit=0").status_code == 400

    mapped = client.get("/api/v1/map?fields=genre,cluster").get_json()
    assert mapped["n"] == 96 and len(mapped["id"]) == len(mapped["x"]) == len(mapped["y"]) == len(mapped["genre"]) == 96
    assert mapped["method"] == "tsne" and mapped["quality"]["trustworthiness"] > 0.5
    assert set(mapped["cluster"]) <= set(range(20)) and len(set(mapped["cluster"])) >= 2
    assert client.get("/api/v1/map?fields=path").status_code == 400  # no file paths in bulk


def test_api_path_and_extend_in_json_and_m3u(client: FlaskClient, demo_store: DemoStore) -> None:
    path = client.get("/api/v1/path", query_string={"from": 1, "to": 50, "steps": 7, "max_per_artist": 2})
    assert path.status_code == 200, path.get_json()
    steps = path.get_json()["steps"]
    ids = [s["track_id"] for s in steps]
    assert ids[0] == 1 and ids[-1] == 50 and len(ids) == 7 and len(set(ids)) == 7
    assert steps[0]["to_previous"] is None and all(0 < s["to_previous"] <= 1 for s in steps[1:])
    artists = [s["artist"] for s in steps if s["artist"]]
    assert all(artists.count(a) <= 2 for a in artists)
    m3u = client.get("/api/v1/path", query_string={"from": 1, "to": 50, "steps": 7, "max_per_artist": 2,
                                                   "format": "m3u"})
    assert m3u.status_code == 200 and m3u.mimetype == "audio/x-mpegurl"
    files = [line for line in m3u.get_data(as_text=True).splitlines() if not line.startswith("#")]
    with Store.open(demo_store.store) as store:
        assert files == [store.file_path(i) for i in ids]

    members = [3, 9, 27]
    ext = client.get("/api/v1/extend", query_string={"ids": "3,9,27", "n": 8, "mode": "seeds"}).get_json()
    added = [r["track_id"] for r in ext["results"]]
    assert len(added) == 8 and not set(added) & set(members) and ext["mode"] == "seeds"
    assert client.get("/api/v1/extend?ids=3,9&n=4&format=m3u").mimetype == "audio/x-mpegurl"
    for url, status in (("/api/v1/path?from=1&to=99999", 404), ("/api/v1/path?from=1&to=1", 400),
                        ("/api/v1/path?from=1", 400), ("/api/v1/path?from=1&to=2&steps=1", 400),
                        ("/api/v1/path?from=1&to=2&format=xml", 400), ("/api/v1/extend?ids=1,99999", 404),
                        ("/api/v1/extend?ids=1&mode=shuffle", 400), ("/api/v1/extend?ids=1&n=0", 400),
                        ("/api/v1/extend?ids=", 400), ("/api/v1/extend?ids=1&where=nonsense((", 400)):
        response = client.get(url)
        assert response.status_code == status and response.get_json()["error"], url


def test_api_errors_are_json_with_the_right_status(client: FlaskClient) -> None:
    for method, path, status in (("get", "/api/v1/nothing", 404), ("post", "/api/v1/tracks", 405),
                                 ("delete", "/api/v1/tracks/1", 405), ("get", "/api/v1/tracks/abc", 404)):
        response = getattr(client, method)(path)
        body = response.get_json()
        assert response.status_code == status and body["status"] == status and body["error"], (path, body)


def test_openapi_document_matches_the_routes(client: FlaskClient, app: dash.Dash) -> None:
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc == json.loads(json.dumps(OPENAPI)) and doc["openapi"].startswith("3.")
    routes = {re.sub(r"<(?:int:)?(\w+)>", r"{\1}", rule.rule) for rule in app.server.url_map.iter_rules()
              if rule.rule.startswith("/api/v1/") and rule.endpoint != "api_unknown"}
    assert routes == set(doc["paths"])
    # every documented query parameter is accepted (no 400 naming it) and nothing else is
    for path, item in doc["paths"].items():
        if "get" not in item:
            continue  # the upload (POST; off in this app) has its own tests in test_upload.py
        for param in item["get"].get("parameters", []):
            if param["in"] != "query":
                continue
            url = path.replace("{track_id}", "1")
            value = {"integer": "1", "number": "0.5", "boolean": "true"}.get(param["schema"]["type"], "x")
            if param["name"] == "where":
                value = "year > 0"
            if param["name"] == "fields":
                value = "genre"
            if param["name"] == "ids":
                value = "1,2"
            if param["name"] == "q" and path.endswith("sql"):
                value = "SELECT 1"
            if "enum" in param["schema"]:
                value = param["schema"]["enum"][-1]
            if "minimum" in param["schema"]:
                value = str(max(1, param["schema"]["minimum"]))
            if param["name"] in ("from", "to"):
                value = {"from": "3", "to": "4"}[param["name"]]
            extra = {"q": "a"} if path.endswith(("search", "find")) else {"q": "SELECT 1"} if path.endswith("sql") \
                else {"ids": "1,2"} if path.endswith(("similar", "extend")) \
                else {"from": "1", "to": "2"} if path.endswith("path") else {}
            response = client.get(url, query_string={**extra, param["name"]: value})
            assert response.status_code in (200, 206), (path, param["name"], response.get_json())


# -- callbacks as plain functions ----------------------------------------------------------------

def test_track_panel_lists_neighbours_highlights_and_dims(cb: Callbacks) -> None:
    view = cb.track_view(3, ListControls(k=10))
    highlight = view["highlight"]  # what the page's overlay draws
    rows = view["similar"]
    assert len(rows) == 10 and view["audio"] == "/audio/3" and view["id"] == 3
    assert all(r["why"] == f"3-{r['id']}" and r["score"].startswith(("0.", "1.")) for r in rows)
    assert rows[0]["bar"] == 100 and rows[-1]["bar"] == 33  # the list's spread: best full, last a third
    assert view["select"] == ",".join(map(str, [3, *(r["id"] for r in rows)]))  # "select these"
    assert highlight["mode"] == "rays"  # a line from the track to each neighbour (the overlay dims the rest)
    assert [m["id"] for m in highlight["marks"]] == [3, *(r["id"] for r in rows)]  # the track, then its neighbours
    frame = cb.data.frame.set_index("id")
    for mark in highlight["marks"]:  # each ring where its track is on the map
        assert mark["x"] == pytest.approx(frame.at[mark["id"], "x"], abs=1e-3)
        assert mark["y"] == pytest.approx(frame.at[mark["id"], "y"], abs=1e-3)
    assert highlight["marks"][0]["size"] > highlight["marks"][1]["size"]
    with cb.store.holding():
        track = cb.store.track(3)
    fields = {name: (shown, full) for name, shown, full in view["fields"]}
    assert view["title"] == (track["title"] or "(untitled)") and fields["artist"][0] == (track["artist"] or "—")
    assert fields["file"][1] == track["path"] and not fields["file"][0].startswith("/")  # relative, full on hover
    assert track["path"].endswith(fields["file"][0])
    json.dumps(view)  # all of it JSON as it is

    assert len(cb.track_view(3, ListControls(k=6, max_per_artist=1, dedupe=True))["similar"]) == 6

    view = cb.track_view(3, ListControls(k=5, where="nope = 1"))
    assert view["problem"] is not None and "nope" in view["problem"] and len(view["similar"]) == 5

    with pytest.raises(TrackNotFound):
        cb.track_view(99999, ListControls())


def test_track_panel_through_the_api(client: FlaskClient) -> None:
    """``GET /api/v1/panel/<id>``, as the page's track.js asks for it; bad input is 400 or 404."""
    answer = client.get("/api/v1/panel/3", query_string={"k": 7, "max_per_artist": 2, "dedupe": "true"})
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    view = answer.get_json()
    assert view["id"] == 3 and len(view["similar"]) == 7 and len(view["highlight"]["marks"]) == 8
    assert view["path"] == {"start": None, "start_id": None, "starts_here": False, "steps": PATH_STEPS,
                            "max_steps": MAX_PATH}
    problem = client.get("/api/v1/panel/3", query_string={"where": "nope = 1"}).get_json()["problem"]
    assert problem.startswith("where 'nope = 1': ")  # the list made without it, the reason said (no CLI flag)
    for query, status, said in (({"k": 0}, 400, "k="), ({"k": 101}, 400, "k="), ({"path_from": "x"}, 400, "path_from"),
                                ({"kk": 3}, 400, "kk"), ({}, 404, "99999")):
        bad = client.get("/api/v1/panel/99999" if status == 404 else "/api/v1/panel/3", query_string=query)
        assert bad.status_code == status and said in bad.get_json()["error"], (query, bad.get_json())
    assert client.get("/api/v1/panel/99999").get_json()["error"] == "no track with id 99999"  # not the store's folder
    offer = client.get("/api/v1/panel/50", query_string={"path_from": 1}).get_json()["path"]
    assert offer["start_id"] == 1 and offer["start"] and not offer["starts_here"]  # "draw the path from 1 to here"
    assert client.get("/api/v1/panel/1", query_string={"path_from": 1}).get_json()["path"]["starts_here"]
    # a start since gone: no offer, no error
    assert client.get("/api/v1/panel/50", query_string={"path_from": 99999}).get_json()["path"]["start"] is None


def test_list_controls_from_the_page_and_from_the_api_are_one_rule(cb: Callbacks, client: FlaskClient) -> None:
    """The five controls as one value: the page's raw widget values and the API's parsed query
    string go through the same rules, so both make the same list."""
    assert ListControls.from_controls(None, None, None, None, None) == ListControls() == ListControls(k=K_DEFAULT)
    for k in (0, K_PAGE_MAX + 1, None):  # empty or out of range: the default, as the permalink's k
        assert ListControls.from_controls(k, 0, 0, [], "   ") == ListControls()
    page = ListControls.from_controls(7, 2, 0, ["dedupe"], "  year > 1990 ")
    assert page == ListControls(k=7, max_per_artist=2, max_per_album=None, dedupe=True, where="year > 1990")
    assert page.variety() == {"dedupe": True, "max_per_artist": 2, "where": "year > 1990"}
    assert ListControls().variety() == {"dedupe": False}
    api = ListControls.from_args({"k": 7, "max_per_artist": 2, "max_per_album": None, "dedupe": True,
                                  "where": "year > 1990"})
    assert api == page
    answer = client.get("/api/v1/panel/3", query_string={"k": 7, "max_per_artist": 2, "dedupe": "true",
                                                         "where": "year > 1990"}).get_json()
    assert answer["similar"] == cb.track_view(3, page)["similar"] and len(answer["similar"]) == 7


def test_track_panel_needs_the_explorer(demo_store: DemoStore) -> None:
    """The API alone (no page, so no panel): the route says so, 501, never a 500."""
    from flask import Flask

    from explorer import api

    server = Flask("bare")
    with Store.open(demo_store.store) as store:
        api.register(server, store, projection=lambda: None)
        answer = server.test_client().get("/api/v1/panel/3")
    assert answer.status_code == 501 and "no track panel" in answer.get_json()["error"]


def test_clear_button_clears_the_track_a_clip_and_the_highlight(cb: Callbacks, monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    # what dash.ctx says for a click on "×"
    monkeypatch.setattr(dash, "ctx", SimpleNamespace(triggered_id="clear",
                                                     triggered=[{"prop_id": "clear.n_clicks", "value": 1}]))
    selected, centre, panel, highlight = cb.select([], [], 1)
    assert selected is None and centre is dash.no_update and panel is None
    assert json.loads(highlight) == {"mode": "none", "marks": []}


def test_variety_controls_change_the_list(cb: Callbacks, demo_store: DemoStore) -> None:
    plain = cb.track_view(5, ListControls())
    per_artist = cb.track_view(5, ListControls(max_per_artist=1))
    with Store.open(demo_store.store) as store:
        def artists(view: Any) -> list[str]:
            ids = [r["id"] for r in view["similar"]]
            return [store.track(i)["artist"] for i in ids]
        known = [a for a in artists(per_artist) if a]  # untagged tracks have no artist to limit
        assert len(artists(per_artist)) == 10 and len(set(known)) == len(known)
        known = [a for a in artists(plain) if a]
        assert len(set(known)) < len(known)  # the demo has 12 tracks per style, a few per artist


def test_song_path_from_the_panel_drawn_listed_and_playable(cb: Callbacks) -> None:
    offer = cb.track_view(1, ListControls())["path"]
    assert offer["start"] is None and not offer["starts_here"]  # "start a path here" only
    assert cb.track_view(1, ListControls(), path_from=1)["path"]["starts_here"]
    offer = cb.track_view(50, ListControls(), path_from=1)["path"]
    with cb.store.holding():
        start = cb.store.track(1)
    assert offer["start_id"] == 1 and offer["start"] == f"{start['artist'] or '?'} – {start['title'] or '?'}"
    assert not offer["starts_here"]
    assert _texts(cb.draw_path({"from": 1, "to": 50, "steps": 6, "at": 1})[0]) == _texts(cb.path(1, 50, 6)[0])
    with pytest.raises(dash.exceptions.PreventUpdate):
        cb.draw_path({"from": "x", "to": 50})

    panel, drawn = cb.path(1, 50, 6)
    highlight = json.loads(str(drawn))
    text = _texts(panel)
    with cb.store.holding():
        expected = [s.track_id for s in cb.store.song_path(1, 50, length=6)]
    assert [r["id"] for r in listed(panel, "path-list")] == expected and "(6 tracks)" in text
    assert "/api/v1/path?from=1&to=50&steps=6&format=m3u" in text
    assert "path-player" in text and all(f"/audio/{i}" in text for i in expected)  # played in order
    assert highlight["mode"] == "path"  # one line through the path, in order, the ends marked
    assert [m["id"] for m in highlight["marks"]] == expected
    assert [m["symbol"] for m in highlight["marks"]] == ["diamond", *["circle"] * 4, "diamond"]
    error, _ = cb.path(1, 1, 6)
    assert "two different tracks" in _texts(error)


def test_extend_a_selection(cb: Callbacks) -> None:
    members = [3, 9, 27]
    text = _texts(cb.extend_selection(members))
    added = [r["id"] for r in listed(cb.extend_selection(members), "extend-list")]
    assert len(added) == 20 and not set(added) & set(members)
    assert "/api/v1/extend?ids=3,9,27&n=20&format=m3u" in text
    assert "nothing selected" in _texts(cb.extend_selection(None))


def _shown_ids(cb: Callbacks, shown: str) -> list[int]:
    """The track ids a ``#map-filter[data-filter]`` value marks, decoded as the page does."""
    import base64

    import numpy as np

    body = json.loads(shown)
    ids = cb.data.frame["id"].to_numpy()
    assert body["n"] == len(ids)
    mask = np.unpackbits(np.frombuffer(base64.b64decode(body["bits"]), np.uint8), bitorder="little")[:len(ids)]
    return sorted(ids[mask.astype(bool)].tolist())


def test_filters_grey_out_what_does_not_match(cb: Callbacks) -> None:
    frame = cb.data.frame
    genre = str(frame["genre"].dropna().iloc[0])
    shown, note = cb.filters([genre], None, None)
    matching = frame["id"][frame["genre"] == genre].tolist()
    assert note == f"{len(matching)} of {len(frame)} tracks match the filters"
    assert _shown_ids(cb, shown) == sorted(matching)  # a bit per point: these stand out
    _, note = cb.filters(None, None, (1990, 1999))
    assert note.startswith(f"{int(frame['year'].between(1990, 1999).sum())} of")
    shown, note = cb.filters(None, None, None)
    assert note == "" and shown == "null"

    fig = cb.figure("decade")
    names = [t.name for t in fig.data]
    assert all(re.match(r"\d{4}s \(\d+\)|\(none\)", n) for n in names) and names == sorted(names)
    clusters = cb.figure("cluster")
    assert sum(int(t.name.rsplit("(", 1)[1].rstrip(")")) for t in clusters.data) == len(frame)
    assert len(clusters.data) >= 3


def test_points_binary_colours_and_hover_cards(cb: Callbacks, client: FlaskClient) -> None:
    import numpy as np

    frame, traces = cb.data.frame, cb.data.traces("genre")
    ids = frame["id"].to_numpy()
    # the figure draws no point itself: it says where the page's renderer gets them, and how to colour
    fig = cb.figure("genre")
    meta = fig.layout.meta["musicmap"]
    assert all(list(t.x) == [None] for t in fig.data) and len(fig.data) == len(traces.names)
    assert meta["n"] == len(frame) and meta["colors"] == [t.marker.color for t in fig.data]
    x0, x1 = fig.layout.xaxis.range
    assert x0 < frame["x"].min() and x1 > frame["x"].max()
    points = client.get(meta["points"], headers={"Accept-Encoding": "gzip"})
    assert points.status_code == 200 and points.headers["Content-Encoding"] == "gzip"
    assert points.headers["Cache-Control"] == "private, max-age=86400"
    assert points.headers["X-Musicmap-Points"] == str(len(frame))
    raw = client.get(meta["points"]).data
    n = len(frame)
    assert len(raw) == 12 * n
    assert np.frombuffer(raw[:4 * n], "<i4").tolist() == ids.tolist()
    assert np.allclose(np.frombuffer(raw[4 * n:8 * n], "<f4"), frame["x"], atol=1e-4)
    assert np.allclose(np.frombuffer(raw[8 * n:], "<f4"), frame["y"], atol=1e-4)
    codes = np.frombuffer(client.get(meta["codes"]).data, np.uint8)
    assert len(codes) == n and all((codes[rows] == i).all() for i, rows in enumerate(traces.members))
    decade = np.frombuffer(client.get("/api/v1/map/colors?by=decade").data, np.uint8)
    assert len(decade) == n and decade.max() == len(cb.data.traces("decade").names) - 1
    bad = client.get("/api/v1/map/colors?by=mood")
    assert bad.status_code == 400 and "by='mood'" in bad.get_json()["error"]
    # a new map version, new URLs (a browser may cache the old ones)
    assert f"v={cb.data.token}" in meta["points"] and f"v={cb.data.token}" in meta["codes"]
    # the page's figure carries no per-point text: hover asks for a card by track id
    layout = client.get("/_dash-layout").get_json()
    sent = json.dumps(layout).split('"figure": ')[1].split('"layout": ')[0]
    assert '"text"' not in sent and sent.count('"hoverinfo": "none"') == len(traces.names)
    track = int(ids[traces.members[0][0]])
    card = client.get(f"/api/v1/map/{track}")
    assert card.status_code == 200 and card.headers["Cache-Control"] == "private, max-age=60"
    row = cb.data.frame.set_index("id").loc[track]
    body = card.get_json()
    assert body["id"] == track and body["title"] == row["title"] and body["artist"] == row["artist"]
    assert body["x"] == pytest.approx(row["x"]) and body["map"] == cb.data.projection
    missing = client.get("/api/v1/map/999999")
    assert missing.status_code == 404 and "no track with id 999999" in missing.get_json()["error"]
    assert client.get("/api/v1/map/abc").status_code == 404


def test_search_and_centre(cb: Callbacks) -> None:
    row = cb.data.frame.dropna(subset=["title"]).iloc[0]
    hits, lit = cb.search(str(row["title"]).split()[0].upper(), "name", None)
    assert hits and any(h.id["index"] == int(row["id"]) for h in hits)
    assert lit is dash.no_update  # a title search leaves the map's highlight as it is
    assert "no match" in _texts(cb.search("zzzz-nothing-like-this", "name", None)[0])
    assert cb.search("   ", "name", None) == ([], dash.no_update)
    ops = cb.centre(int(row["id"])).to_plotly_json()["operations"]
    xr = next(op["params"]["value"] for op in ops if op["location"] == ["layout", "xaxis", "range"])
    assert xr[0] < row["x"] < xr[1] and abs((xr[0] + xr[1]) / 2 - row["x"]) < 1e-6
    with pytest.raises(dash.exceptions.PreventUpdate):
        cb.centre(99999)


def test_search_by_sound_lights_the_matches_and_lists_them(cb: Callbacks) -> None:
    """The search box by sound: how the words were read, the matches lit on the map (spots, no
    lines), a list that opens, selects and exports; bad words say why, never an error."""
    panel, lit = cb.search("quiet ambient without drums", "sound", None)
    highlight = json.loads(lit)
    assert highlight["mode"] == "spots" and len(highlight["marks"]) == SOUND_LIST  # 96 tracks: a tenth, at least 20
    rows = panels.listed(panel, "sound-list")
    assert len(rows) == SOUND_LIST and [r["id"] for r in rows] == [m["id"] for m in highlight["marks"][:SOUND_LIST]]
    assert all("quiet" in r["genre"] and "not drums" in r["genre"] for r in rows)  # what matched, under the name
    text = _texts(panel)
    assert "sounding quiet → " in text and "not drums → " in text
    select = _find(panel, "select-sound")
    assert getattr(select, "data-value") == ",".join(str(r["id"]) for r in rows)
    m3u = _find(panel, "sound-m3u")
    assert m3u.href.startswith("/api/v1/find?q=quiet+ambient+without+drums") and "format=m3u" in m3u.href
    like, lit = cb.search("calmer", "sound", 5)
    assert "like " in _texts(like) and 5 not in [r["id"] for r in panels.listed(like, "sound-list")]
    assert len(json.loads(lit)["marks"]) == SOUND_LIST  # among its neighbours, the list is what is lit
    for text, reason in (("xyzzy", "no tag matches"), ("some music", "no word that describes"),
                         ("x" * 1000, "at most 300")):
        panel, lit = cb.search(text, "sound", None)
        assert reason in _texts(panel) and json.loads(lit)["marks"] == []
    prompt, lit = cb.search("", "sound", None)
    assert "describe a sound" in _texts(prompt)


def test_view_state_round_trips_through_the_url(cb: Callbacks) -> None:
    colors = ("genre", "style", "decade")
    state = ViewState(track=7, color="decade", genres=["Jazz", "Rock & Roll"], years=(1970, 1989), k=20,
                      per_artist=2, dedupe=True, where="year > 1970")
    assert parse(encode(state), colors) == state
    assert encode(ViewState()) == "" and parse("", colors) == ViewState()
    junk = parse("?track=abc&color=<script>&k=999999&years=2000-1990&per_artist=-3&dedupe=perhaps", colors)
    assert junk == ViewState()  # a bad link shows the default view, never an error
    url = cb.url_for(4, "decade", ["Jazz"], None, [1970, 1989], 12, None, 2, ["dedupe"], "")
    values = cb.state_from_url(url, parse("", colors))
    # "Jazz" selects the map's spelling of its genre group, the filter's option (issue #29)
    assert values[0] == 4 and values[1] == "decade" and values[2] == ["jazz"] and values[4] == [1970, 1989]
    assert values[5] == 12 and values[7] == 2 and values[8] == ["dedupe"]
    with pytest.raises(dash.exceptions.PreventUpdate):  # the URL already shows this view: nothing to send
        cb.state_from_url(url, parse(url, colors))


# -- the process ---------------------------------------------------------------------------------

@pytest.mark.subprocess
def test_explorer_process_never_imports_torch(demo_store: DemoStore) -> None:
    code = (
        "import sys\n"
        "from store import Store\n"
        "from explorer import create_app\n"
        f"store = Store.open({str(demo_store.store)!r})\n"
        "app = create_app(store)\n"
        "client = app.server.test_client()\n"
        "assert client.get('/').status_code == 200\n"
        "assert client.get('/_dash-layout').status_code == 200\n"
        "assert client.get('/api/v1/similar/1').status_code == 200\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'indexer'))\n"
        "print(','.join(bad))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


@pytest.mark.subprocess
def test_serve_runs_a_production_server(demo_store: DemoStore) -> None:
    with serving(demo_store.store) as url, urllib.request.urlopen(url + "/api/v1/tracks?limit=1") as response:
        assert response.headers["Server"] == "musicmap"  # waitress (ident), not Werkzeug's dev server
        assert json.load(response)["total"] == 96


def test_selection_panel_and_exports(cb: Callbacks, demo_store: DemoStore) -> None:
    import base64
    import csv
    import io
    import os

    traces = cb.data.traces("genre")
    ids = cb.data.frame["id"].to_numpy()
    chosen = [int(ids[r]) for r in traces.members[0]]  # a lasso is read in the browser (test_browser.py)

    text = _texts(cb.selection_panel(chosen))
    genre = cb.data.frame.set_index("id").loc[chosen[0], "genre"]
    assert f"Selection: {len(chosen)} tracks" in text and f"{genre} {len(chosen)}" in text
    assert f"WHERE id IN ({', '.join(map(str, chosen))})" in text
    assert json.dumps(json.dumps([f"/audio/{i}" for i in chosen]))[1:-1] in text  # the play-in-order queue
    assert "Lasso" in _texts(cb.selection_panel(None))

    with Store.open(demo_store.store) as store:
        paths = [store.file_path(i) for i in chosen]
    absolute = base64.b64decode(cb.export("m3u-absolute", chosen)["content"]).decode().splitlines()
    assert absolute[0] == "#EXTM3U" and absolute[2::2] == paths and absolute[1].startswith("#EXTINF:")
    relative = cb.export("m3u-relative", chosen)
    lines = base64.b64decode(relative["content"]).decode().splitlines()[2::2]
    folder = os.path.commonpath([os.path.dirname(p) for p in paths])
    assert all(not Path(p).is_absolute() for p in lines)
    assert [os.path.normpath(os.path.join(folder, p)) for p in lines] == paths
    table = cb.export("csv", chosen)
    rows = list(csv.DictReader(io.StringIO(table["content"])))
    assert table["filename"].endswith(".csv") and [int(r["id"]) for r in rows] == chosen
    with pytest.raises(dash.exceptions.PreventUpdate):
        cb.export("csv", [])

    # tracks like the selection as a whole: its centroid, none of its own
    like = cb.similar_to_selection(chosen[:4])
    text, found = _texts(like), [r["id"] for r in listed(like, "centroid-list")]
    assert len(found) == 10 and not set(found) & set(chosen[:4]) and "Like these 4 tracks" in text
    frame = cb.data.frame.set_index("id")
    assert (frame.loc[found, "genre"] == genre).mean() >= 0.5  # mostly the selection's own genre
    assert "nothing selected" in _texts(cb.similar_to_selection(None))


def test_sql_through_the_api_and_the_panel(client: FlaskClient, cb: Callbacks) -> None:
    ok = client.get("/api/v1/sql", query_string={"q": "SELECT genre, count(*) AS n FROM tracks GROUP BY genre "
                                                       "ORDER BY n DESC, genre", "limit": 3}).get_json()
    assert ok["columns"] == ["genre", "n"] and len(ok["rows"]) == 3 and ok["truncated"] is True
    similar = client.get("/api/v1/sql", query_string={"q": "SELECT id, score FROM similar_to(1, 5)"}).get_json()
    assert len(similar["rows"]) == 5 and all(r[0] != 1 for r in similar["rows"])
    for hostile, said in (("SELECT * FROM read_csv('/etc/passwd')", "file"),
                          ("SELECT * FROM read_text('/etc/hostname')", "file"),
                          ("SELECT * FROM glob('/*')", "file"),
                          ("ATTACH '/tmp/x.duckdb' AS x", "SELECT"), ("COPY tracks TO '/tmp/x.csv'", "SELECT"),
                          ("INSTALL httpfs", "SELECT"), ("LOAD httpfs", "SELECT"), ("DELETE FROM tracks", "SELECT"),
                          ("SELECT 1; SELECT 2", "several statements"), ("SELEC nothing", "syntax")):
        response = client.get("/api/v1/sql", query_string={"q": hostile})
        body = response.get_json()
        assert response.status_code == 400 and said.lower() in body["error"].lower(), (hostile, body)
    assert client.get("/api/v1/sql").status_code == 400

    columns, rows, error, status, ids = cb.run_sql("SELECT id, title, score FROM similar_to({selected}, 7)", 3)
    assert error == "" and [c["id"] for c in columns] == ["id", "title", "score"] and len(rows) == 7
    assert ids == [r["id"] for r in rows] and "7 rows" in status and "show on map" in status
    _, _, error, _, ids = cb.run_sql("SELECT id FROM similar_to({selected}, 3)", None)
    assert "click a track" in error and ids is None
    _, rows, error, _, _ = cb.run_sql("SELECT nope FROM tracks", None)
    assert rows == [] and "nope" in error  # DuckDB's message, inline
    shown, _ = cb.filters(None, None, None, selection=[1, 2, 3])
    assert _shown_ids(cb, shown) == [1, 2, 3]  # "show on map": the result tracks stand out, the rest greyed


def test_explain_a_match_shared_styles_and_closest_windows(tmp_path: Path, cb: Callbacks) -> None:
    import numpy as np

    from store import TrackRecord

    d = 8
    rng = np.random.default_rng(3)
    w1, w2 = rng.standard_normal((4, d)), rng.standard_normal((3, d))
    w2[1] = w1[2] + 0.01 * rng.standard_normal(d)  # the moments that match: 60 s into one, 30 s into the other
    model = fake_model(d, kind="maest", name="m", model_id="m", label="test MAEST")
    with Store.open_for_indexing(tmp_path / "s", model) as store:
        store.write_tracks([
            TrackRecord(path="/x/a.flac", size=1, mtime=1.0, tags={"title": "A", "artist": "X"},
                        vector=w1.mean(axis=0).astype(np.float32), n_windows=4, windows=w1.astype(np.float32),
                        window_starts=[0.0, 30.0, 60.0, 90.0],
                        styles={"Jazz---Bebop": 0.7, "Jazz---Cool Jazz": 0.4, "Rock---Punk": 0.05}),
            TrackRecord(path="/x/b.flac", size=1, mtime=1.0, tags={"title": "B", "artist": "Y"},
                        vector=w2.mean(axis=0).astype(np.float32), n_windows=3, windows=w2.astype(np.float32),
                        window_starts=[0.0, 30.0, 60.0],
                        styles={"Jazz---Bebop": 0.5, "Electronic---Techno": 0.3}),
        ])
        store.sync()
    with Store.open(tmp_path / "s") as store:
        callbacks: Callbacks = create_app(store).server.extensions["musicmap_callbacks"]
        text = _texts(callbacks.explain(1, 2))
        similarity = store.sql("SELECT similarity(2, 1)").rows[0][0]
        assert store.windows(1)[0].tolist() == [0.0, 30.0, 60.0, 90.0] and store.windows(1)[1].shape == (4, d)
    assert "Why Y – B is like X – A" in text and f"similarity {similarity:.3f}" in text
    assert "Jazz › Bebop" in text and "1 of their top styles shared" in text and "Electronic › Techno" in text
    assert "Closest moments: 1:00 here and 0:30 there" in text
    assert "/audio/1#t=60.0" in text and "/audio/2#t=30.0" in text  # play each from that moment
    # a store without styles or windows says so
    plain = _texts(cb.explain(1, 2))
    assert "No style predictions" in plain and "No per-window vectors" in plain
    assert "no track" in _texts(cb.explain(1, 99999)).lower()


def test_markers_are_sized_for_the_library_and_the_legend_clears_the_mode_bar(cb: Callbacks) -> None:
    from explorer.figure import marker_size

    sizes = [marker_size(n) for n in (40, 1_000, 100_000, 1_000_000)]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] >= 10 and 3 <= sizes[-1] <= 4
    fig = cb.figure("genre")
    assert fig.data[0].marker.size == marker_size(len(cb.data.frame))
    # the legend right of the plot, starting below the top margin where the mode bar sits
    assert fig.layout.legend.x >= 1.0 and fig.layout.legend.y == 1.0 and fig.layout.margin.t >= 30
