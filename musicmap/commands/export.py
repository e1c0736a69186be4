"""Export the embeddings (CSV or Parquet), the map (image or CSV) and playlists (M3U).

embeddings.csv and tsne_plot.png are the outputs of the original MAEST + t-SNE demo.
--m3u writes the tracks of any SQL query (its first column, or a column named id or
track_id, gives the track ids, in the query's order) as a playlist; `musicmap similar
--m3u` does the same for a similarity result.

examples:
  musicmap export --embeddings embeddings.csv --plot tsne_plot.png --color-by genre
  musicmap export --projection map.csv
  musicmap export --m3u jazz.m3u --query "SELECT id FROM tracks WHERE genre = 'Jazz' ORDER BY year"
  musicmap export --m3u like-42.m3u --query "SELECT id FROM similar_to(42, 30)"
"""

from __future__ import annotations

import argparse

from store import Store

from .. import exits
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
                   help="colour the plot by genre, style (MAEST's top predicted genre), artist, album, year or "
                        "format (default: genre)")
    p.add_argument("--labels", action="store_true", help="write each category's name at its centre on the plot")
    p.add_argument("--projection", metavar="FILE.csv", help="write the map's coordinates and metadata as CSV")
    p.add_argument("--m3u", metavar="FILE.m3u", help="write the tracks of --query as an M3U playlist")
    p.add_argument("--query", metavar="SQL", help="with --m3u: a read-only SQL query returning track ids")
    add_json(p)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from store.export import export_embeddings, export_plot, export_projection
    from store.m3u import write_m3u

    if not (args.embeddings or args.plot or args.projection or args.m3u):
        raise UserError("nothing to export: give --embeddings FILE, --plot FILE, --projection FILE or --m3u FILE")
    if bool(args.m3u) != bool(args.query):
        raise UserError("--m3u FILE and --query SQL go together (the query picks the playlist's tracks)")
    written: dict[str, object] = {}
    with Store.open(settings.store) as store:
        if args.embeddings:
            written["embeddings"] = {"path": args.embeddings, "rows": export_embeddings(store, args.embeddings)}
        if args.plot:
            written["plot"] = {"path": args.plot, "points": export_plot(store, args.plot, color_by=args.color_by,
                                                                             labels=args.labels)}
        if args.projection:
            written["projection"] = {"path": args.projection, "rows": export_projection(store, args.projection)}
        if args.m3u:
            result = store.sql(args.query, max_rows=1_000_000)
            names = [c.lower() for c in result.columns]
            col = names.index("id") if "id" in names else names.index("track_id") if "track_id" in names else 0
            try:
                ids = [int(r[col]) for r in result.rows if r[col] is not None]
            except (TypeError, ValueError) as exc:
                raise UserError(f"--query: column {result.columns[col]!r} does not hold track ids") from exc
            written["m3u"] = {"path": args.m3u, "tracks": write_m3u(store, ids, args.m3u)}
    if args.json:
        print_json(written)
    else:
        for kind, what in written.items():
            print(f"wrote {kind}: {what}")
    return exits.OK
