"""A path of tracks from one song to another: each step a close neighbour of the last, moving
steadily toward the end (the great circle between the two tracks' vectors, snapped to real tracks).

A and B are track ids, files in the store, or artist/title text (the first match). The variety
options count over the whole path; no track appears twice.

examples:
  musicmap path 12 873 --steps 12
  musicmap path "nina simone sinnerman" "massive attack teardrop" --max-per-artist 1 --m3u journey.m3u
"""

from __future__ import annotations

import argparse
import sys

from store import Store

from .. import exits
from ..errors import UserError
from ..settings import Settings
from ._common import add_json, add_store, add_taste, print_json, taste_line, why

NAME = "path"
HELP = "a path of similar tracks from one song to another"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("start", metavar="A", help="the first track: an id, a file, or artist/title text")
    p.add_argument("end", metavar="B", help="the last track")
    add_store(p)
    p.add_argument("--steps", type=int, default=10, metavar="N", help="tracks in the path, A and B included "
                   "(default: 10)")
    p.add_argument("--where", metavar="SQL", help="only tracks matching this SQL condition between A and B")
    p.add_argument("--max-per-artist", dest="max_per_artist", type=int, metavar="N", help="at most N per artist")
    p.add_argument("--max-per-album", dest="max_per_album", type=int, metavar="N", help="at most N per album")
    p.add_argument("--dedupe", action="store_true", help="one version of each song")
    p.add_argument("--m3u", metavar="FILE.m3u", help="also write the path as an M3U playlist ('-': stdout)")
    add_taste(p)
    add_json(p)


def run(args: argparse.Namespace, settings: Settings) -> int:
    with Store.open(settings.store) as store:
        start, end = store.resolve_track(args.start), store.resolve_track(args.end)
        if start == end:
            raise UserError(f"{args.start!r} and {args.end!r} are the same track (#{start}); give two different ones")
        steps = store.song_path(start, end, length=args.steps, where=args.where, max_per_artist=args.max_per_artist,
                                max_per_album=args.max_per_album, dedupe=args.dedupe, taste=args.taste)
        taste = taste_line(store, args.taste)
        ids = [s.track_id for s in steps]
        if args.m3u == "-":
            from store.m3u import m3u_bytes

            sys.stdout.buffer.write(m3u_bytes(store, ids))
            return exits.OK
        if args.m3u:
            from store.m3u import write_m3u

            write_m3u(store, ids, args.m3u)
    if args.json:
        print_json({"from": start, "to": end, "taste": taste, "steps": [
            {"track_id": s.track_id, "to_previous": s.to_previous, "to_end": round(s.to_end, 6), **s.track,
             **({"taste": s.taste.as_json()} if s.taste else {})} for s in steps]})
        return exits.OK
    for i, s in enumerate(steps, start=1):
        t = s.track
        near = "      " if s.to_previous is None else f"{s.to_previous:.3f}"
        print(f"{i:3d}. {near}  → end {s.to_end:.3f}  #{s.track_id:<6d} {t.get('artist') or '?'} - "
              f"{t.get('title') or '?'}  [{t.get('genre') or '-'}]{why(s.taste)}")
    if len(steps) < args.steps:
        print(f"  (only {len(steps)} tracks: the library{' or --where' if args.where else ''} has no more to use)")
    return exits.OK
