"""Convert an original MAEST release checkpoint (``discogs-maest-*-swa.ckpt``) to transformers.

The release files are PyTorch Lightning checkpoints: ``state_dict`` holds the trained network
under ``net.`` and its stochastic-weight-averaged copy under ``net_swa.``; the released weights
are the SWA ones (spec §7.1). Their MAEST names map onto ``ASTForAudioClassification`` as the
table of spec §7 says; the factorised positional embedding (CLS/DIST rows + frequency + time) is
merged into AST's single matrix, frequency-major. Every tensor must be used and none may be
missing (checked here, unlike the reference's ``strict=False``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from ..errors import IndexerError

logger = logging.getLogger(__name__)

PREFIXES = ("net_swa.", "net.", "")
IGNORED = ("head_dist.",)
HEAD_DIM = 64
"""MAEST is ViT-B (768 = 12 heads × 64); the head count is not stored in the weights."""

_BLOCK = {
    "norm1": "layernorm_before",
    "norm2": "layernorm_after",
    "attn.proj": "attention.o_proj",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()[:16]}"


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The MAEST tensors of a release checkpoint, prefix stripped (SWA weights preferred)."""
    import torch

    trust = os.environ.get("MUSICMAP_TRUST_CHECKPOINT", "") not in ("", "0")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=not trust)
    except Exception as exc:
        raise IndexerError(
            f"cannot read {path} as a MAEST checkpoint with weights_only loading ({exc}). If you "
            "trust this file (it can run code when unpickled), set MUSICMAP_TRUST_CHECKPOINT=1."
        ) from exc
    state = raw.get("state_dict", raw) if isinstance(raw, dict) else None
    if not isinstance(state, dict):
        raise IndexerError(f"{path} holds no state_dict; is it a MAEST release checkpoint?")
    for prefix in PREFIXES:
        picked = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if "cls_token" in picked and "time_new_pos_embed" in picked:
            logger.info("%s: using the %s weights", path.name, prefix.rstrip(".") or "top-level")
            return picked
    raise IndexerError(
        f"{path} is not a MAEST checkpoint: no cls_token / time_new_pos_embed under "
        f"{', '.join(repr(p) for p in PREFIXES if p)} or at the top level"
    )


def _labels(path: Path, n: int) -> list[str]:
    """Label names from a sidecar: ``<ckpt>.labels.json`` (a list), or an Essentia model ``.json``."""
    candidates = [path.with_suffix(".labels.json"), path.with_suffix(".json"), path.parent / "labels.json"]
    for candidate in candidates:
        if candidate.is_file():
            data = json.loads(candidate.read_text(encoding="utf-8"))
            names = data.get("classes") if isinstance(data, dict) else data
            if isinstance(names, list) and len(names) == n:
                return [str(x) for x in names]
            logger.warning("%s does not list %d label names; ignored", candidate, n)
    logger.warning("%s: no label names found beside it (%s); styles will be named LABEL_i",
                   path.name, ", ".join(c.name for c in candidates))
    return [f"LABEL_{i}" for i in range(n)]


def convert_state_dict(maest: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Map MAEST tensors to ``ASTForAudioClassification`` names.

    Returns
    -------
    state : dict
        transformers 5.x state dict.
    shape : dict
        hidden_size, num_hidden_layers, intermediate_size, num_labels, max_length, num_mel_bins.
    """
    import torch

    used: set[str] = set()

    def take(key: str) -> Any:
        if key not in maest:
            raise IndexerError(f"MAEST checkpoint is missing tensor {key!r}")
        used.add(key)
        return maest[key]

    p = "audio_spectrogram_transformer."
    out: dict[str, Any] = {}
    cls = take("cls_token")
    hidden = int(cls.shape[-1])
    out[p + "embeddings.cls_token"] = cls
    out[p + "embeddings.distillation_token"] = take("dist_token")
    new = take("new_pos_embed")  # (1, 2, D)
    freq = take("freq_new_pos_embed")  # (1, D, F, 1)
    time = take("time_new_pos_embed")  # (1, D, 1, T_slots)
    n_freq, n_slots = int(freq.shape[2]), int(time.shape[3])
    grid = (freq + time).flatten(2).transpose(1, 2)  # (1, F·T_slots, D), frequency-major
    out[p + "embeddings.position_embeddings"] = torch.cat([new, grid], dim=1)
    out[p + "embeddings.patch_embeddings.projection.weight"] = take("patch_embed.proj.weight")
    out[p + "embeddings.patch_embeddings.projection.bias"] = take("patch_embed.proj.bias")
    blocks = sorted({int(m.group(1)) for k in maest if (m := re.match(r"blocks\.(\d+)\.", k))})
    if blocks != list(range(len(blocks))) or not blocks:
        raise IndexerError(f"MAEST checkpoint has blocks {blocks}; expected 0..N-1")
    for i in blocks:
        src, dst = f"blocks.{i}.", f"{p}layers.{i}."
        for kind in ("weight", "bias"):
            qkv = take(f"{src}attn.qkv.{kind}")  # rows in the order q, k, v
            q, k, v = qkv.chunk(3, dim=0)
            out[f"{dst}attention.q_proj.{kind}"] = q.clone()
            out[f"{dst}attention.k_proj.{kind}"] = k.clone()
            out[f"{dst}attention.v_proj.{kind}"] = v.clone()
            for old, new_name in _BLOCK.items():
                out[f"{dst}{new_name}.{kind}"] = take(f"{src}{old}.{kind}")
    for kind in ("weight", "bias"):
        out[f"{p}layernorm.{kind}"] = take(f"norm.{kind}")
        out[f"classifier.layernorm.{kind}"] = take(f"head.0.{kind}")
        out[f"classifier.dense.{kind}"] = take(f"head.1.{kind}")
    left = sorted(k for k in maest if k not in used and not k.startswith(IGNORED))
    if left:
        raise IndexerError(f"MAEST checkpoint has tensors this converter does not know: {left[:5]}")
    shape = {
        "hidden_size": hidden,
        "num_hidden_layers": len(blocks),
        "intermediate_size": int(maest["blocks.0.mlp.fc1.weight"].shape[0]),
        "num_labels": int(maest["head.1.weight"].shape[0]),
        "max_length": (n_slots - 1) * 10 + 16,  # (max_length − 16) // 10 + 1 = T_slots
        "num_mel_bins": (n_freq - 1) * 10 + 16,
    }
    return out, shape


def load_checkpoint(path: Path) -> Any:
    """An ``ASTForAudioClassification`` (float32) built from a MAEST release checkpoint."""
    from transformers import ASTConfig, ASTForAudioClassification

    state, shape = convert_state_dict(read_checkpoint(path))
    labels = _labels(path, shape["num_labels"])
    config = ASTConfig(  # type: ignore[call-arg]  # num_labels etc. are PretrainedConfig kwargs
        hidden_size=shape["hidden_size"],
        num_hidden_layers=shape["num_hidden_layers"],
        num_attention_heads=max(1, shape["hidden_size"] // HEAD_DIM),
        intermediate_size=shape["intermediate_size"],
        patch_size=16, frequency_stride=10, time_stride=10,
        num_mel_bins=shape["num_mel_bins"], max_length=shape["max_length"],
        layer_norm_eps=1e-6, qkv_bias=True, hidden_act="gelu",
        num_labels=shape["num_labels"],
        id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)},
    )
    model = ASTForAudioClassification(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise IndexerError(f"{path}: converted weights do not fit the model "
                           f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    return model.float()
