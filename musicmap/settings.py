"""musicmap's settings: one declared table, resolved as CLI flag > environment > default.

Every setting is listed in :data:`SETTINGS` with its type, default, environment variable
and help; docs/cli.md's settings table is checked against it by a test.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UserError

DEFAULT_MODEL = "mtg-upf/discogs-maest-30s-pw-129e-519l"


def default_store() -> Path:
    """``$XDG_DATA_HOME/musicmap/store``, i.e. ``~/.local/share/musicmap/store`` by default."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "musicmap" / "store"


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


@dataclass(frozen=True)
class Setting:
    """One named, typed, documented setting."""

    name: str
    type: Callable[[str], Any]
    default: Callable[[], Any]
    env: str
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("store", Path, default_store, "MUSICMAP_STORE",
            "the store folder (DuckDB + FAISS + manifest)"),
    Setting("model", str, lambda: DEFAULT_MODEL, "MUSICMAP_MODEL",
            "embedding model: a MAEST hub id, a local save_pretrained folder or .ckpt, 'musicnn-msd' / "
            "'musicnn-mtt' (MusiCNN), or 'features'"),
    Setting("device", str, lambda: "auto", "MUSICMAP_DEVICE",
            "where the model runs: auto, cpu, cuda or mps"),
    Setting("batch_size", int, lambda: 4, "MUSICMAP_BATCH_SIZE",
            "model windows per forward pass"),
    Setting("workers", int, default_workers, "MUSICMAP_WORKERS",
            "decode worker processes (default: the number of cores, at most 8)"),
    Setting("host", str, lambda: "127.0.0.1", "MUSICMAP_HOST",
            "address the explorer binds to"),
    Setting("port", int, lambda: 8050, "MUSICMAP_PORT",
            "port the explorer listens on"),
    Setting("token", str, lambda: "", "MUSICMAP_TOKEN",
            "secret every request to the explorer must carry (header, cookie or ?token= once); "
            "needed to bind an address other than loopback"),
    Setting("ray_address", str, lambda: "", "MUSICMAP_RAY_ADDRESS",
            "the Ray cluster `index --engine ray` runs on (e.g. auto, or ray://head:10001); "
            "none: a Ray started on this machine"),
    Setting("staging", str, lambda: "", "MUSICMAP_STAGING",
            "where `index --engine ray` writes its Parquet shards: a folder or an fsspec URL "
            "(s3://, gs://, ...); none: the store's shards/ folder"),
)
_BY_NAME = {s.name: s for s in SETTINGS}
_CHOICES = {"device": ("auto", "cpu", "cuda", "mps")}


@dataclass(frozen=True)
class Settings:
    """Resolved settings, built once by the CLI and passed down."""

    store: Path
    model: str
    device: str
    batch_size: int
    workers: int
    host: str
    port: int
    token: str = ""
    ray_address: str = ""
    staging: str = ""


def _convert(setting: Setting, raw: Any, origin: str) -> Any:
    try:
        value = setting.type(raw) if isinstance(raw, str) else raw
    except (TypeError, ValueError) as exc:
        raise UserError(f"{origin}={raw!r}: {setting.name} must be a {setting.type.__name__}") from exc
    if setting.type is int and value < (0 if setting.name == "port" else 1):
        raise UserError(f"{origin}={raw!r}: {setting.name} must be a positive number")
    if setting.name in _CHOICES and value not in _CHOICES[setting.name]:
        raise UserError(f"{origin}={raw!r}: choose one of {', '.join(_CHOICES[setting.name])}")
    if isinstance(value, Path):
        value = value.expanduser()
    return value


def resolve(args: argparse.Namespace | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Settings from CLI flags (``args``), then the environment, then the defaults."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        flag = getattr(args, setting.name, None) if args is not None else None
        if flag is not None:
            values[setting.name] = _convert(setting, flag, "--" + setting.name.replace("_", "-"))
        elif env.get(setting.env):
            values[setting.name] = _convert(setting, env[setting.env], setting.env)
        else:
            values[setting.name] = setting.default()
    return Settings(**values)


def help_for(name: str) -> str:
    """Help text for a flag, with its environment variable and default."""
    s = _BY_NAME[name]
    default = s.default()
    return f"{s.help} (env {s.env}; default: {default if default != '' else 'none'})"
