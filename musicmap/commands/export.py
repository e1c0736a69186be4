"""Export the embeddings (CSV or Parquet) and the map as an image (PNG, SVG or PDF).

These are the outputs of the original MAEST + t-SNE demo: embeddings.csv and
tsne_plot.png.

examples:
  musicmap export --embeddings embeddings.csv --plot tsne_plot.png --color-by genre
"""

from __future__ import annotations

import argparse

from store import Store

from ..errors import UserError
from ..settings import Settings
from ._common import add_json, add_store, print_json

NAME = "export"
HELP = "export embeddings (CSV/Parquet) and the map plot (PNG/SVG)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_store(p)
    p.add_argument("--embeddings", metavar="FILE", help="write vectors + metadata to FILE.csv or FILE.parquet")
    p.add_argument("--plot", metavar="FILE", help="draw the map to FILE.png (or .svg, .pdf)")
    p.add_argument("--color-by", dest="color_by", default="genre", metavar="FIELD",
                   help="colour the plot by genre, artist, album, year or format (default: genre)")
    add_json(p)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from store.export import export_embeddings, export_plot

    if not args.embeddings and not args.plot:
        raise UserError("nothing to export: give --embeddings FILE and/or --plot FILE")
    written: dict[str, object] = {}
    with Store.open(settings.store) as store:
        if args.embeddings:
            written["embeddings"] = {"path": args.embeddings, "rows": export_embeddings(store, args.embeddings)}
        if args.plot:
            written["plot"] = {"path": args.plot, "points": export_plot(store, args.plot, color_by=args.color_by)}
    if args.json:
        print_json(written)
    else:
        for kind, what in written.items():
            print(f"wrote {kind}: {what}")
    return 0
