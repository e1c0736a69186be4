"""Mark tracks as disliked. They are never offered again (unless asked for by id) and their neighbours move
down in every list; `--undo` takes it back.
Recorded in the store's listening journal with the time and `cli` as its source (`musicmap taste`
shows, exports and forgets them).

examples:
  musicmap dislike 42 57
  musicmap dislike "miles davis so what"
  musicmap dislike 42 --undo
"""

from __future__ import annotations

import argparse

from ..settings import Settings
from ._feedback import add_event_arguments, record

NAME = "dislike"
HELP = "mark tracks as disliked: never offered again, their neighbours move down"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_event_arguments(p, "disliked")


def run(args: argparse.Namespace, settings: Settings) -> int:
    return record(args, settings, "disliked")
