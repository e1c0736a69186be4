"""Merge Parquet shards written by ``musicmap index --engine ray`` into a store.

Each file's newest shard row wins; embedded files become tracks (with their vectors, windows
and styles), failed ones ``failures`` rows. Files the store already holds with the same size
and mtime are left alone, so ingesting the same shards twice changes nothing. The FAISS index
is then built or extended (by size: exact, HNSW, or IVF-PQ for very large stores; --index-type
to choose), the map updated, and the tracks without sound tags whose files this machine can read
are tagged (as at the end of musicmap index; --no-tags skips it; tracks on files it cannot read
are counted and left to a later run that can).

exit codes: 0 ingested; 1 a user error (not a shard folder, another model's store); 2 a usage error;
            3 ingested, but the shards record files that failed (listed); 130 interrupted.

examples:
  musicmap ingest ~/musicmap-store/shards --store ~/musicmap-store
  musicmap ingest s3://bucket/shards --store /srv/musicmap --index-type ivfpq
"""

from __future__ import annotations

import argparse

from .. import exits
from ..settings import Settings, help_for
from ._common import Progress, add_json, add_store, add_tag_options, print_json

NAME = "ingest"
HELP = "merge shards from `index --engine ray` into a store"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("shards", metavar="SHARDS", help="the shard folder (a path or an fsspec URL)")
    add_store(p)
    p.add_argument("--index-type", dest="index_type", choices=("auto", "flat", "hnsw", "ivfpq"), default="auto",
                   help="the FAISS index to build (default: by size)")
    p.add_argument("--metadata", metavar="FILE.csv",
                   help="a CSV with a 'path' column whose fields override the tags (as for musicmap index)")
    p.add_argument("--category-from", dest="category_from", choices=("tag", "folder", "csv"), default="tag",
                   help="where genre comes from: tags (default), the parent folder's name, or the CSV")
    p.add_argument("--no-map", dest="update_map", action="store_false",
                   help="do not update the map at the end")
    add_tag_options(p)
    p.add_argument("--workers", type=int, metavar="N", help=help_for("workers"))
    add_json(p)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.shards import ingest

    from ._reports import summary

    report = ingest(args.shards, settings.store, metadata=args.metadata, category_from=args.category_from,
                    index_kind=args.index_type, map_name="tsne" if args.update_map else None,
                    progress=Progress("tracks", enabled=not args.quiet), tags=args.tags,
                    tag_patches=args.tag_patches, workers=settings.workers)
    if args.json:
        print_json(report.to_dict())
    else:
        print(summary(report))
    return exits.outcome(report.failed, done=report.added + report.updated + report.unchanged)
