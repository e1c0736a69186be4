"""Taste from the command line (like, dislike, played, skipped, taste, mix, --no-taste), and the
journal under stress: a SIGKILL while recording loses no acknowledged event, and recording goes on
beside an index run that writes the same store."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from data.demo_library import generate_demo_library
from store import Event, Store
from tests.conftest import DemoStore, run_cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store_copy(demo_store: DemoStore, tmp_path: Path) -> Path:
    """A copy of the shared demo store: recorded events steer every list, so never the original."""
    return Path(shutil.copytree(demo_store.store, tmp_path / "store"))


def _style_of(demo_store: DemoStore, store: Path) -> dict[int, str]:
    by_path = {str(t.path): t.style for t in demo_store.tracks}
    with Store.open(store) as opened:
        rows = opened.tracks(columns=["id", "path"])
    return {int(i): by_path[p] for i, p in zip(rows["id"], rows["path"], strict=True) if p in by_path}


def test_like_dislike_and_lists_that_say_they_are_steered(demo_store: DemoStore, store_copy: Path) -> None:
    style = _style_of(demo_store, store_copy)
    liked_style = "ambient"
    liked = [i for i, s in style.items() if s == liked_style][:4]
    seed = next(i for i, s in style.items() if s == "techno")
    plain = json.loads(run_cli("similar", str(seed), "--store", store_copy, "-k", "10", "--json", check=True).stdout)
    assert plain["taste"] is None  # nothing recorded yet: nothing steers
    disliked = plain["results"][0]["track_id"]
    out = run_cli("like", *map(str, liked), "--store", store_copy, check=True).stdout
    assert out.count("liked: #") == 4
    assert "disliked: #" in run_cli("dislike", str(disliked), "--store", store_copy, check=True).stdout
    proc = run_cli("similar", str(seed), "--store", store_copy, "-k", "10", "--json", check=True)
    steered = json.loads(proc.stdout)
    assert "steered by your taste (4 liked, 1 disliked" in proc.stderr
    assert steered["taste"]["liked"] == 4
    ids = [r["track_id"] for r in steered["results"]]
    assert disliked not in ids
    assert any(r.get("taste", {}).get("why", "").startswith("↑ close to") for r in steered["results"])
    text = run_cli("similar", str(seed), "--store", store_copy, "-k", "10", check=True).stdout
    assert "↑ close to" in text or "↓ sounds like" in text
    off = json.loads(run_cli("similar", str(seed), "--store", store_copy, "-k", "10", "--json", "--no-taste",
                             check=True).stdout)
    assert off["taste"] is None and [r["track_id"] for r in off["results"]] == [r["track_id"] for r in plain["results"]]
    # undo: the dislike taken back, the track is offered again
    assert "took back 1 disliked event" in run_cli("dislike", str(disliked), "--undo", "--store", store_copy,
                                                   check=True).stdout
    again = json.loads(run_cli("similar", str(seed), "--store", store_copy, "-k", "10", "--json", check=True).stdout)
    assert disliked in [r["track_id"] for r in again["results"]]
    assert "nothing to undo" in run_cli("dislike", str(disliked), "--undo", "--store", store_copy, check=True).stdout


def test_played_skipped_taste_export_and_forget(store_copy: Path, tmp_path: Path) -> None:
    assert "no events yet" in run_cli("taste", "--store", store_copy, check=True).stdout
    assert "played: #3" in run_cli("played", "3", "--seconds", "95", "--of", "120", "--store", store_copy,
                                   check=True).stdout
    assert "skipped: #4" in run_cli("skipped", "4", "--at", "7", "--store", store_copy, check=True).stdout
    run_cli("like", "3", "--when", "2026-11-30T20:15", "--store", store_copy, check=True)
    summary = json.loads(run_cli("taste", "--store", store_copy, "--json", check=True).stdout)
    assert summary["summary"]["plays"] == 1 and summary["summary"]["skips"] == 1
    assert summary["top"][0]["track_id"] == 3 and summary["top"][0]["liked"]
    assert [e["kind"] for e in summary["recent"]] == ["like" + "d", "played", "skipped"]  # by time: the like is older
    text = run_cli("taste", "--store", store_copy, check=True).stdout
    assert "3 events: 1 liked, 0 disliked, 1 plays, 1 skips" in text and "most liked:" in text
    run_cli("taste", "--store", store_copy, "--export", tmp_path / "events.csv", check=True)
    assert (tmp_path / "events.csv").read_text().count("\n") == 4  # header and three events
    lines = run_cli("taste", "--store", store_copy, "--export", "-", check=True).stdout.splitlines()
    assert [json.loads(line)["track_id"] for line in lines] == [3, 3, 4]
    assert "forgot 2 events of 1 tracks" in run_cli("taste", "--store", store_copy, "--forget", "3",
                                                    check=True).stdout
    assert "forgot 1 events" in run_cli("taste", "--store", store_copy, "--forget-all", check=True).stdout
    assert "no events yet" in run_cli("taste", "--store", store_copy, check=True).stdout


def test_bad_input_is_one_line_and_records_nothing(store_copy: Path) -> None:
    for args, words in ((("like", "99999"), "no track with id 99999"),
                        (("like", "3", "--when", "2099-01-01"), "in the future"),
                        (("like", "3", "--when", "yesterday-ish"), "--when 'yesterday-ish': ISO 8601"),
                        (("played", "3", "--seconds", "-4"), "--seconds -4.0: seconds"),
                        (("skipped", "3", "--at", "-1"), "--at -1.0: seconds"),
                        (("mix", "--since", "forever"), "--since 'forever'"),
                        (("mix",), "nothing to mix from yet")):
        proc = run_cli(*args, "--store", store_copy)
        assert proc.returncode == 1 and words in proc.stderr, (args, proc.stderr)
    with Store.open(store_copy) as store:
        assert store.journal.count() == 0


def test_mix_from_the_command_line(demo_store: DemoStore, store_copy: Path, tmp_path: Path) -> None:
    style = _style_of(demo_store, store_copy)
    ambient = [i for i, s in style.items() if s == "ambient"][:3]
    techno = [i for i, s in style.items() if s == "techno"][:2]
    run_cli("like", *map(str, ambient + techno), "--store", store_copy, check=True)
    mix = json.loads(run_cli("mix", "-n", "8", "--store", store_copy, "--json", check=True).stdout)
    ids = [r["track_id"] for r in mix["results"]]
    assert len(ids) == 8 and not set(ids) & set(ambient + techno)
    assert {style[i] for i in ids} >= {"ambient", "techno"}  # two moods, two kinds of track
    assert all(r["why"].startswith("like #") for r in mix["results"])
    run_cli("mix", "-n", "5", "--store", store_copy, "--m3u", tmp_path / "for-you.m3u", check=True)
    assert (tmp_path / "for-you.m3u").read_text().count("#EXTINF") == 5


RECORDER = textwrap.dedent("""
    import sys, time
    from store import Event, Store
    store = Store.open(sys.argv[1], shared=True)
    i = 0
    while True:
        store.record([Event("played", 1 + i % int(sys.argv[2]), at=time.time(), key=f"k{i}", source="killtest")])
        print(i, flush=True)
        i += 1
""")


@pytest.mark.kills
def test_a_sigkill_while_recording_loses_no_acknowledged_event(store_copy: Path) -> None:
    with Store.open(store_copy) as store:
        n_tracks = store.count("tracks")
    proc = subprocess.Popen([sys.executable, "-c", RECORDER, str(store_copy), str(n_tracks)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None
    acknowledged = []
    for line in proc.stdout:
        acknowledged.append(int(line))
        if len(acknowledged) >= 150:
            break
    os.kill(proc.pid, signal.SIGKILL)  # mid-stream: the next record call is under way
    proc.wait()
    with Store.open(store_copy) as store:
        keys = set(store.journal.events()["key"])
    assert {f"killtest|k{i}" for i in acknowledged} <= keys
    assert len(keys) in (len(acknowledged), len(acknowledged) + 1)  # at most the one not yet acknowledged


@pytest.mark.subprocess
def test_recording_goes_on_while_an_index_run_writes(store_copy: Path, tmp_path: Path) -> None:
    """The explorer's way (a shared store) at 100 events a second, beside `musicmap index` adding
    tracks to the same store: none lost, and the run finishes as usual."""
    library = tmp_path / "more"
    generate_demo_library(library, n_tracks=16, seed=99, min_duration=20, max_duration=25)
    index = subprocess.Popen([sys.executable, "-m", "musicmap.cli", "index", str(library), "--store", str(store_copy),
                              "--model", "features", "--no-map", "--no-tags", "--workers", "1"], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    store = Store.open(store_copy, shared=True)
    sent = 0
    try:
        start = time.monotonic()
        while index.poll() is None or sent < 200:
            store.record([Event("played", 1 + sent % 90, at=time.time(), key=f"c{sent}", source="concurrent")])
            sent += 1
            time.sleep(max(0.0, start + sent / 100 - time.monotonic()))  # 100 a second
            if time.monotonic() - start > 120:
                break
        out, err = index.communicate(timeout=120)
    finally:
        store.close()
    assert index.returncode == 0, err
    assert "16 added" in out + err
    with Store.open(store_copy) as opened:
        keys = set(opened.journal.events()["key"])
        assert opened.count("tracks") > 96
    assert keys == {f"concurrent|c{i}" for i in range(sent)}


HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from store import Store
    path, flag = Path(sys.argv[1]), Path(sys.argv[2])
    with Store.open(path) as s:
        model = s.manifest.model
    with Store.open_for_indexing(path, model) as w:
        w.count("tracks")  # the write lock is taken and kept
        flag.write_text("holding")
        time.sleep(float(sys.argv[3]))
        flag.write_text("released")
""")


@pytest.mark.subprocess
def test_a_track_already_seen_is_recorded_while_a_writer_holds_the_library(store_copy: Path, tmp_path: Path) -> None:
    """What the server shows, it has read: recording a play of it goes to the journal at once, even
    while another process holds library.duckdb for writing (an index run between its commits)."""
    flag = tmp_path / "flag"
    store = Store.open(store_copy, shared=True)
    try:
        store.track_rows([3, 4])  # shown in a list
        store.record([Event("played", 5, seconds=10.0, source="cli")])  # recorded once before
        store.release()
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(store_copy), str(flag), "20"], cwd=ROOT,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not flag.exists() and holder.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert flag.exists(), holder.stderr.read() if holder.stderr else ""
        done = store.record([Event("liked", 3, source="cli"), Event("skipped", 4, seconds=2.0, source="cli"),
                             Event("played", 5, seconds=30.0, source="cli")])
        assert flag.read_text() == "holding"  # recorded before the writer let go
        assert [r.event.kind for r in done] == ["liked", "skipped", "played"]
        holder.wait(timeout=60)
    finally:
        store.close()
    with Store.open(store_copy) as opened:
        events = opened.journal.events()
        assert events["kind"].tolist().count("played") == 2 and "liked" in set(events["kind"])
