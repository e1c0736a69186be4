"""Draw the map: a 2-D t-SNE (openTSNE) projection of every track, saved in the store.

The vectors are reduced to 50 dimensions with PCA, then embedded with cosine
affinities. ``--method pca`` gives an instant linear map instead.
"""

from __future__ import annotations

import argparse

from store import Store

from ..errors import UserError
from ..settings import Settings
from ._common import add_json, add_store, print_json

NAME = "map"
HELP = "compute the 2-D map (t-SNE) of a store"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_store(p)
    p.add_argument("--method", choices=("tsne", "pca"), default="tsne", help="projection method (default: tsne)")
    p.add_argument("--perplexity", type=float, default=30.0, help="t-SNE perplexity (default: 30)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--name", default="tsne", help="projection name (default: tsne)")
    add_json(p)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.projection import compute_map

    if args.perplexity <= 0:
        raise UserError(f"--perplexity {args.perplexity}: must be positive")
    with Store.open(settings.store, read_only=False) as store:
        if store.count("embeddings") == 0:
            raise UserError(f"the store {settings.store} has no tracks yet; run musicmap index first")
        result = compute_map(store, name=args.name, method=args.method, perplexity=args.perplexity,
                             seed=args.seed)
    if args.json:
        print_json(result)
    else:
        print(f"map '{result['name']}': {result['n_tracks']} tracks ({result['method']})")
    return 0
