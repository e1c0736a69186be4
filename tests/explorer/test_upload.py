"""Query by example: an uploaded clip is embedded with the store's own model (the functions
`musicmap serve --allow-upload` injects), placed on the map and answered with its neighbours;
bad uploads are refused with a reason and nothing is kept."""

from __future__ import annotations

import base64
import io
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dash
import numpy as np
import pytest
import soundfile as sf
from flask.testing import FlaskClient

from data.demo_library import synthesise
from explorer import create_app
from explorer.callbacks import Callbacks
from explorer.controls import ListControls
from explorer.panels import listed
from musicmap.commands.serve import upload_functions
from musicmap.settings import resolve
from store import Store
from tests.conftest import DemoStore, run_cli, serving

UPLOAD = "/api/v1/similar/upload"


class Spy:
    """The real embed function, recording the paths it was given."""

    def __init__(self, embed: Any) -> None:
        self.embed, self.paths = embed, []  # type: ignore[var-annotated]

    def __call__(self, path: Path) -> np.ndarray:
        self.paths.append(path)
        assert path.is_file()
        return np.asarray(self.embed(path))


@pytest.fixture(scope="module")
def store(demo_store: DemoStore) -> Iterator[Store]:
    with Store.open(demo_store.store, shared=True) as opened:
        yield opened


@pytest.fixture(scope="module")
def spy(store: Store) -> Spy:
    embed, place = upload_functions(store, resolve(None, env={}))
    spy = Spy(embed)
    spy.place = place  # type: ignore[attr-defined]
    return spy


@pytest.fixture(scope="module")
def app(store: Store, spy: Spy) -> dash.Dash:
    return create_app(store, spy, place=spy.place, max_upload_bytes=3_000_000)  # type: ignore[attr-defined]


@pytest.fixture
def client(app: dash.Dash) -> FlaskClient:
    return app.server.test_client()


@pytest.fixture(autouse=True)
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Uploads' temporary folders go here, so the test can see that none is left behind."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _wav(audio: np.ndarray, sr: int) -> bytes:
    out = io.BytesIO()
    sf.write(out, audio, sr, format="WAV", subtype="PCM_16")
    return out.getvalue()


def _map_xy(client: FlaskClient) -> dict[int, tuple[float, float]]:
    body = client.get("/api/v1/map").get_json()
    return {i: (x, y) for i, x, y in zip(body["id"], body["x"], body["y"], strict=True)}


def test_a_library_file_uploaded_finds_itself_where_it_sits(client: FlaskClient, store: Store,
                                                            demo_store: DemoStore, spy: Spy,
                                                            private_tmp: Path) -> None:
    track = next(t for t in demo_store.tracks if t.format == "flac")
    track_id = store.track_id_for_path(track.path)
    assert track_id is not None
    data = track.path.read_bytes()
    response = client.post(UPLOAD + "?k=5", data={"file": (io.BytesIO(data), "../../etc/evil name.flac")},
                           content_type="multipart/form-data")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["query"]["type"] == "upload" and body["query"]["bytes"] == len(data)
    assert len(body["results"]) == 5
    assert body["results"][0]["track_id"] == track_id and body["results"][0]["score"] > 0.999
    # placed (openTSNE transform) next to the track itself: within 5 % of the map's extent
    xy = _map_xy(client)
    span = max(np.ptp([p[0] for p in xy.values()]), np.ptp([p[1] for p in xy.values()]))
    position = body["query"]["position"]
    assert np.hypot(position["x"] - xy[track_id][0], position["y"] - xy[track_id][1]) < 0.05 * span
    # the clip was embedded from a file named by the server in a fresh temp folder, deleted since
    path = spy.paths[-1]
    assert path.name == "upload.flac" and path.parent.parent == private_tmp and not path.parent.exists()
    assert list(private_tmp.iterdir()) == []
    # the raw body works too, and the variety options apply
    raw = client.post(UPLOAD + "?k=3&where=" + "id%20%3E%3D%200", data=data,
                      content_type="application/octet-stream").get_json()
    assert raw["results"][0]["track_id"] == track_id and len(raw["results"]) == 3


def test_a_new_clip_lands_among_its_style(client: FlaskClient, demo_store: DemoStore, store: Store) -> None:
    audio, sr = synthesise("techno", 20.0, seed=123)
    body = client.post(UPLOAD, data=_wav(audio, sr), content_type="application/octet-stream").get_json()
    genre = {t.path.name: t.style for t in demo_store.tracks}
    styles = [genre[Path(r["path"]).name] for r in body["results"]]
    assert len(styles) == 10 and styles[:5] == ["techno"] * 5 and styles.count("techno") >= 6, styles
    assert body["query"]["position"] is not None


def test_bad_uploads_are_refused_with_a_reason(client: FlaskClient, demo_store: DemoStore, private_tmp: Path,
                                               tmp_path: Path) -> None:
    def post(data: bytes, name: str = "clip.mp3") -> tuple[int, str]:
        r = client.post(UPLOAD, data={"file": (io.BytesIO(data), name)}, content_type="multipart/form-data")
        return r.status_code, r.get_json()["error"]

    status, message = post(b"")
    assert status == 400 and "empty" in message
    status, message = post(b"just some text, not music\n" * 100, "notes.mp3")
    assert status == 400 and "not an audio file" in message
    status, message = post(b"fLaC" + bytes(range(256)) * 40, "broken.flac")  # audio magic, garbage inside
    assert status == 400 and "could not decode" in message
    status, message = post(b"\0" * 3_000_001, "huge.wav")
    assert status == 413 and "at most 3.0 MB" in message
    r = client.post(UPLOAD, data={"other": (io.BytesIO(b"x"), "a.mp3")}, content_type="multipart/form-data")
    assert r.status_code == 400 and "'file'" in r.get_json()["error"]
    r = client.post(UPLOAD + "?k=0", data=b"x", content_type="application/octet-stream")
    assert r.status_code == 400 and "k=" in r.get_json()["error"]
    # bodies over the upload limit never reach the handler; other routes keep the 1 MiB limit
    r = client.post(UPLOAD, data=b"\0" * 5_500_000, content_type="application/octet-stream")
    assert r.status_code == 413
    r = client.get("/api/v1/tracks", data=b"\0" * 1_100_000)
    assert r.status_code == 413
    assert list(private_tmp.iterdir()) == []  # nothing left behind by any of them


def test_uploads_are_off_unless_allowed(demo_store: DemoStore) -> None:
    with Store.open(demo_store.store) as store:
        client = create_app(store).server.test_client()
        r = client.post(UPLOAD, data=b"RIFF", content_type="application/octet-stream")
        assert r.status_code == 403 and "--allow-upload" in r.get_json()["error"]
        layout = json.dumps(client.get("/_dash-layout").get_json())
    assert "Drop an audio clip" not in layout


def test_similar_to_several_tracks_through_the_api(client: FlaskClient, store: Store) -> None:
    ids = [int(i) for i in store.sql("SELECT id FROM tracks ORDER BY id LIMIT 3").rows[0:3] for i in i]
    body = client.get("/api/v1/similar?k=7&ids=" + ",".join(map(str, ids))).get_json()
    assert len(body["results"]) == 7 and not {r["track_id"] for r in body["results"]} & set(ids)
    assert [r["track_id"] for r in body["results"]] == [n.track_id for n in store.search(ids, k=7)]
    assert client.get("/api/v1/similar?ids=1,x").status_code == 400
    assert client.get("/api/v1/similar").status_code == 400
    assert client.get("/api/v1/similar?ids=999999").status_code == 404


def test_the_page_upload_callback_draws_a_star_and_lists_neighbours(app: dash.Dash, demo_store: DemoStore,
                                                                   store: Store) -> None:
    cb: Callbacks = app.server.extensions["musicmap_callbacks"]
    layout = json.dumps(app.server.test_client().get("/_dash-layout").get_json())
    assert "Drop an audio clip" in layout and "up to 3 MB" in layout
    track = next(t for t in demo_store.tracks if t.format == "wav")
    track_id = store.track_id_for_path(track.path)
    url = "data:audio/wav;base64," + base64.b64encode(track.path.read_bytes()).decode()
    panel, drawn, error = cb.upload(url, "mine.wav", ListControls(k=10))
    highlight = json.loads(str(drawn))
    text = json.dumps([c.to_plotly_json() for c in panel], default=lambda o: o.to_plotly_json(), ensure_ascii=False)
    assert error == "" and "Your clip: mine.wav" in text and "on the map at the star" in text
    assert listed(panel, "similar-list")[0]["id"] == track_id  # the track itself, first in the similar list
    assert highlight["mode"] == "rays"  # the star, a line to each neighbour
    star = highlight["marks"][0]
    assert star["symbol"] == "star" and star["id"] == -1 and len(highlight["marks"]) == 11
    _, _, error = cb.upload("data:audio/wav;base64,bm90IGF1ZGlv", "notes.wav", ListControls(k=10))
    assert "notes.wav: not an audio file" in error
    # through the page's gate: the clip's panel takes the chosen track's place (none chosen) ...
    panel, _, error, cleared, selected = cb.upload_go({"contents": url, "filename": "mine.wav"}, 10, None, None,
                                                      [], None)
    assert listed(panel, "similar-list")[0]["id"] == track_id and error == "" and cleared is None and selected is None
    # ... and a refused clip leaves both as they are
    panel, _, error, _, selected = cb.upload_go({"contents": "data:audio/wav;base64,bm90IGF1ZGlv",
                                                 "filename": "notes.wav"}, 10, None, None, [], None)
    assert panel is dash.no_update and selected is dash.no_update and "not an audio file" in error


@pytest.mark.subprocess
def test_serve_allow_upload_over_http(demo_store: DemoStore) -> None:
    import urllib.error
    import urllib.request

    track = next(t for t in demo_store.tracks if t.format == "ogg")
    with serving(demo_store.store, "--allow-upload", "--max-upload-mb", "5") as url:
        request = urllib.request.Request(url + UPLOAD + "?k=4", data=track.path.read_bytes(), method="POST",
                                         headers={"Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.loads(response.read())
        with Store.open(demo_store.store) as store:
            assert body["results"][0]["track_id"] == store.track_id_for_path(track.path)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(url + UPLOAD, data=b"hello", method="POST"), timeout=30)
        assert refused.value.code == 400
    result = run_cli("serve", "--store", demo_store.store, "--allow-upload", "--max-upload-mb", "0")
    assert result.returncode == 1 and "--max-upload-mb" in result.stderr
