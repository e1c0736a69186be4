"""The explorer's SQL panel: one read-only query over the store, results in a sortable grid, and
"show on map" to make the result tracks the selection.

Queries run in the store's SQL sandbox (:meth:`store.Store.sql`: read-only, no file access, a time
and a row limit); ``{selected}`` in a query is replaced by the selected track's id, so
``similarity(id, {selected})`` ranks tracks against it. Saved queries live in the browser
(``localStorage``), by name.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import Any

from dash import dash_table, dcc, html

from store import Store, StoreError

from .limits import SQL_MAX_ROWS, SQL_TIMEOUT

SCHEMA_TABLES = ("tracks", "styles", "projections", "projection_info", "embeddings", "windows", "failures", "runs")
EXAMPLES: tuple[tuple[str, str], ...] = (
    ("Tracks per genre", "SELECT genre, count(*) AS tracks FROM tracks GROUP BY genre ORDER BY tracks DESC"),
    ("Most like the selected track", "SELECT id, title, artist, genre, score FROM similar_to({selected}, 20)"),
    ("Like the selected track, other genres",
     "SELECT id, title, artist, genre, similarity(id, {selected}) AS score FROM tracks\n"
     "WHERE genre IS DISTINCT FROM (SELECT genre FROM tracks WHERE id = {selected})\n"
     "ORDER BY score DESC LIMIT 20"),
    ("Longest tracks", "SELECT id, title, artist, round(duration / 60, 1) AS minutes FROM tracks\n"
                       "ORDER BY duration DESC LIMIT 20"),
    ("Top predicted styles", "SELECT label, count(*) AS tracks FROM styles WHERE activation > 0.2\n"
                             "GROUP BY label ORDER BY tracks DESC LIMIT 25"),
    ("Files that failed", "SELECT path, stage, error FROM failures"),
)


class QueryError(ValueError):
    """A query that cannot run; the message is DuckDB's (or ours) and is shown inline."""


def fill_selected(query: str, selected: int | None) -> str:
    """``query`` with ``{selected}`` replaced by the selected track's id."""
    if "{selected}" not in query:
        return query
    if selected is None:
        raise QueryError("this query uses {selected}: click a track on the map first")
    return query.replace("{selected}", str(int(selected)))


def _cell(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(bytes(value))} bytes>"
    if isinstance(value, (list, tuple)):
        return f"[{len(value)} values]" if len(value) > 8 else str(list(value))
    if isinstance(value, dict):
        return str(value)
    return value


def run(store: Store, query: str, selected: int | None) -> dict[str, Any]:
    """Run ``query``; ``{columns, rows (records), truncated, ids}`` where ``ids`` are the track ids
    in the result (its ``id`` or ``track_id`` column), for "show on map". Raises QueryError."""
    if not query or not query.strip():
        raise QueryError("write a query first")
    try:
        result = store.sql(fill_selected(query, selected), max_rows=SQL_MAX_ROWS, timeout=SQL_TIMEOUT)
    except StoreError as exc:
        raise QueryError(str(exc)) from None
    names = list(dict.fromkeys(result.columns))  # DataTable needs distinct column ids
    rows = [{name: _cell(v) for name, v in zip(names, row, strict=False)} for row in result.rows]
    key = next((c for c in ("id", "track_id") if c in names), None)
    ids = [int(r[key]) for r in rows if key and isinstance(r.get(key), int)] if key else []
    return {"columns": names, "rows": rows, "truncated": result.truncated, "ids": list(dict.fromkeys(ids))}


def schema(store: Store) -> list[tuple[str, list[str]]]:
    """The tables a query can use, with their columns (as the sandbox sees them)."""
    try:
        result = store.sql("SELECT table_name, column_name, data_type FROM duckdb_columns() "
                           "ORDER BY table_name, column_index", max_rows=2000)
    except StoreError:
        return []
    tables: dict[str, list[str]] = {}
    for table, column, kind in result.rows:
        if table in SCHEMA_TABLES and column != "path_bytes":
            tables.setdefault(str(table), [])
            if f"{column} {kind}" not in tables[str(table)]:
                tables[str(table)].append(f"{column} {str(kind).lower()}")
    return [(t, tables[t]) for t in SCHEMA_TABLES if t in tables]


def layout(store: Store) -> html.Details:
    tables = schema(store)
    return html.Details(id="sql-panel", className="sql-panel", children=[
        html.Summary("SQL"),
        html.Div(className="sql-body", children=[
            html.Div(className="sql-editor", children=[
                dcc.Textarea(id="sql-text", value=EXAMPLES[0][1], spellCheck=False,
                             placeholder="SELECT ... ({selected} is the selected track's id)"),
                html.Div(className="sql-buttons", children=[
                    html.Button("run", id="sql-run", n_clicks=0, className="small-button"),
                    dcc.Dropdown(id="sql-examples", placeholder="examples…", className="sql-dropdown",
                                 options=[{"label": name, "value": i} for i, (name, _) in enumerate(EXAMPLES)]),
                    dcc.Dropdown(id="sql-saved-list", placeholder="saved queries…", className="sql-dropdown"),
                    dcc.Input(id="sql-name", placeholder="name", type="text", style={"width": "110px"}),
                    html.Button("save", id="sql-save", n_clicks=0, className="small-button"),
                    html.Button("show on map", id="sql-show", n_clicks=0, className="small-button",
                                title="make the result tracks (its id or track_id column) the selection"),
                ]),
                html.Div(id="sql-error", className="error"),
                html.Div(id="sql-status", className="what"),
                dash_table.DataTable(  # type: ignore[attr-defined]
                    id="sql-grid", columns=[], data=[], sort_action="native", page_action="native", page_size=15,
                    style_table={"overflowX": "auto"},
                    style_cell={"fontSize": "0.85em", "maxWidth": "320px", "overflow": "hidden",
                                "textOverflow": "ellipsis", "textAlign": "left"}),
            ]),
            html.Div(className="sql-schema", id="sql-schema", children=[
                html.Details([html.Summary(name), html.Ul([html.Li(c) for c in columns])], open=name == "tracks")
                for name, columns in tables
            ] + [html.P("functions: similarity(id, seed), similar_to(seed, k)", className="what")]),
        ]),
        dcc.Store(id="sql-saved", storage_type="local"),
        dcc.Store(id="sql-ids"),
    ])
