"""Scan, tags and decode on real generated files, including bad ones."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data.demo_library import generate_demo_library
from indexer.decode import load_audio
from indexer.errors import FileFailure, IndexerError
from indexer.scan import scan
from indexer.tags import read_tags


@pytest.fixture(scope="module")
def one_of_each(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("formats")
    tracks = generate_demo_library(root, n_tracks=6, seed=1, min_duration=3, max_duration=3,
                                   untagged_share=0)
    return {t.format: t.path for t in tracks}


@pytest.mark.parametrize("fmt", ["mp3", "flac", "ogg", "opus", "m4a", "wav"])
def test_decode_every_format_to_16k_mono(one_of_each: dict[str, Path], fmt: str) -> None:
    audio = load_audio(one_of_each[fmt], 16_000)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) / 16_000 - 3.0) < 0.1  # encoders add at most a few ms of padding
    assert 0.05 < float(np.abs(audio).max()) <= 1.5  # lossy codecs overshoot a little


@pytest.mark.parametrize("fmt", ["mp3", "flac", "ogg", "opus", "m4a", "wav"])
def test_tags_every_format(one_of_each: dict[str, Path], fmt: str) -> None:
    tags = read_tags(one_of_each[fmt])
    assert tags["title"] and tags["artist"] and tags["album"] and tags["genre"]
    assert isinstance(tags["year"], int) and tags["track_number"] == 1
    assert tags["format"] == fmt
    assert abs(tags["duration"] - 3.0) < 0.2


def test_stereo_44k1_is_resampled_to_16k_mono(tmp_path: Path) -> None:
    t = np.arange(44_100 * 2) / 44_100
    left, right = np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 660 * t)
    sf.write(tmp_path / "stereo.wav", np.stack([left, right], axis=1).astype(np.float32) * 0.5, 44_100)
    audio = load_audio(tmp_path / "stereo.wav", 16_000)
    assert audio.ndim == 1 and abs(len(audio) - 32_000) <= 2
    spectrum = np.abs(np.fft.rfft(audio))
    freqs = np.fft.rfftfreq(len(audio), 1 / 16_000)
    peaks = sorted(freqs[np.argsort(spectrum)[-2:]].round())
    assert peaks == [440.0, 660.0]  # both channels mixed, pitch preserved by the resampler


def test_tag_fallbacks_from_file_name(tmp_path: Path) -> None:
    y = np.zeros(1600, np.float32)
    sf.write(tmp_path / "Nina Simone - Sinnerman.wav", y, 16_000)
    sf.write(tmp_path / "07 - Só Danço Samba.flac", y, 16_000)
    tags = read_tags(tmp_path / "Nina Simone - Sinnerman.wav")
    assert (tags["artist"], tags["title"], tags["tag_source"]) == ("Nina Simone", "Sinnerman", "filename")
    tags = read_tags(tmp_path / "07 - Só Danço Samba.flac")
    assert (tags["artist"], tags["title"]) == (None, "Só Danço Samba")
    assert tags["genre"] is None  # an album folder is not a genre


def test_corrupt_and_non_audio_files_fail_clearly(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp3"
    text.write_text("this is not audio\n" * 50)
    with pytest.raises(FileFailure) as err:
        load_audio(text)
    assert err.value.stage == "decode"
    truncated = tmp_path / "cut.flac"
    sf.write(truncated, np.random.default_rng(0).standard_normal(16_000).astype(np.float32) * 0.1, 16_000)
    truncated.write_bytes(truncated.read_bytes()[:60])
    with pytest.raises(FileFailure):
        load_audio(truncated)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16_000)
    with pytest.raises(FileFailure, match="no audio"):
        load_audio(empty)


def test_scan_recurses_follows_links_without_loops_and_unicode(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    (lib / "Bjørk" / "Début").mkdir(parents=True)
    y = np.zeros(1600, np.float32)
    sf.write(lib / "Bjørk" / "Début" / "01 - Human Behaviour.flac", y, 16_000)
    sf.write(lib / "top.wav", y, 16_000)
    (lib / "cover.jpg").write_bytes(b"\xff\xd8")
    os.symlink(lib, lib / "Bjørk" / "loop")  # a loop back to the root
    outside = tmp_path / "outside"
    outside.mkdir()
    sf.write(outside / "linked.ogg", y, 16_000)
    os.symlink(outside, lib / "linked-folder")
    found = scan([lib])
    names = sorted(p.name for p in found)
    assert names == ["01 - Human Behaviour.flac", "linked.ogg", "top.wav"]


def test_scan_recognises_audio_by_content(tmp_path: Path) -> None:
    y = (0.1 * np.sin(np.arange(16_000) / 5)).astype(np.float32)
    sf.write(tmp_path / "flac-inside.dat", y, 16_000, format="FLAC")
    sf.write(tmp_path / "wave-inside", y, 16_000, format="WAV")  # no extension at all
    (tmp_path / "random.bin").write_bytes(bytes(range(256)) * 10)
    (tmp_path / "text.mp3").write_text("not audio")  # found by its extension; fails later, with a reason
    sf.write(tmp_path / "cover.jpg", y, 16_000, format="WAV")  # a known non-audio extension is not sniffed
    names = sorted(p.name for p in scan([tmp_path]))
    assert names == ["flac-inside.dat", "text.mp3", "wave-inside"]
    assert len(load_audio(tmp_path / "flac-inside.dat")) == 16_000


def test_scan_errors(tmp_path: Path) -> None:
    with pytest.raises(IndexerError, match="does not exist"):
        scan([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("hi")
    with pytest.raises(IndexerError, match="no audio files found"):
        scan([tmp_path / "empty"])
