"""Opt-in: real recordings from Debian's game-music packages, end to end (`make test-real`).

Fetches `drascula-music` (31 Ogg Vorbis tracks, 36 MB; free licence, see its copyright file) with
`apt-get download`, unpacks it with `dpkg -x`, then indexes, maps, queries and exports it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.realmusic
PACKAGE = "drascula-music"


@pytest.fixture(scope="module")
def real_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (shutil.which("apt-get") and shutil.which("dpkg")):
        pytest.skip("needs Debian's apt-get and dpkg")
    work = tmp_path_factory.mktemp("real")
    subprocess.run(["apt-get", "download", PACKAGE], cwd=work, check=True, capture_output=True, timeout=300)
    deb = next(work.glob(f"{PACKAGE}_*.deb"))
    subprocess.run(["dpkg", "-x", str(deb), str(work / "root")], check=True, timeout=300)
    return work / "root"


def test_real_recordings_end_to_end(real_library: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    proc = run_cli("index", real_library, "--store", store, "--model", "features", "--json", timeout=900)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["added"] == 31 and report["failed"] == 0
    assert report["audio_seconds"] > 31 * 5
    run_cli("map", "--store", store, check=True)
    similar = json.loads(run_cli("similar", "1", "--store", store, "--json", check=True).stdout)
    assert len(similar["results"]) == 10
    run_cli("export", "--store", store, "--embeddings", tmp_path / "e.csv", "--plot", tmp_path / "p.png", check=True)
    assert (tmp_path / "p.png").stat().st_size > 10_000
