"""Does the time budget hold? ``musicmap index`` says before the work how long it will take (issue
#21); this runs it on the demo's real music and compares.

For each model (MusiCNN, and a full-size MAEST with random weights saved by ``save_pretrained``,
default and ``--fast``): ``index --plan --json`` gives the estimate; then the real ``index`` runs
under a pseudo-terminal so its progress line (with the ETA) is drawn, and every progress line is
kept with its time. Reported: the estimate, the actual time, their ratio, and for the progress
line, elapsed + ETA against the actual time at 10 %, 25 %, 50 % and 75 % of the run.

    python benchmarks/bench_plan.py [--models musicnn-mtt,maest,maest-fast] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _report import save

ROOT = Path(__file__).resolve().parents[1]
WORK = Path(__file__).resolve().parent / "work"
ETA = re.compile(r"(\d+)/(\d+) .*ETA (\d+):(\d\d):(\d\d)")


def _music() -> Path:
    from data.debian_music import DEMO_SOURCES, fetch

    fetch(WORK / "debian-music", DEMO_SOURCES)
    return WORK / "debian-music"


def _maest_folder() -> Path:
    folder = WORK / "maest-random-30s"
    if not (folder / "config.json").is_file():
        from bench_maest import build_model

        build_model(1876, "sdpa").save_pretrained(folder)
    return folder


def _run_with_pty(cmd: list[str]) -> tuple[int, float, list[tuple[float, str]]]:
    """Run ``cmd`` with stderr on a pseudo-terminal; (exit code, seconds, [(time, progress line)])."""
    leader, follower = pty.openpty()
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=follower, stdin=subprocess.DEVNULL,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    os.close(follower)
    lines: list[tuple[float, str]] = []
    buffer = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            buffer += chunk
            *parts, buffer = re.split(rb"[\r\n]", buffer)
            now = time.monotonic() - started
            lines += [(now, p.decode("utf-8", "replace")) for p in parts if p.strip()]
        elif proc.poll() is not None:
            break
    code = proc.wait()
    os.close(leader)
    return code, time.monotonic() - started, lines


def measure(label: str, model: str, extra: list[str], library: Path) -> dict[str, Any]:
    musicmap = [sys.executable, "-m", "musicmap.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        plan = json.loads(subprocess.run([*musicmap, "index", str(library), "--store", str(store), "--model", model,
                                          *extra, "--plan", "--json"], capture_output=True, text=True,
                                         check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}).stdout)["plan"]
        estimate = plan["estimates"][0]["seconds"]
        code, seconds, lines = _run_with_pty([*musicmap, "index", str(library), "--store", str(store), "--model",
                                              model, *extra, "--no-map"])
        shutil.rmtree(store, ignore_errors=True)
    assert code == 0, lines[-5:]
    started = next((t for t, line in lines if line.startswith("plan:")), 0.0)
    progress = []
    for t, line in lines:
        m = ETA.search(line)
        if m:
            done, total = int(m.group(1)), int(m.group(2))
            eta = int(m.group(3)) * 3600 + int(m.group(4)) * 60 + int(m.group(5))
            progress.append((t, done / total, eta))
    checkpoints = {}
    for share in (0.1, 0.25, 0.5, 0.75):
        point = next(((t, f, eta) for t, f, eta in progress if f >= share), None)
        if point is not None:
            t, f, eta = point
            checkpoints[f"{share:.0%}"] = {"at_s": round(t, 1), "done": round(f, 3), "eta_s": eta,
                                           "predicted_total_s": round(t + eta, 1),
                                           "ratio_to_actual": round((t + eta) / seconds, 3)}
    row = {"label": label, "model": model, "flags": extra, "plan": plan, "estimate_s": estimate,
           "actual_s": round(seconds, 1), "work_s": round(seconds - started, 1),
           "estimate_over_actual": round(estimate / seconds, 3), "progress": checkpoints}
    print(json.dumps(row, indent=1), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="musicnn-mtt,musicnn-mtt-fast,maest-fast")
    args = parser.parse_args()
    library = _music()
    runs = {"musicnn-mtt": ("musicnn-mtt", []), "musicnn-mtt-fast": ("musicnn-mtt", ["--fast"]),
            "maest": (None, []), "maest-fast": (None, ["--fast"])}
    rows = []
    for name in args.models.split(","):
        model, extra = runs[name]
        rows.append(measure(name, model or str(_maest_folder()), extra, library))
    save("plan", {"library": "the demo's real music (Debian game soundtracks)", "runs": rows})


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
