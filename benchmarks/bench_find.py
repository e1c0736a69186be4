"""``musicmap find``: how good word search is on real music, and how fast it is at 100k tracks.

``quality``: the demo's real music (six Debian game soundtracks, :data:`data.debian_music.DEMO_SOURCES`)
indexed with MusiCNN (MTT) and tagged (the index run's tag stage), and the labelled queries of
``benchmarks/data/find_queries.toml`` (written before any tuning; the file says how each is
judged). For each query, precision@10 of:

- ``words``: ``Store.find`` as shipped (synonyms, fuzzy matching, no centroid step);
- ``no synonyms``, ``no fuzzy``, ``centroid 0.3`` / ``centroid 0.6``: one part changed;
- ``wordllama``: unknown words matched by wordllama's static embeddings instead of spelling (only
  when the ``wordllama`` package is installed; loaded offline from its own folder);
- ``typos: ...``: the same queries with a typing slip in every word of five letters or more
  (:func:`typo`), read with the spelling match, without any, and with wordllama;
- ``title/artist``: the text search the explorer had (``Store.find_tracks``: words in title, artist, album);
- ``chance``: the share of relevant tracks.

``tagging``: what the tag stage adds to an index run next to MAEST (:func:`tagging`).

``speed``: a synthetic store of ``--tracks`` (100,000) tracks with both taggers' 100 tags each;
the time of a first query that reads its tags from DuckDB itself, of reading every tag at once (what
the server does at start, in the background), and of queries after that (k = 50), as ``Store.find``
runs in the server.

    python benchmarks/bench_find.py quality [--store DIR]
    python benchmarks/bench_find.py tagging [--tracks 12]
    python benchmarks/bench_find.py speed [--tracks 100000]
"""

from __future__ import annotations

import argparse
import statistics
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
from _report import save

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
QUERIES = HERE / "data" / "find_queries.toml"
MEASURES = ("rms", "onsets", "percussive", "centroid")


def _demo_store(store: Path) -> Path:
    """The demo's music indexed with MusiCNN (MTT) and tagged, built once under benchmarks/work."""
    if (store / "manifest.json").is_file():
        return store
    from data.debian_music import DEMO_SOURCES, fetch, write_metadata
    from indexer.embedders import load_embedder
    from indexer.pipeline import index_library

    fetched = fetch(WORK / "debian-music", DEMO_SOURCES)
    csv = write_metadata(fetched, WORK / "debian-music.csv")
    index_library([WORK / "debian-music"], store, load_embedder("musicnn-mtt"), metadata=csv, map_name=None)
    return store


def _measure(path: str, sr: int = 16_000, seconds: float = 90.0) -> dict[str, float]:
    """Loudness, onset rate, percussive share and brightness of ``seconds`` from the middle of a
    track, with librosa (never the taggers)."""
    import librosa

    from indexer.decode import load_audio

    audio = load_audio(path, sr)
    if len(audio) > seconds * sr:
        start = (len(audio) - int(seconds * sr)) // 2
        audio = audio[start : start + int(seconds * sr)]
    spec = np.abs(librosa.stft(audio, n_fft=1024, hop_length=512))
    harmonic, percussive = librosa.decompose.hpss(spec)
    onsets = librosa.onset.onset_detect(y=audio, sr=sr, hop_length=512)
    return {"rms": float(20 * np.log10(np.sqrt(np.mean(audio**2)) + 1e-9)),
            "onsets": float(len(onsets) / (len(audio) / sr)),
            "percussive": float((percussive**2).sum() / max((harmonic**2).sum() + (percussive**2).sum(), 1e-12)),
            "centroid": float(librosa.feature.spectral_centroid(S=spec, sr=sr).mean())}


def _relevant(query: dict[str, Any], tracks: list[dict[str, Any]], measured: dict[int, dict[str, float]]) -> set[int]:
    if "sources" in query:
        return {t["id"] for t in tracks if t["source"] in query["sources"]}
    ids = sorted(measured)
    columns = {m: np.array([measured[i][m] for i in ids]) for m in MEASURES}
    z = {m: (v - v.mean()) / (v.std() or 1.0) for m, v in columns.items()}
    score = np.zeros(len(ids))
    for part in query["measure"].split():
        score += (1.0 if part[0] == "+" else -1.0) * z[part[1:]]
    top = np.argsort(-score)[: len(ids) // 3]
    return {ids[i] for i in top}


def _wordllama_matcher() -> Any:
    """A ``matcher`` for :meth:`store.words.Vocabulary.parse`: the known word nearest an unknown one
    by the cosine of wordllama's static embeddings (at least 0.5), loaded offline from the
    package's own folder; None without the package."""
    import importlib.util

    spec = importlib.util.find_spec("wordllama")
    if spec is None or not spec.submodule_search_locations:
        return None
    from wordllama import WordLlama

    wl = WordLlama.load(cache_dir=Path(next(iter(spec.submodule_search_locations))), disable_download=True)
    known_vectors: dict[tuple[str, ...], np.ndarray] = {}

    def match(word: str, known: dict[str, str]) -> str | None:
        keys = tuple(known)
        if keys not in known_vectors:
            v = wl.embed([known[k] for k in keys])
            known_vectors[keys] = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)
        w = wl.embed([word])[0]
        sims = known_vectors[keys] @ (w / max(float(np.linalg.norm(w)), 1e-9))
        best = int(np.argmax(sims))
        return keys[best] if sims[best] >= 0.5 else None

    return match


def typo(text: str) -> str:
    """``text`` with a typing slip in every word of five letters or more: its two middle letters
    swapped ("ambient" → "ambeint"), to measure what the fuzzy matchers recover."""
    def slip(word: str) -> str:
        if len(word) < 5 or not word.isalpha():
            return word
        i = len(word) // 2
        return word[: i - 1] + word[i] + word[i - 1] + word[i + 1 :]
    return " ".join(slip(w) for w in text.replace(",", " ,").split()).replace(" ,", ",")


def quality(args: argparse.Namespace) -> None:
    import json

    from store import Store
    from store.find import FindOptions, run_find

    store_path = _demo_store(Path(args.store))
    queries = tomllib.loads(QUERIES.read_text(encoding="utf-8"))["query"]
    cache = store_path / "bench-find-measures.json"
    with Store.open(store_path) as store:
        frame = store.tracks(columns=["id", "path", "extra"])
        tracks = [{"id": int(r.id), "path": r.path, "source": json.loads(r.extra or "{}").get("source")}
                  for r in frame.itertuples()]
        measured: dict[int, dict[str, float]] = {}
        if cache.is_file():
            measured = {int(k): v for k, v in json.loads(cache.read_text()).items()}
        started = time.perf_counter()
        for t in tracks:
            if t["id"] not in measured:
                measured[t["id"]] = _measure(t["path"])
        cache.write_text(json.dumps(measured))
        measure_s = time.perf_counter() - started
        tags = store.sound_tags()
        variants: dict[str, dict[str, Any]] = {
            "words": {}, "no synonyms": {"synonyms": False}, "no fuzzy": {"fuzzy": False},
            "centroid 0.3": {"centroid": 0.3}, "centroid 0.6": {"centroid": 0.6},
        }
        matcher = _wordllama_matcher()
        have_wordllama = matcher is not None
        rows = []
        for q in queries:
            relevant = _relevant(q, tracks, measured)
            row: dict[str, Any] = {"text": q["text"], "relevant": len(relevant),
                                   "chance": round(len(relevant) / len(tracks), 4)}
            for name, opts in variants.items():
                found = run_find(store, tags, q["text"], FindOptions(k=10, **opts))
                got = [r.track_id for r in found.results]
                row[name] = round(sum(i in relevant for i in got) / 10, 4)
                if name == "words":
                    row["understood"] = [f"{'not ' if w.negated else ''}{w.text} ({w.how})"
                                         for w in found.parsed.words]
                    row["unknown"] = [w for w, _ in found.parsed.unknown]
            if have_wordllama:
                found = run_find(store, tags, q["text"], FindOptions(k=10, matcher=matcher))
                row["wordllama"] = round(sum(r.track_id in relevant for r in found.results) / 10, 4)
            slipped = typo(q["text"])
            row["typos"] = slipped
            for name, opts in {"typos: fuzzy": {}, "typos: no fuzzy": {"fuzzy": False},
                               **({"typos: wordllama": {"matcher": matcher}} if have_wordllama else {})}.items():
                found = run_find(store, tags, slipped, FindOptions(k=10, **opts))
                row[name] = round(sum(r.track_id in relevant for r in found.results) / 10, 4)
            text_hits = store.find_tracks(q["text"], limit=10)
            row["title/artist"] = round(sum(int(i) in relevant for i in text_hits["id"]) / 10, 4)
            rows.append(row)
    names = ["chance", "title/artist", *variants, *(["wordllama"] if have_wordllama else []), "typos: fuzzy",
             "typos: no fuzzy", *(["typos: wordllama"] if have_wordllama else [])]
    means = {n: round(statistics.mean(r[n] for r in rows), 4) for n in names}
    wins = {n: sum(r[n] > r["chance"] for r in rows) for n in names if n != "chance"}
    save("find-quality", {"store": str(store_path), "tracks": len(tracks), "queries": len(rows),
                          "measure_seconds": round(measure_s, 1), "precision_at_10_mean": means,
                          "queries_above_chance": wins, "per_query": rows})


def _synthetic_store(folder: Path, n: int) -> Path:
    """``n`` tracks with random 64-d vectors and both taggers' tags (Beta-distributed, each tag with
    its own prior), written as the indexer writes them."""
    from indexer.embedders.musicnn import MSD_TAGS, MTT_TAGS
    from store import ModelInfo, Store, TrackRecord

    if (folder / "manifest.json").is_file():
        return folder
    rng = np.random.default_rng(0)
    model = ModelInfo(name="bench", id="bench-find", kind="handcrafted", label="random", dimension=64)
    with Store.open_for_indexing(folder, model) as store:
        for start in range(0, n, 5000):
            count = min(5000, n - start)
            vectors = rng.normal(size=(count, 64)).astype(np.float32)
            ids = store.write_tracks([TrackRecord(path=f"/bench/{start + i}.ogg", size=1, mtime=1.0,
                                                  tags={"title": f"t{start + i}", "artist": f"a{(start + i) % 997}"},
                                                  vector=vectors[i]) for i in range(count)])
            for tagger, labels in (("musicnn-mtt", MTT_TAGS), ("musicnn-msd", MSD_TAGS)):
                priors = rng.uniform(0.5, 5.0, len(labels))
                values = rng.beta(priors, 20.0, size=(count, len(labels))).astype(np.float32)
                store.write_sound_tags(tagger, {tid: dict(zip(labels, map(float, row), strict=True))
                                                for tid, row in zip(ids, values, strict=True)})
        store.sync()
    return folder


def tagging(args: argparse.Namespace) -> None:
    """What the tag stage adds to an index run next to MAEST: ``--tracks`` real tracks (spread over
    the demo's soundtracks) indexed with a full-size random MAEST at its defaults (the same
    arithmetic as the trained one) without tags, then tagged by both MusiCNN taggers in fp32 and in
    bf16 (the largest difference between the two in any probability is reported)."""
    import shutil
    import tempfile

    import torch
    from transformers import ASTConfig, ASTForAudioClassification

    from data.debian_music import DEMO_SOURCES, fetch
    from indexer.cpu import cpu_flags, cpu_name, gemm_rates
    from indexer.embedders import load_embedder
    from indexer.pipeline import index_library
    from indexer.tagger import MAX_PATCHES, Tagger, tag_store
    from store import Store

    fetched = fetch(WORK / "debian-music", DEMO_SOURCES)
    files = [got.folder / name for i in range(args.tracks) for got in fetched[i % len(fetched): i % len(fetched) + 1]
             for name in got.files[i // len(fetched): i // len(fetched) + 1]]
    out: dict[str, Any] = {"cpu": cpu_name(), "cpu_flags": sorted(f for f in cpu_flags()
                                                                   if f.startswith(("avx512", "amx", "avx2"))),
                           "gemm_gflops": gemm_rates(), "tracks": len(files), "max_patches": MAX_PATCHES}
    with tempfile.TemporaryDirectory() as tmp:
        lib = Path(tmp) / "lib"
        lib.mkdir()
        for i, f in enumerate(files):
            shutil.copy(f, lib / f"{i:02d}-{f.name}")
        torch.manual_seed(0)
        config = ASTConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                           num_mel_bins=96, max_length=1876, num_labels=519)
        ASTForAudioClassification(config).save_pretrained(Path(tmp) / "maest-random")
        embedder = load_embedder(str(Path(tmp) / "maest-random"), device="cpu", batch_size=4)
        report = index_library([lib], Path(tmp) / "store", embedder, workers=2, tags=False, map_name=None)
        out["audio_seconds"] = round(report.audio_seconds, 1)
        out["maest"] = {"files_s": report.durations["files"], "model_s": round(embedder.model_seconds, 2),  # type: ignore[attr-defined]
                        "precision": embedder.info.extra.get("options", {}).get("precision")}
        tags: dict[str, np.ndarray] = {}
        for precision in ("fp32", "bf16"):
            import duckdb

            with duckdb.connect(str(Path(tmp) / "store" / "library.duckdb")) as con:  # the last precision's tags go
                con.execute("DELETE FROM sound_tags")
            with Store.open_for_indexing(Path(tmp) / "store", embedder.info) as store:
                done = tag_store(store, own_model=embedder.info.id, workers=2, tagger=Tagger.load(precision=precision))
            with Store.open(Path(tmp) / "store") as reader:
                tags[precision] = np.array(reader.sql("SELECT activation FROM sound_tags ORDER BY track_id, tagger, "
                                                      "label", max_rows=10**6).to_frame()["activation"])
            out[f"tags_{precision}"] = {"seconds": done.seconds, "model_s": done.model_seconds,
                                        "share_of_maest_files": round(done.seconds / report.durations["files"], 3)}
        out["bf16_max_probability_difference"] = round(float(np.abs(tags["bf16"] - tags["fp32"]).max()), 5)
        out["bf16_speedup"] = round(out["tags_fp32"]["seconds"] / out["tags_bf16"]["seconds"], 2)
    save("find-tagging", out)


SPEED_QUERIES = ("calm piano without drums", "upbeat female vocal", "orchestral, no choir", "dark ambient",
                 "fast loud drums", "mellow acoustic guitar", "sad slow strings", "happy dance beat")


def speed(args: argparse.Namespace) -> None:
    from indexer.cpu import cpu_flags, cpu_name
    from store import Store

    folder = _synthetic_store(WORK / f"find-{args.tracks}", args.tracks)
    out: dict[str, Any] = {"tracks": args.tracks, "cpu": cpu_name(),
                           "cpu_flags": sorted(f for f in cpu_flags() if f.startswith(("avx512", "amx", "avx2")))}
    with Store.open(folder) as store:  # a first query that reads its own columns
        started = time.perf_counter()
        store.find(SPEED_QUERIES[0])
        out["first_query_cold_ms"] = round(1000 * (time.perf_counter() - started), 1)
    with Store.open(folder) as store:  # as the server does: every tag read at start, in the background
        started = time.perf_counter()
        out["warm_tags"] = store.warm_sound_tags()
        out["warm_s"] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()
        store.find(SPEED_QUERIES[1])
        out["first_query_after_warm_ms"] = round(1000 * (time.perf_counter() - started), 1)
        times: dict[str, list[float]] = {}
        for _ in range(args.repeats):
            for q in SPEED_QUERIES:
                started = time.perf_counter()
                store.find(q, k=50)
                times.setdefault(q, []).append(1000 * (time.perf_counter() - started))
        out["warm_query_ms"] = {q: round(statistics.median(t), 2) for q, t in times.items()}
        out["warm_query_ms_median"] = round(statistics.median([x for t in times.values() for x in t]), 2)
        out["warm_query_ms_max"] = round(max(x for t in times.values() for x in t), 2)
        started = time.perf_counter()
        store.find("calmer, more piano", like=12345 % args.tracks + 1, k=10)
        out["like_query_ms"] = round(1000 * (time.perf_counter() - started), 2)
    save("find-speed", out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--store", default=str(WORK / "find-demo-store"))
    t = sub.add_parser("tagging")
    t.add_argument("--tracks", type=int, default=12)
    s = sub.add_parser("speed")
    s.add_argument("--tracks", type=int, default=100_000)
    s.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    {"quality": quality, "tagging": tagging, "speed": speed}[args.what](args)


if __name__ == "__main__":
    main()
