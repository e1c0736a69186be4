"""The full default demo as `make demo` runs it: Debian's game soundtracks, MusiCNN, the map.
Slow (about 120 tracks and 4 hours of music): `make test-slow`."""

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
    assert proc.stderr.count("credits: ") == 6 and "MusiCNN" in proc.stderr
    info = json.loads(run_cli("info", "--store", store_dir, "--json", check=True).stdout)
    assert info["tracks"] == info["embeddings"] >= 100 and info["failures"] == 0
    assert info["model"]["kind"] == "musicnn"
    with Store.open(store_dir) as store:
        source = dict(store.sql("SELECT id, json_extract_string(extra, '$.source') FROM tracks").rows)
        share = np.mean([np.mean([source[n.track_id] == s for n in store.similar(int(i), 10)])
                         for i, s in source.items()])
    assert len(set(source.values())) == 6 and share >= 0.5
    again = run_cli("demo", "--store", store_dir, "--no-serve", timeout=1800)
    assert again.returncode == 0 and "reusing the real music" in again.stderr  # nothing downloaded
