"""``index --background`` and ``--cores``: the run confines itself (affinity, threads, priorities)
before the model loads, so the plan is timed as the run will go; both are recorded with the run.
What a process does to itself is checked in processes of their own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from indexer.cpu import available_cores, parse_cores
from store import Store
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[2]
SR = 22_050


def _library(root: Path, n: int = 3) -> Path:
    root.mkdir(parents=True)
    t = np.arange(SR * 2) / SR
    for i in range(n):
        y = (0.3 * np.sin(2 * np.pi * (220 + 110 * i) * t)).astype(np.float32)
        sf.write(root / f"Nobody - tone {i}.flac", y, SR)
    return root


def test_cores_as_a_number_or_a_share_and_what_is_refused() -> None:
    assert parse_cores("1", 4) == 1 and parse_cores("4", 4) == 4
    assert parse_cores("50%", 4) == 2 and parse_cores("10%", 4) == 1 and parse_cores("100%", 3) == 3
    for bad, said in (("0", "give 1 to 4"), ("5", "give 1 to 4"), ("-1", "give 1 to 4"), ("two", "a share such as"),
                      ("0%", "a share such as"), ("120%", "a share such as"), ("", "a share such as")):
        with pytest.raises(ValueError, match=said):
            parse_cores(bad, 4)


def test_bad_cores_is_one_line_and_nothing_is_written(tmp_path: Path) -> None:
    lib = _library(tmp_path / "lib")
    too_many = str(available_cores() + 1)
    for value in ("0", too_many, "lots"):
        proc = run_cli("index", lib, "--store", tmp_path / "store", "--model", "features", "--cores", value)
        assert proc.returncode == 1 and f"--cores {value}:" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("index", lib, "--store", tmp_path / "store", "--model", "features", "--engine", "ray",
                   "--background")
    assert proc.returncode == 1 and "for the local engine" in proc.stderr
    assert not (tmp_path / "store").exists()


QUIET = textwrap.dedent("""
    import ctypes, json, os, platform
    import torch
    from indexer.cpu import run_quietly
    q = run_quietly(cores=1, background=True)
    libc = ctypes.CDLL(None, use_errno=True)
    get = {"x86_64": 252, "aarch64": 31}.get(platform.machine())
    ioprio = int(libc.syscall(get, 1, 0)) if get else None
    child = os.popen("python3 -c 'import os; print(os.nice(0), len(os.sched_getaffinity(0)))'").read().split()
    print(json.dumps({"quiet": q.to_dict(), "nice": os.nice(0), "affinity": len(os.sched_getaffinity(0)),
                      "threads": torch.get_num_threads(), "ioprio_class": None if ioprio is None else ioprio >> 13,
                      "child": child, "omp": os.environ.get("OMP_NUM_THREADS")}))
""")


@pytest.mark.subprocess
def test_a_background_process_confines_itself_and_its_children() -> None:
    proc = subprocess.run([sys.executable, "-c", QUIET], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["nice"] == 19 and got["quiet"]["nice"] == 19 and got["quiet"]["background"] is True
    assert got["affinity"] == 1 and got["threads"] == 1 and got["omp"] == "1" and got["quiet"]["cores"] == 1
    assert got["child"] == ["19", "1"]  # a process it starts inherits the priority and the cores
    if got["ioprio_class"] is not None:
        assert got["quiet"]["io_idle"] is True and got["ioprio_class"] == 3  # IOPRIO_CLASS_IDLE


@pytest.mark.subprocess
def test_index_in_the_background_plans_for_it_and_records_it(tmp_path: Path) -> None:
    lib, store = _library(tmp_path / "lib"), tmp_path / "store"
    proc = run_cli("index", lib, "--store", store, "--model", "features", "--background", "--cores", "1", "--plan",
                   "--json", process=True)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)["plan"]
    assert plan["sharing"].startswith(f"1 of {available_cores()} cores, lowest CPU priority (nice 19)")
    assert plan["decode_workers"] == 1
    proc = run_cli("index", lib, "--store", store, "--model", "features", "--background", "--no-tags", "--no-map",
                   process=True)
    assert proc.returncode == 0, proc.stderr
    assert "timed on 1 of" in proc.stderr or "indexing on 1 of" in proc.stderr
    with Store.open(store) as opened:
        assert opened.count("tracks") == 3
        (settings,) = [json.loads(r[0]) for r in opened.sql("SELECT settings FROM runs").rows]
    assert settings["background"] is True and settings["nice"] == 19
    assert settings["cores"] == max(1, available_cores() // 2)
    info = run_cli("info", "--store", store, check=True).stdout
    assert "in the background" in info
