"""Find tracks by a description of their sound: "calm piano without drums".

The words are read against the sound tags every indexed track has (MusiCNN's MagnaTagATune and
Million Song Dataset tags, and MAEST's Discogs styles where MAEST made the vectors): tag names in
any inflection, a shipped synonym table ("chill", "orchestral", "upbeat" ...), Discogs genres and
styles, misspellings close to a known word. "no", "not", "without" and "less" turn the rest of their
clause around ("orchestral, no choir"). Each track is scored on its library's own distribution of
each tag (percentiles), the words combined so that all of them count. A word that matches nothing
is said, with the nearest known words. Each result says what matched: word → tags → strength.

--like TRACK re-ranks that track's nearest neighbours by the words: "like this one, but calmer".

examples:
  musicmap find "calm piano without drums"
  musicmap find "upbeat female vocal" -k 25 --max-per-artist 2 --m3u upbeat.m3u
  musicmap find "orchestral, no choir" --where "year < 2000"
  musicmap find "calmer, more piano" --like 42
  musicmap find "dark ambient" --json
"""

from __future__ import annotations

import argparse
import logging
import sys

from store import Store

from .. import exits
from ..errors import UserError
from ..settings import Settings
from ._common import add_json, add_store, add_taste, print_json, taste_line

NAME = "find"
HELP = "find tracks by a description of their sound (\"calm piano without drums\")"
logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("text", metavar="TEXT", nargs="+", help="the sound in words, e.g. \"calm piano without drums\"")
    add_store(p)
    p.add_argument("-k", type=int, default=10, help="number of results (default: 10)")
    p.add_argument("--like", metavar="TRACK",
                   help="a track id, file or artist/title words: its neighbours, re-ranked by the words")
    p.add_argument("--where", metavar="SQL",
                   help="only tracks matching this SQL condition over tracks' columns, e.g. \"genre = 'Jazz'\"")
    p.add_argument("--max-per-artist", dest="max_per_artist", type=int, metavar="N", help="at most N per artist")
    p.add_argument("--max-per-album", dest="max_per_album", type=int, metavar="N", help="at most N per album")
    p.add_argument("--dedupe", action="store_true",
                   help="one version of each song (same artist and title, ignoring Live, Remastered, ...)")
    p.add_argument("--centroid", type=float, default=0.0, metavar="BETA",
                   help="move toward what the best hits sound like: 0 words only (default), 1 sound only")
    p.add_argument("--m3u", metavar="FILE.m3u", help="also write the results as an M3U playlist")
    add_taste(p)
    add_json(p)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.k < 1:
        raise UserError(f"-k {args.k}: must be at least 1")
    text = " ".join(args.text)
    with Store.open(settings.store) as store:
        like = store.resolve_track(args.like) if args.like is not None else None
        found = store.find(text, k=args.k, where=args.where, max_per_artist=args.max_per_artist,
                           max_per_album=args.max_per_album, dedupe=args.dedupe, like=like, centroid=args.centroid,
                           taste=args.taste)
        if found.results:
            taste_line(store, args.taste)
        like_row = store.track(like) if like is not None else None
        if args.m3u and found.results:
            from store.m3u import write_m3u

            write_m3u(store, [r.track_id for r in found.results], args.m3u)
            logger.info("wrote %d tracks to %s", len(found.results), args.m3u)
    if args.json:
        print_json(found.to_dict())
        return exits.OK if found.results else exits.FAILED
    for word, near in found.parsed.unknown:
        print(f"musicmap find: no tag matches \"{word}\""
              + (f" (nearest: {', '.join(near)})" if near else ""), file=sys.stderr)
    if found.reason is not None:
        print(f"musicmap find: {found.reason}", file=sys.stderr)
        return exits.FAILED
    understood = "; ".join(
        ("not " if w.negated else "") + w.text
        + (f" ({w.how})" if w.how not in ("exact", "inflected") else "")
        + " → " + ", ".join(t.label.split("---")[-1] for t, _ in sorted(w.terms.items(), key=lambda x: -abs(x[1]))[:4])
        for w in found.parsed.words)
    head = f"like #{like_row['id']} {like_row.get('artist') or '?'} - {like_row.get('title') or '?'}, " \
        if like_row is not None else ""
    print(f"{head}sounding {understood}:")
    for rank, r in enumerate(found.results, start=1):
        t = r.track
        why = ", ".join(f"{m['word']} {m['strength']:.2f}" for m in r.matched if m["strength"] is not None)
        moved = f"  {r.taste.why}" if r.taste is not None else ""
        print(f"{rank:3d}. {r.score:.3f}  #{r.track_id:<6d} {t.get('artist') or '?'} - {t.get('title') or '?'}"
              f"  [{why}]{moved}")
    if found.untagged:
        print(f"  ({found.untagged} tracks have no sound tags yet and were not searched: run musicmap index again)")
    return exits.OK
