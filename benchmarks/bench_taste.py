"""Taste and memory (issue #31): what a listener's events do to the lists, and how fast they record.

``listener``: the demo's real music (six Debian game soundtracks, :data:`data.debian_music.DEMO_SOURCES`)
indexed with MusiCNN (MTT; ``--store``, several allowed: one per model). A simulated listener likes
one soundtrack L and skips another S. For every ordered pair (L, S) of the soundtracks with at
least :data:`MIN_TRACKS` tracks, on a copy of the store, :func:`listener_events` are recorded one
by one (likes and full plays of L tracks, early skips and two dislikes of S tracks, interleaved,
in a fixed order), and after 0, 5, 10 and 20 events it measures

- ``liked_similar``: L's share of ``Store.similar(seed, k=10)`` over the neutral seeds (the tracks
  of the other soundtracks); at 0 events that is the no-taste value;
- ``skipped_similar``: S's share of the same lists; ``disliked``: the disliked tracks' share of
  every list (similar and mix: must be 0);
- ``liked_mix``, ``skipped_mix``: L's and S's share of ``Store.mix(n=30)`` (nothing to mix from
  before the first like); its no-taste values are L's share of the library (a shuffle) and the
  share in the same mix with the steering switched off (``A_UP = B_DOWN = 0``: the moods' plain
  neighbours);
- ``mix_albums``: distinct albums (soundtracks) in the mix, ``mix_top_album``: the largest one's
  share; ``similar_albums``: distinct albums per similar list (the lists stay varied).

With ``--grid``, the same runs for each setting of ``A_UP``/``B_DOWN`` (0.5, 1, 2) and of the
``PLAY``/``SKIP`` weights (module constants of :mod:`store.taste`, patched in this process).

``recording``: events from ``--processes`` processes at once, ``--rate`` events a second in all
(one event a call) for ``--seconds``, while ``musicmap index`` writes a synthetic library
(:mod:`data.demo_library`, new files, embedded with the store's model) into the same store (a
copy of ``--store``). ``--via http`` (the default): ``POST /api/v1/events`` to a ``musicmap serve``
of the copy, started before the index run, whose tracks it has shown (``GET /api/v1/tracks``) as
the explorer would; ``--via store``: ``Store.record`` on a shared store in each process. Then
every acknowledged event is looked up in the journal (none may be lost); the achieved rate and the
latency of the calls (p50, p99, max) are reported.

    python benchmarks/bench_taste.py listener [--store DIR ...] [--grid]
    python benchmarks/bench_taste.py recording [--store DIR] [--via http|store] [--rate 100] [--seconds 20]
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from _report import save

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / "work"
DEFAULT_STORE = WORK / "find-demo-store"
MIN_TRACKS = 16
"""A soundtrack needs this many tracks to be L or S (20 events use 11 of L's and 8 of S's)."""
CHECKPOINTS = (0, 5, 10, 20)
K = 10
MIX_N = 30
GRID_AB = (0.5, 1.0, 2.0)
GRID_PLAY_SKIP = ((0.25, -0.4), (0.5, -0.4), (0.25, -0.8), (0.5, -0.8), (0.1, -0.2))

# The listener's 20 events: (kind, which soundtrack, the how-many-th track of it).
PATTERN: tuple[tuple[str, str, int], ...] = (
    ("liked", "L", 0), ("skipped", "S", 0), ("played", "L", 1), ("liked", "L", 2), ("skipped", "S", 1),
    ("played", "L", 3), ("liked", "L", 4), ("skipped", "S", 2), ("disliked", "S", 3), ("played", "L", 5),
    ("liked", "L", 6), ("skipped", "S", 4), ("played", "L", 7), ("played", "L", 0), ("skipped", "S", 5),
    ("liked", "L", 8), ("disliked", "S", 6), ("played", "L", 9), ("skipped", "S", 7), ("liked", "L", 10),
)


def cpu() -> dict[str, Any]:
    from indexer.cpu import cpu_flags, cpu_name

    return {"cpu": cpu_name(), "cpu_flags": sorted(f for f in cpu_flags()
                                                   if f.startswith(("avx512", "amx")) or f in ("avx2", "fma"))}


def listener_events(tracks: dict[str, list[tuple[int, float]]], liked: str, skipped: str, start: float,
                    source: str) -> list[Any]:
    """The 20 events of :data:`PATTERN` for the liked soundtrack ``liked`` and the skipped one
    ``skipped`` (``tracks``: each soundtrack's (id, seconds) in a fixed shuffled order), a second apart."""
    from store import Event

    out = []
    for i, (kind, which, nth) in enumerate(PATTERN):
        tid, duration = tracks[liked if which == "L" else skipped][nth]
        seconds = {"played": duration, "skipped": min(10.0, 0.1 * duration)}.get(kind)
        out.append(Event(kind, tid, at=start + i, seconds=seconds, duration=duration if seconds is not None else None,
                         source=source))
    return out


def _soundtracks(store: Any, seed: int) -> tuple[dict[str, list[tuple[int, float]]], dict[int, str]]:
    rows = store.sql("SELECT id, json_extract_string(extra, '$.source'), duration FROM tracks ORDER BY id").rows
    by: dict[str, list[tuple[int, float]]] = {}
    for tid, src, dur in rows:
        by.setdefault(str(src), []).append((int(tid), float(dur or 0.0)))
    rng = np.random.default_rng(seed)
    for src in by:
        by[src] = [by[src][i] for i in rng.permutation(len(by[src]))]
    return by, {tid: src for src, ts in by.items() for tid, _ in ts}


def _measure(store: Any, source_of: dict[int, str], liked: str, skipped: str, seeds: list[int],
             disliked: set[int]) -> dict[str, Any]:
    from store import InvalidQuery

    lists = [store.similar(s, K) for s in seeds]
    flat = [n.track_id for lst in lists for n in lst]
    out: dict[str, Any] = {
        "liked_similar": float(np.mean([source_of[t] == liked for t in flat])),
        "skipped_similar": float(np.mean([source_of[t] == skipped for t in flat])),
        "similar_albums": float(np.mean([len({source_of[n.track_id] for n in lst}) for lst in lists])),
    }
    try:
        mixed = [m.neighbour.track_id for m in store.mix(n=MIX_N)]
    except InvalidQuery:
        mixed = []
    out["mix_len"] = len(mixed)
    if mixed:
        albums = Counter(source_of[t] for t in mixed)
        out |= {"liked_mix": sum(source_of[t] == liked for t in mixed) / len(mixed),
                "skipped_mix": sum(source_of[t] == skipped for t in mixed) / len(mixed),
                "mix_albums": len(albums), "mix_top_album": max(albums.values()) / len(mixed)}
    out["disliked"] = (sum(t in disliked for t in flat + mixed) / max(len(flat) + len(mixed), 1))
    return out


def _unsteered_mix(store: Any, source_of: dict[int, str], liked: str) -> float | None:
    """L's share of the mix with the steering off (the moods' plain neighbours)."""
    import store.taste as taste

    a, b = taste.A_UP, taste.B_DOWN
    taste.A_UP = taste.B_DOWN = 0.0
    try:
        mixed = [m.neighbour.track_id for m in store.mix(n=MIX_N)]
    finally:
        taste.A_UP, taste.B_DOWN = a, b
    return sum(source_of[t] == liked for t in mixed) / len(mixed) if mixed else None


def run_listener(store_path: Path, config: dict[str, float], *, draws: int, max_seeds: int) -> list[dict[str, Any]]:
    """Every (L, S) pair on ``store_path`` (copied) with the constants ``config`` patched into
    :mod:`store.taste`; one row per pair, draw and checkpoint."""
    import store.taste as taste
    from store import Store

    saved = {name: getattr(taste, name) for name in config}
    rows: list[dict[str, Any]] = []
    try:
        for name, value in config.items():
            setattr(taste, name, value)
        with tempfile.TemporaryDirectory(prefix="bench-taste-") as tmp:
            copy = Path(tmp) / "store"
            shutil.copytree(store_path, copy, ignore=shutil.ignore_patterns("taste.sqlite*"))
            with Store.open(copy) as store:
                run = 0
                for draw in range(draws):
                    by, source_of = _soundtracks(store, seed=draw)
                    big = sorted(s for s, ts in by.items() if len(ts) >= MIN_TRACKS)
                    for liked, skipped in itertools.permutations(big, 2):
                        run += 1
                        store.journal.forget()
                        events = listener_events(by, liked, skipped, time.time() - 600, f"bench{run}")
                        neutral = sorted(t for t, s in source_of.items() if s not in (liked, skipped))
                        seeds = [neutral[i] for i in np.linspace(0, len(neutral) - 1,
                                                                 min(max_seeds, len(neutral))).round().astype(int)]
                        done = 0
                        for point in CHECKPOINTS:
                            if point > done:
                                store.record(events[done:point])
                                done = point
                            disliked = {e.track_id for e in events[:point] if e.kind == "disliked"}
                            row = {"draw": draw, "liked": liked, "skipped": skipped, "events": point,
                                   "library_liked_share": len(by[liked]) / len(source_of),
                                   **_measure(store, source_of, liked, skipped, seeds, disliked)}
                            if point in (10, 20) and config.get("A_UP", 1.0):
                                row["unsteered_liked_mix"] = _unsteered_mix(store, source_of, liked)
                            rows.append(row)
    finally:
        for name, value in saved.items():
            setattr(taste, name, value)
    return rows


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over the pairs per checkpoint, and whether the goal holds: L's share of the similar
    lists at least doubled by 10 events (the mean, and in how many pairs), no disliked track listed,
    the mix never one album."""
    out: dict[str, Any] = {}
    for point in CHECKPOINTS:
        at = [r for r in rows if r["events"] == point]
        keys = sorted({k for r in at for k, v in r.items()
                       if isinstance(v, (int, float)) and k not in ("draw", "events")})
        out[str(point)] = {k: round(float(np.mean([r[k] for r in at if r.get(k) is not None])), 4)
                           for k in keys if any(r.get(k) is not None for r in at)}
    base = {(r["draw"], r["liked"], r["skipped"]): r["liked_similar"] for r in rows if r["events"] == 0}
    at10 = [r for r in rows if r["events"] == 10]
    doubled = [r["liked_similar"] >= 2 * base[(r["draw"], r["liked"], r["skipped"])] for r in at10]
    out["goal"] = {
        "liked_similar_ratio_10": round(out["10"]["liked_similar"] / out["0"]["liked_similar"], 3),
        "liked_similar_ratio_20": round(out["20"]["liked_similar"] / out["0"]["liked_similar"], 3),
        "pairs_doubled_by_10": f"{sum(doubled)}/{len(doubled)}",
        "liked_mix_ratio_10": round(out["10"].get("liked_mix", 0.0) / out["0"]["library_liked_share"], 3),
        "disliked_listed": max(r["disliked"] for r in rows),
        "min_mix_albums": min((r["mix_albums"] for r in rows if "mix_albums" in r), default=0),
    }
    out["goal"]["met"] = bool(out["goal"]["liked_similar_ratio_10"] >= 2.0 and out["goal"]["disliked_listed"] == 0
                              and out["goal"]["min_mix_albums"] >= 2)
    return out


def listener(args: argparse.Namespace) -> None:
    import store.taste as taste
    from store import Store

    body: dict[str, Any] = {**cpu(), "k": K, "mix_n": MIX_N, "pattern": [list(p) for p in PATTERN],
                            "defaults": {n: getattr(taste, n) for n in ("A_UP", "B_DOWN", "LIKE", "PLAY", "SKIP",
                                                                        "DISLIKE", "HALF_LIFE_DAYS")},
                            "stores": {}}
    for path in map(Path, args.store):
        with Store.open(path) as store:
            model = store.manifest.model.id
            sizes = dict(Counter(str(s) for (s,) in store.sql(
                "SELECT json_extract_string(extra, '$.source') FROM tracks").rows))
        started = time.perf_counter()
        rows = run_listener(path, {}, draws=args.draws, max_seeds=args.max_seeds)
        entry: dict[str, Any] = {"model": model, "soundtracks": sizes, "summary": summarise(rows),
                                 "seconds": round(time.perf_counter() - started, 1), "rows": rows}
        print(model, json.dumps(entry["summary"], indent=1), flush=True)
        if args.grid:
            grid = []
            configs = [{"A_UP": a, "B_DOWN": b} for a, b in itertools.product(GRID_AB, GRID_AB)]
            configs += [{"PLAY": p, "SKIP": s} for p, s in GRID_PLAY_SKIP[1:]]
            configs += [{"A_UP": 2.0, "B_DOWN": 1.0, "PLAY": p, "SKIP": s} for p, s in GRID_PLAY_SKIP[1:]]
            for config in configs:
                summary = summarise(run_listener(path, config, draws=args.draws, max_seeds=args.max_seeds))
                grid.append({"config": config, "summary": summary})
                print(model, config, json.dumps(summary["goal"]), flush=True)
            entry["grid"] = grid
        body["stores"][str(path)] = entry
    save("taste-listener", body)


# --- recording ---------------------------------------------------------------------------------


def _recorder(target: str, worker: int, rate: float, seconds: float, ids: list[int], start: float,
              out: Any) -> None:
    """One process: ``rate`` events a second, one a call, from ``start`` for ``seconds``, to
    ``target``: ``http://127.0.0.1:PORT`` (``POST /api/v1/events``) or a store folder (``Store.record``)."""
    import http.client
    from contextlib import ExitStack

    from store import Event, Store

    rng = np.random.default_rng(worker)
    acked, latencies, errors = [], [], []
    source = f"bench-w{worker}"
    with ExitStack() as stack:
        if target.startswith("http://"):
            host, port = target[len("http://"):].split(":")
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
            stack.callback(conn.close)

            def send(event: dict[str, Any]) -> None:
                conn.request("POST", "/api/v1/events", body=json.dumps(event),
                             headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                body = response.read()
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")
        else:
            store = stack.enter_context(Store.open(target, shared=True))

            def send(event: dict[str, Any]) -> None:
                store.record([Event(**event)])
        while time.time() < start:
            time.sleep(0.005)
        i = 0
        while True:
            due = start + i / rate
            if due > start + seconds:
                break
            wait = due - time.time()
            if wait > 0:
                time.sleep(wait)
            key = f"w{worker}-{i}"
            kind = ("played", "skipped", "liked", "disliked")[int(rng.integers(4))]
            event = {"kind": kind, "track_id": int(rng.choice(ids)), "source": source, "key": key,
                     **({"seconds": 30.0} if kind in ("played", "skipped") else {})}
            t0 = time.perf_counter()
            try:
                send(event)
                acked.append(key)
            except Exception as exc:  # counted and reported, the run goes on
                errors.append(f"{type(exc).__name__}: {exc}")
            latencies.append(time.perf_counter() - t0)
            i += 1
        finished = time.time()
    out.put({"worker": worker, "acked": acked, "latencies": latencies, "errors": errors[:20],
             "error_count": len(errors), "sent": i, "finished": finished})


def recording(args: argparse.Namespace) -> None:
    from bench_load import _serve

    from data.demo_library import generate_demo_library
    from store import Store

    with tempfile.TemporaryDirectory(prefix="bench-taste-rec-") as tmp:
        copy = Path(tmp) / "store"
        shutil.copytree(args.store, copy, ignore=shutil.ignore_patterns("taste.sqlite*"))
        with Store.open(copy) as store:
            ids = [int(i) for (i,) in store.sql("SELECT id FROM tracks").rows]
            model = store.manifest.model.id
        library = Path(tmp) / "library"
        generate_demo_library(library, n_tracks=args.index_tracks, seed=31, min_duration=30.0, max_duration=60.0)
        server = None
        target = str(copy)
        if args.via == "http":
            server, port, _ = _serve(copy)
            target = f"http://127.0.0.1:{port}"
            for tid in ids:  # the tracks the explorer has shown (as a list, a panel, a hover)
                with urllib.request.urlopen(f"{target}/api/v1/tracks/{tid}", timeout=60) as r:
                    r.read()
        try:
            index = subprocess.Popen([sys.executable, "-m", "musicmap.cli", "index", str(library), "--store",
                                      str(copy), "--model", model, "--no-tags", "--no-map", "--json", "-q"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
            index_started = time.time()
            time.sleep(args.warmup)  # the index run has opened the store and is embedding/writing
            ctx = mp.get_context("spawn")
            queue = ctx.Queue()
            start = time.time() + 3.0
            per = args.rate / args.processes
            workers = [ctx.Process(target=_recorder, args=(target, w, per, args.seconds, ids, start, queue))
                       for w in range(args.processes)]
            for p in workers:
                p.start()
            results = [queue.get(timeout=args.seconds + 120) for _ in workers]
            for p in workers:
                p.join()
            index_running_after = index.poll() is None
            stdout, stderr = index.communicate(timeout=1800)
            index_finished = time.time()
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=60)
        acked = [f"bench-w{r['worker']}|{k}" for r in results for k in r["acked"]]
        with Store.open(copy) as store:
            events = store.journal.events()
            added = store.count("tracks") - len(ids)
    keys = set(events["key"])
    lost = [k for k in acked if k not in keys]
    lat = sorted(x for r in results for x in r["latencies"])
    end = max(r["finished"] for r in results)
    report = json.loads(stdout) if index.returncode in (0, 3) and stdout.strip() else {"stderr": stderr[-2000:]}
    path = ("POST /api/v1/events to musicmap serve (one event a request, a kept-alive connection per process; "
            "every track shown by the server before the index run)" if args.via == "http"
            else "Store.record on a shared store in each process")
    body = {**cpu(), "via": args.via, "path": path,
            "store": str(args.store), "model": model, "processes": args.processes, "target_rate": args.rate,
            "seconds": args.seconds, "sent": sum(r["sent"] for r in results), "acknowledged": len(acked),
            "errors": sum(r["error_count"] for r in results), "error_examples": [e for r in results
                                                                                 for e in r["errors"]][:5],
            "lost": len(lost), "in_journal": len(events),
            "achieved_rate": round(len(acked) / (end - start), 1),
            "latency_ms": {"p50": round(1000 * statistics.median(lat), 2),
                           "p99": round(1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], 2),
                           "max": round(1000 * lat[-1], 2)},
            "index": {"tracks": args.index_tracks, "returncode": index.returncode,
                      "still_running_when_recording_ended": index_running_after,
                      "started_before_recording_s": round(start - index_started, 1),
                      "seconds": round(index_finished - index_started, 1), "tracks_added": added,
                      "report": {k: report.get(k) for k in ("added", "failed", "seconds") if k in report}
                      if "stderr" not in report else report}}
    save("taste-recording", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    li = sub.add_parser("listener")
    li.add_argument("--store", action="append", help=f"a real-music store (repeat per model; default {DEFAULT_STORE})")
    li.add_argument("--grid", action="store_true", help="also each setting of A_UP/B_DOWN and PLAY/SKIP")
    li.add_argument("--draws", type=int, default=1, help="orders of each soundtrack's tracks (shuffles)")
    li.add_argument("--max-seeds", type=int, default=40, help="neutral seeds per list measurement at most")
    rec = sub.add_parser("recording")
    rec.add_argument("--store", default=str(DEFAULT_STORE))
    rec.add_argument("--via", choices=("http", "store"), default="http")
    rec.add_argument("--rate", type=float, default=100.0)
    rec.add_argument("--seconds", type=float, default=20.0)
    rec.add_argument("--processes", type=int, default=4)
    rec.add_argument("--index-tracks", type=int, default=80)
    rec.add_argument("--warmup", type=float, default=5.0)
    args = parser.parse_args()
    if args.what == "listener":
        if not args.store:
            from bench_find import _demo_store

            args.store = [str(_demo_store(DEFAULT_STORE))]
        listener(args)
    else:
        if Path(args.store) == DEFAULT_STORE:
            from bench_find import _demo_store

            _demo_store(DEFAULT_STORE)
        recording(args)


if __name__ == "__main__":
    main()
