"""Record that a track was skipped, and at which second: a skip before half the track pushes its
neighbours down (skipped twice, more); one after 90 % counts as a play. `--undo` takes back the
last skip recorded.

examples:
  musicmap skipped 42 --at 12
  musicmap skipped 42 --at 12 --of 240
"""

from __future__ import annotations

import argparse

from ..errors import UserError
from ..settings import Settings
from ._feedback import add_event_arguments, record

NAME = "skipped"
HELP = "record that tracks were skipped (at which second)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_event_arguments(p, "skipped")
    p.add_argument("--at", type=float, metavar="S", help="the second it was skipped at (default: unknown, "
                   "counted as an early skip)")
    p.add_argument("--of", dest="duration", type=float, metavar="D", help="the track's length in seconds")


def run(args: argparse.Namespace, settings: Settings) -> int:
    for name, flag in (("at", "--at"), ("duration", "--of")):
        value = getattr(args, name)
        if value is not None and not value >= 0:
            raise UserError(f"{flag} {value}: seconds, 0 or more")
    return record(args, settings, "skipped", seconds=args.at, duration=args.duration)
