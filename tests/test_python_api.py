"""``musicmap.open``: the Python block of docs/api.md, run exactly as written, and what it returns."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from store import InvalidQuery, NoMatchingTrack, StoreError, TrackNotFound
from tests.conftest import DemoStore

ROOT = Path(__file__).resolve().parents[1]


DOCS = ROOT / "docs" / "api.md"


def _documented_block() -> str:
    """The one Python block of docs/api.md's "From Python" section, as a reader sees it."""
    text = DOCS.read_text(encoding="utf-8")
    assert "\n## From Python\n" in text, f"{DOCS} has no '## From Python' section"
    section = text.split("\n## From Python\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, f"{DOCS} 'From Python' should hold one python block, not {len(blocks)}"
    return blocks[0]


@pytest.mark.subprocess
def test_the_documented_block_runs_as_written(demo_store: DemoStore, tmp_path: Path) -> None:
    (tmp_path / "musicmap-demo").mkdir()
    os.symlink(demo_store.store, tmp_path / "musicmap-demo" / "store")
    code = _documented_block() + (
        "\nimport json\n"
        "print(json.dumps({'tracks': len(tracks), 'like': like['track_id'].tolist(),"
        " 'scores': like['score'].tolist(), 'artists': like['artist'].tolist(),"
        " 'journey': journey['track_id'].tolist(), 'genres': int(genres['n'].sum()), 'near': len(near),"
        " 'points': len(points), 'ids': len(ids), 'shape': list(vectors.shape), 'seed': seed,"
        " 'calm': calm['track_id'].tolist(), 'calm_words': [m['word'] for m in calm['matched'].iloc[0]]}))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    first, last = proc.stdout.strip().splitlines()[0], proc.stdout.strip().splitlines()[-1]
    n = len(demo_store.tracks)
    assert first == f"<musicmap.Library musicmap-demo/store: {n} tracks, handcrafted features (librosa), maps: tsne>"
    out = json.loads(last)
    assert out["tracks"] == n and out["genres"] == n and out["points"] == n and out["ids"] == n
    named = [a for a in out["artists"] if isinstance(a, str)]  # tracks with no artist tag are not capped
    assert len(out["like"]) == 5 and out["seed"] not in out["like"] and len(set(named)) == len(named)
    assert out["scores"] == sorted(out["scores"], reverse=True)
    assert out["journey"][0] == out["seed"] and out["journey"][-1] == out["like"][-1] and len(out["journey"]) == 6
    assert out["near"] == 3 and out["shape"][0] == n
    assert len(out["calm"]) == 5 and out["calm_words"] == ["quiet", "drums"]


def test_answers_match_the_store(demo_store: DemoStore) -> None:
    import musicmap

    with musicmap.open(demo_store.store) as lib:
        ids, vectors = lib.vectors()
        assert vectors.dtype == np.float32 and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
        seed = int(ids[0])
        like = lib.similar(seed, k=4)
        assert isinstance(like, pd.DataFrame) and {"track_id", "score", "title", "artist"} <= set(like.columns)
        expected = vectors[np.searchsorted(ids, like["track_id"].to_numpy())] @ vectors[0]
        assert np.allclose(like["score"].to_numpy(), expected, atol=1e-5)  # cosine, brute force
        assert lib.similar_to_vector(vectors[0], k=1)["track_id"].tolist() == [seed]
        title = lib.tracks().set_index("id").loc[seed]
        assert lib.track_id(f"{title['artist']} {title['title']}") == seed
        assert len(lib.extend([seed], n=3)) == 3
        assert lib.model == "handcrafted features (librosa)"
        found = lib.find("quiet ambient", k=3)
        assert len(found) == 3 and found.attrs["reason"] is None and found["score"].is_monotonic_decreasing
        nothing = lib.find("some music")
        assert nothing.empty and "no word that describes a sound" in nothing.attrs["reason"]


def test_bad_input_is_named(demo_store: DemoStore, tmp_path: Path) -> None:
    import musicmap

    with pytest.raises(StoreError, match="does not exist"):
        musicmap.open(tmp_path / "nowhere")
    with musicmap.open(demo_store.store) as lib:
        with pytest.raises(TrackNotFound):
            lib.similar(10**9)
        with pytest.raises(NoMatchingTrack, match="no track id"):  # a store error, as every other one
            lib.similar("no such artist or title anywhere")
        stray = tmp_path / "stray.flac"
        stray.write_bytes(b"not indexed")
        with pytest.raises(NoMatchingTrack, match=r"stray\.flac is not a track of"):
            lib.similar(stray)  # a file, but not one of the store's
        with pytest.raises(InvalidQuery, match="SQL error"):
            lib.sql("SELEC 1")
        with pytest.raises(InvalidQuery, match="k must be"):
            lib.similar(int(lib.vectors()[0][0]), k=0)


def test_taste_from_python(demo_store: DemoStore, tmp_path: Path) -> None:
    """like / dislike / played / skipped record into a copy's journal; lists say how taste moved them."""
    import shutil

    import musicmap

    folder = shutil.copytree(demo_store.store, tmp_path / "store")
    with musicmap.open(folder) as lib:
        plain = lib.similar(1, k=10)
        assert plain["taste"].isna().all()
        lib.like(*plain["track_id"].iloc[5:8].tolist())
        lib.dislike(int(plain["track_id"].iloc[0]))
        lib.played(2, seconds=30, of=30)
        assert lib.skipped(3, at=2)[0]["kind"] == "skipped"
        steered = lib.similar(1, k=10)
        assert int(plain["track_id"].iloc[0]) not in steered["track_id"].tolist()
        assert steered["taste"].notna().any()
        assert lib.similar(1, k=10, taste=False)["track_id"].tolist() == plain["track_id"].tolist()
        taste = lib.taste()
        assert taste.attrs["summary"]["liked"] == 3 and taste["weight"].iloc[0] > 0
        assert len(lib.events()) == 6
        mix = lib.mix(5)
        assert len(mix) == 5 and mix["why"].str.startswith("like #").all()
        assert lib.like(5, undo=True)[0]["undo"]
