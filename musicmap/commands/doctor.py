"""Check the environment (packages, ffmpeg, torch, browser) and optionally a store."""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from store import Store, StoreError

from .. import exits
from ..errors import UserError
from ..settings import Settings
from ._common import add_json, print_json

NAME = "doctor"
HELP = "check the environment and a store"

PACKAGES = ("numpy", "duckdb", "faiss-cpu", "librosa", "soundfile", "mutagen", "openTSNE", "dash",
            "torch", "transformers")
PARTS = ("musicmap.commands.index", "store.store", "indexer.pipeline", "indexer.embedders.maest",
         "indexer.maest.model", "indexer.maest.frontend", "indexer.maest.convert", "indexer.maest.int8",
         "indexer.embedders.musicnn", "indexer.musicnn.model", "indexer.musicnn.checkpoint",
         "indexer.musicnn.frontend", "indexer.embedders.features", "explorer.app", "explorer.api",
         "data.demo_library", "data.debian_music")
"""Modules each part of musicmap needs, looked up (not imported): an install that lacks one (a wheel
built with a package left out) is named here instead of failing later in the middle of a run."""


def _missing_modules() -> list[str]:
    missing = []
    for name in PARTS:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(name)
    return missing


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", metavar="DIR", help="also check this store")
    p.add_argument("--fidelity", metavar="LIBRARY", nargs="+",
                   help="measure each faster mode (bf16, int8, patchout, a window budget, --fast) against the "
                        "full computation on a sample of this music with --model, and recommend one")
    p.add_argument("--model", metavar="NAME_OR_PATH", help="the model for --fidelity (default: the settings')")
    p.add_argument("--sample", type=int, default=20, metavar="N", help="files --fidelity samples (default: 20)")
    add_json(p)


def _musicnn() -> dict[str, Any]:
    """MusiCNN's weights (optional: MAEST and `features` work without them)."""
    from indexer.embedders.musicnn import INSTALL, VARIANTS
    from indexer.errors import IndexerError

    try:
        from indexer.embedders.musicnn import package_folder

        folder = package_folder()
    except IndexerError:
        return {"check": "musicnn", "ok": False, "optional": True,
                "detail": f"not installed (optional; --model musicnn-msd needs it): {INSTALL}"}
    missing = [v.folder for v in VARIANTS.values() if not (folder / v.folder / ".index").is_file()]
    return {"check": "musicnn", "ok": not missing, "optional": True,
            "detail": f"missing {', '.join(missing)}: reinstall with {INSTALL}" if missing
            else f"{metadata.version('musicnn')}, 4 checkpoints in {folder}"}


def _fidelity(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.embedders import load_embedder
    from indexer.fidelity import measure, recommend, sample_files

    if args.sample < 3:
        raise UserError(f"--sample {args.sample}: give 3 or more")
    model = args.model or settings.model
    files = sample_files(args.fidelity, args.sample)
    first = load_embedder(model, device=settings.device, batch_size=settings.batch_size, precision="fp32")
    kind = first.info.kind

    def load(options: dict[str, Any]) -> Any:
        if not options or options == {"precision": "fp32"}:
            return first
        return load_embedder(model, device=settings.device, batch_size=settings.batch_size, **options)

    def said(mode: str) -> None:
        if not args.quiet and not args.json:
            print(f"  measuring {mode} ...", file=sys.stderr, flush=True)

    results, n = measure(files, load, kind, progress=said)
    advice = recommend(results)
    if args.json:
        print_json({"model": first.info.label, "files": n, "modes": [r.to_dict() for r in results],
                    "recommend": advice})
        return exits.OK
    print(f"fidelity of faster modes: {first.info.label}, {n} files of {', '.join(args.fidelity)}")
    print(f"{'mode':<24} {'windows/s':>9} {'audio-s/s':>9} {'cos min':>9} {'cos mean':>9} {'top-10':>7} "
          f"{'top-5 labels':>12}")
    for r in results:
        d = r.to_dict()
        labels = "—" if d["labels_top5"] is None else f"{d['labels_top5']:.2f}"
        print(f"{r.name:<24} {d['windows_per_s']:>9.2f} {d['audio_s_per_s']:>9.1f} {d['cosine_min']:>9.5f} "
              f"{d['cosine_mean']:>9.5f} {d['top10_overlap']:>7.2f} {labels:>12}")
    print(f"recommended: {advice['same_results'] or 'the full computation'} for results like the full computation "
          f"(every track at cosine ≥ 0.9999); {advice['fast'] or 'none'} for the fastest within cosine 0.99")
    return exits.OK


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.fidelity:
        return _fidelity(args, settings)
    checks: list[dict[str, Any]] = []
    missing = _missing_modules()
    checks.append({"check": "musicmap modules", "ok": not missing,
                   "detail": f"missing {', '.join(missing)}: reinstall musicmap" if missing
                   else f"{len(PARTS)} found in {Path(__file__).parents[2]}"})
    for name in PACKAGES:
        try:
            checks.append({"check": name, "ok": True, "detail": metadata.version(name)})
        except metadata.PackageNotFoundError:
            checks.append({"check": name, "ok": False, "detail": "not installed"})
    checks.append(_musicnn())
    ffmpeg = shutil.which("ffmpeg")
    checks.append({"check": "ffmpeg", "ok": ffmpeg is not None,
                   "detail": ffmpeg or "missing: m4a/AAC and other formats cannot be decoded"})
    try:
        import torch

        detail = f"cuda={'yes' if torch.cuda.is_available() else 'no'}"
        checks.append({"check": "torch device", "ok": True, "detail": detail})
    except ImportError:
        checks.append({"check": "torch device", "ok": False, "detail": "torch not importable"})
    if args.store:
        try:
            with Store.open(args.store) as store:
                info = store.info()
            checks.append({"check": "store", "ok": True,
                           "detail": f"{info['tracks']} tracks, model {info['model']['id']}"})
        except StoreError as exc:
            checks.append({"check": "store", "ok": False, "detail": str(exc)})
    ok = all(c["ok"] or c.get("optional") for c in checks)
    if args.json:
        print_json({"ok": ok, "checks": checks})
    else:
        for c in checks:
            mark = "ok " if c["ok"] else "-- " if c.get("optional") else "BAD"
            print(f"{mark}  {c['check']:<16} {c['detail']}")
    return exits.OK if ok else exits.FAILED
