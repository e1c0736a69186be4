"""Reports the commands share: an index run's summary (``index``, ``ingest``, ``demo``) and a map's
quality in words (``map``, ``info``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from indexer.run import IndexReport


def summary(report: IndexReport) -> str:
    """What an index run did, in a few lines (its failures: the first ten)."""
    lines = [
        ("interrupted after" if report.status == "interrupted" else "indexed")
        + f" {report.scanned} files into {report.store} in {report.seconds:.1f} s ({report.model}):",
        f"  {report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
        f"{report.moved} moved, {report.failed} failed",
    ]
    if report.missing:
        lines.append(f"  {report.missing} stored tracks have no file any more"
                     + (f": {report.pruned} pruned" if report.pruned else " (--prune removes them)"))
    for f in report.failures[:10]:
        lines.append(f"  failed: {f['path']} ({f['stage']}): {f['error']}")
    if len(report.failures) > 10:
        lines.append(f"  ... and {len(report.failures) - 10} more: musicmap sql \"SELECT * FROM failures\"")
    t = report.tags
    if t is not None and (t["tagged"] or t["copied"] or t["failed"] or t["skipped"] or t.get("unreachable")):
        done = f"{t['tagged']} tracks tagged ({', '.join(t['taggers']) or '-'}) in {t['seconds']:.1f} s"
        if t["copied"]:
            done += f", {t['copied']} from the model's own tags"
        if t["failed"]:
            done += f", {t['failed']} could not be (tried again next run)"
        if t.get("unreachable"):
            done += f", {t['unreachable']} left for a run that can read their files"
        lines.append(f"  sound tags: {'skipped (' + t['skipped'] + ')' if t['skipped'] else done}")
    m = report.map
    if m is not None:
        lines.append(f"  map '{m['name']}': " + {
            "placed": f"placed {m.get('placed')} new tracks ({m.get('n_tracks')} on the map)",
            "up to date": "up to date",
            "failed": f"not updated ({m.get('error')}); run musicmap map",
            "interrupted": "not updated (interrupted); run musicmap map",
        }.get(m["action"], f"fitted anew, {m.get('n_tracks')} tracks ({m.get('reason')})") + f", {m.get('seconds')} s")
    return "\n".join(lines)


def describe_quality(q: dict[str, object]) -> str:
    """``"; trustworthiness@10 0.962, kNN preservation 0.511, same genre among map neighbours 0.930"``."""
    if "trustworthiness" not in q:
        return ""
    text = f"; trustworthiness@{q['k']} {q['trustworthiness']:.3f}, kNN preservation {q['knn_preservation']:.3f}"
    if "category_agreement" in q:
        text += f", same {q['category']} among map neighbours {q['category_agreement']:.3f}"
    return text
