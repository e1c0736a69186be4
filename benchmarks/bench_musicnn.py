"""MusiCNN on real music (issue #19): which vector, how good, how fast.

``quality``: the demo's real music (Debian game soundtracks, :data:`data.debian_music.DEMO_SOURCES`,
fetched into ``benchmarks/work/debian-music``). Every track goes through the front end and each
network once; per patch both candidate vectors are kept (``penultimate`` = BN(ReLU(dense)),
musicnn's name; ``dense`` = before ReLU and BN, Essentia's "embedding"), and the track vector is
their mean, or mean and standard deviation. Scored against the source (the soundtrack a track
comes from), leave-one-out, cosine:

- ``same_source_top1/5/10``: the share of each track's 1, 5, 10 nearest that come from its
  soundtrack (the smallest soundtracks have 3 and 6 tracks, so top 10 is bounded for them);
- ``chance``: the same share for random neighbours;
- ``map``: trustworthiness and kNN preservation of the t-SNE map against a PCA map, and each map's
  same-source neighbour share.

The handcrafted ``features`` embedder is scored the same way, as the baseline.

``speed``: audio-seconds per second on this machine for ``features``, MusiCNN (each network, with 1
and with all threads) and MAEST (a full-size random model, one 30-s window per forward pass,
embed-only): the tiers of docs/models.md.

    python benchmarks/bench_musicnn.py quality [--models musicnn-msd,musicnn-mtt]
    python benchmarks/bench_musicnn.py speed
    python benchmarks/bench_musicnn.py budget     # --max-windows on real music (issue #21)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
from _report import save

WORK = Path(__file__).resolve().parent / "work" / "debian-music"


def _tracks() -> list[tuple[Path, str]]:
    from data.debian_music import DEMO_SOURCES, fetch

    fetched = fetch(WORK, DEMO_SOURCES)
    return [(got.folder / name, got.source.package) for got in fetched for name in got.files]


def _scores(vectors: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Same-soundtrack shares of the 1, 5 and 10 nearest tracks (cosine, leave-one-out), and chance."""
    x = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    order = np.argsort(-sims, axis=1)[:, :10]
    same = labels[order] == labels[:, None]
    counts = {lab: int((labels == lab).sum()) for lab in set(labels.tolist())}
    chance = float(np.mean([(counts[lab] - 1) / (len(labels) - 1) for lab in labels]))
    return {"same_source_top1": round(float(same[:, 0].mean()), 4),
            "same_source_top5": round(float(same[:, :5].mean()), 4),
            "same_source_top10": round(float(same.mean()), 4), "chance": round(chance, 4)}


def _map_scores(vectors: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    from indexer.mapping.fit import fit
    from indexer.mapping.quality import map_quality

    x = (vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    out = {}
    for method in ("tsne", "pca"):
        xy, _, _ = fit(x, method=method, perplexity=min(30.0, (len(x) - 1) / 3), seed=0)
        q = map_quality(x, xy, labels.astype(object))
        out[method] = {key: round(float(v), 4) for key, v in q.items()}
    return out


def quality(args: argparse.Namespace) -> None:
    import torch

    from indexer.decode import load_audio
    from indexer.embedders import FeaturesEmbedder
    from indexer.embedders.musicnn import MusicnnEmbedder
    from indexer.musicnn import frontend

    tracks = _tracks()
    labels = np.array([source for _, source in tracks])
    print(f"{len(tracks)} tracks from {len(set(labels))} soundtracks")
    audio = [load_audio(path) for path, _ in tracks]
    seconds = sum(len(a) for a in audio) / 16_000
    results: dict[str, Any] = {}
    features = FeaturesEmbedder()
    vec = np.stack([features.embed(a).vector for a in audio])
    results["features"] = {**_scores(vec, labels), "map": _map_scores(vec, labels)}
    print("features", results["features"])
    for model in args.models.split(","):
        embedder = MusicnnEmbedder.load(model)
        per: dict[str, list[np.ndarray]] = {"penultimate": [], "dense": []}
        started = time.perf_counter()
        for a in audio:
            patches = frontend.patches(frontend.logmel(a))
            if patches.shape[1] != 187 and embedder.variant.network.__name__ == "VGG":
                patches = np.stack([frontend.repeat_pad(p) for p in patches])
            pen, dense = [], []
            with torch.inference_mode():
                for start in range(0, len(patches), 16):  # the embedder's batch
                    out = embedder.network(torch.from_numpy(np.ascontiguousarray(patches[start : start + 16])))
                    pen.append(out.penultimate.numpy())
                    dense.append(out.dense.numpy())
            per["penultimate"].append(np.concatenate(pen))
            per["dense"].append(np.concatenate(dense))
        elapsed = time.perf_counter() - started
        results[model] = {"seconds": round(elapsed, 1), "audio_s_per_s": round(seconds / elapsed, 1)}
        for layer, patch_vectors in per.items():
            for pooling in ("mean", "mean+std"):
                track = np.stack([p.mean(0) if pooling == "mean" else np.concatenate([p.mean(0), p.std(0)])
                                  for p in patch_vectors])
                name = f"{layer}/{pooling}"
                results[model][name] = _scores(track, labels)
                if (layer == "penultimate" and pooling == "mean") or args.maps == "all":
                    results[model][name]["map"] = _map_scores(track, labels)
                print(model, name, results[model][name])
    save("musicnn-quality", {"tracks": len(tracks), "audio_seconds": round(seconds, 1),
                             "sources": {lab: int((labels == lab).sum()) for lab in sorted(set(labels))},
                             "results": results})


def budget(args: argparse.Namespace) -> None:
    """The window budget's cost on real music with real weights (issue #21): each track's mean
    over N patches spread evenly (``--max-windows N``) against its mean over all, for MusiCNN's
    3-s patches and for 30-s groups of them (MAEST's window length, whose trained weights are not
    available here: the closest real-weight stand-in)."""
    import torch

    from indexer.decode import load_audio
    from indexer.embedders.musicnn import MusicnnEmbedder
    from indexer.maest.frontend import spread
    from indexer.musicnn import frontend

    tracks = _tracks()
    embedder = MusicnnEmbedder.load("musicnn-mtt")
    per_track = []
    for path, _ in tracks:
        patches = frontend.patches(frontend.logmel(load_audio(path)))
        with torch.inference_mode():
            vectors = [embedder.network(torch.from_numpy(np.ascontiguousarray(patches[i : i + 16]))).penultimate
                       .numpy() for i in range(0, len(patches), 16)]
        per_track.append(np.concatenate(vectors))

    def cos(a: np.ndarray, b: np.ndarray) -> float:
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    def row(values: list[float]) -> dict[str, float]:
        v = np.array(values)
        return {"min": round(float(v.min()), 4), "p5": round(float(np.percentile(v, 5)), 4),
                "mean": round(float(v.mean()), 4), "share_at_least_0.99": round(float((v >= 0.99).mean()), 3)}

    patch_rows = {n: row([cos(p[spread(len(p), n)].mean(0), p.mean(0)) for p in per_track]) for n in (4, 8, 16, 32, 64)}
    groups = [np.stack([p[i : i + 10].mean(0) for i in range(0, len(p) - 9, 10)]) if len(p) >= 10
              else p.mean(0, keepdims=True) for p in per_track]
    window_rows = {n: row([cos(g[spread(len(g), n)].mean(0), g.mean(0)) for g in groups]) for n in (2, 3, 4, 6, 8)}
    for name, rows in (("3-s patches", patch_rows), ("30-s windows", window_rows)):
        for n, r in rows.items():
            print(f"{name}, budget {n}: {r}")
    save("musicnn-budget", {"tracks": len(tracks), "model": "musicnn-mtt penultimate",
                            "patches_per_track_median": float(np.median([len(p) for p in per_track])),
                            "patch_budget": patch_rows, "window_budget_30s": window_rows})


def speed(args: argparse.Namespace) -> None:
    import torch

    from indexer.decode import load_audio
    from indexer.embedders import FeaturesEmbedder
    from indexer.embedders.musicnn import MusicnnEmbedder

    path, _ = _tracks()[0]
    audio = load_audio(path)[: 16_000 * 120]  # two minutes of real music
    seconds = len(audio) / 16_000
    threads = torch.get_num_threads()
    rows: dict[str, Any] = {}

    def timed(name: str, fn: Any, repeats: int = 2) -> None:
        fn()  # warm-up
        best = min(_once(fn) for _ in range(repeats))
        rows[name] = {"seconds": round(best, 3), "audio_s_per_s": round(seconds / best, 1)}
        print(name, rows[name], flush=True)

    timed("features", lambda: FeaturesEmbedder().embed(audio))
    for model in args.models.split(","):
        embedder = MusicnnEmbedder.load(model)
        for n in sorted({1, threads}):
            torch.set_num_threads(n)
            timed(f"{model} ({n} thread{'s' if n > 1 else ''})", lambda e=embedder: e.embed(audio))
        torch.set_num_threads(threads)
    if not args.skip_maest:
        from bench_maest import build_model

        from indexer.maest import frontend as maest_frontend
        from indexer.maest.model import MaestRunner, RunOptions

        model = build_model(1876, "sdpa")
        runner = MaestRunner(model, RunOptions(styles=False), "cpu")
        windows = maest_frontend.windows(maest_frontend.essentia_logmel(audio), 1876)
        timed("MAEST 30 s, embed-only, fp32, random weights", lambda: runner.run(windows), repeats=1)
    save("musicnn-speed", {"audio_seconds": seconds, "threads": threads, "torch": torch.__version__, "rows": rows})


def _once(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--models", default="musicnn-msd,musicnn-mtt,musicnn-msd-vgg,musicnn-mtt-vgg")
    q.add_argument("--maps", choices=("default", "all"), default="default",
                   help="map quality for the default vector only, or for every variant")
    sub.add_parser("budget")
    s = sub.add_parser("speed")
    s.add_argument("--models", default="musicnn-msd,musicnn-msd-vgg")
    s.add_argument("--skip-maest", action="store_true")
    args = parser.parse_args()
    {"quality": quality, "budget": budget, "speed": speed}[args.what](args)


if __name__ == "__main__":
    main()
