"""A real JavaScript OpenSubsonic client against a running ``musicmap serve``: npm's
``subsonic-api`` (MIT; pinned in ``tests/js/package-lock.json``, installed by ``make test-deps``),
driven by ``tests/js/subsonic_client.mjs`` the way a player app drives it (salted-token or
API-key auth, GET or form POST), on a copy of the demo store (it stars and scrobbles)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from store import Store
from tests.conftest import DemoStore, serving

pytestmark = pytest.mark.subprocess

JS = Path(__file__).resolve().parents[1] / "js"
TOKEN = "open-sesame"


def _client_ready() -> None:
    """``npm ci`` when ``make test-deps`` has not run (the lock file pins the version)."""
    if (JS / "node_modules" / "subsonic-api").is_dir():
        return
    npm = shutil.which("npm")
    assert npm is not None, "the JavaScript client test needs Node.js and npm: make test-deps installs them"
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--silent"], cwd=JS, check=True, timeout=300)


def _journey(url: str, secret: str, song: int, *how: str) -> dict[str, dict[str, object]]:
    node = shutil.which("node")
    assert node is not None
    proc = subprocess.run([node, "subsonic_client.mjs", url, secret, str(song), *how], cwd=JS, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out: dict[str, dict[str, object]] = json.loads(proc.stdout)
    return out


def _ok(out: dict[str, dict[str, object]], step: str) -> object:
    assert out[step]["ok"], f"{step}: {out[step].get('error')}"
    return out[step]["value"]


@pytest.fixture
def store_copy(demo_store: DemoStore, tmp_path: Path) -> Path:
    return Path(shutil.copytree(demo_store.store, tmp_path / "store"))


def test_the_npm_client_plays_finds_similar_stars_and_scrobbles(store_copy: Path) -> None:
    _client_ready()
    with Store.open(store_copy) as store:
        song = 7
        path = store.file_path(song)
    with serving(store_copy, "--token", TOKEN) as url:
        for how in (("password", "get"), ("apiKey", "post")):
            out = _journey(url, TOKEN, song, *how)
            assert _ok(out, "ping") == "ok"
            assert "sonicSimilarity" in _ok(out, "extensions")  # type: ignore[operator]
            child = _ok(out, "song")
            assert isinstance(child, dict) and child["id"] == str(song)
            stream = _ok(out, "stream")
            assert isinstance(stream, dict)
            assert stream["sha256"] == hashlib.sha256(Path(path).read_bytes()).hexdigest()  # the file's own bytes
            similar = _ok(out, "similar")
            assert isinstance(similar, list) and len(similar) == 5 and str(song) not in similar
            matches = _ok(out, "sonicSimilar")
            assert isinstance(matches, list) and len(matches) == 5
            assert all(0.0 <= m["similarity"] <= 1.0 for m in matches)
            assert _ok(out, "star") == "ok" and str(song) in _ok(out, "starred")  # type: ignore[operator]
            assert _ok(out, "scrobble") == "ok"
            assert "musicmap · For you" in _ok(out, "playlists")  # type: ignore[operator]
            # browsing as a library view does: artists → artist → album → its songs; albums; search
            artists = _ok(out, "artists")
            assert isinstance(artists, list) and len(artists) >= 2 and all(a["id"].startswith("ar-") for a in artists)
            albums = _ok(out, "artist")
            assert isinstance(albums, list) and albums and all(a["songCount"] >= 1 for a in albums)
            songs = _ok(out, "album")
            assert isinstance(songs, list) and len(songs) == albums[0]["songCount"]
            assert all(s["id"].isdigit() and s["coverArt"] for s in songs)
            listed = _ok(out, "albumList")
            assert isinstance(listed, list) and len(listed) == 5
            found = _ok(out, "search")
            assert isinstance(found, dict) and str(song) in found["songs"]
            art = _ok(out, "coverArt")  # the demo's files carry no picture: the protocol's error, as JSON
            assert isinstance(art, dict) and art["type"].startswith("application/json")
        wrong = _journey(url, "not-the-token", song)
        assert wrong["ping"] == {"ok": True, "value": "failed"}  # the client hands the error envelope back
        assert "value" not in wrong["song"] or wrong["song"]["value"] is None
    with Store.open(store_copy) as store:
        events = store.journal.events()
    assert set(events["kind"]) == {"liked", "played"}
    assert len(set(events["source"])) == 1 and str(events["source"].iloc[0]).startswith("subsonic:")
    assert (events["kind"] == "played").sum() == 2  # one scrobble per journey, keyed by its time
