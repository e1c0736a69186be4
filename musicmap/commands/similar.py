"""Find the tracks that sound most like QUERY.

QUERY is a track id (several ids: tracks like all of them, their centroid), a path to an
audio file (in the store, or any file: it is then embedded with the store's model), or text
matched against artist, title and album. Scores are cosine similarities; the query tracks
themselves are never listed. --where filters inside the search, so it still returns k results
when k tracks match; --max-per-artist, --max-per-album, --dedupe and --mmr add variety.

examples:
  musicmap similar 42
  musicmap similar 42 57 108 -k 25 --max-per-artist 2 --dedupe
  musicmap similar ~/Music/song.flac --where "genre = 'Jazz' AND year >= 1970"
  musicmap similar "miles davis so what" --mmr 0.5 --m3u so-what.m3u
  musicmap similar 42 --min-score 0.9 -k 500 --json
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from store import Neighbour, Store, is_whole_number

from .. import exits
from ..errors import UserError
from ..settings import Settings
from ._common import add_json, add_store, add_taste, print_json, store_embedder, taste_line, why

NAME = "similar"
HELP = "list the tracks most similar to a track, a file or a text match"
logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("query", metavar="QUERY", nargs="+",
                   help="a track id (or several), an audio file path, or artist/title text")
    add_store(p)
    p.add_argument("-k", type=int, default=10, help="number of results, or the most with --min-score (default: 10)")
    p.add_argument("--where", metavar="SQL",
                   help="only tracks matching this SQL condition over tracks' columns, e.g. \"genre = 'Jazz'\"")
    p.add_argument("--max-per-artist", dest="max_per_artist", type=int, metavar="N", help="at most N per artist")
    p.add_argument("--max-per-album", dest="max_per_album", type=int, metavar="N", help="at most N per album")
    p.add_argument("--dedupe", action="store_true",
                   help="one version of each song (same artist and title, ignoring Live, Remastered, ...); "
                        "versions of the query's own songs are left out")
    p.add_argument("--mmr", type=float, metavar="LAMBDA",
                   help="diversify with maximal marginal relevance: 1 = pure similarity, 0.5 = balanced")
    p.add_argument("--min-score", dest="min_score", type=float, metavar="S",
                   help="every track with cosine similarity at least S (at most -k of them)")
    p.add_argument("--m3u", metavar="FILE.m3u", help="also write the results as an M3U playlist")
    add_taste(p)
    add_json(p)


def search_options(args: argparse.Namespace) -> dict[str, Any]:
    """The search options of ``musicmap similar`` as keyword arguments for ``Store.search``."""
    return {"where": args.where, "max_per_artist": args.max_per_artist, "max_per_album": args.max_per_album,
            "dedupe": args.dedupe, "mmr": args.mmr, "min_score": args.min_score, "taste": args.taste}


def resolve_query(store: Store, query: str | list[str], settings: Settings, k: int,
                  **options: Any) -> tuple[dict[str, Any], list[Neighbour]]:
    """Return (what ``query`` resolved to, its ``k`` neighbours); ``options`` as ``Store.search``."""
    kk = k
    words = [query] if isinstance(query, str) else list(query)
    if len(words) > 1 and all(is_whole_number(w.strip()) for w in words):
        ids = [int(w) for w in words]
        tracks = [store.track(i) for i in ids]
        return {"type": "tracks", "tracks": tracks}, store.search(ids, k=kk, **options)
    text = " ".join(words).strip()
    path = Path(text).expanduser()
    # a file the store does not hold is embedded with the store's model (digits stay a track id)
    if not is_whole_number(text) and path.is_file() and store.track_id_for_path(path) is None:
        from indexer.decode import load_audio
        from indexer.errors import FileFailure

        embedder = store_embedder(store, settings)
        try:
            vector = embedder.embed(load_audio(path, embedder.sample_rate)).vector
        except FileFailure as exc:
            raise UserError(f"cannot read {path}: {exc.reason}") from exc
        return {"type": "file", "path": str(path.resolve())}, store.similar_to_vector(vector, kk, **options)
    track_id = store.resolve_track(text)  # an id, a file the store holds, or artist/title words
    return {"type": "track", "track": store.track(track_id)}, store.similar(track_id, kk, **options)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.k < 1:
        raise UserError(f"-k {args.k}: must be at least 1")
    with Store.open(settings.store) as store:
        query, neighbours = resolve_query(store, args.query, settings, args.k, **search_options(args))
        taste = taste_line(store, args.taste)
        model = store.manifest.model
        if args.m3u:
            from store.m3u import write_m3u

            write_m3u(store, [n.track_id for n in neighbours], args.m3u)
            logger.info("wrote %d tracks to %s", len(neighbours), args.m3u)
    if args.json:
        print_json({
            "query": query,
            "model": {"id": model.id, "label": model.label, "kind": model.kind},
            "taste": taste,
            "results": [{"track_id": n.track_id, "score": round(n.score, 6), **n.track,
                         **({"taste": n.taste.as_json()} if n.taste else {})} for n in neighbours],
        })
        return exits.OK
    if query["type"] == "track":
        t = query["track"]
        print(f"similar to #{t['id']} {t.get('artist') or '?'} - {t.get('title') or '?'} ({model.label}):")
    elif query["type"] == "tracks":
        print(f"similar to {', '.join('#' + str(t['id']) for t in query['tracks'])} together ({model.label}):")
    else:
        print(f"similar to {query['path']} ({model.label}):")
    for rank, n in enumerate(neighbours, start=1):
        t = n.track
        print(f"{rank:3d}. {n.score:.3f}  #{n.track_id:<6d} {t.get('artist') or '?'} - {t.get('title') or '?'}"
              f"  [{t.get('genre') or '-'}]{why(n.taste)}")
    if not neighbours:
        print("  (no tracks match)")
    return exits.OK
