"""Real-browser flow in headless Debian Chromium against `musicmap serve`."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import DemoStore

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser() -> Iterator[object]:
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.fail("chromium and chromium-driver are required (make test installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="musicmap-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--no-first-run",
                "--window-size=1400,900", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _wait(predicate, timeout: float = 30.0, what: str = "condition"):  # type: ignore[no-untyped-def]
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


POINTS_JS = """
const gd = document.querySelector('#map .js-plotly-plot');
if (!gd || !gd.data) return null;
const traces = gd.data.filter(t => t.name !== 'selection');
return traces.reduce((n, t) => n + t.x.length, 0);
"""

# Viewport coordinates of one track's point: axis offset + data-to-pixel, plus the graph's box.
POINT_JS = """
const gd = document.querySelector('#map .js-plotly-plot');
const fl = gd._fullLayout;
const box = gd.getBoundingClientRect();
const t = gd.data[arguments[0]];
const i = arguments[1];
return {id: t.customdata[i][0],
        x: box.left + fl.xaxis._offset + fl.xaxis.l2p(t.x[i]),
        y: box.top + fl.yaxis._offset + fl.yaxis.l2p(t.y[i])};
"""


def test_map_shows_every_track_and_click_lists_similar(browser, served: str, demo_store: DemoStore,
                                                       tmp_path: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    driver = browser
    driver.get(served + "/")
    n_points = _wait(lambda: driver.execute_script(POINTS_JS), what="the map")
    assert n_points == len(demo_store.tracks)
    status = driver.find_element(By.ID, "status-line").text
    assert f"{len(demo_store.tracks)} tracks" in status
    assert "handcrafted features" in status  # honest label: these vectors are not MAEST

    point = driver.execute_script(POINT_JS, 0, 0)
    actions = ActionChains(driver)
    actions.w3c_actions.pointer_action.move_to_location(int(point["x"]), int(point["y"]))
    actions.w3c_actions.pointer_action.pause(0.3)
    actions.w3c_actions.pointer_action.click()
    actions.perform()

    items = _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#similar-list li"), what="similar list")
    assert len(items) == 10
    audio = driver.find_element(By.ID, "player")
    assert audio.get_attribute("src").endswith(f"/audio/{point['id']}")
    driver.save_screenshot(str(tmp_path / "explorer.png"))

    # Clicking a similar track moves the selection there.
    first = items[0].find_element(By.TAG_NAME, "button")
    title_before = driver.find_element(By.ID, "track-title").text
    first.click()
    _wait(lambda: driver.find_element(By.ID, "track-title").text != title_before, what="new selection")
    assert not driver.find_element(By.ID, "player").get_attribute("src").endswith(f"/audio/{point['id']}")
    highlighted = driver.execute_script(
        "const gd=document.querySelector('#map .js-plotly-plot');return gd.data[gd.data.length-1].x.length;")
    assert highlighted == 11  # the selected track and its 10 neighbours are ringed
