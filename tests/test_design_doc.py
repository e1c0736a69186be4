"""The design of record (``docs/design.md``) names what the code has, so it cannot drift silently.

Files only, no subprocess:

- every global a script of ``explorer/assets/`` defines (``window.name = ...``, or a ``var``/``let``/
  ``const``/``function`` at the top of a script not wrapped in a function) is named in it; the
  vendored ``plotly-basic.min.js`` aside;
- every ``window.musicmap*`` object a script uses is defined by one of the scripts (the page's
  scripts bind to each other through these names only);
- every module of ``store``, ``indexer``, ``explorer`` and ``musicmap`` (``__init__.py`` aside) is named,
  by its path from the repository root (``store/errors.py``) or, where that is unambiguous, from its
  package (``sharing.py``, ``maest/frontend.py``, ``commands/index.py``);
- every file of ``explorer/assets/`` is named;
- every private attribute of another project that ``tests/test_layout.py`` allows is named.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from tests.test_layout import EXTERNAL_PRIVATE

ROOT = Path(__file__).resolve().parents[1]
DESIGN = ROOT / "docs" / "design.md"
ASSETS = ROOT / "explorer" / "assets"
VENDORED = {"plotly-basic.min.js"}
PACKAGES = ("store", "indexer", "explorer", "musicmap")

WINDOW_SET = re.compile(r"\bwindow\.([A-Za-z_$][\w$]*)\s*=(?!=)")
TOP_LEVEL = re.compile(r"^(?:var|let|const|function)\s+([A-Za-z_$][\w$]*)", re.MULTILINE)
WINDOW_OURS = re.compile(r"\bwindow\.(musicmap\w*)")


def _design() -> str:
    return DESIGN.read_text(encoding="utf-8")


def _named(text: str, name: str) -> bool:
    """``name`` occurs in ``text`` as a whole name (not inside a longer path or word)."""
    return re.search(r"(?<![\w/$-])" + re.escape(name) + r"(?![\w$])", text) is not None


def _scripts() -> list[Path]:
    return sorted(p for p in ASSETS.glob("*.js") if p.name not in VENDORED)


def _globals(script: Path) -> set[str]:
    text = script.read_text(encoding="utf-8")
    return set(WINDOW_SET.findall(text)) | set(TOP_LEVEL.findall(text))


def test_there_is_something_to_check() -> None:
    assert DESIGN.is_file(), "docs/design.md is the design of record"
    assert len(_scripts()) >= 8
    assert any("musicmapPoints" in _globals(s) for s in _scripts())


def test_every_global_of_the_page_scripts_is_named() -> None:
    text = _design()
    missing = [f"{s.name}: {name}" for s in _scripts() for name in sorted(_globals(s)) if not _named(text, name)]
    assert not missing, "globals of explorer/assets/*.js not named in docs/design.md:\n" + "\n".join(missing)


def test_every_window_musicmap_name_used_is_defined_by_a_script() -> None:
    defined = set().union(*(_globals(s) for s in _scripts()))
    unknown = [f"{s.name}: window.{name}" for s in _scripts()
               for name in sorted(set(WINDOW_OURS.findall(s.read_text(encoding="utf-8")))) if name not in defined]
    assert not unknown, "window.* names used but defined by no script in explorer/assets/:\n" + "\n".join(unknown)


def _modules() -> list[Path]:
    return sorted(p.relative_to(ROOT) for package in PACKAGES for p in (ROOT / package).rglob("*.py")
                  if p.name != "__init__.py")


def test_every_module_is_named() -> None:
    text = _design()
    modules = _modules()
    within = {m: "/".join(m.parts[1:]) for m in modules}  # the path inside its package
    seen = Counter(within.values())
    missing = [str(m) for m in modules
               if not _named(text, m.as_posix()) and not (seen[within[m]] == 1 and _named(text, within[m]))]
    assert not missing, ("modules not named in docs/design.md (give the path from the repository root, or from "
                         "its package where that is unambiguous):\n" + "\n".join(missing))


def test_every_asset_is_named() -> None:
    text = _design()
    missing = sorted(p.name for p in ASSETS.iterdir() if p.is_file() and not _named(text, p.name))
    assert not missing, "files of explorer/assets/ not named in docs/design.md:\n" + "\n".join(missing)


def test_the_external_private_attributes_allowed_are_named() -> None:
    text = _design()
    missing = [f"{path}: {name}" for path, name in EXTERNAL_PRIVATE if not _named(text, name)]
    assert not missing, ("private attributes tests/test_layout.py allows but docs/design.md does not name:\n"
                         + "\n".join(missing))
