"""Grow a playlist: tracks that fit it as a whole (the centroid of its tracks), or each of its
tracks in turn (--mode seeds), never one already in it, with the variety rules counted over the
playlist and its extension together.

The playlist is an M3U/M3U8 file of the library's files (relative paths are read from the
playlist's folder); entries the store does not hold are listed and skipped.

examples:
  musicmap extend road-trip.m3u -n 30 --max-per-artist 2 --m3u road-trip-more.m3u
  musicmap extend road-trip.m3u --with-playlist --m3u - > road-trip-extended.m3u
"""

from __future__ import annotations

import argparse
import logging
import sys

from store import Store, playlist_tracks, read_m3u

from .. import exits
from ..errors import UserError
from ..settings import Settings
from ._common import add_json, add_store, add_taste, print_json, taste_line, why

NAME = "extend"
HELP = "add tracks that fit an M3U playlist"
logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("playlist", metavar="PLAYLIST.m3u", help="an M3U or M3U8 playlist of files in the store")
    add_store(p)
    p.add_argument("-n", type=int, default=20, help="tracks to add (default: 20)")
    p.add_argument("--mode", choices=("centroid", "seeds"), default="centroid",
                   help="centroid: like the playlist as a whole (default); seeds: like each of its tracks in turn")
    p.add_argument("--where", metavar="SQL", help="only tracks matching this SQL condition")
    p.add_argument("--max-per-artist", dest="max_per_artist", type=int, metavar="N",
                   help="at most N per artist, the playlist's own tracks counted")
    p.add_argument("--max-per-album", dest="max_per_album", type=int, metavar="N", help="at most N per album")
    p.add_argument("--dedupe", action="store_true", help="no other version of a song already there")
    p.add_argument("--m3u", metavar="FILE.m3u", help="write the new tracks as an M3U playlist ('-': stdout)")
    p.add_argument("--with-playlist", dest="with_playlist", action="store_true",
                   help="the M3U holds the playlist's tracks first, then the new ones")
    add_taste(p)
    add_json(p)


def run(args: argparse.Namespace, settings: Settings) -> int:
    with Store.open(settings.store) as store:
        ids, unknown = playlist_tracks(store, read_m3u(args.playlist))
        for path in unknown[:10]:
            logger.warning("not in the store, skipped: %s", path)
        if len(unknown) > 10:
            logger.warning("... and %d more entries not in the store", len(unknown) - 10)
        if not ids:
            raise UserError(f"none of the {len(unknown)} entries of {args.playlist} is a track of {settings.store}"
                            + ("" if unknown else " (the playlist is empty)"))
        added = store.extend(ids, n=args.n, mode=args.mode, where=args.where, max_per_artist=args.max_per_artist,
                             max_per_album=args.max_per_album, dedupe=args.dedupe, taste=args.taste)
        taste = taste_line(store, args.taste)
        out_ids = (ids if args.with_playlist else []) + [a.track_id for a in added]
        if args.m3u == "-":
            from store.m3u import m3u_bytes

            sys.stdout.buffer.write(m3u_bytes(store, out_ids))
            return exits.OK
        if args.m3u:
            from store.m3u import write_m3u

            write_m3u(store, out_ids, args.m3u)
            logger.info("wrote %d tracks to %s", len(out_ids), args.m3u)
    if args.json:
        print_json({"playlist": ids, "unknown": unknown, "mode": args.mode, "taste": taste,
                    "added": [{"track_id": a.track_id, "score": round(a.score, 6), **a.track,
                               **({"taste": a.taste.as_json()} if a.taste else {})} for a in added]})
        return exits.OK
    print(f"{len(added)} tracks for {args.playlist} ({len(ids)} tracks in the store"
          + (f", {len(unknown)} not" if unknown else "") + "):")
    for rank, a in enumerate(added, start=1):
        t = a.track
        print(f"{rank:3d}. {a.score:.3f}  #{a.track_id:<6d} {t.get('artist') or '?'} - {t.get('title') or '?'}"
              f"  [{t.get('genre') or '-'}]{why(a.taste)}")
    return exits.OK
