"""Check the environment (packages, ffmpeg, torch, browser) and optionally a store."""

from __future__ import annotations

import argparse
import importlib.util
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

from store import Store, StoreError

from ..settings import Settings
from ._common import add_json, print_json

NAME = "doctor"
HELP = "check the environment and a store"

PACKAGES = ("numpy", "duckdb", "faiss-cpu", "librosa", "soundfile", "mutagen", "openTSNE", "dash",
            "torch", "transformers")
PARTS = ("musicmap.commands.index", "store.store", "indexer.pipeline", "indexer.embedders.maest",
         "indexer.maest.model", "indexer.maest.frontend", "indexer.maest.convert", "indexer.embedders.features",
         "explorer.app", "explorer.api", "data.demo_library")
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
    add_json(p)


def run(args: argparse.Namespace, settings: Settings) -> int:
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
    ok = all(c["ok"] for c in checks)
    if args.json:
        print_json({"ok": ok, "checks": checks})
    else:
        for c in checks:
            print(f"{'ok ' if c['ok'] else 'BAD'}  {c['check']:<16} {c['detail']}")
    return 0 if ok else 1
