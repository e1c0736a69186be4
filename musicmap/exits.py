"""The exit codes of every ``musicmap`` command, in one place.

    0    all done
    1    nothing could be done, or a user error (one line on stderr: :mod:`musicmap.cli`)
    2    usage error (a bad flag or combination of flags: argparse's own code)
    3    done, but some items failed (files not indexed, tagged or restored; listed)
    130  interrupted (Ctrl-C); what was finished is saved
    141  stdout closed by its reader (``musicmap sql ... | head``): not an error of ours

A command returns one of these constants, or :func:`outcome` for a run over many items, so each
code is spelled once.
"""

from __future__ import annotations

OK = 0
"""All done."""
FAILED = 1
"""Nothing could be done, or a user error."""
USAGE = 2
"""A usage error; argparse exits with it itself (``parser.error``)."""
PARTIAL = 3
"""Done, but some items failed."""
INTERRUPTED = 130
"""Ctrl-C: 128 + SIGINT, as a shell reports it."""
BROKEN_PIPE = 141
"""The reader of stdout left: 128 + SIGPIPE, as a shell reports it."""


def outcome(failed: int, *, done: int | None = None) -> int:
    """The exit code of a run over many items.

    Parameters
    ----------
    failed : int
        Items that failed (files not indexed, written or restored).
    done : int, optional
        Items that were done (or already were). Given, a run where every item failed and none was
        done is :data:`FAILED`; not given, any failure is :data:`PARTIAL`.

    Returns
    -------
    int
        :data:`OK` when nothing failed, else :data:`PARTIAL` (or :data:`FAILED`, see ``done``).
    """
    if not failed:
        return OK
    return FAILED if done is not None and done == 0 else PARTIAL
