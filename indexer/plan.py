"""How long an index run will take, said before the work starts (``musicmap index`` and ``--plan``).

The plan counts the files still to index (unchanged ones cost nothing), their hours of audio
(from the tags' lengths; the header, else the median, where a file has none) and the windows the
model will run, then times this machine: the model on a few windows of the real size (random
input: speed does not depend on content) and the decoder on a few of the files themselves.

    estimate = windows / model rate + audio seconds / front-end rate
               + audio seconds / decode rate / decode workers sharing the cores

The decoders run in worker processes beside the model; on a machine with as many cores as the
model uses threads they take CPU time from it, hence the decode term. Checked against real runs by
``benchmarks/bench_plan.py`` (docs/benchmarks.md has the figures).
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .cpu import available_cores

logger = logging.getLogger(__name__)

CALIBRATION_SECONDS = 1.5
"""The model is timed on up to 3 batches while this long has not passed (at least one), after a
warm-up; the median batch counts. MAEST's batch of 4 × 30-s windows takes 2–5 s here, so one;
MusiCNN's 16 patches 0.4 s, so three."""
DECODE_SAMPLE_FILES = 3


@dataclass(frozen=True)
class Estimate:
    """The time one set of settings will take."""

    label: str
    windows: int
    windows_per_s: float
    """The model alone, measured here."""
    seconds: float


@dataclass
class Plan:
    """What an index run has to do and how long it should take here."""

    files: int
    unchanged: int
    audio_seconds: float
    unit: str
    """What the model runs on: "30-s windows", "3-s patches" or "tracks"."""
    decode_audio_s_per_s: float
    decode_workers: int
    estimates: list[Estimate] = field(default_factory=list)
    sharing: str | None = None
    """How the run shares the machine (``index --background``/``--cores``: the cores it may use,
    its priorities), None when it takes the whole machine. The model and decoder are timed under it."""

    @property
    def to_index(self) -> int:
        return self.files - self.unchanged

    def to_dict(self) -> dict[str, Any]:
        return {"files": self.files, "unchanged": self.unchanged, "to_index": self.to_index,
                "audio_hours": round(self.audio_seconds / 3600, 3), "unit": self.unit,
                "decode_audio_s_per_s": round(self.decode_audio_s_per_s, 1), "decode_workers": self.decode_workers,
                "estimates": [{"label": e.label, "windows": e.windows, "windows_per_s": round(e.windows_per_s, 3),
                               "seconds": round(e.seconds, 1)} for e in self.estimates],
                "sharing": self.sharing}

    def describe(self) -> str:
        lines = [f"plan: {self.to_index} files to index ({self.unchanged} unchanged), "
                 f"{self.audio_seconds / 3600:.2f} hours of audio"]
        for e in self.estimates:
            lines.append(f"  {e.label}: {e.windows:,} {self.unit}, the model {e.windows_per_s:.2f}/s here "
                         f"→ about {clock(e.seconds)}")
        if self.sharing:
            lines.append(f"  timed on {self.sharing}" + ("; longer while other work keeps the cores busy"
                                                            if "lowest" in self.sharing else ""))
        return "\n".join(lines)


def clock(seconds: float) -> str:
    whole = max(0, round(seconds))
    if whole >= 3600:
        return f"{whole // 3600} h {whole % 3600 // 60:02d} min"
    return f"{whole // 60} min {whole % 60:02d} s" if whole >= 60 else f"{whole} s"


def audio_seconds(paths: Sequence[str | Path]) -> list[float | None]:
    """Each file's length from its tags (mutagen), else its header (soundfile); None if unknown."""
    import mutagen

    from .decode import probe_seconds

    out: list[float | None] = []
    for path in paths:
        length: float | None = None
        try:
            info: Any = getattr(mutagen.File(path), "info", None)
            length = float(info.length) if info is not None and info.length else None
        except Exception:  # a file mutagen cannot parse: the header, else unknown
            length = None
        out.append(length if length else probe_seconds(path))
    return out


def windows_of(embedder: Any, seconds: float) -> int:
    """How many model windows a track of ``seconds`` makes for ``embedder`` (its budget included)."""
    kind = embedder.info.kind
    if kind == "maest":
        from .maest import frontend

        total = max(frontend.n_frames(int(seconds * frontend.SAMPLE_RATE)), frontend.PATCH)
        count = len(frontend.window_starts(total, embedder.max_length))
    elif kind == "musicnn":
        from .musicnn import frontend as patches

        count = len(patches.patch_starts(int(seconds * patches.SAMPLE_RATE) // patches.HOP + 1))
    else:
        return 1
    budget = getattr(embedder, "max_windows", None)
    return min(count, budget) if budget else count


def model_rate(embedder: Any) -> float:
    """Windows per second of ``embedder``'s model alone on full-size random windows, measured now."""
    kind = embedder.info.kind
    rng = np.random.default_rng(0)
    if kind == "maest":
        batch = rng.standard_normal((embedder.batch_size, embedder.max_length, 96)).astype(np.float32)

        def run() -> None:
            embedder.runner.run(batch)
        per_call = embedder.batch_size
        embedder.runner.run(batch[:1])  # warm-up on one window (thread pools, kernels)
    elif kind == "musicnn":
        from .musicnn.model import PATCH_FRAMES

        batch = rng.uniform(0, 3, (embedder.batch_size, PATCH_FRAMES, 96)).astype(np.float32)

        def run() -> None:
            embedder.run(batch)
        per_call = embedder.batch_size
    else:
        audio = (0.1 * rng.standard_normal(embedder.sample_rate * 180)).astype(np.float32)  # features: ≤ 3 min

        def run() -> None:
            embedder.embed(audio)
        per_call = 1
    if kind != "maest":
        run()  # warm-up
    started = time.perf_counter()
    times: list[float] = []
    while len(times) < 3 and (not times or time.perf_counter() - started < CALIBRATION_SECONDS):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return per_call / max(statistics.median(times), 1e-9)  # the median call: robust to a slow moment


def decode_rate(paths: Sequence[str | Path], sr: int) -> tuple[float, np.ndarray | None]:
    """Audio seconds decoded per second here, on a few of ``paths`` (spread over the list), and
    the longest of the decoded tracks (to time the front end on)."""
    from .decode import load_audio
    from .errors import FileFailure

    if not paths:
        return float("inf"), None
    picks = [paths[int(i)] for i in np.linspace(0, len(paths) - 1, min(DECODE_SAMPLE_FILES, len(paths)))]
    decoded = spent = 0.0
    longest: np.ndarray | None = None
    for path in picks:
        started = time.perf_counter()
        try:
            audio = load_audio(path, sr)
        except (FileFailure, OSError):
            continue
        spent += time.perf_counter() - started
        decoded += len(audio) / sr
        if longest is None or len(audio) > len(longest):
            longest = audio
    return (decoded / spent if spent > 0 else float("inf")), longest


def frontend_rate(embedder: Any, audio: np.ndarray | None) -> float:
    """Audio seconds per second of the model's front end (the log-mel bands, computed for the
    whole track whatever the window budget); infinite for ``features`` (part of its model time)."""
    kind = embedder.info.kind
    if audio is None or kind not in ("maest", "musicnn"):
        return float("inf")
    if kind == "maest":
        from .maest.frontend import essentia_logmel as bands
    else:
        from .musicnn.frontend import logmel as bands
    excerpt = audio[: 16_000 * 120]
    bands(excerpt[:16_000])  # warm-up: the first call imports librosa and builds the mel bands
    started = time.perf_counter()
    bands(excerpt)
    return len(excerpt) / 16_000 / max(time.perf_counter() - started, 1e-9)


def make_plan(paths: Sequence[str | Path], unchanged: int, embedders: Sequence[tuple[str, Any]], *,
              workers: int) -> Plan:
    """The plan for indexing ``paths`` (the files still to do; ``unchanged`` more are skipped) with
    each ``(label, embedder)``: the first is the run's own settings, the others alternatives."""
    lengths = audio_seconds(paths)
    known = [s for s in lengths if s]
    fill = statistics.median(known) if known else 180.0
    seconds = [s if s else fill for s in lengths]
    first = embedders[0][1]
    cores = available_cores()  # what --cores left this process
    decode, sample = decode_rate(paths, first.sample_rate)
    # Decoding shares the cores with the model: its CPU time counts, spread over the workers that
    # can run beside the model's threads.
    sharing = max(1, min(workers, cores))
    unit = {"maest": "30-s windows", "musicnn": "3-s patches"}.get(first.info.kind, "tracks")
    if first.info.kind == "maest":
        unit = f"{first.max_length * 256 / 16000:.0f}-s windows"
    plan = Plan(files=len(paths) + unchanged, unchanged=unchanged, audio_seconds=float(sum(seconds)), unit=unit,
                decode_audio_s_per_s=decode, decode_workers=sharing)
    for label, embedder in embedders:
        windows = sum(windows_of(embedder, s) for s in seconds)
        rate = model_rate(embedder)
        decoding = plan.audio_seconds / decode if decode != float("inf") else 0.0
        bands = plan.audio_seconds / frontend_rate(embedder, sample)  # in the main process, beside the model
        if getattr(embedder, "parallel_safe", False):  # embedded inside the decode workers (features)
            total = (windows / rate + decoding) / sharing
        else:
            total = windows / rate + bands + decoding / sharing
        plan.estimates.append(Estimate(label, windows, rate, total))
    return plan
