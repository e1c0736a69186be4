"""Run the whole product on a demo library, then serve the explorer.

The library is real music: freely licensed game soundtracks from Debian's archive (six packages,
about 120 tracks and 4 hours, 364 MB of downloads, fetched with `apt-get download`, which needs
no root; only the music and each package's copyright file are kept, in musicmap-demo/music, so a
second run downloads nothing). Where apt-get is missing or fails, or with --synthetic, it is a
generated library of 8 synthetic styles in all six formats instead.

The model: MAEST when its weights are in the local Hugging Face cache (or given with --model),
else MusiCNN (MagnaTagATune), a trained music model whose weights come with the `musicnn` package,
else the handcrafted `features` embedder; each with a notice saying what was used. Then the t-SNE
map, embeddings.csv and tsne_plot.png beside the store, and the explorer at
http://127.0.0.1:8050 (--no-serve stops after the map).
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from store import Store

from .. import exits
from ..errors import UserError
from ..settings import DEFAULT_MODEL, Settings, help_for
from ._common import Progress
from ._reports import summary
from .index import make_run_plan
from .serve import serve

if TYPE_CHECKING:
    from indexer.embedders import Embedder

NAME = "demo"
HELP = "index a demo library of real music (or a synthetic one), map it and serve the explorer"
logger = logging.getLogger(__name__)
DEMO_DIR = Path("musicmap-demo")
OFFLINE_MODEL = "musicnn-mtt"
"""The demo's model without MAEST weights: MusiCNN trained on MagnaTagATune (its tags — strings,
techno, piano, ... — describe game music better than the Million Song Dataset's genres, and its
vectors group the demo's soundtracks better: benchmarks/bench_musicnn.py)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tracks", type=int, default=240, metavar="N",
                   help="tracks of the synthetic library (default: 240; real music: all of it)")
    p.add_argument("--store", metavar="DIR", help=f"store folder (default: {DEMO_DIR / 'store'})")
    p.add_argument("--library", metavar="DIR", help="where the demo library goes (default: 'music', or "
                                                    "'library' for the synthetic one, beside the store)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic library (default: 0)")
    p.add_argument("--synthetic", action="store_true",
                   help="use the generated synthetic library (8 styles, all six formats), not real music")
    p.add_argument("--model", metavar="NAME_OR_PATH",
                   help=f"embedding model (default: {DEFAULT_MODEL} if cached locally, else {OFFLINE_MODEL}, "
                        "else features)")
    p.add_argument("--workers", type=int, metavar="N", help=help_for("workers"))
    p.add_argument("--no-serve", dest="serve", action="store_false", help="stop after the map and exports")
    p.add_argument("--host", help=help_for("host"))
    p.add_argument("--port", type=int, help=help_for("port"))


def _synthetic(folder: Path, n: int, seed: int, quiet: bool) -> Path:
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


def _real_music(folder: Path) -> Path | None:
    """Debian's game soundtracks under ``folder`` and their metadata CSV, or None (with a notice)
    where they cannot be fetched."""
    from data.debian_music import DEMO_SOURCES, MusicUnavailable, available, fetch, write_metadata

    why = available()
    if why is None:
        reused = all((folder / s.package / ".musicmap-source.json").is_file() for s in DEMO_SOURCES)
        logger.info("demo library: %s real music from Debian's archive in %s",
                    "reusing the" if reused else "fetching (apt-get download, about 360 MB)", folder)
        try:
            fetched = fetch(folder, DEMO_SOURCES)
        except MusicUnavailable as exc:
            why = str(exc)
        else:
            for got in fetched:
                logger.info("credits: %s", got.credit_line())
            tracks = sum(len(got.files) for got in fetched)
            hours = sum(got.seconds for got in fetched) / 3600
            logger.info("demo library: %d tracks, %.1f hours of music from %d soundtracks", tracks, hours,
                        len(fetched))
            return write_metadata(fetched, folder / "metadata.csv")
    logger.warning("notice: real music from Debian's archive cannot be fetched here (%s); the demo uses a "
                   "synthetic library instead", why)
    return None


def _embedder(args: argparse.Namespace, settings: Settings) -> Embedder:
    from indexer.embedders import load_embedder
    from indexer.errors import IndexerError

    if args.model:
        return load_embedder(args.model, device=settings.device, batch_size=settings.batch_size)
    try:
        return load_embedder(DEFAULT_MODEL, device=settings.device, batch_size=settings.batch_size,
                             local_files_only=True)
    except IndexerError as exc:
        maest_missing = str(exc).splitlines()[0]
    try:
        embedder = load_embedder(OFFLINE_MODEL, batch_size=settings.batch_size)
    except IndexerError as exc:
        logger.warning(
            "notice: neither MAEST's weights (%s) nor MusiCNN's are available, so the demo uses the "
            "handcrafted `features` embedder (librosa statistics), NOT a trained model. (%s)",
            DEFAULT_MODEL, str(exc).splitlines()[0])
        return load_embedder("features")
    logger.warning(
        "notice: MAEST's weights (%s) are not available on this machine, so the demo uses MusiCNN "
        "(MagnaTagATune), a smaller trained music model whose weights come with the musicnn package: "
        "%s — not MAEST. To use MAEST, run the demo with --model /path/to/a/save_pretrained/folder.",
        DEFAULT_MODEL, embedder.info.label)
    logger.debug("MAEST: %s", maest_missing)
    return embedder


def run(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.pipeline import index_library
    from indexer.projection import compute_map
    from store.export import export_embeddings, export_plot

    if args.synthetic and args.tracks < 8:
        raise UserError(f"--tracks {args.tracks}: the synthetic demo needs at least 8 tracks (one per style)")
    store_dir = Path(args.store).expanduser() if args.store else DEMO_DIR / "store"
    metadata = None
    if not args.synthetic:
        library = Path(args.library).expanduser() if args.library else store_dir.parent / "music"
        metadata = _real_music(library)
    if metadata is None:
        if args.tracks < 8:
            raise UserError(f"--tracks {args.tracks}: the synthetic demo needs at least 8 tracks (one per style)")
        library = Path(args.library).expanduser() if args.library else store_dir.parent / "library"
        _synthetic(library, args.tracks, args.seed, args.quiet)
    embedder = _embedder(args, settings)
    plan = make_run_plan([str(library)], replace(settings, store=store_dir), embedder, {}) if not args.quiet else None
    if plan is not None:
        logger.info("%s", plan.describe())
    report = index_library([library], store_dir, embedder, workers=settings.workers, metadata=metadata,
                           progress=Progress("indexed", enabled=not args.quiet,
                                             total_audio=plan.audio_seconds if plan else None,
                                             planned_seconds=plan.estimates[0].seconds if plan else None))
    print(summary(report))
    with Store.open(store_dir, read_only=False) as store:
        result = compute_map(store)
    print(f"map: {result['n_tracks']} tracks ({result['method']})")
    with Store.open(store_dir, shared=True) as store:
        csv_path = store_dir.parent / "embeddings.csv"
        png_path = store_dir.parent / "tsne_plot.png"
        export_embeddings(store, csv_path)
        export_plot(store, png_path, color_by="album" if metadata is not None else "genre")
        if args.serve:
            if args.quiet:  # otherwise the explorer says its address itself, and the exports their files
                print(f"explorer: http://{settings.host}:{settings.port}/  (Ctrl-C to stop)")
            serve(store, settings.host, settings.port)
    return exits.OK
