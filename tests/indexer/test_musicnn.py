"""MusiCNN (issue #19): our checkpoint reader and torch port against TensorFlow's golden outputs
(musicnn-spec §6), the front end against librosa with the training parameters, the float16 trap,
streaming, and damaged checkpoints. Needs the ``musicnn`` package (``make setup`` installs it)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from data.demo_library import synthesise
from indexer.decode import AudioSource, load_audio
from indexer.embedders import load_embedder
from indexer.embedders.musicnn import MTT_TAGS, MusicnnEmbedder, package_folder
from indexer.errors import IndexerError
from indexer.musicnn import frontend
from indexer.musicnn.checkpoint import CheckpointError, read_checkpoint
from indexer.musicnn.model import VGG, MusiCNN, WeightError
from tests.conftest import run_cli

SR = 16_000
GOLDEN = {  # musicnn-spec §6: TensorFlow 2.15 running the package's own graph
    "MTT_musicnn": ([0.000207, 0.005955, 0.001516, 0.163020, 0.020062, 0.104688], 1.994955, 11.631445, (8, 8)),
    "MSD_musicnn": ([0.067219, 0.017143, 0.027096, 0.000800, 0.048911, 0.002285], 1.224009, 23.593744, (11, 11)),
    "MTT_vgg": ([0.097760, 0.395339, 0.015593, 0.470854, 0.472893, 0.058823], 10.253101, 7.564994, (12, 4)),
    "MSD_vgg": ([0.061749, 0.027395, 0.037989, 0.046318, 0.405991, 0.042518], 4.139335, 10.602458, (4, 4)),
}


@pytest.mark.parametrize("folder", sorted(GOLDEN))
def test_the_port_matches_tensorflows_golden_outputs(folder: str) -> None:
    first, total, norm, argmax = GOLDEN[folder]
    tensors = read_checkpoint(str(package_folder() / folder) + "/")
    assert "dense/kernel" in tensors and not [n for n in tensors if "Adam" in n or "power" in n]
    network = (VGG if folder.endswith("vgg") else MusiCNN)()
    network.load_tf(tensors)
    x = np.random.default_rng(0).uniform(0.0, 3.0, size=(2, 187, 96)).astype(np.float32)
    with torch.inference_mode():
        out = network.eval()(torch.from_numpy(x))
    tags = out.tags.numpy()
    np.testing.assert_allclose(tags[0, :6], first, atol=1e-6 + 5e-7)  # the golden values have 6 decimals
    assert abs(float(tags.sum()) - total) < 1e-5
    assert abs(float(np.linalg.norm(out.penultimate[0].numpy())) - norm) < 1e-5
    assert tuple(int(i) for i in tags.argmax(axis=1)) == argmax


def test_the_checkpoint_holds_the_documented_parameter_counts() -> None:
    for folder, count in (("MSD_musicnn", 792_079), ("MTT_vgg", 607_030)):
        tensors = read_checkpoint(str(package_folder() / folder) + "/")
        assert sum(v.size for v in tensors.values()) == count


def test_the_front_end_equals_librosa_with_the_training_parameters() -> None:
    audio, sr = synthesise("jazz", 12.0, seed=4)
    y = librosa.resample(audio, orig_sr=sr, target_sr=SR)
    mel = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=512, hop_length=256, n_mels=96).T  # (t, 96)
    want = np.log10(1.0 + 10_000.0 * mel.astype(np.float16).astype(np.float32))
    got = frontend.logmel(y)
    assert got.shape == want.shape == (len(y) // 256 + 1, 96)
    # float16 rounding can flip one step where the two float32 computations differ in the last bit
    assert np.abs(got - want).max() < 5e-4 and np.abs(got - want).mean() < 1e-6


def test_a_loud_signal_gives_no_inf_or_nan() -> None:
    """musicnn-spec §5: 10⁴·x in float16 overflows for x > 6.55; the package's own code did it."""
    rng = np.random.default_rng(1)
    t = np.arange(SR * 4) / SR
    loud = np.clip(1.6 * np.sign(np.sin(2 * np.pi * 110 * t)) + 0.5 * rng.standard_normal(len(t)), -1, 1)
    bands = frontend.logmel(loud.astype(np.float32))
    mel = librosa.feature.melspectrogram(y=loud.astype(np.float32), sr=SR, n_fft=512, hop_length=256, n_mels=96)
    with np.errstate(over="ignore"):
        naive = np.log10(10_000 * mel.astype(np.float16) + 1)  # the trap: computed in float16
    assert not np.isfinite(naive).all()  # this signal does hit it
    assert np.isfinite(bands).all()
    embedding = load_embedder("musicnn-msd").embed(loud.astype(np.float32))
    assert np.isfinite(embedding.vector).all() and all(np.isfinite(v) for v in embedding.styles.values())


def test_patches_and_streaming_equal_the_whole_track(tmp_path: Path) -> None:
    embedder = MusicnnEmbedder.load("musicnn-mtt", batch_size=4)
    audio, sr = synthesise("techno", 14.0, seed=2)
    path = tmp_path / "techno.flac"
    sf.write(path, audio, sr)
    y = load_audio(path)
    assert len(y) // 256 + 1 == 876
    assert frontend.patch_starts(876) == [0, 187, 374, 561, 689]  # 4 full, and 128 frames left: end-aligned
    whole = embedder.embed(y)
    streamed = embedder.embed_stream(AudioSource(path, SR, block_seconds=2.3))
    assert whole.n_windows == streamed.n_windows == 5
    np.testing.assert_allclose(streamed.vector, whole.vector, atol=1e-5)
    assert whole.windows is not None and whole.windows.shape == (5, 200)
    assert whole.window_starts == pytest.approx([0.0, 2.992, 5.984, 8.976, 11.024])
    assert len(whole.styles) == 50 and set(whole.styles) == set(embedder.labels)
    short = embedder.embed(y[: SR // 2])  # shorter than one patch: one patch of its own length
    assert short.n_windows == 1 and np.isfinite(short.vector).all()
    vgg = MusicnnEmbedder.load("musicnn-mtt-vgg").embed(y[: SR // 2])  # the VGG repeats it to 187 frames
    assert vgg.vector.shape == (256,) and np.isfinite(vgg.vector).all()


def _copy_checkpoint(tmp_path: Path, folder: str = "MSD_musicnn") -> Path:
    target = tmp_path / folder
    shutil.copytree(package_folder() / folder, target)
    return target


def test_damaged_checkpoints_are_named_errors(tmp_path: Path) -> None:
    truncated = _copy_checkpoint(tmp_path / "a")
    data = truncated / ".data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:1_000_000])
    with pytest.raises(CheckpointError, match=r"\.data-00000-of-00001: .* truncated"):
        read_checkpoint(str(truncated) + "/")
    magic = _copy_checkpoint(tmp_path / "b")
    index = magic / ".index"
    index.write_bytes(index.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(CheckpointError, match=r"\.index: not a TensorFlow checkpoint index"):
        read_checkpoint(str(magic) + "/")
    short = _copy_checkpoint(tmp_path / "c")
    (short / ".index").write_bytes(b"abc")
    with pytest.raises(CheckpointError, match="truncated"):
        read_checkpoint(str(short) + "/")
    tensors = read_checkpoint(str(package_folder() / "MSD_musicnn") + "/")
    missing = {k: v for k, v in tensors.items() if k != "dense_1/kernel"}
    with pytest.raises(WeightError, match="no variable 'dense_1/kernel'"):
        MusiCNN().load_tf(missing)
    wrong = {**tensors, "conv2d/kernel": tensors["conv2d/kernel"][:, :30]}
    with pytest.raises(WeightError, match=r"'conv2d/kernel' has shape \(7, 30, 1, 204\).*\(7, 38, 1, 204\)"):
        MusiCNN().load_tf(wrong)
    with pytest.raises(IndexerError, match=r"MSD_musicnn cannot be used: .*truncated.*--force-reinstall"):
        MusicnnEmbedder.load(str(truncated))
    with pytest.raises(IndexerError, match="named as in the musicnn package"):
        load_embedder(str(shutil.copytree(truncated, tmp_path / "renamed")))


def test_a_damaged_checkpoint_through_the_cli_writes_nothing(tmp_path: Path) -> None:
    damaged = _copy_checkpoint(tmp_path)
    (damaged / ".index").write_bytes((damaged / ".index").read_bytes()[:-8] + b"\xff" * 8)
    library = tmp_path / "lib"
    library.mkdir()
    audio, sr = synthesise("piano", 4.0)
    sf.write(library / "a.flac", audio, sr)
    store = tmp_path / "store"
    proc = run_cli("index", library, "--store", store, "--model", damaged)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert str(damaged / ".index") in lines[0] and "pip install --force-reinstall --no-deps" in lines[0]
    assert not store.exists()


WITHOUT_MUSICNN = (
    "import importlib.abc, sys\n"
    "class Hide(importlib.abc.MetaPathFinder):\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'musicnn' or name.startswith('musicnn.'):\n"
    "            raise ModuleNotFoundError(name)\n"
    "        return None\n"
    "sys.meta_path.insert(0, Hide())\n"
    "from musicmap.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)
"""``musicmap`` (give its arguments after ``-c CODE``) with the ``musicnn`` package hidden from the
import system, as on a machine without it."""


@pytest.mark.subprocess
def test_without_the_package_the_error_names_the_install_command(tmp_path: Path) -> None:
    """The package hidden from the import system (as on a machine without it): one line, the fix."""
    library = tmp_path / "lib"
    library.mkdir()
    audio, sr = synthesise("piano", 4.0)
    sf.write(library / "a.flac", audio, sr)
    proc = subprocess.run([sys.executable, "-c", WITHOUT_MUSICNN, "index", str(library), "--store", str(tmp_path / "s"),
                           "--model", "musicnn-msd"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1 and 'pip install --no-deps "musicnn==0.1.0"' in proc.stderr
    assert "make setup" in proc.stderr and not (tmp_path / "s").exists()


def test_index_with_musicnn_stores_tags_windows_and_a_predicted_genre(tmp_path: Path) -> None:
    library = tmp_path / "lib"
    library.mkdir()
    for i, style in enumerate(("techno", "strings", "noise-rock")):
        audio, sr = synthesise(style, 8.0, seed=i)
        sf.write(library / f"Nobody - {style}.flac", audio, sr)
    store = tmp_path / "store"
    # its styles are the subject (the tag stage beside a MusiCNN store: test_tagger.py); one worker: 3 short files;
    # --quiet: no plan, which times MusiCNN twice first (test_speed_settings.py)
    proc = run_cli("index", library, "--store", store, "--model", "musicnn-mtt", "--no-tags", "--workers", "1",
                   "--quiet", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(run_cli("info", "--store", store, "--json", check=True).stdout)
    assert info["model"]["kind"] == "musicnn" and info["model"]["label"] == "MusiCNN (MTT)"
    rows = run_cli("sql", "SELECT (SELECT count(*) FROM styles), (SELECT count(*) FROM windows), "
                   "(SELECT count(*) FROM tracks WHERE tag_source LIKE '%predicted%' AND genre IS NOT NULL)",
                   "--store", store, "--format", "json", check=True).stdout
    styles, windows, predicted = json.loads(rows)["rows"][0]
    assert styles == 3 * 50 and windows == 3 * 3 and predicted == 3
    plan = json.loads(run_cli("tag", "--store", store, "--write", "tags", "--top", "2", "--dry-run", "--json",
                              check=True).stdout)
    values = [change["values"]["grouping"].split("; ") for change in plan["changes"]]
    assert len(values) == 3 and all(len(v) == 2 and set(v) <= set(MTT_TAGS) for v in values)
