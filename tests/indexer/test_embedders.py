"""Embedders: the handcrafted `features` and MAEST on a tiny random checkpoint built here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexer.embedders import FeaturesEmbedder, load_embedder
from indexer.embedders import maest as maest_mod
from indexer.errors import IndexerError

SR = 16_000


def _tone(seconds: float, freq: float = 440.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(seed)
    return (0.4 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


def test_features_are_deterministic_finite_and_labelled() -> None:
    emb = FeaturesEmbedder()
    a, b = emb.embed(_tone(5)).vector, emb.embed(_tone(5)).vector
    assert a.shape == (emb.info.dimension,) and np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, b)
    assert emb.info.kind == "handcrafted" and "handcrafted" in emb.info.label
    c = emb.embed(_tone(5, freq=3000.0, seed=1)).vector
    assert np.dot(a, c) / np.linalg.norm(a) / np.linalg.norm(c) < 0.999  # different sounds differ


def test_features_handles_very_short_audio() -> None:
    vec = FeaturesEmbedder().embed(np.zeros(100, np.float32)).vector
    assert np.all(np.isfinite(vec))


@pytest.fixture(scope="module")
def tiny_maest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised MAEST-shaped AST (8 blocks, 32-d, 66-frame windows), saved locally."""
    import torch
    from transformers import ASTConfig, ASTForAudioClassification

    torch.manual_seed(0)
    labels = ["Electronic---Techno", "Jazz---Bop", "Rock---Noise", "Classical---Baroque", "Pop---Ballad"]
    config = ASTConfig(hidden_size=32, num_hidden_layers=8, num_attention_heads=2, intermediate_size=64,
                       patch_size=16, frequency_stride=10, time_stride=10, num_mel_bins=96, max_length=66,
                       layer_norm_eps=1e-6, qkv_bias=True, num_labels=len(labels),
                       id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
    folder = tmp_path_factory.mktemp("models") / "tiny-maest"
    ASTForAudioClassification(config).save_pretrained(folder)
    return folder


def test_frontend_uses_essentia_framing() -> None:
    for n in (1000, 16_000, 16_001, 16_255, 47_999):
        logmel = maest_mod.essentia_logmel(np.zeros(n, np.float32) + 0.01)
        assert logmel.shape == (-(-n // 256) + 1, 96)
    silence = maest_mod.normalise(maest_mod.essentia_logmel(np.zeros(4000, np.float32)))
    np.testing.assert_allclose(silence, -2.06755686098554 / (2 * 1.268292820667291), rtol=1e-6)


def test_windows_follow_the_model_length() -> None:
    assert maest_mod.window_hop(1876) == 1875 and maest_mod.window_hop(316) == 313
    logmel = np.zeros((66 * 3 + 10, 96), np.float32)
    assert maest_mod.windows(logmel, 66).shape == (3, 66, 96)
    assert maest_mod.windows(np.zeros((20, 96), np.float32), 66).shape == (1, 66, 96)


def test_maest_from_local_folder(tiny_maest: Path) -> None:
    emb = load_embedder(str(tiny_maest), device="cpu", batch_size=2)
    assert emb.info.kind == "maest" and emb.info.dimension == 3 * 32
    assert emb.info.layer == "hidden_states[7]" and emb.info.revision.startswith("sha256:")
    audio = _tone(3.0)
    out = emb.embed(audio)
    n_frames = -(-len(audio) // 256) + 1
    assert out.n_windows == 1 + (n_frames - 66) // 65
    assert out.vector.shape == (96,) and out.vector.dtype == np.float32
    assert set(out.styles) <= {"Electronic---Techno", "Jazz---Bop", "Rock---Noise",
                               "Classical---Baroque", "Pop---Ballad"}
    assert all(0.0 <= a <= 1.0 for a in out.styles.values())
    # The track vector is the mean of the window vectors of hidden_states[7] [CLS, DIST, mean].
    import torch

    wins = maest_mod.windows(maest_mod.essentia_logmel(audio), 66)
    with torch.inference_mode():
        hs = emb.model(input_values=torch.from_numpy(wins), output_hidden_states=True).hidden_states[7]
    expected = torch.cat([hs[:, 0], hs[:, 1], hs[:, 2:].mean(1)], -1).mean(0).numpy()
    np.testing.assert_allclose(out.vector, expected, atol=1e-5)


def test_maest_weights_are_float32_even_if_config_says_fp16(tiny_maest: Path, tmp_path: Path) -> None:
    import json
    import shutil

    folder = tmp_path / "fp16-config"
    shutil.copytree(tiny_maest, folder)
    config = json.loads((folder / "config.json").read_text())
    config["torch_dtype"] = config["dtype"] = "float16"
    (folder / "config.json").write_text(json.dumps(config))
    emb = load_embedder(str(folder), device="cpu")
    assert next(emb.model.parameters()).dtype.__str__() == "torch.float32"


def test_unreachable_model_gives_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(IndexerError) as err:
        load_embedder("mtg-upf/discogs-maest-30s-pw-129e-519l", local_files_only=True)
    message = str(err.value)
    assert "mtg-upf/discogs-maest-30s-pw-129e-519l" in message
    assert "--model features" in message and "save_pretrained" in message
    (tmp_path / "not-a-model").mkdir()
    with pytest.raises(IndexerError, match=r"no config\.json"):
        load_embedder(str(tmp_path / "not-a-model"))
    with pytest.raises(IndexerError, match=r"\.ckpt"):
        load_embedder(str(tmp_path / "discogs-maest-30s-pw-129e-519l-swa.ckpt"))
