"""Your listening journal: what you liked, disliked, played and skipped, recorded by the explorer,
the API, a music player (OpenSubsonic) and `musicmap like`/`dislike`/`played`/`skipped`. It lives
in the store folder (`taste.sqlite`) and never leaves the machine.

Without options: the counts, the most recent events and the tracks you like most. --export writes
every event (CSV, or JSON lines for .jsonl or '-'); --forget forgets a track's events, --forget-all
every event (nothing steers the lists any more).

examples:
  musicmap taste
  musicmap taste --recent 50 --json
  musicmap taste --export my-listening.csv
  musicmap taste --forget 42 "miles davis so what"
  musicmap taste --forget-all
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from datetime import datetime

import pandas as pd

from store import Store

from .. import exits
from ..errors import UserError
from ..settings import Settings
from ._common import add_json, add_store, print_json

NAME = "taste"
HELP = "show, export or forget your likes, dislikes, plays and skips"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_store(p)
    p.add_argument("--recent", type=int, default=10, metavar="N", help="the N most recent events shown (default: 10)")
    p.add_argument("--top", type=int, default=10, metavar="N", help="the N tracks you like most (default: 10)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--export", metavar="FILE", help="write every event: CSV, or JSON lines (.jsonl, or '-')")
    what.add_argument("--forget", metavar="TRACK", nargs="+", help="forget every event of these tracks")
    what.add_argument("--forget-all", dest="forget_all", action="store_true", help="forget every event")
    add_json(p)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.recent < 0 or args.top < 0:
        raise UserError("--recent and --top: 0 or more")
    with Store.open(settings.store) as store:
        if args.forget_all or args.forget:
            ids = None if args.forget_all else [store.resolve_track(t) for t in args.forget]
            gone = store.journal.forget(ids)
            print(f"forgot {gone} events" + ("" if ids is None else f" of {len(ids)} tracks"))
            return exits.OK
        events = store.journal.events()
        if args.export:
            _export(events, args.export)
            return exits.OK
        taste = store.taste()
        ranked = sorted((t for t in taste.tracks.values() if t.weight > 0), key=lambda t: -t.weight)[: args.top]
        recent = events.tail(args.recent) if args.recent else events.iloc[:0]
        rows = store.track_rows([*(t.track_id for t in ranked), *(int(i) for i in recent["track_id"])])
    summary = {**taste.summary(), "journal": str(store.journal.path)}
    if args.json:
        print_json({"summary": summary,
                    "top": [{"track_id": t.track_id, "weight": round(t.weight, 4), "liked": t.liked, "plays": t.plays,
                             "skips": t.skips, **rows.get(t.track_id, {})} for t in ranked],
                    "recent": json.loads(recent.to_json(orient="records"))})
        return exits.OK
    if not taste.events:
        print(f"no events yet in {summary['journal']}: `musicmap like ID`, the explorer's 👍/👎 and its player, "
              "or a music player through OpenSubsonic record them")
        return exits.OK
    print(f"{taste.events} events: {summary['liked']} liked, {summary['disliked']} disliked, "
          f"{summary['plays']} plays, {summary['skips']} skips, over {summary['tracks']} tracks")
    if ranked:
        print("most liked:")
        for t in ranked:
            print(f"  {t.weight:5.2f}  #{t.track_id:<6d} {_name(rows.get(t.track_id, {}))}"
                  + ("  liked" if t.liked else "") + (f"  {t.plays} plays" if t.plays else "")
                  + (f"  {t.skips} skips" if t.skips else ""))
    if len(recent):
        print("recent:")
        for e in recent.itertuples():
            when = datetime.fromtimestamp(float(e.at)).strftime("%Y-%m-%d %H:%M")
            what = f"undo ({int(e.undoes)})" if e.kind == "undo" else e.kind
            print(f"  {when}  {what:<9s} #{int(e.track_id):<6d} {_name(rows.get(int(e.track_id), {}))}  [{e.source}]")
    return exits.OK


def _name(row: Mapping[str, object]) -> str:
    return f"{row.get('artist') or '?'} - {row.get('title') or '?'}" if row else "(not in the library now)"


def _export(events: pd.DataFrame, target: str) -> None:
    if target == "-" or target.endswith(".jsonl"):
        text = events.to_json(orient="records", lines=True) if len(events) else ""
        if target == "-":
            sys.stdout.write(text)
        else:
            with open(target, "w", encoding="utf-8") as fh:
                fh.write(text)
    else:
        events.to_csv(target, index=False)
    if target != "-":
        print(f"wrote {len(events)} events to {target}")
