"""Index audio files: read tags, decode, embed, and write everything to the store.

Unchanged files are skipped with one stat; a moved or renamed file keeps its track (matched
by a content fingerprint); new and changed files are embedded; a file that cannot be read is
recorded in the store's failures and retried on the next run. Tracks whose files are gone are
reported, and removed with --prune. At the end the map is brought up to date: new tracks are
placed into it (or it is computed, the first time; --no-map skips this), and tracks without
sound tags get them (MusiCNN's MagnaTagATune and Million Song Dataset tags, whatever the model:
what musicmap find reads; --no-tags skips this). A store indexed before gains them on its next run
without embedding anything again.

exit codes: 0 all files indexed; 1 nothing could be indexed, or a user error; 2 a usage error;
            3 indexed, but some files failed (listed, and in the store's failures table);
            130 interrupted (Ctrl-C: what was finished is saved, the next run goes on).

With --engine ray the files are embedded on a Ray cluster (Ray Data: decoding in CPU tasks, the
model in a pool of actors, a GPU each with --gpus-per-worker) into Parquet shards under
--staging, which are then merged into the store (musicmap ingest; --shards-only stops before).

examples:
  musicmap index ~/Music --store ~/musicmap-store --model features
  musicmap index ~/Music --model /models/discogs-maest-30s-pw-129e-519l --device cuda
  musicmap index /archive --engine ray --ray-address auto --gpus-per-worker 1 --staging s3://bucket/shards
  musicmap index ~/Music --background            # half the cores, lowest CPU and I/O priority
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

from store import Store, StoreError, is_unchanged

from .. import exits
from ..errors import UserError
from ..settings import Settings, help_for
from ._common import Progress, add_json, add_store, add_tag_options, print_json
from ._reports import summary

if TYPE_CHECKING:
    from indexer.cpu import Quiet
    from indexer.plan import Plan

NAME = "index"
HELP = "index a music library into a store"
logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("library", nargs="+", metavar="LIBRARY", help="folders (or files) of music")
    add_store(p)
    p.add_argument("--model", metavar="NAME_OR_PATH", help=help_for("model"))
    p.add_argument("--batch-size", dest="batch_size", type=int, metavar="N", help=help_for("batch_size"))
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), help=help_for("device"))
    p.add_argument("--workers", type=int, metavar="N", help=help_for("workers"))
    p.add_argument("--background", action="store_true",
                   help="index quietly beside your own work: the lowest CPU priority (nice 19), idle I/O priority "
                        "and, unless --cores says otherwise, half the cores")
    p.add_argument("--cores", metavar="N|P%",
                   help="use at most N cores (or P%% of them) for the model and the decoders (default: all; "
                        "half with --background)")
    p.add_argument("--metadata", metavar="FILE.csv",
                   help="a CSV with a 'path' column and any fields (title, artist, genre, ... override the "
                        "tags; other columns go to tracks.extra as JSON)")
    p.add_argument("--category-from", dest="category_from", choices=("tag", "folder", "csv"), default="tag",
                   help="where genre comes from: tags (default; GTZAN folders as fallback), the parent "
                        "folder's name, or the --metadata CSV's genre/category column")
    p.add_argument("--prune", action="store_true",
                   help="remove stored tracks whose files are gone from the given folders")
    p.add_argument("--no-map", dest="update_map", action="store_false",
                   help="do not update the map at the end (by default new tracks are placed into it, "
                        "or it is computed when there is none)")
    add_tag_options(p)
    maest = p.add_argument_group("MAEST options (ignored for --model features)")
    maest.add_argument("--revision", metavar="REV",
                       help="hub revision (commit hash, tag or branch) to pin a hub id to (default: main; the "
                            "commit it resolves to is recorded in the manifest)")
    maest.add_argument("--layer", type=int, default=7, metavar="N",
                       help="hidden_states index feeding the embedding (default: 7, the paper's 7th block)")
    maest.add_argument("--pooling", choices=("stack", "cls", "pooled"), default="stack",
                       help="stack = [CLS, DIST, mean of patch tokens] (2304-d, default); cls = the CLS token; "
                            "pooled = (CLS+DIST)/2 after the final LayerNorm (the classifier input)")
    maest.add_argument("--precision", choices=("auto", "fp32", "int8", "bf16", "fp16"), default=None,
                       help="auto (default): the fastest that keeps vectors within cosine 0.9999 of fp32 on this "
                            "device — bf16 on a CPU with native bf16 (measured once), fp16 on CUDA, else fp32; "
                            "int8: dynamic int8 layers (CPU)")
    maest.add_argument("--patchout", type=float, default=None, metavar="SHARE",
                       help="drop this share of time patches at inference for speed (default: 0)")
    maest.add_argument("--max-windows", dest="max_windows", type=_positive("--max-windows"), default=None,
                       metavar="N", help="embed at most N windows a track, spread evenly over it (MAEST's 30-s "
                                         "windows, MusiCNN's 3-s patches; default: all)")
    maest.add_argument("--fast", action="store_true",
                       help="the fastest settings measured to keep track vectors within cosine 0.99 of the full "
                            "computation (docs/models.md); recorded in the store")
    p.add_argument("--plan", action="store_true",
                   help="print the files, hours of audio, windows and the estimated time (for these settings and "
                        "for --fast), measured on a few windows here, then stop")
    maest.add_argument("--no-styles", dest="styles", action="store_false",
                       help="skip Discogs style predictions (runs only the blocks the embedding needs)")
    maest.add_argument("--no-windows", dest="keep_windows", action="store_false",
                       help="do not store per-window vectors in the windows table")
    ray = p.add_argument_group("Ray options (--engine ray)")
    ray.add_argument("--engine", choices=("local", "ray"), default="local",
                     help="local: this machine (default); ray: a Ray cluster (pip install 'musicmap[ray]')")
    ray.add_argument("--ray-address", dest="ray_address", metavar="ADDR", help=help_for("ray_address"))
    ray.add_argument("--gpus-per-worker", dest="gpus_per_worker", type=float, default=None, metavar="N",
                     help="GPUs each embedding actor asks Ray for (may be fractional, e.g. 0.5: two actors "
                          "per GPU; 0: CPU actors); default: 1 when the cluster has GPUs, else 0")
    ray.add_argument("--embed-workers", dest="embed_workers", type=int, metavar="N",
                     help="embedding actors at most (default: GPUs / --gpus-per-worker, or half the CPUs)")
    ray.add_argument("--staging", metavar="FOLDER_OR_URL", help=help_for("staging"))
    ray.add_argument("--shards-only", dest="shards_only", action="store_true",
                     help="write the shards and stop (merge them later with musicmap ingest)")
    ray.add_argument("--index-type", dest="index_type", choices=("auto", "flat", "hnsw", "ivfpq"), default="auto",
                     help="the FAISS index ingest builds (default: by size; ivfpq for very large stores)")
    add_json(p)


def _positive(flag: str) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} takes a whole number, not {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{flag} {value}: give 1 or more")
        return value
    return parse


def maest_options(args: argparse.Namespace, device: str) -> dict[str, Any]:
    """The model options of ``musicmap index`` as keyword arguments for ``load_embedder``; with
    ``--fast`` the loader applies :data:`indexer.embedders.FAST` for the model's kind (an explicit
    flag that sets one of its settings as well is a usage error: :func:`check_args`)."""
    return {"revision": args.revision, "layer": args.layer, "pooling": args.pooling,
            "precision": args.precision or "auto", "patchout": args.patchout or 0.0, "styles": args.styles,
            "keep_windows": args.keep_windows, "max_windows": args.max_windows,
            "fast": bool(getattr(args, "fast", False))}


def check_args(parser_error: Any, args: argparse.Namespace) -> None:
    """Usage errors the parser cannot see alone (the CLI calls this after parsing; exit 2):
    ``--fast`` chooses precision, patchout and the window budget, so giving one of those too is
    an error naming the flag."""
    if not getattr(args, "fast", False):
        return
    for flag, given in (("--precision", args.precision not in (None, "auto")), ("--patchout", args.patchout),
                        ("--max-windows", args.max_windows)):
        if given:
            parser_error(f"{flag} cannot be combined with --fast, which chooses it (see --help)")


def make_run_plan(library: list[str], settings: Settings, embedder: Any,
                  options: dict[str, Any], *, workers: int | None = None) -> Plan | None:
    """The plan of this run (:mod:`indexer.plan`) for its settings and, when they are not already
    ``--fast``, for ``--fast`` too; None when there is nothing to index."""
    import copy

    from indexer.embedders import FAST, load_embedder
    from indexer.errors import IndexerError
    from indexer.plan import make_plan
    from indexer.scan import scan

    try:
        files = scan(library)
    except IndexerError:
        return None  # index_library says what is wrong
    known = {}
    if (settings.store / "manifest.json").is_file():
        try:
            with Store.open(settings.store) as store:
                known = store.known_files()
        except StoreError:
            known = {}
    todo = []
    for f in files:
        seen = known.get(str(f))
        try:
            st = f.stat()
        except OSError:
            continue
        if not is_unchanged(seen, st.st_size, st.st_mtime):
            todo.append(f)
    if not todo:
        return None
    choices: list[tuple[str, Any]] = [("these settings", embedder)]
    if not options.get("fast") and embedder.info.kind == "musicnn":
        fast = copy.copy(embedder)  # MusiCNN's --fast is only the window budget: the same network
        fast.max_windows = FAST["musicnn"]["max_windows"]
        choices.append(("--fast", fast))
    elif not options.get("fast") and embedder.info.kind == "maest":
        fast_options = {**options, "fast": True, "keep_windows": False,
                        "revision": embedder.info.revision or options.get("revision")}
        choices.append(("--fast", load_embedder(settings.model, device=settings.device,
                                                batch_size=settings.batch_size, **fast_options)))
    return make_plan(todo, len(files) - len(todo), choices, workers=workers or settings.workers)


def _quiet(args: argparse.Namespace) -> Quiet | None:
    """``--background``/``--cores``, applied to this process before the model loads (so the plan
    is timed under them); None when neither is given."""
    from indexer.cpu import parse_cores, run_quietly

    if not args.background and args.cores is None:
        return None
    try:
        cores = parse_cores(args.cores) if args.cores is not None else None
    except ValueError as exc:
        raise UserError(str(exc)) from None
    quiet = run_quietly(cores=cores, background=args.background)
    logger.info("indexing on %s", quiet.describe())
    return quiet


def run(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.embedders import load_embedder
    from indexer.pipeline import index_library

    if args.tag_patches < 1:  # said before a model is loaded
        raise UserError(f"--tag-patches {args.tag_patches}: give 1 or more")
    if args.engine == "ray":
        if args.background or args.cores is not None:
            raise UserError("--background and --cores are for the local engine (a Ray cluster's nodes run their "
                            "own workers)")
        return run_ray(args, settings)
    for flag, given in (("--ray-address", args.ray_address), ("--staging", args.staging),
                        ("--gpus-per-worker", args.gpus_per_worker), ("--shards-only", args.shards_only),
                        ("--embed-workers", args.embed_workers)):
        if given is not None and given is not False:
            raise UserError(f"{flag} is for --engine ray")
    quiet = _quiet(args)
    workers = min(settings.workers, quiet.cores) if quiet is not None else settings.workers
    options = maest_options(args, settings.device)
    embedder = load_embedder(settings.model, device=settings.device, batch_size=settings.batch_size, **options)
    if embedder.info.kind == "handcrafted":
        logger.info("using %s: not MAEST; the vectors are handcrafted audio statistics", embedder.info.label)
    elif embedder.info.kind != "maest":
        logger.info("using %s: a trained model, not MAEST", embedder.info.label)
    plan = None
    if args.plan or not args.quiet:
        plan = make_run_plan(args.library, settings, embedder, options, workers=workers)
        if plan is not None and quiet is not None:
            plan.sharing = quiet.describe()
        if plan is not None and not args.plan:
            logger.info("%s", plan.describe())
    if args.plan:
        if plan is None:
            raise UserError("nothing to plan: no audio files under " + ", ".join(map(str, args.library)))
        if args.json:
            print_json({"plan": plan.to_dict()})
        else:
            print(plan.describe())
        return exits.OK
    try:
        report = index_library(args.library, settings.store, embedder, workers=workers,
                               run_settings=quiet.to_dict() if quiet is not None else None, prune=args.prune,
                               metadata=args.metadata, category_from=args.category_from,
                               map_name="tsne" if args.update_map else None, tags=args.tags,
                               tag_patches=args.tag_patches,
                               progress=Progress("files", enabled=not args.quiet,
                                                 total_audio=plan.audio_seconds if plan else None,
                                                 planned_seconds=plan.estimates[0].seconds if plan else None))
    except KeyboardInterrupt:  # a second Ctrl-C: stopped at once, after saving what was done
        report = None
    if report is not None:
        if args.json:
            print_json({**report.to_dict(), **({"plan": plan.to_dict()} if plan is not None else {})})
        else:
            print(summary(report))
    if report is not None and report.map is not None and report.map["action"] == "interrupted":
        print("musicmap index: interrupted while updating the map; every file is indexed and saved. "
              "Run musicmap map to update the map.", file=sys.stderr)
        return exits.INTERRUPTED
    if report is None or report.status == "interrupted":
        print("musicmap index: interrupted; the tracks finished so far are saved. Run the same "
              "command again to continue.", file=sys.stderr)
        return exits.INTERRUPTED
    if not args.json and report.map is None:
        print(f"next: musicmap map --store {settings.store}")
    code = exits.outcome(report.failed, done=report.added + report.updated + report.unchanged + report.moved)
    if code == exits.FAILED:
        print(f"musicmap index: error: none of the {report.failed} files could be indexed (see above)",
              file=sys.stderr)
    return code


def run_ray(args: argparse.Namespace, settings: Settings) -> int:
    """``--engine ray``: embed on Ray into shards, then (unless --shards-only) merge them into the store."""
    from indexer.distributed import connect
    from indexer.distributed import run_ray as embed_on_ray
    from indexer.embedders import load_embedder
    from indexer.shards import EmbedderSpec, ingest

    if args.prune or (args.metadata is not None and args.shards_only):
        raise UserError("--prune is for the local engine (run musicmap index --prune after ingesting)"
                        if args.prune else "--metadata is applied by ingest: give it to musicmap ingest")
    if args.gpus_per_worker is not None and args.gpus_per_worker < 0:
        raise UserError(f"--gpus-per-worker {args.gpus_per_worker:g}: give 0 or more")
    if args.embed_workers is not None and args.embed_workers < 1:
        raise UserError(f"--embed-workers {args.embed_workers}: give 1 or more")
    cluster = connect(settings.ray_address or None)  # its GPUs decide where the model runs
    gpus = args.gpus_per_worker if args.gpus_per_worker is not None else (1.0 if cluster["gpus"] >= 1 else 0.0)
    device = "cuda" if gpus > 0 and settings.device == "auto" else settings.device
    options = maest_options(args, device) if settings.model != "features" else {}
    # Loaded here once: a wrong model path fails now, not in every worker; its info names the shards.
    embedder = load_embedder(settings.model, device="cpu", batch_size=settings.batch_size,
                             **{**options, "precision": "fp32"} if options else {})
    info = embedder.info
    if options:
        options["revision"] = info.revision or options.get("revision")  # every worker loads the same commit
        info = replace(info, extra={**info.extra, "options": {**info.extra.get("options", {}),
                                                              "precision": options["precision"]}})
    spec = EmbedderSpec(settings.model, device=device, batch_size=settings.batch_size, options=options)
    if not args.shards_only:  # a store the shards cannot go into is said now, not after the Ray work
        Store.check_can_index(settings.store, info)
    staging = settings.staging or str(settings.store / "shards")
    ray_run = embed_on_ray(args.library, staging, spec, info, store_path=settings.store,
                           ray_address=settings.ray_address or None, gpus_per_worker=gpus,
                           embed_workers=args.embed_workers, progress=not args.quiet and sys.stderr.isatty())
    del embedder
    out: dict[str, Any] = {"ray": asdict(ray_run)}
    if not args.json:
        used = ray_run.cluster
        where = (f"{used['nodes']} nodes, {used['cpus']:g} CPUs, {used['gpus']:g} GPUs" if used
                 else "nothing to do")
        print(f"embedded on Ray ({where}): {ray_run.scanned} files, {ray_run.unchanged} unchanged in the store, "
              f"{ray_run.in_shards} already in the shards, {ray_run.processed} processed ({ray_run.failed} failed) "
              f"in {ray_run.seconds:.1f} s; shards in {staging}")
    if args.shards_only:
        if args.json:
            print_json(out)
        else:
            print(f"next: musicmap ingest {staging} --store {settings.store}")
        return exits.outcome(ray_run.failed)
    report = ingest(staging, settings.store, metadata=args.metadata, category_from=args.category_from,
                    index_kind=args.index_type, map_name="tsne" if args.update_map else None,
                    progress=Progress("tracks", enabled=not args.quiet), tags=args.tags,
                    tag_patches=args.tag_patches, workers=settings.workers)
    # Read as one run over the library: files the store held unchanged were skipped before Ray.
    report.scanned, report.unchanged = ray_run.scanned, report.unchanged + ray_run.unchanged
    if args.json:
        print_json({**out, "ingest": report.to_dict()})
    else:
        print(summary(report))
    return exits.outcome(report.failed, done=report.added + report.updated + report.unchanged)
