"""A model-based test of the whole indexing life cycle (issue #18's safety net).

Hypothesis drives random sequences of what happens to a real library — files added, modified,
moved, renamed, deleted, corrupted; ``index`` with and without ``--prune``; ``tag --write`` and
``--undo``; ``map``; an index run killed at a random commit — and after every step checks the store
on disk against a plain model of what it must hold:

- the tracks, by path (and by content: a moved file keeps its track, an edited one is embedded again);
- one vector per track, and the FAISS index holding exactly the tracks' ids;
- a map point for every track and no other;
- the failures table naming exactly the unreadable files;
- and after an uninterrupted run, its report's counts (added, updated, moved, failed, unchanged:
  files whose tags musicmap wrote are not embedded again).

Everything is real: files written by libsndfile, the ``features`` embedder, DuckDB, FAISS, the
``musicmap`` command for the killed runs. ``make test`` runs a few hundred steps; ``make test-slow``
thousands. A failure prints the shrunk sequence of steps: keep it as a regression test.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections import Counter
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from indexer.embedders import FeaturesEmbedder
from indexer.errors import IndexerError
from indexer.pipeline import index_library
from indexer.projection import compute_map
from store import Store
from tests.audio import write_tone
from tests.conftest import MUSICMAP, run_cli

SR = 8_000
MAX_FILES = 10
FILE = st.integers(0, 2 * MAX_FILES)
"""Which file a step acts on (modulo how many there are)."""


def _sha(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


class LibraryLifeCycle(RuleBasedStateMachine):
    """The model: ``stored`` (path → the bytes' hash the store last saw: at an index run, a tag
    write or an undo) and ``failed`` (paths). The library itself is the real folder."""

    embedder = FeaturesEmbedder()
    seen: ClassVar[Counter[str]] = Counter()
    """What the runs exercised (a test that never kills a run or moves a file would prove little)."""

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="musicmap-model-"))
        self.lib = self.root / "lib"
        self.lib.mkdir()
        self.store = self.root / "store"
        self.counter = 0
        self.stored: dict[str, str] = {}
        self.failed: set[str] = set()
        self.has_map = False
        self.corrupt: set[str] = set()
        """Files that cannot be decoded (garbage bytes)."""

    def teardown(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    # -- the library ---------------------------------------------------------------------------

    def _fresh(self, folder: str = "") -> Path:
        self.counter += 1
        return self.lib / folder / f"Artist {self.counter % 3} - Track {self.counter:03d}.flac"

    def _write_tone(self, path: Path) -> None:
        self.counter += 1
        write_tone(path, 1.0, 90 + 23 * self.counter, sr=SR, noise=0.05, seed=self.counter)
        self._touch(path)

    def _touch(self, path: Path) -> None:
        """A new modification time, as an editor gives (two writes within a clock tick would
        otherwise look unchanged: size and mtime are the fast path's test)."""
        self.counter += 1
        ns = 1_700_000_000_000_000_000 + self.counter * 1_000_000_000
        os.utime(path, ns=(ns, ns))

    def files(self) -> list[Path]:
        return sorted(p for p in self.lib.rglob("*.flac") if p.is_file())

    @initialize(n=st.integers(1, 4))
    def start(self, n: int) -> None:
        for _ in range(n):
            self._write_tone(self._fresh())

    @precondition(lambda self: len(self.files()) < MAX_FILES)
    @rule(folder=st.sampled_from(["", "sub", "sub/deeper"]))
    def add(self, folder: str) -> None:
        self._write_tone(self._fresh(folder))

    def _pick(self, i: int) -> Path:
        files = self.files()
        return files[i % len(files)]

    @precondition(lambda self: self.files())
    @rule(i=FILE)
    def modify(self, i: int) -> None:
        path = self._pick(i)
        self._write_tone(path)
        self.corrupt.discard(str(path))

    @precondition(lambda self: self.files())
    @rule(picks=st.lists(FILE, min_size=1, max_size=3), folder=st.sampled_from(["", "moved", "sub"]))
    def move(self, picks: list[int], folder: str) -> None:
        """Some files moved to another folder, or renamed in place (folder ""): same bytes, new path."""
        for path in dict.fromkeys(self._pick(i) for i in picks):
            target = self._fresh(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(path, target)
            if str(path) in self.corrupt:
                self.corrupt.discard(str(path))
                self.corrupt.add(str(target))

    @precondition(lambda self: self.files())
    @rule(i=FILE)
    def delete(self, i: int) -> None:
        path = self._pick(i)
        path.unlink()
        self.corrupt.discard(str(path))

    @precondition(lambda self: self.files())
    @rule(i=FILE, kind=st.sampled_from(["garbage", "truncated", "empty"]))
    def corrupt_file(self, i: int, kind: str) -> None:
        path = self._pick(i)
        self.counter += 1
        if kind == "garbage":
            path.write_bytes(np.random.default_rng(self.counter).bytes(3000))
        elif kind == "truncated":
            path.write_bytes(path.read_bytes()[:40])
        else:
            path.write_bytes(b"")
        self._touch(path)
        self.corrupt.add(str(path))

    # -- musicmap ------------------------------------------------------------------------------

    def _expect_index(self, prune: bool) -> dict[str, int]:
        """Update the model as an index run must, and return the counts its report must give."""
        present = {str(p): p for p in self.files()}
        gone = {p: h for p, h in self.stored.items() if p not in present}
        counts = {"added": 0, "updated": 0, "moved": 0, "failed": 0, "unchanged": 0, "pruned": 0}
        hashes = {p: _sha(f) for p, f in present.items()}
        by_hash = {h: p for p, h in gone.items()}
        for path in sorted(present):
            if path in self.corrupt:
                counts["failed"] += 1
                continue
            if self.stored.get(path) == hashes[path]:
                counts["unchanged"] += 1
            elif path not in self.stored and hashes[path] in by_hash:
                old = by_hash.pop(hashes[path])
                del self.stored[old], gone[old]
                self.stored[path] = hashes[path]
                counts["moved"] += 1
            else:
                counts["updated" if path in self.stored else "added"] += 1
                self.stored[path] = hashes[path]
        if prune:
            counts["pruned"] = len(gone)
            for path in gone:
                del self.stored[path]
        self.seen.update({k: v for k, v in counts.items() if v})
        self.failed = {p for p in present if p in self.corrupt}
        return counts

    @rule(prune=st.booleans())
    def index(self, prune: bool) -> None:
        if not self.files():  # a folder with no audio is refused; the store is left as it was
            with pytest.raises(IndexerError, match="no audio"):
                index_library([self.lib], self.store, self.embedder, workers=1, prune=prune, map_name="tsne",
                              tags=False)
            return
        expected = self._expect_index(prune)
        report = index_library([self.lib], self.store, self.embedder, workers=1, prune=prune, map_name="tsne",
                               tags=False)
        self.has_map = self.has_map or bool(self.stored)
        got = {"added": report.added, "updated": report.updated, "moved": report.moved, "failed": report.failed,
               "unchanged": report.unchanged, "pruned": report.pruned}
        assert got == expected

    @precondition(lambda self: (self.store / "manifest.json").exists())
    @rule()
    def refit_map(self) -> None:
        with Store.open_for_indexing(self.store, self.embedder.info) as store:
            compute_map(store)
        self.has_map = True

    @precondition(lambda self: self.has_map and self.stored)
    @rule()
    def tag_write(self) -> None:
        before = {str(p): _sha(p) for p in self.files()}
        # run_cli, not cli.main: it undoes the CLI's logging set-up (root at INFO, a stderr handler),
        # which otherwise leaks into every later test of the process
        code = run_cli("tag", "--store", self.store, "--write", "cluster", "--json").returncode
        assert code in (0, 3)  # 3: some files could not be written (corrupt, gone or edited): listed
        self.seen["tag written"] += self._resync_written(before)

    @precondition(lambda self: (self.store / "tag-backups").is_dir())
    @rule()
    def tag_undo(self) -> None:
        before = {str(p): _sha(p) for p in self.files()}
        # "nothing to undo" (every backup undone) is a user error: 1
        code = run_cli("tag", "--store", self.store, "--undo", "--json").returncode
        assert code in (0, 1, 3)
        self.seen["tag undone"] += self._resync_written(before)

    def _resync_written(self, before: dict[str, str]) -> int:
        """Files musicmap itself rewrote (how many): the store was told their new sizes and times."""
        rewritten = 0
        for path, old in before.items():
            new = _sha(Path(path))
            if new != old:
                assert path in self.stored and self.stored[path] == old, f"{path} rewritten, not a clean track"
                self.stored[path] = new
                rewritten += 1
        return rewritten

    @precondition(lambda self: self.files())
    @rule(commit=st.integers(1, 6), prune=st.booleans())
    def index_killed(self, commit: int, prune: bool) -> None:
        """``musicmap index`` kills itself at its ``commit``-th DuckDB commit; a second run resumes.
        The killed run's report is lost with it, so only the store is checked afterwards."""
        cmd = [*MUSICMAP, "index", str(self.lib), "--store", str(self.store), "--model", "features", "--no-tags",
               "--workers", "1", "-q", *(["--prune"] if prune else [])]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "MUSICMAP_CRASH_AT": f"duckdb-commit:{commit}"})
        # 3: done, some files failed; 1: none could be indexed (every file is corrupt)
        all_corrupt = {str(p) for p in self.files()} <= self.corrupt
        assert proc.returncode in (0, 3, -9) or (proc.returncode == 1 and all_corrupt), proc.stderr
        if proc.returncode == -9:
            self.seen["killed"] += 1
            if (self.store / "manifest.json").exists():
                self.check_store()
        index_library([self.lib], self.store, self.embedder, workers=1, prune=prune, map_name="tsne",
                      tags=False)
        self._expect_index(prune)
        self.has_map = self.has_map or bool(self.stored)

    # -- what must hold after every step -------------------------------------------------------

    def check_store(self) -> None:
        """DuckDB and FAISS agree, one vector per track, no duplicate paths, the map holds only tracks."""
        with Store.open(self.store) as store:
            tracks = store.tracks(columns=("id", "path"))
            assert not tracks["path"].duplicated().any()
            ids = set(tracks["id"].astype(int))
            vector_ids, _ = store.vectors()
            assert sorted(vector_ids.tolist()) == sorted(ids)
            assert store.index.ntotal == len(ids)
            mapped = set(store.projection("tsne")["id"].astype(int))
            assert mapped <= ids
            raw = store.sql("SELECT count(*) FROM projections p ANTI JOIN tracks t ON t.id = p.track_id").rows
            assert raw == [(0,)], "map points of deleted tracks"

    @invariant()
    def store_matches_the_model(self) -> None:
        self.seen["steps"] += 1
        if not (self.store / "manifest.json").exists():
            assert not self.stored
            return
        self.check_store()
        with Store.open(self.store) as store:
            assert set(store.tracks(columns=("path",))["path"]) == set(self.stored)
            assert set(store.failures()["path"]) == self.failed
            if self.has_map and self.stored:
                assert set(store.projection("tsne")["id"].astype(int)) == set(store.tracks(columns=("id",))["id"])


def _run(examples: int, steps: int, *, derandomize: bool) -> Counter[str]:
    machine = LibraryLifeCycle
    machine.seen = Counter()
    machine.TestCase.settings = settings(max_examples=examples, stateful_step_count=steps, deadline=None,
                                         suppress_health_check=list(HealthCheck), derandomize=derandomize,
                                         database=None)
    machine.TestCase().runTest()
    return machine.seen


@pytest.mark.kills
def test_every_step_once() -> None:
    """Each kind of step at least once, in an order that makes it count (an indexed file moved,
    edited, corrupted, deleted; a tag write undone; a killed run), checked like the random runs."""
    m = LibraryLifeCycle()
    m.seen = Counter()
    try:
        steps = [lambda: m.start(n=4), lambda: m.add(folder="sub"), lambda: m.index(prune=False),
                 lambda: m.move(picks=[0, 2], folder="moved"), lambda: m.modify(i=1), lambda: m.add(folder=""),
                 lambda: m.corrupt_file(i=3, kind="garbage"), lambda: m.index(prune=False), lambda: m.delete(i=0),
                 lambda: m.index(prune=False), lambda: m.index(prune=True), lambda: m.refit_map(),
                 lambda: m.tag_write(), lambda: m.index(prune=False), lambda: m.tag_undo(), lambda: m.modify(i=2),
                 lambda: m.add(folder=""), lambda: m.index_killed(commit=2, prune=True), lambda: m.index(prune=False)]
        for step in steps:
            step()
            m.store_matches_the_model()
        for event in ("added", "updated", "moved", "unchanged", "failed", "pruned", "killed", "tag written",
                      "tag undone"):
            assert m.seen[event] > 0, f"no step exercised {event!r}: {dict(m.seen)}"
    finally:
        m.teardown()


@pytest.mark.kills
def test_library_life_cycle() -> None:
    """About 300 random steps (make test), the same sequences every run."""
    assert _run(examples=20, steps=15, derandomize=True)["steps"] >= 200


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_library_life_cycle_long() -> None:
    """About 3,000 steps (make test-slow), new sequences every run."""
    _run(examples=120, steps=25, derandomize=False)
