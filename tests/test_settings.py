"""Settings: flag > environment > default, typed, documented in docs/cli.md's settings table."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from musicmap.errors import UserError
from musicmap.settings import SETTINGS, default_store, resolve

CLI_DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def test_precedence() -> None:
    env = {"MUSICMAP_PORT": "9000", "MUSICMAP_STORE": "/tmp/env-store", "MUSICMAP_DEVICE": "cpu"}
    s = resolve(argparse.Namespace(port=9100, store=None), env)
    assert s.port == 9100 and s.store == Path("/tmp/env-store") and s.device == "cpu"
    s = resolve(None, {})
    assert s.port == 8050 and s.host == "127.0.0.1" and s.store == default_store()


def test_bad_values_name_the_source() -> None:
    with pytest.raises(UserError, match="MUSICMAP_PORT"):
        resolve(None, {"MUSICMAP_PORT": "eighty"})
    with pytest.raises(UserError, match="MUSICMAP_DEVICE"):
        resolve(None, {"MUSICMAP_DEVICE": "tpu"})
    with pytest.raises(UserError, match="--workers"):
        resolve(argparse.Namespace(workers=0), {})


def test_docs_document_every_setting() -> None:
    rows = [line for line in CLI_DOC.read_text(encoding="utf-8").splitlines() if line.startswith("|")]
    for setting in SETTINGS:
        assert any(f"`{setting.env}`" in row for row in rows), f"{setting.env} is not in {CLI_DOC}'s settings table"
