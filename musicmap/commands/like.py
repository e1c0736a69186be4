"""Mark tracks as liked. Their neighbours move up in every list (similar, extend, path, find,
mixes); `--undo` takes it back.
Recorded in the store's listening journal with the time and `cli` as its source (`musicmap taste`
shows, exports and forgets them).

examples:
  musicmap like 42 57
  musicmap like "miles davis so what"
  musicmap like 42 --undo
"""

from __future__ import annotations

import argparse

from ..settings import Settings
from ._feedback import add_event_arguments, record

NAME = "like"
HELP = "mark tracks as liked: their neighbours move up in every list"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_event_arguments(p, "liked")


def run(args: argparse.Namespace, settings: Settings) -> int:
    return record(args, settings, "liked")
