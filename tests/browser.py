"""A real browser for the tests: headless Debian Chromium through Selenium, and helpers to wait,
load the explorer and save screenshots under ``test-artifacts/explorer/`` (the repository root,
ignored by git)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "explorer"


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (1400 × 900, autoplay allowed, muted), quit afterwards."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.fail("chromium and chromium-driver are required (make test installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="musicmap-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--no-first-run",
                "--autoplay-policy=no-user-gesture-required", "--mute-audio",
                "--window-size=1400,900", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def reset(driver: Any) -> None:
    """Leave ``driver`` as a fresh one would be for the next test: the page's storage and the
    browser's cookies cleared, no page open (a Chromium started once serves a whole test run)."""
    with contextlib.suppress(Exception):  # no page, or one that no longer answers: nothing of it to clear
        driver.execute_script("try { localStorage.clear(); sessionStorage.clear(); } catch (e) {}")
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    driver.execute_cdp_cmd("Network.clearBrowserCache", {})
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "default"})
    driver.get("about:blank")


def shot(driver: Any, name: str) -> None:
    """Save the page as ``test-artifacts/explorer/NAME.png``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def wait(predicate, timeout: float = 30.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    """``predicate()``'s first truthy value within ``timeout`` s (exceptions count as not yet)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as exc:  # the page may still be rendering
            last = exc
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


GD = "const gd = document.querySelector('#map .js-plotly-plot');"
# The map's points as explorer/assets/pointmap.js drew them.
POINTS_JS = "const s = window.musicmapPoints && window.musicmapPoints.state(); return s && s.ready ? s.n : null;"
# Viewport coordinates of one track's point (null: the first one in view), with its map coordinates.
POINT_JS = """
const p = window.musicmapPoints;
const id = arguments[0] === null ? p.visible(1)[0] : arguments[0];
return id === undefined ? null : p.locate(id);
"""
# What the overlay (explorer/assets/overlay.js) drew over the map: its highlight's marks, and read
# back from the canvas's pixels: the dimming at the plot's corner, the first mark's ring (a filled
# mark's centre).
HIGHLIGHT_JS = GD + """
const s = window.musicmapOverlay.state();
if (!s.drawn) return null;
const canvas = gd.querySelector('canvas.musicmap-overlay'), fl = gd._fullLayout;
const ctx = canvas.getContext('2d'), dpr = window.devicePixelRatio || 1;
const alpha = (x, y) => ctx.getImageData(Math.round(x * dpr), Math.round(y * dpr), 1, 1).data[3];
const m = s.marks[0];
const x = fl.xaxis._offset + fl.xaxis.l2p(m.x) + (m.fill ? 0 : m.size / 2), y = fl.yaxis._offset + fl.yaxis.l2p(m.y);
return {mode: s.mode, ids: Array.from(new Set(s.marks.map(k => k.id))), symbols: s.marks.map(k => k.symbol),
        drawn: s.drawn, corner_alpha: alpha(fl.xaxis._offset + 2, fl.yaxis._offset + 2), ring_alpha: alpha(x, y)};
"""
# The tracks standing out on the map (filters, a selection shown on it), and how many the last
# frame drew (null: no filter).
SHOWN_JS = "return window.musicmapPoints.shown();"
VIEW_JS = GD + "const fl = gd._fullLayout; return {x: fl.xaxis.range, y: fl.yaxis.range, legend: fl.legend.title.text};"


def load(driver: Any, url: str, n: int) -> None:
    """Open the explorer at ``url`` and wait until its map draws ``n`` points."""
    driver.get(url)
    assert wait(lambda: driver.execute_script(POINTS_JS), what="the map") == n
