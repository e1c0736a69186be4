"""The first run as a newcomer sees it: `musicmap demo` prints only musicmap's own lines (issue #17).

Decoders (libmpg123), FAISS and Python libraries print to the process's stderr in their own words;
a newcomer reads those as errors. The demo's stderr must hold only lines musicmap wrote itself.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

OWN_LINES = [
    r"demo library: .*",
    r"wrote \d+ demo tracks under .*",
    r"notice: .*",
    r"\d+ files: \d+ unchanged, \d+ moved, \d+ to index",
    r"FAISS index built: .*",
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


def test_the_demo_prints_only_musicmaps_own_lines(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS",)}  # what a user has
    env["HF_HUB_OFFLINE"] = "1"
    # The console script, as a user runs it (``python -m`` would put the working folder, which
    # holds a folder named "store", on sys.path).
    musicmap = Path(sys.executable).with_name("musicmap")
    proc = subprocess.run([str(musicmap), "demo", "--tracks", "24", "--no-serve", "--synthetic",
                           "--store", str(tmp_path / "store"), "--library", str(tmp_path / "library")],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines, "the demo says what it does"
    foreign = [line for line in lines if not any(re.fullmatch(p, line) for p in OWN_LINES)]
    assert not foreign, "\n".join(foreign)
    # the notice names MAEST's absence in musicmap's words, and nothing says "error"
    assert not [line for line in lines if FOREIGN.search(line) and not line.startswith("notice: ")]
    assert (tmp_path / "tsne_plot.png").is_file() or (tmp_path / "store").is_dir()
