"""``musicmap tag``: predicted styles and map clusters written into real files of every format with
mutagen, read back, the store told (no re-embedding), and ``--undo`` restoring every byte."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from data.demo_library import FORMATS, generate_demo_library
from indexer.decode import load_audio
from indexer.embedders import load_embedder
from indexer.pipeline import index_library
from indexer.tagwrite import read_field
from store import Store
from tests.conftest import make_tiny_maest, run_cli


@pytest.fixture(scope="module")
def maest_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random MAEST (``tiny-maest``) and twelve tracks in every format, tags partly missing
    (``lib``): made once, copied by each test's store (the tests write into the files)."""
    root = tmp_path_factory.mktemp("tagwrite")
    make_tiny_maest(root / "tiny-maest", ["Electronic---Techno", "Jazz---Bop", "Rock---Noise", "Classical---Baroque",
                                          "Pop---Ballad"])
    generate_demo_library(root / "lib", n_tracks=12, seed=5, min_duration=3, max_duration=4, formats=FORMATS)
    return root


@pytest.fixture
def maest_store(maest_files: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of :func:`maest_files`' tracks, indexed with its tiny MAEST and mapped."""
    model = shutil.copytree(maest_files / "tiny-maest", tmp_path / "tiny-maest")
    lib = shutil.copytree(maest_files / "lib", tmp_path / "lib")
    store = tmp_path / "store"
    # no sound tags: `tag --write` writes the store's styles and clusters (sound tags: test_tagger.py)
    report = index_library([lib], store, load_embedder(str(model), device="cpu"), workers=1, map_name="tsne",
                           tags=False)
    assert report.added == 12 and report.failed == 0
    return lib, store


def _snapshot(lib: Path) -> dict[Path, tuple[bytes, int]]:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(lib.rglob("*"))
            if p.is_file() and p.suffix.lstrip(".") in FORMATS}


def test_write_read_back_no_reembedding_and_byte_exact_undo(maest_store: tuple[Path, Path]) -> None:
    lib, store = maest_store
    before = _snapshot(lib)
    assert {p.suffix for p in before} == {f".{f}" for f in FORMATS}
    proc = run_cli("tag", "--store", store, "--write", "styles,cluster", "--dry-run", "--json")
    assert proc.returncode == 0, proc.stderr
    planned = json.loads(proc.stdout)["changes"]
    assert len(planned) == 12 and all(set(c["values"]) == {"grouping", "cluster"} for c in planned)
    assert _snapshot(lib) == before  # a dry run writes nothing

    proc = run_cli("tag", "--store", store, "--write", "styles,cluster", "--top", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["written"], out["unchanged"], out["failed"]) == (12, 0, [])
    with Store.open(store) as s:
        top = {int(i): labels for i, labels in s.sql(
            "SELECT track_id, list(label ORDER BY activation DESC)[1:2] FROM styles GROUP BY track_id").rows}
        clusters = dict(s.sql("SELECT track_id, cluster FROM projections WHERE name = 'tsne'").rows)
        paths = {int(i): p for i, p in s.sql("SELECT id, path FROM tracks").rows}
    for track_id, path in paths.items():
        expected = "; ".join(label.split("---")[1] for label in top[track_id])
        assert read_field(path, "grouping") == expected, path
        assert read_field(path, "cluster") == f"musicmap {clusters[track_id]}", path
        original = before[Path(path)][0]
        assert Path(path).read_bytes() != original
        assert np.array_equal(load_audio(path), load_audio_bytes(original, Path(path).suffix)), path  # same sound
    # the store knows the new sizes and times: the next run embeds nothing again
    proc = run_cli("index", lib, "--store", store, "--model", str(store.parent / "tiny-maest"), "--json",
                   "--no-map", "--no-tags", "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["unchanged"] == 12
    # writing the same values again changes nothing
    proc = run_cli("tag", "--store", store, "--write", "styles,cluster", "--top", "2", "--json")
    assert json.loads(proc.stdout)["unchanged"] == 12

    proc = run_cli("tag", "--store", store, "--undo", "--json")
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["restored"]) == 12
    assert _snapshot(lib) == before  # every byte, and the modification times
    proc = run_cli("index", lib, "--store", store, "--model", str(store.parent / "tiny-maest"), "--json",
                   "--no-map", "--no-tags", "--workers", "1")
    assert json.loads(proc.stdout)["unchanged"] == 12
    proc = run_cli("tag", "--store", store, "--undo")
    assert proc.returncode == 1 and "nothing to undo" in proc.stderr


def load_audio_bytes(data: bytes, suffix: str) -> np.ndarray:
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=suffix) as fh:
        fh.write(data)
        fh.flush()
        return load_audio(fh.name)


def test_undo_leaves_files_edited_since_alone(maest_store: tuple[Path, Path]) -> None:
    lib, store = maest_store
    before = _snapshot(lib)
    proc = run_cli("tag", "--store", store, "--write", "styles", "--to", "genre", "--where", "id <= 3")
    assert proc.returncode == 0, proc.stderr
    with Store.open(store) as s:
        edited, gone, kept = (Path(s.file_path(i)) for i in (1, 2, 3))
    edited.write_bytes(edited.read_bytes() + b"\0")  # someone else changed it afterwards
    gone.unlink()
    proc = run_cli("tag", "--store", store, "--undo", "--json")
    assert proc.returncode == 3
    result = json.loads(proc.stdout)
    assert result["restored"] == [str(kept)] and result["changed since"] == [str(edited)] and \
        result["gone"] == [str(gone)]
    assert kept.read_bytes() == before[kept][0]
    assert edited.read_bytes() != before[edited][0]  # left as the other program left it
    untouched = [p for p in before if p not in (edited, gone, kept)]
    assert all(p.read_bytes() == before[p][0] for p in untouched)


def test_a_file_edited_since_indexing_is_not_tagged(maest_store: tuple[Path, Path]) -> None:
    """Found by the model-based test (tests/test_library_model.py): tagging an edited file and
    telling the store its new size and time hid the edit from every later index run."""
    lib, store = maest_store
    with Store.open(store) as s:
        edited = Path(s.file_path(1))
    import soundfile as sf

    audio, sr = sf.read(edited) if edited.suffix in (".flac", ".wav", ".ogg") else (None, None)
    if audio is None:
        edited.write_bytes(edited.read_bytes() + b"\0")
    else:
        sf.write(edited, audio[::-1].copy(), sr)  # a new version of the song
    dry = json.loads(run_cli("tag", "--store", store, "--write", "cluster", "--dry-run", "--json").stdout)
    assert [c["changed_since_indexed"] for c in dry["changes"]].count(True) == 1
    proc = run_cli("tag", "--store", store, "--write", "cluster", "--json")
    assert proc.returncode == 3, proc.stderr
    out = json.loads(proc.stdout)
    assert out["written"] == 11 and [f["path"] for f in out["failed"]] == [str(edited)]
    assert "changed since it was indexed" in out["failed"][0]["error"]
    assert read_field(edited, "cluster") is None
    proc = run_cli("index", lib, "--store", store, "--model", str(store.parent / "tiny-maest"), "--json",
                   "--no-map", "--no-tags", "--workers", "1")
    report = json.loads(proc.stdout)
    assert (report["updated"], report["unchanged"]) == (1, 11)  # the edit is embedded; the tagged files are not


def test_tag_errors_are_named(tmp_path: Path, maest_store: tuple[Path, Path]) -> None:
    lib, store = maest_store
    features = tmp_path / "features-store"
    index_library([lib], features, load_embedder("features"), workers=1, tags=False)
    for args, message in ((("--write", "styles"), "no style or tag predictions"),
                          (("--write", "cluster"), "no map clusters yet"),
                          (("--undo",), "nothing to undo")):
        proc = run_cli("tag", "--store", features, *args)
        assert proc.returncode == 1 and message in proc.stderr, (args, proc.stderr)
    for args, message in ((("--write", "moods"), "give styles (or tags), cluster"),
                          (("--write", "styles", "--where", "nonsense (("), "--where"),
                          (("--write", "styles", "--top", "0"), "--top 0"),
                          (("--undo", "20990101T000000Z"), "no such backup")):
        proc = run_cli("tag", "--store", store, *args)
        assert proc.returncode == 1 and message in proc.stderr, (args, proc.stderr)
