"""Run the whole product on a generated demo library, then serve the explorer.

Steps: generate N synthetic tracks in 8 styles (mixed formats, real tags, some untagged
GTZAN-style folders), index them (MAEST when its weights are in the local Hugging Face
cache or given with --model, otherwise the handcrafted `features` embedder, with a
notice), draw the t-SNE map, export embeddings.csv and tsne_plot.png beside the store,
and serve the explorer at http://127.0.0.1:8050 (--no-serve stops after the map).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from store import Store

from ..errors import UserError
from ..settings import DEFAULT_MODEL, Settings, help_for
from ._common import Progress
from .index import summary
from .serve import serve

if TYPE_CHECKING:
    from indexer.embedders import Embedder

NAME = "demo"
HELP = "generate a demo library, index it, map it and serve the explorer"
logger = logging.getLogger(__name__)
DEMO_DIR = Path("musicmap-demo")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tracks", type=int, default=240, metavar="N", help="tracks to generate (default: 240)")
    p.add_argument("--store", metavar="DIR", help=f"store folder (default: {DEMO_DIR / 'store'})")
    p.add_argument("--library", metavar="DIR", help="where to write the demo library "
                                                    "(default: a 'library' folder beside the store)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated library (default: 0)")
    p.add_argument("--synthetic", action="store_true",
                   help="use the generated synthetic library (8 styles, all six formats)")
    p.add_argument("--model", metavar="NAME_OR_PATH",
                   help=f"embedding model (default: {DEFAULT_MODEL} if cached locally, else features)")
    p.add_argument("--workers", type=int, metavar="N", help=help_for("workers"))
    p.add_argument("--no-serve", dest="serve", action="store_false", help="stop after the map and exports")
    p.add_argument("--host", help=help_for("host"))
    p.add_argument("--port", type=int, help=help_for("port"))


def _library(folder: Path, n: int, seed: int, quiet: bool) -> Path:
    from data.demo_library import generate_demo_library

    stamp = folder / ".musicmap-demo.json"
    wanted = {"tracks": n, "seed": seed}
    if stamp.is_file() and json.loads(stamp.read_text(encoding="utf-8")) == wanted:
        logger.info("demo library: reusing %d tracks in %s", n, folder)
        return folder
    logger.info("demo library: generating %d tracks in %s", n, folder)
    generate_demo_library(folder, n_tracks=n, seed=seed, progress=Progress("generated", enabled=not quiet))
    stamp.write_text(json.dumps(wanted), encoding="utf-8")
    return folder


def _embedder(args: argparse.Namespace, settings: Settings) -> Embedder:
    from indexer.embedders import load_embedder
    from indexer.errors import IndexerError

    if args.model:
        return load_embedder(args.model, device=settings.device, batch_size=settings.batch_size)
    try:
        return load_embedder(DEFAULT_MODEL, device=settings.device, batch_size=settings.batch_size,
                             local_files_only=True)
    except IndexerError as exc:
        logger.warning(
            "notice: MAEST weights (%s) are not available on this machine, so the demo uses the "
            "handcrafted `features` embedder (librosa statistics), NOT MAEST. The map and the "
            "similar tracks show what those features hear. To use MAEST, run the demo with "
            "--model /path/to/a/save_pretrained/folder.  (%s)",
            DEFAULT_MODEL, str(exc).splitlines()[0])
        return load_embedder("features")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.pipeline import index_library
    from indexer.projection import compute_map
    from store.export import export_embeddings, export_plot

    if args.tracks < 8:
        raise UserError(f"--tracks {args.tracks}: the demo needs at least 8 tracks (one per style)")
    store_dir = Path(args.store).expanduser() if args.store else DEMO_DIR / "store"
    library = Path(args.library).expanduser() if args.library else store_dir.parent / "library"
    _library(library, args.tracks, args.seed, args.quiet)
    embedder = _embedder(args, settings)
    report = index_library([library], store_dir, embedder, workers=settings.workers,
                           progress=Progress("indexed", enabled=not args.quiet))
    print(summary(report))
    with Store.open(store_dir, read_only=False) as store:
        result = compute_map(store)
    print(f"map: {result['n_tracks']} tracks ({result['method']})")
    with Store.open(store_dir, shared=True) as store:
        csv_path = store_dir.parent / "embeddings.csv"
        png_path = store_dir.parent / "tsne_plot.png"
        export_embeddings(store, csv_path)
        export_plot(store, png_path, color_by="genre")
        print(f"wrote {csv_path} and {png_path}")
        if args.serve:
            print(f"explorer: http://{settings.host}:{settings.port}/  (Ctrl-C to stop)")
            serve(store, settings.host, settings.port)
    return 0
