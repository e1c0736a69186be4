"""musicmap as users install it: the wheel, in a fresh virtual environment that cannot see the
checkout (issue #17).

The wheel is built from a copy of the package folders (a stale ``build/`` in the checkout could
otherwise add files the source no longer has). The fresh environment gets the wheel with
``pip --python VENV install --no-deps``; its dependencies are the ones already installed for the
tests, reached through one ``.pth`` line naming their ``site-packages`` folder (a plain path line:
``.pth`` files inside that folder — such as an editable install of the checkout — are *not*
processed). Every command then runs from a temporary directory with no ``PYTHONPATH``, and the test
checks that the modules it imports come from the fresh environment.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from musicmap.commands import COMMANDS
from tests.conftest import make_tiny_maest, serving

pytestmark = pytest.mark.install

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("musicmap", "store", "indexer", "explorer", "data")
"""The top-level packages the wheel installs (design.md §2)."""


def _package_files(*suffixes: str) -> set[str]:
    return {p.relative_to(ROOT).as_posix() for package in PACKAGES for p in (ROOT / package).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix in suffixes}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a clean copy of the package folders, with pip (no build isolation:
    the installed setuptools builds it, no download)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp / "dist"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(out), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (built,) = out.glob("musicmap-*.whl")
    return built


def test_the_wheel_holds_every_module_and_its_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = _package_files(".py", ".typed", ".js", ".css")
    assert len(expected) > 60  # the glob found the tree
    missing = sorted(expected - names)
    assert not missing, f"the wheel lacks {missing}"
    for must in ("indexer/maest/model.py", "indexer/maest/frontend.py", "indexer/maest/convert.py",
                 "explorer/assets/style.css", "store/py.typed"):
        assert must in names
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/"))]
    entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "musicmap = musicmap.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()


@dataclass(frozen=True)
class FreshVenv:
    root: Path
    python: Path
    musicmap: Path
    workdir: Path
    env: dict[str, str]

    def run(self, *args: str | os.PathLike[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.musicmap), *map(str, args)], capture_output=True, text=True,
                              cwd=self.workdir, env=self.env, timeout=timeout)

    def python_code(self, code: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.python), "-c", code], capture_output=True, text=True,
                              cwd=self.workdir, env=self.env, timeout=timeout)


@pytest.fixture(scope="module")
def fresh_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> FreshVenv:
    root = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    python = root / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # The dependencies the tests already have (a plain path line: not processed as a site dir).
    (Path(purelib) / "musicmap-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
                           str(wheel)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    workdir = tmp_path_factory.mktemp("elsewhere")  # not the checkout
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    env.update(HF_HUB_OFFLINE="1", PATH=f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    return FreshVenv(root, python, root / "bin" / "musicmap", workdir, env)


def test_the_installed_requirements_are_met(fresh_venv: FreshVenv) -> None:
    """musicmap's own requirements, as the wheel declares them, are all met. (The ``musicnn``
    package is installed with --no-deps on purpose: its declared numpy<1.17 and TensorFlow are
    not needed, and ``pip check`` names them; that is the only complaint allowed.)"""
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(fresh_venv.python), "check"],
                          capture_output=True, text=True, timeout=120)
    problems = [line for line in proc.stdout.splitlines() if line.strip() and not line.startswith("musicnn ")]
    assert not problems, proc.stdout + proc.stderr


def test_every_module_imports_from_the_fresh_environment(fresh_venv: FreshVenv, wheel: Path) -> None:
    modules = sorted(n[:-3].replace("/", ".").removesuffix(".__init__")
                     for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".py"))
    code = (
        "import importlib, json, sys\n"
        f"names = {modules!r}\n"
        "where = {n: importlib.import_module(n).__file__ for n in names}\n"
        "print(json.dumps({'where': where, 'path': sys.path}))\n"
    )
    proc = fresh_venv.python_code(code)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    outside = {n: f for n, f in report["where"].items() if not f.startswith(str(fresh_venv.root))}
    assert not outside, outside  # nothing came from the checkout
    assert str(ROOT) not in report["path"]
    assert len(modules) == len(_package_files(".py"))  # every module of the source tree


def test_the_installed_command_helps_and_checks(fresh_venv: FreshVenv) -> None:
    proc = fresh_venv.run("--help")
    assert proc.returncode == 0 and "usage: musicmap" in proc.stdout
    for module in COMMANDS:
        proc = fresh_venv.run(module.NAME, "--help")
        assert proc.returncode == 0 and f"usage: musicmap {module.NAME}" in proc.stdout, (module.NAME, proc.stderr)
    proc = fresh_venv.run("doctor", "--json")
    checks = {c["check"]: c for c in json.loads(proc.stdout)["checks"]}
    assert checks["musicmap modules"]["ok"], checks["musicmap modules"]
    assert checks["torch"]["ok"] and checks["transformers"]["ok"]


def test_the_installed_command_indexes_with_features_and_maest_and_serves(fresh_venv: FreshVenv,
                                                                          tmp_path: Path) -> None:
    library = tmp_path / "library"
    proc = fresh_venv.python_code(
        "from data.demo_library import generate_demo_library\n"
        f"generate_demo_library({str(library)!r}, n_tracks=6, seed=3, min_duration=6, max_duration=8, "
        "untagged_share=0, formats=('flac', 'mp3', 'ogg'), workers=1)\n")
    assert proc.returncode == 0, proc.stderr
    features = tmp_path / "features-store"
    proc = fresh_venv.run("index", library, "--store", features, "--model", "features", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["indexed"] == 6
    # the index run tagged the tracks (MusiCNN's weights are in this venv too), and find reads its
    # synonym table ("calm") from the installed package's store/words.toml
    found = fresh_venv.run("find", "calm piano", "--store", features, "--json")
    assert found.returncode == 0, found.stderr
    answer = json.loads(found.stdout)
    assert answer["understood"][0]["how"] == "synonym" and len(answer["results"]) == 6

    tiny = make_tiny_maest(tmp_path / "tiny-maest", ["Rock---Punk", "Jazz---Bop", "Electronic---House"])
    maest = tmp_path / "maest-store"
    proc = fresh_venv.run("index", library, "--store", maest, "--model", tiny, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["indexed"] == 6
    info = json.loads(fresh_venv.run("info", "--store", maest, "--json").stdout)
    assert info["tracks"] == 6 and info["model"]["kind"] == "maest"

    started = time.monotonic()
    with serving(features, command=[str(fresh_venv.musicmap)], cwd=fresh_venv.workdir, env=fresh_venv.env) as url:
        with urllib.request.urlopen(url + "/", timeout=30) as page:
            html = page.read().decode()
            assert page.status == 200 and "musicmap" in html.lower()
        scripts = re.findall(r'src="(/assets/[a-z]+\.js)[^"]*"', html)  # the page's own, from the installed package
        assert {"/assets/pointmap.js", "/assets/track.js", "/assets/lists.js"} <= set(scripts), scripts
        for script in scripts:
            with urllib.request.urlopen(url + script, timeout=30) as served:
                assert served.status == 200 and served.read()
        with urllib.request.urlopen(url + "/api/v1/openapi.json", timeout=30) as doc:
            assert json.loads(doc.read())["openapi"].startswith("3.")
        with urllib.request.urlopen(url + "/api/v1/panel/1", timeout=30) as panel:  # what a click asks for
            assert json.loads(panel.read())["id"] == 1
    assert time.monotonic() - started < 120
