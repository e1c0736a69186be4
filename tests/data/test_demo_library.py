"""The demo-library generator: styles, formats, tags, layouts, determinism."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import soundfile as sf

from data.demo_library import FORMATS, STYLES, generate_demo_library
from indexer.decode import load_audio
from indexer.tags import read_tags


def test_every_style_and_format_with_real_tags(demo_library) -> None:  # type: ignore[no-untyped-def]
    root, tracks = demo_library
    assert len(tracks) == 96
    assert {t.style for t in tracks} == set(STYLES)
    assert {t.format for t in tracks} == set(FORMATS)
    for t in tracks:
        assert t.path.is_file()
        assert 20 <= t.duration <= 30
    for t in [t for t in tracks if t.tagged][:: 7]:
        tags = read_tags(t.path)
        assert tags["title"] == t.title, t.path
        assert tags["artist"] == t.artist
        assert tags["album"] == t.album
        assert tags["genre"] == t.style
        assert tags["year"] == t.year
        assert tags["tag_source"] == "tags"
    assert (root / "tracks.csv").read_text(encoding="utf-8").count("\n") == 97


def test_untagged_gtzan_layout_and_unicode_names(demo_library) -> None:  # type: ignore[no-untyped-def]
    root, tracks = demo_library
    untagged = [t for t in tracks if not t.tagged]
    assert len(untagged) == round(96 * 0.1)
    for t in untagged:
        assert t.path.parent.parent == root / "gtzan"
        assert t.path.parent.name == t.style
        tags = read_tags(t.path)
        assert tags["genre"] == t.style and tags["tag_source"] == "filename,folder"
        assert tags["artist"] is None
    assert any(not t.path.name.isascii() for t in tracks)


def test_deterministic_by_seed(tmp_path: Path) -> None:
    a = generate_demo_library(tmp_path / "a", n_tracks=8, seed=3, min_duration=2, max_duration=3,
                              formats=("wav", "flac"))
    b = generate_demo_library(tmp_path / "b", n_tracks=8, seed=3, min_duration=2, max_duration=3,
                              formats=("wav", "flac"), workers=1)  # worker count does not matter
    c = generate_demo_library(tmp_path / "c", n_tracks=8, seed=4, min_duration=2, max_duration=3,
                              formats=("wav", "flac"))
    assert [t.path.relative_to(tmp_path / "a") for t in a] == [t.path.relative_to(tmp_path / "b") for t in b]
    digest = lambda p: hashlib.sha256(sf.read(p)[0].tobytes()).hexdigest()  # noqa: E731
    assert [digest(t.path) for t in a] == [digest(t.path) for t in b]
    assert [digest(t.path) for t in a] != [digest(t.path) for t in c]


def test_styles_sound_different(tmp_path: Path) -> None:
    """Cheap sanity check that the styles are not the same signal: spectral centroids spread out."""
    import numpy as np

    tracks = generate_demo_library(tmp_path, n_tracks=8, seed=0, min_duration=4, max_duration=4,
                                   formats=("wav",), untagged_share=0)
    centroids = []
    for t in tracks:
        y = load_audio(t.path, 16_000)
        spec = np.abs(np.fft.rfft(y))
        centroids.append(float((spec * np.arange(len(spec))).sum() / spec.sum()))
    assert len({round(c, -1) for c in centroids}) == 8


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_tracks"):
        generate_demo_library(tmp_path, n_tracks=0)
    with pytest.raises(ValueError, match="unknown formats"):
        generate_demo_library(tmp_path, n_tracks=1, formats=("aiff",))
