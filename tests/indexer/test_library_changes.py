"""A real library changes: moves keep their track, gone files are reported and pruned,
exit codes tell the outcome, and a corpus of bad input never stops a run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from indexer.embedders import FeaturesEmbedder
from indexer.pipeline import index_library
from store import Store
from tests.audio import write_tone
from tests.conftest import MUSICMAP, run_cli

SR = 16_000


def _tone(path: Path, seconds: float, freq: float, sr: int = SR, channels: int = 1, subtype: str | None = None) -> Path:
    return write_tone(path, seconds, freq, sr=sr, noise=0.01, seed=int(freq), channels=channels, subtype=subtype)


def test_moved_file_keeps_its_track_and_gone_files_are_pruned(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    for i in range(4):
        _tone(lib / "A" / f"Artist - Song {i}.flac", 2.0, 200 + 100 * i)
    store = tmp_path / "store"
    index_library([lib], store, FeaturesEmbedder(), tags=False)  # sound tags: test_tagger.py
    with Store.open(store) as s:
        moved_id = s.track_id_for_path(lib / "A" / "Artist - Song 1.flac")
        before = dict(zip(*s.vectors(), strict=True))
    (lib / "B").mkdir()
    shutil.move(lib / "A" / "Artist - Song 1.flac", lib / "B" / "renamed.flac")
    (lib / "A" / "Artist - Song 3.flac").unlink()
    report = index_library([lib], store, FeaturesEmbedder(), tags=False)
    assert (report.moved, report.unchanged, report.added, report.missing, report.pruned) == (1, 2, 0, 1, 0)
    with Store.open(store) as s:
        assert s.track_id_for_path(lib / "B" / "renamed.flac") == moved_id
        ids, vectors = s.vectors()
        np.testing.assert_array_equal(dict(zip(ids, vectors, strict=True))[moved_id], before[moved_id])
        assert s.count("tracks") == 4  # the gone track is only reported...
    proc = run_cli("index", lib, "--store", store, "--model", "features", "--prune", "--no-tags", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["missing"], out["pruned"], out["unchanged"]) == (1, 1, 3)
    with Store.open(store) as s:  # ...until --prune removes it, with its vector
        assert s.count("tracks") == s.count("embeddings") == 3 and s.index.ntotal == 3


def test_exit_codes(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    _tone(lib / "good.wav", 1.0, 440)
    (lib / "bad.mp3").write_text("not audio")
    fast = ("--no-tags", "--workers", "1", "--quiet")  # the exit codes, not the tag stage, pool or plan
    proc = run_cli("index", lib, "--store", tmp_path / "s1", "--model", "features", *fast)
    assert proc.returncode == 3 and "bad.mp3" in proc.stdout and "Traceback" not in proc.stderr
    info = json.loads(run_cli("info", "--store", tmp_path / "s1", "--json", check=True).stdout)
    assert info["tracks"] == 1 and info["failures"] == 1  # `info` counts the failure
    only_bad = tmp_path / "only-bad"
    only_bad.mkdir()
    (only_bad / "bad.flac").write_bytes(b"\x00" * 100)
    proc = run_cli("index", only_bad, "--store", tmp_path / "s2", "--model", "features", *fast)
    assert proc.returncode == 1 and "none of the 1 files could be indexed" in proc.stderr


def test_bad_input_corpus(tmp_path: Path) -> None:
    """Every case is indexed correctly or recorded as a failure with a reason; the run completes."""
    from mutagen.flac import FLAC

    lib = tmp_path / "lib"
    lib.mkdir()
    expect_ok: dict[str, str] = {}
    expect_fail: dict[str, str] = {}
    (lib / "zero.mp3").write_bytes(b"")
    expect_fail["zero.mp3"] = "decode"
    good_mp3 = lib / "good.mp3"
    t = np.arange(SR * 3) / SR
    sf.write(good_mp3, (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), SR, format="MP3")
    expect_ok["good.mp3"] = ""
    (lib / "truncated.mp3").write_bytes(good_mp3.read_bytes()[:400])
    (lib / "text.mp3").write_text("hello\n" * 100)
    expect_fail["text.mp3"] = "decode"
    _tone(lib / "short.wav", 0.2, 440)
    expect_ok["short.wav"] = ""
    sf.write(lib / "silence.flac", np.zeros(SR * 600, np.float32), SR)  # 10 minutes of digital silence
    expect_ok["silence.flac"] = ""
    _tone(lib / "eight.wav", 1.0, 300, channels=8)
    expect_ok["eight.wav"] = ""
    _tone(lib / "hires.flac", 1.0, 500, sr=96_000, subtype="PCM_24")
    expect_ok["hires.flac"] = ""
    _tone(lib / "phone.wav", 1.0, 400, sr=8_000)
    expect_ok["phone.wav"] = ""
    tagged = _tone(lib / "tags.flac", 1.0, 600)
    f = FLAC(tagged)
    f["title"] = ["🎵 Ω ‏שלום עולם‎"]
    f["artist"] = ["مرحبا"]
    f["comment"] = ["x" * 10_000]
    f["album"] = ["a" * 10_000]
    f.save()
    expect_ok["tags.flac"] = ""
    os.symlink(lib / "nowhere.flac", lib / "broken-link.flac")  # broken symlink: skipped by the scan
    os.symlink(lib / "loop-b.flac", lib / "loop-a.flac")
    os.symlink(lib / "loop-a.flac", lib / "loop-b.flac")  # a symlink loop: skipped too
    (lib / "folder.mp3").mkdir()  # a folder named like a file
    _tone(lib / "folder.mp3" / "inside.wav", 1.0, 700)
    expect_ok["inside.wav"] = ""
    plain = _tone(lib / "plain.wav", 1.0, 900)
    os.rename(os.fsencode(plain), os.path.join(os.fsencode(lib), b"latin1-\xe9t\xe9.wav"))  # not UTF-8
    doomed = _tone(lib / "zz-deleted-during-run.wav", 1.0, 800)

    def delete_later(done: int, *_: object) -> None:
        if done == 1 and doomed.exists():
            doomed.unlink()  # deleted between the scan and its decode

    report = index_library([lib], tmp_path / "store", FeaturesEmbedder(), workers=1, progress=delete_later)
    failures = {Path(f["path"]).name: f for f in report.failures}
    assert set(failures) >= set(expect_fail)
    assert "truncated.mp3" in failures or report.added >= len(expect_ok) + 1
    assert "zz-deleted-during-run.wav" in failures
    for name, stage in expect_fail.items():
        assert failures[name]["stage"] == stage and failures[name]["error"]
    assert failures["zero.mp3"]["error"] == "the file is empty (0 bytes)"
    with Store.open(tmp_path / "store") as s:
        stored = {Path(p).name: p for p in s.tracks(columns=("path",))["path"]}
        assert set(expect_ok) <= set(stored)
        assert any(name.startswith("latin1-") for name in stored)
        assert not {"broken-link.flac", "loop-a.flac", "loop-b.flac"} & set(stored)
        row = s.tracks([s.track_id_for_path(stored["tags.flac"])]).iloc[0]
        assert row["title"] == "🎵 Ω ‏שלום עולם‎" and len(row["album"]) == 10_000
        silence = s.track_id_for_path(stored["silence.flac"])
        assert abs(s.track(silence)["duration"] - 600) < 1
        _, vectors = s.vectors()
        assert np.all(np.isfinite(vectors))
        assert s.count("failures") == len(report.failures)


def test_metadata_csv_and_category_sources(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    _tone(lib / "blues" / "blues.00000.wav", 1.0, 220)
    _tone(lib / "blues" / "take two.wav", 1.0, 330)
    _tone(lib / "Rock" / "Band - Song.flac", 1.0, 440)
    meta = tmp_path / "labels.csv"
    meta.write_text("path,genre,mood,year,title\n"
                    f"lib/blues/take two.wav,Delta Blues,sad,1936,Cross Road\n"
                    f"{lib / 'Rock' / 'Band - Song.flac'},Hard Rock,angry,nineteen,\n", encoding="utf-8")
    store = tmp_path / "s-tag"
    index_library([lib], store, FeaturesEmbedder(), metadata=meta, tags=False)
    with Store.open(store) as s:
        rows = {Path(r.path).name: r for r in s.tracks().itertuples()}
        assert rows["blues.00000.wav"].genre == "blues"  # GTZAN fallback
        assert pd.isna(rows["take two.wav"].genre)  # genre comes from the tags (none here), not the CSV
        assert rows["take two.wav"].title == "Cross Road" and rows["take two.wav"].year == 1936
        assert json.loads(rows["take two.wav"].extra) == {"mood": "sad"}
        assert pd.isna(rows["Band - Song.flac"].year)  # "nineteen" is not a number: ignored, not fatal
        mood = s.sql("SELECT count(*) FROM tracks WHERE json_extract_string(extra, '$.mood') = 'angry'")
        assert mood.rows == [(1,)]
    index_library([lib], tmp_path / "s-csv", FeaturesEmbedder(), metadata=meta, category_from="csv", tags=False)
    with Store.open(tmp_path / "s-csv") as s:
        genres = dict(s.sql("SELECT regexp_extract(path, '[^/]+$'), genre FROM tracks").rows)
        assert genres == {"blues.00000.wav": None, "take two.wav": "Delta Blues", "Band - Song.flac": "Hard Rock"}
    index_library([lib], tmp_path / "s-folder", FeaturesEmbedder(), category_from="folder", tags=False)
    with Store.open(tmp_path / "s-folder") as s:
        assert sorted(r[0] for r in s.sql("SELECT genre FROM tracks").rows) == ["Rock", "blues", "blues"]
    for bad, message in ((["--metadata", str(tmp_path / "nope.csv")], "no such file"),
                         (["--category-from", "csv"], "needs --metadata")):
        # --quiet: no plan: it times the model first, 1.5-4 s a run here
        # (the plan's tests: test_speed_settings.py)
        proc = run_cli("index", lib, "--store", tmp_path / "s-bad", "--model", "features", "--quiet", *bad)
        assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "nopath.csv").write_text("file,genre\nx,y\n")
    proc = run_cli("index", lib, "--store", tmp_path / "s-bad", "--model", "features", "--quiet",
                   "--metadata", tmp_path / "nopath.csv")
    assert proc.returncode == 1 and "'path' column" in proc.stderr


def _without_root_powers() -> list[str]:
    """A command prefix under which permissions apply: as root, drop the capabilities that bypass
    them (setpriv, util-linux); as anyone else, nothing."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: file permissions cannot be enforced")
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search"]


@pytest.mark.subprocess
def test_unreadable_file_and_folder_are_failures_not_crashes(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    _tone(lib / "good.wav", 1.0, 440)
    locked = _tone(lib / "locked.flac", 1.0, 550)
    _tone(lib / "private" / "hidden.wav", 1.0, 660)
    locked.chmod(0)
    (lib / "private").chmod(0)
    try:
        proc = subprocess.run([*_without_root_powers(), *MUSICMAP, "index", str(lib), "--store", str(tmp_path / "s"),
                               "--model", "features", "--workers", "1", "--json"],
                              capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    finally:
        locked.chmod(0o644)
        (lib / "private").chmod(0o755)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    report = json.loads(proc.stdout)
    failures = {Path(f["path"]).name: f for f in report["failures"]}
    assert report["added"] == 1
    assert "Permission denied" in failures["locked.flac"]["error"]
    assert "Permission denied" in failures["private"]["error"]  # the folder that could not be listed
    with Store.open(tmp_path / "s") as s:
        assert s.count("failures") == 2
    # Readable again: the next run indexes both and forgets both failures.
    proc = run_cli("index", lib, "--store", tmp_path / "s", "--model", "features", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["added"] == 2
    with Store.open(tmp_path / "s") as s:
        assert s.count("failures") == 0 and s.count("tracks") == 3


def _stderr_on_a_terminal(*args: str | Path) -> str:
    """Run the CLI with stderr on a pseudo-terminal (as in a shell) and return what it wrote there."""
    import pty

    leader, follower = pty.openpty()
    proc = subprocess.Popen([*MUSICMAP, *map(str, args)], stdout=subprocess.DEVNULL, stderr=follower,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=120)
    os.close(leader)
    return out.decode("utf-8", "replace")


@pytest.mark.subprocess
def test_progress_on_a_terminal_only(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    for i in range(6):
        _tone(lib / f"t{i}.wav", 2.0, 300 + 40 * i)
    shown = _stderr_on_a_terminal("index", lib, "--store", tmp_path / "s1", "--model", "features", "--workers", "1")
    assert re.search(r"files 6/6 +[\d.]+/s +[\d.]+ audio-h/s +ETA 0:00:00", shown), shown
    quiet = _stderr_on_a_terminal("index", lib, "--store", tmp_path / "s2", "--model", "features", "--quiet")
    assert "files 6/6" not in quiet and "ETA" not in quiet
    piped = run_cli("index", lib, "--store", tmp_path / "s3", "--model", "features")  # stderr is a pipe: no bar
    assert piped.returncode == 0 and "ETA" not in piped.stderr
