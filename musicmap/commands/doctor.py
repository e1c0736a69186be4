"""Check the environment (packages, ffmpeg, torch, browser) and optionally a store."""

from __future__ import annotations

import argparse
import shutil
from importlib import metadata
from typing import Any

from store import Store, StoreError

from ..settings import Settings
from ._common import add_json, print_json

NAME = "doctor"
HELP = "check the environment and a store"

PACKAGES = ("numpy", "duckdb", "faiss-cpu", "librosa", "soundfile", "mutagen", "openTSNE", "dash",
            "torch", "transformers")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", metavar="DIR", help="also check this store")
    add_json(p)


def run(args: argparse.Namespace, settings: Settings) -> int:
    checks: list[dict[str, Any]] = []
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
            print(f"{'ok ' if c['ok'] else 'BAD'}  {c['check']:<14} {c['detail']}")
    return 0 if ok else 1
