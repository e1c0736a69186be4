"""Shared fixtures: a generated demo library and a real store built from it by the CLI's code."""

from __future__ import annotations

import io
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

# A hub lookup takes ~26 s to fail offline; tests never reach the hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from data.demo_library import DemoTrack, generate_demo_library

MUSICMAP = [sys.executable, "-m", "musicmap.cli"]
N_DEMO = 96  # 12 per style, so a track's top 10 can all share its style


@dataclass(frozen=True)
class DemoStore:
    library: Path
    store: Path
    tracks: list[DemoTrack]


def run_cli(*args: str | os.PathLike[str], check: bool = False, timeout: float = 300,
            env: dict[str, str] | None = None, process: bool | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real ``musicmap`` CLI (``musicmap.cli.main``) and return its exit code, stdout and stderr.

    In this process by default: the same parser, commands, logging set-up and error handling as the
    console script, without a Python start-up per call (about 1.5 s here). ``process=True`` runs it as
    ``python -m musicmap.cli`` in a subprocess: for what only a process shows (what C libraries and
    worker processes print on its stderr, signals, a kill). ``env`` (environment variables to add)
    implies a subprocess: libraries read the environment when they are imported.
    """
    if process or (process is None and env):
        proc = subprocess.run([*MUSICMAP, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})
    else:
        proc = _run_in_process([str(a) for a in args])
    if check and proc.returncode != 0:
        raise AssertionError(f"musicmap {args} exited {proc.returncode}\n{proc.stderr}")
    return proc


def _run_in_process(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """``musicmap.cli.main(argv)`` with stdout and stderr captured; the logging set-up it makes (root
    handlers, logger levels) is undone afterwards, so the next test starts as it would have."""
    from musicmap.cli import main

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: lg.level for name, lg in logging.root.manager.loggerDict.items()
              if isinstance(lg, logging.Logger)}
    # Text streams over bytes, as a process's are: commands that write bytes (an m3u to stdout) use .buffer.
    out, err = (io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True) for _ in range(2))
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse: usage errors (2), --help and --version (0)
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, lg in logging.root.manager.loggerDict.items():
            if isinstance(lg, logging.Logger):
                lg.setLevel(levels.get(name, logging.NOTSET))
    text = [stream.buffer.getvalue().decode("utf-8", errors="replace") for stream in (out, err)]  # type: ignore[attr-defined]
    return subprocess.CompletedProcess([*MUSICMAP, *argv], code, *text)


def _own_root_handlers() -> list[logging.Handler]:
    """The root logger's handlers but pytest's own (its capture handlers change with every phase)."""
    return [h for h in logging.getLogger().handlers if not type(h).__module__.startswith("_pytest")]


@pytest.fixture(autouse=True)
def _logging_left_as_found() -> Iterator[None]:
    """A test that leaves the root logger's level or handlers changed (``musicmap.cli.main`` called
    directly sets INFO and a stderr handler; ``run_cli`` undoes that) fails, and they are put back:
    a leaked level makes later tests record log lines they never see alone (issue #30's flaky
    test_nonfinite, after the library model test's ``tag`` rules)."""
    root = logging.getLogger()
    level, handlers = root.level, _own_root_handlers()
    yield
    leaked_level, leaked_handlers = root.level, _own_root_handlers()
    if (leaked_level, leaked_handlers) != (level, handlers):
        root.setLevel(level)
        for handler in leaked_handlers:
            if handler not in handlers:
                root.removeHandler(handler)
        pytest.fail(f"the test left the root logger changed: level {logging.getLevelName(level)} → "
                    f"{logging.getLevelName(leaked_level)}, handlers {handlers} → {leaked_handlers}; "
                    "run the CLI through run_cli, which restores them", pytrace=False)


def make_tiny_maest(folder: Path, labels: list[str], *, shuffle_positions: bool = False) -> Path:
    """A randomly initialised MAEST-shaped AST (8 blocks, 32-d, 66-frame windows), saved to
    ``folder`` with save_pretrained (weights cannot be downloaded here: the loading code is tested
    on these). ``shuffle_positions``: non-trivial positional embeddings, so slicing mistakes show."""
    import torch
    from transformers import ASTConfig, ASTForAudioClassification

    torch.manual_seed(0)
    config = ASTConfig(hidden_size=32, num_hidden_layers=8, num_attention_heads=2, intermediate_size=64,
                       patch_size=16, frequency_stride=10, time_stride=10, num_mel_bins=96, max_length=66,
                       layer_norm_eps=1e-6, qkv_bias=True, num_labels=len(labels),
                       id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
    model = ASTForAudioClassification(config)
    if shuffle_positions:
        with torch.no_grad():
            model.audio_spectrogram_transformer.embeddings.position_embeddings.normal_(0, 0.5)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def demo_library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[DemoTrack]]:
    root = tmp_path_factory.mktemp("demo") / "library"
    tracks = generate_demo_library(root, n_tracks=N_DEMO, seed=7, min_duration=20, max_duration=30)
    return root, tracks


@pytest.fixture(scope="session")
def demo_store(demo_library: tuple[Path, list[DemoTrack]],
               tmp_path_factory: pytest.TempPathFactory) -> DemoStore:
    """The demo library indexed with the `features` embedder and mapped, through the CLI."""
    library, tracks = demo_library
    store = tmp_path_factory.mktemp("store") / "store"
    # sound tags from 2 patches a track (6 s of each 20-30-s track; the tag stage 16 s against 24 s at 4 patches on
    # the 2-core Xeon): the demo's styles hold over a whole track, so "quiet ambient without drums" still finds
    # 12 of 12 ambient tracks (11 from one patch); what the tags say of real music: test_real_music.py
    run_cli("index", library, "--store", store, "--model", "features", "--workers", "2", "--tag-patches", "2",
            check=True)
    run_cli("map", "--store", store, check=True)
    return DemoStore(library, store, tracks)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(store: Path, *extra: str, command: Sequence[str] = tuple(MUSICMAP), cwd: Path | None = None,
            env: dict[str, str] | None = None) -> Iterator[str]:
    """`musicmap serve` on ``store`` (with ``extra`` flags) at a free loopback port, started and
    answering; yields its base URL. ``command`` runs another musicmap (an installed wheel's)."""
    port = free_port()
    proc = subprocess.Popen([*command, "serve", "--store", str(store), "--port", str(port), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/", timeout=2) as response:
                    if response.status == 200:
                        break
            except urllib.error.HTTPError:  # answering (e.g. 401 without the token)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read() if proc.stdout else ""
                    raise AssertionError(f"musicmap serve did not start:\n{out}") from None
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def served(demo_store: DemoStore) -> Iterator[str]:
    """`musicmap serve --no-record` on the demo store, started once for the tests that only read
    through it; yields its base URL. The page's players record plays and skips wherever a server
    records: this one records nothing, so the shared store stays as built (a test that records
    serves its own copy)."""
    with serving(demo_store.store, "--no-record") as url:
        yield url
