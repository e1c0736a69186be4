"""The full default demo (240 tracks, 20–90 s each), as `make demo` runs it. Slow: `make test-slow`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from store import Store
from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def test_default_demo_end_to_end(tmp_path: Path) -> None:
    store_dir = tmp_path / "musicmap-demo" / "store"
    proc = run_cli("demo", "--store", store_dir, "--no-serve", timeout=1800)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(run_cli("info", "--store", store_dir, "--json", check=True).stdout)
    assert info["tracks"] == info["embeddings"] == 240 and info["failures"] == 0
    library = tmp_path / "musicmap-demo" / "library"
    truth = {str((library / line.split(",")[0]).resolve()): line.split(",")[1]
             for line in (library / "tracks.csv").read_text(encoding="utf-8").splitlines()[1:]}
    with Store.open(store_dir) as store:
        rows = store.tracks(columns=("id", "path"))
        style = {int(r.id): truth[r.path] for r in rows.itertuples()}
        share = np.mean([np.mean([style[n.track_id] == s for n in store.similar(i, 10)])
                         for i, s in style.items()])
    assert share >= 0.6
