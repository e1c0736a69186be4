"""Sound tags for every track, whatever made its vectors: the words ``musicmap find`` reads.

Two trained taggers whose weights arrive in the ``musicnn`` package run beside the store's own
model: MusiCNN on MagnaTagATune (``musicnn-mtt``: 50 tags such as piano, strings, no vocals, fast)
and on the Million Song Dataset's last.fm tags (``musicnn-msd``: 50 tags such as chillout,
female vocalists, sad). Their probabilities (mean over :data:`MAX_PATCHES` 3-s patches spread
evenly over the track) go to the ``sound_tags`` table.

The stage runs at the end of every ``musicmap index`` run over the tracks that have a vector but
no tags yet (so an existing store gains them on its next run, and nothing is embedded again). When
the store's own model is one of the taggers (``--model musicnn-mtt``), its stored styles are its
tags and are copied, not computed twice. A file that cannot be tagged is reported and tried again
next run; it never fails the run. ``musicmap ingest`` (and so ``index --engine ray``) runs the
same stage over the files the ingesting machine can read; a track whose file it cannot reach is
counted as ``unreachable`` and tagged by a later run that can. Without the ``musicnn`` package the
stage is skipped with a message saying how to install it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from store import ModelInfo, WritableStore

from .decode import AudioSource
from .embedders.base import Embedding
from .errors import IndexerError

logger = logging.getLogger(__name__)

TAGGERS = ("musicnn-mtt", "musicnn-msd")
"""The taggers that run beside every model, by ``sound_tags.tagger``."""
MAX_PATCHES = 16
"""3-s patches a track is tagged from (48 s spread evenly over it): tags describe the whole track
at a small, fixed cost per track (measured: ``benchmarks/bench_tags.py``)."""
BATCH_TRACKS = 8
"""Decoded tracks tagged together."""
SEP = "\t"
"""Between tagger and label in the keys of a tagging :class:`Embedding`'s ``styles``."""


class Tagger:
    """The taggers of :data:`TAGGERS` (or some of them) as one embedder-shaped object: ``embed``
    gives an :class:`Embedding` without a vector whose ``styles`` are ``"tagger<TAB>label"`` →
    probability. Shaped so, it rides the indexer's decoding (worker pool, long files streamed)."""

    parallel_safe = False

    def __init__(self, models: dict[str, object], *, precision: str = "fp32") -> None:
        from .embedders.musicnn import MusicnnEmbedder

        self.models: dict[str, MusicnnEmbedder] = {n: m for n, m in models.items()
                                                    if isinstance(m, MusicnnEmbedder)}
        self.names = tuple(self.models)
        self.sample_rate = next(iter(self.models.values())).sample_rate if self.models else 16_000
        self.info = ModelInfo(name="tags", id="tags", kind="tagger", label="MusiCNN taggers", dimension=0)
        self.model_seconds = 0.0
        self.precision = precision

    @classmethod
    def load(cls, names: Sequence[str] = TAGGERS, *, max_patches: int = MAX_PATCHES,
             precision: str = "fp32") -> Tagger:
        """The taggers ``names`` from the installed ``musicnn`` package, run in ``precision``
        (``fp32``, the default, or ``bf16``). bf16 was measured 1.3× faster on an AMX Xeon, moving no
        probability by more than 0.004 (``benchmarks/bench_find.py tagging``), but is not the default:
        oneDNN's bf16 convolutions on such CPUs return garbage for some small shapes (MAEST's patch
        embedding, ``benchmarks/probe_bf16_nan.py``), and a wrong tag would be silent where a NaN is not.

        Raises
        ------
        IndexerError
            The package (or torch) is missing or a checkpoint is damaged; the message says the fix.
        """
        try:
            from .embedders.musicnn import MusicnnEmbedder
        except ImportError as exc:  # torch missing: the `features`-only install
            raise IndexerError(f"the sound taggers need torch ({exc}); install musicmap with its models") from exc
        if max_patches < 1:
            raise IndexerError(f"--tag-patches {max_patches}: give 1 or more")
        if precision not in ("fp32", "bf16"):
            raise IndexerError(f"tagger precision {precision!r}: choose fp32 or bf16")
        return cls({n: MusicnnEmbedder.load(n, keep_windows=False, max_windows=max_patches) for n in names},
                   precision=precision)

    def _tags(self, run: Callable[[object], Embedding]) -> Embedding:
        import torch

        started = time.perf_counter()
        styles = {}
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            for name, model in self.models.items():
                for label, p in run(model).styles.items():
                    styles[f"{name}{SEP}{label}"] = p
        self.model_seconds += time.perf_counter() - started
        return Embedding(vector=np.zeros(0, np.float32), n_windows=0, styles=styles)

    def embed(self, audio: np.ndarray) -> Embedding:
        return self.embed_many([audio])[0]

    def embed_many(self, audios: Sequence[np.ndarray]) -> list[Embedding]:
        """Several tracks, their patches batched together (1.4× faster than one by one, measured on
        the tests' 20-30 s tracks)."""
        import torch

        started = time.perf_counter()
        styles: list[dict[str, float]] = [{} for _ in audios]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            for name, model in self.models.items():
                for out, embedding in zip(styles, model.embed_many(audios), strict=True):
                    out.update({f"{name}{SEP}{label}": p for label, p in embedding.styles.items()})
        self.model_seconds += time.perf_counter() - started
        return [Embedding(vector=np.zeros(0, np.float32), n_windows=0, styles=s) for s in styles]

    def embed_stream(self, source: AudioSource) -> Embedding:
        return self._tags(lambda m: m.embed_stream(source))  # type: ignore[attr-defined]


def split(styles: dict[str, float]) -> dict[str, dict[str, float]]:
    """A tagging :class:`Embedding`'s ``styles`` → tagger → label → probability."""
    out: dict[str, dict[str, float]] = {}
    for key, p in styles.items():
        tagger, label = key.split(SEP, 1)
        out.setdefault(tagger, {})[label] = p
    return out


@dataclass
class TagReport:
    """What the tag stage of one run did."""

    taggers: list[str] = field(default_factory=list)
    precision: str | None = None
    tagged: int = 0
    copied: int = 0
    """Tracks whose tags were the store model's own styles (copied, not computed)."""
    failed: int = 0
    seconds: float = 0.0
    model_seconds: float = 0.0
    max_patches: int = MAX_PATCHES
    unreachable: int = 0
    """Tracks left untagged because their file is not there (``ingest`` on another machine than the
    Ray workers'); a later run that can read them tags them."""
    skipped: str | None = None
    """Why the stage did not run (the taggers cannot load), or None."""


def tag_store(store: WritableStore, *, own_model: str, workers: int = 1, stream_seconds: float | None = None,
              commit_every: int = 32, stop: Callable[[], bool] = lambda: False,
              progress: Callable[[int, int, str], None] | None = None,
              tagger: Tagger | None = None, max_patches: int = MAX_PATCHES) -> TagReport:
    """Tag the tracks of ``store`` that have a vector and lack sound tags (see the module
    docstring). ``own_model`` is the store's model id; ``stop()`` asks to stop between files (what is
    done is saved). ``tagger``: already loaded taggers (tests, benchmarks), else loaded here, tagging
    from at most ``max_patches`` 3-s patches a track (``index --tag-patches``)."""
    from .files import Failed, run_files

    started = time.monotonic()
    report = TagReport(max_patches=max_patches)
    names = [n for n in TAGGERS if n != own_model]
    if own_model in TAGGERS:
        report.copied = store.copy_styles_as_tags(own_model)
        store.release()
    todo = store.untagged(names)
    tracks = dict(sorted({t for rows in todo.values() for t in rows}))
    absent = [tid for tid, path in tracks.items() if not os.path.exists(path)]
    if absent:
        report.unreachable = len(absent)
        logger.info("%d tracks not tagged: their files are not on this machine (a later run that can read "
                    "them tags them)", len(absent))
        for tid in absent:
            del tracks[tid]
    if not tracks:
        report.seconds = round(time.monotonic() - started, 3)
        return report
    if tagger is None:
        try:
            tagger = Tagger.load(names, max_patches=max_patches)
        except IndexerError as exc:
            report.skipped = str(exc)
            logger.warning("sound tags (for musicmap find) skipped: %s", exc)
            return report
    report.taggers = list(tagger.names)
    report.precision = tagger.precision
    logger.info("tagging %d tracks with %s", len(tracks), ", ".join(tagger.names))
    ids = {path: tid for tid, path in tracks.items()}
    pending: dict[str, dict[int, dict[str, float]]] = {}

    def save() -> None:
        for name, rows in pending.items():
            store.write_sound_tags(name, rows)
        pending.clear()
        store.release()

    done = 0
    waiting: list[tuple[str, np.ndarray]] = []

    def keep(path: str, embedding: Embedding) -> None:
        if not np.isfinite(np.fromiter(embedding.styles.values(), np.float64)).all():
            report.failed += 1  # a NaN is never saved (store.errors.NonFiniteVector)
            logger.warning("could not tag %s: the taggers gave NaN; tried again next run", path)
            return
        for name, labels in split(embedding.styles).items():
            pending.setdefault(name, {})[ids[path]] = labels
        report.tagged += 1
        if progress is not None:
            progress(done, len(tracks), path)
        if report.tagged % commit_every == 0:
            save()

    def failed(path: str, exc: Exception) -> None:
        report.failed += 1
        logger.warning("could not tag %s: %s: %s; tried again next run", path, type(exc).__name__, exc)

    def tag_waiting() -> None:
        batch = list(waiting)
        waiting.clear()
        try:
            embeddings = tagger.embed_many([audio for _, audio in batch])
        except Exception:  # find the culprit: one by one
            for path, audio in batch:
                try:
                    keep(path, tagger.embed(audio))
                except Exception as exc:
                    failed(path, exc)
            return
        for (path, _), embedding in zip(batch, embeddings, strict=True):
            keep(path, embedding)

    try:
        for result in run_files(list(tracks.values()), tagger, workers, stream_seconds, decode_only=True):
            if stop():
                break
            done += 1
            if isinstance(result, Failed):
                report.failed += 1
                logger.warning("could not tag %s (%s): %s; tried again next run", result.path, result.stage,
                               result.reason)
            elif result.audio is not None:
                waiting.append((result.path, result.audio))
                if len(waiting) >= BATCH_TRACKS:
                    tag_waiting()
            else:  # a long file, streamed
                try:
                    keep(result.path, tagger.embed_stream(AudioSource(result.path, tagger.sample_rate,
                                                                      prefetch_depth=2)))
                except Exception as exc:
                    failed(result.path, exc)
        if waiting and not stop():
            tag_waiting()
    finally:
        save()
        report.model_seconds = round(tagger.model_seconds, 3)
        report.seconds = round(time.monotonic() - started, 3)
    return report
