"""End to end through the real CLI: index → map → similar → sql → export → info → serve, and bad input."""

from __future__ import annotations

import csv
import json
import shutil
import urllib.request
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from musicmap.commands import COMMANDS
from tests.conftest import DemoStore, run_cli


def test_index_json_report_and_incremental_rerun(demo_store: DemoStore) -> None:
    proc = run_cli("index", demo_store.library, "--store", demo_store.store, "--model", "features", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)  # --json: one JSON document and nothing else on stdout
    assert report["scanned"] == len(demo_store.tracks)
    assert report["unchanged"] == len(demo_store.tracks) and report["added"] == 0 and report["failed"] == 0
    assert report["skipped"] == len(demo_store.tracks) and report["indexed"] == 0 and report["moved"] == 0
    durations = report["durations"]
    assert {"scan", "files", "total"} <= set(durations) and durations["total"] >= durations["scan"] >= 0


def test_info(demo_store: DemoStore) -> None:
    info = json.loads(run_cli("info", "--store", demo_store.store, "--json", check=True).stdout)
    assert info["tracks"] == info["embeddings"] == len(demo_store.tracks)
    assert info["model"]["id"] == "features-v1" and "handcrafted" in info["model"]["label"]
    assert info["projections"][0]["method"] == "tsne"
    assert sum(info["genres"].values()) == len(demo_store.tracks)
    assert info["index"]["type"] == "flat" and info["index"]["ntotal"] == len(demo_store.tracks)
    assert info["failures"] == 0
    assert info["sound_tagged"] == len(demo_store.tracks)  # every track has words (musicmap find)
    assert info["taste"]["events"] == 0 and not (Path(demo_store.store) / "taste.sqlite").exists()  # read: not made
    on_disk = sum(f.stat().st_size for f in Path(demo_store.store).rglob("*") if f.is_file())
    assert 0.5 * on_disk <= info["size_bytes"] <= 1.5 * on_disk  # the store's size, roughly (files change)
    human = run_cli("info", "--store", demo_store.store, check=True).stdout
    assert "handcrafted features (librosa)" in human and "failed 0" in human and " MB)" in human


def test_similar_by_id_path_and_text(demo_store: DemoStore) -> None:
    out = json.loads(run_cli("similar", "1", "--store", demo_store.store, "-k", "5", "--json", check=True).stdout)
    assert out["query"]["track"]["id"] == 1
    assert len(out["results"]) == 5 and all(r["track_id"] != 1 for r in out["results"])
    scores = [r["score"] for r in out["results"]]
    assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0 for s in scores)
    tagged = next(t for t in demo_store.tracks if t.tagged)
    by_path = json.loads(run_cli("similar", tagged.path, "--store", demo_store.store, "--json", check=True).stdout)
    assert by_path["query"]["track"]["title"] == tagged.title and len(by_path["results"]) == 10
    by_text = json.loads(run_cli("similar", f"{tagged.artist} {tagged.title}", "--store", demo_store.store,
                                 "--json", check=True).stdout)
    assert by_text["query"]["track"]["artist"] == tagged.artist


def test_similar_for_a_file_outside_the_store(demo_store: DemoStore, tmp_path: Path) -> None:
    outside = tmp_path / "new song.flac"
    shutil.copy(next(t.path for t in demo_store.tracks if t.format == "flac"), outside)
    out = json.loads(run_cli("similar", outside, "--store", demo_store.store, "--json", check=True).stdout)
    assert out["query"]["type"] == "file" and len(out["results"]) == 10
    assert out["results"][0]["score"] > 0.999  # the same audio is already in the store


def test_similar_filters_variety_and_playlists(demo_store: DemoStore, tmp_path: Path) -> None:
    store = demo_store.store
    first = json.loads(run_cli("similar", "1", "--store", store, "--json", check=True).stdout)
    other = next(t.style for t in demo_store.tracks if t.style != first["query"]["track"]["genre"])
    out = json.loads(run_cli("similar", "1", "--store", store, "-k", "5", "--where", f"genre = '{other}'",
                             "--json", check=True).stdout)
    assert len(out["results"]) == 5 and {r["genre"] for r in out["results"]} == {other}
    many = json.loads(run_cli("similar", "1", "2", "3", "--store", store, "-k", "8", "--max-per-artist", "1",
                              "--dedupe", "--mmr", "0.7", "--json", check=True).stdout)
    assert many["query"]["type"] == "tracks" and len(many["results"]) == 8
    assert not {1, 2, 3} & {r["track_id"] for r in many["results"]}
    artists = [r["artist"] for r in many["results"] if r["artist"]]
    assert len(artists) == len(set(artists))
    per_album = json.loads(run_cli("similar", "1", "--store", store, "-k", "6", "--max-per-album", "1", "--json",
                                   check=True).stdout)
    albums = [r["album"] for r in per_album["results"] if r["album"]]
    assert len(per_album["results"]) == 6 and len(albums) == len(set(albums))
    plain = json.loads(run_cli("similar", "1", "--store", store, "-k", "50", "--json", check=True).stdout)["results"]
    cut = plain[3]["score"]
    above = json.loads(run_cli("similar", "1", "--store", store, "-k", "50", "--min-score", str(cut), "--json",
                               check=True).stdout)["results"]
    assert [r["track_id"] for r in above] == [r["track_id"] for r in plain if r["score"] >= cut][:50]
    assert len(above) >= 4 and all(r["score"] >= cut for r in above)
    playlist = tmp_path / "like-1.m3u"
    run_cli("similar", "1", "--store", store, "-k", "6", "--m3u", playlist, check=True)
    lines = playlist.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#EXTM3U" and len(lines) == 13 and all(Path(p).is_file() for p in lines[2::2])
    assert lines[1].startswith("#EXTINF:")
    from_sql = tmp_path / "sql.m3u"
    run_cli("export", "--store", store, "--m3u", from_sql, "--query", "SELECT id FROM similar_to(1, 7)", check=True)
    sql_paths = from_sql.read_text(encoding="utf-8").splitlines()[2::2]
    assert len(sql_paths) == 7 and sql_paths[:6] == lines[2::2]  # similar_to agrees with `similar`
    coords = tmp_path / "map.csv"
    run_cli("export", "--store", store, "--projection", coords, check=True)
    with open(coords, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(demo_store.tracks) and {"track_id", "x", "y", "genre"} <= set(rows[0])
    _assert_user_error(run_cli("similar", "1", "--store", store, "--mmr", "2"), "mmr")
    _assert_user_error(run_cli("similar", "1", "--store", store, "--where", "no_such = 1"), "no_such")
    _assert_user_error(run_cli("export", "--store", store, "--m3u", tmp_path / "x.m3u"), "--query")


def test_sql_formats(demo_store: DemoStore) -> None:
    q = "SELECT genre, count(*) AS n FROM tracks GROUP BY genre ORDER BY genre"
    as_json = json.loads(run_cli("sql", q, "--store", demo_store.store, "--format", "json", check=True).stdout)
    assert as_json["columns"] == ["genre", "n"] and sum(r[1] for r in as_json["rows"]) == len(demo_store.tracks)
    as_csv = run_cli("sql", q, "--store", demo_store.store, "--format", "csv", check=True).stdout
    assert as_csv.splitlines()[0] == "genre,n" and len(as_csv.splitlines()) == 9
    table = run_cli("sql", q, "--store", demo_store.store, check=True).stdout
    assert "drum-and-bass" in table and "(8 rows)" in table


def test_export_csv_and_png(demo_store: DemoStore, tmp_path: Path) -> None:
    csv_path, png_path, svg_path = tmp_path / "embeddings.csv", tmp_path / "tsne_plot.png", tmp_path / "map.svg"
    run_cli("export", "--store", demo_store.store, "--embeddings", csv_path, "--plot", png_path, check=True)
    with open(csv_path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(demo_store.tracks)
    assert len({r["id"] for r in rows}) == len(rows)
    dims = [k for k in rows[0] if k.startswith("e") and k[1:].isdigit()]
    vec = np.array([float(rows[0][k]) for k in dims])
    assert abs(np.linalg.norm(vec) - 1) < 1e-4
    assert {"title", "artist", "genre", "x", "y", "path"} <= set(rows[0])
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = mpimg.imread(png_path)
    assert image.shape[0] > 500 and image.shape[1] > 500 and image.std() > 0.05  # not a blank canvas
    run_cli("export", "--store", demo_store.store, "--plot", svg_path, "--color-by", "genre", "--labels", check=True)
    svg = svg_path.read_text(encoding="utf-8")
    assert svg.lstrip().startswith("<?xml") and "96 tracks, tsne map of handcrafted features" in svg
    assert all(f"<!-- {t.style} -->" in svg for t in demo_store.tracks)  # a label at each genre's centre
    _assert_user_error(run_cli("export", "--store", demo_store.store, "--plot", svg_path, "--color-by", "style"),
                       "needs MAEST style predictions")
    parquet = tmp_path / "e.parquet"
    run_cli("export", "--store", demo_store.store, "--embeddings", parquet, check=True)
    import pyarrow.parquet as pq

    assert pq.read_table(parquet).num_rows == len(demo_store.tracks)


@pytest.mark.subprocess
def test_serve_answers_http(served: str) -> None:
    with urllib.request.urlopen(served + "/", timeout=10) as response:
        assert response.status == 200
        assert b"musicmap" in response.read()


# `musicmap demo` end to end: tests/test_first_run.py (one demo run, read by its tests).


# --- bad input: a clear message, exit code 1, no traceback --------------------------------------

def _assert_user_error(proc, *needles: str) -> None:  # type: ignore[no-untyped-def]
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


def test_missing_folder(tmp_path: Path) -> None:
    proc = run_cli("index", tmp_path / "no-such-folder", "--store", tmp_path / "s", "--model", "features")
    _assert_user_error(proc, "does not exist", "no-such-folder")


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    proc = run_cli("index", tmp_path / "empty", "--store", tmp_path / "s", "--model", "features")
    _assert_user_error(proc, "no audio files found")


def test_prune_never_empties_a_folder_given(tmp_path: Path) -> None:
    """--prune with a folder given that holds no audio any more (as a drive that is not mounted
    looks): refused, saying so, nothing pruned — alone or beside a folder that still has music.
    Without that folder, the rest is pruned as usual."""
    from store import Store
    from tests.audio import write_tone

    music, drive = tmp_path / "music", tmp_path / "drive"
    for folder, base in ((music, 220.0), (drive, 330.0)):
        folder.mkdir()
        for i in range(2):
            write_tone(folder / f"t{i}.wav", 2.0, base * (i + 1), seed=i)
    store = tmp_path / "s"
    opts = ("--model", "features", "--no-map", "--no-tags", "--workers", "1")
    assert run_cli("index", music, drive, "--store", store, *opts).returncode == 0
    for f in drive.iterdir():
        f.unlink()
    (music / "t1.wav").unlink()
    proc = run_cli("index", music, drive, "--store", store, *opts, "--prune")
    _assert_user_error(proc, f"no audio files found under {drive}", "nothing was pruned", "leave that folder out")
    proc = run_cli("index", drive, "--store", store, *opts, "--prune")
    _assert_user_error(proc, "no audio files found", "nothing was pruned", "delete the store folder")
    with Store.open(store) as opened:
        assert opened.count("tracks") == 4
    proc = run_cli("index", music, "--store", store, *opts, "--prune")
    assert proc.returncode == 0, proc.stderr
    with Store.open(store) as opened:  # music/t1 pruned; the drive's two tracks untouched
        assert opened.count("tracks") == 3


def test_store_that_is_not_a_store(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"x")
    for args in (("sql", "SELECT 1"), ("similar", "1"), ("info",), ("map",), ("export", "--plot", "x.png"),
                 ("serve", "--port", "1")):
        _assert_user_error(run_cli(*args, "--store", tmp_path / "photos"), "not a musicmap store")


def test_bad_sql(demo_store: DemoStore) -> None:
    _assert_user_error(run_cli("sql", "SELEKT * FROM tracks", "--store", demo_store.store), "SQL error")
    _assert_user_error(run_cli("sql", "DELETE FROM tracks", "--store", demo_store.store), "read-only")
    _assert_user_error(run_cli("sql", "SELECT * FROM read_csv('/etc/passwd')", "--store", demo_store.store),
                       "outside the store")
    _assert_user_error(run_cli("sql", "SELECT 1; SELECT 2", "--store", demo_store.store), "one SQL statement")


def test_wrong_model_path_and_unknown_track(demo_store: DemoStore, tmp_path: Path) -> None:
    proc = run_cli("index", demo_store.library, "--store", tmp_path / "s", "--model", tmp_path / "nope")
    _assert_user_error(proc, "cannot load MAEST model", "--model features")
    _assert_user_error(run_cli("similar", "99999", "--store", demo_store.store), "no track with id 99999")
    _assert_user_error(run_cli("similar", "zzzz qqqq", "--store", demo_store.store), "matches")


def test_usage_errors_exit_2(demo_store: DemoStore) -> None:
    assert run_cli("sql").returncode == 2
    assert run_cli("export", "--store", demo_store.store).returncode == 1
    assert run_cli("index", "x", "--device", "tpu").returncode == 2


def test_the_exit_code_rule_in_one_place() -> None:
    """The documented codes (0 done, 1 nothing done or a user error, 2 usage, 3 some items failed,
    130 Ctrl-C, 141 broken pipe), each named once in musicmap.exits."""
    from musicmap import exits

    assert (exits.OK, exits.FAILED, exits.USAGE, exits.PARTIAL, exits.INTERRUPTED, exits.BROKEN_PIPE) == \
        (0, 1, 2, 3, 130, 141)
    assert exits.outcome(0) == exits.outcome(0, done=0) == exits.outcome(0, done=5) == 0  # nothing failed
    assert exits.outcome(2, done=5) == 3  # some failed, the rest done
    assert exits.outcome(2, done=0) == 1  # every one failed: nothing could be done
    assert exits.outcome(2) == 3  # a command that does not count what was done (tag): some failed


@pytest.mark.parametrize("command", [module.NAME for module in COMMANDS])
def test_every_command_has_help(command: str) -> None:
    proc = run_cli(command, "--help")
    assert proc.returncode == 0 and f"usage: musicmap {command}" in proc.stdout
    assert command in run_cli("--help").stdout  # listed in the overview


def test_find_by_words(demo_store: DemoStore, tmp_path: Path) -> None:
    """`find`: the JSON shape of `similar --json` plus what matched; the demo's generated "ambient"
    pads are the library's quietest, least percussive tracks, and "techno" its beatiest."""
    store = demo_store.store
    out = json.loads(run_cli("find", "quiet ambient without drums", "--store", store, "-k", "12", "--json",
                             check=True).stdout)
    assert out["query"] == {"type": "words", "text": "quiet ambient without drums", "like": None}
    assert [w["word"] for w in out["understood"]] == ["quiet", "ambient", "drums"]
    assert out["understood"][2]["negated"] and out["reason"] is None and out["untagged"] == 0
    results = out["results"]
    assert len(results) == 12
    for r in results:
        assert {"track_id", "id", "path", "title", "artist", "album", "score", "matched"} <= set(r)
        assert [m["word"] for m in r["matched"]] == ["quiet", "ambient", "drums"]
        assert all(m["tags"] and 0 <= m["strength"] <= 1 for m in r["matched"])
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    genres = [r["genre"] for r in results]
    assert genres.count("ambient") > genres.count("techno")
    text = run_cli("find", "quiet ambient without drums", "--store", store, "-k", "3", check=True).stdout
    assert "sounding quiet → " in text and "not drums → drums" in text and text.count("\n") >= 4
    like = json.loads(run_cli("find", "calmer", "--like", "1", "--store", store, "-k", "5", "--where",
                              "year IS NOT NULL OR year IS NULL", "--max-per-artist", "2", "--json", check=True).stdout)
    assert like["query"]["like"] == 1 and len(like["results"]) == 5
    assert 1 not in {r["track_id"] for r in like["results"]} and all("similarity" in r for r in like["results"])
    playlist = tmp_path / "calm.m3u"
    run_cli("find", "calm", "--store", store, "-k", "4", "--m3u", playlist, check=True)
    assert playlist.read_text(encoding="utf-8").count("#EXTINF") == 4


def test_find_bad_input_is_one_clear_line(demo_store: DemoStore) -> None:
    store = demo_store.store
    cases = [
        ([""], "describe the sound in words"),
        (["some music please"], "no word that describes a sound"),
        (["xyzzyq"], 'no tag matches "xyzzyq"'),
        (["pianno"], None),  # a slip: read as piano, no error
        (["calm " * 200], "use at most 300"),
        (["piano'; DROP TABLE tracks; --"], None),
        (["<script>alert(1)</script> piano"], None),
        (["тихая музыка"], 'no tag matches "тихая"'),
        (["calm", "-k", "0"], "-k 0: must be at least 1"),
        (["calm", "--like", "999999"], "999999"),
        (["calm", "--where", "nonsense ="], "where"),
        (["calm", "--centroid", "3"], "centroid"),
    ]
    for args, message in cases:
        proc = run_cli("find", *args, "--store", store)
        if message is None:
            assert proc.returncode == 0 and "Traceback" not in proc.stderr, (args, proc.stderr)
            continue
        assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
        assert message in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)
    assert json.loads(run_cli("sql", "SELECT count(*) FROM tracks", "--store", store, "--format", "json",
                              check=True).stdout)["rows"][0][0] == len(demo_store.tracks)
