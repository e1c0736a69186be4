"""The MusiCNN embedder: a trained music model whose weights arrive inside a PyPI package.

``--model musicnn-msd`` / ``musicnn-mtt`` (MusiCNN trained on the Million Song Dataset's last.fm
tags / on MagnaTagATune) and ``musicnn-msd-vgg`` / ``musicnn-mtt-vgg`` (the package's VGG
baselines). The weights are read from the ``musicnn`` package's own TF1 checkpoints by
:mod:`indexer.musicnn.checkpoint` (no TensorFlow); the network is :mod:`indexer.musicnn.model`,
the front end :mod:`indexer.musicnn.frontend`.

A track is cut into 3-s patches; each patch gives a vector and 50 tag probabilities:

- the **track vector** is the mean of the patch vectors (:data:`VECTOR`, :data:`POOLING`: chosen by
  measurement on real music, ``benchmarks/bench_musicnn.py`` and the #19 closing note);
- the **patch vectors** go to the ``windows`` table ("explain a match" shows the closest moments);
- the **tags** (mean over patches) are stored like MAEST's styles, all 50, named as the model's
  tags; a track without a genre tag gets the highest-scoring tag that is a genre.

Install: ``pip install --no-deps "musicnn==0.1.0"`` (its own step; the wheel declares numpy<1.17
and TensorFlow, which cannot resolve on Python 3.11 and are not needed). ``make setup`` does it,
hash-pinned. Licence of the package and its weights: ISC, © Music Technology Group, UPF 2019.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from store import ModelInfo

from ..cpu import keep_freed_memory
from ..decode import AudioSource
from ..errors import IndexerError
from ..musicnn import frontend
from ..musicnn.checkpoint import CheckpointError, read_checkpoint
from ..musicnn.model import PATCH_FRAMES, VGG, MusiCNN, WeightError
from .base import Embedding
from .batching import Outputs, run_stream, run_tracks, stream_budget

logger = logging.getLogger(__name__)

INSTALL = 'pip install --no-deps "musicnn==0.1.0"'
INSTALL_HINT = (f"install its weights with `make setup` or `{INSTALL}` (--no-deps: its declared "
                "numpy<1.17 and TensorFlow are not needed and cannot install on Python 3.11)")
VECTOR = "penultimate"
"""Which layer gives the vectors: ``penultimate`` (BN(ReLU(dense)), musicnn's own name) or ``dense``
(before ReLU and BN, Essentia's "embedding"). Chosen by measurement (module docstring)."""
POOLING = "mean"
"""How patch vectors become a track vector: ``mean`` or ``mean+std`` (their concatenation)."""
BATCH = 16
"""Patches per forward pass."""


@dataclass(frozen=True)
class Variant:
    """One of the package's four checkpoints."""

    folder: str
    network: type[MusiCNN] | type[VGG]
    dataset: str
    label_kind: str
    tags: tuple[str, ...]
    genres: frozenset[str]
    """Tags that name a genre: the ones a track without a genre tag may take as its genre."""


MTT_TAGS = ("guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast", "piano",
            "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male", "singing",
            "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman", "male vocal", "no vocal",
            "pop", "soft", "sitar", "solo", "man", "classic", "choir", "voice", "new age", "dance", "male voice",
            "female vocal", "beats", "harp", "cello", "no voice", "weird", "country", "metal", "female voice",
            "choral")
MSD_TAGS = ("rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
            "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock", "soul",
            "indie rock", "Mellow", "electronica", "80s", "folk", "90s", "chill", "instrumental", "punk", "oldies",
            "blues", "hard rock", "ambient", "acoustic", "experimental", "female vocalist", "guitar", "Hip-Hop",
            "70s", "party", "country", "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal",
            "Progressive rock", "60s", "rnb", "indie pop", "sad", "House", "happy")
_MTT_GENRES = frozenset({"classical", "techno", "electronic", "rock", "ambient", "indian", "opera", "pop",
                         "new age", "dance", "country", "metal"})
_MSD_GENRES = frozenset({"rock", "pop", "alternative", "indie", "electronic", "dance", "alternative rock", "jazz",
                         "metal", "chillout", "classic rock", "soul", "indie rock", "electronica", "folk", "punk",
                         "blues", "hard rock", "ambient", "experimental", "Hip-Hop", "country", "easy listening",
                         "funk", "electro", "heavy metal", "Progressive rock", "rnb", "indie pop", "House"})
VARIANTS = {
    "musicnn-msd": Variant("MSD_musicnn", MusiCNN, "MSD", "last.fm tags (Million Song Dataset)", MSD_TAGS, _MSD_GENRES),
    "musicnn-mtt": Variant("MTT_musicnn", MusiCNN, "MTT", "MagnaTagATune tags", MTT_TAGS, _MTT_GENRES),
    "musicnn-msd-vgg": Variant("MSD_vgg", VGG, "MSD", "last.fm tags (Million Song Dataset)", MSD_TAGS, _MSD_GENRES),
    "musicnn-mtt-vgg": Variant("MTT_vgg", VGG, "MTT", "MagnaTagATune tags", MTT_TAGS, _MTT_GENRES),
}
NAMES = tuple(VARIANTS)


def package_folder() -> Path:
    """Where the ``musicnn`` package's files are, without importing it (its modules other than
    the empty ``__init__`` import TensorFlow).

    Raises
    ------
    IndexerError
        The package is not installed; the message says how to install it.
    """
    try:
        spec = importlib.util.find_spec("musicnn")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise IndexerError(f"MusiCNN's weights come in the `musicnn` package, which is not installed: {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations)))


def variant_of_folder(path: str | Path) -> str:
    """The model name of a checkpoint folder, from its name as the package has it (``MSD_musicnn``,
    ``MTT_vgg``, ...).

    Raises
    ------
    IndexerError
        A name that says neither the dataset nor the network.
    """
    name = Path(path).expanduser().name.lower()
    for model, variant in VARIANTS.items():
        if name == variant.folder.lower():
            return model
    raise IndexerError(f"--model {path}: a MusiCNN checkpoint folder is named as in the musicnn package "
                       f"({', '.join(v.folder for v in VARIANTS.values())}), so that its network and tags are known")


def _weights_hash(folder: Path) -> str:
    digest = hashlib.blake2b(digest_size=8)
    for name in (".index", ".data-00000-of-00001"):
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()


class MusicnnEmbedder:
    """MusiCNN (or its VGG) through our own torch port. Build it with :meth:`load`."""

    sample_rate = frontend.SAMPLE_RATE
    parallel_safe = False

    def __init__(self, network: MusiCNN | VGG, variant: Variant, info: ModelInfo, *, vector: str, pooling: str,
                 batch_size: int = BATCH, keep_windows: bool = True, max_windows: int | None = None) -> None:
        self.network = network
        self.variant = variant
        self.info = info
        self.vector = vector
        self.pooling = pooling
        self.batch_size = max(1, batch_size)
        self.keep_windows = keep_windows
        self.max_windows = max_windows
        """At most this many patches a track, spread evenly over it (None: all)."""
        self.labels = list(variant.tags)
        self.model_seconds = 0.0

    @classmethod
    def load(cls, name: str, *, folder: str | Path | None = None, vector: str = VECTOR, pooling: str = POOLING,
             batch_size: int = BATCH, keep_windows: bool = True, max_windows: int | None = None,
             fast: bool = False) -> MusicnnEmbedder:
        """The model ``name`` (one of :data:`NAMES`) from the installed package, or from ``folder``;
        ``name`` may also be a checkpoint folder itself (``.../MSD_musicnn``: see
        :func:`variant_of_folder`).

        Raises
        ------
        IndexerError
            Unknown name, package missing, damaged checkpoint (named, with the fix).
        """
        if folder is None and name not in VARIANTS:
            folder, name = name, variant_of_folder(name)
        if name not in VARIANTS:
            raise IndexerError(f"--model {name!r}: MusiCNN models are {', '.join(NAMES)}")
        if vector not in ("penultimate", "dense") or pooling not in ("mean", "mean+std"):
            raise IndexerError(f"MusiCNN vector {vector!r} / pooling {pooling!r}: choose penultimate|dense, "
                               "mean|mean+std")
        if max_windows is not None and max_windows < 1:
            raise IndexerError(f"--max-windows {max_windows}: give 1 or more")
        variant = VARIANTS[name]
        where = Path(folder).expanduser() if folder is not None else package_folder() / variant.folder
        try:
            tensors = read_checkpoint(str(where) + "/")
            network = variant.network(len(variant.tags))
            network.load_tf(tensors)
        except (CheckpointError, WeightError) as exc:
            raise IndexerError(f"--model {name}: the checkpoint in {where} cannot be used: {exc}. Reinstall the "
                               f"weights: {INSTALL.replace('pip install', 'pip install --force-reinstall')}") from exc
        network.eval()
        keep_freed_memory()  # about 2× faster forward passes on the CPU (indexer.cpu)
        width = 200 if variant.network is MusiCNN else 256
        dimension = width * (2 if pooling == "mean+std" else 1)
        info = ModelInfo(
            name=name,
            id=name,
            kind="musicnn",
            label=f"MusiCNN ({variant.dataset}{', VGG' if variant.network is VGG else ''})",
            dimension=dimension,
            revision=_weights_hash(where),
            layer=("pool5" if variant.network is VGG else vector),
            pooling=f"{pooling} over 3-s patches",
            sample_rate=frontend.SAMPLE_RATE,
            extra={"package": "musicnn==0.1.0", "checkpoint": variant.folder, "dataset": variant.dataset,
                   "labels": variant.label_kind, "num_labels": len(variant.tags), "patch_frames": PATCH_FRAMES,
                   "genre_labels": sorted(variant.genres),
                   "licence": "ISC, Music Technology Group (UPF) 2019",
                   "options": {"vector": vector, "pooling": pooling, "keep_windows": keep_windows,
                               "max_windows": max_windows, "fast": fast, "precision": "fp32"}},
        )
        return cls(network, variant, info, vector=vector, pooling=pooling, batch_size=batch_size,
                   keep_windows=keep_windows, max_windows=max_windows)

    # --- model ---------------------------------------------------------------------------------

    def run(self, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Patches of equal length → (patch vectors (n, w), tag probabilities (n, 50)).

        Parameters
        ----------
        patches : ndarray, shape (n, t, 96), float32, log-mel (t ≤ 187; the VGG pads to 187)
        """
        import torch

        if isinstance(self.network, VGG) and patches.shape[1] != PATCH_FRAMES:
            patches = np.stack([frontend.repeat_pad(p) for p in patches])
        vectors, tags = [], []
        started = time.perf_counter()
        with torch.inference_mode():
            for start in range(0, len(patches), self.batch_size):
                out = self.network(torch.from_numpy(np.ascontiguousarray(patches[start : start + self.batch_size])))
                vectors.append((out.dense if self.vector == "dense" else out.penultimate).float().numpy())
                tags.append(out.tags.float().numpy())
        self.model_seconds += time.perf_counter() - started
        return np.concatenate(vectors).astype(np.float32), np.concatenate(tags).astype(np.float32)

    def _embedding(self, out: Outputs) -> Embedding:
        vectors, tags = out.vectors, out.scores
        assert tags is not None  # run() always gives tags: Outputs.scores is None only for models without labels
        track = vectors.mean(axis=0)
        if self.pooling == "mean+std":
            track = np.concatenate([track, vectors.std(axis=0)])
            windows = np.concatenate([vectors, np.zeros_like(vectors)], axis=1)  # patch vs patch: same cosine
        else:
            windows = vectors
        mean_tags = tags.mean(axis=0)
        styles = {self.labels[i]: float(mean_tags[i]) for i in np.argsort(-mean_tags)}
        return Embedding(
            vector=track.astype(np.float32),
            n_windows=len(vectors),
            styles=styles,
            windows=windows.astype(np.float32) if self.keep_windows else None,
            window_starts=[s * frontend.HOP / frontend.SAMPLE_RATE for s in out.starts],
        )

    # --- the embedder interface ------------------------------------------------------------------

    def embed_many(self, audios: Sequence[np.ndarray]) -> list[Embedding]:
        """Several tracks; their full patches are batched together."""
        tracks = []
        for audio in audios:
            bands = frontend.logmel(audio)
            tracks.append((frontend.patches(bands), frontend.patch_starts(max(1, len(bands)))))
        outputs = run_tracks(tracks, self.run, batch_size=self.batch_size, max_windows=self.max_windows)
        return [self._embedding(out) for out in outputs]

    def embed(self, audio: np.ndarray) -> Embedding:
        return self.embed_many([audio])[0]

    def embed_stream(self, source: AudioSource) -> Embedding:
        """A long file patch by patch as it is decoded; equals :meth:`embed` of the whole track."""
        def count(samples: int) -> int:  # the patches embed() cuts from that many samples
            return len(frontend.patch_starts(samples // frontend.HOP + 1))

        out = run_stream(source, frontend.stream(), frontend.patch_stream(), self.run,
                         batch_size=self.batch_size, keep=stream_budget(source, self.max_windows, count))
        return self._embedding(out)
