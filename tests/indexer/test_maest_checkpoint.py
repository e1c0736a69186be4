"""An original MAEST release checkpoint (.ckpt) and the hub layout give the same embeddings.

The test builds a tiny random MAEST in MAEST's own parameter names (spec §7), saves it as a
Lightning checkpoint (``net.`` + ``net_swa.``), and separately writes the same weights in the
Hugging Face hub's 2023 (transformers v4) key layout, loaded by transformers' own renaming.
Two independent paths to one model: their embeddings must agree.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from indexer.embedders import load_embedder
from indexer.errors import IndexerError

D, BLOCKS, MLP, F, SLOTS = 64, 8, 128, 9, 31  # 31 time slots = the 5 s model (max_length 316)
LABELS = ["Electronic---Techno", "Jazz---Bop", "Rock---Punk", "Hip Hop---Boom Bap", "Reggae---Dub"]


def _maest_weights(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int, scale: float = 0.05) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    def ln() -> tuple[torch.Tensor, torch.Tensor]:
        return 1 + r(D, scale=0.1), r(D, scale=0.1)

    w: dict[str, torch.Tensor] = {
        "cls_token": r(1, 1, D), "dist_token": r(1, 1, D),
        "new_pos_embed": r(1, 2, D, scale=0.5), "freq_new_pos_embed": r(1, D, F, 1, scale=0.5),
        "time_new_pos_embed": r(1, D, 1, SLOTS, scale=0.5),
        "patch_embed.proj.weight": r(D, 1, 16, 16), "patch_embed.proj.bias": r(D),
        "head_dist.weight": r(len(LABELS), D), "head_dist.bias": r(len(LABELS)),
        "head.1.weight": r(len(LABELS), D), "head.1.bias": r(len(LABELS)),
    }
    w["norm.weight"], w["norm.bias"] = ln()
    w["head.0.weight"], w["head.0.bias"] = ln()
    for i in range(BLOCKS):
        b = f"blocks.{i}."
        w[b + "norm1.weight"], w[b + "norm1.bias"] = ln()
        w[b + "norm2.weight"], w[b + "norm2.bias"] = ln()
        w[b + "attn.qkv.weight"], w[b + "attn.qkv.bias"] = r(3 * D, D), r(3 * D)
        w[b + "attn.proj.weight"], w[b + "attn.proj.bias"] = r(D, D), r(D)
        w[b + "mlp.fc1.weight"], w[b + "mlp.fc1.bias"] = r(MLP, D), r(MLP)
        w[b + "mlp.fc2.weight"], w[b + "mlp.fc2.bias"] = r(D, MLP), r(D)
    return w


def _hub_v4_folder(w: dict[str, torch.Tensor], folder: Path) -> None:
    """Write ``w`` as the hub repos store it: v4 key names, one merged positional matrix."""
    from safetensors.torch import save_file
    from transformers import ASTConfig

    p = "audio_spectrogram_transformer."
    grid = torch.empty(1, F * SLOTS, D)
    for f in range(F):  # frequency-major: row f·T + t
        for t in range(SLOTS):
            grid[0, f * SLOTS + t] = w["freq_new_pos_embed"][0, :, f, 0] + w["time_new_pos_embed"][0, :, 0, t]
    out = {
        p + "embeddings.cls_token": w["cls_token"], p + "embeddings.distillation_token": w["dist_token"],
        p + "embeddings.position_embeddings": torch.cat([w["new_pos_embed"], grid], 1),
        p + "embeddings.patch_embeddings.projection.weight": w["patch_embed.proj.weight"],
        p + "embeddings.patch_embeddings.projection.bias": w["patch_embed.proj.bias"],
        p + "layernorm.weight": w["norm.weight"], p + "layernorm.bias": w["norm.bias"],
        "classifier.layernorm.weight": w["head.0.weight"], "classifier.layernorm.bias": w["head.0.bias"],
        "classifier.dense.weight": w["head.1.weight"], "classifier.dense.bias": w["head.1.bias"],
    }
    for i in range(BLOCKS):
        src, dst = f"blocks.{i}.", f"{p}encoder.layer.{i}."
        for kind in ("weight", "bias"):
            qkv = w[f"{src}attn.qkv.{kind}"]
            out[f"{dst}attention.attention.query.{kind}"] = qkv[:D].clone()
            out[f"{dst}attention.attention.key.{kind}"] = qkv[D : 2 * D].clone()
            out[f"{dst}attention.attention.value.{kind}"] = qkv[2 * D :].clone()
            out[f"{dst}attention.output.dense.{kind}"] = w[f"{src}attn.proj.{kind}"]
            out[f"{dst}layernorm_before.{kind}"] = w[f"{src}norm1.{kind}"]
            out[f"{dst}layernorm_after.{kind}"] = w[f"{src}norm2.{kind}"]
            out[f"{dst}intermediate.dense.{kind}"] = w[f"{src}mlp.fc1.{kind}"]
            out[f"{dst}output.dense.{kind}"] = w[f"{src}mlp.fc2.{kind}"]
    folder.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in out.items()}, str(folder / "model.safetensors"))
    config = ASTConfig(hidden_size=D, num_hidden_layers=BLOCKS, num_attention_heads=1, intermediate_size=MLP,
                       patch_size=16, frequency_stride=10, time_stride=10, num_mel_bins=96, max_length=316,
                       layer_norm_eps=1e-6, qkv_bias=True, num_labels=len(LABELS),
                       id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)})
    config.architectures = ["ASTForAudioClassification"]
    config.save_pretrained(folder)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ckpt")
    swa, live = _maest_weights(1), _maest_weights(2)
    ckpt = root / "discogs-maest-5s-pw-129e-swa.ckpt"
    state = {**{"net." + k: v for k, v in live.items()}, **{"net_swa." + k: v for k, v in swa.items()}}
    torch.save({"state_dict": state, "epoch": 129, "global_step": 1}, ckpt)
    (root / "discogs-maest-5s-pw-129e-swa.json").write_text(json.dumps({"classes": LABELS}))
    hub = root / "hub-layout"
    _hub_v4_folder(swa, hub)  # the released weights are the SWA ones
    return ckpt, hub


def _audio(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16_000)) / 16_000
    return (0.3 * np.sin(2 * np.pi * 220 * t * (1 + t)) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


def test_ckpt_and_hub_layout_give_the_same_embeddings(checkpoints: tuple[Path, Path]) -> None:
    ckpt, hub = checkpoints
    a = load_embedder(str(ckpt), device="cpu")
    b = load_embedder(str(hub), device="cpu")
    assert a.info.dimension == b.info.dimension == 3 * D
    assert a.info.revision.startswith("sha256:") and a.info.id == ckpt.stem
    assert a.model.config.max_length == 316  # type: ignore[attr-defined]
    for seconds, seed in ((12.0, 0), (3.0, 1)):  # several windows; one short sliced window
        ea, eb = a.embed(_audio(seconds, seed)), b.embed(_audio(seconds, seed))
        assert np.abs(ea.vector - eb.vector).max() <= 1e-5
        assert list(ea.styles) == list(eb.styles) and set(ea.styles) <= set(LABELS)  # names round-trip
        np.testing.assert_allclose(list(ea.styles.values()), list(eb.styles.values()), atol=1e-5)


def test_ckpt_without_labels_or_with_unknown_tensors(checkpoints: tuple[Path, Path], tmp_path: Path) -> None:
    ckpt, _ = checkpoints
    bare = tmp_path / "bare.ckpt"
    bare.write_bytes(ckpt.read_bytes())
    emb = load_embedder(str(bare), device="cpu")
    assert emb.labels[0] == "LABEL_0"  # type: ignore[attr-defined]
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    state["net_swa.blocks.0.mystery"] = torch.zeros(3)
    torch.save({"state_dict": state}, tmp_path / "odd.ckpt")
    with pytest.raises(IndexerError, match="does not know"):
        load_embedder(str(tmp_path / "odd.ckpt"))
    del state["net_swa.blocks.0.mystery"], state["net_swa.norm.weight"]
    state = {k: v for k, v in state.items() if k.startswith("net_swa.")}
    torch.save({"state_dict": state}, tmp_path / "missing.ckpt")
    with pytest.raises(IndexerError, match=r"missing tensor 'norm\.weight'"):
        load_embedder(str(tmp_path / "missing.ckpt"))
