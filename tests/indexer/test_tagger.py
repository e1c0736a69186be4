"""Sound tags beside every model: the tag stage of an index run, and stores that gain tags later."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from indexer.embedders import FeaturesEmbedder
from indexer.embedders.musicnn import MSD_TAGS, MTT_TAGS
from indexer.pipeline import index_library
from store import Store
from tests.audio import write_tone
from tests.conftest import run_cli
from tests.indexer.test_musicnn import WITHOUT_MUSICNN, synthesise


def _library(root: Path) -> Path:
    root.mkdir(parents=True)
    for i, style in enumerate(("techno", "strings", "noise-rock")):
        audio, sr = synthesise(style, 8.0, seed=i)
        sf.write(root / f"Nobody - {style}.flac", audio, sr)
    return root


def _tag_counts(store: Path) -> dict[str, tuple[int, int]]:
    with Store.open(store) as s:
        rows = s.sql("SELECT tagger, count(*), count(DISTINCT track_id) FROM sound_tags GROUP BY 1").rows
    return {r[0]: (int(r[1]), int(r[2])) for r in rows}


def test_every_track_gets_both_taggers_tags_whatever_the_model(tmp_path: Path) -> None:
    store = tmp_path / "store"
    report = index_library([_library(tmp_path / "lib")], store, FeaturesEmbedder(), workers=1)
    assert report.tags is not None and report.tags["tagged"] == 3 and report.tags["failed"] == 0
    assert report.durations["tags"] > 0
    assert _tag_counts(store) == {"musicnn-mtt": (150, 3), "musicnn-msd": (150, 3)}
    with Store.open(store) as s:
        labels = set(s.sql("SELECT DISTINCT label FROM sound_tags WHERE tagger = 'musicnn-mtt'").to_frame()["label"])
        strings = s.sql("SELECT t.title, st.activation FROM sound_tags st JOIN tracks t ON t.id = st.track_id "
                        "WHERE st.tagger = 'musicnn-mtt' AND st.label = 'strings' ORDER BY 2 DESC").rows
    assert labels == set(MTT_TAGS)
    assert strings[0][0] == "strings"  # the strings track is the most "strings" of the three


def test_an_existing_store_gains_tags_without_embedding_again(tmp_path: Path) -> None:
    library = _library(tmp_path / "lib")
    store = tmp_path / "store"
    index_library([library], store, FeaturesEmbedder(), workers=1, tags=False)
    assert _tag_counts(store) == {}
    with Store.open(store) as s:
        before = s.vectors()
        assert "musicmap index" in (s.find("strings").reason or "")
    report = index_library([library], store, FeaturesEmbedder(), workers=2)
    assert (report.unchanged, report.added, report.updated) == (3, 0, 0)
    assert report.tags is not None and report.tags["tagged"] == 3
    with Store.open(store) as s:
        after = s.vectors()
        assert (before[0] == after[0]).all() and (before[1] == after[1]).all()
        assert s.find("strings", k=1).results[0].track["title"] == "strings"
    again = index_library([library], store, FeaturesEmbedder(), workers=1)
    assert again.tags is not None and again.tags["tagged"] == 0  # nothing left to tag


def test_a_changed_file_is_tagged_again_and_a_removed_one_loses_its_tags(tmp_path: Path) -> None:
    library = _library(tmp_path / "lib")
    store = tmp_path / "store"
    index_library([library], store, FeaturesEmbedder(), workers=1)
    write_tone(library / "Nobody - techno.flac", 6.0, 440.0, seed=9)
    (library / "Nobody - strings.flac").unlink()
    report = index_library([library], store, FeaturesEmbedder(), workers=1, prune=True)
    assert report.updated == 1 and report.pruned == 1
    assert report.tags is not None and report.tags["tagged"] == 1
    assert _tag_counts(store) == {"musicnn-mtt": (100, 2), "musicnn-msd": (100, 2)}


def test_a_file_that_cannot_be_tagged_is_reported_and_tried_again(tmp_path: Path) -> None:
    """A file that is gone is counted as unreachable, one that no longer decodes as failed; neither
    fails the run, and both are tagged by the run that can read them again."""
    library = _library(tmp_path / "lib")
    store = tmp_path / "store"
    index_library([library], store, FeaturesEmbedder(), workers=1, tags=False)
    gone = library / "Nobody - techno.flac"
    gone.rename(tmp_path / "away.flac")  # the store still holds it: the tag stage cannot read it
    broken = library / "Nobody - noise-rock.flac"
    kept = broken.read_bytes()
    broken.write_bytes(b"\0" * len(kept))  # not indexed again below (not among the roots): it fails to decode
    report = index_library([library / "Nobody - strings.flac"], store, FeaturesEmbedder(), workers=1)
    assert report.status == "ok" and report.tags is not None
    assert (report.tags["tagged"], report.tags["failed"], report.tags["unreachable"]) == (1, 1, 1)
    (tmp_path / "away.flac").rename(gone)
    broken.write_bytes(kept)
    report = index_library([library / "Nobody - strings.flac"], store, FeaturesEmbedder(), workers=1)
    assert report.tags is not None
    assert (report.tags["tagged"], report.tags["failed"], report.tags["unreachable"]) == (2, 0, 0)


def test_fewer_patches_and_bad_counts(tmp_path: Path) -> None:
    store = tmp_path / "store"
    proc = run_cli("index", _library(tmp_path / "lib"), "--store", store, "--model", "features", "--tag-patches", "1",
                   "--no-map", "--workers", "1", "--quiet", "--json")  # --quiet: no plan (test_speed_settings.py)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["tags"]["max_patches"] == 1 and _tag_counts(store)["musicnn-msd"] == (150, 3)
    bad = run_cli("index", tmp_path / "lib", "--store", tmp_path / "other", "--tag-patches", "0")
    assert bad.returncode == 1 and "--tag-patches 0: give 1 or more" in bad.stderr and not (tmp_path / "other").exists()


def test_a_musicnn_store_copies_its_own_tags_and_runs_the_other_tagger(tmp_path: Path) -> None:
    store = tmp_path / "store"
    proc = run_cli("index", _library(tmp_path / "lib"), "--store", store, "--model", "musicnn-mtt", "--workers", "1",
                   "--quiet", "--json")  # --quiet: no plan, which times MusiCNN twice first (test_speed_settings.py)
    assert proc.returncode == 0, proc.stderr
    tags = json.loads(proc.stdout)["tags"]
    assert tags["copied"] == 3 and tags["taggers"] == ["musicnn-msd"] and tags["tagged"] == 3
    assert _tag_counts(store) == {"musicnn-mtt": (150, 3), "musicnn-msd": (150, 3)}
    with Store.open(store) as s:
        same = s.sql("SELECT count(*) FROM styles s JOIN sound_tags t ON t.track_id = s.track_id "
                     "AND t.label = s.label AND t.tagger = 'musicnn-mtt' AND t.activation = s.activation").rows
    assert same[0][0] == 150
    with Store.open(store) as s:
        msd = set(s.sql("SELECT DISTINCT label FROM sound_tags WHERE tagger = 'musicnn-msd'").to_frame()["label"])
    assert msd == set(MSD_TAGS)  # the other tagger ran: all its 50 tags


@pytest.mark.subprocess
def test_without_the_musicnn_package_a_features_index_still_succeeds(tmp_path: Path) -> None:
    """The no-dependency fallback stays one: the tag stage says it was skipped and how to install."""
    library = tmp_path / "lib"
    library.mkdir()
    write_tone(library / "a.flac", 3.0, 330.0)
    proc = subprocess.run([sys.executable, "-c", WITHOUT_MUSICNN, "index", str(library), "--store", str(tmp_path / "s"),
                           "--model", "features", "--no-map"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_COLOR": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "sound tags: skipped" in proc.stdout and "musicnn==0.1.0" in proc.stdout
