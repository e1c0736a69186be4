"""The Dash explorer: ``create_app(store, embed=None)``.

Reads the store only (it never imports ``indexer`` or torch); query by an uploaded clip gets its
``embed`` and ``place`` functions injected by the CLI (:mod:`explorer.upload`). The page shows
every track on the map (WebGL), coloured by a chosen field, with hover details; clicking a track
opens its panel (metadata, top styles, an audio player streaming the file by track id, similar
tracks with scores and variety controls) and rings the track and its neighbours on the map while
the rest is dimmed. Search (as you type) centres a track; filters (genre, style, years) grey out
what does not match; the view state lives in the URL. The big scatter is sent once per colour
choice; everything else patches it (:mod:`explorer.figure`).
"""

from __future__ import annotations

import bisect
import gc
import json
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dash
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from dash import ALL, Input, Output, State, dcc, html

from store import Store, StoreError
from store.listening import MAX_PATH
from store.search import VarietyOptions

from . import api, auth, sqltab
from .figure import (
    COLOR_FIELDS,
    DIMMED_OPACITY,
    Traces,
    centred_ranges,
    clip_points,
    filter_mask,
    highlight_points,
    hover_patch,
    hover_texts,
    map_figure,
    path_points,
    selected_points,
    split,
    track_at,
)
from .limits import BODY_LIMIT, EXTEND_N, K_DEFAULT, K_PAGE_MAX, MAX_UPLOAD_MB, PATH_STEPS, SEARCH_RESULTS
from .state import ViewState, encode, parse
from .upload import EmbedFn, PlaceFn, UploadError, Uploads, data_url_bytes

logger = logging.getLogger(__name__)



class MapData:
    """The map's points, hover texts and search text, reloaded when the store's map or track count
    changes (checked at most every ``check_every`` seconds): a page load after ``musicmap index`` /
    ``musicmap map`` shows the new state without restarting the explorer."""

    def __init__(self, store: Store, projection: str, check_every: float = 2.0) -> None:
        self.store, self.projection, self.check_every = store, projection, check_every
        self._key: Any = None
        self.version = 0
        """Counts reloads: caches of what is derived from the map key on it (an ``id()`` of the frame
        could be reused by the next frame's object and serve a stale answer)."""
        self._checked = -1e9
        self.frame = pd.DataFrame()
        self.hover = np.zeros(0, dtype=object)
        self.info: dict[str, Any] | None = None
        self.row_of: pd.Series = pd.Series(dtype=np.int64)
        self._haystack = np.zeros(0, dtype=object)
        self._blob, self._blob_starts = "", [0]
        self._title_blob, self._title_starts = "", [0]
        self._traces: dict[str, Traces] = {}
        self._hit_columns: dict[str, list[Any]] | None = None
        self.refresh()

    def refresh(self) -> MapData:
        now = time.monotonic()
        if now - self._checked < self.check_every:
            return self
        self._checked = now
        found = self.store.map_info(self.projection)
        info = found.to_dict() if found else None  # the page's own code reads it as a dict
        key = (info and (info["created_at"], info["n_tracks"]), self.store.count("tracks"))
        if key != self._key:
            frame = self.store.projection(self.projection)
            self.frame = frame
            self.version += 1
            self.hover = hover_texts(frame) if len(frame) else np.zeros(0, dtype=object)
            self.row_of = pd.Series(np.arange(len(frame)), index=frame["id"].astype(np.int64)) if len(frame) \
                else pd.Series(dtype=np.int64)
            self._haystack = (frame[["artist", "title", "album"]].astype("string").fillna("")
                              .agg(" ".join, axis=1).str.lower().to_numpy(dtype=object)) if len(frame) \
                else np.zeros(0, dtype=object)
            titles = frame["title"].astype("string").fillna("").str.lower().to_numpy(dtype=object) \
                if len(frame) else np.zeros(0, dtype=object)  # lower-cased once, not per keystroke
            # One string per field, rows joined by newlines: a word is found by C-speed string search
            # over the whole map, then mapped to rows by offset (a Python loop over 100k rows costs 30 ms).
            self._blob, self._blob_starts = _joined(self._haystack)
            self._title_blob, self._title_starts = _joined(titles)
            self._traces = {}
            self._hit_columns = {k: [None if pd.isna(v) else (int(v) if k in ("id", "year") else v)
                                     for v in frame[k].tolist()] for k in HIT_FIELDS} if len(frame) else None
            self.info, self._key = info, key
            # The map's data lives as long as the map: out of the cyclic GC's sight, whose full
            # collections (every few seconds under load) otherwise walk it with every thread stopped
            # (73 ms at 100k tracks; ~0 once frozen). Refcounting still frees it when replaced.
            gc.freeze()
        return self

    def traces(self, color_by: str) -> Traces:
        if color_by not in self._traces:
            self._traces[color_by] = split(self.frame, color_by)
        return self._traces[color_by]

    def search(self, text: str, limit: int) -> list[dict[str, Any]]:
        """Tracks on the map whose artist, title or album contain every word of ``text``; titles
        that start with ``text`` first, then map order. Stops as soon as it has ``limit``."""
        query = " ".join(text.lower().split())
        words = query.split()
        if not words or not len(self.frame) or limit < 1:
            return []
        # Titles starting with the query contain every word: found by one literal search.
        first = _first_distinct(_rows_with(self._title_blob, self._title_starts, "\n" + query, shift=1), limit)
        chosen = set(first)
        # The rarest word first (counted in the first 256 kB: a full count costs ~3 ms at 100k tracks).
        words.sort(key=lambda w: (self._blob.count(w, 0, 1 << 18), -len(w)))
        hay, rest = self._haystack, list[int]()
        for r in _rows_with(self._blob, self._blob_starts, words[0]):
            if len(first) + len(rest) >= limit:
                break
            if r not in chosen and all(w in hay[r] for w in words[1:]):
                rest.append(r)
                chosen.add(r)
        columns = self._hit_columns  # plain Python values, built with the map (pandas' .iloc is ~0.1 ms a row)
        assert columns is not None
        return [{k: columns[k][r] for k in HIT_FIELDS} for r in first + rest]

    def options(self, column: str) -> list[str]:
        if not len(self.frame) or column not in self.frame:
            return []
        counts = self.frame[column].dropna().astype(str).value_counts()
        return list(counts.index[:500])

    def year_range(self) -> tuple[int, int] | None:
        years = pd.to_numeric(self.frame["year"], errors="coerce").dropna() if len(self.frame) else pd.Series()
        return (int(years.min()), int(years.max())) if len(years) else None


HIT_FIELDS = ("id", "title", "artist", "album", "genre", "year")
"""The fields of a search hit."""



def create_app(store: Store, embed: EmbedFn | None = None, *, place: PlaceFn | None = None,
               projection: str = "tsne", max_upload_bytes: int = MAX_UPLOAD_MB * 1_000_000,
               token: str | None = None) -> dash.Dash:
    """Build the explorer for an open (read-only) ``store``.

    Parameters
    ----------
    store : Store
        Opened with :meth:`Store.open`; the app only reads it.
    embed : callable, optional
        ``embed(path) -> vector`` with the store's model: turns on query by an uploaded clip
        (the page's upload box and ``POST /api/v1/similar/upload``). Off when None.
    place : callable, optional
        ``place(map_name, vectors) -> positions``: where an uploaded clip lands on the map.
    projection : str
        Which stored map to show.
    max_upload_bytes : int
        Largest upload accepted.
    token : str, optional
        When given, every request (pages, callbacks, API, audio) must carry it (:mod:`explorer.auth`).
    """
    data = MapData(store, projection)
    model = store.manifest.model
    model_label = model.label + (" — not MAEST" if model.kind != "maest" else "")
    labels = label_words(model)
    ran = ((store.info().get("last_run") or {}).get("settings") or {}).get("precision")
    status_label = model_label + (f" ({ran})" if ran else "")  # the precision the last index run used
    app = dash.Dash(__name__, title="musicmap", update_title="", compress=True)  # gzip (flask-compress)
    uploads = Uploads(embed, place, max_upload_bytes) if embed is not None else None
    _limit_bodies(app, uploads)
    if token:
        auth.protect(app.server, token)  # runs first, before the body limits and every route
    api.register(app.server, store, projection=data.refresh, uploads=uploads, token=token or None)
    app.layout = lambda: _layout(data.refresh(), status_label, uploads, labels)  # each page load: the current map
    callbacks = Callbacks(store, data, model.label, uploads, labels)
    callbacks.register(app)
    app.server.extensions["musicmap_callbacks"] = callbacks  # tests call them as plain functions
    return app


def _joined(texts: np.ndarray) -> tuple[str, list[int]]:
    """``texts`` joined by newlines, with one before the first (newlines cannot be in a query:
    it is split on whitespace), and the offset where each text starts."""
    cleaned = [str(t).replace("\n", " ") for t in texts]
    starts, at = [], 1
    for t in cleaned:
        starts.append(at)
        at += len(t) + 1
    return "\n" + "\n".join(cleaned), starts


def _first_distinct(rows: Iterator[int], n: int) -> list[int]:
    out: dict[int, None] = {}
    for r in rows:
        out[r] = None
        if len(out) >= n:
            break
    return list(out)


def _rows_with(blob: str, starts: list[int], needle: str, shift: int = 0) -> Iterator[int]:
    """The rows of a :func:`_joined` text where ``needle`` occurs, in order (a row once per
    occurrence); ``shift``: characters of the needle before the row's text (its newline)."""
    if not needle.strip() or not blob:
        return
    for match in re.finditer(re.escape(needle), blob):
        yield bisect.bisect_right(starts, match.start() + shift) - 1


def _limit_bodies(app: dash.Dash, uploads: Uploads | None) -> None:
    """Refuse request bodies over :data:`BODY_LIMIT` (413, before any handler runs); with uploads
    on, the upload routes take a clip as base64 (the page) or raw (the API) up to the upload limit."""
    from flask import abort, request

    big = uploads.max_bytes * 4 // 3 + BODY_LIMIT if uploads is not None else BODY_LIMIT  # base64 in JSON
    upload_paths = (app.config.requests_pathname_prefix + "_dash-update-component", api.UPLOAD_PATH) \
        if uploads is not None else ()
    app.server.config["MAX_CONTENT_LENGTH"] = big  # also caps bodies sent without a length (chunked)

    @app.server.before_request
    def body_limit() -> None:
        limit = big if request.path in upload_paths else BODY_LIMIT
        request.max_content_length = limit
        if request.content_length is not None and request.content_length > limit:
            abort(413)


def _years(value: list[int] | None, full: tuple[int, int] | None) -> tuple[int, int] | None:
    if not value or full is None or (value[0] <= full[0] and value[1] >= full[1]):
        return None
    return int(value[0]), int(value[1])


class Callbacks:
    """The explorer's callbacks as plain methods (Dash registers thin wrappers around them)."""

    def __init__(self, store: Store, data: MapData, model_label: str, uploads: Uploads | None = None,
                 labels: LabelWords | None = None) -> None:
        self.store, self.data, self.model_label, self.uploads = store, data, model_label, uploads
        self.labels = labels or LabelWords("styles", "Predicted styles")

    # -- the figure ---------------------------------------------------------------------------
    def figure(self, color_by: str, genres: list[str] | None, styles: list[str] | None,
               years: tuple[int, int] | None, selected: int | None) -> go.Figure:
        """The whole map for a colour choice, with the current filters and selection applied."""
        with self.store.holding():
            data = self.data.refresh()
        traces = data.traces(color_by)
        fig = map_figure(data.frame, color_by, data.hover, traces)
        mask = filter_mask(data.frame, genres=genres, styles=styles, years=years)
        for trace, points in zip(fig.data, selected_points(traces, mask), strict=False):
            trace.selectedpoints = points
        if selected is not None and int(selected) in data.row_of.index:
            with self.store.holding():
                neighbours = [n.track_id for n in self.store.similar(int(selected), K_DEFAULT)]
            self._apply_selection(fig, traces, highlight_points(data.frame, int(selected), neighbours, data.row_of))
        return fig

    @staticmethod
    def _apply_selection(target: Any, traces: Traces, points: dict[str, Any] | None) -> None:
        """Put ``points`` into the highlight trace of ``target`` (a Figure or a Patch) and dim the
        rest (restore it when ``points`` is None)."""
        opacity = 0.85 if points is None else DIMMED_OPACITY
        points = points or {"x": [], "y": [], "customdata": [], "text": [], "size": [], "color": [], "symbol": [],
                            "fill": []}
        if isinstance(target, go.Figure):
            for trace in target.data[: traces.highlight]:
                trace.marker.opacity = opacity
            h = target.data[traces.highlight]
            h.x, h.y, h.customdata, h.text = points["x"], points["y"], points["customdata"], points["text"]
            h.marker.size, h.marker.line.color = points["size"], points["color"]
            h.marker.symbol, h.marker.color = points["symbol"], points["fill"]
            return
        for i in range(traces.highlight):
            target["data"][i]["marker"]["opacity"] = opacity
        for key in ("x", "y", "customdata", "text"):
            target["data"][traces.highlight][key] = points[key]
        marker = target["data"][traces.highlight]["marker"]
        marker["size"], marker["line"]["color"] = points["size"], points["color"]
        marker["symbol"], marker["color"] = points["symbol"], points["fill"]

    def filters(self, color_by: str, genres: list[str] | None, styles: list[str] | None,
                years: tuple[int, int] | None, selection: list[int] | None = None) -> tuple[dash.Patch, str]:
        """A patch greying out the tracks that do not match the filters (or are outside the
        selection, when there is one), and a line saying how many match the filters."""
        data = self.data.refresh()
        traces = data.traces(color_by)
        mask = filter_mask(data.frame, genres=genres, styles=styles, years=years)
        shown = mask
        if selection:
            chosen = data.frame["id"].isin([int(i) for i in selection]).to_numpy(bool)
            shown = chosen if mask is None else mask & chosen
        patch = dash.Patch()
        for i, points in enumerate(selected_points(traces, shown)):
            patch["data"][i]["selectedpoints"] = points
        note = "" if mask is None else f"{int(mask.sum())} of {len(mask)} tracks match the filters"
        return patch, note

    # -- a selected track -----------------------------------------------------------------------
    def show(self, track_id: int | None, color_by: str, k: int | None, per_artist: int | None,
             per_album: int | None, dedupe: bool, where: str | None,
             path_from: int | None = None) -> tuple[Any, dash.Patch]:
        """The track panel and the map patch (rings, lines, dimming) for ``track_id``; with
        ``path_from`` (a track chosen as a path's start), the panel offers the path to this one."""
        with self.store.holding():  # one connection for the whole callback
            return self._show(track_id, color_by, k, per_artist, per_album, dedupe, where, path_from)

    def _show(self, track_id: int | None, color_by: str, k: int | None, per_artist: int | None,
              per_album: int | None, dedupe: bool, where: str | None,
              path_from: int | None = None) -> tuple[Any, dash.Patch]:
        data = self.data.refresh()
        traces = data.traces(color_by)
        patch = dash.Patch()
        if track_id is None:
            self._apply_selection(patch, traces, None)
            return html.P("Click a track on the map, or search, to play it and see similar tracks."), patch
        options = _similar_options(per_artist, per_album, dedupe, where)
        k = int(k) if k and 1 <= int(k) <= K_PAGE_MAX else K_DEFAULT
        try:
            track = self.store.track(int(track_id))
        except StoreError as exc:
            logger.info("explorer: track %s: %s", track_id, exc)
            self._apply_selection(patch, traces, None)
            return html.Div(f"No track {track_id} in this store.", className="error"), patch
        problem = None
        try:
            neighbours = self.store.similar(int(track_id), k, **options)
        except StoreError as exc:  # e.g. a bad filter expression: say so, show the plain list
            problem = str(exc)
            neighbours = self.store.similar(int(track_id), k)
        self._apply_selection(patch, traces,
                              highlight_points(data.frame, int(track_id), [n.track_id for n in neighbours],
                                               data.row_of))
        start = None
        if path_from is not None and int(path_from) != int(track_id):
            try:
                start = self.store.track(int(path_from))
            except StoreError:
                start = None
        panel = _panel(track, neighbours, self.store.styles(int(track_id)), self.model_label, problem,
                       heading=self.labels.heading)
        return panel + _path_controls(int(track_id), start, path_from), patch

    def clicked(self, click: dict[str, Any] | None, color_by: str) -> int | None:
        """The track a map click landed on: a category point by (curve, point), a ring by its id."""
        points = (click or {}).get("points") or []
        if not points:
            return None
        data = self.data.refresh()
        traces = data.traces(color_by if color_by in COLOR_FIELDS else "genre")
        p = points[0]
        curve, point = int(p.get("curveNumber", -1)), int(p.get("pointNumber", p.get("pointIndex", -1)))
        if curve == traces.highlight:
            value = p.get("customdata")
            track = int(value[0] if isinstance(value, list) else value) if value is not None else None
            return track if track is not None and track >= 0 else None  # -1: an uploaded clip's star
        return track_at(traces, data.frame["id"].to_numpy(np.int64), curve, point)

    def hover(self, color_by: str) -> dash.Patch:
        """The hover texts for a figure sent without them (the first paint)."""
        data = self.data.refresh()
        return hover_patch(dash.Patch(), data.hover, data.traces(color_by if color_by in COLOR_FIELDS else "genre"))

    # -- query by an uploaded clip --------------------------------------------------------------
    def upload(self, contents: str | None, filename: str | None, color_by: str, k: int | None,
               per_artist: int | None, per_album: int | None, dedupe: bool, where: str | None) -> tuple[Any, ...]:
        """(panel, map patch, error line) for a clip dropped on the page: its neighbours in the
        panel, a star where it lands on the map with lines to them."""
        if self.uploads is None or not contents:
            raise dash.exceptions.PreventUpdate
        name = str(filename or "clip")[:200]
        try:
            vector = self.uploads.vector(data_url_bytes(contents), name)
        except UploadError as exc:
            return dash.no_update, dash.no_update, f"{name}: {exc}"
        data = self.data.refresh()
        position = self.uploads.position(self.data.projection, vector) if data.info is not None else None
        options = _similar_options(per_artist, per_album, dedupe, where)
        k = int(k) if k and 1 <= int(k) <= K_PAGE_MAX else K_DEFAULT
        problem = None
        with self.store.holding():
            try:
                neighbours = self.store.similar_to_vector(vector, k, **options)
            except StoreError as exc:
                problem = str(exc)
                neighbours = self.store.similar_to_vector(vector, k)
        patch = dash.Patch()
        traces = data.traces(color_by if color_by in COLOR_FIELDS else "genre")
        if position is not None:
            self._apply_selection(patch, traces, clip_points(data.frame, position, [n.track_id for n in neighbours],
                                                             data.row_of, name))
        where_note = (f"on the map at the star ({position[0]:.1f}, {position[1]:.1f})" if position is not None
                      else "not placed: this map cannot place new tracks (fit it with openTSNE or PCA)")
        panel: list[Any] = [
            html.H3(f"Your clip: {name}", id="track-title"),
            html.P(f"embedded with {self.model_label}, {where_note}; the file was deleted after embedding",
                   className="what", id="upload-where"),
        ]
        if problem:
            panel.append(html.Div(f"filter not applied: {problem}", className="error", id="similar-problem"))
        panel += [html.H4(f"Similar tracks ({self.model_label})"),
                  html.Ol(_similar_items(neighbours), id="similar-list"),
                  html.Button("select these", n_clicks=0, className="small-button",
                              id={"type": "select-similar", "index": ",".join(str(n.track_id) for n in neighbours)})]
        return panel, patch, ""

    # -- SQL ------------------------------------------------------------------------------------
    def run_sql(self, query: str | None, selected: int | None) -> tuple[Any, ...]:
        """(grid columns, grid rows, error, status, result track ids) for the SQL panel."""
        try:
            with self.store.holding():
                result = sqltab.run(self.store, query or "", selected)
        except sqltab.QueryError as exc:
            return [], [], str(exc), "", None
        columns = [{"name": c, "id": c} for c in result["columns"]]
        status = f"{len(result['rows'])} rows" + (f" (cut at {sqltab.SQL_MAX_ROWS})" if result["truncated"] else "")
        if result["ids"]:
            status += f" · {len(result['ids'])} tracks: “show on map” selects them"
        return columns, result["rows"], "", status, result["ids"] or None

    # -- selections -----------------------------------------------------------------------------
    def selected_on_map(self, selected: dict[str, Any] | None, color_by: str) -> list[int]:
        """Track ids in a lasso or box selection (points of the category traces, in map order)."""
        data = self.data.refresh()
        traces = data.traces(color_by if color_by in COLOR_FIELDS else "genre")
        ids = data.frame["id"].to_numpy(np.int64)
        out: list[int] = []
        for p in (selected or {}).get("points") or []:
            track = track_at(traces, ids, int(p.get("curveNumber", -1)), int(p.get("pointNumber", -1)))
            if track is not None:
                out.append(track)
        return list(dict.fromkeys(out))

    def selection_panel(self, ids: list[int] | None) -> Any:
        """Count, genre breakdown, a player that plays the selection in order, exports."""
        if not ids:
            return html.P("Lasso or box-select tracks on the map (or “select these” under a similar list) "
                          "to make a playlist.", className="what")
        data = self.data.refresh()
        rows = data.frame.set_index("id").reindex(ids).dropna(subset=["x"])
        genres = rows["genre"].astype("string").fillna("(none)").value_counts()
        breakdown = ", ".join(f"{g} {c}" for g, c in genres.head(6).items()) + (", …" if len(genres) > 6 else "")
        queue = [f"/audio/{int(i)}" for i in rows.index]
        listing = [html.Li(f"{r.artist if isinstance(r.artist, str) else '?'} – "
                           f"{r.title if isinstance(r.title, str) else '?'}") for r in rows.head(50).itertuples()]
        where = f"WHERE id IN ({', '.join(str(int(i)) for i in rows.index)})"
        return [
            html.H4(f"Selection: {len(rows)} tracks", id="selection-count"),
            html.P(breakdown, className="what", id="selection-genres"),
            html.Audio(id="queue-player", src=queue[0] if queue else None, controls=True, preload="none",
                       **{"data-queue": json.dumps(queue), "data-pos": "0"}),  # type: ignore[arg-type]
            html.Div(className="selection-buttons", children=[
                html.Button("M3U", id={"type": "export", "index": "m3u-absolute"}, n_clicks=0,
                            className="small-button", title="a playlist with absolute paths"),
                html.Button("M3U (relative)", id={"type": "export", "index": "m3u-relative"}, n_clicks=0,
                            className="small-button",
                            title="paths relative to the folder holding all these files: save it there"),
                html.Button("CSV", id={"type": "export", "index": "csv"}, n_clicks=0, className="small-button"),
                dcc.Clipboard(target_id="selection-where", title="copy the WHERE clause", className="copy"),
                html.Button("clear", id={"type": "selection-clear", "index": 0}, n_clicks=0,
                            className="small-button"),
                html.Button("similar to these", id={"type": "selection-similar", "index": 0}, n_clicks=0,
                            className="small-button", title="tracks like the selection as a whole (its centroid)"),
                html.Button(f"extend by {EXTEND_N}", id={"type": "selection-extend", "index": 0}, n_clicks=0,
                            className="small-button",
                            title="grow the selection as a playlist: tracks that fit it, none already in it"),
            ]),
            html.Div(id={"type": "selection-extend-list", "index": 0}),
            html.Div(id={"type": "selection-similar-list", "index": 0}),
            html.Code(where if len(where) <= 4000 else where[:4000] + " …", id="selection-where"),
            html.Ol(listing + ([html.Li(f"… and {len(rows) - 50} more")] if len(rows) > 50 else []),
                    id="selection-list"),
        ]

    def explain(self, seed: int, other: int) -> Any:
        """Why ``other`` is like ``seed``: their score, their top predicted styles side by side
        (shared ones marked) and the closest pair of windows, each playable from its start."""
        with self.store.holding():
            try:
                a, b = self.store.track(seed), self.store.track(other)
            except StoreError as exc:
                return html.P(str(exc), className="error")
            found = self.store.sql(f"SELECT similarity({int(other)}, {int(seed)})").rows
            score = float(found[0][0]) if found and found[0][0] is not None else float("nan")
            styles_a, styles_b = dict(self.store.styles(seed, 8)), dict(self.store.styles(other, 8))
            starts_a, windows_a = self.store.windows(seed)
            starts_b, windows_b = self.store.windows(other)

        def name(t: dict[str, Any]) -> str:
            return f"{t.get('artist') or '?'} – {t.get('title') or '?'}"

        out: list[Any] = [html.H4(f"Why {name(b)} is like {name(a)}"),
                          html.P(f"similarity {score:.3f} (cosine, {self.model_label})", className="what")]
        if styles_a or styles_b:
            labels = sorted(set(styles_a) | set(styles_b),
                            key=lambda label: -(styles_a.get(label, 0.0) + styles_b.get(label, 0.0)))
            shared = set(styles_a) & set(styles_b)
            out.append(html.Table(className="explain-styles", children=[
                html.Tr([html.Th("style"), html.Th("this"), html.Th("that")])] + [
                html.Tr([html.Td(label.replace("---", " › "), className="shared" if label in shared else ""),
                         html.Td(f"{styles_a[label]:.2f}" if label in styles_a else "—"),
                         html.Td(f"{styles_b[label]:.2f}" if label in styles_b else "—")]) for label in labels]))
            word = self.labels.plural
            out.append(html.P(f"{len(shared)} of their top {word} shared" if shared else f"no top {word[:-1]} shared",
                              id="explain-shared"))
        else:
            out.append(html.P("No style predictions in this store (MAEST makes them).", className="what"))
        if len(windows_a) and len(windows_b):
            sims = windows_a @ windows_b.T
            i, j = np.unravel_index(int(np.argmax(sims)), sims.shape)
            at_a = float(starts_a[i]) if np.isfinite(starts_a[i]) else 0.0
            at_b = float(starts_b[j]) if np.isfinite(starts_b[j]) else 0.0
            out += [html.P(f"Closest moments: {_clock(at_a)} here and {_clock(at_b)} there "
                           f"(window similarity {float(sims[i, j]):.3f}).", id="explain-windows"),
                    html.Div(className="explain-play", children=[
                        html.Span("this from here"),
                        html.Audio(src=f"/audio/{seed}#t={at_a:.1f}", controls=True, preload="none"),
                        html.Span("that from here"),
                        html.Audio(src=f"/audio/{other}#t={at_b:.1f}", controls=True, preload="none",
                                   id="explain-play-other")])]
        else:
            out.append(html.P("No per-window vectors stored (MAEST stores them; --no-windows skips them).",
                              className="what"))
        return out

    def path(self, start: int, end: int, steps: int | None, color_by: str) -> tuple[Any, Any]:
        """(the path panel, a map patch drawing it) for a song path from ``start`` to ``end``."""
        steps = int(steps) if steps and 2 <= int(steps) <= MAX_PATH else PATH_STEPS
        data = self.data.refresh()
        traces = data.traces(color_by if color_by in COLOR_FIELDS else "genre")
        patch = dash.Patch()
        with self.store.holding():
            try:
                path = self.store.song_path(int(start), int(end), length=steps)
            except StoreError as exc:
                return html.P(str(exc), className="error", id="path-error"), dash.no_update
        ids = [s.track_id for s in path]
        self._apply_selection(patch, traces, path_points(data.frame, ids, data.row_of))
        first, last = path[0].track, path[-1].track
        queue = [f"/audio/{i}" for i in ids]
        items = [html.Li(html.Button(
            [html.Span("" if s.to_previous is None else f"{s.to_previous:.3f}", className="score"),
             f" {s.track.get('artist') or '?'} – {s.track.get('title') or '?'}",
             html.Span(f" {s.track.get('genre') or ''}", className="genre")],
            id={"type": "similar", "index": s.track_id}, n_clicks=0, className="similar-item")) for s in path]
        return [
            html.H4(f"Path: {first.get('title') or '?'} → {last.get('title') or '?'} ({len(path)} tracks)",
                    id="path-title"),
            html.P("each step close to the last (its similarity shown) and closer to the end; drawn on the map",
                   className="what"),
            html.Audio(id="path-player", src=queue[0], controls=True, preload="none",
                       **{"data-queue": json.dumps(queue), "data-pos": "0"}),  # type: ignore[arg-type]
            html.Div(className="selection-buttons", children=[
                html.A("M3U", href=f"/api/v1/path?from={int(start)}&to={int(end)}&steps={steps}&format=m3u",
                       download=f"musicmap-path-{int(start)}-{int(end)}.m3u8", className="small-button",
                       id="path-m3u"),
                html.Button("select these", n_clicks=0, className="small-button",
                            id={"type": "select-similar", "index": ",".join(str(i) for i in ids)})]),
            html.Ol(items, id="path-list"),
        ], patch

    def extend_selection(self, ids: list[int] | None, n: int = EXTEND_N) -> Any:
        """Tracks that fit the selection as a playlist (its centroid), never one of its own."""
        if not ids:
            return html.P("nothing selected", className="what")
        members = [int(i) for i in ids]
        with self.store.holding():
            added = self.store.extend(members, n=n)
        new_ids = [a.track_id for a in added]
        return [html.H4(f"{len(added)} more for these {len(members)} tracks ({self.model_label})"),
                html.Ol(_similar_items(added), id="extend-list"),
                html.Div(className="selection-buttons", children=[
                    html.Button("add to selection", n_clicks=0, className="small-button", id={
                        "type": "select-similar", "index": ",".join(str(i) for i in members + new_ids)}),
                    html.A("M3U of the new ones", className="small-button", id="extend-m3u",
                           href=f"/api/v1/extend?ids={','.join(map(str, members[:1000]))}&n={n}&format=m3u",
                           download="musicmap-extension.m3u8")])]

    def similar_to_selection(self, ids: list[int] | None, k: int = K_DEFAULT) -> Any:
        """Tracks like the selection as a whole (the centroid of its vectors), none of its own."""
        if not ids:
            return html.P("nothing selected", className="what")
        with self.store.holding():
            neighbours = self.store.search([int(i) for i in ids], k=k)
        return [html.H4(f"Like these {len(ids)} tracks ({self.model_label})"),
                html.Ol(_similar_items(neighbours), id="centroid-list")]

    def export(self, kind: str, ids: list[int] | None) -> dict[str, Any]:
        """The selection as a download: ``m3u-absolute``, ``m3u-relative`` or ``csv``."""
        if not ids:
            raise dash.exceptions.PreventUpdate
        from store.m3u import common_folder, m3u_bytes

        ids = [int(i) for i in ids]
        with self.store.holding():
            if kind == "csv":
                frame = self.store.tracks(ids, columns=("id", "title", "artist", "album", "genre", "year",
                                                        "duration", "path"))
                return dcc.send_data_frame(frame.to_csv, "musicmap-selection.csv", index=False)
            relative_to = common_folder(self.store, ids) if kind == "m3u-relative" else None
            data = m3u_bytes(self.store, ids, relative_to=relative_to)
        return dcc.send_bytes(data, "musicmap-selection.m3u8")

    # -- search ---------------------------------------------------------------------------------
    def search(self, text: str | None) -> list[Any]:
        if not text or not text.strip():
            return []
        hits = self.data.refresh().search(text, SEARCH_RESULTS)
        if not hits:
            return [html.Div("no match on the map", className="search-none")]
        return [html.Button(f"{h['artist'] or '?'} – {h['title'] or '?'}" + (f"  ({h['album']})" if h["album"] else ""),
                            id={"type": "hit", "index": h["id"]}, n_clicks=0, className="search-hit")
                for h in hits]

    def centre(self, track_id: int | None) -> dash.Patch:
        if track_id is None:
            raise dash.exceptions.PreventUpdate
        ranges = centred_ranges(self.data.refresh().frame, int(track_id))
        if ranges is None:
            raise dash.exceptions.PreventUpdate
        patch = dash.Patch()
        patch["layout"]["xaxis"]["range"] = ranges["x"]
        patch["layout"]["yaxis"]["range"] = ranges["y"]
        patch["layout"]["xaxis"]["autorange"] = False
        patch["layout"]["yaxis"]["autorange"] = False
        return patch

    # -- the URL --------------------------------------------------------------------------------
    def state_from_url(self, search: str | None, current: ViewState) -> tuple[Any, ...]:
        """Control values from the URL (``dash.no_update`` for what already matches, so a page load
        with the default view sends nothing)."""
        state = parse(search, COLOR_FIELDS)
        full = self.data.refresh().year_range()
        years = list(state.years) if state.years and full else ([*full] if full else [0, 1])
        wanted: tuple[Any, ...] = (state.track, state.color, state.genres, state.styles, years, state.k,
                                   state.per_artist, state.per_album, ["dedupe"] if state.dedupe else [],
                                   state.where)
        have: tuple[Any, ...] = (current.track, current.color, current.genres, current.styles,
                                 list(current.years) if current.years else ([*full] if full else [0, 1]), current.k,
                                 current.per_artist, current.per_album, ["dedupe"] if current.dedupe else [],
                                 current.where)
        if wanted == have:
            raise dash.exceptions.PreventUpdate
        return tuple(w if w != h else dash.no_update for w, h in zip(wanted, have, strict=True))

    def url_for(self, selected: int | None, color: str, genres: list[str] | None, styles: list[str] | None,
                years: list[int] | None, k: int | None, per_artist: int | None, per_album: int | None,
                dedupe: list[str] | None, where: str | None) -> str:
        state = ViewState(track=selected, color=color or "genre", genres=list(genres or []),
                          styles=list(styles or []), years=_years(years, self.data.year_range()),
                          k=int(k) if k and 1 <= int(k) <= K_PAGE_MAX else K_DEFAULT, per_artist=per_artist or None,
                          per_album=per_album or None, dedupe=bool(dedupe), where=(where or "").strip())
        return encode(state)

    def register(self, app: dash.Dash) -> None:
        controls = [Input("color-by", "value"), Input("genre-filter", "value"), Input("style-filter", "value"),
                    Input("year-filter", "value"), Input("k", "value"), Input("per-artist", "value"),
                    Input("per-album", "value"), Input("dedupe", "value"), Input("where", "value")]

        @app.callback(Output("selected", "data", allow_duplicate=True), Output("color-by", "value"),
                      Output("genre-filter", "value"), Output("style-filter", "value"),
                      Output("year-filter", "value"), Output("k", "value"), Output("per-artist", "value"),
                      Output("per-album", "value"), Output("dedupe", "value"), Output("where", "value"),
                      Output("centre-on", "data", allow_duplicate=True), Output("hover-load", "data"),
                      Input("url", "search"), State("hover-load", "data"), State("selected", "data"),
                      *[State(c.component_id, c.component_property) for c in controls],
                      prevent_initial_call="initial_duplicate")
        def from_url(search: str | None, hover_load: str | None, selected: int | None, color: str,
                     genres: list[str] | None, styles: list[str] | None, years: list[int] | None, k: int | None,
                     per_artist: int | None, per_album: int | None, dedupe: list[str] | None,
                     where: str | None) -> tuple[Any, ...]:
            current = parse(self.url_for(selected, color, genres, styles, years, k, per_artist, per_album,
                                         dedupe, where), COLOR_FIELDS)
            # The page's first figure has no hover texts: on the first call, ask for them when the
            # figure stays (a URL with another colour brings a new figure, texts included).
            first = hover_load is None
            try:
                values = self.state_from_url(search, current)
            except dash.exceptions.PreventUpdate:
                if not first:
                    raise
                values = (dash.no_update,) * 10
            load = (("genre" if values[1] is dash.no_update else "recoloured") if first else dash.no_update)
            centre = values[0] if values[0] is not dash.no_update and values[0] is not None else dash.no_update
            return (*values, centre, load)

        @app.callback(Output("url-out", "search"), Input("selected", "data"), *controls, prevent_initial_call=True)
        def to_url(selected: int | None, *values: Any) -> str:
            return self.url_for(selected, *values)

        @app.callback(Output("map", "figure"), Input("color-by", "value"),
                      State("genre-filter", "value"), State("style-filter", "value"), State("year-filter", "value"),
                      State("selected", "data"), prevent_initial_call=True)
        def recolour(color_by: str, genres: list[str] | None, styles: list[str] | None, years: list[int] | None,
                     selected: int | None) -> go.Figure:
            if color_by not in COLOR_FIELDS:
                raise dash.exceptions.PreventUpdate
            return self.figure(color_by, genres, styles, _years(years, self.data.year_range()), selected)

        @app.callback(Output("map", "figure", allow_duplicate=True), Output("filter-note", "children"),
                      Input("genre-filter", "value"), Input("style-filter", "value"), Input("year-filter", "value"),
                      Input("selection", "data"), State("color-by", "value"), prevent_initial_call=True)
        def refilter(genres: list[str] | None, styles: list[str] | None, years: list[int] | None,
                     selection: list[int] | None, color_by: str) -> tuple[dash.Patch, str]:
            return self.filters(color_by, genres, styles, _years(years, self.data.year_range()), selection)

        # -- the SQL panel
        @app.callback(Output("sql-grid", "columns"), Output("sql-grid", "data"), Output("sql-error", "children"),
                      Output("sql-status", "children"), Output("sql-ids", "data"),
                      Input("sql-run", "n_clicks"), State("sql-text", "value"), State("selected", "data"),
                      prevent_initial_call=True)
        def run_sql(_n: int | None, query: str | None, selected: int | None) -> tuple[Any, ...]:
            return self.run_sql(query, selected)

        @app.callback(Output("sql-text", "value"), Input("sql-examples", "value"), Input("sql-saved-list", "value"),
                      State("sql-saved", "data"), prevent_initial_call=True)
        def pick_query(example: int | None, saved_name: str | None, saved: dict[str, str] | None) -> str:
            if dash.ctx.triggered_id == "sql-examples" and example is not None:
                return sqltab.EXAMPLES[int(example)][1]
            if dash.ctx.triggered_id == "sql-saved-list" and saved_name and saved and saved_name in saved:
                return saved[saved_name]
            raise dash.exceptions.PreventUpdate

        @app.callback(Output("sql-saved", "data"), Input("sql-save", "n_clicks"), State("sql-name", "value"),
                      State("sql-text", "value"), State("sql-saved", "data"), prevent_initial_call=True)
        def save_query(_n: int | None, name: str | None, query: str | None,
                       saved: dict[str, str] | None) -> dict[str, str]:
            if not name or not name.strip() or not query or not query.strip():
                raise dash.exceptions.PreventUpdate
            return {**(saved or {}), name.strip()[:80]: query}

        @app.callback(Output("sql-saved-list", "options"), Input("sql-saved", "data"))
        def saved_list(saved: dict[str, str] | None) -> list[str]:
            return sorted(saved or {})

        @app.callback(Output("selection", "data", allow_duplicate=True), Input("sql-show", "n_clicks"),
                      State("sql-ids", "data"), prevent_initial_call=True)
        def sql_to_selection(_n: int | None, ids: list[int] | None) -> list[int]:
            if not ids:
                raise dash.exceptions.PreventUpdate
            return ids

        @app.callback(Output("selected", "data"), Output("centre-on", "data"),
                      Input("map", "clickData"), Input({"type": "similar", "index": ALL}, "n_clicks"),
                      Input({"type": "hit", "index": ALL}, "n_clicks"),
                      Input({"type": "hub", "index": ALL}, "n_clicks"), Input("clear", "n_clicks"),
                      State("color-by", "value"), prevent_initial_call=True)
        def select(click: dict[str, Any] | None, similar_clicks: list[int | None], hit_clicks: list[int | None],
                   hub_clicks: list[int | None], _clear: int | None, color_by: str) -> tuple[Any, Any]:
            trigger = dash.ctx.triggered_id
            if trigger == "clear":
                return None, dash.no_update
            if isinstance(trigger, dict):
                if not dash.ctx.triggered[0]["value"]:
                    raise dash.exceptions.PreventUpdate  # a list re-rendered (n_clicks 0), not a click
                track = int(trigger["index"])
                return track, (track if trigger.get("type") in ("hit", "hub") else dash.no_update)
            on_map = self.clicked(click, color_by)
            if on_map is None:
                raise dash.exceptions.PreventUpdate
            return on_map, dash.no_update

        # Ask for the hover texts once the first figure is drawn (Plotly reports relayoutData then),
        # so they never delay the first paint: a browser-side gate, no server round trip.
        app.clientside_callback(
            """function(relayout, pending, sent) {
                if (relayout && pending && pending !== "recoloured" && !sent) { return pending; }
                return window.dash_clientside.no_update;
            }""",
            Output("hover-go", "data"), Input("map", "relayoutData"), Input("hover-load", "data"),
            State("hover-go", "data"), prevent_initial_call=True)

        @app.callback(Output("map", "figure", allow_duplicate=True), Input("hover-go", "data"),
                      prevent_initial_call=True)
        def load_hover(figure_colour: str | None) -> dash.Patch:
            if figure_colour not in COLOR_FIELDS:
                raise dash.exceptions.PreventUpdate
            return self.hover(figure_colour)

        @app.callback(Output("panel", "children"), Output("map", "figure", allow_duplicate=True),
                      Input("selected", "data"), Input("k", "value"), Input("per-artist", "value"),
                      Input("per-album", "value"), Input("dedupe", "value"), Input("where", "value"),
                      Input("path-from", "data"), State("color-by", "value"), prevent_initial_call=True)
        def show(track_id: int | None, k: int | None, per_artist: int | None, per_album: int | None,
                 dedupe: list[str] | None, where: str | None, path_from: int | None,
                 color_by: str) -> tuple[Any, dash.Patch]:
            return self.show(track_id, color_by, k, per_artist, per_album, bool(dedupe), where, path_from)

        @app.callback(Output("map", "figure", allow_duplicate=True), Input("centre-on", "data"),
                      prevent_initial_call=True)
        def centre(track_id: int | None) -> dash.Patch:
            return self.centre(track_id)

        @app.callback(Output("selection", "data"), Input("map", "selectedData"),
                      Input({"type": "select-similar", "index": ALL}, "n_clicks"),
                      Input({"type": "selection-clear", "index": ALL}, "n_clicks"), State("color-by", "value"),
                      prevent_initial_call=True)
        def selection(selected: dict[str, Any] | None, _similar: list[int | None], _clear: list[int | None],
                      color_by: str) -> list[int] | None:
            trigger = dash.ctx.triggered_id
            if isinstance(trigger, dict):
                if not dash.ctx.triggered[0]["value"]:
                    raise dash.exceptions.PreventUpdate  # re-rendered, not clicked
                if trigger.get("type") == "selection-clear":
                    return None
                return [int(i) for i in str(trigger["index"]).split(",") if i]
            return self.selected_on_map(selected, color_by) or None

        @app.callback(Output("selection-panel", "children"), Input("selection", "data"))
        def selection_panel(ids: list[int] | None) -> Any:
            return self.selection_panel(ids)

        @app.callback(Output({"type": "selection-similar-list", "index": ALL}, "children"),
                      Input({"type": "selection-similar", "index": ALL}, "n_clicks"), State("selection", "data"),
                      prevent_initial_call=True)
        def selection_similar(clicks: list[int | None], ids: list[int] | None) -> list[Any]:
            if not any(clicks):
                raise dash.exceptions.PreventUpdate
            return [self.similar_to_selection(ids)] * len(clicks)

        @app.callback(Output({"type": "selection-extend-list", "index": ALL}, "children"),
                      Input({"type": "selection-extend", "index": ALL}, "n_clicks"), State("selection", "data"),
                      prevent_initial_call=True)
        def selection_extend(clicks: list[int | None], ids: list[int] | None) -> list[Any]:
            if not any(clicks):
                raise dash.exceptions.PreventUpdate
            return [self.extend_selection(ids)] * len(clicks)

        @app.callback(Output("path-from", "data"), Input({"type": "path-from", "index": ALL}, "n_clicks"),
                      prevent_initial_call=True)
        def path_from(_clicks: list[int | None]) -> int:
            trigger = dash.ctx.triggered_id
            if not isinstance(trigger, dict) or not dash.ctx.triggered[0]["value"]:
                raise dash.exceptions.PreventUpdate
            return int(trigger["index"])

        @app.callback(Output("path-panel", "children"), Output("map", "figure", allow_duplicate=True),
                      Input({"type": "path-go", "index": ALL}, "n_clicks"),
                      State({"type": "path-steps", "index": ALL}, "value"), State("color-by", "value"),
                      prevent_initial_call=True)
        def path(_clicks: list[int | None], steps: list[int | None], color_by: str) -> tuple[Any, Any]:
            trigger = dash.ctx.triggered_id
            if not isinstance(trigger, dict) or not dash.ctx.triggered[0]["value"]:
                raise dash.exceptions.PreventUpdate
            start, end = (int(x) for x in str(trigger["index"]).split("-"))
            return self.path(start, end, steps[0] if steps else None, color_by)

        @app.callback(Output("explain-panel", "children"), Input({"type": "explain", "index": ALL}, "n_clicks"),
                      prevent_initial_call=True)
        def explain(_clicks: list[int | None]) -> Any:
            trigger = dash.ctx.triggered_id
            if not isinstance(trigger, dict) or not dash.ctx.triggered[0]["value"]:
                raise dash.exceptions.PreventUpdate
            seed, other = (int(x) for x in str(trigger["index"]).split("-"))
            return self.explain(seed, other)

        @app.callback(Output("download", "data"), Input({"type": "export", "index": ALL}, "n_clicks"),
                      State("selection", "data"), prevent_initial_call=True)
        def download(_clicks: list[int | None], ids: list[int] | None) -> dict[str, Any]:
            trigger = dash.ctx.triggered_id
            if not isinstance(trigger, dict) or not dash.ctx.triggered[0]["value"]:
                raise dash.exceptions.PreventUpdate
            return self.export(str(trigger["index"]), ids)

        @app.callback(Output("search-results", "children"), Input("search", "value"), prevent_initial_call=True)
        def search(text: str | None) -> list[Any]:
            return self.search(text)

        if self.uploads is not None:
            self._register_upload(app)

    def _register_upload(self, app: dash.Dash) -> None:
        # A browser-side gate: a file over the limit is refused at once, never sent.
        app.clientside_callback(
            """function(contents, filename, limit) {
                if (!contents) { return [window.dash_clientside.no_update, window.dash_clientside.no_update]; }
                const size = Math.floor((contents.length - contents.indexOf(",") - 1) * 3 / 4);
                const mb = (n) => (n / 1e6).toFixed(n < 1e7 ? 1 : 0) + " MB";
                if (size > limit) {
                    return [window.dash_clientside.no_update,
                            (filename || "the file") + ": the file is " + mb(size) + "; uploads may be at most "
                            + mb(limit)];
                }
                return [{contents: contents, filename: filename}, "embedding " + (filename || "the clip") + " …"];
            }""",
            Output("upload-go", "data"), Output("upload-error", "children"), Input("upload", "contents"),
            State("upload", "filename"), State("upload-limit", "data"), prevent_initial_call=True)

        @app.callback(Output("panel", "children", allow_duplicate=True), Output("map", "figure", allow_duplicate=True),
                      Output("upload-error", "children", allow_duplicate=True), Output("upload", "contents"),
                      Input("upload-go", "data"), State("color-by", "value"), State("k", "value"),
                      State("per-artist", "value"), State("per-album", "value"), State("dedupe", "value"),
                      State("where", "value"), prevent_initial_call=True)
        def upload(go_data: dict[str, Any] | None, color_by: str, k: int | None, per_artist: int | None,
                   per_album: int | None, dedupe: list[str] | None, where: str | None) -> tuple[Any, ...]:
            if not go_data:
                raise dash.exceptions.PreventUpdate
            return (*self.upload(go_data.get("contents"), go_data.get("filename"), color_by, k, per_artist,
                                 per_album, bool(dedupe), where), None)  # cleared: the same file can come again


def _similar_options(per_artist: int | None, per_album: int | None, dedupe: bool | list[str] | None,
                     where: str | None) -> VarietyOptions:
    """The variety controls as keyword arguments for ``Store.search``."""
    options: VarietyOptions = {"dedupe": bool(dedupe)}
    if per_artist:
        options["max_per_artist"] = int(per_artist)
    if per_album:
        options["max_per_album"] = int(per_album)
    if where and where.strip():
        options["where"] = where.strip()
    return options


def _status(frame: pd.DataFrame, info: dict[str, Any] | None, model_label: str) -> str:
    parts = [f"{len(frame)} tracks", f"vectors: {model_label}"]
    if info is None:
        parts.append("no map yet: run `musicmap map`")
    else:
        params = info.get("params") or {}
        impl = params.get("implementation")
        parts.append(f"map: {info['method']}" + (f" ({impl})" if impl else ""))
        q = params.get("quality") or {}
        figures = [f"{label} {q[key]:.2f}" for key, label in (("trustworthiness", "trustworthiness"),
                                                               ("knn_preservation", "kNN preservation"),
                                                               ("category_agreement", "same-genre neighbours"))
                   if isinstance(q.get(key), (int, float))]
        if figures:
            parts.append("quality: " + ", ".join(figures))
    return " · ".join(parts)


def _quality_panel(data: MapData) -> Any:
    """The map's measured quality and its hub tracks (those in the most similar-track lists)."""
    params = (data.info or {}).get("params") or {}
    q, hubs = params.get("quality") or {}, params.get("hubness") or {}
    if not q and not hubs:
        return html.Span()
    rows = []
    for key, label, what in (
            ("trustworthiness", "trustworthiness@10",
             "1 when a track's map neighbours are its neighbours in the vectors"),
            ("knn_preservation", "kNN preservation", "share of a track's 10 nearest (vectors) among its 10 nearest "
                                                     "on the map"),
            ("category_agreement", "same-genre neighbours", "share of map neighbours with the track's genre")):
        if isinstance(q.get(key), (int, float)):
            rows.append(html.Tr([html.Th(label), html.Td(f"{q[key]:.3f}"), html.Td(what, className="what")]))
    children: list[Any] = [html.Summary("map quality and hubs"),
                           html.Table(rows, className="quality-table"),
                           html.P(f"measured on {q.get('sample', '?')} tracks", className="what")] if rows else \
        [html.Summary("map quality and hubs")]
    if hubs.get("hubs"):
        named = data.frame.set_index("id")[["title", "artist"]].astype(object) if len(data.frame) else pd.DataFrame()
        named = named.where(named.notna(), "?")
        titles, artists = (named["title"], named["artist"]) if len(named) else (pd.Series(), pd.Series())
        children += [
            html.P(f"Hubs: tracks in the most top-{hubs['k']} similar lists (k-occurrence skewness "
                   f"{hubs['skewness']:.2f}; {100 * hubs['never_listed']:.0f} % of tracks are in no list). "
                   "Hubs make similar lists feel repetitive.", className="what"),
            html.Ol(id="hub-list", children=[
                html.Li(html.Button(f"{artists[t]} – {titles[t]} ({count:g} lists)",
                                    id={"type": "hub", "index": int(t)}, n_clicks=0, className="similar-item"))
                for t, count in hubs["hubs"][:10] if t in titles.index]),
        ]
    return html.Details(children, id="quality-panel")


def _upload_box(uploads: Uploads | None) -> Any:
    """The drop zone for query by example (only when the server allows uploads)."""
    if uploads is None:
        return html.Div(id="upload-off")
    return html.Div(className="upload-box", children=[
        dcc.Upload(id="upload", multiple=False, className="upload", children=html.Div([
            "Drop an audio clip here or ", html.A("choose a file", className="link"),
            f" to find tracks like it (up to {uploads.max_bytes / 1e6:g} MB; not kept)"])),
        html.Div(id="upload-error", className="error"),
        dcc.Store(id="upload-go"),
        dcc.Store(id="upload-limit", data=uploads.max_bytes),
    ])


def _layout(data: MapData, model_label: str, uploads: Uploads | None = None,
            labels: LabelWords | None = None) -> html.Div:
    """The page, built from the store's current map (Dash calls it on every page load)."""
    frame, info = data.frame, data.info
    initial = map_figure(frame, "genre", None, data.traces("genre"))  # hover texts follow in a patch
    fields = [f for f in COLOR_FIELDS
              if f not in ("style", "cluster") or (f in frame and len(frame) and frame[f].notna().any())]
    years = data.year_range()
    styles = data.options("style")
    top = f"top {(labels or LabelWords('styles', '')).plural[:-1]}"  # "top style" / "top tag"
    small = {"width": "70px"}
    return html.Div(className="musicmap", children=[
        dcc.Location(id="url", refresh=False),
        dcc.Location(id="url-out", refresh=False),
        html.Div(className="topbar", children=[
            html.H2("musicmap"),
            html.Span(id="status-line", children=_status(frame, info, model_label)),
            _quality_panel(data),
        ]),
        html.Div(className="controls", children=[
            html.Div(className="search-box", children=[
                dcc.Input(id="search", type="search", placeholder="search title, artist, album…", debounce=0.25,
                          autoComplete="off", style={"width": "260px"}),
                html.Div(id="search-results"),
            ]),
            html.Label(["colour by ", dcc.Dropdown(
                id="color-by", options=[{"label": top if f == "style" else f, "value": f} for f in fields],
                value="genre",
                clearable=False, className="narrow")]),
            html.Label(["genre ", dcc.Dropdown(id="genre-filter", options=data.options("genre"), value=[],
                                               multi=True, placeholder="all", className="wide")]),
            html.Label([f"{top} ", dcc.Dropdown(id="style-filter", options=styles, value=[], multi=True,
                                               placeholder="all", className="wide")],
                       style={} if styles else {"display": "none"}),
            html.Div(className="years", style={} if years else {"display": "none"}, children=[
                html.Span("years"),
                dcc.RangeSlider(id="year-filter", min=years[0] if years else 0, max=years[1] if years else 1,
                                step=1, value=list(years) if years else [0, 1], allowCross=False,
                                tooltip={"placement": "bottom"}, marks=None),
            ]),
            html.Span(id="filter-note"),
        ]),
        html.Div(className="main", children=[
            html.Div(className="map-box", children=[
                dcc.Graph(id="map", figure=initial, className="map",
                          config={"displaylogo": False, "scrollZoom": True}),
                html.Div(id="map-empty", children=(
                    "" if len(frame) else "This store has no map yet: run `musicmap map --store ...`.")),
                sqltab.layout(data.store),
            ]),
            html.Div(className="side", children=[
                html.Div(className="variety", children=[
                    html.Label(["similar ", dcc.Input(id="k", type="number", min=1, max=K_PAGE_MAX, step=1,
                                                      value=K_DEFAULT, debounce=True, style=small)]),
                    html.Label(["per artist ≤ ", dcc.Input(id="per-artist", type="number", min=1, step=1,
                                                           debounce=True, style=small)]),
                    html.Label(["per album ≤ ", dcc.Input(id="per-album", type="number", min=1, step=1,
                                                          debounce=True, style=small)]),
                    dcc.Checklist(id="dedupe", options=[{"label": " one copy per song", "value": "dedupe"}],
                                  value=[], inline=True),
                    dcc.Input(id="where", type="text", debounce=True, placeholder="filter (SQL): year >= 1990",
                              className="where"),
                    html.Button("×", id="clear", title="clear the selection", n_clicks=0),
                ]),
                _upload_box(uploads),
                html.Div(id="selection-panel", className="selection"),
                html.Div(id="explain-panel", className="explain"),
                html.Div(id="path-panel", className="explain"),
                html.Div(id="panel", children=html.P(
                    "Click a track on the map, or search, to play it and see similar tracks.")),
            ]),
        ]),
        dcc.Store(id="selected"),
        dcc.Store(id="centre-on"),
        dcc.Store(id="selection"),
        dcc.Store(id="path-from"),  # the track a path starts from, until the path is drawn
        dcc.Download(id="download"),
        dcc.Store(id="hover-load"),  # which colour's hover texts the first figure still needs
        dcc.Store(id="hover-go"),  # set once the figure is drawn: send them now
    ])


def _similar_items(neighbours: list[Any], seed: int | None = None) -> list[Any]:
    """A similar-track list: score, artist – title, genre; clicking one selects it, and with a
    ``seed`` track, "why?" explains the match."""
    return [html.Li([html.Button(
        [html.Span(f"{n.score:.3f}", className="score"),
         f" {n.track.get('artist') or '?'} – {n.track.get('title') or '?'}",
         html.Span(f" {n.track.get('genre') or ''}", className="genre")],
        id={"type": "similar", "index": n.track_id}, n_clicks=0, className="similar-item")]
        + ([html.Button("why?", id={"type": "explain", "index": f"{seed}-{n.track_id}"}, n_clicks=0,
                        className="why", title="what the two tracks share")] if seed is not None else []))
        for n in neighbours]


def _path_controls(track_id: int, start: dict[str, Any] | None, path_from: int | None) -> list[Any]:
    """Under a track: start a song path here, or (once a start is chosen) draw the path to here."""
    out: list[Any] = [html.H4("Song path")]
    if start is not None:
        out.append(html.Div(className="path-controls", children=[
            html.Span(f"from {start.get('artist') or '?'} – {start.get('title') or '?'} to here, in "),
            dcc.Input(id={"type": "path-steps", "index": 0}, type="number", min=2, max=MAX_PATH, step=1,
                      value=PATH_STEPS, className="path-steps"),
            html.Span(" tracks "),
            html.Button("draw the path", id={"type": "path-go", "index": f"{int(start['id'])}-{track_id}"},
                        n_clicks=0, className="small-button")]))
    elif path_from is not None and int(path_from) == track_id:
        out.append(html.P("The path starts here: now pick the track it should end on.", className="what",
                          id="path-start-note"))
    out.append(html.Button("start a path here", id={"type": "path-from", "index": track_id}, n_clicks=0,
                           className="small-button", title="then pick another track: a path of similar tracks "
                           "leads from this one to that one"))
    return out


@dataclass(frozen=True)
class LabelWords:
    """How the page names a model's labels: MAEST predicts Discogs *styles*, MusiCNN *tags*."""

    plural: str
    heading: str


def label_words(model: Any) -> LabelWords:
    """The words for ``model``'s (a :class:`store.ModelInfo`) predicted labels."""
    if model.kind == "musicnn":
        return LabelWords("tags", f"Predicted {model.extra.get('labels', 'tags')}")  # "... MagnaTagATune tags"
    return LabelWords("styles", "Predicted styles")


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def _panel(track: dict[str, Any], neighbours: list[Any], styles: list[tuple[str, float]],
           model_label: str, problem: str | None = None, heading: str = "Predicted styles") -> list[Any]:
    def field(name: str, value: Any) -> Any:
        return html.Tr([html.Th(name), html.Td("—" if value is None else str(value))])

    duration = track.get("duration")
    rows = [field("artist", track.get("artist")), field("album", track.get("album")),
            field("genre", track.get("genre")), field("year", track.get("year")),
            field("length", f"{int(duration) // 60}:{int(duration) % 60:02d}" if duration else None),
            field("file", track.get("path"))]
    items = _similar_items(neighbours, seed=int(track["id"]))
    out: list[Any] = [
        html.H3(track.get("title") or "(untitled)", id="track-title"),
        html.Table(rows, className="track-table"),
        html.Audio(id="player", src=f"/audio/{int(track['id'])}", controls=True, autoPlay=True, preload="auto"),
    ]
    if styles:
        out.append(html.Div(className="styles", children=[html.H4(heading)] + [
            html.Div(className="style-row", children=[
                html.Span(label.replace("---", " › ")),
                html.Div(className="bar", style={"width": f"{max(2, round(100 * a))}%"}),
            ]) for label, a in styles]))
    if problem:
        out.append(html.Div(f"filter not applied: {problem}", className="error", id="similar-problem"))
    out += [html.H4(f"Similar tracks ({model_label})"), html.Ol(items, id="similar-list"),
            html.Button("select these", n_clicks=0, className="small-button",
                        id={"type": "select-similar",
                            "index": ",".join(str(i) for i in [int(track["id"]), *(n.track_id for n in neighbours)])})]
    return out
