"""The CPU a model runs on: process settings for inference, and which precision to use.

:func:`auto_precision` picks ``--precision auto``'s precision from what this machine has and a
one-time measurement (:func:`bf16_speedup`, cached per machine). Never a hard-coded choice: the
machines this project runs on differ between sessions (one had no native bf16, where bf16 was
5× slower than fp32; AMD EPYCs with AVX-512 BF16, where it measured 2.2–2.4× faster, and a
report of 4× on another).

:func:`keep_freed_memory`: a model's forward pass makes large temporaries (a MAEST block's MLP
activation for 4 windows is 59 MB; a MusiCNN front-end convolution output 9 MB per patch). glibc
serves blocks above its ``mmap`` threshold (at most 32 MB by default) with fresh pages from the
kernel and returns them on ``free``, so every call pays page faults for memory it had a moment
before: measured here, a GELU over 4,800 × 3,072 floats took 23 ms that way and 5.8 ms with the
memory kept; MusiCNN's forward pass ran about 2× faster. Raising the thresholds keeps freed blocks
in the process for reuse. The cost: the process's resident memory stays at its peak.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from store.glibc import glibc

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
    libc = glibc()
    if libc is None:
        return False
    try:
        ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1))
    except AttributeError:  # a libc.so.6 without mallopt: not glibc
        return False
    _done = ok
    logger.debug("glibc keeps freed memory for reuse: %s", ok)
    return ok


# --- precision ---------------------------------------------------------------------------------

BF16_MIN_SPEEDUP = 1.3
"""bf16 is chosen on a CPU only where its measured GEMM is at least this much faster than fp32
(AVX-512 BF16 measured 2.2–2.4× on AMD EPYCs; emulated bf16, on CPUs without it, is slower than
fp32)."""
_GEMM = (1024, 768, 3072)  # rows × in × out: one MAEST MLP layer for a window's tokens


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def native_bf16() -> bool:
    """Whether the CPU computes bf16 natively: AVX-512 BF16 or AMX (x86)."""
    flags = cpu_flags()
    return bool({"avx512_bf16", "amx_bf16"} & flags)


def _cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "musicmap" / "cpu.json"


def gemm_rates(*, repeats: int = 3) -> dict[str, float]:
    """This machine's GEMM throughput per precision, GFLOP/s (``fp32``, ``bf16``, ``int8``), on a
    1024 × 768 × 3072 product (one MAEST MLP layer), best of ``repeats``; no cache."""
    import time

    import torch

    m, k, n = _GEMM
    flop = 2.0 * m * k * n
    out: dict[str, float] = {}
    a = torch.randn(m, k)
    b = torch.randn(k, n)
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        x, w = a.to(dtype), b.to(dtype)

        def product(x: torch.Tensor = x, w: torch.Tensor = w) -> object:
            return torch.mm(x, w)

        product()
        best = min(_timed(product, time.perf_counter) for _ in range(repeats))
        out[name] = round(flop / best / 1e9, 1)
    from .maest.int8 import Int8Linear

    layer = Int8Linear(torch.nn.Linear(k, n))
    with torch.inference_mode():
        layer(a)
        best = min(_timed(lambda: layer(a), time.perf_counter) for _ in range(repeats))
    out["int8"] = round(flop / best / 1e9, 1)
    return out


def _timed(fn: Callable[[], object], clock: Callable[[], float]) -> float:
    started = clock()
    fn()
    return clock() - started


def bf16_speedup() -> float:
    """bf16 GEMM speed over fp32 on this machine, measured once (about a second) and cached in
    ``~/.cache/musicmap/cpu.json`` per CPU, core count and torch version."""
    import torch

    key = f"{cpu_name()}|{os.cpu_count()}|{torch.get_num_threads()}|{torch.__version__}"
    path = _cache_file()
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cached = {}
    entry = cached.get(key) if isinstance(cached, dict) else None
    if isinstance(entry, dict) and "bf16_speedup" in entry:
        return float(entry["bf16_speedup"])
    rates = gemm_rates()
    speedup = round(rates["bf16"] / rates["fp32"], 2)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        cached = cached if isinstance(cached, dict) else {}
        cached[key] = {"bf16_speedup": speedup, "gemm_gflops": rates}
        path.write_text(json.dumps(cached, indent=1), encoding="utf-8")
    except OSError as exc:  # a read-only home: measure again next time
        logger.debug("cannot cache the CPU measurement in %s: %s", path, exc)
    logger.info("measured this CPU once: bf16 GEMM %.2f× fp32 (%s)", speedup, rates)
    return speedup


@dataclass(frozen=True)
class Precision:
    """The precision a model runs at, and why."""

    name: str
    reason: str


def auto_precision(device: str) -> Precision:
    """The fastest precision that keeps track vectors within cosine 0.9999 of fp32 on ``device``:

    - ``cuda``: fp16 (measured on an H100: 741 windows/s with styles vs 102 in fp32, cosine 1.0);
    - ``mps``: fp32 (not measured on Apple hardware; fp32 is the safe choice);
    - ``cpu``: bf16 where the CPU has native bf16 (AVX-512 BF16 or AMX) *and* a one-time
      micro-benchmark confirms it is at least :data:`BF16_MIN_SPEEDUP` × faster; else fp32.
      (MAEST in bf16 measured cosine 0.99998 to fp32 on this machine.)
    """
    if device == "cuda":
        return Precision("fp16", "CUDA: half precision")
    if device != "cpu":
        return Precision("fp32", f"{device}: fp32 (other precisions not measured there)")
    if not native_bf16():
        return Precision("fp32", "this CPU has no native bf16 (AVX-512 BF16 or AMX)")
    speedup = bf16_speedup()
    if speedup >= BF16_MIN_SPEEDUP:
        return Precision("bf16", f"native bf16 on this CPU, measured {speedup:.1f}× fp32")
    return Precision("fp32", f"bf16 measured only {speedup:.1f}× fp32 here")


# --- running quietly beside the machine's owner (index --background, --cores) -------------------

BACKGROUND_NICE = 19
"""The lowest CPU priority: the scheduler gives the run only what nothing else wants."""
_IOPRIO_SET = {"x86_64": 251, "aarch64": 30, "i386": 289, "i686": 289}
"""``ioprio_set``'s system call number (no libc wrapper exists)."""
_IOPRIO_CLASS_IDLE, _IOPRIO_CLASS_SHIFT, _IOPRIO_WHO_PROCESS = 3, 13, 1


def available_cores() -> int:
    """The cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def parse_cores(text: str, available: int | None = None) -> int:
    """``--cores``: a number of cores (``2``) or a share of them (``50%``, at least one), checked
    against what this machine has. Raises ValueError with the sentence to show."""
    have = available if available is not None else available_cores()
    raw = text.strip()
    try:
        if raw.endswith("%"):
            share = float(raw[:-1])
            if not 0 < share <= 100:
                raise ValueError
            return max(1, int(have * share / 100))
        n = int(raw)
    except ValueError:
        raise ValueError(f"--cores {text}: give a number of cores (1 to {have}) or a share such as 50%") from None
    if not 1 <= n <= have:
        raise ValueError(f"--cores {text}: this machine lets this process use {have} cores; give 1 to {have}")
    return n


@dataclass(frozen=True)
class Quiet:
    """How an index run shares the machine: the cores it may use and its priorities."""

    cores: int
    of: int
    background: bool
    nice: int | None = None
    """The niceness set (None: unchanged)."""
    io_idle: bool = False
    """Whether the I/O priority is the idle class (Linux)."""

    def to_dict(self) -> dict[str, object]:
        return {"cores": self.cores, "of_cores": self.of, "background": self.background, "nice": self.nice,
                "io_idle": self.io_idle}

    def describe(self) -> str:
        parts = [f"{self.cores} of {self.of} cores"]
        if self.background:
            parts.append(f"lowest CPU priority (nice {self.nice})" if self.nice is not None
                         else "CPU priority unchanged (could not lower it)")
            parts.append("idle I/O priority" if self.io_idle else "I/O priority unchanged (not Linux)")
        return ", ".join(parts)


def _io_idle() -> bool:
    import ctypes
    import platform

    number = _IOPRIO_SET.get(platform.machine())
    if number is None:
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        value = _IOPRIO_CLASS_IDLE << _IOPRIO_CLASS_SHIFT
        return int(libc.syscall(number, _IOPRIO_WHO_PROCESS, 0, value)) == 0
    except (OSError, AttributeError):
        return False


def run_quietly(*, cores: int | None = None, background: bool = False) -> Quiet:
    """Confine this process (and the decode workers it starts: they inherit all of it) to ``cores``
    cores — its affinity, torch's threads and the BLAS libraries' — and with ``background`` lower
    its CPU priority to the lowest and its I/O priority to idle. ``background`` alone uses half the
    cores (at least one). Returns what was done; never raises for a priority it could not lower."""
    have = available_cores()
    n = cores if cores is not None else (max(1, have // 2) if background else have)
    n = max(1, min(n, have))
    if n < have:
        try:
            os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:n])
        except (AttributeError, OSError) as exc:  # not Linux: threads are capped below all the same
            logger.debug("could not set the CPU affinity: %s", exc)
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = str(n)  # decode workers are spawned: they read these at start
        import torch

        torch.set_num_threads(n)
    nice = None
    io_idle = False
    if background:
        try:
            nice = os.nice(max(0, BACKGROUND_NICE - os.nice(0)))
        except OSError:
            nice = None
        io_idle = _io_idle()
    quiet = Quiet(cores=n, of=have, background=background, nice=nice, io_idle=io_idle)
    logger.debug("running on %s", quiet.describe())
    return quiet
