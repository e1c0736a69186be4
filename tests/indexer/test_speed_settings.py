"""Issue #21's settings: ``--precision auto``, ``--max-windows``, ``--fast``, the plan before the
work (``--plan``), and ``doctor --fidelity`` — with tiny random MAEST weights and with MusiCNN."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data.demo_library import synthesise
from indexer import cpu
from indexer.decode import AudioSource, load_audio
from indexer.embedders import FAST
from indexer.embedders.maest import MaestEmbedder
from indexer.embedders.musicnn import MusicnnEmbedder
from indexer.maest.frontend import spread
from store import Store
from tests.conftest import make_tiny_maest, run_cli

SR = 16_000
LABELS = ["Electronic---Techno", "Jazz---Bop", "Rock---Punk"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_maest(tmp_path_factory.mktemp("tiny") / "maest", LABELS, shuffle_positions=True)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lib")
    for i, style in enumerate(("techno", "jazz", "strings", "piano", "ambient")):
        audio, sr = synthesise(style, 20.0 + 4 * i, seed=i)
        sf.write(root / f"Artist {i} - {style}.flac", audio, sr)
    return root


@pytest.fixture
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "musicmap" / "cpu.json"


def test_spread_keeps_the_budget_evenly_from_first_to_last() -> None:
    assert spread(10, None) == list(range(10)) and spread(3, 8) == [0, 1, 2]
    assert spread(10, 3) == [0, 4, 9] and spread(100, 5) == [0, 25, 50, 74, 99] and spread(5, 1) == [0]
    with pytest.raises(ValueError, match="at least 1"):
        spread(5, 0)


def test_auto_precision_follows_the_cpu_and_caches_its_measurement(own_cache: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    assert cpu.auto_precision("cuda").name == "fp16"
    assert cpu.auto_precision("mps").name == "fp32"
    monkeypatch.setattr(cpu, "native_bf16", lambda: False)
    chosen = cpu.auto_precision("cpu")
    assert chosen.name == "fp32" and "no native bf16" in chosen.reason and not own_cache.exists()
    monkeypatch.setattr(cpu, "native_bf16", lambda: True)
    chosen = cpu.auto_precision("cpu")  # measures once, then reads the cache
    cached = json.loads(own_cache.read_text())
    (entry,) = cached.values()
    assert entry["gemm_gflops"]["fp32"] > 0 and entry["gemm_gflops"]["bf16"] > 0
    assert chosen.name == ("bf16" if entry["bf16_speedup"] >= cpu.BF16_MIN_SPEEDUP else "fp32")
    entry["bf16_speedup"] = 0.2  # a CPU where bf16 is emulated
    own_cache.write_text(json.dumps(cached))
    assert cpu.auto_precision("cpu").name == "fp32"


@pytest.mark.subprocess
def test_precision_auto_is_recorded_and_does_not_bind_the_store(tiny: Path, library: Path, tmp_path: Path,
                                                                own_cache: Path) -> None:
    store = tmp_path / "store"
    auto = run_cli("index", library, "--store", store, "--model", tiny, "--json",
                   env={"XDG_CACHE_HOME": str(own_cache.parents[1])})
    assert auto.returncode == 0, auto.stderr
    info = json.loads(run_cli("info", "--store", store, "--json", check=True).stdout)
    ran = info["last_run"]["settings"]
    assert ran["precision_requested"] == "auto" and ran["precision"] in ("fp32", "bf16")
    expected = "bf16" if cpu.native_bf16() and cpu.bf16_speedup() >= cpu.BF16_MIN_SPEEDUP else "fp32"
    assert ran["precision"] == expected
    assert f"ran {expected} (auto)" in run_cli("info", "--store", store, check=True).stdout
    from explorer import create_app

    with Store.open(store) as opened:  # the explorer's header says which precision made the vectors
        layout = json.dumps(create_app(opened).server.test_client().get("/_dash-layout").get_json())
    assert f"vectors: MAEST (maest) ({expected})" in layout
    # continued on "another machine" in another precision: the same store takes it
    (library / "extra.flac").write_bytes((library / "Artist 0 - techno.flac").read_bytes())
    try:
        again = run_cli("index", library, "--store", store, "--model", tiny, "--precision", "fp32", "--json")
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["added"] == 1
        info = json.loads(run_cli("info", "--store", store, "--json", check=True).stdout)
        assert info["last_run"]["settings"]["precision"] == "fp32"
    finally:
        (library / "extra.flac").unlink()


def test_bf16_on_a_cpu_without_it_says_what_it_costs(tiny: Path, own_cache: Path, monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr("indexer.embedders.maest.native_bf16", lambda: False)
    monkeypatch.setattr("indexer.embedders.maest.bf16_speedup", lambda: 0.2)
    with caplog.at_level(logging.WARNING):
        MaestEmbedder.load(str(tiny), device="cpu", precision="bf16")
    assert "no native bf16" in caplog.text and "5.0× slower than fp32" in caplog.text
    caplog.clear()
    monkeypatch.setattr("indexer.embedders.maest.native_bf16", lambda: True)
    with caplog.at_level(logging.WARNING):
        MaestEmbedder.load(str(tiny), device="cpu", precision="bf16")
    assert "slower" not in caplog.text  # no false warning where bf16 is native


@pytest.mark.parametrize("model", ["maest", "musicnn-mtt"])
def test_max_windows_spreads_the_budget_and_streaming_agrees(model: str, tiny: Path, tmp_path: Path) -> None:
    audio, sr = synthesise("jazz", 40.0, seed=9)
    path = tmp_path / "long.flac"
    sf.write(path, audio, sr)
    y = load_audio(path)
    if model == "maest":
        full, budget = MaestEmbedder.load(str(tiny), device="cpu", precision="fp32"), 3
        limited = MaestEmbedder.load(str(tiny), device="cpu", precision="fp32", max_windows=budget)
    else:
        full, budget = MusicnnEmbedder.load(model), 4
        limited = MusicnnEmbedder.load(model, max_windows=budget)
    whole = full.embed(y)
    some = limited.embed(y)
    assert whole.n_windows > budget and some.n_windows == budget
    keep = spread(whole.n_windows, budget)
    assert some.window_starts == [whole.window_starts[i] for i in keep]
    assert whole.windows is not None and some.windows is not None
    np.testing.assert_allclose(some.windows, whole.windows[keep], atol=1e-5)
    np.testing.assert_allclose(some.vector, whole.windows[keep].mean(axis=0), atol=1e-5)
    streamed = limited.embed_stream(AudioSource(path, SR, block_seconds=3.1))
    assert streamed.window_starts == some.window_starts
    np.testing.assert_allclose(streamed.vector, some.vector, atol=1e-5)


def test_usage_errors_name_the_flag(library: Path, tmp_path: Path) -> None:
    for flags, message in ((["--max-windows", "0"], "--max-windows 0: give 1 or more"),
                           (["--max-windows", "-3"], "--max-windows -3: give 1 or more"),
                           (["--max-windows", "x"], "--max-windows takes a whole number"),
                           (["--fast", "--precision", "bf16"], "--precision cannot be combined with --fast"),
                           (["--fast", "--patchout", "0.3"], "--patchout cannot be combined with --fast"),
                           (["--fast", "--max-windows", "4"], "--max-windows cannot be combined with --fast")):
        proc = run_cli("index", library, "--store", tmp_path / "s", "--model", "features", *flags)
        assert proc.returncode == 2 and message in proc.stderr, (flags, proc.stderr)
    assert not (tmp_path / "s").exists()


def test_plan_says_the_work_and_the_time_then_stops(tiny: Path, library: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    proc = run_cli("index", library, "--store", store, "--model", "musicnn-mtt", "--plan")
    assert proc.returncode == 0, proc.stderr
    assert "plan: 5 files to index (0 unchanged), 0.04 hours of audio" in proc.stdout
    assert "these settings: " in proc.stdout and "3-s patches" in proc.stdout and "--fast: " in proc.stdout
    assert not store.exists()  # nothing written
    plan = json.loads(run_cli("index", library, "--store", store, "--model", tiny, "--plan", "--json",
                              check=True).stdout)["plan"]
    assert plan["to_index"] == 5 and [e["label"] for e in plan["estimates"]] == ["these settings", "--fast"]
    ours, fast = plan["estimates"]
    assert ours["windows"] >= fast["windows"] >= 5 and ours["seconds"] > 0 and fast["seconds"] > 0
    run_cli("index", library, "--store", store, "--model", "features", "--no-tags", "--workers", "1", check=True)
    proc = run_cli("index", library, "--store", store, "--model", "features", "--plan")
    assert proc.returncode == 1 and "nothing to plan" in proc.stderr  # every file is indexed already


def test_fast_is_recorded_in_the_store(tiny: Path, library: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    run_cli("index", library, "--store", store, "--model", tiny, "--fast", "--no-map", "--no-tags", "--workers", "1",
            check=True)
    manifest = json.loads((store / "manifest.json").read_text())
    options = manifest["model"]["extra"]["options"]
    assert options["fast"] is True
    assert {k: options[k] for k in ("precision", "patchout", "max_windows")} == FAST["maest"]
    with Store.open(store) as opened:
        assert opened.count("tracks") == 5


@pytest.mark.heavy  # 18 s here: four files through every mode of two models
def test_doctor_fidelity_with_random_maest_and_with_musicnn(tiny: Path, library: Path) -> None:
    for model, first in ((tiny, "fp32 (reference)"), ("musicnn-mtt", "all patches (reference)")):
        proc = run_cli("doctor", "--fidelity", library, "--model", model, "--sample", "4", "--json", timeout=600)
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        modes = {m["mode"]: m for m in report["modes"]}
        assert report["files"] == 4 and report["modes"][0]["mode"] == first
        assert modes[first]["cosine_min"] == pytest.approx(1.0) and modes[first]["top10_overlap"] == 1.0
        assert "--fast" in modes and all(m["windows_per_s"] > 0 for m in modes.values())
        assert report["recommend"]["fast"] in modes
    table = run_cli("doctor", "--fidelity", library, "--model", tiny, "--sample", "4", check=True).stdout
    assert "cos min" in table and "recommended:" in table
    proc = run_cli("doctor", "--fidelity", library, "--model", "features")
    assert proc.returncode == 1 and "has none" in proc.stderr


def test_the_progress_eta_follows_the_audio_done() -> None:
    from musicmap.commands._common import Progress

    by_audio = Progress("files", total_audio=1000.0)
    by_audio.start = 0.0
    # 1 file of 10 done, but it held 100 of the 1,000 seconds: 10 s so far → 90 s to go
    assert by_audio.eta(1, 10, 100.0, now=10.0) == pytest.approx(90.0)
    by_files = Progress("files")
    by_files.start = 0.0
    assert by_files.eta(1, 10, 100.0, now=10.0) == pytest.approx(90.0)
    assert by_audio.eta(5, 10, 900.0, now=90.0) == pytest.approx(10.0)  # long files first: by files it would say 90
    assert by_files.eta(5, 10, 900.0, now=90.0) == pytest.approx(90.0)
    planned = Progress("files", total_audio=1000.0, planned_seconds=200.0)
    planned.start = 0.0
    # 10 % done in 40 s: the rate says 360 s to go, the plan 180; early on the plan weighs 80 %
    assert planned.eta(1, 10, 100.0, now=40.0) == pytest.approx(0.2 * 360 + 0.8 * 180)
    assert planned.eta(6, 10, 600.0, now=120.0) == pytest.approx(80.0)  # past half-way: the rate alone


def test_progress_shows_a_batch_once_it_is_done(tiny: Path, library: Path, tmp_path: Path) -> None:
    """Tracks embedded together (decoded by workers, batched in the main process) are counted
    together, after the batch: a line drawn after the batch's first track would lag the work by a
    batch (the display is throttled) and inflate the ETA."""
    from indexer.pipeline import index_library

    calls: list[tuple[int, int, float]] = []
    embedder = MaestEmbedder.load(str(tiny), device="cpu", precision="fp32", batch_size=2)
    report = index_library([library], tmp_path / "store", embedder, workers=2, map_name=None, tags=False,
                           progress=lambda done, total, _path, audio: calls.append((done, total, audio)))
    assert report.added == 5
    assert [done for done, _, _ in calls] == [2, 4, 5] and {total for _, total, _ in calls} == {5}
    durations = [20.0 + 4 * i for i in range(5)]
    assert calls[-1][2] == pytest.approx(sum(durations), abs=0.1)
