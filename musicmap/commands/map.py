"""Draw the map: a 2-D t-SNE (openTSNE) projection of every track, saved in the store.

An existing map is kept up to date: tracks indexed since it was fitted are placed into it
(openTSNE's transform: existing points do not move); it is fitted anew with --recompute, with
another --method, --perplexity or --seed, or when new tracks are more than 20 % of the library.

The vectors are reduced to 50 dimensions with PCA, then embedded with cosine
affinities. ``--method pca`` gives an instant linear map instead; ``--method sklearn-tsne``
scikit-learn's t-SNE. The map's quality is measured and kept with it (see `musicmap info`):
trustworthiness@10, kNN preservation@10, and the share of map neighbours of the same genre.
"""

from __future__ import annotations

import argparse

from store import Store

from .. import exits
from ..errors import UserError
from ..settings import Settings
from ._common import add_json, add_store, print_json
from ._reports import describe_quality

NAME = "map"
HELP = "compute the 2-D map (t-SNE) of a store"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_store(p)
    p.add_argument("--method", choices=("tsne", "sklearn-tsne", "pca"), default=None,
                   help="tsne = openTSNE (default, fast); sklearn-tsne = scikit-learn's TSNE (the original demo's); "
                        "pca = an instant linear map (default: the map's own method, else tsne)")
    p.add_argument("--perplexity", type=float, default=None, help="t-SNE perplexity (default: 30)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: 0)")
    p.add_argument("--name", default="tsne", help="projection name; several maps may coexist (default: tsne)")
    p.add_argument("--recompute", action="store_true",
                   help="fit the map anew instead of placing new tracks into it")
    add_json(p)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.projection import update_map

    if args.perplexity is not None and args.perplexity <= 0:
        raise UserError(f"--perplexity {args.perplexity}: must be positive")
    with Store.open(settings.store, read_only=False) as store:
        if store.count("embeddings") == 0:
            raise UserError(f"the store {settings.store} has no tracks yet; run musicmap index first")
        info = store.map_info(args.name)
        old = info.params if info else {}
        changed = any(value is not None and old.get(key) != value
                      for key, value in (("perplexity", args.perplexity), ("seed", args.seed)))
        result = update_map(store, name=args.name, method=args.method,
                            perplexity=args.perplexity if args.perplexity is not None else old.get("perplexity", 30.0),
                            seed=args.seed if args.seed is not None else old.get("seed", 0),
                            recompute=args.recompute or changed)
    if args.json:
        print_json(result)
    elif result["action"] == "placed":
        print(f"map '{result['name']}': placed {result['placed']} new tracks in {result['last_place_seconds']} s "
              f"({result['n_tracks']} tracks; {result['placed_since_fit']} placed since the map was fitted)")
    elif result["action"] == "up to date":
        print(f"map '{result['name']}': up to date ({result['n_tracks']} tracks); --recompute fits it anew")
    else:
        print(f"map '{result['name']}': {result['n_tracks']} tracks ({result['method']}, {result['seconds']} s)"
              + describe_quality(result.get("quality") or {}))
    return exits.OK
