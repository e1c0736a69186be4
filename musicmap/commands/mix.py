"""A mix from what you played and liked lately: tracks you have not heard in that time that fit it.
When what you played is varied, each mood brings its own tracks (seeds, not one average), in
proportion to how much you played it; every track says which of yours it is like, and how your
taste moved it.

examples:
  musicmap mix
  musicmap mix -n 50 --since 7d --max-per-artist 2 --m3u for-you.m3u
  musicmap mix --where "year >= 2000" --json
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time

from store import Store

from .. import exits
from ..errors import UserError
from ..settings import Settings
from ._common import add_json, add_store, print_json

NAME = "mix"
HELP = "a mix of tracks like what you played and liked lately"
UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_store(p)
    p.add_argument("-n", type=int, default=30, help="tracks in the mix (default: 30)")
    p.add_argument("--since", default="30d", metavar="AGE",
                   help="what you played and liked in this time counts, and is not offered again: 90m, 12h, 30d, "
                        "2w (default: 30d)")
    p.add_argument("--where", metavar="SQL", help="only tracks matching this SQL condition")
    p.add_argument("--max-per-artist", dest="max_per_artist", type=int, metavar="N", help="at most N per artist")
    p.add_argument("--max-per-album", dest="max_per_album", type=int, metavar="N", help="at most N per album")
    p.add_argument("--dedupe", action="store_true", help="one version of each song")
    p.add_argument("--m3u", metavar="FILE.m3u", help="also write the mix as an M3U playlist ('-': stdout)")
    add_json(p)


def age(text: str) -> float:
    """``30d`` → seconds, or a UserError."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*", text)
    if not m or float(m.group(1)) <= 0:
        raise UserError(f"--since {text!r}: a number and a unit, m, h, d or w (90m, 12h, 30d, 2w)")
    return float(m.group(1)) * UNITS[m.group(2)]


def run(args: argparse.Namespace, settings: Settings) -> int:
    if not 1 <= args.n <= 1000:
        raise UserError(f"-n {args.n}: from 1 to 1000")
    since = time.time() - age(args.since)
    with Store.open(settings.store) as store:
        items = store.mix(n=args.n, since=since, where=args.where, max_per_artist=args.max_per_artist,
                          max_per_album=args.max_per_album, dedupe=args.dedupe)
        ids = [m.neighbour.track_id for m in items]
        if args.m3u == "-":
            from store.m3u import m3u_bytes

            sys.stdout.buffer.write(m3u_bytes(store, ids))
            return exits.OK
        if args.m3u:
            from store.m3u import write_m3u

            write_m3u(store, ids, args.m3u)
            logger.info("wrote %d tracks to %s", len(ids), args.m3u)
    if args.json:
        print_json({"since": args.since, "results": [
            {"track_id": m.neighbour.track_id, "score": round(m.neighbour.score, 6), **m.neighbour.track,
             "seed": m.seed, "why": m.why} for m in items]})
        return exits.OK
    print(f"{len(items)} tracks like what you played and liked in the last {args.since}:")
    for rank, m in enumerate(items, start=1):
        t = m.neighbour.track
        print(f"{rank:3d}. #{m.neighbour.track_id:<6d} {t.get('artist') or '?'} - {t.get('title') or '?'}"
              f"  [{t.get('genre') or '-'}]  {m.why}")
    if len(items) < args.n:
        print(f"  (only {len(items)}: the library{' or --where' if args.where else ''} has no more you have not "
              "heard lately)")
    return exits.OK
