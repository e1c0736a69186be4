"""Load and concurrency against a running `musicmap serve` (issue #9), local only and bounded.

``load``: a synthetic 100k-track store (``bench_explorer.build``: tagged tracks, clustered vectors,
a stored layout), served by `musicmap serve` (waitress, 8 threads); ``--clients`` threads (50) each
hold one keep-alive connection and send requests back to back for ``--seconds`` (60): similar
tracks for a random track (60 %), a search for random words (30 %), the compact map (10 %).
Recorded: requests, errors (anything but 200, or no answer), p50/p99/max latency per endpoint and
overall, the server's peak RSS. Goal: 0 errors and p99 ≤ 250 ms. The clients run on the same
2 cores as the server: the figures include their cost.

``concurrency``: a store of real audio files (``features`` embedder) is served while
`musicmap index` adds ``--new`` (1,000) short files to it; 5 clients query similar, search and
the track list throughout. Recorded: errors, latency, and when the new tracks appeared to the
running server (no restart).

``subsonic``: the same synthetic store (its tracks in one folder with a ``cover.jpg``: the files
themselves are not there), served; first one client times each OpenSubsonic browse method
(``getArtists``, ``getAlbumList2`` with 500 albums of several types, ``search3``, ``getAlbum``,
``getCoverArt`` once cached, ...) 20 times in a row (median, max: goals ≤ 100 ms, cover art
≤ 50 ms); then ``--clients`` (20) browse at once for ``--seconds``, as player apps would.

    python benchmarks/bench_load.py load [--tracks 100000] [--clients 50] [--seconds 60]
    python benchmarks/bench_load.py concurrency [--new 1000]
    python benchmarks/bench_load.py subsonic [--tracks 100000] [--clients 20] [--seconds 30]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from _report import save  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WORDS = ["song", "number", "artist", "album", "1", "42", "77", "jazz", "night", "zzz"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(store: Path) -> tuple[subprocess.Popen[str], int, float]:
    port = _free_port()
    # The server's log goes to a file: a pipe nobody reads fills up and stalls the server.
    log = open(store.parent / "serve.log", "w")  # noqa: SIM115 (the server holds it until it ends)
    proc = subprocess.Popen([sys.executable, "-m", "musicmap.cli", "serve", "--store", str(store), "--port",
                             str(port)], stdout=subprocess.DEVNULL, stderr=log, text=True, cwd=ROOT,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    started = time.perf_counter()
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/api/v1/map")  # also builds the map data, as a first visitor would
            conn.getresponse().read()
            conn.close()
            return proc, port, time.perf_counter() - started
        except OSError:
            if proc.poll() is not None or time.perf_counter() - started > 600:
                raise RuntimeError("musicmap serve did not start: " + (store.parent / "serve.log").read_text()) \
                    from None
            time.sleep(0.2)


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _client_process(port: int, threads: int, first_seed: int, seconds: float, pick: Any, out: Any) -> None:
    """One load process: ``threads`` clients for ``seconds``; puts (samples, failures) on ``out``."""
    clients = Clients(port, threads, pick, processes=1, first_seed=first_seed)
    clients.stop_at = time.monotonic() + seconds
    clients.run_threads()
    out.put((clients.samples, clients.failures))


class Clients:
    """``n`` clients, each a thread with its own keep-alive connection, sending ``pick()``'s
    requests back to back; spread over ``processes`` processes, so that the clients' own Python
    (one GIL per process) does not queue the answers they wait for."""

    def __init__(self, port: int, n: int, pick: Any, processes: int = 5, first_seed: int = 0) -> None:
        self.port, self.n, self.pick, self.processes, self.first_seed = port, n, pick, processes, first_seed
        self.stop = threading.Event()
        self.stop_at = float("inf")
        self.samples: list[tuple[str, float, int]] = []  # (endpoint, ms, status or 0 for no answer)
        self.failures: list[tuple[str, float, str]] = []  # (endpoint, seconds into the run, what)
        self.t0 = time.monotonic()
        self.lock = threading.Lock()

    def _client(self, seed: int) -> None:
        rng = random.Random(seed)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        local: list[tuple[str, float, int]] = []
        while not self.stop.is_set() and time.monotonic() < self.stop_at:
            name, path = self.pick(rng)
            started = time.perf_counter()
            try:
                conn.request("GET", path, headers={"Accept-Encoding": "gzip"})
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException) as exc:
                status = 0
                with self.lock:
                    self.failures.append((name, round(time.monotonic() - self.t0, 2), f"{type(exc).__name__}: {exc}"))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            local.append((name, (time.perf_counter() - started) * 1000, status))
        conn.close()
        with self.lock:
            self.samples.extend(local)

    def run_threads(self) -> None:
        self.t0 = time.monotonic()
        threads = [threading.Thread(target=self._client, args=(self.first_seed + i,), daemon=True)
                   for i in range(self.n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def run(self, seconds: float, server_pid: int) -> dict[str, Any]:
        import multiprocessing as mp

        context = mp.get_context("fork")
        out = context.Queue()
        per = [self.n // self.processes + (1 if i < self.n % self.processes else 0) for i in range(self.processes)]
        procs = [context.Process(target=_client_process, args=(self.port, k, 1000 * i, seconds, self.pick, out))
                 for i, k in enumerate(per) if k]
        peak = _rss_mb(server_pid)
        for p in procs:
            p.start()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.stop.is_set():
            time.sleep(0.5)
            peak = max(peak, _rss_mb(server_pid))
        if self.stop.is_set():  # stopped early (concurrency): tell the processes
            for p in procs:
                p.terminate()
        for _ in procs:
            try:
                samples, failures = out.get(timeout=90)
            except Exception:  # a terminated process sends nothing
                break
            self.samples.extend(samples)
            self.failures.extend(failures)
        for p in procs:
            p.join(timeout=30)
        return {**summarise(self.samples, seconds), "server_peak_rss_mb": round(peak, 1),
                "failures": self.failures[:20]}


def summarise(samples: list[tuple[str, float, int]], seconds: float) -> dict[str, Any]:
    def stats(rows: list[tuple[str, float, int]]) -> dict[str, Any]:
        ms = np.array([r[1] for r in rows]) if rows else np.zeros(1)
        errors = sum(1 for r in rows if r[2] != 200)
        return {"requests": len(rows), "errors": errors, "per_s": round(len(rows) / seconds, 1),
                "p50_ms": round(float(np.percentile(ms, 50)), 1), "p99_ms": round(float(np.percentile(ms, 99)), 1),
                "max_ms": round(float(ms.max()), 1)}

    by_name: dict[str, list[tuple[str, float, int]]] = {}
    for row in samples:
        by_name.setdefault(row[0], []).append(row)
    statuses: dict[str, int] = {}
    for row in samples:
        statuses[str(row[2])] = statuses.get(str(row[2]), 0) + 1
    return {"all": stats(samples), **{name: stats(rows) for name, rows in sorted(by_name.items())},
            "statuses": statuses}


def load(n: int, clients: int, seconds: float, dim: int) -> dict[str, Any]:
    from bench_explorer import build

    out: dict[str, Any] = {"tracks": n, "dim": dim, "clients": clients, "seconds": seconds}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "store"
        out["build_s"] = round(build(folder, n, dim), 1)
        proc, port, start_s = _serve(folder)
        out["server_start_s"] = round(start_s, 1)
        out["server_rss_idle_mb"] = round(_rss_mb(proc.pid), 1)

        def pick(rng: random.Random) -> tuple[str, str]:
            roll = rng.random()
            if roll < 0.6:
                return "similar", f"/api/v1/similar/{rng.randint(1, n)}?k=10"
            if roll < 0.9:
                return "search", f"/api/v1/search?q={rng.choice(WORDS)}+{rng.randint(1, 999)}&limit=10"
            return "map", "/api/v1/map"

        try:
            out["result"] = Clients(port, clients, pick).run(seconds, proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    res = out["result"]["all"]
    out["goal"] = {"errors": 0, "p99_ms": 250, "met": res["errors"] == 0 and res["p99_ms"] <= 250}
    return out


def concurrency(new: int, base: int = 200) -> dict[str, Any]:
    import soundfile as sf

    out: dict[str, Any] = {"base_tracks": base, "new_tracks": new}
    with tempfile.TemporaryDirectory() as tmp:
        lib, extra, store = Path(tmp) / "lib", Path(tmp) / "lib" / "new", Path(tmp) / "store"
        lib.mkdir()
        rng = np.random.default_rng(0)
        t = np.arange(16_000) / 16_000
        for i in range(base + new):
            folder = extra if i >= base else lib
            folder.mkdir(exist_ok=True)
            y = 0.3 * np.sin(2 * np.pi * (80 + 3 * i) * t) + 0.02 * rng.standard_normal(len(t))
            sf.write(folder / f"Band {i % 13} - Tune {i:05d}.wav", y.astype(np.float32), 16_000)
        held = Path(tmp) / "held"
        shutil.move(str(extra), held)  # the new files join the library only once the server is up
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        subprocess.run([sys.executable, "-m", "musicmap.cli", "index", str(lib), "--store", str(store), "--model",
                        "features", "-q"], check=True, cwd=ROOT, env=env)
        proc, port, _ = _serve(store)
        seen: list[tuple[float, int]] = []

        def pick(rng: random.Random) -> tuple[str, str]:
            roll = rng.random()
            if roll < 0.5:
                return "similar", f"/api/v1/similar/{rng.randint(1, base)}?k=10"
            if roll < 0.8:
                return "search", f"/api/v1/search?q=tune+{rng.randint(0, base + new - 1):05d}"
            return "tracks", "/api/v1/tracks?limit=1"

        clients = Clients(port, 5, pick)

        def watch() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            while not clients.stop.is_set():
                conn.request("GET", "/api/v1/tracks?limit=0")
                total = json.loads(conn.getresponse().read())["total"]
                seen.append((time.monotonic(), total))
                time.sleep(0.5)

        try:
            watcher = threading.Thread(target=watch, daemon=True)
            started = time.monotonic()
            runner = threading.Thread(target=clients.run_threads, daemon=True)  # 5 clients, this process
            runner.start()
            watcher.start()
            shutil.move(str(held), extra)
            index_started = time.monotonic()
            done = subprocess.run([sys.executable, "-m", "musicmap.cli", "index", str(lib), "--store", str(store),
                                   "--model", "features", "--json"], capture_output=True, text=True, cwd=ROOT,
                                  env=env)
            out["index"] = {"returncode": done.returncode, "seconds": round(time.monotonic() - index_started, 1),
                            "stderr_tail": done.stderr.strip().splitlines()[-3:],
                            **{k: v for k, v in json.loads(done.stdout or "{}").items()
                               if k in ("added", "failed", "unchanged")}}
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and (not seen or seen[-1][1] < base + new):
                time.sleep(0.5)
            clients.stop.set()
            runner.join(timeout=120)
            watcher.join(timeout=30)
            first_new = next((at for at, total in seen if total > base), None)
            all_new = next((at for at, total in seen if total >= base + new), None)
            out["new_tracks_first_seen_s"] = round(first_new - index_started, 1) if first_new else None
            out["all_new_tracks_seen_s"] = round(all_new - index_started, 1) if all_new else None
            out["served_total_at_end"] = seen[-1][1] if seen else None
            out["run_s"] = round(time.monotonic() - started, 1)
        finally:
            clients.stop.set()
            proc.terminate()
            proc.wait(timeout=30)
    out["result"] = {**summarise(clients.samples, out.get("run_s") or 1.0), "failures": clients.failures[:20]}
    return out


AUTH = "u=player&p=bench&v=1.16.1&c=bench&f=json"


def subsonic(n: int, clients: int, seconds: float, dim: int) -> dict[str, Any]:
    from bench_explorer import build
    from PIL import Image

    out: dict[str, Any] = {"tracks": n, "dim": dim, "clients": clients, "seconds": seconds}
    with tempfile.TemporaryDirectory() as tmp:
        folder, music = Path(tmp) / "store", Path(tmp) / "music"
        music.mkdir()
        Image.new("RGB", (1000, 1000), (200, 40, 40)).save(music / "cover.jpg", quality=90)
        out["build_s"] = round(build(folder, n, dim, root=str(music)), 1)
        proc, port, start_s = _serve(folder)
        out["server_start_s"] = round(start_s, 1)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

        def call(method: str, query: str = "") -> tuple[float, dict[str, Any] | bytes]:
            started = time.perf_counter()
            conn.request("GET", f"/rest/{method}?{AUTH}&{query}")
            response = conn.getresponse()
            body = response.read()
            ms = (time.perf_counter() - started) * 1000
            if response.getheader("Content-Type", "").startswith("application/json"):
                answer = json.loads(body)["subsonic-response"]
                if answer["status"] != "ok":
                    raise RuntimeError(f"{method}?{query}: {answer}")
                return ms, answer
            return ms, body

        try:
            first_ms, artists = call("getArtists")  # the first call builds the catalog of albums and artists
            out["first_getArtists_ms"] = round(first_ms, 1)
            assert isinstance(artists, dict)
            artist_ids = [a["id"] for i in artists["artists"]["index"] for a in i["artist"]]
            _, albums = call("getAlbumList2", "type=alphabeticalByName&size=500")
            assert isinstance(albums, dict)
            album_ids = [a["id"] for a in albums["albumList2"]["album"]]
            out["artists"], out["albums_listed"] = len(artist_ids), len(album_ids)
            rng = random.Random(3)
            cases = {
                "getArtists": lambda: ("getArtists", ""),
                "getIndexes": lambda: ("getIndexes", ""),
                "getAlbumList2 random 500": lambda: ("getAlbumList2", "type=random&size=500"),
                "getAlbumList2 newest 500": lambda: ("getAlbumList2", "type=newest&size=500"),
                "getAlbumList2 alphabeticalByName 500": lambda: ("getAlbumList2",
                                                                 f"type=alphabeticalByName&size=500&offset="
                                                                 f"{rng.randint(0, 20000)}"),
                "getAlbumList2 byGenre 500": lambda: ("getAlbumList2", "type=byGenre&genre=Jazz&size=500"),
                "search3": lambda: ("search3", f"query=song+number+{rng.randint(1, n)}"),
                "search3 artist": lambda: ("search3", f"query=artist+{rng.randint(1, 9000)}"),
                "getArtist": lambda: ("getArtist", f"id={rng.choice(artist_ids)}"),
                "getAlbum": lambda: ("getAlbum", f"id={rng.choice(album_ids)}"),
                "getSong": lambda: ("getSong", f"id={rng.randint(1, n)}"),
                "getRandomSongs 50": lambda: ("getRandomSongs", "size=50"),
                "getCoverArt 300 cached": lambda: ("getCoverArt", "id=1&size=300"),
            }
            timings: dict[str, Any] = {}
            for name, make in cases.items():
                method, query = make()
                call(method, query)  # warm: the cover made once, the catalog read
                ms = [call(*make())[0] for _ in range(20)]
                timings[name] = {"median_ms": round(float(np.median(ms)), 1), "max_ms": round(max(ms), 1)}
            out["one_client"] = timings
            conn.close()

            def pick(rng: random.Random) -> tuple[str, str]:
                roll = rng.random()
                if roll < 0.2:
                    return "getAlbumList2", f"/rest/getAlbumList2?{AUTH}&type=random&size=50"
                if roll < 0.4:
                    return "getAlbum", f"/rest/getAlbum?{AUTH}&id={rng.choice(album_ids)}"
                if roll < 0.55:
                    return "search3", f"/rest/search3?{AUTH}&query=song+{rng.randint(1, n)}"
                if roll < 0.7:
                    return "getArtist", f"/rest/getArtist?{AUTH}&id={rng.choice(artist_ids)}"
                if roll < 0.85:
                    return "getCoverArt", f"/rest/getCoverArt?{AUTH}&id={rng.randint(1, n)}&size=300"
                if roll < 0.95:
                    return "getSong", f"/rest/getSong?{AUTH}&id={rng.randint(1, n)}"
                return "getArtists", f"/rest/getArtists?{AUTH}"

            out["browsing"] = Clients(port, clients, pick, processes=min(clients, 4)).run(seconds, proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    worst = max(v["median_ms"] for k, v in out["one_client"].items() if not k.startswith("getCoverArt"))
    out["goal"] = {"browse_median_ms": 100, "cover_cached_ms": 50, "browsing_errors": 0,
                   "met": worst <= 100 and out["one_client"]["getCoverArt 300 cached"]["median_ms"] <= 50
                   and out["browsing"]["all"]["errors"] == 0}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", choices=("load", "concurrency", "subsonic"))
    parser.add_argument("--tracks", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--new", type=int, default=1000)
    args = parser.parse_args()
    if args.which == "subsonic":
        result = subsonic(args.tracks, args.clients if args.clients != 50 else 20, args.seconds, args.dim)
    else:
        result = load(args.tracks, args.clients, args.seconds, args.dim) if args.which == "load" \
            else concurrency(args.new)
    save(f"reliability-{args.which}", result)


if __name__ == "__main__":
    main()
