"""Real-browser flows in headless Debian Chromium against `musicmap serve` on 127.0.0.1.

Each flow saves screenshots under ``test-artifacts/explorer/`` (the repository root; ignored by git).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import numpy as np
import pytest

from tests.browser import HIGHLIGHT_JS, POINT_JS, SHOWN_JS, VIEW_JS, chromium, load, reset, shot, wait
from tests.conftest import DemoStore, serving
from tests.fakes import fake_model, write_store

pytestmark = pytest.mark.browser



@pytest.fixture(scope="session")
def chromium_session() -> Iterator[Any]:
    """One headless Chromium for the run's browser tests (each start costs about 0.5 s)."""
    with chromium() as driver:
        yield driver


@pytest.fixture
def browser(chromium_session: Any) -> Iterator[Any]:
    """The run's Chromium, left as a fresh one would be after each test (:func:`tests.browser.reset`)."""
    yield chromium_session
    reset(chromium_session)


_shot, _wait, _load = shot, wait, load

def _click_point(driver: Any, point: dict[str, Any]) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    actions = ActionChains(driver)
    actions.w3c_actions.pointer_action.move_to_location(int(point["x"]), int(point["y"]))
    actions.w3c_actions.pointer_action.pause(0.3)
    actions.w3c_actions.pointer_action.click()
    actions.perform()


def test_map_click_lists_similar_and_highlights(browser: Any, served: str, demo_store: DemoStore) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from store import Store

    driver = browser
    _load(driver, served + "/", len(demo_store.tracks))  # every track, no sampling
    status = driver.find_element(By.ID, "status-line").text
    assert f"{len(demo_store.tracks)} tracks" in status and "handcrafted features" in status  # honest label
    assert "trustworthiness" in status
    _shot(driver, "1-map")

    point = driver.execute_script(POINT_JS, None)
    # hover: a card with the track's cover, title and artist, fetched by id (no text was sent per point)
    actions = ActionChains(driver)
    actions.w3c_actions.pointer_action.move_to_location(int(point["x"]) + 1, int(point["y"]))
    actions.perform()
    card = driver.find_element(By.ID, "hover-card")
    _wait(lambda: card.is_displayed() and card.get_attribute("data-track") == str(point["id"]), what="the hover card")
    with Store.open(demo_store.store) as store:
        track = store.track(point["id"])
    assert (track["title"] or "—") in card.text and (track["artist"] or "—") in card.text
    art = card.find_element(By.TAG_NAME, "img")
    assert art.get_attribute("src").endswith(f"/api/v1/art/{point['id']}?size=96")
    _wait(lambda: driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0;", art),
          what="the hover card's cover")
    _shot(driver, "1-hover")

    _click_point(driver, point)
    items = _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#similar-list li"), what="similar list")
    assert len(items) == 10
    assert driver.find_element(By.ID, "player").get_attribute("src").endswith(f"/audio/{point['id']}")
    drawn = _wait(lambda: driver.execute_script(HIGHLIGHT_JS), what="highlight")
    assert drawn["ids"][0] == point["id"] and len(drawn["ids"]) == 11  # the track and its 10 neighbours
    assert drawn["mode"] == "rays" and drawn["ring_alpha"] > 200  # the selected track's ring, drawn
    state = driver.find_element(By.ID, "map")  # the page's own account of what it drew
    assert state.get_attribute("data-map-points") == str(len(demo_store.tracks))
    _wait(lambda: state.get_attribute("data-highlighted") == "11", what="data-highlighted")
    assert 100 < drawn["corner_alpha"] < 200  # the rest of the map greyed by a translucent fill, still drawn
    assert parse_qs(urlparse(driver.current_url).query)["track"] == [str(point["id"])]
    _shot(driver, "2-selected")

    driver.find_element(By.CSS_SELECTOR, "#similar-list .why").click()  # explain the best match
    explained = _wait(lambda: driver.find_element(By.ID, "explain-panel").text, what="the explanation")
    assert "is like" in explained and "similarity 0." in explained

    first = items[0].find_element(By.TAG_NAME, "button")
    title_before = driver.find_element(By.ID, "track-title").text
    first.click()
    _wait(lambda: driver.find_element(By.ID, "track-title").text != title_before, what="new selection")
    assert not driver.find_element(By.ID, "player").get_attribute("src").endswith(f"/audio/{point['id']}")
    _shot(driver, "3-moved-to-a-neighbour")

    # the map-quality panel: figures, and its hub tracks select like any other
    driver.find_element(By.CSS_SELECTOR, "#quality-panel summary").click()
    hub = _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#hub-list button"), what="hub list")[0]
    assert "lists)" in hub.text and "trustworthiness@10" in driver.find_element(By.ID, "quality-panel").text
    _shot(driver, "3b-quality-and-hubs")
    title = hub.text.split(" – ", 1)[1].rsplit(" (", 1)[0]
    hub.click()
    _wait(lambda: driver.find_element(By.ID, "track-title").text == title, what="the hub selected")


def test_keys_cover_art_and_the_file_relative_to_the_library(browser: Any, served: str,
                                                            demo_store: DemoStore) -> None:
    from selenium.webdriver.common.by import By

    from store import Store

    driver = browser
    _load(driver, f"{served}/?track=2", len(demo_store.tracks))
    _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#similar-list li"), what="similar list")
    cover = driver.find_element(By.CSS_SELECTOR, "#track-view img.cover")
    assert "/api/v1/art/2" in cover.get_attribute("src")
    _wait(lambda: driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0;", cover),
          what="the cover drawn")  # the generated library has no pictures: the placeholder, drawn
    thumbs = driver.find_elements(By.CSS_SELECTOR, "#similar-list li img.thumb")
    assert len(thumbs) == 10
    file_cell = driver.find_element(By.XPATH, "//table[@class='track-table']//th[text()='file']/../td")
    full = file_cell.get_attribute("title")
    assert full.startswith(str(demo_store.library)) and not file_cell.text.startswith("/")
    assert full.endswith(file_cell.text)

    body = driver.find_element(By.TAG_NAME, "body")
    first = driver.find_elements(By.CSS_SELECTOR, "#similar-list li .name")[0].text
    body.send_keys("j")  # focus moves into the list
    assert driver.execute_script("return document.activeElement.classList.contains('similar-item');")
    body.send_keys("n")  # the most similar track opens
    _wait(lambda: first.endswith(driver.find_element(By.ID, "track-title").text), what="n opens the top match")
    driver.find_element(By.TAG_NAME, "body").send_keys("b")  # and back
    _wait(lambda: parse_qs(urlparse(driver.current_url).query).get("track") == ["2"], what="b goes back")
    with Store.open(demo_store.store) as store:
        title = store.track(2)["title"] or "(untitled)"
    _wait(lambda: driver.find_element(By.ID, "track-title").text == title, what="track 2's panel again")
    _shot(driver, "3c-cover-art-and-similar-list")


def test_a_click_and_a_control_changed_at_once_both_apply(browser: Any, served: str, demo_store: DemoStore) -> None:
    """The panel is asked for before Dash hears of the click: a variety control changed in between
    applies to the track clicked, and the URL follows the click."""
    from selenium.webdriver.common.by import By

    from store import Store

    driver = browser
    _load(driver, f"{served}/?track=2", len(demo_store.tracks))
    _wait(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#similar-list li")) == 10, what="track 2's list")
    driver.execute_script("window.musicmapTrack.open(7); window.dash_clientside.set_props('k', {value: 4});")
    with Store.open(demo_store.store) as store:
        title = store.track(7)["title"] or "(untitled)"
    _wait(lambda: driver.find_element(By.ID, "track-title").text == title
          and len(driver.find_elements(By.CSS_SELECTOR, "#similar-list li")) == 4, what="track 7 with 4 similar")
    _wait(lambda: parse_qs(urlparse(driver.current_url).query).get("track") == ["7"], what="the URL")
    assert driver.find_element(By.ID, "map").get_attribute("data-highlighted") == "5"
    assert driver.execute_script("return window.musicmapTrack.state().opening;") is None  # Dash was told


# The page's requests for track panels, counted, and some held back or failed on purpose.
FETCH_JS = """
window.__panels = []; window.__hold = {}; window.__failOnce = {};
const real = window.fetch;
window.fetch = function (url, options) {
  const m = String(url).match(/\\/api\\/v1\\/panel\\/(\\d+)/);
  if (m) {
    window.__panels.push(String(url));
    if (window.__failOnce[m[1]]) { delete window.__failOnce[m[1]]; return Promise.reject(new TypeError('offline')); }
    if (window.__hold[m[1]]) {
      return new Promise(done => setTimeout(done, window.__hold[m[1]])).then(() => real(url, options));
    }
  }
  return real(url, options);
};
"""


def test_the_newest_choice_wins_and_a_failure_is_said_and_retried(browser: Any, served: str,
                                                                  demo_store: DemoStore) -> None:
    import time

    from selenium.webdriver.common.by import By

    from store import Store

    driver = browser
    with Store.open(demo_store.store) as store:
        titles = {i: store.track(i)["title"] or "(untitled)" for i in (2, 5, 9, 11)}

    def title() -> str:
        return str(driver.find_element(By.ID, "track-title").text)

    _load(driver, f"{served}/?track=2", len(demo_store.tracks))
    _wait(lambda: title() == titles[2], what="track 2")
    driver.execute_script(FETCH_JS)
    # 5 answers late, 9 was chosen after it: 9 stays, in the panel, on the map and in the URL
    driver.execute_script("window.__hold[5] = 600; window.musicmapTrack.open(5); window.musicmapTrack.open(9);")
    _wait(lambda: title() == titles[9], what="track 9")
    time.sleep(0.9)  # 5's answer came and went
    assert title() == titles[9] and driver.execute_script("return window.musicmapOverlay.state().marks[0].id;") == 9
    _wait(lambda: parse_qs(urlparse(driver.current_url).query).get("track") == ["9"], what="the URL")
    # a panel that cannot be fetched: said; asked again, it comes
    driver.execute_script("window.__failOnce[11] = true; window.musicmapTrack.open(11);")
    error = _wait(lambda: driver.find_element(By.ID, "panel-error").text, what="the failure said")
    assert "did not answer" in error and not driver.find_elements(By.ID, "track-title")
    driver.execute_script("window.musicmapTrack.open(11);")
    _wait(lambda: title() == titles[11] and not driver.find_elements(By.ID, "panel-error"), what="track 11")
    # a control's change: one request, the same player; failing, the panel and its player stay
    player = driver.find_element(By.ID, "player")
    asked = driver.execute_script("return window.__panels.length;")
    driver.execute_script("window.dash_clientside.set_props('k', {value: 5});")
    _wait(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#similar-list li")) == 5, what="5 similar")
    time.sleep(0.3)
    assert driver.execute_script("return window.__panels.length;") == asked + 1
    assert driver.find_element(By.ID, "player") == player
    driver.execute_script("window.__failOnce[11] = true; window.dash_clientside.set_props('k', {value: 6});")
    _wait(lambda: "did not answer" in driver.find_element(By.ID, "panel-error").text, what="the failure over it")
    assert title() == titles[11] and driver.find_element(By.ID, "player") == player
    assert len(driver.find_elements(By.CSS_SELECTOR, "#similar-list li")) == 5  # the last good answer


def test_play_receives_audio_and_seeks(browser: Any, served: str, demo_store: DemoStore) -> None:
    from store import Store

    driver = browser
    with Store.open(demo_store.store) as store:
        track_id = int(store.sql("SELECT min(id) FROM tracks WHERE format IN ('flac', 'wav') "
                                 "AND duration > 12").rows[0][0])
    _load(driver, f"{served}/?track={track_id}", len(demo_store.tracks))
    player = _wait(lambda: driver.find_element("id", "player"), what="the player")
    assert player.get_attribute("src").endswith(f"/audio/{track_id}")
    duration = _wait(lambda: driver.execute_script("const p = document.getElementById('player');"
                                                   "return p.readyState >= 1 && p.duration;"), what="audio metadata")
    assert duration > 12
    received = driver.execute_script(
        "return performance.getEntriesByType('resource').filter(e => e.name.includes('/audio/'))"
        ".map(e => e.name);")
    assert any(name.endswith(f"/audio/{track_id}") for name in received)
    driver.execute_script("const p = document.getElementById('player'); p.currentTime = 10;")
    _wait(lambda: driver.execute_script("const p = document.getElementById('player');"
                                        "return !p.seeking && p.currentTime >= 9.9 && p.seekable.length > 0 "
                                        "&& p.seekable.end(0) >= 10;"), what="seek to 10 s")
    _shot(driver, "4-playing")


def test_search_centres_the_match(browser: Any, served: str, demo_store: DemoStore) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    _load(driver, served + "/", len(demo_store.tracks))
    target = next(t for t in demo_store.tracks if t.tagged and t.title)
    box = driver.find_element(By.ID, "search")
    box.send_keys(target.title)
    try:
        hits = _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#search-results .search-hit"), timeout=10,
                     what="search hits")
    except AssertionError:  # once in CI no hits came in 30 s (not reproduced); type again, then fail for real
        box.send_keys(" ")
        hits = _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#search-results .search-hit"),
                     what="search hits after typing again")
    hit = next(h for h in hits if target.title in h.text)
    hit.click()
    _wait(lambda: driver.find_element(By.ID, "track-title").text == target.title, what="the found track")
    track_id = int(parse_qs(urlparse(driver.current_url).query)["track"][0])
    point = driver.execute_script(POINT_JS, track_id)

    def centred() -> bool:
        view = driver.execute_script(VIEW_JS)
        return (abs(sum(view["x"]) / 2 - point["mx"]) < 1e-3 * abs(view["x"][1] - view["x"][0]) + 1e-6
                and view["x"][0] < point["mx"] < view["x"][1] and view["y"][0] < point["my"] < view["y"][1])

    _wait(centred, what="the map centred on the match")
    _shot(driver, "5-search-centred")


def test_search_by_sound_lights_the_map_and_plays(browser: Any, served: str, demo_store: DemoStore) -> None:
    """Typing a description with "sound" chosen: the matches light up on the map (the overlay's
    spots), a list fills; a row opens (and plays) its track; "like this, but…" in its panel searches
    among its neighbours."""
    from selenium.webdriver.common.by import By

    driver = browser
    _load(driver, served + "/", len(demo_store.tracks))
    driver.find_element(By.CSS_SELECTOR, "#search-by input[value='sound']").click()
    driver.find_element(By.ID, "search").send_keys("quiet ambient without drums")
    rows = _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#sound-list .similar-item"), what="the sound list")
    assert len(rows) == 20 and "sounding quiet" in driver.find_element(By.ID, "sound-read").text
    lit = _wait(lambda: (s := driver.execute_script("return window.musicmapOverlay.state()"))["mode"] == "spots"
                and s, what="the matches lit on the map")
    assert lit["drawn"] == 20  # 96 tracks: the 20 listed lit (a tenth of a library, at most 100), the rest dimmed
    _shot(driver, "6-search-by-sound")
    first = int(rows[0].get_attribute("data-track"))
    rows[0].click()
    _wait(lambda: driver.find_elements(By.ID, "like-but-text"), what="the track panel")
    _wait(lambda: driver.execute_script("const p = document.getElementById('player'); return p && !p.paused;"),
          what="the track playing")
    box = driver.find_element(By.ID, "like-but-text")
    box.send_keys("calmer")
    driver.find_element(By.CSS_SELECTOR, "#like-but button[type='submit']").click()
    _wait(lambda: "like " in (driver.find_elements(By.ID, "sound-like-note") or [None])[0].text
          if driver.find_elements(By.ID, "sound-like-note") else False, what="the like-this-but search")
    like_rows = _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#sound-list .similar-item"), what="its list")
    assert first not in [int(r.get_attribute("data-track")) for r in like_rows]
    _shot(driver, "7-like-this-but")
    driver.find_element(By.ID, "sound-like-clear").click()
    _wait(lambda: not driver.find_elements(By.ID, "sound-like-note"), what="the whole library again")


def test_permalink_brings_back_the_view(browser: Any, served: str, demo_store: DemoStore) -> None:
    from selenium.webdriver.common.by import By

    from store import Store

    driver = browser
    with Store.open(demo_store.store) as store:
        genre, n_genre = store.sql("SELECT genre, count(*) FROM tracks WHERE genre IS NOT NULL "
                                   "GROUP BY genre ORDER BY 2 DESC, 1 LIMIT 1").rows[0]
    _load(driver, f"{served}/?" + urlencode({"track": 5, "color": "decade", "genre": genre}), len(demo_store.tracks))
    _wait(lambda: driver.execute_script(VIEW_JS)["legend"] == "decade", what="colour by decade")
    title = _wait(lambda: driver.find_element(By.ID, "track-title").text, what="the track panel")
    note = _wait(lambda: driver.find_element(By.ID, "filter-note").text, what="the filter note")
    assert note.startswith(f"{n_genre} of {len(demo_store.tracks)}")
    # drawn over the greyed rest: those of them in view (the permalink's track is centred, zoomed in)
    shown = _wait(lambda: driver.execute_script(SHOWN_JS), what="the filter on the map")
    assert len(shown["ids"]) == n_genre
    _wait(lambda: (s := driver.execute_script(SHOWN_JS)) and s["drawn"] == driver.execute_script(IN_VIEW_JS, s["ids"]),
          what="every matching track in view drawn")
    _shot(driver, "6-permalink")
    # the same URL in a new page load: the same view
    driver.get(driver.current_url)
    _wait(lambda: driver.find_element(By.ID, "track-title").text == title, what="the same track after reload")
    _wait(lambda: driver.execute_script(VIEW_JS)["legend"] == "decade", what="colour by decade after reload")
    query = parse_qs(urlparse(driver.current_url).query)
    assert query["track"] == ["5"] and query["genre"] == [genre] and query["color"] == ["decade"]

    # a link to a track this store does not have: said in the panel, the map still drawn, no highlight
    _load(driver, f"{served}/?track=99999", len(demo_store.tracks))
    _wait(lambda: driver.find_element(By.ID, "track-view").text == "No track 99999 in this store.",
          what="the unknown track said")
    assert driver.find_element(By.ID, "map").get_attribute("data-highlighted") in (None, "0")


# How many of the tracks (ids) lie in the plot's view (their marker's centre within a radius of it).
IN_VIEW_JS = """
const p = window.musicmapPoints, gd = document.querySelector('#map .js-plotly-plot'), fl = gd._fullLayout;
const box = gd.getBoundingClientRect(), r = gd.layout.meta.musicmap.size / 2;
const left = box.left + fl.xaxis._offset, top = box.top + fl.yaxis._offset;
return arguments[0].map(id => p.locate(id)).filter(q => q.x >= left - r && q.x <= left + fl.xaxis._length + r
  && q.y >= top - r && q.y <= top + fl.yaxis._length + r).length;
"""


# Pixel positions of every point, with its track id.
ALL_POINTS_JS = "return window.musicmapPoints.all();"


def test_box_selection_becomes_a_playlist(browser: Any, served: str, demo_store: DemoStore, tmp_path: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from store import Store

    driver = browser
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    _load(driver, served + "/", len(demo_store.tracks))
    points = driver.execute_script(ALL_POINTS_JS)
    # a box around the left third of the map's points
    xs = sorted(p["x"] for p in points)
    ys = sorted(p["y"] for p in points)
    # the right edge in the widest gap between points in the middle third (no point near an edge)
    third = range(len(xs) // 3, 2 * len(xs) // 3)
    gap = max(third, key=lambda i: xs[i + 1] - xs[i])
    x0, x1 = int(xs[0]) - 5, int((xs[gap] + xs[gap + 1]) / 2)
    y0, y1 = int(ys[0]) - 5, int(ys[-1]) + 5
    inside = {p["id"] for p in points if x0 <= p["x"] <= x1 and y0 <= p["y"] <= y1}
    assert 5 <= len(inside) < len(points)
    driver.find_element(By.CSS_SELECTOR, "#map .modebar-btn[data-val='select']").click()
    actions = ActionChains(driver)
    pointer = actions.w3c_actions.pointer_action
    pointer.move_to_location(int(x0), int(y0))
    pointer.pointer_down()
    for f in (0.25, 0.5, 0.75, 1.0):
        pointer.move_to_location(int(x0 + f * (x1 - x0)), int(y0 + f * (y1 - y0)))
        pointer.pause(0.05)
    pointer.pointer_up()
    actions.perform()
    count = _wait(lambda: driver.find_element(By.ID, "selection-count").text, what="the selection panel")
    assert count == f"Selection: {len(inside)} tracks"
    where = driver.find_element(By.ID, "selection-where").text
    assert {int(i) for i in where.split("(")[1].rstrip(")").split(", ")} == inside
    _shot(driver, "7-box-selection")

    driver.find_element(By.XPATH, "//button[text()='M3U']").click()
    playlist = _wait(lambda: [p for p in downloads.iterdir() if p.suffix == ".m3u8"], what="the M3U download")[0]
    lines = playlist.read_text(encoding="utf-8").splitlines()
    with Store.open(demo_store.store) as store:
        expected = {store.file_path(i) for i in inside}
    assert lines[0] == "#EXTM3U" and set(lines[2::2]) == expected

    driver.find_element(By.XPATH, "//button[text()='similar to these']").click()
    like = _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#centroid-list li"), what="tracks like the selection")
    assert len(like) == 10

    # play in order: when the first track ends, the player moves on to the second
    queue = driver.execute_script("return JSON.parse(document.getElementById('queue-player').dataset.queue);")
    driver.execute_script("const p = document.getElementById('queue-player'); p.muted = true; p.play();")
    _wait(lambda: driver.execute_script("return document.getElementById('queue-player').duration > 0;"),
          what="the first track loaded")
    driver.execute_script("const p = document.getElementById('queue-player'); p.currentTime = p.duration - 0.2;")
    _wait(lambda: driver.execute_script("return document.getElementById('queue-player').src").endswith(queue[1]),
          what="the second track of the selection")


def _inside(polygon: list[tuple[float, float]], x: float, y: float) -> bool:
    odd = False
    for (ax, ay), (bx, by) in zip(polygon, polygon[-1:] + polygon[:-1], strict=True):
        if (ay > y) != (by > y) and x < (bx - ax) * (y - ay) / (by - ay) + ax:
            odd = not odd
    return odd


def test_lasso_selects_what_it_encloses_and_the_legend_hides_a_category(
        browser: Any, served: str, demo_store: DemoStore) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    driver = browser
    _load(driver, served + "/", len(demo_store.tracks))
    points = driver.execute_script(ALL_POINTS_JS)
    xs, ys = sorted(p["x"] for p in points), sorted(p["y"] for p in points)
    # a triangle over the points' lower-left half, drawn by the pointer (its path is the lasso)
    x0, x1, y0, y1 = xs[0] - 8, xs[-1] + 8, ys[0] - 8, ys[-1] + 8
    corners = [(x0, y0), (x0, y1), (x1, y1)]
    path = [(a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1]))
            for a, b in zip(corners, corners[1:] + corners[:1], strict=True) for f in (0.0, 0.25, 0.5, 0.75)]
    path = [(float(int(x)), float(int(y))) for x, y in path]
    near = 3.0  # pixels: a point this close to the lasso's edge may fall either way

    def clearly(p: dict[str, Any], want: bool) -> bool:
        return all(_inside(path, p["x"] + dx, p["y"] + dy) == want for dx in (-near, near) for dy in (-near, near))

    sure_in = {p["id"] for p in points if clearly(p, True)}
    maybe = {p["id"] for p in points if not clearly(p, False)}
    assert 5 <= len(sure_in) < len(points)
    driver.find_element(By.CSS_SELECTOR, "#map .modebar-btn[data-val='lasso']").click()
    actions = ActionChains(driver)
    pointer = actions.w3c_actions.pointer_action
    pointer.move_to_location(int(path[0][0]), int(path[0][1]))
    pointer.pointer_down()
    for x, y in [*path[1:], path[0]]:
        pointer.move_to_location(int(x), int(y))
        pointer.pause(0.03)
    pointer.pointer_up()
    actions.perform()
    count = _wait(lambda: driver.find_element(By.ID, "selection-count").text, what="the selection panel")
    where = driver.find_element(By.ID, "selection-where").text
    chosen = {int(i) for i in where.split("(")[1].rstrip(")").split(", ")}
    assert count == f"Selection: {len(chosen)} tracks" and sure_in <= chosen <= maybe
    shown = _wait(lambda: driver.execute_script(SHOWN_JS), what="the selection on the map")
    assert set(shown["ids"]) == chosen  # the selection stands out, the rest is greyed
    _shot(driver, "7b-lasso")
    # clear: nothing greyed
    driver.find_element(By.XPATH, "//button[text()='clear']").click()
    _wait(lambda: driver.execute_script(SHOWN_JS) is None, what="the selection cleared from the map")

    # the legend: a click hides a category's points (not drawn, not picked), another shows them
    state = "return window.musicmapPoints.state();"
    assert driver.execute_script(state)["drawn"] == len(points)
    first = driver.find_elements(By.CSS_SELECTOR, "#map .legend .traces")[0]
    size = int(first.text.rsplit("(", 1)[1].rstrip(")"))
    first.click()
    _wait(lambda: driver.execute_script(state)["drawn"] == len(points) - size, what="a category hidden")
    first = driver.find_elements(By.CSS_SELECTOR, "#map .legend .traces")[0]
    first.click()
    _wait(lambda: driver.execute_script(state)["drawn"] == len(points), what="the category shown again")


def test_with_a_token_the_map_and_its_points_load_through_the_cookie(browser: Any, demo_store: DemoStore) -> None:
    from selenium.webdriver.common.by import By

    from tests.conftest import serving

    driver = browser
    with serving(demo_store.store, "--token", "s3cret-token", "--no-record") as url:
        driver.get(url + "/")
        assert "token" in driver.find_element(By.TAG_NAME, "body").text.lower()  # refused: no map, no points
        assert driver.execute_script("return window.musicmapPoints === undefined "
                                     "|| !window.musicmapPoints.state().ready;")
        _load(driver, url + "/?token=s3cret-token", len(demo_store.tracks))  # the cookie carries the token
        assert "token=" not in driver.current_url
        point = driver.execute_script(POINT_JS, None)
        _click_point(driver, point)
        _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#similar-list li"), what="the similar list")


def test_sql_panel_runs_a_query_and_shows_it_on_the_map(browser: Any, served: str, demo_store: DemoStore) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver = browser
    _load(driver, f"{served}/?track=3", len(demo_store.tracks))
    _wait(lambda: driver.find_element(By.ID, "track-title").text, what="the selected track")
    driver.find_element(By.CSS_SELECTOR, "#sql-panel summary").click()
    assert "similarity(id, seed)" in driver.find_element(By.ID, "sql-schema").text
    box = driver.find_element(By.ID, "sql-text")
    box.send_keys(Keys.CONTROL, "a", Keys.DELETE)  # clear() does not reach React's state
    box.send_keys("SELECT id, title, score FROM similar_to({selected}, 6) ORDER BY score DESC")
    driver.find_element(By.ID, "sql-run").click()
    cells = _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#sql-grid td[data-dash-column='id']"),
                  what="the result grid")
    ids = {int(c.text) for c in cells}
    assert len(ids) == 6 and 3 not in ids
    driver.find_element(By.ID, "sql-show").click()
    _wait(lambda: driver.find_element(By.ID, "selection-count").text == "Selection: 6 tracks", what="the selection")
    shown = _wait(lambda: driver.execute_script(SHOWN_JS), what="the result on the map")
    assert set(shown["ids"]) == ids  # only the result tracks stand out; the rest is greyed
    _wait(lambda: (s := driver.execute_script(SHOWN_JS)) and s["drawn"] == driver.execute_script(IN_VIEW_JS, s["ids"]),
          what="the result tracks in view drawn")

    box.send_keys(Keys.CONTROL, "a", Keys.DELETE)
    box.send_keys("SELECT * FROM read_csv('/etc/passwd')")
    driver.find_element(By.ID, "sql-run").click()
    error = _wait(lambda: driver.find_element(By.ID, "sql-error").text, what="the inline error")
    assert "file" in error.lower()
    _shot(driver, "8-sql")

    # saved by name in the browser's storage, there after a reload, and picked back into the editor
    box.send_keys(Keys.CONTROL, "a", Keys.DELETE)
    box.send_keys("SELECT genre, count(*) AS n_saved FROM tracks GROUP BY genre")
    driver.find_element(By.ID, "sql-name").send_keys("genres")
    driver.find_element(By.ID, "sql-save").click()
    stored = _wait(lambda: driver.execute_script("return window.localStorage.getItem('sql-saved')"),
                   what="the saved query")
    assert "genres" in stored and "n_saved" in stored
    _load(driver, f"{served}/", len(demo_store.tracks))
    driver.find_element(By.CSS_SELECTOR, "#sql-panel summary").click()
    driver.find_element(By.ID, "sql-saved-list").click()
    option = _wait(lambda: next(e for e in driver.find_elements(By.XPATH, "//*[normalize-space(text())='genres']")
                                if e.is_displayed()), what="the saved query in the list")
    assert "n_saved" not in driver.find_element(By.ID, "sql-text").get_attribute("value")  # the default first
    option.click()
    _wait(lambda: "n_saved" in driver.find_element(By.ID, "sql-text").get_attribute("value"),
          what="the saved query back in the editor")


def test_upload_a_clip_shows_a_star_and_its_neighbours(browser: Any, demo_store: DemoStore, tmp_path: Path) -> None:
    import soundfile as sf
    from selenium.webdriver.common.by import By

    from data.demo_library import synthesise
    from tests.conftest import serving

    driver = browser
    clip, big = tmp_path / "my clip ♪.wav", tmp_path / "too big.wav"
    audio, sr = synthesise("piano", 10.0, seed=7)  # 480 kB as 16-bit wav
    sf.write(clip, audio, sr, subtype="PCM_16")
    sf.write(big, np.tile(audio, 3), sr, subtype="PCM_16")  # 1.4 MB: over the 1 MB limit
    with serving(demo_store.store, "--allow-upload", "--max-upload-mb", "1", "--no-record") as url:
        _load(driver, url + "/", len(demo_store.tracks))
        driver.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(big))
        error = _wait(lambda: driver.find_element(By.ID, "upload-error").text, what="the size refusal")
        assert "too big.wav" in error and "at most 1.0 MB" in error
        driver.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(clip))
        _wait(lambda: "Your clip: my clip ♪.wav" in driver.find_element(By.ID, "track-title").text,
              what="the clip's panel")
        assert "on the map at the star" in driver.find_element(By.ID, "upload-where").text
        items = driver.find_elements(By.CSS_SELECTOR, "#similar-list li")
        assert len(items) == 10
        star = _wait(lambda: driver.execute_script(HIGHLIGHT_JS), what="the star on the map")
        assert star["symbols"][0] == "star" and star["ids"][0] == -1 and len(star["ids"]) == 11  # and 10 neighbours
        assert star["ring_alpha"] > 200
        assert driver.find_element(By.ID, "upload-error").text == ""
        _shot(driver, "9-upload")

        # "×": the clip's panel and star gone, the prompt again
        driver.find_element(By.ID, "clear").click()
        _wait(lambda: not driver.find_elements(By.ID, "upload-where"), what="the clip's panel cleared")
        _wait(lambda: driver.find_element(By.ID, "map").get_attribute("data-highlighted") == "0",
              what="the star cleared")
        assert driver.find_element(By.ID, "track-view").text.startswith("Click a track on the map")
        # the same clip again (explorer/assets/upload.js empties the file input, so choosing the same file
        # is a change), then a track chosen after it takes the panel and the map's highlight
        driver.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(clip))
        _wait(lambda: driver.find_elements(By.ID, "upload-where"), what="the clip's panel again")
        _wait(lambda: driver.find_element(By.ID, "map").get_attribute("data-highlighted") == "11", what="its star")
        point = driver.execute_script(POINT_JS, None)
        _click_point(driver, point)
        _wait(lambda: not driver.find_elements(By.ID, "upload-where"), what="the clip's panel gone")
        _wait(lambda: driver.find_element(By.ID, "player").get_attribute("src").endswith(f"/audio/{point['id']}"),
              what="the track's panel")
        drawn = _wait(lambda: (h := driver.execute_script(HIGHLIGHT_JS)) and h["ids"][0] == point["id"] and h,
                      what="the track's highlight")
        assert drawn["mode"] == "rays" and len(drawn["ids"]) == 11
        # "×": no track, nothing highlighted, the prompt again
        driver.find_element(By.ID, "clear").click()
        _wait(lambda: driver.find_element(By.ID, "map").get_attribute("data-highlighted") == "0",
              what="the highlight cleared")
        assert driver.find_element(By.ID, "track-view").text.startswith("Click a track on the map")
        assert not driver.find_elements(By.ID, "player")


def test_explain_panel_lists_shared_styles(browser: Any, tmp_path: Path) -> None:
    """On a store with MAEST-style predictions and window vectors (written through the Store API;
    the demo's `features` embedder makes neither)."""
    from selenium.webdriver.common.by import By

    from store import TrackRecord
    from tests.conftest import serving

    d, rng = 16, np.random.default_rng(5)
    centre = rng.standard_normal(d)
    model = fake_model(d, kind="maest", name="m", model_id="m", label="test MAEST")
    records = []
    for i in range(12):
        windows = (centre + 0.3 * rng.standard_normal((3, d))).astype(np.float32)
        styles = {"Jazz---Bebop": 0.8 - 0.02 * i, f"Rock---Style {i}": 0.3, "Jazz---Hard Bop": 0.2 if i % 2 else 0.01}
        records.append(TrackRecord(path=f"/nowhere/t{i}.flac", size=1, mtime=1.0,
                                   tags={"title": f"Tune {i}", "artist": f"Band {i}", "genre": "Jazz"},
                                   vector=windows.mean(axis=0), n_windows=3, windows=windows,
                                   window_starts=[0.0, 30.0, 60.0], styles=styles))
    write_store(tmp_path / "s", model, records, positions=rng.normal(0, 10, (len(records), 2)))
    driver = browser
    with serving(tmp_path / "s") as url:
        _load(driver, f"{url}/?track=1", 12)
        _wait(lambda: driver.find_element(By.ID, "track-title").text == "Tune 0", what="the track")
        driver.find_element(By.CSS_SELECTOR, "#similar-list .why").click()
        shared = _wait(lambda: driver.find_element(By.ID, "explain-shared").text, what="the explanation")
        assert "of their top styles shared" in shared and not shared.startswith("no ")
        marked = [td.text for td in driver.find_elements(By.CSS_SELECTOR, ".explain-styles td.shared")]
        assert "Jazz › Bebop" in marked and all("Rock" not in m for m in marked)  # each track's own Rock style
        assert "Closest moments:" in driver.find_element(By.ID, "explain-windows").text
        _shot(driver, "10-explain-styles")


# The colour drawn on the points' canvas at a track's point, and the legend's colour of each category.
TOP_JS = """
const gd = document.querySelector('#map .js-plotly-plot'), p = window.musicmapPoints.locate(arguments[0]);
const canvas = gd && gd.querySelector('canvas.musicmap-points');
if (!canvas || !p || !gd._fullData) return null;  // Plotly is still (re)drawing the plot around the points
const box = canvas.getBoundingClientRect();
const dpr = window.devicePixelRatio || 1;
const px = canvas.getContext('2d').getImageData(Math.round((p.x - box.left) * dpr), Math.round((p.y - box.top) * dpr),
                                                1, 1).data;
const hex = c => '#' + [0, 1, 2].map(k => c[k].toString(16).padStart(2, '0')).join('');
return {drawn: hex(px), picked: window.musicmapPoints.pick(p.x, p.y),
        legend: Object.fromEntries(gd._fullData.map(t => [t.name.split(' (')[0], t.marker.color]))};
"""


def test_a_click_picks_the_point_drawn_on_top(browser: Any, tmp_path: Path) -> None:
    """Pairs of tracks at the same place. The drawing order: "other" under the rest, the categories
    interleaved (neither of two always on top, as a category at a time would draw them); and the
    track the page picks at a place is the one it drew on top there (the old pick, the first found,
    agreed with the drawing by chance)."""
    from store import TrackRecord
    from tests.conftest import serving

    # 8 Jazz/Rock pairs; 14 more genres of 2 tracks, so that the last (G13) is "other" (15 named at
    # most), each of its 2 tracks under a Jazz one
    genres = ["Jazz", "Rock"] * 8 + [f"G{g:02d}" for g in range(14) for _ in range(2)] + ["Jazz", "Jazz"]
    rng = np.random.default_rng(3)
    positions = rng.uniform(-50, 50, (len(genres), 2))
    positions[1:16:2] = positions[0:16:2]  # track 2 on track 1's place, 4 on 3's, ...
    positions[-2:] = positions[-4:-2]  # the two Jazz tracks on G13's
    pairs = [(i, i + 1) for i in range(1, 17, 2)] + [(len(genres) - 3, len(genres) - 1),
                                                      (len(genres) - 2, len(genres))]  # track ids from 1
    records = [TrackRecord(path=f"/nowhere/t{i}.flac", size=1, mtime=1.0,
                           tags={"title": f"Tune {i}", "artist": f"Band {i}", "genre": genre},
                           vector=rng.standard_normal(8).astype(np.float32)) for i, genre in enumerate(genres)]
    write_store(tmp_path / "s", fake_model(8), records, positions=positions)

    def rgb(colour: str) -> np.ndarray:
        return np.array([int(colour[k:k + 2], 16) for k in (1, 3, 5)], float)

    driver = browser
    on_top = []
    with serving(tmp_path / "s") as url:
        _load(driver, url + "/", len(genres))
        for a, b in pairs:
            seen = _wait(lambda a=a: driver.execute_script(TOP_JS, a), what=f"track {a}'s point on the canvas")
            assert seen["picked"] in (a, b)
            shown = {t: genres[t - 1] if genres[t - 1] in seen["legend"] else "other" for t in (a, b)}
            drawn = rgb(seen["drawn"])  # the legend's colour over white, a little lighter: the nearer one
            top = min((a, b), key=lambda t: float(np.abs(rgb(seen["legend"][shown[t]]) - drawn).sum()))
            assert seen["picked"] == top, (a, b, seen)
            on_top.append(shown[top])
    assert "G13" not in seen["legend"] and "other" in seen["legend"]
    assert on_top[-2:] == ["Jazz", "Jazz"]  # "other" under the rest
    assert set(on_top[:8]) == {"Jazz", "Rock"}  # interleaved


def test_a_file_the_browser_cannot_play_is_said_under_the_player(browser: Any, tmp_path: Path) -> None:
    """A track whose file the browser's decoder refuses (here: not audio at all, named .ogg; one of the
    Debian demo's files is an Ogg that FFmpeg cannot open): said, with the file to download."""
    from selenium.webdriver.common.by import By

    from store import TrackRecord
    from tests.conftest import serving

    rng = np.random.default_rng(4)
    bad = tmp_path / "broken.ogg"
    bad.write_bytes(b"OggS" + rng.bytes(4000))
    records = [TrackRecord(path=str(bad) if i == 0 else f"/nowhere/t{i}.flac", size=1, mtime=1.0,
                           tags={"title": f"Tune {i}", "artist": "Band", "genre": "Jazz"},
                           vector=rng.standard_normal(8).astype(np.float32)) for i in range(6)]
    write_store(tmp_path / "s", fake_model(8), records, positions=rng.normal(0, 10, (6, 2)))
    driver = browser
    with serving(tmp_path / "s") as url:
        _load(driver, f"{url}/?track=1", 6)
        said = _wait(lambda: driver.find_element(By.ID, "player-error").text, what="the player's error said")
        assert said.startswith("This browser cannot play this file") and "download it" in said
        link = driver.find_element(By.CSS_SELECTOR, "#player-error a")
        assert link.get_attribute("href").endswith("/audio/1") and link.get_attribute("download") is not None
        _shot(driver, "11-unplayable")


def test_song_path_drawn_on_the_map_and_queued(browser: Any, served: str, demo_store: DemoStore) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    _load(driver, f"{served}/?track=3", len(demo_store.tracks))
    _wait(lambda: driver.find_element(By.ID, "track-title").text, what="the track panel")
    start_title = driver.find_element(By.ID, "track-title").text
    driver.find_element(By.XPATH, "//button[text()='start a path here']").click()
    _wait(lambda: driver.find_element(By.ID, "path-start-note"), what="the path's start noted")
    # pick the end: the last of the similar tracks
    driver.find_elements(By.CSS_SELECTOR, "#similar-list li button.similar-item")[-1].click()
    _wait(lambda: driver.find_element(By.ID, "track-title").text != start_title, what="the end track")
    end_id = int(parse_qs(urlparse(driver.current_url).query)["track"][0])
    steps = _wait(lambda: driver.find_element(By.CSS_SELECTOR, ".path-controls input"),
                  what="the path controls: " + driver.find_element(By.ID, "track-view").text[-300:])
    steps.clear()
    steps.send_keys("7")
    driver.find_element(By.XPATH, "//button[text()='draw the path']").click()
    items = _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#path-list li"), what="the path list")
    assert len(items) == 7
    path = _wait(lambda: driver.execute_script(HIGHLIGHT_JS), what="the path on the map")
    drawn = path["ids"]
    assert path["mode"] == "path" and path["drawn"] == 7 and path["ring_alpha"] > 200
    assert drawn[0] == 3 and drawn[-1] == end_id and len(drawn) == 7 and len(set(drawn)) == 7
    assert driver.find_element(By.ID, "path-player").get_attribute("src").endswith("/audio/3")
    href = driver.find_element(By.ID, "path-m3u").get_attribute("href")
    assert f"from=3&to={end_id}&steps=7&format=m3u" in href
    _shot(driver, "10-song-path")


TASTE_SENT_JS = "return window.musicmapTaste.state().sent.map(s => ({events: s.events, status: s.status}));"


def test_thumbs_steer_the_next_list_and_the_player_records_a_skip(browser: Any, demo_store: DemoStore,
                                                                  tmp_path: Path) -> None:
    """👍 on a list row is in the journal, and the next list says how it moved ("↑ close to ... you
    liked"); a track played a little, then left for another row, is a skip with its list as context.
    On a copy of the demo store: recorded events steer every list."""
    import shutil

    from selenium.webdriver.common.by import By

    from store import Store

    copy = tmp_path / "store"
    shutil.copytree(demo_store.store, copy)
    driver = browser
    with serving(copy) as url:
        _load(driver, f"{url}/?track=5", len(demo_store.tracks))
        rows = _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#similar-list li button[data-thumb='liked']"),
                     what="the rows' thumbs")
        assert len(rows) == 10 and all(b.get_attribute("aria-pressed") == "false" for b in rows)
        liked = int(rows[2].get_attribute("data-thumb-of"))
        rows[2].click()
        sent = _wait(lambda: [s for s in driver.execute_script(TASTE_SENT_JS) if s["status"]], what="the like sent")
        assert sent[0]["status"] == 200 and sent[0]["events"][0] == {
            "kind": "liked", "track_id": liked, "source": "explorer", "context": {"list": "similar", "of": 5}}
        toast = _wait(lambda: driver.find_element(By.ID, "taste-toast"), what="the toast")
        assert "liked" in toast.text and driver.find_element(By.ID, "taste-undo").text == "undo"
        with Store.open(copy) as store:
            events = store.journal.events()
        assert list(events["kind"]) == ["liked"] and int(events["track_id"].iloc[0]) == liked
        assert events["source"].iloc[0] == "explorer"
        # the panel is asked again: its list follows the new taste, the liked row's 👍 pressed
        _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#similar-list .taste-why"), what="the steered list")
        pressed = driver.find_elements(By.CSS_SELECTOR, f"button[data-thumb='liked'][data-thumb-of='{liked}']")
        assert all(b.get_attribute("aria-pressed") == "true" for b in pressed)
        _shot(driver, "12-thumbs")

        # the player: heard for a while, then another row opened before the end → a skip
        _wait(lambda: (driver.execute_script("return window.musicmapTaste.state().sessions.player") or {})
              .get("heard", 0) >= 1.5, what="the track heard for 1.5 s")
        playing = driver.execute_script("return window.musicmapTaste.state().sessions.player.track")
        target = next(b for b in driver.find_elements(By.CSS_SELECTOR, "#similar-list li button.similar-item")
                      if int(b.get_attribute("data-track")) != liked)
        opened = int(target.get_attribute("data-track"))
        target.click()
        _wait(lambda: driver.execute_script("return window.musicmapTrack.state().shown") == opened,
              what="the next track")
        skip = _wait(lambda: [s for s in driver.execute_script(TASTE_SENT_JS)
                              if s["events"][0]["kind"] == "skipped" and s["status"]], what="the skip sent")
        event = skip[0]["events"][0]
        assert skip[0]["status"] == 200 and event["track_id"] == playing == 5 and event["seconds"] >= 1.5
        assert event["duration"] > event["seconds"] and event["context"] == {"list": "panel"}
        # the next list is steered: its reasons say so
        notes = _wait(lambda: [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#similar-list .taste-why")],
                      what="the next list's reasons")
        assert any(n.startswith("↑ close to") and "you liked" in n for n in notes), notes
        with Store.open(copy) as store:
            events = store.journal.events()
        assert list(events["kind"]) == ["liked", "skipped"] and int(events["track_id"].iloc[1]) == 5
        # the opened track's own plays carry the list it came from
        assert driver.execute_script("return window.musicmapTaste.state().sessions.player.context") == {
            "list": "similar", "of": 5}

        # "For you": the mix, each row with why
        driver.find_element(By.ID, "mix-go").click()
        mix = _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#mix-list li .taste-why"), what="the mix")
        assert mix and "liked" in mix[0].text
        assert driver.find_element(By.ID, "mix-player").get_attribute("src").endswith(
            "/audio/" + driver.find_elements(By.CSS_SELECTOR, "#mix-list li button.similar-item")[0]
            .get_attribute("data-track"))
        _shot(driver, "12-for-you")


def test_thumbs_are_off_when_the_server_does_not_record(browser: Any, demo_store: DemoStore) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    with serving(demo_store.store, "--no-record") as url:  # nothing can be written: the shared store is safe
        _load(driver, f"{url}/?track=5", len(demo_store.tracks))
        up = _wait(lambda: driver.find_element(By.ID, "thumb-up"), what="the panel's thumbs")
        assert not up.is_enabled() and "--no-record" in up.get_attribute("title")
        rows = driver.find_elements(By.CSS_SELECTOR, "#similar-list button[data-thumb]")
        assert rows and all(not b.is_enabled() for b in rows)
        assert "--no-record" in driver.find_element(By.ID, "thumb-off").text
        assert "not recorded" in driver.find_element(By.ID, "taste-off").text
        driver.find_element(By.TAG_NAME, "body").send_keys("l")  # the key says why, sends nothing
        assert "Not recorded" in _wait(lambda: driver.find_element(By.ID, "taste-toast").text, what="the toast")
        assert driver.execute_script("return window.musicmapTaste.state().sent.length") == 0
