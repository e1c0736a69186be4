"""Run one read-only SQL query over the store (DuckDB).

Tables: tracks, embeddings, styles, projections, projection_info, failures, runs.
The connection is read-only and cannot read or write other files; queries stop after
a time limit and are cut at --max-rows.

examples:
  musicmap sql "SELECT genre, count(*) FROM tracks GROUP BY genre ORDER BY 2 DESC"
  musicmap sql "SELECT title, artist FROM tracks WHERE year < 1980" --format csv
"""

from __future__ import annotations

import argparse
import csv
import sys

from store import Store

from .. import exits
from ..settings import Settings
from ._common import add_store, print_json

NAME = "sql"
HELP = "run a read-only SQL query over the store"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("query", metavar="SQL", help="one SQL statement")
    add_store(p)
    p.add_argument("--format", choices=("table", "csv", "json"), default="table",
                   help="output format (default: table)")
    p.add_argument("--max-rows", type=int, default=10_000, help="row cap (default: 10000)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds before the query is stopped (default: 30)")
    p.add_argument("--json", dest="format", action="store_const", const="json", help="same as --format json")


def run(args: argparse.Namespace, settings: Settings) -> int:
    with Store.open(settings.store) as store:
        result = store.sql(args.query, max_rows=max(1, args.max_rows), timeout=args.timeout)
    if args.format == "json":
        print_json({"columns": result.columns, "rows": [list(r) for r in result.rows],
                    "truncated": result.truncated})
    elif args.format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(result.columns)
        writer.writerows(result.rows)
    else:
        frame = result.to_frame()
        if result.columns:
            print(frame.to_string(index=False, max_colwidth=60))
        print(f"({len(result.rows)} row{'s' if len(result.rows) != 1 else ''})")
    if result.truncated:
        print(f"musicmap sql: output cut at {len(result.rows)} rows (--max-rows)", file=sys.stderr)
    return exits.OK
