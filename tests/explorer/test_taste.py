"""Taste through the explorer (issue #31): recording events over the JSON API, the journal and the
taste read back, lists steered or not (``taste=0``), the mix in JSON and M3U, floods, a read-only
journal, and the page's Dash side (For you, show my likes, the panel's thumbs).

Every test that records works on its own copy of the demo store: recorded events steer every list,
and the session's store is shared by the other tests."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import dash
import pytest
from flask.testing import FlaskClient

from explorer import create_app
from explorer.api import OPENAPI
from explorer.callbacks import Callbacks
from explorer.controls import ListControls
from explorer.panels import listed
from store import Store
from store.journal import RATE_BURST
from tests.conftest import DemoStore


@pytest.fixture
def own(demo_store: DemoStore, tmp_path: Path) -> Iterator[tuple[dash.Dash, Store]]:
    """An explorer over a copy of the demo store (recording here steers nothing of the other tests)."""
    copy = tmp_path / "store"
    shutil.copytree(demo_store.store, copy)
    store = Store.open(copy)
    yield create_app(store), store
    store.close()


@pytest.fixture
def client(own: tuple[dash.Dash, Store]) -> FlaskClient:
    return own[0].server.test_client()


def _post(client: FlaskClient, body: object) -> tuple[int, dict[str, object]]:
    response = client.post("/api/v1/events", json=body)
    return response.status_code, response.get_json()


def test_record_a_like_a_duplicate_and_its_undo(client: FlaskClient) -> None:
    status, body = _post(client, {"kind": "liked", "track_id": 3, "context": {"list": "similar", "of": 5}})
    assert status == 200, body
    first = body["recorded"][0]  # type: ignore[index]
    assert first["kind"] == "liked" and first["track_id"] == 3 and not first["duplicate"] and first["ids"]
    # the same event again (same source, kind, track and time): recognised, not stored twice
    status, body = _post(client, {"kind": "liked", "track_id": 3, "at": first["at"]})
    assert status == 200 and body["recorded"][0]["duplicate"] is True  # type: ignore[index]
    # an idempotency key, twice in one batch
    status, body = _post(client, {"events": [{"kind": "played", "track_id": 4, "key": "k1", "seconds": 200,
                                              "duration": 210}, {"kind": "played", "track_id": 4, "key": "k1"}]})
    assert [r["duplicate"] for r in body["recorded"]] == [False, True], body  # type: ignore[index]
    taste = client.get("/api/v1/taste").get_json()
    assert taste["summary"]["liked"] == 1 and taste["summary"]["plays"] == 1
    assert taste["recording"] == {"on": True, "why": None} and taste["steering"] is True
    assert [t["track_id"] for t in taste["liked"]] == [3] and taste["liked"][0]["title"]  # with its row
    events = client.get("/api/v1/events").get_json()["events"]
    assert [(e["kind"], e["track_id"]) for e in events] == [("liked", 3), ("played", 4)]
    assert events[0]["context"] == {"list": "similar", "of": 5} and events[0]["source"] == "api"
    # undo takes the like back
    status, body = _post(client, {"kind": "liked", "track_id": 3, "undo": True, "source": "explorer"})
    assert status == 200 and body["recorded"][0]["undone"] == first["ids"]  # type: ignore[index]
    assert client.get("/api/v1/taste").get_json()["summary"]["liked"] == 0
    assert client.get("/api/v1/events?limit=1").get_json()["events"][0]["undoes"] == first["ids"][0]


def test_bad_events_are_named(client: FlaskClient) -> None:
    assert client.post("/api/v1/events", json={"kind": "liked", "track_id": 999_999}).status_code == 404
    status, body = _post(client, {"kind": "liked", "track_id": 3, "at": time.time() + 3600})
    assert status == 400 and "in the future" in str(body["error"])
    status, body = _post(client, {"kind": "loved", "track_id": 3})
    assert status == 400 and "loved" in str(body["error"])
    status, body = _post(client, {"kind": "liked", "track_id": 3, "colour": "red"})
    assert status == 400 and "unknown field 'colour'" in str(body["error"])
    status, body = _post(client, {"events": []})
    assert status == 400
    status, body = _post(client, [1, 2])
    assert status == 400 and "JSON object" in str(body["error"])
    response = client.post("/api/v1/events", data=b"not json", content_type="application/json")
    assert response.status_code == 400
    assert client.get("/api/v1/events").get_json()["events"] == []  # a refused call writes nothing


def test_a_flood_is_answered_429_with_retry_after(client: FlaskClient) -> None:
    batch = {"events": [{"kind": "skipped", "track_id": 3, "at": 1_700_000_000 + i, "source": "flood"}
                        for i in range(1000)]}
    for _ in range(int(RATE_BURST) // 1000):
        assert client.post("/api/v1/events", json=batch).status_code == 200  # duplicates count too
    response = client.post("/api/v1/events", json=batch)
    assert response.status_code == 429, response.get_json()
    assert int(response.headers["Retry-After"]) >= 1 and "too many events" in response.get_json()["error"]
    # another source is not held back
    assert _post(client, {"kind": "liked", "track_id": 3})[0] == 200


def test_a_read_only_journal_is_403_and_the_page_says_why(demo_store: DemoStore, tmp_path: Path) -> None:
    copy = tmp_path / "store"
    shutil.copytree(demo_store.store, copy)
    with Store.open(copy) as store:
        app = create_app(store, record=False)
        client = app.server.test_client()
        status, body = _post(client, {"kind": "liked", "track_id": 3})
        assert status == 403 and "--no-record" in str(body["error"])
        taste = client.get("/api/v1/taste").get_json()
        assert taste["recording"] == {"on": False, "why": "this server was started with --no-record"}
        panel = client.get("/api/v1/panel/3").get_json()
        assert panel["recording"]["on"] is False and "--no-record" in panel["recording"]["why"]
        assert "are not recorded: this server was started with --no-record" in json.dumps(
            client.get("/_dash-layout").get_json(), ensure_ascii=False)
        assert client.get("/api/v1/similar/3").status_code == 200  # reading and steering go on
        assert not (copy / "taste.sqlite").exists()


def test_lists_are_steered_unless_taste_is_off(client: FlaskClient) -> None:
    plain = client.get("/api/v1/similar/5?k=10").get_json()
    assert plain["taste"] is None and all(r["taste"] is None for r in plain["results"])
    liked = plain["results"][3]["track_id"]
    disliked = plain["results"][0]["track_id"]
    _post(client, {"events": [{"kind": "liked", "track_id": liked}, {"kind": "disliked", "track_id": disliked}]})
    steered = client.get("/api/v1/similar/5?k=10").get_json()
    assert steered["taste"]["liked"] == 1 and steered["taste"]["disliked"] == 1
    ids = [r["track_id"] for r in steered["results"]]
    assert disliked not in ids  # a disliked track never appears
    notes = [r["taste"]["why"] for r in steered["results"] if r["taste"]]
    assert any(n.startswith("↑ close to") and "you liked" in n for n in notes), notes
    off = client.get("/api/v1/similar/5?k=10&taste=0").get_json()
    assert off["taste"] is None and [r["track_id"] for r in off["results"]] == [r["track_id"] for r in plain["results"]]
    # the same switch on every list
    for url in ("/api/v1/similar?ids=5,6", "/api/v1/extend?ids=5,6", "/api/v1/path?from=5&to=60",
                "/api/v1/find?q=calm"):
        on, no = client.get(url).get_json(), client.get(url + "&taste=false").get_json()
        assert on["taste"] is not None and no["taste"] is None, url
        rows = on.get("results", on.get("steps"))
        assert all("taste" in r for r in rows), url
    panel = client.get("/api/v1/panel/5").get_json()
    assert panel["taste"]["liked"] == 1 and any(r["note"] for r in panel["similar"])
    assert {r["id"]: r["thumb"] for r in panel["similar"]}.get(liked) == "liked"
    assert client.get("/api/v1/panel/5?taste=false").get_json()["taste"] is None
    assert client.get(f"/api/v1/panel/{liked}").get_json()["thumb"] == "liked"


def test_mix_in_json_and_m3u(client: FlaskClient, demo_store: DemoStore) -> None:
    empty = client.get("/api/v1/mix").get_json()
    assert empty["results"] == [] and "nothing to mix from yet" in empty["reason"]
    _post(client, {"events": [{"kind": "liked", "track_id": 3}, {"kind": "played", "track_id": 40,
                                                                 "seconds": 25, "duration": 26}]})
    mix = client.get("/api/v1/mix?n=8&max_per_artist=3").get_json()
    assert mix["reason"] is None and mix["taste"]["liked"] == 1 and len(mix["results"]) == 8
    ids = [r["track_id"] for r in mix["results"]]
    assert not {3, 40} & set(ids) and len(set(ids)) == 8  # never what was heard, no repeats
    assert all(r["why"] and r["seed"] in (3, 40) and r["title"] is not None for r in mix["results"])
    m3u = client.get("/api/v1/mix?n=8&max_per_artist=3&format=m3u")
    assert m3u.status_code == 200 and m3u.mimetype == "audio/x-mpegurl"
    lines = [line for line in m3u.get_data(as_text=True).splitlines() if line and not line.startswith("#")]
    assert len(lines) == 8 and all(Path(line).is_file() for line in lines)
    assert client.get("/api/v1/mix?since_days=0").status_code == 400


def test_openapi_documents_both_methods_of_events() -> None:
    item = OPENAPI["paths"]["/api/v1/events"]
    assert set(item) == {"get", "post"} and "requestBody" in item["post"]
    for path in ("/api/v1/taste", "/api/v1/mix"):
        assert "get" in OPENAPI["paths"][path]
    for path in ("/api/v1/similar/{track_id}", "/api/v1/panel/{track_id}", "/api/v1/similar", "/api/v1/path",
                 "/api/v1/extend", "/api/v1/find"):
        assert "taste" in [p["name"] for p in OPENAPI["paths"][path]["get"]["parameters"]], path


def test_for_you_and_show_my_likes_on_the_page(own: tuple[dash.Dash, Store], client: FlaskClient) -> None:
    app = own[0]
    cb: Callbacks = app.server.extensions["musicmap_callbacks"]
    nothing = repr(cb.mix())
    assert "nothing to mix from yet" in nothing
    _post(client, {"events": [{"kind": "liked", "track_id": 3}, {"kind": "disliked", "track_id": 70}]})
    panel = cb.mix()
    rows = listed(panel, "mix-list")
    assert len(rows) == 30 and all(r["note"] for r in rows) and 3 not in [r["id"] for r in rows]
    highlight, note = cb.taste_spots(1)
    marks = json.loads(highlight)["marks"]
    assert json.loads(highlight)["mode"] == "spots" and {m["id"] for m in marks} == {3, 70}
    assert note.startswith("1 liked (green), 1 disliked (red)")
    # "use my taste" off: plain lists in the panel and the Dash lists
    view = cb.track_view(5, ListControls(taste=False))
    assert view["taste"] is None and all(r["note"] is None for r in view["similar"])
    assert cb.track_view(5, ListControls())["taste"] is not None
