"""The hub-id form of --model, offline: a model in the local Hugging Face cache is found and used.

The test writes a tiny random MAEST-shaped checkpoint into a cache folder laid out as
huggingface_hub lays it out (refs/main → snapshots/<commit>/), then runs the real CLI with
HF_HUB_OFFLINE=1 and HF_HUB_CACHE pointing there: `index` with the default hub id, and `demo`,
which must then use MAEST rather than fall back to the handcrafted features.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.subprocess

HUB_ID = "mtg-upf/discogs-maest-30s-pw-129e-519l"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import ASTConfig, ASTForAudioClassification

    torch.manual_seed(0)
    cache = tmp_path_factory.mktemp("hf") / "hub"
    repo = cache / ("models--" + HUB_ID.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    labels = ["Electronic---Techno", "Jazz---Bop", "Rock---Punk"]
    config = ASTConfig(hidden_size=32, num_hidden_layers=8, num_attention_heads=2, intermediate_size=64,
                       num_mel_bins=96, max_length=66, num_labels=3, id2label=dict(enumerate(labels)),
                       label2id={n: i for i, n in enumerate(labels)})
    ASTForAudioClassification(config).save_pretrained(repo / "snapshots" / COMMIT)
    return cache


def test_index_and_demo_use_the_cached_hub_model(hub_cache: Path, tmp_path: Path) -> None:
    env = {"HF_HUB_CACHE": str(hub_cache), "HF_HOME": str(hub_cache.parent)}
    demo_store = tmp_path / "demo" / "store"
    proc = run_cli("demo", "--synthetic", "--tracks", "8", "--store", demo_store, "--no-serve", "--workers", "2",
                   env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "not MAEST" not in proc.stderr and "NOT" not in proc.stderr
    manifest = json.loads((demo_store / "manifest.json").read_text())
    assert manifest["model"]["id"] == HUB_ID and manifest["model"]["kind"] == "maest"
    assert manifest["model"]["revision"] == COMMIT and manifest["model"]["dimension"] == 96
    info = json.loads(run_cli("info", "--store", demo_store, "--json", check=True).stdout)
    assert info["tracks"] == 8 and info["model"]["label"] == f"MAEST ({HUB_ID})"
    # The same model by hub id through `index` (the default --model), into another store.
    proc = run_cli("index", tmp_path / "demo" / "library", "--store", tmp_path / "s2", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["added"] == 8
