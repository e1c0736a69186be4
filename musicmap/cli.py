"""The ``musicmap`` command: one small module per subcommand in :mod:`musicmap.commands`.

Errors a person can fix (:class:`UserError`, :class:`store.StoreError`,
:class:`indexer.errors.IndexerError`) are caught here, once: one line on stderr, exit 1.
Usage errors exit 2 (argparse). Every exit code is named in :mod:`musicmap.exits`. ``--json``
prints one JSON document on stdout and nothing else there; logs and progress go to stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from store import StoreError

from . import __version__, exits
from .commands import COMMANDS
from .errors import UserError
from .settings import resolve

logger = logging.getLogger("musicmap")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="musicmap",
        description="Explore a music library by how it sounds: index it with MAEST, map it with "
                    "t-SNE, find similar tracks, query it with SQL, browse it in the explorer.",
    )
    parser.add_argument("--version", action="version", version=f"musicmap {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")
        p.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
        p.set_defaults(_module=module, _parser=p)
    return parser


def _setup_logging(args: argparse.Namespace) -> None:
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s" if level > logging.DEBUG
                                           else "%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("numba", "openTSNE", "matplotlib", "werkzeug", "urllib3", "httpx", "filelock", "PIL"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check = getattr(args._module, "check_args", None)
    if check is not None:  # combinations of flags that are usage errors (exit 2, like argparse's own)
        check(args._parser.error, args)
    _setup_logging(args)
    from indexer.errors import IndexerError

    try:
        settings = resolve(args)
        return int(args._module.run(args, settings) or exits.OK)
    except (UserError, StoreError, IndexerError) as exc:
        print(f"musicmap {args.command}: error: {exc}", file=sys.stderr)
        return exits.FAILED
    except KeyboardInterrupt:
        print(f"musicmap {args.command}: interrupted", file=sys.stderr)
        return exits.INTERRUPTED
    except BrokenPipeError:  # e.g. `musicmap sql ... | head`: the reader left, not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return exits.BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
