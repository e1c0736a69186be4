"""Readers and the indexer coexist: two real processes on one store (DuckDB allows one writer)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.audio import write_tone
from tests.conftest import MUSICMAP, run_cli, serving


def _library(root: Path, start: int, n: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        write_tone(root / f"Artist {i % 9} - Track {i:03d}.wav", 1.0, 100 + 7 * i, noise=0.01, seed=i)


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.mark.subprocess
def test_explorer_keeps_serving_while_an_index_run_writes(tmp_path: Path) -> None:
    lib, store = tmp_path / "lib", tmp_path / "store"
    _library(lib / "first", 0, 30)
    run_cli("index", lib, "--store", store, "--model", "features", "--workers", "1", check=True)
    run_cli("map", "--store", store, "--method", "pca", check=True)
    with serving(store) as base:
        assert len(_get(base + "/api/v1/similar/1?k=100")[1]["results"]) == 29
        assert "30 tracks" in json.dumps(_get(base + "/_dash-layout")[1])
        _library(lib / "second", 30, 70)
        index = subprocess.Popen([*MUSICMAP, "index", str(lib), "--store", str(store), "--model", "features",
                                  "--workers", "1", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
        seen: list[int] = []  # the highest track id the explorer could read, request after request
        errors: list[str] = []
        while index.poll() is None:
            newest = next((i for i in range(100, 30, -1) if _get(f"{base}/api/v1/tracks/{i}")[0] == 200), 30)
            seen.append(newest)
            status, body = _get(base + "/api/v1/similar/1?k=5")
            if status != 200 or len(body["results"]) != 5:
                errors.append(f"{status} {body}")
            time.sleep(0.05)
        out, err = index.communicate()
        assert index.returncode == 0, err
        assert json.loads(out)["added"] == 70 and "busy" not in err
        assert not errors, errors[:3]  # the explorer answered throughout the run
        assert seen == sorted(seen) and len(set(seen)) >= 2, seen  # it saw the run's batches land
        # After the run, without a restart: new tracks are readable and searchable (FAISS reloaded).
        assert _get(base + "/api/v1/tracks/100")[0] == 200
        assert len(_get(base + "/api/v1/similar/1?k=200")[1]["results"]) == 99
        # `musicmap map` (another writer) runs while the explorer serves; the next page load shows it.
        run_cli("map", "--store", store, "--method", "pca", check=True)
        time.sleep(2.2)
        assert "100 tracks" in json.dumps(_get(base + "/_dash-layout")[1])


@pytest.mark.subprocess
def test_a_second_writer_waits_then_says_busy(tmp_path: Path) -> None:
    """Two index runs on one store: the second waits for the file, then fails with a clear message
    if the first never lets go (a reader holding it open here, with a short wait)."""
    lib, store = tmp_path / "lib", tmp_path / "store"
    _library(lib, 0, 3)
    run_cli("index", lib, "--store", store, "--model", "features", check=True)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from store import Store\n"
        "s = Store.open(sys.argv[1])\n"  # not shared: holds the file until it exits
        "s.count('tracks')\n"
        "print('holding', flush=True)\n"
        "time.sleep(60)\n"), str(store)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        code = ("import sys\nfrom pathlib import Path\nfrom store import Store, StoreError\n"
                "from store.manifest import read_manifest\n"
                "try:\n    Store.open_for_indexing(sys.argv[1], read_manifest(Path(sys.argv[1])).model, wait=1.0)\n"
                "except StoreError as e:\n    print(type(e).__name__, e)\n")
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-c", code, str(store)], capture_output=True, text=True, timeout=60)
        assert "is busy" in proc.stdout and "waited 1 s" in proc.stdout, proc.stdout + proc.stderr
        assert proc.stdout.startswith("StoreUnavailable ")  # the API answers 503 for it, by type
        assert time.monotonic() - started >= 1.0
    finally:
        holder.kill()
        holder.wait()
    proc = run_cli("index", lib, "--store", store, "--model", "features")  # free again
    assert proc.returncode == 0, proc.stderr


@pytest.mark.subprocess
def test_busy_readers_let_a_waiting_writer_in_at_once(demo_store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Five threads read without pause (holds nested as in the explorer: a request, then the store's
    own reads); a writer in another process still gets the file within a second (its marker makes
    the readers let go between reads), and the readers carry on after it."""
    import shutil
    import threading

    from store import Store

    folder = tmp_path / "store"
    shutil.copytree(demo_store.store, folder)
    reader = Store.open(folder, shared=True)
    stop, reads, problems = threading.Event(), [0], []

    def read(i: int) -> None:
        while not stop.is_set():
            try:
                with reader.holding():
                    reader.similar(1 + i, 5)
                reads[0] += 1
            except Exception as exc:  # collected and asserted below
                problems.append(exc)

    threads = [threading.Thread(target=read, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        before = reads[0]
        assert before > 10  # the readers hold the file most of the time
        writer = subprocess.run([sys.executable, "-c", (
            "import sys, time\n"
            "from pathlib import Path\n"
            "from store import Store\n"
            "from store.manifest import read_manifest\n"
            f"folder = Path({str(folder)!r})\n"
            "started = time.monotonic()\n"
            "store = Store.open_for_indexing(folder, read_manifest(folder).model, wait=10)\n"
            "print(round(time.monotonic() - started, 3))\n"
            "store.close()\n")], capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2])
        assert writer.returncode == 0, writer.stderr
        assert float(writer.stdout.strip()) < 1.0, writer.stdout
        time.sleep(0.5)
        assert reads[0] > before  # and the readers went on
    finally:
        stop.set()
        for t in threads:
            t.join()
        reader.close()
    assert problems == [] and not (folder / ".writer-waiting").exists()
