"""Neighbours mean something: on the demo library, a track's top 10 mostly share its style."""

from __future__ import annotations

import numpy as np

from store import Store
from tests.conftest import DemoStore


def test_features_neighbours_share_the_synthetic_style(demo_store: DemoStore) -> None:
    style_of = {str(t.path.resolve()): t.style for t in demo_store.tracks}
    with Store.open(demo_store.store) as store:
        tracks = store.tracks(columns=("id", "path"))
        by_id = {int(r.id): style_of[r.path] for r in tracks.itertuples()}
        shares = []
        for track_id, style in by_id.items():
            neighbours = store.similar(track_id, k=10)
            assert len(neighbours) == 10
            shares.append(np.mean([by_id[n.track_id] == style for n in neighbours]))
    agreement = float(np.mean(shares))
    chance = 11 / (len(by_id) - 1)  # 11 other tracks of the same style among the rest
    assert agreement >= 0.60, f"only {agreement:.0%} of top-10 neighbours share the style"
    assert agreement > 3 * chance


def test_map_quality_matches_scikit_learn_and_tsne_beats_pca_and_random(demo_store: DemoStore, tmp_path) -> None:
    """The measured quality is stored with each map; on the demo library t-SNE beats PCA and a
    random layout on every measure (and trustworthiness equals scikit-learn's)."""
    import shutil

    from sklearn.manifold import trustworthiness

    from indexer.mapping.quality import map_quality
    from indexer.projection import compute_map
    from tests.conftest import run_cli

    store_dir = tmp_path / "store"
    shutil.copytree(demo_store.store, store_dir)
    run_cli("map", "--store", store_dir, "--method", "pca", "--name", "linear", check=True)
    with Store.open(store_dir) as store:
        info = {p["name"]: p["params"]["quality"] for p in store.projection_info()}
        ids, vectors = store.vectors()
        genres = store.tracks(ids.tolist(), columns=("id", "genre"))["genre"].to_numpy(dtype=object)
        tsne_xy = store.projection("tsne").set_index("id").loc[ids][["x", "y"]].to_numpy()
    tsne, pca = info["tsne"], info["linear"]
    rand = map_quality(vectors, np.random.default_rng(0).standard_normal((len(ids), 2)), genres)
    for measure in ("trustworthiness", "knn_preservation", "category_agreement"):
        assert tsne[measure] > pca[measure] > rand[measure], (measure, tsne, pca, rand)
    assert tsne["trustworthiness"] >= 0.9 and tsne["category_agreement"] >= 0.7
    assert abs(map_quality(vectors, tsne_xy)["trustworthiness"]
               - trustworthiness(vectors, tsne_xy, n_neighbors=10, metric="cosine")) < 1e-3
    sampled = map_quality(vectors, tsne_xy, sample=40)  # the sampled estimate stays close
    assert sampled["sample"] == 40 and abs(sampled["trustworthiness"] - tsne["trustworthiness"]) < 0.03
    with Store.open(store_dir, read_only=False) as store:
        result = compute_map(store, name="sk", method="sklearn-tsne")
    assert result["implementation"] == "scikit-learn" and result["quality"]["trustworthiness"] > pca["trustworthiness"]
