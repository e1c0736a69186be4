"""Record that a track was played (by a player musicmap does not see, or by a script): heard to at
least half, or 4 minutes, it counts as a play that pulls its neighbours up; less, it is kept but
does not count. `--undo` takes back the last play recorded.

examples:
  musicmap played 42
  musicmap played 42 --seconds 95 --of 210
  musicmap played ~/Music/song.flac --when 2026-12-01T20:15
"""

from __future__ import annotations

import argparse

from ..errors import UserError
from ..settings import Settings
from ._feedback import add_event_arguments, record

NAME = "played"
HELP = "record that tracks were played (how long, of how long)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_event_arguments(p, "played")
    p.add_argument("--seconds", type=float, metavar="S", help="seconds heard (default: the whole track)")
    p.add_argument("--of", dest="duration", type=float, metavar="D", help="the track's length in seconds")


def run(args: argparse.Namespace, settings: Settings) -> int:
    for name in ("seconds", "duration"):
        value = getattr(args, name)
        if value is not None and not value >= 0:
            raise UserError(f"--{'of' if name == 'duration' else name} {value}: seconds, 0 or more")
    return record(args, settings, "played", seconds=args.seconds, duration=args.duration)
