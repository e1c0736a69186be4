"""Very long files: decoded as a stream and embedded window by window, equal to the whole-file path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from indexer.decode import AudioSource, iter_audio, load_audio, prefetch
from indexer.embedders import FeaturesEmbedder
from indexer.errors import FileFailure
from indexer.maest import frontend
from indexer.pipeline import index_library
from store import Store

SR = 16_000


def _signal(seconds: float, sr: int = SR, seed: int = 0, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    base = 0.3 * np.sin(2 * np.pi * (220 + 30 * np.sin(0.2 * t)) * t) + 0.02 * rng.standard_normal(len(t))
    if channels == 1:
        return base.astype(np.float32)
    return np.stack([base * (0.5 + 0.5 * c / channels) for c in range(channels)], axis=1).astype(np.float32)


def _pieces(x: np.ndarray, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, len(x)), size=min(len(x) - 1, 7), replace=False)) if len(x) > 1 else []
    return np.split(x, cuts)


@pytest.mark.parametrize("n", [1, 255, 256, 257, 511, 512, 3 * SR + 17])
def test_logmel_stream_equals_whole(n: int) -> None:
    audio = (0.1 * np.random.default_rng(n).standard_normal(n)).astype(np.float32)
    stream = frontend.LogmelStream()
    parts = [stream.feed(p) for p in _pieces(audio, n)] + [stream.finish()]
    got = np.concatenate(parts)
    want = frontend.essentia_logmel(audio)
    assert got.shape == want.shape == (frontend.n_frames(n), frontend.N_MELS)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("total", [5, 16, 40, 66, 67, 98, 99, 100, 131, 132, 196, 197, 1000])
def test_window_stream_follows_the_window_rule(total: int) -> None:
    max_length = 66  # hop 65: the tiny test model's window
    logmel = np.random.default_rng(total).standard_normal((total, frontend.N_MELS)).astype(np.float32)
    stream = frontend.WindowStream(max_length)
    got = [w for p in _pieces(logmel, total) for w in stream.feed(p)] + stream.finish()
    assert [s for s, _ in got] == frontend.window_starts(max(total, frontend.PATCH), max_length)
    want = frontend.windows(logmel, max_length)
    assert len(got) == len(want)
    for (_, window), expected in zip(got, want, strict=True):
        np.testing.assert_array_equal(window, expected)


@pytest.mark.parametrize("suffix", [".flac", ".wav", ".m4a"])
def test_iter_audio_blocks_concatenate_to_load_audio(tmp_path: Path, suffix: str) -> None:
    """soundfile with streamed resampling (44.1 kHz stereo) and ffmpeg read a block at a time."""
    path = tmp_path / f"long{suffix}"
    audio = _signal(12.3, sr=44_100, channels=2)
    if suffix == ".m4a":
        wav = tmp_path / "src.wav"
        sf.write(wav, audio, 44_100)
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(wav), "-c:a", "aac", str(path)], check=True)
    else:
        sf.write(path, audio, 44_100)
    blocks = list(iter_audio(path, SR, block_seconds=1.0))
    assert len(blocks) >= 12 and all(b.dtype == np.float32 and b.ndim == 1 and b.size for b in blocks)
    np.testing.assert_allclose(np.concatenate(blocks), load_audio(path, SR), rtol=0, atol=1e-6)


@pytest.mark.subprocess
def test_mp3_blocks_decode_silently_and_equal_one_whole_read(tmp_path: Path) -> None:
    """soundfile's ``read`` seeks after every block, which restarts libmpg123 without its bit
    reservoir: ``part2_3_length ... too large`` lines on the process's C-level stderr. The decoder
    reads past it; a subprocess shows its stderr stays empty and the blocks equal one whole read."""
    path = tmp_path / "song.mp3"
    code = (
        "import sys, numpy as np, soundfile as sf, soxr\n"
        "from data.demo_library import synthesise\n"
        "from indexer.decode import iter_audio\n"
        "audio, sr = synthesise('techno', 40.0, seed=3)\n"
        "with sf.SoundFile(sys.argv[1], 'w', samplerate=sr, channels=1, format='MP3', subtype='MPEG_LAYER_III') as f:\n"
        "    f.write(audio)\n"
        "whole, native = sf.read(sys.argv[1], dtype='float32')\n"
        "want = soxr.resample(whole, native, 16000, quality='HQ')\n"
        "got = np.concatenate(list(iter_audio(sys.argv[1], 16000, block_seconds=0.7)))\n"
        "assert len(got) == len(want), (len(got), len(want))\n"
        "print(float(np.abs(got - want).max()))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr  # nothing from libmpg123
    assert float(proc.stdout) < 1e-5


def test_stream_of_a_bad_file_fails_clearly(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp3"
    text.write_text("not audio\n" * 100)
    with pytest.raises(FileFailure) as err:
        list(iter_audio(text, SR))
    assert err.value.stage == "decode"
    empty = tmp_path / "empty.flac"
    empty.touch()
    with pytest.raises(FileFailure, match="empty"):
        list(iter_audio(empty, SR))


def test_prefetch_passes_items_errors_and_stops_early() -> None:
    assert list(prefetch(iter(range(50)), depth=2)) == list(range(50))

    def broken():
        yield 1
        raise FileFailure("decode", "boom")

    got = []
    with pytest.raises(FileFailure, match="boom"):
        for item in prefetch(broken()):
            got.append(item)
    assert got == [1]
    closed = []

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.append(True)

    for item in prefetch(endless(), depth=1):
        if item == 3:
            break
    assert closed == [True]  # the producer thread stopped and closed its generator


def test_features_embed_stream_equals_embed(tmp_path: Path) -> None:
    path = tmp_path / "mix.flac"
    sf.write(path, _signal(200.0), SR)  # longer than features' 180 s centre
    emb = FeaturesEmbedder()
    streamed = emb.embed_stream(AudioSource(path, SR, block_seconds=7.0))
    whole = emb.embed(load_audio(path, SR))
    np.testing.assert_allclose(streamed.vector, whole.vector, rtol=1e-5, atol=1e-6)


def _write_library(root: Path) -> tuple[Path, Path]:
    root.mkdir()
    long_file, short_file = root / "long mix.flac", root / "short.wav"
    sf.write(long_file, _signal(150.0, seed=1), SR)
    sf.write(short_file, _signal(20.0, seed=2), SR)
    return long_file, short_file


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.heavy)])  # 2: a pool of spawned workers
def test_pipeline_streams_long_files_with_the_same_result(tmp_path: Path, workers: int) -> None:
    """Vectors, and (with one worker: the tag stage's decoding is the same for two) sound tags."""
    tags = workers == 1
    long_file, short_file = _write_library(tmp_path / "lib")
    streamed = index_library([tmp_path / "lib"], tmp_path / "s1", FeaturesEmbedder(), workers=workers,
                             stream_seconds=60.0, tags=tags)
    whole = index_library([tmp_path / "lib"], tmp_path / "s2", FeaturesEmbedder(), workers=workers,
                          stream_seconds=None, tags=tags)
    assert streamed.added == whole.added == 2 and streamed.failed == 0
    if tags:
        assert streamed.tags is not None and whole.tags is not None
        assert streamed.tags["tagged"] == whole.tags["tagged"] == 2 and streamed.tags["failed"] == 0
    with Store.open(tmp_path / "s1", read_only=True) as a, Store.open(tmp_path / "s2", read_only=True) as b:
        for path in (long_file, short_file):
            ia, ib = a.track_id_for_path(path), b.track_id_for_path(path)
            assert ia is not None and ib is not None
            assert a.track(ia)["duration"] == pytest.approx(150.0 if path == long_file else 20.0, abs=0.1)
            (va, vb) = (dict(zip(*st.vectors(), strict=True)) for st in (a, b))
            np.testing.assert_allclose(va[ia], vb[ib], rtol=1e-5, atol=1e-6)
            if tags:  # the long file's tags from its stream equal those from the whole decoded file
                query = "SELECT tagger, label, activation FROM sound_tags WHERE track_id = {} ORDER BY 1, 2"
                ta, tb = (st.sql(query.format(i)).rows for st, i in ((a, ia), (b, ib)))
                assert len(ta) == 100 and [r[:2] for r in ta] == [r[:2] for r in tb]
                np.testing.assert_allclose([r[2] for r in ta], [r[2] for r in tb], atol=1e-4)


def _peak_growth_mb(library: Path, store: Path, stream: str) -> float:
    """Peak RSS growth (MB) of a fresh process indexing ``library`` (VmHWM: ru_maxrss survives exec)."""
    script = (
        "import sys\n"
        "import numpy, librosa, soxr, duckdb, faiss  # loaded before the baseline\n"
        "from indexer.embedders import FeaturesEmbedder\n"
        "from indexer.pipeline import index_library\n"
        "def hwm():\n"
        "    line = next(l for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
        "    return int(line.split()[1]) / 1024\n"
        "FeaturesEmbedder().embed(numpy.zeros(16000, numpy.float32))\n"
        "base = hwm()\n"
        "stream = None if sys.argv[3] == 'none' else float(sys.argv[3])\n"
        # no tag stage: loading MusiCNN (torch) was most of the peak (~600 MB), and its noise near the margin
        "r = index_library([sys.argv[1]], sys.argv[2], FeaturesEmbedder(), stream_seconds=stream, tags=False)\n"
        "assert r.added == 1 and r.failed == 0, r\n"
        "print(hwm() - base)\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(library), str(store), stream],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


@pytest.mark.subprocess
def test_long_file_indexing_memory_is_bounded(tmp_path: Path) -> None:
    """Streamed, a 40-minute file peaks no higher than a 10-minute one (the cost is the 180 s the
    features embedder analyses, whatever the length); decoded whole, the 40-minute one peaks at
    least 100 MB higher (its 154 MB of decoded audio), so the test can fail."""
    growth: dict[tuple[int, str], float] = {}
    for minutes in (10, 40):
        library = tmp_path / f"lib{minutes}"
        library.mkdir()
        sf.write(library / "dj mix.flac", _signal(minutes * 60.0, seed=3), SR)
        for stream in ("300", "none"):
            growth[minutes, stream] = _peak_growth_mb(library, tmp_path / f"s{minutes}{stream}", stream)
    assert growth[40, "none"] - growth[10, "none"] > 100, growth
    assert growth[40, "300"] - growth[10, "300"] < 20, growth


def test_maest_long_file_streamed_in_the_main_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MAEST stays in the main process (workers decode): a long file is left to it as a stream,
    decoded ahead in a thread; the stored vector and windows equal the whole-file ones."""
    from transformers import ASTConfig, ASTForAudioClassification

    from indexer.embedders import load_embedder

    config = ASTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                       patch_size=16, frequency_stride=10, time_stride=10, num_mel_bins=96, max_length=66,
                       num_labels=2, id2label={0: "Jazz---Bop", 1: "Rock---Punk"},
                       label2id={"Jazz---Bop": 0, "Rock---Punk": 1})
    ASTForAudioClassification(config).save_pretrained(tmp_path / "tiny")
    long_file, _ = _write_library(tmp_path / "lib")
    import indexer.pipeline

    opened: list[Path] = []

    class Spy(AudioSource):
        def blocks(self):  # type: ignore[no-untyped-def]
            opened.append(self.path)
            assert self.prefetch_depth > 0
            return super().blocks()

    monkeypatch.setattr(indexer.pipeline, "AudioSource", Spy)
    results = {}
    for name, stream in (("s1", 60.0), ("s2", None)):
        emb = load_embedder(str(tmp_path / "tiny"), device="cpu", batch_size=4, layer=4)
        report = index_library([tmp_path / "lib"], tmp_path / name, emb, workers=2, stream_seconds=stream,
                               tags=False)  # MAEST's own streaming is the subject
        assert (report.added, report.failed) == (2, 0)
        with Store.open(tmp_path / name) as s:
            tid = s.track_id_for_path(long_file)
            ids, vectors = s.vectors()
            n_windows = s.sql(f"SELECT count(*) FROM windows WHERE track_id = {tid}").rows[0][0]
            results[name] = (vectors[ids.tolist().index(tid)], n_windows)
    assert opened == [long_file]  # streamed here, once; never for the short file or with stream=None
    np.testing.assert_allclose(results["s1"][0], results["s2"][0], rtol=1e-4, atol=1e-5)
    assert results["s1"][1] == results["s2"][1] == frontend.window_starts(frontend.n_frames(150 * SR), 66).__len__()
