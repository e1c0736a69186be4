"""Process settings for neural-network inference on the CPU.

:func:`keep_freed_memory`: a model's forward pass makes large temporaries (a MAEST block's MLP
activation for 4 windows is 59 MB; a MusiCNN front-end convolution output 9 MB per patch). glibc
serves blocks above its ``mmap`` threshold (at most 32 MB by default) with fresh pages from the
kernel and returns them on ``free``, so every call pays page faults for memory it had a moment
before: measured here, a GELU over 4,800 × 3,072 floats took 23 ms that way and 5.8 ms with the
memory kept; MusiCNN's forward pass ran about 2× faster. Raising the thresholds keeps freed blocks
in the process for reuse. The cost: the process's resident memory stays at its peak.
"""

from __future__ import annotations

import ctypes
import logging
import sys

logger = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_done = False


def keep_freed_memory() -> bool:
    """Make glibc keep and reuse large freed blocks (see the module docstring). Once per process;
    True when it took effect (Linux with glibc), False elsewhere."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1))
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return False
    _done = ok
    logger.debug("glibc keeps freed memory for reuse: %s", ok)
    return ok
