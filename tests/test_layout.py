"""The layout's rules check themselves (design.md §2, issue #18).

Every ``import`` of every module of ours — at the top or inside a function — is read with ``ast``:

- ``store`` imports nothing of ours;
- ``indexer`` imports ``store`` only (never ``explorer`` or ``musicmap``);
- ``explorer`` imports ``store`` only (never ``indexer``, torch or transformers: query-by-upload
  gets its ``embed`` function injected);
- ``data`` imports nothing of ours;
- no module imports another module's underscore name (``from x import _y``): what crosses a module
  line is public, named and documented.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = ("store", "indexer", "explorer", "musicmap", "data")
MAY_IMPORT = {
    "store": set(),
    "indexer": {"store"},
    "explorer": {"store"},
    "musicmap": {"store", "indexer", "explorer", "data"},
    "data": set(),
}
NEVER = {"explorer": {"torch", "transformers"}, "store": {"torch", "transformers"}}


def _modules() -> list[Path]:
    return sorted(p for package in OURS for p in (ROOT / package).rglob("*.py"))


def _imports(path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """(line, absolute module, names imported from it) for every import in ``path``."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield node.lineno, module, [a.name for a in node.names]


def test_there_are_modules_to_check() -> None:
    assert len(_modules()) > 50


@pytest.mark.parametrize("package", OURS)
def test_who_may_import_whom(package: str) -> None:
    broken = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, module, _ in _imports(path):
            top = module.split(".")[0]
            if top in OURS and top != package and top not in MAY_IMPORT[package]:
                broken.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
            if top in NEVER.get(package, ()):
                broken.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not broken, f"{package} may import {sorted(MAY_IMPORT[package]) or 'nothing of ours'}:\n" + "\n".join(broken)


def test_no_module_imports_another_modules_private_names() -> None:
    broken = []
    for path in _modules():
        for line, module, names in _imports(path):
            if module.split(".")[0] not in OURS:
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private:
                broken.append(f"{path.relative_to(ROOT)}:{line} from {module} import {', '.join(private)}")
    assert not broken, "private names imported across modules (make them public, or move them):\n" + "\n".join(broken)


EXTERNAL_PRIVATE = {
    ("indexer/maest/int8.py", "_int_mm"): "torch's int8 GEMM, the fallback where oneDNN's qlinear op is missing",
    ("indexer/maest/model.py", "_attn_implementation"): "transformers' documented way to pick the attention kernel",
}
"""Underscore attributes of other projects' objects that we use, each with its reason."""


def test_no_module_reaches_into_another_modules_private_attributes() -> None:
    """``obj._name`` is allowed on ``self``/``cls`` and where this module defines ``_name`` itself."""
    broken = []
    for path in _modules():
        text = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(text, str(path))):
            if not (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            name, where = node.attr, str(path.relative_to(ROOT))
            if (where, name) in EXTERNAL_PRIVATE or f"def {name}(" in text or f"self.{name} =" in text \
                    or f"{name}=" in text:
                continue
            broken.append(f"{where}:{node.lineno} {ast.unparse(node)}")
    assert not broken, "private attributes of another module's objects:\n" + "\n".join(broken)


ANY_CEILING = 89
"""``Any`` in the public signatures of store, indexer, explorer and musicmap on 2026-11-29 (92 at
ab86718, before issue #18). Lower it when a change removes some; a change that needs more says why."""


def _public_signature_anys(path: Path) -> int:
    """``Any`` in the parameter and return annotations of the module's public functions and of the
    public methods (and ``__init__``) of its public classes."""
    def count(node: ast.AST) -> int:
        total = 0
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef) and not child.name.startswith("_"):
                total += count(child)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                    and (not child.name.startswith("_") or child.name == "__init__"):
                a = child.args
                notes = [x.annotation for x in (*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg)
                         if x is not None and x.annotation is not None]
                notes += [child.returns] if child.returns is not None else []
                total += sum(1 for note in notes for x in ast.walk(note) if isinstance(x, ast.Name) and x.id == "Any")
        return total
    return count(ast.parse(path.read_text(encoding="utf-8")))


def test_any_in_public_signatures_does_not_grow() -> None:
    paths = [p for package in ("store", "indexer", "explorer", "musicmap") for p in (ROOT / package).rglob("*.py")
             if not any(part.startswith("_") and part != "__init__.py" for part in p.relative_to(ROOT).parts)]
    found = {str(p.relative_to(ROOT)): n for p in paths if (n := _public_signature_anys(p))}
    total = sum(found.values())
    worst = ", ".join(f"{k} {v}" for k, v in sorted(found.items(), key=lambda kv: -kv[1])[:5])
    assert total <= ANY_CEILING, f"{total} Any in public signatures (ceiling {ANY_CEILING}); most in {worst}"
