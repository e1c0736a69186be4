"""The explorer's server side: HTTP routes with a real Flask client, and no torch in its process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from explorer import create_app
from store import Store
from tests.conftest import DemoStore


@pytest.fixture
def client(demo_store: DemoStore):  # type: ignore[no-untyped-def]
    store = Store.open(demo_store.store)
    app = create_app(store)
    yield app.server.test_client()
    store.close()


def test_page_and_layout(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/").status_code == 200
    layout = client.get("/_dash-layout").get_json()
    text = json.dumps(layout)
    assert "handcrafted features (librosa)" in text and "96 tracks" in text


def test_audio_by_id_with_range(client, demo_store: DemoStore) -> None:  # type: ignore[no-untyped-def]
    with Store.open(demo_store.store) as store:
        path = store.track(1)["path"]
    size = Path(path).stat().st_size
    full = client.get("/audio/1")
    assert full.status_code == 200 and len(full.data) == size
    part = client.get("/audio/1", headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and len(part.data) == 10
    assert part.headers["Content-Range"] == f"bytes 10-19/{size}"
    missing = client.get("/audio/99999")
    assert missing.status_code == 404 and "no track" in missing.get_json()["error"]
    for trick in ("/audio/..%2F..%2Fetc%2Fpasswd", "/audio/%2Fetc%2Fpasswd", "/audio/-1"):
        response = client.get(trick)  # never a file: Dash's catch-all page or a 404
        assert b"root:" not in response.data and not response.mimetype.startswith("audio/")


def test_api_similar_and_bad_parameters(client) -> None:  # type: ignore[no-untyped-def]
    ok = client.get("/api/v1/similar/1?k=4")
    assert ok.status_code == 200 and len(ok.get_json()["results"]) == 4
    for bad in ("k=0", "k=-1", "k=abc", "k=100000"):
        response = client.get(f"/api/v1/similar/1?{bad}")
        assert response.status_code == 400 and "k=" in response.get_json()["error"]
    assert client.get("/api/v1/similar/99999").status_code == 404
    assert client.get("/api/v1/tracks/1").get_json()["id"] == 1
    genre = client.get("/api/v1/tracks/2").get_json()["genre"]
    filtered = client.get("/api/v1/similar/1", query_string={"k": 6, "where": f"genre = '{genre}'",
                                                             "dedupe": "true", "mmr": 0.8})
    results = filtered.get_json()["results"]
    assert filtered.status_code == 200 and len(results) == 6 and {r["genre"] for r in results} == {genre}
    varied = client.get("/api/v1/similar/1", query_string={"k": 6, "max_per_artist": 1}).get_json()["results"]
    artists = [r["artist"] for r in varied if r["artist"]]
    assert len(varied) == 6 and len(artists) == len(set(artists))
    for bad, named in (("mmr=9", "mmr"), ("max_per_album=x", "max_per_album"), ("where=nope%20%3D%201", "nope"),
                       ("min_score=2", "min_score"), ("colour=red", "colour")):
        response = client.get(f"/api/v1/similar/1?{bad}")
        assert response.status_code == 400 and named in response.get_json()["error"], (bad, response.get_json())


def test_select_callback_updates_panel(client) -> None:  # type: ignore[no-untyped-def]
    """Dash's own callback endpoint, as the browser calls it: selecting track 3 lists 10 neighbours."""
    body: dict[str, object] = {
        "inputs": [{"id": "selected", "property": "data", "value": 3}],
        "state": [{"id": "highlight-index", "property": "data", "value": 8}],
        "changedPropIds": ["selected.data"],
    }
    # Dash names duplicate outputs with a hash suffix; find the real callback id from the server.
    deps = client.get("/_dash-dependencies").get_json()
    show = next(d for d in deps if "panel.children" in d["output"])
    body["output"] = show["output"]
    body["outputs"] = [{"id": o.split(".")[0], "property": o.split(".", 1)[1]}
                       for o in show["output"].strip(".").split("...")]
    response = client.post("/_dash-update-component", json=body)
    assert response.status_code == 200, response.data[:500]
    panel = response.get_json()["response"]["panel"]["children"]
    text = json.dumps(panel)  # plain JSON: the server escapes "/" as \\u002f
    assert text.count('"type": "similar"') == 10 and '"src": "/audio/3"' in text


def test_explorer_process_never_imports_torch(demo_store: DemoStore) -> None:
    code = (
        "import sys\n"
        "from store import Store\n"
        "from explorer import create_app\n"
        f"store = Store.open({str(demo_store.store)!r})\n"
        "app = create_app(store)\n"
        "client = app.server.test_client()\n"
        "assert client.get('/').status_code == 200\n"
        "assert client.get('/api/v1/similar/1').status_code == 200\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'indexer'))\n"
        "print(','.join(bad))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def test_store_without_a_map_says_what_to_do(tmp_path: Path) -> None:
    import numpy as np

    from store import ModelInfo, TrackRecord

    model = ModelInfo(name="features", id="features-v1", kind="handcrafted",
                      label="handcrafted features (librosa)", dimension=4)
    with Store.open_for_indexing(tmp_path / "s", model) as store:
        store.write_tracks([TrackRecord(path="/x/a.flac", size=1, mtime=1.0, tags={"title": "A"},
                                        vector=np.ones(4, np.float32))])
        store.sync()
    with Store.open(tmp_path / "s") as store:
        client = create_app(store).server.test_client()
        layout = json.dumps(client.get("/_dash-layout").get_json())
    assert "no map yet" in layout and "musicmap map" in layout
