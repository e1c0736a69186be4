"""Helpers shared by the subcommand modules."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from ..settings import Settings, help_for

if TYPE_CHECKING:
    from indexer.embedders.base import Embedder
    from store import Store


def add_store(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", metavar="DIR", help=help_for("store"))


def add_tag_options(parser: argparse.ArgumentParser) -> None:
    """``--no-tags`` and ``--tag-patches``: the sound-tag stage at the end of ``index`` and ``ingest``."""
    parser.add_argument("--no-tags", dest="tags", action="store_false",
                        help="do not add sound tags (by default tracks without them are tagged by MusiCNN's two "
                             "taggers at the end: the words musicmap find reads)")
    parser.add_argument("--tag-patches", dest="tag_patches", type=int, default=16, metavar="N",
                        help="tag each track from at most N 3-s patches spread over it (default: 16; fewer is "
                             "faster)")


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")


class Progress:
    """Progress on stderr: count, files/s, audio hours/s and ETA.

    On a terminal it redraws one line (at most every ``every`` seconds); when stderr is not a
    terminal (a log, CI) or with ``--quiet`` it stays silent and the summary says it all.
    """

    def __init__(self, label: str, *, enabled: bool = True, every: float = 0.5,
                 total_audio: float | None = None, planned_seconds: float | None = None) -> None:
        self.label = label
        self.enabled = enabled and sys.stderr.isatty()
        self.every = every
        self.total_audio = total_audio
        """Seconds of audio the run will process (from its plan): the ETA then follows the audio
        done, not the file count (files differ in length by 100×)."""
        self.planned_seconds = planned_seconds
        """The plan's estimate of the whole run: early on (when a few files say little) the ETA
        leans on it, then on the rate observed (:meth:`eta`)."""
        self.start = time.monotonic()
        self.last = 0.0

    def eta(self, done: int, total: int, audio_seconds: float, now: float) -> float:
        """Seconds left: by audio when the run's total audio is known, else by files; with a plan,
        blended from the plan's remaining time (weight 1 at the start) to the observed rate's
        (weight 1 from half-way on)."""
        elapsed = max(now - self.start, 1e-6)
        if self.total_audio and audio_seconds > 0:
            share = min(audio_seconds / self.total_audio, 1.0)
            observed = elapsed * (1.0 - share) / share
            if self.planned_seconds:
                weight = min(1.0, 2.0 * share)
                return weight * observed + (1.0 - weight) * self.planned_seconds * (1.0 - share)
            return observed
        rate = done / elapsed
        return (total - done) / rate if rate > 0 else 0.0

    def __call__(self, done: int, total: int, _item: str = "", audio_seconds: float = 0.0) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self.last < self.every and done < total):
            return
        self.last = now
        elapsed = max(now - self.start, 1e-6)
        rate = done / elapsed
        eta = self.eta(done, total, audio_seconds, now)
        audio = f"  {audio_seconds / 3600 / elapsed:.2f} audio-h/s" if audio_seconds else ""
        line = (f"  {self.label} {done}/{total}  {rate:.1f}/s{audio}  "
                f"ETA {int(eta) // 3600}:{int(eta) % 3600 // 60:02d}:{int(eta) % 60:02d}")
        sys.stderr.write("\r" + line + ("\n" if done >= total else ""))
        sys.stderr.flush()


def print_json(obj: Any) -> None:
    """Write ``obj`` as the one JSON document on stdout."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str, ensure_ascii=False) + "\n")


def store_embedder(store: Store, settings: Settings) -> Embedder:
    """The store's own model, set up exactly as its tracks were embedded (same options, same hub
    commit), to embed a file from outside the library."""
    from indexer.embedders import load_embedder

    model = store.manifest.model
    options = dict(model.extra.get("options", {}))
    requested = options.pop("precision_requested", None)
    if requested == "auto":  # precision is a property of the machine, not of the store's model
        options["precision"] = "auto"
    for key in ("vector", "pooling") if model.kind == "musicnn" else ():
        options.pop(key, None)  # fixed by the model name (and checked by the manifest)
    options["keep_windows"] = False
    options["revision"] = model.revision  # the commit the store's vectors came from (hub ids)
    return load_embedder(model.name, device=settings.device, batch_size=settings.batch_size, **options)


def run_settings(settings: dict[str, Any] | None) -> str:
    """How an index run ran the model, in a few words: ``bf16 (auto), patchout 0.5, ≤ 8 windows``."""
    if not settings:
        return ""
    parts = []
    if settings.get("precision"):
        auto = settings.get("precision_requested") == "auto"
        parts.append(f"{settings['precision']}{' (auto)' if auto else ''}")
    if settings.get("fast"):
        parts.append("--fast")
    if settings.get("patchout"):
        parts.append(f"patchout {settings['patchout']:g}")
    if settings.get("max_windows"):
        parts.append(f"≤ {settings['max_windows']} windows a track")
    if settings.get("styles") is False:
        parts.append("no styles")
    if settings.get("background"):
        parts.append("in the background")
    if settings.get("cores") and settings.get("of_cores") and settings["cores"] < settings["of_cores"]:
        parts.append(f"on {settings['cores']} of {settings['of_cores']} cores")
    return ", ".join(parts)


def add_taste(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-taste", dest="taste", action="store_false",
                        help="plain similarity: leave the likes, dislikes, plays and skips you recorded out "
                             "(by default they steer the list once there are any)")


def taste_line(store: Store, on: bool) -> dict[str, int] | None:
    """Say on stderr that the person's taste steers the list (and how to turn it off); return its
    summary for ``--json`` (None when it does not steer)."""
    import logging

    steer = store.steer() if on else None
    if steer is None:
        return None
    s = steer.taste.summary()
    logging.getLogger("musicmap").info(
        "steered by your taste (%d liked, %d disliked, %d plays, %d skips; --no-taste for plain similarity)",
        s["liked"], s["disliked"], s["plays"], s["skips"])
    return s


def why(note: object) -> str:
    """Two spaces and the taste's reason for moving a result, or nothing."""
    text = getattr(note, "why", None)
    return f"  {text}" if text else ""
