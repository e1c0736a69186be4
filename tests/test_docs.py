"""The documentation holds together: a short README, links that resolve both ways, every command and
flag in docs/cli.md, every cited benchmark result on disk. Fast: files and the argparse parser only."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
RESULTS = ROOT / "benchmarks" / "results"
README_MAX_LINES = 250

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
RESULT_FILE = re.compile(r"[A-Za-z0-9_.-]+-\d{8}-\d{6}\.json")
SHARED_FLAGS = {"--help", "--quiet", "--verbose"}  # documented once, for every command


def _pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def _links(page: Path) -> list[str]:
    """Relative link targets of a markdown file (outside code blocks), anchors dropped."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    targets = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # http:, https:, mailto:, or an anchor in the same page
        targets.append(target.split("#", 1)[0])
    return targets


def test_readme_is_short() -> None:
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines, at most {README_MAX_LINES}: move details into docs/"


def test_every_relative_link_resolves() -> None:
    broken = []
    for page in [README, *_pages()]:
        for target in _links(page):
            path = (page.parent / target).resolve()
            if not path.exists():
                broken.append(f"{page.relative_to(ROOT)} → {target}")
    assert not broken, "links to files that do not exist:\n" + "\n".join(broken)


def test_docs_and_readme_link_both_ways() -> None:
    readme_targets = {(ROOT / t).resolve() for t in _links(README)}
    unlinked = [p.relative_to(ROOT).as_posix() for p in _pages() if p.resolve() not in readme_targets]
    assert not unlinked, f"README.md does not link these docs pages: {unlinked}"
    no_way_back = [p.relative_to(ROOT).as_posix() for p in _pages()
                   if README.resolve() not in {(p.parent / t).resolve() for t in _links(p)}]
    assert not no_way_back, f"these docs pages do not link back to README.md (../README.md): {no_way_back}"


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("musicmap's parser has no subcommands")


def _long_options(parser: argparse.ArgumentParser) -> set[str]:
    return {o for action in parser._actions for o in action.option_strings
            if o.startswith("--") and o not in SHARED_FLAGS}


def test_cli_doc_names_every_command_and_flag() -> None:
    from musicmap.cli import build_parser
    from musicmap.commands import COMMANDS

    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    parser = build_parser()
    subparsers = _subparsers(parser)
    missing_commands = [c.NAME for c in COMMANDS if f"musicmap {c.NAME}" not in text]
    assert not missing_commands, f"docs/cli.md does not name these commands: {missing_commands}"
    assert {c.NAME for c in COMMANDS} == set(subparsers), "COMMANDS and the parser's subcommands differ"
    missing = [f"musicmap {name} {option}" for name, sub in subparsers.items() for option in sorted(_long_options(sub))
               if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text)]
    missing += [f"musicmap {o}" for o in sorted(_long_options(parser)) if o not in text]
    for flag in ("-q/--quiet", "-v/--verbose", "--help"):
        if flag not in text:
            missing.append(flag)
    assert not missing, "docs/cli.md does not document these options:\n" + "\n".join(missing)


def test_cited_result_files_exist() -> None:
    missing = []
    for page in [README, *_pages()]:
        for name in sorted(set(RESULT_FILE.findall(page.read_text(encoding="utf-8")))):
            if not (RESULTS / name).is_file():
                missing.append(f"{page.relative_to(ROOT)} cites {name}")
    assert not missing, "benchmark result files cited but not in benchmarks/results/:\n" + "\n".join(missing)
