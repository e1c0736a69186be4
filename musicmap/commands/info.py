"""Summarise a store: model, counts, maps, genres, last run, size."""

from __future__ import annotations

import argparse

from store import Store

from .. import exits
from ..settings import Settings
from ._common import add_json, add_store, print_json, run_settings

NAME = "info"
HELP = "summarise a store"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_store(p)
    add_json(p)


def run(args: argparse.Namespace, settings: Settings) -> int:
    with Store.open(settings.store) as store:
        info = store.info()
    if args.json:
        print_json(info)
        return exits.OK
    m = info["model"]
    print(f"store      {info['store']}  ({info['size_bytes'] / 1e6:.1f} MB)")
    print(f"model      {m['label']}{'' if m['kind'] == 'maest' else ' — not MAEST'}  [{m['id']}, "
          f"{m['dimension']}-d" + (f", {m['layer']}" if m["layer"] else "") + "]")
    print(f"tracks     {info['tracks']}  (embedded {info['embeddings']}, failed {info['failures']})")
    ix = info["index"]
    if ix.get("type") == "hnsw":
        print(f"index      HNSW (M {ix.get('M')}, efSearch {ix.get('efSearch')}), recall@10 {ix.get('recall_at_10')} "
              f"measured at build; {ix.get('ntotal')} vectors")
    elif ix.get("type") == "ivfpq":
        print(f"index      IVF-PQ ({ix.get('nlist')} lists, PQ{ix.get('m')}x8 + SQ8 re-ranking, nprobe "
              f"{ix.get('nprobe')}), recall@10 {ix.get('recall_at_10')} measured at build; {ix.get('ntotal')} vectors")
    else:
        print(f"index      exact (flat), {ix.get('ntotal', info['embeddings'])} vectors")
    from ._reports import describe_quality

    for p in info["projections"]:
        print(f"map        {p['name']}: {p['method']}, {p['n_tracks']} tracks, {p['created_at']}"
              + describe_quality(p["params"].get("quality") or {}))
    if not info["projections"]:
        print("map        none yet: musicmap map")
    genres = ", ".join(f"{g} {n}" for g, n in list(info["genres"].items())[:8])
    print(f"genres     {genres}")
    print(f"words      {info['sound_tagged']} of {info['embeddings']} tracks have sound tags (musicmap find)")
    t = info["taste"]
    print(f"taste      {t['events']} events: {t['liked']} liked, {t['disliked']} disliked, {t['plays']} plays, "
          f"{t['skips']} skips" + ("" if t["events"] else " (musicmap like, the explorer, a player)"))
    if info["last_run"]:
        r = info["last_run"]
        print(f"last run   #{r['id']} {r['status']} at {r['started_at']}: {r['added']} added, "
              f"{r['updated']} updated, {r['unchanged']} unchanged, {r['failed']} failed"
              + (f"; ran {run_settings(r['settings'])}" if run_settings(r.get("settings")) else ""))
    return exits.OK
