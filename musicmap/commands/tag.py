"""Write musicmap's predictions into the files' own tags, so any player can use them (opt-in).

--write styles puts each track's top predicted Discogs styles ("Techno; House"), or MusiCNN's
tags ("techno; electronic"; --write tags says the same), into --to
(grouping by default; genre, comment, or a custom MUSICMAP_STYLES tag); --write cluster puts its
map cluster into a MUSICMAP_CLUSTER tag. Run with --dry-run first: it lists every change and
writes nothing. Every write is backed up in the store (tag-backups/), exact to the byte, and
--undo puts the files back as they were (a file edited since is left alone and reported). The
store is told the new sizes and times, so the next index run does not embed the files again; a file
edited since it was indexed is left alone (and listed), so the edit is not hidden from that run.

exit codes: 0 done; 1 a user error (no styles in this store, a bad --where, no backup to undo);
            3 done, but some files could not be written or restored (listed).

examples:
  musicmap tag --store ~/musicmap-store --write styles --dry-run
  musicmap tag --store ~/musicmap-store --write styles,cluster --to genre --top 2 --where "genre IS NULL"
  musicmap tag --store ~/musicmap-store --undo
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from store import Store, StoreError

from .. import exits
from ..errors import UserError
from ..settings import Settings
from ._common import add_json, add_store, print_json

NAME = "tag"
HELP = "write predicted styles (and map clusters) into the files' tags, or undo it"
CHANGED = "the file changed since it was indexed; run musicmap index first, then tag again"
logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_store(p)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--write", metavar="WHAT", help="styles, cluster, or styles,cluster")
    what.add_argument("--undo", nargs="?", const="latest", metavar="BACKUP",
                      help="put back the files of the latest write (or of the named tag-backups/ folder)")
    p.add_argument("--to", choices=("grouping", "genre", "comment", "custom"), default="grouping",
                   help="the tag the styles go into (default: grouping)")
    p.add_argument("--top", type=int, default=3, metavar="N", help="styles per track (default: 3)")
    p.add_argument("--where", metavar="SQL", help="only tracks matching this SQL condition over tracks' columns")
    p.add_argument("--dry-run", dest="dry_run", action="store_true", help="list the changes, write nothing")
    add_json(p)


def _plan(store: Store, wanted: list[str], field: str, top: int, where: str | None) -> list[dict[str, Any]]:
    """What each track's tags would become: [{track_id, path, values: {field: text}}]."""
    ids_sql = "SELECT id, size, mtime FROM tracks" + (f" WHERE {where}" if where else "")
    try:
        indexed = {int(r[0]): (int(r[1]), float(r[2])) for r in store.sql(ids_sql, max_rows=100_000_000,
                                                                          timeout=120).rows}
    except StoreError as exc:
        raise UserError(f"--where: {exc}") from None
    ids = set(indexed)
    plans: dict[int, dict[str, str]] = {i: {} for i in ids}
    if "styles" in wanted:
        if not store.count("styles"):
            raise UserError(f"{store.path} has no style or tag predictions ({store.manifest.model.label}); they "
                            "come from MAEST or MusiCNN. --write cluster works with any model")
        rows = store.sql("SELECT track_id, list(label ORDER BY activation DESC) FROM (SELECT track_id, label, "
                         "activation, row_number() OVER (PARTITION BY track_id ORDER BY activation DESC) AS r "
                         f"FROM styles) WHERE r <= {int(top)} GROUP BY track_id", max_rows=100_000_000,
                         timeout=600).rows
        for track_id, labels in rows:
            if int(track_id) in plans:
                plans[int(track_id)][field] = "; ".join(str(label).split("---")[-1] for label in labels)
    if "cluster" in wanted:
        rows = store.sql("SELECT track_id, cluster FROM projections WHERE name = 'tsne' AND cluster IS NOT NULL",
                         max_rows=100_000_000, timeout=600).rows
        if not rows:
            raise UserError(f"{store.path} has no map clusters yet: run musicmap map")
        for track_id, cluster in rows:
            if int(track_id) in plans:
                plans[int(track_id)]["cluster"] = f"musicmap {int(cluster)}"
    return [{"track_id": i, "path": store.file_path(i), "values": v, "indexed": indexed[i]}
            for i, v in sorted(plans.items()) if v]


def _changed_since_indexed(plan: dict[str, Any]) -> bool:
    """The file is not the one the store indexed (edited, replaced): writing into it and telling the
    store its new size and time would hide the edit from the next index run, for good."""
    try:
        st = os.stat(plan["path"])
    except OSError:
        return False  # gone or unreadable: the write itself reports it
    return (st.st_size, st.st_mtime) != plan["indexed"]


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.undo is not None:
        return _undo(args, settings)
    # "tags": MusiCNN's word for what MAEST calls styles (both are the store's `styles` table)
    wanted = ["styles" if w.strip() == "tags" else w.strip() for w in args.write.split(",") if w.strip()]
    if not wanted or any(w not in ("styles", "cluster") for w in wanted):
        raise UserError(f"--write {args.write!r}: give styles (or tags), cluster, or styles,cluster")
    if args.top < 1:
        raise UserError(f"--top {args.top}: give 1 or more")
    with Store.open(settings.store) as store:
        plans = _plan(store, wanted, args.to, args.top, args.where)
        model = store.manifest.model
    if args.dry_run:
        for plan in plans:
            plan["current"] = {f: _safe_read(plan["path"], f) for f in plan["values"]}
            plan["changed_since_indexed"] = _changed_since_indexed(plan)
            del plan["indexed"]
        if args.json:
            print_json({"dry_run": True, "changes": plans})
        else:
            for plan in plans:
                for f, v in plan["values"].items():
                    print(f"{plan['path']}: {f} {plan['current'][f]!r} -> {v!r}"
                          + ("  (changed since indexed: would be left alone)" if plan["changed_since_indexed"] else ""))
            print(f"{len(plans)} files would be tagged (dry run: nothing written)")
        return exits.OK
    from indexer.scan import fingerprint
    from indexer.tagwrite import Backup, TagWriteError, write

    backup = Backup.new(settings.store)
    written, unchanged, failed, stats = 0, 0, [], []
    try:
        with tempfile.TemporaryDirectory(prefix="musicmap-tag-") as scratch:
            for plan in plans:
                if _changed_since_indexed(plan):
                    failed.append({"path": plan["path"], "error": CHANGED})
                    logger.warning("not tagging %s: %s", plan["path"], CHANGED)
                    continue
                old = {f: _safe_read(plan["path"], f) for f in plan["values"]}
                try:
                    change = write(plan["path"], plan["values"], Path(scratch))
                except TagWriteError as exc:
                    failed.append({"path": plan["path"], "error": str(exc)})
                    logger.warning("could not tag %s: %s", plan["path"], exc)
                    continue
                if change is None:
                    unchanged += 1
                    continue
                backup.add(change, {"track_id": plan["track_id"],
                                    "fields": {f: [old[f], v] for f, v in plan["values"].items()}})
                st = Path(plan["path"]).stat()
                stats.append((plan["track_id"], st.st_size, st.st_mtime, fingerprint(Path(plan["path"]), st.st_size)))
                written += 1
    finally:
        backup.close()
        if not written:  # nothing to undo: no backup folder
            shutil.rmtree(backup.folder, ignore_errors=True)
        if stats:
            with Store.open_for_indexing(settings.store, model) as store:
                store.update_file_stats(stats)
    out = {"written": written, "unchanged": unchanged, "failed": failed,
           "backup": str(backup.folder) if written else None}
    if args.json:
        print_json(out)
    else:
        print(f"tagged {written} files ({unchanged} already had these values, {len(failed)} failed)"
              + (f"; undo with: musicmap tag --store {settings.store} --undo {backup.folder.name}" if written else ""))
        for f in failed[:10]:
            print(f"  failed: {f['path']}: {f['error']}")
    return exits.outcome(len(failed))


def _safe_read(path: str, field: str) -> str | None:
    from indexer.tagwrite import read_field

    try:
        return read_field(path, field)
    except Exception:  # an unreadable file: its write reports it
        return None


def _undo(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.scan import fingerprint
    from indexer.tagwrite import BACKUPS, backups, changes, undo_one

    with Store.open(settings.store) as store:
        model = store.manifest.model
    pending = backups(settings.store)
    if args.undo == "latest":
        if not pending:
            raise UserError(f"nothing to undo: no tag backups in {settings.store / BACKUPS} that are not undone")
        folder = pending[-1]
    else:
        folder = settings.store / BACKUPS / args.undo
        if folder not in pending:
            known = ", ".join(f.name for f in pending) or "none"
            raise UserError(f"--undo {args.undo}: no such backup to undo in {settings.store / BACKUPS} "
                            f"(not undone: {known})")
    results: dict[str, list[str]] = {"restored": [], "gone": [], "changed since": []}
    stats = []
    for row in reversed(list(changes(folder))):
        outcome = undo_one(row)
        results[outcome].append(row["path"])
        if outcome == "restored":
            p = Path(row["path"])
            st = p.stat()
            stats.append((int(row["track_id"]), st.st_size, st.st_mtime, fingerprint(p, st.st_size)))
    if stats:
        with Store.open_for_indexing(settings.store, model) as store:
            store.update_file_stats(stats)
    (folder / "UNDONE").write_text(f"restored {len(results['restored'])}, gone {len(results['gone'])}, "
                                   f"changed since {len(results['changed since'])}\n", encoding="utf-8")
    if args.json:
        print_json({"backup": str(folder), **results})
    else:
        print(f"restored {len(results['restored'])} files from {folder.name}")
        for key in ("gone", "changed since"):
            for path in results[key][:10]:
                print(f"  not restored ({key}): {path}")
    return exits.outcome(len(results["gone"]) + len(results["changed since"]))
