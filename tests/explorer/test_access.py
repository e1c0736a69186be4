"""Exposure: loopback by default, a token for anything else; with a token every page, callback,
API call and audio request needs it (header, bearer, cookie or ?token= once)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import dash
import pytest
from flask.testing import FlaskClient

from explorer import create_app
from explorer.auth import COOKIE, HEADER
from store import Store
from tests.conftest import DemoStore, run_cli, serving

TOKEN = "s3cret-ü-token"
ROUTES = ("/", "/_dash-layout", "/_dash-dependencies", "/api/v1/tracks?limit=1", "/api/v1/map", "/api/v1/similar/1",
          "/api/v1/openapi.json", "/audio/1", "/api/v1/audio/1", "/assets/style.css")


@pytest.fixture(scope="module")
def app(demo_store: DemoStore) -> Iterator[dash.Dash]:
    with Store.open(demo_store.store) as store:
        yield create_app(store, token=TOKEN)


@pytest.fixture
def client(app: dash.Dash) -> FlaskClient:
    return app.server.test_client()


def test_every_route_needs_the_token(client: FlaskClient) -> None:
    for route in ROUTES:
        response = client.get(route)
        assert response.status_code == 401, route
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        if route != "/":
            assert "needs a token" in response.get_json()["error"], route
    page = client.get("/").get_data(as_text=True)
    assert "needs its token" in page and "<form" in page and TOKEN not in page
    callback = client.post("/_dash-update-component", json={"output": "x", "inputs": []})
    assert callback.status_code == 401
    wrong = client.get("/api/v1/map", headers={HEADER: TOKEN + "x"})
    assert wrong.status_code == 401 and "wrong token" in wrong.get_json()["error"]
    assert client.get("/", query_string={"token": "nope"}).status_code == 401


def test_header_bearer_and_query_token_work(client: FlaskClient) -> None:
    for headers in ({HEADER: TOKEN}, {"Authorization": f"Bearer {TOKEN}"}):
        for route in ROUTES:
            response = client.get(route, headers=headers)
            assert response.status_code in (200, 206), (route, headers)
    # API clients may put it in the query string too (not an unknown parameter)
    assert client.get("/api/v1/tracks", query_string={"token": TOKEN, "limit": 2}).get_json()["limit"] == 2


def test_a_browser_gets_a_cookie_and_a_clean_address(client: FlaskClient) -> None:
    response = client.get("/", query_string={"token": TOKEN, "track": "3"})
    assert response.status_code == 303 and response.headers["Location"] == "/?track=3"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    # the test client keeps the cookie: the page, its callbacks and the audio now work
    assert client.get("/?track=3").status_code == 200
    layout = client.get("/_dash-layout")
    assert layout.status_code == 200 and "96 tracks" in json.dumps(layout.get_json())
    assert client.get("/audio/1", headers={"Range": "bytes=0-99"}).status_code == 206


def test_no_token_no_check(demo_store: DemoStore) -> None:
    with Store.open(demo_store.store) as store:
        client = create_app(store).server.test_client()
        assert client.get("/api/v1/map").status_code == 200


@pytest.mark.subprocess
def test_serve_refuses_an_open_address_without_a_token(demo_store: DemoStore) -> None:
    import socket

    with socket.socket() as taken:  # a port in use: a run that gets past the token check fails to listen
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        args = ("serve", "--store", demo_store.store, "--host", "0.0.0.0", "--port", port)
        refused = run_cli(*args, timeout=60)
        assert refused.returncode == 1 and "--token" in refused.stderr and "--insecure" in refused.stderr
        env_token = run_cli(*args, env={"MUSICMAP_TOKEN": "x"}, timeout=60)
        assert env_token.returncode == 1 and "cannot listen" in env_token.stderr and "--token" not in env_token.stderr
        insecure = run_cli(*args, "--insecure", timeout=60)
        assert insecure.returncode == 1 and "WITHOUT a token" in insecure.stderr and "cannot listen" in insecure.stderr


@pytest.mark.subprocess
def test_served_with_a_token_over_http(demo_store: DemoStore) -> None:
    with serving(demo_store.store, "--token", TOKEN) as url:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url + "/api/v1/map", timeout=30)
        assert refused.value.code == 401
        request = urllib.request.Request(url + "/api/v1/tracks?limit=1", headers={HEADER: TOKEN})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.loads(response.read())["total"] == len(demo_store.tracks)
