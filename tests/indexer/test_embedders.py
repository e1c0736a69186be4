"""Embedders: the handcrafted `features` and MAEST on a tiny random checkpoint built here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexer.embedders import FeaturesEmbedder, load_embedder
from indexer.embedders import maest as maest_mod
from indexer.errors import IndexerError
from tests.audio import tone
from tests.conftest import make_tiny_maest

SR = 16_000


def _tone(seconds: float, freq: float = 440.0, seed: int = 0) -> np.ndarray:
    return tone(seconds, freq, sr=SR, amp=0.4, noise=0.05, seed=seed)


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
    labels = ["Electronic---Techno", "Jazz---Bop", "Rock---Noise", "Classical---Baroque", "Pop---Ballad"]
    return make_tiny_maest(tmp_path_factory.mktemp("models") / "tiny-maest", labels, shuffle_positions=True)


def test_frontend_matches_essentia_frame_by_frame() -> None:
    """The Essentia replica against Essentia itself (PyPI `essentia`, a test-only dependency)."""
    es = pytest.importorskip("essentia.standard")
    extractor = es.TensorflowInputMusiCNN()
    rng = np.random.default_rng(0)
    for n in (1000, 16_000, 16_001, 16_255, 47_999, 160_017):
        for audio in ((0.1 * rng.standard_normal(n)).astype(np.float32), _tone(n / SR, 330.0, seed=n)[:n]):
            reference = np.array([extractor(f) for f in es.FrameGenerator(audio, frameSize=512, hopSize=256,
                                                                           startFromZero=False)])
            ours = maest_mod.essentia_logmel(audio)
            assert ours.shape == reference.shape == (-(-n // 256) + 1, 96)
            assert np.abs(ours - reference).max() <= 1e-3


def test_frontend_uses_essentia_framing() -> None:
    for n in (1000, 16_000, 16_001, 16_255, 47_999):
        logmel = maest_mod.essentia_logmel(np.zeros(n, np.float32) + 0.01)
        assert logmel.shape == (-(-n // 256) + 1, 96)
    silence = maest_mod.normalise(maest_mod.essentia_logmel(np.zeros(4000, np.float32)))
    np.testing.assert_allclose(silence, -2.06755686098554 / (2 * 1.268292820667291), rtol=1e-6)


def test_window_rule() -> None:
    from indexer.maest.frontend import window_starts

    assert maest_mod.window_hop(1876) == 1875 and maest_mod.window_hop(316) == 313
    assert maest_mod.window_hop(66) == 65
    assert window_starts(66 * 3 + 10, 66) == [0, 65, 130]  # a remainder under half a window is dropped
    assert window_starts(66 * 3 + 40, 66) == [0, 65, 130, 172]  # a longer one: a last window at the end
    assert window_starts(40, 66) == [0]
    assert maest_mod.windows(np.zeros((238, 96), np.float32), 66).shape == (4, 66, 96)
    short = maest_mod.windows(np.zeros((20, 96), np.float32), 66)
    assert short.shape == (1, 20, 96)  # one shorter input, not zero-padded to 66
    assert maest_mod.windows(np.zeros((5, 96), np.float32), 66).shape == (1, 16, 96)  # at least a patch


def test_runner_equals_transformers_forward(tiny_maest: Path) -> None:
    import torch
    from transformers import ASTForAudioClassification

    from indexer.maest.model import MaestRunner, RunOptions

    reference = ASTForAudioClassification.from_pretrained(tiny_maest, dtype=torch.float32).eval()
    x = np.random.default_rng(1).standard_normal((3, 66, 96)).astype(np.float32)
    with torch.inference_mode():
        out = reference(input_values=torch.from_numpy(x), output_hidden_states=True)
    h7 = out.hidden_states[7]
    stack = torch.cat([h7[:, 0], h7[:, 1], h7[:, 2:].mean(1)], -1).numpy()
    for styles in (True, False):  # False runs only 7 of the 8 blocks
        model = ASTForAudioClassification.from_pretrained(tiny_maest, dtype=torch.float32)
        emb, act = MaestRunner(model, RunOptions(styles=styles), "cpu").run(x)
        np.testing.assert_allclose(emb, stack, atol=1e-5)
        if styles:
            assert act is not None
            np.testing.assert_allclose(act, torch.sigmoid(out.logits).numpy(), atol=1e-5)
        else:
            assert act is None
    model = ASTForAudioClassification.from_pretrained(tiny_maest, dtype=torch.float32)
    cls_emb, _ = MaestRunner(model, RunOptions(pooling="cls", layer=4), "cpu").run(x)
    np.testing.assert_allclose(cls_emb, out.hidden_states[4][:, 0].numpy(), atol=1e-5)
    model = ASTForAudioClassification.from_pretrained(tiny_maest, dtype=torch.float32)
    pooled, _ = MaestRunner(model, RunOptions(pooling="pooled"), "cpu").run(x)
    with torch.inference_mode():
        final = reference.audio_spectrogram_transformer.layernorm(out.hidden_states[8])
    np.testing.assert_allclose(pooled, ((final[:, 0] + final[:, 1]) / 2).numpy(), atol=1e-5)


def test_short_input_slices_the_positional_grid(tiny_maest: Path) -> None:
    """A 36-frame input equals transformers' own forward on a model whose grid is cut to 3 time slots."""
    import torch
    from transformers import ASTConfig, ASTForAudioClassification

    from indexer.maest.model import MaestRunner, RunOptions

    full = ASTForAudioClassification.from_pretrained(tiny_maest, dtype=torch.float32)
    config = ASTConfig.from_pretrained(tiny_maest)
    config.max_length = 36  # (36 − 16) // 10 + 1 = 3 time patches
    cut = ASTForAudioClassification(config).eval()
    state = full.state_dict()
    pos = state["audio_spectrogram_transformer.embeddings.position_embeddings"]  # (1, 2 + 9·6, 32)
    grid = pos[:, 2:].reshape(1, 9, 6, 32)[:, :, :3].reshape(1, 27, 32)
    state["audio_spectrogram_transformer.embeddings.position_embeddings"] = torch.cat([pos[:, :2], grid], 1)
    cut.load_state_dict(state)
    x = np.random.default_rng(2).standard_normal((2, 36, 96)).astype(np.float32)
    with torch.inference_mode():
        h = cut(input_values=torch.from_numpy(x), output_hidden_states=True).hidden_states[7]
    expected = torch.cat([h[:, 0], h[:, 1], h[:, 2:].mean(1)], -1).numpy()
    emb, _ = MaestRunner(full, RunOptions(), "cpu").run(x)
    np.testing.assert_allclose(emb, expected, atol=1e-5)


def test_maest_from_local_folder(tiny_maest: Path) -> None:
    emb = load_embedder(str(tiny_maest), device="cpu", batch_size=2)
    assert emb.info.kind == "maest" and emb.info.dimension == 3 * 32
    assert emb.info.layer == "hidden_states[7]" and emb.info.revision.startswith("sha256:")
    audio = _tone(3.0)
    out = emb.embed(audio)
    from indexer.maest.frontend import window_starts

    starts = window_starts(-(-len(audio) // 256) + 1, 66)
    assert out.n_windows == len(starts) and out.windows is not None and out.windows.shape == (len(starts), 96)
    assert out.window_starts == pytest.approx([s * 256 / 16_000 for s in starts])
    np.testing.assert_allclose(out.vector, out.windows.mean(axis=0), atol=1e-6)
    assert set(out.styles) <= {"Electronic---Techno", "Jazz---Bop", "Rock---Noise", "Classical---Baroque",
                               "Pop---Ballad"}
    assert all(0.0 <= a <= 1.0 for a in out.styles.values())
    np.testing.assert_array_equal(emb.embed(audio).vector, out.vector)  # deterministic
    short = emb.embed(_tone(0.3))  # shorter than one window: one sliced input
    assert short.n_windows == 1 and np.all(np.isfinite(short.vector))
    # Batching windows across tracks changes nothing.
    together = emb.embed_many([audio, _tone(0.3), _tone(2.0, 880.0)])  # type: ignore[attr-defined]
    np.testing.assert_allclose(together[0].vector, out.vector, atol=1e-5)
    np.testing.assert_allclose(together[1].vector, short.vector, atol=1e-5)


@pytest.mark.parametrize("seconds", [0.3, 0.5, 1.0, 3.0])
def test_maest_bf16_and_fp32_are_finite_on_short_and_longer_clips(tiny_maest: Path, seconds: float) -> None:
    """Both precisions explicitly, whatever this CPU's ``auto`` picks (bf16 runs emulated where the
    CPU has no native bf16): short clips (one sliced window: 11 tokens at 0.3 s, 20 at 0.5 s, 47 at
    1 s) and several windows (3 s) give finite vectors, windows and styles, and bf16 stays within
    cosine 0.999 of fp32 (MAEST in bf16 on AMX CPUs gave NaN for clips under a second, issue #29)."""
    audio = _tone(seconds)
    out = {p: load_embedder(str(tiny_maest), device="cpu", precision=p).embed(audio) for p in ("fp32", "bf16")}
    for e in out.values():
        assert e.windows is not None and np.all(np.isfinite(e.vector)) and np.all(np.isfinite(e.windows))
        assert e.styles and np.all(np.isfinite(list(e.styles.values())))
    a, b = out["fp32"].vector, out["bf16"].vector
    assert out["fp32"].n_windows == out["bf16"].n_windows == (3 if seconds == 3.0 else 1)
    assert float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) > 0.999


def test_maest_options(tiny_maest: Path) -> None:
    base = load_embedder(str(tiny_maest), device="cpu")
    audio = _tone(2.0)
    ref = base.embed(audio).vector
    cls = load_embedder(str(tiny_maest), device="cpu", pooling="cls", layer=5)
    assert cls.info.dimension == 32 and cls.info.layer == "hidden_states[5]"
    no_styles = load_embedder(str(tiny_maest), device="cpu", styles=False)
    out = no_styles.embed(audio)
    assert out.styles == {}
    np.testing.assert_allclose(out.vector, ref, atol=1e-5)
    patched = load_embedder(str(tiny_maest), device="cpu", patchout=0.5).embed(audio).vector
    assert patched.shape == ref.shape and not np.allclose(patched, ref)
    int8 = load_embedder(str(tiny_maest), device="cpu", precision="int8").embed(audio).vector
    assert int8.shape == ref.shape and np.all(np.isfinite(int8))
    with pytest.raises(IndexerError, match="--layer 9"):
        load_embedder(str(tiny_maest), layer=9)
    with pytest.raises(IndexerError, match="--pooling"):
        load_embedder(str(tiny_maest), pooling="max")


def test_maest_weights_are_float32_even_if_config_says_fp16(tiny_maest: Path, tmp_path: Path) -> None:
    import json
    import shutil

    folder = tmp_path / "fp16-config"
    shutil.copytree(tiny_maest, folder)
    config = json.loads((folder / "config.json").read_text())
    config["torch_dtype"] = config["dtype"] = "float16"
    (folder / "config.json").write_text(json.dumps(config))
    emb = load_embedder(str(folder), device="cpu", precision="fp32")  # loaded as float32; auto may convert after
    assert str(next(emb.model.parameters()).dtype) == "torch.float32"  # type: ignore[attr-defined]


def test_unreachable_or_wrong_models_give_clear_errors(tmp_path: Path) -> None:
    import torch
    from transformers import ASTConfig, ASTForAudioClassification

    with pytest.raises(IndexerError) as err:
        load_embedder("mtg-upf/discogs-maest-30s-pw-129e-519l", local_files_only=True)
    message = str(err.value)
    assert "mtg-upf/discogs-maest-30s-pw-129e-519l" in message
    assert "--model features" in message and "save_pretrained" in message and ".ckpt" in message
    (tmp_path / "not-a-model").mkdir()
    with pytest.raises(IndexerError, match=r"no config\.json"):
        load_embedder(str(tmp_path / "not-a-model"))
    with pytest.raises(IndexerError, match="no such checkpoint file"):
        load_embedder(str(tmp_path / "discogs-maest-30s-pw-129e-519l-swa.ckpt"))
    torch.save({"state_dict": {"something.else": torch.zeros(1)}}, tmp_path / "other.ckpt")
    with pytest.raises(IndexerError, match="not a MAEST checkpoint"):
        load_embedder(str(tmp_path / "other.ckpt"))
    kaldi_ast = ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                          num_mel_bins=128, max_length=100)
    ASTForAudioClassification(kaldi_ast).save_pretrained(tmp_path / "audioset-ast")
    with pytest.raises(IndexerError, match="not a MAEST checkpoint"):
        load_embedder(str(tmp_path / "audioset-ast"))


def test_frontend_in_blocks_equals_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    from indexer.maest import frontend

    audio = (0.1 * np.random.default_rng(3).standard_normal(300 * 256 + 77)).astype(np.float32)
    whole = frontend.essentia_logmel(audio)
    monkeypatch.setattr(frontend, "CHUNK_FRAMES", 64)  # many blocks, with a partial last one
    np.testing.assert_array_equal(frontend.essentia_logmel(audio), whole)


def test_maest_embed_stream_equals_embed(tiny_maest: Path, tmp_path: Path) -> None:
    """Window by window from a stream of blocks: the same windows, vector, styles and starts."""
    import soundfile as sf

    from indexer.decode import AudioSource, load_audio

    path = tmp_path / "mix.flac"
    sf.write(path, _tone(14.3, freq=330.0, seed=4), SR)  # 894 frames: 13 full windows + one end-aligned
    emb = load_embedder(str(tiny_maest), device="cpu", batch_size=3)
    whole = emb.embed(load_audio(path, SR))
    streamed = emb.embed_stream(AudioSource(path, SR, block_seconds=0.7, prefetch_depth=2))
    assert streamed.n_windows == whole.n_windows == 14
    assert streamed.window_starts == whole.window_starts
    np.testing.assert_allclose(streamed.vector, whole.vector, rtol=1e-4, atol=1e-5)
    assert streamed.windows is not None and whole.windows is not None
    np.testing.assert_allclose(streamed.windows, whole.windows, rtol=1e-4, atol=1e-5)
    assert list(streamed.styles) == list(whole.styles)
    short = tmp_path / "short.flac"  # shorter than one window: one window of its own length
    sf.write(short, _tone(0.5, seed=5), SR)
    one = emb.embed_stream(AudioSource(short, SR))
    assert one.n_windows == 1
    np.testing.assert_allclose(one.vector, emb.embed(load_audio(short, SR)).vector, rtol=1e-4, atol=1e-5)
