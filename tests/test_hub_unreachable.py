"""A hub id with the hub out of reach (issue #29): said in musicmap's one message within seconds.

Before, ``musicmap index`` with the default MAEST model spent ~30 s in the hub client's retries,
printing ``Retrying in 8s [Retry 5/5]`` and ``Name or service not known`` before musicmap's error.
These tests run the real CLI with the network out of reach in three ways, each made on purpose
(the name does not resolve, the port refuses, the host accepts and never answers), with an empty
cache; then a cached model with the hub out of reach (no request at all), and a hub that answers
503 before 404 (the client's own retry lines stay off the terminal).
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from indexer.embedders.hub import probe
from tests.audio import write_tone
from tests.conftest import free_port, make_tiny_maest, run_cli

HUB_ID = "mtg-upf/discogs-maest-30s-pw-129e-519l"
COMMIT = "89abcdef0123456789abcdef0123456789abcdef"
FOREIGN = ("Retrying", "Name or service not known", "Traceback", "Warning", "WARNING", "HTTP Request",
           "thrown while requesting", "huggingface")
"""What the hub client, its HTTP library or Python would print; none of it may reach stderr."""


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hub-library")
    for i, freq in enumerate((220.0, 440.0, 660.0)):
        write_tone(folder / f"tone{i}.wav", 3.0, freq, seed=i)
    return folder


@pytest.fixture
def silent_host() -> Iterator[str]:
    """A local socket that accepts connections and never answers (a host behind a black hole)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        server.close()


class _Hub(http.server.ThreadingHTTPServer):
    """A local stand-in for the hub: records the requests it gets and answers each request for a
    file (``/resolve/``) with the next status of ``statuses`` (the last one from then on), every
    other (the API's) with 404."""

    def __init__(self, statuses: list[int]) -> None:
        super().__init__(("127.0.0.1", 0), _HubHandler)
        self.statuses = statuses
        self.requests: list[str] = []


class _HubHandler(http.server.BaseHTTPRequestHandler):
    server: _Hub

    def do_HEAD(self) -> None:
        self.server.requests.append(f"{self.command} {self.path}")
        statuses = self.server.statuses
        if "/resolve/" not in self.path:
            self.send_response(404)
        else:
            self.send_response(statuses.pop(0) if len(statuses) > 1 else statuses[0])
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def local_hub() -> Iterator[_Hub]:
    hub = _Hub([404])
    thread = threading.Thread(target=hub.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        hub.shutdown()
        hub.server_close()


def _index(library: Path, store: Path, endpoint: str, hf_home: Path, *extra: str,
           cache: Path | None = None) -> tuple[float, str, str, int]:
    env = {"HF_HUB_OFFLINE": "0", "HF_HOME": str(hf_home), "HF_ENDPOINT": endpoint}
    if cache is not None:
        env["HF_HUB_CACHE"] = str(cache)
    start = time.monotonic()
    proc = run_cli("index", library, "--store", store, *extra, env=env, timeout=300)
    return time.monotonic() - start, proc.stdout, proc.stderr, proc.returncode


@pytest.mark.subprocess  # the console script with the hub's environment
@pytest.mark.parametrize("way", ["dns", "refused", "silent"])
def test_an_unreachable_hub_is_said_at_once_in_one_message(way: str, library: Path, tmp_path: Path,
                                                            silent_host: str) -> None:
    endpoint, reason = {
        "dns": ("http://musicmap-hub.invalid", "DNS finds no address for musicmap-hub.invalid"),
        "refused": (f"http://127.0.0.1:{free_port()}", "127.0.0.1 refused the connection"),
        "silent": (silent_host, "127.0.0.1 gave no answer within 4 s"),
    }[way]
    hf_home = tmp_path / "hf"  # an empty cache: the weights were never downloaded
    hf_home.mkdir()
    elapsed, stdout, stderr, rc = _index(library, tmp_path / "store", endpoint, hf_home)
    assert rc == 1, stderr
    assert elapsed < 15, f"{elapsed:.1f} s"  # the hub client's retries took ~30 s
    lines = stderr.splitlines()
    assert lines[0] == (
        f"musicmap index: error: cannot load MAEST model '{HUB_ID}': the Hugging Face hub ({endpoint}) cannot be "
        f"reached ({reason}) and the weights are not in the local cache ({hf_home / 'hub'}).")
    assert len(lines) == 2 and "--model musicnn-msd" in lines[1] and "--model features" in lines[1], stderr
    assert not [word for word in FOREIGN if word in stderr], stderr
    assert stdout == "" and not (tmp_path / "store").exists()  # nothing written


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny MAEST in the hub client's cache layout (refs/main → snapshots/<commit>/)."""
    cache = tmp_path_factory.mktemp("hf-cached") / "hub"
    repo = cache / ("models--" + HUB_ID.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    make_tiny_maest(repo / "snapshots" / COMMIT, ["Electronic---Techno", "Jazz---Bop", "Rock---Punk"])
    return cache


@pytest.mark.subprocess  # the console script with the hub's environment
def test_a_cached_model_loads_without_asking_the_hub(library: Path, hub_cache: Path, tmp_path: Path,
                                                      local_hub: _Hub) -> None:
    endpoint = f"http://127.0.0.1:{local_hub.server_address[1]}"
    _, stdout, stderr, rc = _index(library, tmp_path / "store", endpoint, hub_cache.parent, "--json", "-v",
                                   cache=hub_cache)
    assert rc == 0, stderr
    assert local_hub.requests == []  # not a single request: the cache answered
    assert f"MAEST {HUB_ID}: weights from the local cache, {hub_cache}" in stderr  # said at -v only
    assert json.loads(stdout)["added"] == 3
    manifest = json.loads((tmp_path / "store" / "manifest.json").read_text())
    assert manifest["model"]["id"] == HUB_ID and manifest["model"]["revision"] == COMMIT
    # without -v the cache is used silently, with the hub's name not even resolving (--plan loads
    # the model twice: as asked and --fast)
    _, stdout, stderr, rc = _index(library, tmp_path / "store2", "http://musicmap-hub.invalid",
                                   hub_cache.parent, "--plan", cache=hub_cache)
    assert rc == 0, stderr
    assert stdout.startswith("plan: 3 files to index"), stdout
    assert "local cache" not in stderr and not [word for word in FOREIGN if word in stderr], stderr


@pytest.mark.subprocess  # the console script with the hub's environment
def test_the_hub_clients_retries_stay_off_the_terminal(library: Path, tmp_path: Path, local_hub: _Hub) -> None:
    """A hub that answers (the probe passes) but fails: 503 twice (the client retries, and would
    print each retry), then 404. musicmap's one error is all that is printed."""
    local_hub.statuses[:] = [200, 503, 503, 404]
    hf_home = tmp_path / "hf"
    hf_home.mkdir()
    endpoint = f"http://127.0.0.1:{local_hub.server_address[1]}"
    _, stdout, stderr, rc = _index(library, tmp_path / "store", endpoint, hf_home)
    assert rc == 1, stderr
    assert sum("/resolve/" in r for r in local_hub.requests) == 4, local_hub.requests  # probe; 503, 503, 404
    lines = stderr.splitlines()
    assert lines[0].startswith(f"musicmap index: error: cannot load MAEST model '{HUB_ID}' from the Hugging Face "
                               "hub or its local cache: "), stderr
    assert len(lines) == 2 and "--model features" in lines[1], stderr
    assert not [word for word in FOREIGN if word in stderr], stderr
    assert stdout == ""


def test_the_probe_says_why_in_a_few_words_and_within_its_deadline(silent_host: str, local_hub: _Hub) -> None:
    """The probe alone: each way of being unreachable named; anything that answers is an answer,
    whatever it says (an HTTP error, a TLS handshake that fails, a reply that is not HTTP)."""
    port = local_hub.server_address[1]
    assert probe(f"http://127.0.0.1:{port}/x") is None  # 404: the hub is there
    assert probe(f"https://127.0.0.1:{port}/x") is None  # TLS to a plain HTTP server: it answered
    assert probe("http://musicmap-hub.invalid/x") == "DNS finds no address for musicmap-hub.invalid"
    assert probe(f"http://127.0.0.1:{free_port()}/x") == "127.0.0.1 refused the connection"
    assert probe("musicmap-hub/x") == "not an http(s) URL"
    start = time.monotonic()
    assert probe(silent_host + "/x", seconds=1) == "127.0.0.1 gave no answer within 1 s"
    assert time.monotonic() - start < 3
    with socket.socket() as raw:  # a server that speaks something else, then hangs up
        raw.bind(("127.0.0.1", 0))
        raw.listen()

        def babble() -> None:
            conn, _ = raw.accept()
            conn.recv(1024)
            conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
            conn.close()

        thread = threading.Thread(target=babble, daemon=True)
        thread.start()
        assert probe(f"http://127.0.0.1:{raw.getsockname()[1]}/x") is None
        thread.join(5)
