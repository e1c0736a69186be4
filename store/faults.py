"""Fault points for the reliability harness (``tests/reliability/``, ``docs/reliability.md``).

Two environment variables, read only by these functions and never set outside the harness:

``MUSICMAP_CRASH_AT=point[:n]``
    the process kills itself with SIGKILL the ``n``-th time (default: the first) it reaches ``point``:
    a crash at an exact moment, which a timer cannot aim at.
``MUSICMAP_FAIL_AT=point[:n][+]``
    ``OSError(ENOSPC)`` ("No space left on device") is raised there instead: a full disk at that
    write (with ``+``, at every later one too, as a disk that stays full).

Points: ``duckdb-commit`` (a transaction's statements are done, COMMIT is next), ``faiss-write``
(the FAISS index is in its temporary file, not yet renamed into place), ``faiss-sidecar`` (renamed,
its sidecar not yet written), ``json-write`` (a JSON file such as the manifest, in its temporary
file). Unset, each point costs one dictionary lookup.
"""

from __future__ import annotations

import errno
import os
import signal

POINTS = ("duckdb-commit", "faiss-write", "faiss-sidecar", "json-write")
_seen: dict[tuple[str, str], int] = {}


def _due(variable: str, point: str) -> bool:
    spec = os.environ.get(variable)
    if not spec:
        return False
    name, _, nth = spec.partition(":")
    if name != point:
        return False
    key = (variable, point)
    _seen[key] = _seen.get(key, 0) + 1
    if nth.endswith("+"):
        return _seen[key] >= int(nth[:-1] or 1)
    return _seen[key] == int(nth or 1)


def fault_point(point: str) -> None:
    """Crash or fail here when the harness asked for ``point`` (see the module's doc)."""
    if _due("MUSICMAP_CRASH_AT", point):
        if os.getpgrp() == os.getpid():  # a process group of its own (the harness starts it so): its
            os.killpg(os.getpid(), signal.SIGKILL)  # decode workers die with it, as in a power cut
        os.kill(os.getpid(), signal.SIGKILL)
    if _due("MUSICMAP_FAIL_AT", point):
        raise OSError(errno.ENOSPC, f"No space left on device (simulated at {point})")
