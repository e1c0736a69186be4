"""Find the tracks that sound most like QUERY.

QUERY is a track id, a path to an audio file (in the store, or any file: it is then
embedded with the store's model), or text matched against artist, title and album.
Scores are cosine similarities; the query track itself is never listed.

examples:
  musicmap similar 42
  musicmap similar ~/Music/song.flac -k 20
  musicmap similar "miles davis so what" --json
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from store import Neighbour, Store

from ..errors import UserError
from ..settings import Settings
from ._common import add_json, add_store, print_json

NAME = "similar"
HELP = "list the tracks most similar to a track, a file or a text match"
logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("query", metavar="QUERY", help="a track id, an audio file path, or artist/title text")
    add_store(p)
    p.add_argument("-k", type=int, default=10, help="number of results (default: 10)")
    add_json(p)


def resolve_query(store: Store, query: str, settings: Settings,
                  k: int) -> tuple[dict[str, Any], list[Neighbour]]:
    """Return (what ``query`` resolved to, its ``k`` neighbours)."""
    kk = k
    text = query.strip()
    if text.isdigit():
        track = store.track(int(text))
        return {"type": "track", "track": track}, store.similar(int(text), kk)
    path = Path(text).expanduser()
    if path.is_file():
        track_id = store.track_id_for_path(path)
        if track_id is not None:
            return {"type": "track", "track": store.track(track_id)}, store.similar(track_id, kk)
        from indexer.decode import load_audio
        from indexer.embedders import load_embedder
        from indexer.errors import FileFailure

        model = store.manifest.model
        options = dict(model.extra.get("options", {}))  # embed the file exactly as the store's tracks
        options["keep_windows"] = False
        options["revision"] = model.revision  # the commit the store's vectors came from (hub ids)
        embedder = load_embedder(model.name, device=settings.device, batch_size=settings.batch_size, **options)
        try:
            vector = embedder.embed(load_audio(path, embedder.sample_rate)).vector
        except FileFailure as exc:
            raise UserError(f"cannot read {path}: {exc.reason}") from exc
        return {"type": "file", "path": str(path.resolve())}, store.similar_to_vector(vector, kk)
    matches = store.find_tracks(text, limit=5)
    if matches.empty:
        raise UserError(f"no track id, file or artist/title matches {query!r}; "
                        "try `musicmap sql \"SELECT id, artist, title FROM tracks\"` to browse")
    first = int(matches.iloc[0]["id"])
    if len(matches) > 1:
        logger.info("%r matched %d+ tracks; using #%d (%s - %s). Give a track id to choose another.",
                    query, len(matches), first, matches.iloc[0]["artist"], matches.iloc[0]["title"])
    return {"type": "track", "track": store.track(first)}, store.similar(first, kk)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.k < 1:
        raise UserError(f"-k {args.k}: must be at least 1")
    with Store.open(settings.store) as store:
        query, neighbours = resolve_query(store, args.query, settings, args.k)
        model = store.manifest.model
    if args.json:
        print_json({
            "query": query,
            "model": {"id": model.id, "label": model.label, "kind": model.kind},
            "results": [{"track_id": n.track_id, "score": round(n.score, 6), **n.track} for n in neighbours],
        })
        return 0
    if query["type"] == "track":
        t = query["track"]
        print(f"similar to #{t['id']} {t.get('artist') or '?'} - {t.get('title') or '?'} ({model.label}):")
    else:
        print(f"similar to {query['path']} ({model.label}):")
    for rank, n in enumerate(neighbours, start=1):
        t = n.track
        print(f"{rank:3d}. {n.score:.3f}  #{n.track_id:<6d} {t.get('artist') or '?'} - {t.get('title') or '?'}"
              f"  [{t.get('genre') or '-'}]")
    return 0
