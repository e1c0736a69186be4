"""SIGKILL during `musicmap index`: the store opens, DuckDB and FAISS agree, nothing is duplicated
or half-written, and the next run completes the library."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from store import Store
from tests.conftest import MUSICMAP, run_cli

N_FILES = 240
PARTIAL: list[int] = []  # tracks found after each kill: some must be mid-run (0 < n < N_FILES)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lib = tmp_path_factory.mktemp("crash") / "lib"
    lib.mkdir()
    rng = np.random.default_rng(0)
    for i in range(N_FILES):
        t = np.arange(16_000 * 2) / 16_000
        y = 0.3 * np.sin(2 * np.pi * (100 + 37 * i) * t) + 0.02 * rng.standard_normal(len(t))
        sf.write(lib / f"Artist {i % 7} - Track {i:03d}.flac", y.astype(np.float32), 16_000)
    return lib


def _check_consistent(store_dir: Path) -> int:
    with Store.open(store_dir) as store:
        tracks = store.count("tracks")
        assert store.count("embeddings") == tracks  # no track without its vector, or the reverse
        dupes = store.sql("SELECT path, count(*) FROM tracks GROUP BY path HAVING count(*) > 1").rows
        assert dupes == []
        orphans = store.sql("SELECT count(*) FROM embeddings e ANTI JOIN tracks t ON t.id = e.track_id").rows
        assert orphans == [(0,)]
        assert store.index.ntotal == tracks  # FAISS (loaded or rebuilt) matches DuckDB
        if tracks >= 2:  # the (possibly rebuilt) index answers queries with stored ids
            k = min(3, tracks - 1)
            ids = set(store.vectors()[0].tolist())
            found = store.similar(int(min(ids)), k=k)
            assert len(found) == k and {n.track_id for n in found} <= ids
        return tracks


@pytest.mark.parametrize("delay", [2.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 12.0])
def test_sigkill_at_any_moment_leaves_a_store_that_opens_and_resumes(library: Path, tmp_path: Path,
                                                                      delay: float) -> None:
    store_dir = tmp_path / "store"
    cmd = [*MUSICMAP, "index", str(library), "--store", str(store_dir), "--model", "features",
           "--workers", "2", "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(delay)
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its decode workers, mid-run
    proc.wait(timeout=30)
    if (store_dir / "manifest.json").exists():
        PARTIAL.append(_check_consistent(store_dir))
    proc2 = run_cli("index", library, "--store", store_dir, "--model", "features", "--workers", "2", "--json")
    assert proc2.returncode == 0, proc2.stderr
    assert _check_consistent(store_dir) == N_FILES


def test_some_kills_landed_mid_run() -> None:
    """Guards the test above: it is only meaningful if some kills hit between two commits."""
    assert any(0 < n < N_FILES for n in PARTIAL), PARTIAL


def test_faiss_file_truncated_is_rebuilt(library: Path, tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    run_cli("index", library, "--store", store_dir, "--model", "features", check=True)
    faiss_file = store_dir / "vectors.faiss"
    faiss_file.write_bytes(faiss_file.read_bytes()[: faiss_file.stat().st_size // 2])
    assert _check_consistent(store_dir) == N_FILES
    proc = run_cli("similar", "1", "--store", store_dir, "--json")
    assert proc.returncode == 0, proc.stderr


def test_corrupt_duckdb_gives_a_clear_error(library: Path, tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    run_cli("index", library, "--store", store_dir, "--model", "features", check=True)
    db = store_dir / "library.duckdb"
    data = bytearray(db.read_bytes())
    data[:4096] = os.urandom(4096)  # the header is gone
    db.write_bytes(bytes(data))
    for args in (("info",), ("sql", "SELECT 1")):
        proc = run_cli(*args, "--store", store_dir)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert "cannot open" in proc.stderr
    proc = run_cli("index", library, "--store", store_dir, "--model", "features")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "cannot open" in proc.stderr


if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip("process groups and SIGKILL as on Linux")


def test_ctrl_c_stops_cleanly_and_keeps_what_is_done(library: Path, tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    # --no-map: this is about Ctrl-C during the files. -v: the first "saved N tracks" line is the moment to press
    # Ctrl-C (a fixed delay raced a fast machine, which finished all files first).
    cmd = [*MUSICMAP, "index", str(library), "--store", str(store_dir), "--model", "features", "--workers", "2",
           "--no-map", "-v"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stderr is not None
    lines: list[str] = []
    for line in proc.stderr:
        lines.append(line)
        if "pipeline: saved " in line:
            os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
            break
    out, rest = proc.communicate(timeout=60)
    err = "".join(lines) + rest
    assert any("pipeline: saved " in line for line in lines), err
    assert proc.returncode == 130, err
    assert "interrupted; the tracks finished so far are saved" in err and "Traceback" not in err
    assert out.startswith("interrupted after 240 files"), out
    done = _check_consistent(store_dir)
    with Store.open(store_dir) as store:
        assert store.sql("SELECT status FROM runs ORDER BY id DESC LIMIT 1").rows == [("interrupted",)]
    proc2 = run_cli("index", library, "--store", store_dir, "--model", "features", "--json")
    assert proc2.returncode == 0 and json.loads(proc2.stdout)["unchanged"] == done
    assert _check_consistent(store_dir) == N_FILES
