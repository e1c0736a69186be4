"""Genres that differ only in spelling are one category (issue #29): the rule (:mod:`store.genres`),
then a real library whose FLAC tags spell "Game soundtrack" four ways, indexed with the real CLI:
one colour and legend entry, one filter option, a filter and ``genre=`` that match every spelling,
``musicmap info`` counting them as one, a plot with one legend entry, and the store keeping each
file's own text.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import dash
import numpy as np
import pandas as pd
import pytest

from explorer import create_app
from explorer.callbacks import Callbacks
from explorer.figure import split
from explorer.state import parse
from store import GenreGroups, Store, genre_key, genre_keys, group_genres
from tests.audio import write_tone
from tests.conftest import run_cli

# ---- the rule ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("spelling", "key"), [
    ("Game soundtrack", "game soundtrack"),
    ("Game Soundtrack", "game soundtrack"),
    ("  game   soundtrack ", "game soundtrack"),
    ("Game-Soundtrack", "game soundtrack"),
    ("game_soundtrack", "game soundtrack"),
    ("GAME\tSOUNDTRACK", "game soundtrack"),
    ("Ｇａｍｅ Ｓｏｕｎｄｔｒａｃｋ", "game soundtrack"),  # full-width letters (NFKC)
    ("Rock/Pop", "rock pop"),  # punctuation between words is a word boundary, as a space is
    ("Rock Pop", "rock pop"),
    ("Rock'n'Roll", "rock n roll"),
    ("R&B", "r b"),
    ("R and B", "r and b"),  # words are not synonyms: not R&B's group
    ("Hip Hop", "hip hop"),
    ("HipHop", "hiphop"),  # a key keeps word boundaries: two groups
    ("Straße", "strasse"),  # case folding, not just lower-casing
    ("Drum + Bass", "drum + bass"),  # symbols other than punctuation are kept
    ("", ""), ("   ", ""), (" - ", ""), ("?", ""), (None, ""),  # no genre
])
def test_the_group_key(spelling: str | None, key: str) -> None:
    assert genre_key(spelling) == key


def test_a_group_is_shown_by_its_most_frequent_spelling() -> None:
    groups = GenreGroups.from_counts({"Game soundtrack": 3, "Game Soundtrack": 2, "game  soundtrack": 1,
                                      "Jazz": 1, "jazz": 1, "Rock/Pop": 2, "Rock Pop": 2, "": 4, None: 5})
    assert groups.counts() == {"Game soundtrack": 6, "Rock Pop": 4, "Jazz": 2}  # ties: code-point order
    assert groups.name("GAME-SOUNDTRACK") == "Game soundtrack" and groups.name("Polka") is None
    assert groups.spellings("game soundtrack") == ["Game soundtrack", "Game Soundtrack", "game  soundtrack"]
    assert groups.spellings("") == [] and groups.name(None) is None
    # white space in the display name is tidied; the spellings stay as given
    tidy = GenreGroups.from_counts({" Game  Soundtrack ": 2, "Game soundtrack": 1})
    assert tidy.counts() == {"Game Soundtrack": 3} and tidy.spellings("game soundtrack")[0] == " Game  Soundtrack "


def test_a_column_of_genres_grouped_and_keyed() -> None:
    values = pd.Series(["Game Soundtrack", "Game soundtrack", "Jazz", None, "Game soundtrack", " ", "jazz",
                        "Game soundtrack"])
    grouped = group_genres(values)
    assert list(grouped.categories) == ["Game soundtrack", "Jazz"]  # the largest group first
    assert [None if pd.isna(v) else v for v in grouped] == [
        "Game soundtrack", "Game soundtrack", "Jazz", None, "Game soundtrack", None, "Jazz", "Game soundtrack"]
    assert list(genre_keys(values)) == ["game soundtrack", "game soundtrack", "jazz", None, "game soundtrack",
                                        None, "jazz", "game soundtrack"]
    assert len(group_genres(pd.Series([], dtype=object))) == 0


# ---- a real library ---------------------------------------------------------------------------

TAGGED = [
    *["Game soundtrack"] * 3, *["Game Soundtrack"] * 2, "game  soundtrack", "Game-Soundtrack",
    *["Jazz"] * 3, "jazz",
    "Rock/Pop", "Rock Pop",
    "R&B", "R and B",
    None, None,  # no genre tag
]
GAME = {"Game soundtrack", "Game Soundtrack", "game  soundtrack", "Game-Soundtrack"}


def _write_flac(path: Path, i: int, genre: str | None) -> None:
    from mutagen.flac import FLAC

    write_tone(path, 3.0, 110.0 * (1 + i % 7), seed=i)
    audio = FLAC(path)
    audio["title"] = f"Track {i}"
    audio["artist"] = f"Artist {i % 4}"
    if genre is not None:
        audio["genre"] = genre
    audio.save()


@pytest.fixture(scope="module")
def variants_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("genres")
    for i, genre in enumerate(TAGGED):
        _write_flac(root / "library" / f"{i:02d}.flac", i, genre)
    store = root / "store"
    run_cli("index", root / "library", "--store", store, "--model", "features", "--workers", "2", "--no-tags",
            "--quiet", check=True)  # --quiet: no plan (it times the model first; test_speed_settings.py)
    run_cli("map", "--store", store, check=True)
    return store


def test_the_store_keeps_each_files_own_spelling(variants_store: Path) -> None:
    out = json.loads(run_cli("sql", "SELECT genre FROM tracks", "--store", variants_store, "--json",
                             check=True).stdout)
    assert Counter(row[0] for row in out["rows"]) == Counter(TAGGED)


def test_info_counts_the_spellings_as_one_genre(variants_store: Path) -> None:
    info = json.loads(run_cli("info", "--store", variants_store, "--json", check=True).stdout)
    assert info["genres"] == {"Game soundtrack": 7, "Jazz": 4, "(none)": 2, "Rock Pop": 2, "R and B": 1, "R&B": 1}
    text = run_cli("info", "--store", variants_store, check=True).stdout
    assert "genres     Game soundtrack 7, Jazz 4, (none) 2, Rock Pop 2, R and B 1, R&B 1" in text


@pytest.fixture(scope="module")
def app(variants_store: Path) -> Iterator[dash.Dash]:
    store = Store.open(variants_store)
    yield create_app(store)
    store.close()


@pytest.fixture
def cb(app: dash.Dash) -> Callbacks:
    callbacks: Callbacks = app.server.extensions["musicmap_callbacks"]
    return callbacks


def test_one_colour_legend_entry_and_filter_option_per_genre(cb: Callbacks, app: dash.Dash) -> None:
    data = cb.data.refresh()
    frame = data.frame
    assert data.options("genre") == ["Game soundtrack", "Jazz", "Rock Pop", "R and B", "R&B"]
    traces = data.traces("genre")  # ties: by name, no genre last
    assert traces.names == ["Game soundtrack", "Jazz", "Rock Pop", "(none)", "R and B", "R&B"]
    game_rows = np.flatnonzero(frame["genre"].isin(GAME).to_numpy())
    assert sorted(traces.members[0].tolist()) == game_rows.tolist()  # every spelling in the one category
    legend = [t.name for t in cb.figure("genre").data]
    assert legend == ["Game soundtrack (7)", "Jazz (4)", "Rock Pop (2)", "(none) (2)", "R and B (1)", "R&B (1)"]
    # /api/v1/map/colors: one byte a track, the index of its legend entry
    client = app.server.test_client()
    colours = np.frombuffer(gzip.decompress(client.get("/api/v1/map/colors?by=genre",
                                                       headers={"Accept-Encoding": "gzip"}).data), np.uint8)
    assert len(colours) == len(frame) and set(colours[game_rows].tolist()) == {0}
    assert (colours == 0).sum() == 7
    # the hover card and the search show the file's own text
    one = int(frame["id"][frame["genre"] == "Game-Soundtrack"].iloc[0])
    assert client.get(f"/api/v1/map/{one}").get_json()["genre"] == "Game-Soundtrack"
    # a frame without the explorer's group column is grouped the same way
    assert split(frame.drop(columns="genre_group"), "genre").names == traces.names


def _shown(cb: Callbacks, shown: str) -> set[int]:
    body = json.loads(shown)
    ids = cb.data.frame["id"].to_numpy()
    bits = np.unpackbits(np.frombuffer(base64.b64decode(body["bits"]), np.uint8), bitorder="little")[:len(ids)]
    return set(ids[bits.astype(bool)].tolist())


def test_the_filter_matches_every_spelling(cb: Callbacks) -> None:
    frame = cb.data.refresh().frame
    game = set(frame["id"][frame["genre"].isin(GAME)].tolist())
    for chosen in (["Game soundtrack"], ["game-soundtrack"], ["GAME SOUNDTRACK", "Game Soundtrack"]):
        shown, note = cb.filters(chosen, None, None)
        assert note == f"7 of {len(frame)} tracks match the filters" and _shown(cb, shown) == game
    shown, note = cb.filters(["Game soundtrack", "jazz"], None, None)
    assert note == f"11 of {len(frame)} tracks match the filters"
    _, note = cb.filters(["R&B"], None, None)  # "R and B" is another genre
    assert note == f"1 of {len(frame)} tracks match the filters"
    _, note = cb.filters(["Polka"], None, None)
    assert note == f"0 of {len(frame)} tracks match the filters"
    # a URL naming a genre in any spelling selects its group's filter option (once)
    current = parse("", ("genre",))
    values = cb.state_from_url("?genre=game-soundtrack&genre=GAME%20SOUNDTRACK&genre=Polka", current)
    assert values[2] == ["Game soundtrack", "Polka"]


def test_the_apis_genre_matches_every_spelling(app: dash.Dash) -> None:
    client = app.server.test_client()
    for asked in ("Game soundtrack", "game_soundtrack", "GAME SOUNDTRACK"):
        answer = client.get("/api/v1/tracks", query_string={"genre": asked, "limit": 100}).get_json()
        assert answer["total"] == 7 and Counter(r["genre"] for r in answer["results"]) == Counter(
            g for g in TAGGED if g in GAME), asked
    quoted = client.get("/api/v1/tracks", query_string={"genre": "R and B"}).get_json()
    assert quoted["total"] == 1 and quoted["results"][0]["genre"] == "R and B"
    assert client.get("/api/v1/tracks", query_string={"genre": "O'Brien's"}).get_json()["total"] == 0


def test_a_plot_coloured_by_genre_has_one_legend_entry_per_genre(variants_store: Path, tmp_path: Path) -> None:
    svg = tmp_path / "map.svg"
    run_cli("export", "--store", variants_store, "--plot", svg, "--color-by", "genre", "--labels", check=True)
    text = svg.read_text()
    assert "<!-- Game soundtrack (7) -->" in text and "<!-- Jazz (4) -->" in text
    assert "Game Soundtrack (" not in text and "Game-Soundtrack" not in text and "jazz (" not in text
