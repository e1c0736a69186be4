"""The map: new tracks placed without moving the others, refits when due, quality kept, the indexer updates it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from indexer.mapping.model import model_file
from indexer.projection import RECOMPUTE_SHARE, compute_map, update_map
from store import Store, TrackRecord
from store.manifest import read_manifest
from tests.conftest import run_cli
from tests.fakes import fake_model

D = 32
GENRES = ["ambient", "techno", "jazz", "metal", "folk", "piano"]


def _records(start: int, n: int) -> list[TrackRecord]:
    centres = np.random.default_rng(7).standard_normal((len(GENRES), D)) * 2.0
    rng = np.random.default_rng(start)
    return [TrackRecord(path=f"/music/{i:04d}.flac", size=1, mtime=1.0,
                        tags={"title": f"Song {i}", "artist": f"Artist {i % 13}", "genre": GENRES[i % len(GENRES)]},
                        vector=(centres[i % len(GENRES)] + 0.7 * rng.standard_normal(D)).astype(np.float32))
            for i in range(start, start + n)]


@pytest.fixture
def mapped(tmp_path: Path) -> Path:
    folder = tmp_path / "store"
    model = fake_model(D, name="t", model_id="t")
    with Store.open_for_indexing(folder, model) as store:
        store.write_tracks(_records(0, 300))
        store.sync()
        result = compute_map(store)
    assert result["action"] == "fitted" and result["quality"]["category_agreement"] > 0.9
    return folder


def _write(folder: Path, records: list[TrackRecord]) -> None:
    with Store.open_for_indexing(folder, read_manifest(folder).model) as store:
        store.write_tracks(records)
        store.sync()


def test_new_tracks_are_placed_without_moving_the_map(mapped: Path) -> None:
    with Store.open(mapped) as store:
        before = store.projection().set_index("id")[["x", "y"]]
    with np.load(mapped / "maps" / "tsne.npz", allow_pickle=False) as saved:  # plain arrays, no pickle
        assert saved["components"].shape[1] == D and saved["mean"].shape == (D,)
    _write(mapped, _records(300, 30))  # 9 % new
    with Store.open(mapped, read_only=False) as store:
        result = update_map(store)
        after = store.projection().set_index("id")
        info = store.projection_info()[0]
    assert result["action"] == "placed" and result["placed"] == 30 and result["n_tracks"] == 330
    assert info["params"]["placed_since_fit"] == 30 and info["n_tracks"] == 330
    np.testing.assert_array_equal(after.loc[before.index, ["x", "y"]].to_numpy(), before.to_numpy())
    new = after.drop(before.index)
    shares = []
    for track_id, row in new.iterrows():
        d = np.hypot(after["x"] - row["x"], after["y"] - row["y"])
        d[track_id] = np.inf
        shares.append(float((after.loc[d.nsmallest(5).index, "genre"] == row["genre"]).mean()))
    assert np.mean(shares) >= 0.9  # each lands among its own kind
    # clusters: fitted with the map, new tracks join the cluster of their own kind
    assert after["cluster"].notna().all() and before.index.isin(after.index).all()
    old = after.loc[before.index]
    assert old["cluster"].nunique() == 9  # sqrt(300 / 4), rounded
    with Store.open(mapped) as store:
        ids, vectors = store.vectors()
    vec = dict(zip(ids.tolist(), vectors, strict=True))
    old_v = np.stack([vec[i] for i in old.index])
    agree = []
    for i in new.index:  # a new track joins the cluster of its nearest old tracks
        near = old.index[np.argsort(-(old_v @ vec[i]))[:5]]
        agree.append(after.at[i, "cluster"] == old.loc[near, "cluster"].value_counts().index[0])
    assert np.mean(agree) >= 0.9
    with Store.open(mapped, read_only=False) as store:
        assert update_map(store)["action"] == "up to date"


def test_refits_when_due(mapped: Path) -> None:
    _write(mapped, _records(300, int(300 * RECOMPUTE_SHARE) + 40))  # more new tracks than the share
    with Store.open(mapped, read_only=False) as store:
        result = update_map(store)
        assert result["action"] == "fitted" and "new" in result["reason"]
        assert update_map(store, recompute=True)["reason"] == "requested"
        assert update_map(store, method="pca")["reason"] == "another method"
        model_file(store, "tsne").unlink()
    _write(mapped, _records(1000, 3))
    with Store.open(mapped, read_only=False) as store:
        assert update_map(store)["reason"] == "no saved model"


def test_pca_maps_place_by_the_same_projection(mapped: Path) -> None:
    with Store.open(mapped, read_only=False) as store:
        compute_map(store, name="linear", method="pca")
        ids, _ = store.vectors()
        full = store.projection("linear").set_index("id").loc[ids, ["x", "y"]].to_numpy()
    extra = _records(300, 10)
    _write(mapped, extra)
    with Store.open(mapped, read_only=False) as store:
        assert update_map(store, name="linear")["action"] == "placed"
        placed = store.projection("linear").set_index("id")
    model = np.load(mapped / "maps" / "linear.npz", allow_pickle=False)
    v = np.stack([r.vector / np.linalg.norm(r.vector) for r in extra])
    np.testing.assert_allclose(placed.loc[301:310, ["x", "y"]].to_numpy(), (v - model["mean"]) @ model["components"].T,
                               atol=1e-4)
    assert np.allclose(placed.loc[ids, ["x", "y"]].to_numpy(), full)


def test_the_index_command_keeps_the_map_current(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    t = np.arange(16_000) / 16_000

    def tone(i: int) -> None:
        y = 0.3 * np.sin(2 * np.pi * (110 * (1 + i % 4)) * t) + 0.02 * np.random.default_rng(i).standard_normal(len(t))
        sf.write(lib / f"Artist - Tone {i:02d}.wav", y.astype(np.float32), 16_000)

    for i in range(40):
        tone(i)
    store = tmp_path / "store"
    # the map is the subject: 40 files start faster on one worker, sound tags are test_tagger.py's, and --quiet:
    # no plan: it times the model first, 1.5-4 s a run here (the plan's tests: test_speed_settings.py)
    one = ("--model", "features", "--workers", "1", "--no-tags", "--quiet")
    first = json.loads(run_cli("index", lib, "--store", store, *one, "--json", check=True).stdout)
    assert first["map"]["action"] == "fitted" and first["map"]["n_tracks"] == 40
    for i in range(40, 44):
        tone(i)
    second = json.loads(run_cli("index", lib, "--store", store, *one, "--json", check=True).stdout)
    assert second["map"]["action"] == "placed" and second["map"]["placed"] == 4
    human = run_cli("index", lib, "--store", store, *one, check=True).stdout
    assert "map 'tsne': up to date" in human
    tone(44)
    skipped = json.loads(run_cli("index", lib, "--store", store, *one, "--no-map", "--json",
                                 check=True).stdout)
    assert skipped["map"] is None
    out = run_cli("map", "--store", store, check=True).stdout
    assert "placed 1 new tracks" in out


def test_hubness_counts_the_similar_lists(mapped: Path) -> None:
    with Store.open(mapped) as store:
        hubs = store.projection_info()[0]["params"]["hubness"]
        ids, vectors = store.vectors()
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = v @ v.T
    np.fill_diagonal(sims, -np.inf)
    top = np.argsort(-sims, axis=1)[:, :10]  # every track's 10 most similar, by brute force
    counts = np.bincount(top.ravel(), minlength=len(ids))
    assert hubs["k"] == 10 and hubs["lists"] == len(ids) == 300
    assert hubs["hubs"][0][1] == counts.max() and dict(hubs["hubs"])[int(ids[counts.argmax()])] == counts.max()
    assert hubs["never_listed"] == round(float(np.mean(counts == 0)), 4)
    assert hubs["skewness"] == pytest.approx(float(np.mean((counts - counts.mean()) ** 3) / counts.std() ** 3),
                                             abs=1e-3)


def test_small_maps_run_openTSNE_on_one_thread() -> None:
    """Below SMALL_MAP_POINTS a second thread gains nothing and, beside a busy process, costs
    seconds (openTSNE's threads spin-wait: bench_map.py threads); a given n_jobs always wins."""
    import os

    from indexer.mapping.fit import SMALL_MAP_POINTS, fit, map_threads

    assert map_threads(16) == map_threads(SMALL_MAP_POINTS - 1) == 1
    assert map_threads(SMALL_MAP_POINTS) == (os.cpu_count() or 1)
    assert map_threads(16, 2) == 2 and map_threads(10**6, 1) == 1
    x = np.random.default_rng(0).standard_normal((40, 16)).astype(np.float32)
    default, params, _ = fit(x, seed=0)
    one, _, _ = fit(x, seed=0, n_jobs=1)
    assert params["method"] == "tsne" and np.array_equal(default, one)  # the default is the one-thread map
