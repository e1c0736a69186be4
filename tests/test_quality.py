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
