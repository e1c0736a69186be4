"""glibc, when this process has it: the C library's memory calls that Python does not offer.

The indexer raises glibc's ``mmap`` and trim thresholds so a model's large temporaries are
reused, not faulted in afresh on every forward pass (``indexer.cpu.keep_freed_memory``); the
explorer gives the heap back to the system after building its map
(``explorer.mapdata.release_unused_memory``). Both want the same library, found the same way; it
lives here because the explorer may import only ``store``.
"""

from __future__ import annotations

import ctypes
import sys
from functools import cache


@cache
def glibc() -> ctypes.CDLL | None:
    """The process's glibc (``libc.so.6``), loaded once; None where there is none (macOS, Windows, a
    musl Linux such as Alpine): callers then do without, and nothing is raised."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # musl and other C libraries have no libc.so.6
        return None
