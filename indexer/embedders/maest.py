"""The MAEST embedder: audio → Essentia-exact mels → windows → MAEST → track vector + styles.

- Front end: :mod:`indexer.maest.frontend` (spec §1.1), windows as its ``window_starts`` says.
- Model: a Hugging Face hub id, a local ``save_pretrained`` folder, or an original MAEST
  release ``.ckpt`` (converted on load, :mod:`indexer.maest.convert`); always float32 weights
  (spec §4: ``dtype="auto"`` would load fp16).
- Embedding (spec §3): ``hidden_states[7]`` stacked as [CLS, DIST, mean of patch tokens]
  (2304-d for MAEST) by default, averaged over windows; ``--layer`` and ``--pooling`` change it.
- Styles: sigmoid of the classifier logits, averaged over windows; the top ones are stored.

Licence of the weights: CC BY-NC-SA 4.0 (README, docs/models.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from store import ModelInfo

from ..cpu import auto_precision, bf16_speedup, cpu_flags, native_bf16
from ..decode import AudioSource
from ..errors import IndexerError
from ..maest import frontend
from ..maest.convert import file_hash, load_checkpoint
from ..maest.model import POOLINGS, PRECISIONS, MaestRunner, RunOptions
from . import hub
from .base import Embedding
from .batching import run_stream, run_tracks, stream_budget

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "mtg-upf/discogs-maest-30s-pw-129e-519l"
DEFAULT_LAYER = 7
TOP_STYLES = 20
"""Style activations kept per track (the highest ones)."""

# Re-exported for callers and tests that think of the front end as part of the embedder.
essentia_logmel = frontend.essentia_logmel
normalise = frontend.normalise
window_hop = frontend.window_hop
windows = frontend.windows

_HELP = ("  On an offline machine, pass a local folder written by save_pretrained "
         "(--model /path/to/discogs-maest-30s-pw-129e-519l), an original MAEST release checkpoint "
         "(--model /path/to/discogs-maest-30s-pw-129e-519l-swa.ckpt), use the trained MusiCNN whose "
         "weights come with a package (--model musicnn-msd or musicnn-mtt), or the handcrafted "
         "embedder with --model features.")


def _folder_hash(folder: Path) -> str:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return file_hash(folder / name)
    return "unknown"


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when available, then ``mps``, else ``cpu``."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise IndexerError("--device cuda: no CUDA GPU is visible to torch; use --device cpu or auto")
    if device == "mps" and not torch.backends.mps.is_available():
        raise IndexerError("--device mps: Apple MPS is not available here; use --device cpu or auto")
    if device not in ("cpu", "cuda", "mps"):
        raise IndexerError(f"--device {device!r}: choose auto, cpu, cuda or mps")
    return device


def _weights_cached_or_hub_answers(repo_id: str, revision: str) -> bool:
    """True when ``repo_id``'s weights at ``revision`` are in the local cache (load them from
    there, no network); False when they are not but the hub answers (download them). Raises
    at once when neither: the hub client's own retries take ~30 s to fail (issue #29).

    Raises
    ------
    IndexerError
        The hub cannot be reached and the weights are not cached; names the model, why (in a
        few words), the cache folder, and the offline choices.
    """
    snapshot = hub.cached_snapshot(repo_id, revision)
    if snapshot is not None:
        logger.debug("MAEST %s: weights from the local cache, %s", repo_id, snapshot)
        return True
    why = hub.probe(f"{hub.endpoint()}/{repo_id}/resolve/{revision}/config.json")
    if why is not None:
        raise IndexerError(
            f"cannot load MAEST model {repo_id!r}: the Hugging Face hub ({hub.endpoint()}) cannot be reached "
            f"({why}) and the weights are not in the local cache ({hub.cache_folder()}).\n{_HELP}")
    return False


def _load_model(name_or_path: str, *, local_files_only: bool | None, revision: str | None) -> tuple[Any, str, str]:
    """(model, id, revision) for a hub id, a save_pretrained folder or a .ckpt file."""
    path = Path(name_or_path).expanduser()
    if local_files_only is None:
        local_files_only = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    if path.suffix != ".ckpt" and not path.exists() and not local_files_only and hub.is_hub_id(name_or_path):
        # Before importing torch (~10 s on a cold disk): an unreachable hub is said in a second.
        local_files_only = _weights_cached_or_hub_answers(name_or_path, revision or "main")
    import torch
    from transformers import ASTForAudioClassification
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # progress goes through musicmap's own reporting
    if path.suffix == ".ckpt":
        if not path.is_file():
            raise IndexerError(f"--model {path}: no such checkpoint file.\n{_HELP}")
        return load_checkpoint(path), path.stem, file_hash(path)
    if path.exists():
        if not (path / "config.json").is_file():
            raise IndexerError(
                f"--model {path}: the folder has no config.json, so it is not a transformers model "
                f"folder (save_pretrained writes config.json + model.safetensors).\n{_HELP}")
        source, model_id, rev = str(path), path.name, _folder_hash(path)
    else:
        source, model_id, rev = name_or_path, name_or_path, revision or "main"
    try:
        # A hub id: the hub client's retries and warnings stay off the terminal (musicmap says
        # what failed); a local folder's load is left as transformers reports it.
        with hub.quiet_hub_client() if not path.exists() else contextlib.nullcontext():
            model = ASTForAudioClassification.from_pretrained(
                source, dtype=torch.float32, revision="main" if path.exists() else rev,
                local_files_only=local_files_only, attn_implementation="sdpa",
            )
    except Exception as exc:  # transformers raises OSError, ValueError, hub errors...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = "the local folder" if path.exists() else "the Hugging Face hub or its local cache"
        raise IndexerError(f"cannot load MAEST model {name_or_path!r} from {where}: {reason}\n{_HELP}") from exc
    if not path.exists():  # record the commit the revision resolved to, not just "main"
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name_or_path, "config.json", revision=rev)
        if isinstance(cached, str):
            rev = Path(cached).parent.name
    return model, model_id, rev


def resolve_precision(precision: str, device: str) -> str:
    """``auto`` → :func:`indexer.cpu.auto_precision`'s choice (logged with its reason); an explicit
    precision that will be slow here gets one warning saying so and what it costs (measured)."""
    if precision == "auto":
        chosen = auto_precision(device)
        logger.info("precision %s (%s)", chosen.name, chosen.reason)
        return chosen.name
    if device == "cpu" and precision == "bf16" and not native_bf16():
        logger.warning("--precision bf16: this CPU has no native bf16 (AVX-512 BF16 or AMX), so bf16 is emulated "
                       "and measured %.1f× slower than fp32 here; --precision auto picks fp32",
                       1 / max(bf16_speedup(), 1e-3))
    elif device == "cpu" and precision == "fp16" and not {"avx512_fp16", "amx_fp16"} & cpu_flags():
        logger.warning("--precision fp16: this CPU has no native fp16 arithmetic, so fp16 is emulated and slower "
                       "than fp32; --precision auto picks the fastest precision this machine has")
    elif device != "cpu" and precision == "int8":
        raise IndexerError("--precision int8 (dynamic int8 layers) runs on the CPU only; use --device cpu, "
                           "or fp16/bf16 on a GPU")
    return precision


class MaestEmbedder:
    """MAEST through ``transformers``. Build it with :meth:`load`."""

    sample_rate = frontend.SAMPLE_RATE
    parallel_safe = False

    def __init__(self, runner: MaestRunner, info: ModelInfo, labels: list[str], *, batch_size: int,
                 keep_windows: bool, max_windows: int | None = None) -> None:
        self.runner = runner
        self.max_windows = max_windows
        """At most this many windows a track, spread evenly over it (None: all)."""
        self.model = runner.model
        self.info = info
        self.labels = labels
        self.batch_size = max(1, batch_size)
        self.keep_windows = keep_windows
        self.max_length = runner.max_length
        self.model_seconds = 0.0
        """Time spent inside the model so far (for the pipeline-efficiency benchmark)."""

    @classmethod
    def load(cls, name_or_path: str, *, device: str = "auto", batch_size: int = 4,
             layer: int = DEFAULT_LAYER, pooling: str = "stack", styles: bool = True,
             precision: str = "auto", patchout: float = 0.0, keep_windows: bool = True,
             max_windows: int | None = None, fast: bool = False,
             local_files_only: bool | None = None, revision: str | None = None) -> MaestEmbedder:
        """Load MAEST from a hub id, a local ``save_pretrained`` folder or a release ``.ckpt``.

        Raises
        ------
        IndexerError
            When the weights cannot be reached or are not a MAEST model; the message names the
            model, says why, and how to pass local weights or ``--model features``.
        """
        if pooling not in POOLINGS:
            raise IndexerError(f"--pooling {pooling!r}: choose one of {', '.join(POOLINGS)}")
        if precision not in ("auto", *PRECISIONS):
            raise IndexerError(f"--precision {precision!r}: choose auto or one of {', '.join(PRECISIONS)}")
        if fast:
            from . import FAST

            precision, patchout, max_windows = (FAST["maest"]["precision"], FAST["maest"]["patchout"],
                                                FAST["maest"]["max_windows"])
        if max_windows is not None and max_windows < 1:
            raise IndexerError(f"--max-windows {max_windows}: give 1 or more")
        model, model_id, revision_used = _load_model(name_or_path, local_files_only=local_files_only,
                                                     revision=revision)
        config = model.config
        if getattr(config, "num_mel_bins", None) != frontend.N_MELS or not getattr(config, "max_length", None):
            raise IndexerError(
                f"--model {name_or_path}: not a MAEST checkpoint (num_mel_bins="
                f"{getattr(config, 'num_mel_bins', None)}, MAEST uses {frontend.N_MELS}).\n{_HELP}")
        n_layers = int(config.num_hidden_layers)
        if not 1 <= layer <= n_layers:
            raise IndexerError(f"--layer {layer}: the model has hidden_states 1..{n_layers}")
        dev = resolve_device(device)
        requested = precision
        precision = resolve_precision(precision, dev)
        options = RunOptions(layer=layer, pooling=pooling, styles=styles, patchout=patchout, precision=precision)
        try:
            runner = MaestRunner(model, options, dev)
        except ValueError as exc:
            raise IndexerError(str(exc)) from exc
        id2label = getattr(config, "id2label", None) or {}
        labels = [str(id2label.get(i, f"LABEL_{i}")) for i in range(int(config.num_labels or 0))]
        max_length = int(config.max_length)
        info = ModelInfo(
            name=str(name_or_path),
            id=model_id,
            kind="maest",
            label=f"MAEST ({model_id})",
            dimension=runner.dimension,
            revision=revision_used,
            layer="pooler_output" if pooling == "pooled" else f"hidden_states[{layer}]",
            pooling={"stack": "[CLS, DIST, mean(patch tokens)]", "cls": "CLS",
                     "pooled": "(CLS + DIST) / 2 after the final LayerNorm"}[pooling] + ", mean over windows",
            sample_rate=frontend.SAMPLE_RATE,
            extra={"max_length": max_length, "window_hop": frontend.window_hop(max_length),
                   "num_labels": len(labels),
                   "options": {"layer": layer, "pooling": pooling, "styles": styles, "precision": precision,
                               "precision_requested": requested, "patchout": patchout,
                               "max_windows": max_windows, "fast": fast, "keep_windows": keep_windows}},
        )
        return cls(runner, info, labels, batch_size=batch_size, keep_windows=keep_windows, max_windows=max_windows)

    def _embedding(self, window_vectors: np.ndarray, activations: np.ndarray | None,
                   starts: list[int]) -> Embedding:
        styles: dict[str, float] = {}
        if activations is not None and len(self.labels):
            mean_act = activations.mean(axis=0)
            top = np.argsort(-mean_act)[:TOP_STYLES]
            styles = {self.labels[i]: float(mean_act[i]) for i in top}
        return Embedding(
            vector=window_vectors.mean(axis=0).astype(np.float32),
            n_windows=len(window_vectors),
            styles=styles,
            windows=window_vectors.astype(np.float32) if self.keep_windows else None,
            window_starts=[s * frontend.HOP / frontend.SAMPLE_RATE for s in starts],
        )

    def _run(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The model on one batch of windows (:data:`indexer.embedders.batching.RunBatch`), its time
        counted in :attr:`model_seconds`."""
        started = time.perf_counter()
        out = self.runner.run(windows)
        self.model_seconds += time.perf_counter() - started
        return out

    def embed_many(self, audios: Sequence[np.ndarray]) -> list[Embedding]:
        """Embed several tracks, batching their windows together (full windows across tracks).

        Parameters
        ----------
        audios : sequence of ndarray, each shape (n_samples,), float32, 16 kHz mono
        """
        tracks = []
        for audio in audios:
            logmel = frontend.essentia_logmel(audio)
            total = max(logmel.shape[0], frontend.PATCH)
            tracks.append((frontend.windows(logmel, self.max_length), frontend.window_starts(total, self.max_length)))
        outputs = run_tracks(tracks, self._run, batch_size=self.batch_size, max_windows=self.max_windows)
        return [self._embedding(out.vectors, out.scores, out.starts) for out in outputs]

    def embed(self, audio: np.ndarray) -> Embedding:
        return self.embed_many([audio])[0]

    def embed_stream(self, source: AudioSource) -> Embedding:
        """Embed a long file window by window as it is decoded: memory holds one decode block,
        about one window of mel frames and the per-window vectors, never the whole track.
        The result equals :meth:`embed` on the whole decoded track."""
        def count(samples: int) -> int:  # the windows embed() cuts from that many samples
            return len(frontend.window_starts(max(frontend.n_frames(samples), frontend.PATCH), self.max_length))

        out = run_stream(source, frontend.LogmelStream(), frontend.WindowStream(self.max_length), self._run,
                         batch_size=self.batch_size, keep=stream_budget(source, self.max_windows, count))
        return self._embedding(out.vectors, out.scores, out.starts)
