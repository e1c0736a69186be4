"""Explorer at scale (issues #7, #20): the page's speed at 10k, 100k and 1M tracks.

For each size a synthetic store is written through the Store API (tagged tracks, ``--dim``-d
clustered vectors, a synthetic 2-D layout stored as a map named ``tsne`` with method
``synthetic``: the explorer's cost does not depend on how the layout was made, and fitting 1M
t-SNE points is ``bench_map``'s business), then ``musicmap serve`` (waitress) is started on it
and measured over real HTTP and in headless Chromium (no GPU: the page's points are drawn on a 2-D
canvas by ``explorer/assets/pointmap.js``, Plotly draws the axes, legend and lasso):

- ``server_start_s``: from the process start until the API answers (the map is loaded by then);
  ``server_rss_after_start_mb`` and ``server_peak_rss_mb`` (VmHWM at the end of the run);
  ``server_memory_mb``: resident and peak-so-far after each phase (start, layout, the JSON map API,
  the select requests, the browser's flows), to say which phase makes the peak;
- ``layout``: the page's layout request (which carries the whole figure): time, bytes raw and gzip;
- ``first_paint_s``: from navigation to every point drawn (``#map[data-map-points]``), a fresh
  profile (plotly.js and Dash's scripts fetched and compiled too); ``repeat_visit_paint_s``: again,
  scripts cached; ``js_heap_mb``;
- ``click_ms``: a click on a point (from the page's ``pointerdown`` event) until the similar list
  is shown and the highlight drawn (``#map[data-highlighted]`` = 11), median of :data:`CLICKS`
  tracks (the first click after the page loaded is one of them and is also given alone; the panel
  is drawn by the page from ``/api/v1/panel/<id>``, its cover art loaded after that paint, so the
  art's requests are not in the figure); ``hover_ms``: the
  pointer onto a point (from the page's ``pointermove``) until its hover card shows its title and
  artist, median of 5 tracks (each fetched, none cached). ``with_webdriver``: the same, timed from
  before WebDriver was asked to move or click (its dispatch adds 5–10 ms);
- ``filter_ms`` (a genre filter: the matching tracks drawn over the greyed map), ``filter_clear_ms``,
  ``colour_ms`` (colour by decade: the new figure drawn), ``search_ms`` (a title typed: the hits
  listed; the input's own debounce, ``SEARCH_DEBOUNCE_S``, is not included), ``centre_ms`` (a hit
  clicked: the map centred on it) and ``sound_search_ms`` (a search by sound: its 100 best matches
  lit on the map and 20 listed; the first query alone, as it reads the tags, then the median of five
  more; the goal is 300 ms from the last keystroke less the debounce): from the control's change
  (``dash_clientside.set_props``, as a user's edit) until painted;
- ``frame_ms``: the renderer's own time for one frame of every point; ``pan_ms``: the axes moved by
  a tenth (``Plotly.relayout``) until the points are drawn there, median of 3 (what a pan or zoom
  step costs);
- ``select``: the track panel a click asks for (``GET /api/v1/panel/<id>``: the track, its similar
  tracks, their highlight) for 20 random tracks, over HTTP from this process.

Times inside the page are read with ``performance.now()`` in the page itself.

    python benchmarks/bench_explorer.py [--sizes 10000,100000,1000000] [--dim 256] [--keep DIR]
        [--screenshots DIR]
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
from explorer.limits import SEARCH_DEBOUNCE_S  # noqa: E402  (musicmap's own, from the checkout)

SOUND_QUERIES = ("calm piano without drums", "upbeat female vocal", "orchestral, no choir", "dark ambient",
                 "fast loud drums", "mellow acoustic guitar")
GENRES = ["Jazz", "Rock", "Pop", "Techno", "Folk", "Soul", "Metal", "Blues", "Reggae", "Classical", "Ambient",
          "House", "Hip Hop", "Country", "Funk", "Punk", "Disco", "Latin", "Gospel", "Drum and Bass"]


def build(folder: Path, n: int, d: int, root: str = "/music") -> float:
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
                path=f"{root}/{i:07d}.flac", size=1, mtime=1.0,
                tags={"title": f"Song number {i}", "artist": f"Artist {i % 9973}", "album": f"Album {i % 31991}",
                      "genre": GENRES[i % len(GENRES)], "year": 1950 + i % 75, "duration": 200.0},
                vector=x[i - start]) for i in range(start, stop)])
        store.sync()
        ids, _ = store.vectors()
        _sound_tags(store, ids, rng)
        genre_of = (ids - 1) % len(GENRES)
        xy = centres[genre_of] + rng.normal(0, 9, (len(ids), 2))
        store.write_projection("tsne", ids, xy, method="synthetic",
                               params={"note": "benchmark layout, not a fitted map"},
                               clusters=(genre_of % 12).astype(np.int32))
    return time.perf_counter() - started


def _sound_tags(store: Any, ids: np.ndarray, rng: np.random.Generator) -> None:
    """Both MusiCNN taggers' 50 tags for every track (Beta-distributed, each tag with its own prior),
    written as the tag stage writes them, so that a search by sound has the real table's size."""
    from indexer.embedders.musicnn import MSD_TAGS, MTT_TAGS

    for tagger, labels in (("musicnn-mtt", MTT_TAGS), ("musicnn-msd", MSD_TAGS)):
        priors = rng.uniform(0.5, 5.0, len(labels))
        for start in range(0, len(ids), 20_000):
            part = ids[start : start + 20_000]
            values = rng.beta(priors, 20.0, size=(len(part), len(labels)))
            store.write_sound_tags(tagger, {int(t): dict(zip(labels, map(float, row), strict=True))
                                            for t, row in zip(part, values, strict=True)})


def _get(url: str, gz: bool = False) -> tuple[float, bytes, dict[str, str]]:
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"} if gz else {})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as response:
        body = response.read()
        headers = dict(response.headers)
    return time.perf_counter() - started, body, headers


GD = "const gd = document.querySelector('#map .js-plotly-plot');"
# The point renderer's frames so far (explorer/assets/pointmap.js), to tell "painted" from "answered".
CLICKS = 11
WATCH_JS = "window.__frames0 = window.musicmapPoints.state().frames; window.__t0 = performance.now();"
# For the pointer's flows: also the time the page received the input (its event's timeStamp, on the
# same clock as performance.now()), so that WebDriver's own dispatch (a command to chromedriver, then
# DevTools' synthetic events) before it is not counted as the page's time. A click is timed from its
# pointerdown, though the page selects on the release: the gap between WebDriver's press and release
# is counted.
WATCH_INPUT_JS = WATCH_JS + """
window.__tin = null;
addEventListener(arguments[0], function (e) { if (window.__tin === null) { window.__tin = e.timeStamp; } },
                 {capture: true, once: true});"""
# Poll a condition every few milliseconds (a timer, not each animation frame: a busy page makes
# frames slow and uneven); resolve with the milliseconds since window.__t0 (or -1 after 60 s).
UNTIL_JS = """
const done = arguments[arguments.length - 1], test = new Function(arguments[0]);
const start = performance.now();
(function poll() {
  let ok = false; try { ok = test(); } catch (e) { ok = false; }
  if (ok) { done(performance.now() - window.__t0); return; }
  if (performance.now() - start > 60000) { done(-1); return; }
  setTimeout(poll, 2);
})();
"""
POINT_JS = "return window.musicmapPoints.at(arguments[0]);"
PAINTED = GD + "const painted = window.musicmapPoints.state().frames > window.__frames0;"


def _until(driver: Any, condition: str) -> float:
    """Milliseconds from ``window.__t0`` until ``condition`` (a JS function body) holds."""
    ms = driver.execute_async_script(UNTIL_JS, condition)
    if ms < 0:
        raise TimeoutError(f"not within 60 s: {condition[:120]}")
    return round(float(ms), 1)


def _until_input(driver: Any, condition: str) -> tuple[float, float]:
    """(milliseconds from the page's input event, from ``window.__t0``) until ``condition`` holds
    (after :data:`WATCH_INPUT_JS`)."""
    total = _until(driver, condition)
    lead = driver.execute_script("return window.__tin === null ? null : window.__t0 - window.__tin;")
    if lead is None:
        raise RuntimeError("the page received no input event")
    return round(total + float(lead), 1), total


def _wait_points(driver: Any, n: int, limit: float = 600) -> float:
    started = time.perf_counter()
    while driver.execute_script("const m = document.getElementById('map');"
                                "return m && m.getAttribute('data-map-points');") != str(n):
        if time.perf_counter() - started > limit:
            raise TimeoutError("the map was not drawn in 10 minutes")
        time.sleep(0.05)
    return round(time.perf_counter() - started, 2)


def _browser(url: str, n: int, shots: Path | None) -> dict[str, Any]:
    chromium, driver_bin = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_bin):
        return {"skipped": "chromium and chromium-driver are not installed"}
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains

    profile = tempfile.mkdtemp(prefix="musicmap-bench-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--window-size=1400,900", f"--user-data-dir={profile}", "--enable-precise-memory-info"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_bin), options=options)
    driver.set_page_load_timeout(600)
    driver.set_script_timeout(120)
    out: dict[str, Any] = {}

    def shot(name: str) -> None:
        if shots is not None:
            shots.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(shots / f"bench-{n // 1000}k-{name}.png"))

    def pointer(point: dict[str, Any], click: bool) -> None:
        actions = ActionChains(driver, duration=0)
        actions.w3c_actions.pointer_action.move_to_location(int(point["x"]), int(point["y"]))
        if click:
            actions.w3c_actions.pointer_action.click()
        actions.perform()

    try:
        started = time.perf_counter()
        driver.get(url + "/")
        _wait_points(driver, n)
        out["first_paint_s"] = round(time.perf_counter() - started, 2)  # a first visit: nothing cached
        started = time.perf_counter()
        driver.get(url + "/")  # a second visit: scripts from the browser's cache
        _wait_points(driver, n)
        out["repeat_visit_paint_s"] = round(time.perf_counter() - started, 2)
        time.sleep(1.0)  # let the page settle (late callbacks after the first paint)
        out["js_heap_mb"] = round(driver.execute_script("return performance.memory.usedJSHeapSize") / 2**20, 1)
        shot("1-map")
        rng = np.random.default_rng(5)
        out["frame_ms"] = driver.execute_script("return window.musicmapPoints.state().ms;")

        def some_point() -> dict[str, Any]:
            return dict(driver.execute_script(POINT_JS, int(rng.integers(0, n))))

        # On a dense map the point under the pointer may be another track than the one aimed at (they
        # overlap): "shown" is a card for a new track, with its title.
        hovers = []
        for _ in range(5):
            point = some_point()
            shown = driver.execute_script("return document.getElementById('hover-card').getAttribute('data-track');")
            driver.execute_script(WATCH_INPUT_JS, "pointermove")
            pointer(point, click=False)
            hovers.append(_until_input(driver, "const c = document.getElementById('hover-card');"
                                         f"return !c.hidden && c.getAttribute('data-track') !== '{shown}' "
                                         "&& c.querySelector('.hover-title') !== null;"))
        out["hover_ms"] = {"median": float(np.median([h[0] for h in hovers])), "all": [h[0] for h in hovers],
                           "with_webdriver": [h[1] for h in hovers]}
        shot("2-hover")
        clicks = []
        for _ in range(CLICKS):
            point = some_point()
            pointer(point, click=False)
            time.sleep(0.3)
            before = driver.execute_script("const s = window.musicmapOverlay.state();"
                                           "return s.marks.length ? s.marks[0].id : null;")
            driver.execute_script(WATCH_INPUT_JS, "pointerdown")
            pointer(point, click=True)
            clicks.append(_until_input(driver, f"const s = window.musicmapOverlay.state(); const id = s.marks.length ? "
                                         f"s.marks[0].id : null; return id !== null && id !== {before or -2} "
                                         "&& s.drawn === 11 "
                                         "&& document.getElementById('map').getAttribute('data-highlighted') === '11'"
                                         "&& document.querySelectorAll('#similar-list li').length === 10 "
                                         "&& document.querySelector('#similar-list .why').getAttribute('data-pair')"
                                         ".startsWith(id + '-')"
                                         "&& document.getElementById('player').src.endsWith('/audio/' + id);"))
        # the first click after a page load runs code paths for the first time: it is in the median, and
        # given alone too
        out["click_ms"] = {"median": float(np.median([c[0] for c in clicks])), "all": [c[0] for c in clicks],
                           "first": clicks[0][0], "with_webdriver": [c[1] for c in clicks]}
        shot("3-selected")
        driver.execute_script(WATCH_JS + "window.dash_clientside.set_props('genre-filter', {value: ['Jazz']});")
        out["filter_ms"] = _until(driver, "const s = window.musicmapPoints.state(); return s.filtered && s.shown > 0 "
                                          "&& document.getElementById('filter-note').textContent !== '';")
        shot("4-filter")
        driver.execute_script(WATCH_JS + "window.dash_clientside.set_props('genre-filter', {value: []});")
        out["filter_clear_ms"] = _until(driver, "return !window.musicmapPoints.state().filtered "
                                                "&& document.getElementById('filter-note').textContent === '';")
        driver.execute_script(WATCH_JS + "window.dash_clientside.set_props('search', {value: 'song number 4242'});")
        out["search_ms"] = _until(driver, "return document.querySelectorAll('#search-results button').length > 0;")
        before = driver.execute_script(GD + "return gd._fullLayout.xaxis.range.slice();")
        driver.execute_script(WATCH_JS + "document.querySelector('#search-results button').click();")
        out["centre_ms"] = _until(driver, PAINTED + f"return painted && gd._fullLayout.xaxis.range[0] !== {before[0]};")
        shot("5-search-centred")
        # a search by sound: from the text's change until the matches are lit and listed (the first
        # query of a server reads its tags from DuckDB: given alone, then the median of the others)
        driver.execute_script("window.dash_clientside.set_props('search-by', {value: 'sound'});")
        sounds = []
        for text in SOUND_QUERIES:
            typed = "window.dash_clientside.set_props('search', {value: " + json.dumps(text) + "});"
            driver.execute_script(WATCH_JS + typed)
            word = json.dumps(text.split()[0].rstrip(","))
            sounds.append(_until(driver, "const s = window.musicmapOverlay.state(); return s.mode === 'spots' && "
                                         "s.drawn === 100 && document.querySelectorAll('#sound-list li').length === 20 "
                                         f"&& document.getElementById('sound-read').textContent.includes({word});"))
        out["sound_search_ms"] = {"median": float(np.median(sounds[1:])), "first": sounds[0], "all": sounds}
        shot("5b-search-by-sound")
        driver.execute_script("window.dash_clientside.set_props('search-by', {value: 'name'});")
        driver.execute_script("window.dash_clientside.set_props('search', {value: ''});")
        driver.execute_script(WATCH_JS + "window.dash_clientside.set_props('color-by', {value: 'decade'});")
        out["colour_ms"] = _until(driver, PAINTED + "return painted && gd._fullLayout.legend.title.text === 'decade' "
                                                    "&& window.musicmapPoints.state().ready;")
        shot("6-colour-by-decade")
        # a pan: the axes moved by a tenth, until the points are drawn there (a frame of a drag)
        pans = []
        for step in (1, -1, 1):
            driver.execute_script(WATCH_JS + GD + "const r = gd._fullLayout.xaxis.range, d = (r[1] - r[0]) * 0.1 * "
                                  f"{step}; window.Plotly.relayout(gd, {{'xaxis.range': [r[0] + d, r[1] + d]}});")
            pans.append(_until(driver, PAINTED + "return painted;"))
        out["pan_ms"] = {"median": float(np.median(pans)), "all": pans}
        out["js_heap_after_mb"] = round(driver.execute_script("return performance.memory.usedJSHeapSize") / 2**20, 1)
    except Exception as exc:  # report what broke, keep the other figures
        out["error"] = f"{type(exc).__name__}: {exc}"[:300]
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return out


def _rss(pid: int, field: str) -> float:
    with open(f"/proc/{pid}/status") as fh:
        return round(int(next(r for r in fh if r.startswith(field)).split()[1]) / 1024, 1)


def measure(n: int, d: int, keep: Path | None, shots: Path | None) -> dict[str, Any]:
    out: dict[str, Any] = {"n": n, "dim": d}
    with tempfile.TemporaryDirectory() as tmp:
        folder = (keep / f"store-{n}-{d}") if keep else Path(tmp) / "store"
        if not (folder / "library.duckdb").exists():
            shutil.rmtree(folder, ignore_errors=True)
            out["build_s"] = round(build(folder, n, d), 1)
        with socket_port() as port:
            log = open(Path(tmp) / "serve.log", "w")  # noqa: SIM115 (a pipe nobody reads would stall the server)
            started = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-m", "musicmap.cli", "serve", "--store", str(folder),
                                     "--port", str(port)], stdout=subprocess.DEVNULL, stderr=log,
                                    text=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        url = f"http://127.0.0.1:{port}"
        try:
            while True:
                try:
                    _get(url + "/api/v1")
                    break
                except OSError:
                    if proc.poll() is not None or time.perf_counter() - started > 600:
                        raise RuntimeError("musicmap serve did not start: "
                                           + (Path(tmp) / "serve.log").read_text()) from None
                    time.sleep(0.1)
            out["server_start_s"] = round(time.perf_counter() - started, 2)
            out["server_rss_after_start_mb"] = _rss(proc.pid, "VmRSS")
            memory = out["server_memory_mb"] = {}  # after each phase: resident now, and the peak so far

            def phase(name: str) -> None:
                memory[name] = {"rss": _rss(proc.pid, "VmRSS"), "peak": _rss(proc.pid, "VmHWM")}

            phase("start")
            t_first, _, _ = _get(url + "/_dash-layout")  # the first build of the figure, as the first visitor's
            t_raw, raw, _ = _get(url + "/_dash-layout")
            t_gz, zipped, headers = _get(url + "/_dash-layout", gz=True)
            out["layout"] = {"first_s": round(t_first, 2), "server_s": round(t_raw, 2), "gzip_server_s": round(t_gz, 2),
                             "bytes": len(raw), "gzip_bytes": len(zipped),
                             "encoding": headers.get("Content-Encoding", "identity")}
            phase("layout")
            assert gzip.decompress(zipped) == raw if headers.get("Content-Encoding") == "gzip" else True
            t_map, body, _ = _get(url + "/api/v1/map")
            out["api_map"] = {"s": round(t_map, 2), "bytes": len(body)}
            phase("api_map")
            rng = np.random.default_rng(2)
            times, sizes = [], []
            for track_id in rng.integers(1, n + 1, 20):
                t, answer, _ = _get(url + f"/api/v1/panel/{int(track_id)}?k=10")
                assert len(json.loads(answer)["similar"]) == 10
                times.append(t * 1000)
                sizes.append(len(answer))
            out["select"] = {"p50_ms": round(float(np.percentile(times, 50)), 1),
                             "p95_ms": round(float(np.percentile(times, 95)), 1),
                             "bytes": int(np.median(sizes))}
            phase("select")
            out["browser"] = _browser(url, n, shots)
            phase("browser")
            out["server_peak_rss_mb"] = _rss(proc.pid, "VmHWM")
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


GOALS = {100_000: {"first_paint_s": 2.0, "click_ms": 100, "hover_ms": 100, "filter_ms": 300, "search_ms": 300,
                    "colour_ms": 300, "server_start_s": 5, "server_peak_rss_mb": 600,
                    "sound_search_ms": 300 - 1000 * SEARCH_DEBOUNCE_S},
         1_000_000: {"first_paint_s": 3.0, "click_ms": 150, "hover_ms": 150, "filter_ms": 600, "search_ms": 600,
                     "colour_ms": 600, "server_start_s": 15, "server_peak_rss_mb": 1500}}
"""Issue #20's goals for this machine (no GPU), by map size; #30's: a search by sound lit within 300 ms
of the last keystroke, the search box's debounce included."""


def verdicts(run: dict[str, Any]) -> dict[str, Any]:
    """Each goal of the run's size: the figure, the goal and whether it is met."""
    browser = run.get("browser") or {}
    figures = {**{k: run.get(k) for k in ("server_start_s", "server_peak_rss_mb")},
               **{k: (v["median"] if isinstance(v, dict) else v) for k, v in browser.items()}}
    return {k: {"figure": figures.get(k), "goal": g, "met": figures.get(k) is not None and figures[k] <= g}
            for k, g in GOALS.get(run["n"], {}).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--keep", type=Path, help="keep the synthetic stores here (and reuse them)")
    parser.add_argument("--screenshots", type=Path, help="save the page's screenshots here")
    args = parser.parse_args()
    runs = []
    for n in map(int, args.sizes.split(",")):
        try:
            runs.append(measure(n, args.dim, args.keep, args.screenshots))
            runs[-1]["goals"] = verdicts(runs[-1])
        except Exception as exc:
            runs.append({"n": n, "error": f"{type(exc).__name__}: {exc}"[:500]})
            print(json.dumps(runs[-1]), flush=True)
    save("explorer", {"runs": runs, "browser": "headless Chromium, no GPU; points on a 2-D canvas (pointmap.js)"})


if __name__ == "__main__":
    main()
