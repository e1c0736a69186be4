"""MAEST embeddings on ``transformers`` (``ASTForAudioClassification``), from ``maest-spec.md``.

Front end (spec §1.1): the Essentia ``TensorflowInputMusiCNN`` features, replicated in
numpy — 16 kHz mono, 512-sample symmetric Hann frames, hop 256, Essentia framing
(ceil(N/256)+1 frames), power spectrum, 96 Slaney mel bands 0–8 kHz with Slaney
normalisation, log10(1 + 10⁴·x), then (x − mean) / (2·std).

Windows (spec §1.3): ``max_length`` frames from the model config, stepped by the model's
clip length (313/625/1250/1875 frames for 5/10/20/30 s models); a track shorter than one
window is zero-padded in the log domain, as the Hugging Face feature extractor does.

Embedding (spec §3): ``hidden_states[layer]`` (default 7, the paper's "7th layer") stacked
as [CLS, DIST, mean of patch tokens] (3 × hidden size = 2304 for MAEST), averaged over
windows. Styles: sigmoid of the classifier logits, averaged over windows.

Loading: a Hugging Face hub id, or a local folder written by ``save_pretrained``.
Weights are always loaded in float32 (spec §4: ``dtype="auto"`` would load fp16).
Licence of the weights: CC BY-NC-SA 4.0 (see README).
"""

from __future__ import annotations

import hashlib
import logging
import os
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from store import ModelInfo

from ..errors import IndexerError
from .base import Embedding

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "mtg-upf/discogs-maest-30s-pw-129e-519l"
SAMPLE_RATE = 16_000
FRAME = 512
HOP = 256
N_MELS = 96
MEAN = 2.06755686098554
STD = 1.268292820667291
DEFAULT_LAYER = 7
TOP_STYLES = 20
"""Style activations kept per track (the highest ones)."""

#: Window hop in frames for the published window lengths (Essentia's patchHopSize).
WINDOW_HOPS = {316: 313, 626: 625, 1256: 1250, 1876: 1875}


@cache
def _mel_basis() -> np.ndarray:
    import librosa

    return np.asarray(
        librosa.filters.mel(sr=SAMPLE_RATE, n_fft=FRAME, n_mels=N_MELS, fmin=0.0, fmax=8000.0,
                            htk=False, norm="slaney"),
        dtype=np.float64,
    )


def essentia_logmel(audio: np.ndarray) -> np.ndarray:
    """Essentia-exact log-compressed mel bands (before MAEST's normalisation).

    Parameters
    ----------
    audio : ndarray, shape (n_samples,), float32, mono, 16 kHz

    Returns
    -------
    logmel : ndarray, shape (ceil(n_samples / 256) + 1, 96), float32
    """
    y = np.asarray(audio, dtype=np.float64).ravel()
    n = len(y)
    padded = -(-n // HOP) * HOP  # a multiple of the hop, as Essentia's FrameCutter pads
    y = np.pad(y, (FRAME // 2, padded - n + FRAME // 2))  # first frame centred on sample 0
    frames = np.lib.stride_tricks.sliding_window_view(y, FRAME)[::HOP]  # (T, 512)
    window = np.hanning(FRAME)  # symmetric Hann, not normalised
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2  # (T, 257)
    mel = power @ _mel_basis().T  # (T, 96)
    return np.log10(1.0 + 10_000.0 * mel).astype(np.float32)


def normalise(logmel: np.ndarray) -> np.ndarray:
    """MAEST input normalisation: (x − 2.0676) / (2 · 1.2683)."""
    return ((logmel - MEAN) / (2.0 * STD)).astype(np.float32)


def window_hop(max_length: int) -> int:
    """Frames between window starts for a model whose input is ``max_length`` frames."""
    return WINDOW_HOPS.get(int(max_length), max(1, int(max_length) - 1))


def windows(logmel: np.ndarray, max_length: int) -> np.ndarray:
    """Cut normalised-ready log mels into model windows.

    Full windows of ``max_length`` frames stepped by :func:`window_hop`; a partial last
    window is dropped (Essentia's ``discard``), except that a track shorter than one window
    becomes one window, zero-padded at the end in the log domain.

    Returns
    -------
    windows : ndarray, shape (n_windows, max_length, 96), float32, normalised
    """
    t = logmel.shape[0]
    if t < max_length:
        logmel = np.pad(logmel, ((0, max_length - t), (0, 0)))
        t = max_length
    hop = window_hop(max_length)
    starts = range(0, t - max_length + 1, hop)
    return np.stack([normalise(logmel[s : s + max_length]) for s in starts])


def _file_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for name in ("model.safetensors", "pytorch_model.bin"):
        weights = folder / name
        if weights.is_file():
            with open(weights, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
            return f"sha256:{digest.hexdigest()[:16]}"
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


class MaestEmbedder:
    """MAEST through ``transformers``. Build it with :meth:`load`."""

    sample_rate = SAMPLE_RATE
    parallel_safe = False

    def __init__(self, model: Any, info: ModelInfo, *, layer: int, device: str, batch_size: int) -> None:
        self.model = model
        self.info = info
        self.layer = layer
        self.device = device
        self.batch_size = batch_size
        config = model.config
        self.max_length = int(config.max_length)
        id2label = getattr(config, "id2label", None) or {}
        self.labels = [str(id2label.get(i, f"LABEL_{i}")) for i in range(int(config.num_labels))]

    @classmethod
    def load(cls, name_or_path: str, *, device: str = "auto", batch_size: int = 4,
             layer: int = DEFAULT_LAYER, local_files_only: bool | None = None,
             revision: str | None = None) -> MaestEmbedder:
        """Load MAEST from a hub id or a local ``save_pretrained`` folder.

        Raises
        ------
        IndexerError
            When the weights cannot be reached or are not an AST/MAEST model; the message
            names the model, says why, and how to pass local weights or ``--model features``.
        """
        import torch
        from transformers import ASTForAudioClassification

        path = Path(name_or_path).expanduser()
        is_local = path.exists()
        if str(name_or_path).endswith(".ckpt"):
            raise IndexerError(
                f"--model {name_or_path}: converting original MAEST .ckpt files is not built yet "
                "(tracked in issue #3). Convert it to a transformers folder, or pass a local folder "
                "written by save_pretrained, or --model features."
            )
        if is_local and not (path / "config.json").is_file():
            raise IndexerError(
                f"--model {path}: the folder has no config.json, so it is not a transformers "
                "model folder. Pass a folder written by save_pretrained (config.json + "
                "model.safetensors or pytorch_model.bin), or --model features."
            )
        if local_files_only is None:
            local_files_only = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        try:
            model = ASTForAudioClassification.from_pretrained(
                str(path) if is_local else name_or_path,
                dtype=torch.float32,
                revision=(None if is_local else revision) or "main",
                local_files_only=local_files_only,
            )
        except Exception as exc:  # transformers raises OSError, ValueError, HF hub errors...
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            where = "the local folder" if is_local else "the Hugging Face hub or its local cache"
            raise IndexerError(
                f"cannot load MAEST model {name_or_path!r} from {where}: {reason}\n"
                "  On an offline machine, pass a local folder written by save_pretrained "
                "(--model /path/to/discogs-maest-30s-pw-129e-519l), or use the handcrafted "
                "embedder with --model features."
            ) from exc
        config = model.config
        if not hasattr(config, "max_length") or getattr(config, "num_mel_bins", None) != N_MELS:
            raise IndexerError(
                f"--model {name_or_path}: not a MAEST checkpoint (num_mel_bins="
                f"{getattr(config, 'num_mel_bins', None)}, MAEST uses {N_MELS})"
            )
        n_layers = int(config.num_hidden_layers)
        if not 0 < layer <= n_layers:
            raise IndexerError(f"layer {layer} does not exist: the model has {n_layers} blocks")
        dev = resolve_device(device)
        model = model.to(dev)  # type: ignore[arg-type]  # transformers' stub types .to oddly
        model.eval()
        hidden = int(config.hidden_size)
        info = ModelInfo(
            name=str(name_or_path),
            id=path.name if is_local else str(name_or_path),
            kind="maest",
            label=f"MAEST ({path.name if is_local else name_or_path})",
            dimension=3 * hidden,
            revision=_file_hash(path) if is_local else (revision or getattr(config, "_commit_hash", None)),
            layer=f"hidden_states[{layer}]",
            pooling="[CLS, DIST, mean(patch tokens)], mean over windows",
            sample_rate=SAMPLE_RATE,
            extra={"max_length": int(config.max_length), "window_hop": window_hop(int(config.max_length)),
                   "num_labels": int(config.num_labels or 0)},
        )
        return cls(model, info, layer=layer, device=dev, batch_size=batch_size)

    def embed_windows(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run the model on windows.

        Parameters
        ----------
        batch : ndarray, shape (n, max_length, 96), float32, normalised

        Returns
        -------
        embeddings : ndarray, shape (n, 3 * hidden), float32
        activations : ndarray, shape (n, num_labels), float32 (sigmoid of the logits)
        """
        import torch

        embs, acts = [], []
        with torch.inference_mode():
            for start in range(0, len(batch), self.batch_size):
                x = torch.from_numpy(batch[start : start + self.batch_size]).to(self.device)
                out = self.model(input_values=x, output_hidden_states=True)
                h = out.hidden_states[self.layer]  # (b, 2 + patches, hidden)
                stacked = torch.cat([h[:, 0], h[:, 1], h[:, 2:].mean(dim=1)], dim=-1)  # (b, 3·hidden)
                embs.append(stacked.float().cpu().numpy())
                acts.append(torch.sigmoid(out.logits).float().cpu().numpy())
        return np.concatenate(embs), np.concatenate(acts)

    def embed(self, audio: np.ndarray) -> Embedding:
        wins = windows(essentia_logmel(audio), self.max_length)
        embs, acts = self.embed_windows(wins)
        mean_act = acts.mean(axis=0)
        top = np.argsort(-mean_act)[:TOP_STYLES]
        styles = {self.labels[i]: float(mean_act[i]) for i in top}
        return Embedding(vector=embs.mean(axis=0).astype(np.float32), n_windows=len(wins), styles=styles)
