"""Explorer at scale (issue #7): first paint, selection time and payloads at 10k, 100k and 1M tracks.

For each size a synthetic store is written through the Store API (tagged tracks, ``--dim``-d
clustered vectors, a synthetic 2-D layout stored as a map named ``tsne`` with method
``synthetic``: the explorer's cost does not depend on how the layout was made, and fitting 1M
t-SNE points is ``bench_map``'s business), then ``musicmap serve`` (waitress) is started on it
and measured over real HTTP and in headless Chromium:

- ``layout``: the page's layout request (which carries the whole figure): server time, bytes
  raw and gzip-compressed, as the browser receives it;
- ``first_paint_s``: from navigation to every point drawn in the WebGL scatter (Chromium, a fresh
  profile: plotly.js and Dash's scripts are fetched and compiled too); ``hover_texts_after_paint_s``:
  until the hover texts (sent after the first paint) are in; ``repeat_visit_paint_s``: the same
  page again, scripts cached;
- ``select``: the selection callback through Dash's endpoint (panel + figure patch) for 20
  random tracks: round-trip time on loopback (the server's time, plus little) and response bytes;
- ``select_in_browser_s``: a click on a point until the similar list and rings are shown.

    python benchmarks/bench_explorer.py [--sizes 10000,100000,1000000] [--dim 256]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from _report import save  # benchmarks/ is on sys.path when a script runs
from bench_store import clustered

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GENRES = ["Jazz", "Rock", "Pop", "Techno", "Folk", "Soul", "Metal", "Blues", "Reggae", "Classical", "Ambient",
          "House", "Hip Hop", "Country", "Funk", "Punk", "Disco", "Latin", "Gospel", "Drum and Bass"]


def build(folder: Path, n: int, d: int) -> float:
    from store import ModelInfo, Store, TrackRecord

    started = time.perf_counter()
    model = ModelInfo(name="bench", id=f"bench-{d}", kind="handcrafted", label="benchmark vectors", dimension=d)
    rng = np.random.default_rng(11)
    centres = rng.uniform(-80, 80, (len(GENRES), 2))
    with Store.open_for_indexing(folder, model) as store:
        for start in range(0, n, 20_000):
            stop = min(n, start + 20_000)
            x = clustered(stop - start, d, seed=start)
            store.write_tracks([TrackRecord(
                path=f"/music/{i:07d}.flac", size=1, mtime=1.0,
                tags={"title": f"Song number {i}", "artist": f"Artist {i % 9973}", "album": f"Album {i % 31991}",
                      "genre": GENRES[i % len(GENRES)], "year": 1950 + i % 75, "duration": 200.0},
                vector=x[i - start]) for i in range(start, stop)])
        store.sync()
        ids, _ = store.vectors()
        genre_of = (ids - 1) % len(GENRES)
        xy = centres[genre_of] + rng.normal(0, 9, (len(ids), 2))
        store.write_projection("tsne", ids, xy, method="synthetic",
                               params={"note": "benchmark layout, not a fitted map"},
                               clusters=(genre_of % 12).astype(np.int32))
    return time.perf_counter() - started


def _get(url: str, gz: bool = False) -> tuple[float, bytes, dict[str, str]]:
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"} if gz else {})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as response:
        body = response.read()
        headers = dict(response.headers)
    return time.perf_counter() - started, body, headers


def _post(url: str, body: dict[str, Any]) -> tuple[float, bytes]:
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as response:
        out = response.read()
    return time.perf_counter() - started, out


def _show_body(deps: list[dict[str, Any]], track_id: int) -> dict[str, Any]:
    show = next(d for d in deps if "panel.children" in d["output"])
    values = {"selected.data": track_id, "k.value": 10, "per-artist.value": None, "per-album.value": None,
              "dedupe.value": [], "where.value": "", "color-by.value": "genre"}
    return {"output": show["output"],
            "outputs": [{"id": o.split(".")[0], "property": o.split(".", 1)[1].split("@")[0]}
                        for o in show["output"].strip(".").split("...")],
            "inputs": [{**i, "value": values[f"{i['id']}.{i['property']}"]} for i in show["inputs"]],
            "state": [{**s, "value": values[f"{s['id']}.{s['property']}"]} for s in show["state"]],
            "changedPropIds": ["selected.data"]}


def _browser(url: str, n: int) -> dict[str, Any]:
    chromium, driver_bin = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_bin):
        return {"skipped": "chromium and chromium-driver are not installed"}
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="musicmap-bench-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--window-size=1400,900", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_bin), options=options)
    driver.set_page_load_timeout(600)
    driver.set_script_timeout(600)
    out: dict[str, Any] = {}
    points_js = ("const gd = document.querySelector('#map .js-plotly-plot');"
                 "if (!gd || !gd._fullData) return 0;"
                 "return gd._fullData.filter(t => t.name !== 'selection').reduce((a, t) => a + t.x.length, 0);")
    try:
        started = time.perf_counter()
        driver.get(url + "/")
        while driver.execute_script(points_js) != n:
            if time.perf_counter() - started > 600:
                raise TimeoutError("the map was not drawn in 10 minutes")
            time.sleep(0.05)
        out["first_paint_s"] = round(time.perf_counter() - started, 2)  # a first visit: nothing cached
        started = time.perf_counter()
        while not driver.execute_script("const gd = document.querySelector('#map .js-plotly-plot');"
                                        "const t = gd._fullData[0].text; return t && t.length > 0;"):
            if time.perf_counter() - started > 600:
                raise TimeoutError("no hover texts in 10 minutes")
            time.sleep(0.05)
        out["hover_texts_after_paint_s"] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()
        driver.get(url + "/")  # a second visit: scripts from the browser's cache
        while driver.execute_script(points_js) != n:
            if time.perf_counter() - started > 600:
                raise TimeoutError("the map was not drawn in 10 minutes")
            time.sleep(0.05)
        out["repeat_visit_paint_s"] = round(time.perf_counter() - started, 2)
        out["js_heap_mb"] = round(driver.execute_script("return performance.memory.usedJSHeapSize") / 2**20, 1)
        # a click on one point until the similar list and the rings are there
        point = driver.execute_script(
            "const gd = document.querySelector('#map .js-plotly-plot'); const fl = gd._fullLayout;"
            "const box = gd.getBoundingClientRect(); const t = gd._fullData[0];"
            "return {x: box.left + fl.xaxis._offset + fl.xaxis.l2p(t.x[0]),"
            "        y: box.top + fl.yaxis._offset + fl.yaxis.l2p(t.y[0])};")
        from selenium.webdriver.common.action_chains import ActionChains

        actions = ActionChains(driver)
        actions.w3c_actions.pointer_action.move_to_location(int(point["x"]), int(point["y"]))
        actions.w3c_actions.pointer_action.pause(0.3)
        actions.w3c_actions.pointer_action.click()
        started = time.perf_counter()
        actions.perform()
        while not driver.execute_script(
                "const gd = document.querySelector('#map .js-plotly-plot');"
                "return document.querySelectorAll('#similar-list li').length === 10 "
                "&& gd._fullData[gd._fullData.length - 1].x.length > 1;"):
            if time.perf_counter() - started > 120:
                raise TimeoutError("no selection in 2 minutes")
            time.sleep(0.02)
        out["select_in_browser_s"] = round(time.perf_counter() - started - 0.3, 2)  # minus the pointer pause
    except Exception as exc:  # report what broke, keep the other figures
        out["error"] = f"{type(exc).__name__}: {exc}"[:300]
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return out


def measure(n: int, d: int) -> dict[str, Any]:
    out: dict[str, Any] = {"n": n, "dim": d}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "store"
        out["build_s"] = round(build(folder, n, d), 1)
        with socket_port() as port:
            log = open(Path(tmp) / "serve.log", "w")  # noqa: SIM115 (a pipe nobody reads would stall the server)
            proc = subprocess.Popen([sys.executable, "-m", "musicmap.cli", "serve", "--store", str(folder),
                                     "--port", str(port)], stdout=subprocess.DEVNULL, stderr=log,
                                    text=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        url = f"http://127.0.0.1:{port}"
        try:
            started = time.perf_counter()
            while True:
                try:
                    _get(url + "/api/v1")
                    break
                except OSError:
                    if proc.poll() is not None or time.perf_counter() - started > 600:
                        raise RuntimeError("musicmap serve did not start: "
                                           + (Path(tmp) / "serve.log").read_text()) from None
                    time.sleep(0.2)
            out["server_start_s"] = round(time.perf_counter() - started, 1)
            _get(url + "/_dash-layout")  # the first build of the figure, as the first visitor triggers it
            t_raw, raw, _ = _get(url + "/_dash-layout")
            t_gz, zipped, headers = _get(url + "/_dash-layout", gz=True)
            out["layout"] = {"server_s": round(t_raw, 2), "gzip_server_s": round(t_gz, 2),
                             "bytes": len(raw), "gzip_bytes": len(zipped),
                             "encoding": headers.get("Content-Encoding", "identity")}
            assert gzip.decompress(zipped) == raw if headers.get("Content-Encoding") == "gzip" else True
            t_map, body, _ = _get(url + "/api/v1/map")
            out["api_map"] = {"s": round(t_map, 2), "bytes": len(body)}
            _, deps_raw, _ = _get(url + "/_dash-dependencies")
            deps = json.loads(deps_raw)
            rng = np.random.default_rng(2)
            times, sizes = [], []
            for track_id in rng.integers(1, n + 1, 20):
                t, answer = _post(url + "/_dash-update-component", _show_body(deps, int(track_id)))
                assert b"similar-list" in answer
                times.append(t * 1000)
                sizes.append(len(answer))
            out["select"] = {"p50_ms": round(float(np.percentile(times, 50)), 1),
                             "p95_ms": round(float(np.percentile(times, 95)), 1),
                             "bytes": int(np.median(sizes))}
            out["browser"] = _browser(url, n)
            with open(f"/proc/{proc.pid}/status") as fh:
                out["server_peak_rss_mb"] = round(
                    int(next(r for r in fh if r.startswith("VmHWM")).split()[1]) / 1024, 1)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(json.dumps(out), flush=True)
    return out


class socket_port:
    """A free loopback port (the socket is closed before the server binds it)."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    def __exit__(self, *_: object) -> None:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--dim", type=int, default=256)
    args = parser.parse_args()
    runs = []
    for n in map(int, args.sizes.split(",")):
        try:
            runs.append(measure(n, args.dim))
        except Exception as exc:
            runs.append({"n": n, "error": f"{type(exc).__name__}: {exc}"[:500]})
            print(json.dumps(runs[-1]), flush=True)
    save("explorer", {"runs": runs, "goals": {"first_paint_s_at_100k": 3.0, "select_server_ms_at_100k": 200}})


if __name__ == "__main__":
    main()
