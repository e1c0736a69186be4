"""The first run as a newcomer sees it: `musicmap demo` prints only musicmap's own lines (issue #17),
and leaves an indexed, mapped store and the original demo's two files.

Decoders (libmpg123), FAISS and Python libraries print to the process's stderr in their own words;
a newcomer reads those as errors. The demo's stderr must hold only lines musicmap wrote itself.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.subprocess

OWN_LINES = [
    r"demo library: .*",
    r"wrote \d+ demo tracks under .*",
    r"notice: .*",
    r"\d+ files: \d+ unchanged, \d+ moved, \d+ to index",
    r"FAISS index built: .*",
    r"tagging \d+ tracks with .*",
    r"wrote \d+ embeddings to .*",
    r"wrote .*\.png \(\d+ points\)",
    r"map: .*",
    r"t-SNE .*",
    r"plan: \d+ files to index \(\d+ unchanged\), [\d.]+ hours of audio",
    r"  these settings: .* → about .*",
    r"  --fast: .* → about .*",
]
"""Every line the demo may print on stderr (musicmap's own logging); anything else is foreign."""
FOREIGN = re.compile(r"libmpg123|\[src/|WARNING|Warning|warn\(|Traceback|nanobind|error", re.IGNORECASE)


@dataclass(frozen=True)
class FirstDemo:
    folder: Path
    proc: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def first_demo(tmp_path_factory: pytest.TempPathFactory) -> FirstDemo:
    """``musicmap demo`` run once, as a newcomer runs it: the console script, no options but a small
    synthetic library and no server; the tests below read what it printed and wrote."""
    folder = tmp_path_factory.mktemp("first-run")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS",)}  # what a user has
    env["HF_HUB_OFFLINE"] = "1"
    # The console script, as a user runs it (``python -m`` would put the working folder, which
    # holds a folder named "store", on sys.path).
    musicmap = Path(sys.executable).with_name("musicmap")
    proc = subprocess.run([str(musicmap), "demo", "--tracks", "24", "--no-serve", "--synthetic",
                           "--store", str(folder / "demo" / "store"), "--library", str(folder / "demo" / "library")],
                          capture_output=True, text=True, timeout=600, cwd=folder, env=env)
    return FirstDemo(folder, proc)


def test_the_demo_prints_only_musicmaps_own_lines(first_demo: FirstDemo) -> None:
    proc = first_demo.proc
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines, "the demo says what it does"
    foreign = [line for line in lines if not any(re.fullmatch(p, line) for p in OWN_LINES)]
    assert not foreign, "\n".join(foreign)
    # the notice names MAEST's absence in musicmap's words, and nothing says "error"
    assert not [line for line in lines if FOREIGN.search(line) and not line.startswith("notice: ")]


def test_the_demo_indexes_maps_and_exports_with_the_fallback_announced(first_demo: FirstDemo) -> None:
    proc, demo = first_demo.proc, first_demo.folder / "demo"
    assert proc.returncode == 0, proc.stderr
    assert "not MAEST" in proc.stderr or "NOT MAEST" in proc.stderr  # the fallback is announced
    assert (demo / "embeddings.csv").is_file() and (demo / "tsne_plot.png").is_file()
    info = json.loads(run_cli("info", "--store", demo / "store", "--json", check=True).stdout)
    assert info["tracks"] == 24 and info["projections"]
