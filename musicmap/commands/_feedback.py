"""What ``musicmap like``, ``dislike``, ``played`` and ``skipped`` share: one event per track named,
recorded in the store's listening journal (``store/journal.py``), or taken back with ``--undo``."""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from datetime import datetime

from store import Event, Recorded, Store

from .. import exits
from ..errors import UserError
from ..settings import Settings
from ._common import add_json, add_store, print_json

PAST = {"liked": "liked", "disliked": "disliked", "played": "played", "skipped": "skipped"}


def add_event_arguments(p: argparse.ArgumentParser, kind: str) -> None:
    p.add_argument("tracks", metavar="TRACK", nargs="+",
                   help="track ids, files in the store, or artist/title words (each argument one track)")
    add_store(p)
    p.add_argument("--undo", action="store_true",
                   help=f"take back the {kind} event" + ("s" if kind in ("liked", "disliked") else "")
                   + " recorded for the track" + ("" if kind in ("liked", "disliked") else " last"))
    p.add_argument("--when", metavar="TIME", help="when it happened: ISO 8601 (2026-12-01T20:15) or Unix "
                   "seconds (default: now)")
    add_json(p)


def when(text: str | None) -> float | None:
    """``--when`` as Unix seconds (None: now), or a UserError."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise UserError(f"--when {text!r}: ISO 8601 (2026-12-01T20:15) or Unix seconds") from None
        if moment.tzinfo is None:
            moment = moment.astimezone()
        return moment.timestamp()
    if not math.isfinite(value):
        raise UserError(f"--when {text!r}: a finite number of seconds")
    return value


def record(args: argparse.Namespace, settings: Settings, kind: str, *, seconds: float | None = None,
           duration: float | None = None) -> int:
    at = when(args.when)
    with Store.open(settings.store) as store:
        ids = [store.resolve_track(t) for t in args.tracks]
        events = [Event(kind, i, at=at, seconds=seconds, duration=duration, source="cli", undo=args.undo)
                  for i in ids]
        done = store.record(events)
        rows = store.track_rows(ids)
    if args.json:
        print_json({"recorded": [r.as_json() for r in done]})
        return exits.OK
    for r in done:
        print(_line(r, rows.get(r.event.track_id, {})))
    return exits.OK


def _line(r: Recorded, row: Mapping[str, object]) -> str:
    e = r.event
    name = f"#{e.track_id} {row.get('artist') or '?'} - {row.get('title') or '?'}"
    if r.duplicate:
        return f"already recorded: {name}"
    if e.undo:
        if not r.undone:
            return f"nothing to undo: {name} has no {e.kind} event"
        return f"took back {len(r.undone)} {e.kind} event{'s' if len(r.undone) > 1 else ''}: {name}"
    extra = ""
    if e.kind == "played" and e.seconds is not None:
        extra = f" ({e.seconds:.0f} s" + (f" of {e.duration:.0f})" if e.duration else ")")
    elif e.kind == "skipped" and e.seconds is not None:
        extra = f" (at {e.seconds:.0f} s)"
    return f"{PAST[e.kind]}: {name}{extra}"
