"""The Dash explorer: ``create_app(store, embed=None)``.

Reads the store only (it never imports ``indexer`` or torch); query-by-upload will get an
``embed`` function injected by the CLI. The page shows every track on the map (WebGL),
coloured by a chosen field, with hover details; clicking a track opens its panel (metadata,
an audio player streaming the file by track id, similar tracks with scores), and rings the
track and its neighbours on the map. The big scatter is sent once per colour choice;
selection only patches a small highlight trace.
"""

from __future__ import annotations

import html as html_lib
import logging
import mimetypes
import time
from collections.abc import Callable
from typing import Any

import dash
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from dash import ALL, Input, Output, State, dcc, html
from flask import Response, jsonify, request, send_file

from store import Store, StoreError

logger = logging.getLogger(__name__)

EmbedFn = Callable[[bytes], np.ndarray]

COLOR_FIELDS: tuple[str, ...] = ("genre", "style", "artist", "album", "year", "format")
TOP_CATEGORIES = 15
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#7f7f7f", "#393b79", "#ad494a", "#637939", "#8c6d31", "#7b4173",
)
OTHER_COLOR = "#c7c7c7"
K_SIMILAR = 10


def _hover_text(frame: pd.DataFrame) -> list[str]:
    def esc(value: Any) -> str:
        return html_lib.escape(str(value)) if value is not None and not pd.isna(value) else "—"

    return [
        f"<b>{esc(r.title)}</b><br>{esc(r.artist)}<br><i>{esc(r.album)}</i><br>"
        f"genre: {esc(r.genre)} · {esc(r.year)}"
        for r in frame.itertuples(index=False)
    ]


def map_figure(frame: pd.DataFrame, color_by: str, hover: list[str]) -> go.Figure:
    """The map: one WebGL trace per category (top-N + "other"), then the highlight trace last."""
    labels = frame[color_by].astype("string").fillna("(none)") if len(frame) else pd.Series([], dtype="string")
    counts = labels.value_counts()
    keep = list(counts.index[:TOP_CATEGORIES])
    labels = labels.where(labels.isin(keep), "other")
    order = keep + (["other"] if (labels == "other").any() else [])
    fig = go.Figure()
    ids = frame["id"].astype(int).to_numpy()
    xs, ys = frame["x"].to_numpy(), frame["y"].to_numpy()
    hover_arr = np.asarray(hover, dtype=object)
    for i, name in enumerate(order):
        mask = (labels == name).to_numpy()
        fig.add_trace(go.Scattergl(
            x=xs[mask].tolist(), y=ys[mask].tolist(), mode="markers", name=f"{name} ({int(mask.sum())})",
            # customdata as a plain list: a numpy array arrives as None in clickData (plotly#5119)
            customdata=[[int(t)] for t in ids[mask]],
            text=hover_arr[mask].tolist(), hovertemplate="%{text}<extra></extra>",
            marker={"size": 7, "color": OTHER_COLOR if name == "other" else PALETTE[i % len(PALETTE)],
                    "opacity": 0.85},
        ))
    fig.add_trace(go.Scattergl(
        x=[], y=[], mode="markers", name="selection", showlegend=False, customdata=[], text=[],
        hovertemplate="%{text}<extra></extra>",
        marker={"size": [], "color": "rgba(0,0,0,0)", "line": {"width": 3, "color": "#111"}},
    ))
    fig.update_layout(
        uirevision="map",  # keep zoom and pan across updates
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        xaxis={"visible": False}, yaxis={"visible": False, "scaleanchor": "x"},
        legend={"title": {"text": color_by}, "itemsizing": "constant"},
        plot_bgcolor="white", clickmode="event", hovermode="closest",
    )
    return fig


class MapData:
    """The map's points and hover texts, reloaded when the store's map or track count changes
    (checked at most every ``check_every`` seconds): a page load after ``musicmap index`` /
    ``musicmap map`` shows the new state without restarting the explorer."""

    def __init__(self, store: Store, projection: str, check_every: float = 2.0) -> None:
        self.store, self.projection, self.check_every = store, projection, check_every
        self._key: Any = None
        self._checked = -1e9
        self.frame = pd.DataFrame()
        self.hover: list[str] = []
        self.info: dict[str, Any] | None = None
        self.refresh()

    def refresh(self) -> MapData:
        now = time.monotonic()
        if now - self._checked < self.check_every:
            return self
        self._checked = now
        info = {p["name"]: p for p in self.store.projection_info()}.get(self.projection)
        key = (info and (info["created_at"], info["n_tracks"]), self.store.count("tracks"),
               self.store.count("projections"))
        if key != self._key:
            self.frame = self.store.projection(self.projection)
            self.hover = _hover_text(self.frame) if len(self.frame) else []
            self.info, self._key = info, key
        return self


def create_app(store: Store, embed: EmbedFn | None = None, *, projection: str = "tsne") -> dash.Dash:
    """Build the explorer for an open (read-only) ``store``.

    Parameters
    ----------
    store : Store
        Opened with :meth:`Store.open`; the app only reads it.
    embed : callable, optional
        ``embed(audio_bytes) -> vector``; enables query-by-upload (later). Unused when None.
    projection : str
        Which stored map to show.
    """
    data = MapData(store, projection)
    model = store.manifest.model
    model_label = model.label + (" — not MAEST" if model.kind == "handcrafted" else "")
    app = dash.Dash(__name__, title="musicmap", update_title="")
    app.server.config["MAX_CONTENT_LENGTH"] = 1 << 20
    app.server.extensions["musicmap_embed"] = embed
    _register_routes(app, store)
    app.layout = lambda: _layout(data.refresh(), model_label)  # a function: each page load shows the current map

    @app.callback(Output("map", "figure"), Output("highlight-index", "data"),
                  Input("color-by", "value"), State("selected", "data"), prevent_initial_call=True)
    def recolour(color_by: str, selected: int | None) -> tuple[go.Figure, int]:
        if color_by not in COLOR_FIELDS:
            raise dash.exceptions.PreventUpdate
        current = data.refresh()
        fig = map_figure(current.frame, color_by, current.hover)
        if selected is not None:
            _apply_highlight(fig.data[-1], store, current.frame, selected)
        return fig, len(fig.data) - 1

    @app.callback(Output("selected", "data"),
                  Input("map", "clickData"), Input({"type": "similar", "index": ALL}, "n_clicks"),
                  prevent_initial_call=True)
    def select(click: dict[str, Any] | None, _clicks: list[int | None]) -> int:
        trigger = dash.ctx.triggered_id
        if isinstance(trigger, dict) and trigger.get("type") == "similar":
            if not any(_clicks):
                raise dash.exceptions.PreventUpdate
            return int(trigger["index"])
        points = (click or {}).get("points") or []
        if not points or not points[0].get("customdata"):
            raise dash.exceptions.PreventUpdate
        return int(points[0]["customdata"][0])

    @app.callback(Output("panel", "children"), Output("map", "figure", allow_duplicate=True),
                  Input("selected", "data"), State("highlight-index", "data"), prevent_initial_call=True)
    def show(track_id: int | None, highlight_index: int) -> tuple[Any, Any]:
        if track_id is None:
            raise dash.exceptions.PreventUpdate
        try:
            track = store.track(int(track_id))
            neighbours = store.similar(int(track_id), K_SIMILAR)
        except StoreError as exc:
            logger.warning("explorer: track %s: %s", track_id, exc)
            return html.Div(f"Cannot show track {track_id}: {exc}", className="error"), dash.no_update
        patch = dash.Patch()
        trace = go.Scattergl()
        _apply_highlight(trace, store, data.frame, int(track_id), neighbours=[n.track_id for n in neighbours])
        for key in ("x", "y", "customdata", "text"):
            patch["data"][highlight_index][key] = list(trace[key] or [])
        patch["data"][highlight_index]["marker"]["size"] = list(trace.marker.size or [])
        return _panel(track, neighbours, store.styles(int(track_id)), model.label), patch

    return app


def _layout(data: MapData, model_label: str) -> html.Div:
    """The page, built from the store's current map (Dash calls it on every page load)."""
    frame, info = data.frame, data.info
    map_label = f"{info['method']} map" if info else "no map yet: run `musicmap map`"
    initial = map_figure(frame, "genre", data.hover)
    return html.Div(style={"fontFamily": "system-ui, sans-serif", "margin": "0 12px"}, children=[
        html.Div(style={"display": "flex", "alignItems": "baseline", "gap": "18px"}, children=[
            html.H2("musicmap", style={"margin": "8px 0"}),
            html.Span(id="status-line", children=(
                f"{len(frame)} tracks · vectors: {model_label} · {map_label}")),
            html.Label(["colour by ", dcc.Dropdown(
                id="color-by", options=[{"label": f, "value": f} for f in _fields(frame)], value="genre",
                clearable=False, style={"width": "160px", "display": "inline-block", "verticalAlign": "middle"},
            )]),
        ]),
        html.Div(style={"display": "flex", "gap": "12px"}, children=[
            html.Div(style={"flex": "3", "minWidth": "0"}, children=[
                dcc.Graph(id="map", figure=initial, style={"height": "82vh"},
                          config={"displaylogo": False, "scrollZoom": True}),
                html.Div(id="map-empty", children=(
                    "" if len(frame) else "This store has no map yet: run `musicmap map --store ...`.")),
            ]),
            html.Div(id="panel", style={"flex": "1", "minWidth": "300px", "maxHeight": "85vh",
                                        "overflowY": "auto"},
                     children=html.P("Click a track on the map to play it and see similar tracks.")),
        ]),
        dcc.Store(id="selected"),
        dcc.Store(id="highlight-index", data=len(initial.data) - 1),
    ])


def _fields(frame: pd.DataFrame) -> list[str]:
    """Colour fields worth offering: ``style`` only when the store has MAEST style predictions."""
    has_styles = "style" in frame and frame["style"].notna().any()
    return [f for f in COLOR_FIELDS if f != "style" or has_styles]


def _apply_highlight(trace: Any, store: Store, frame: pd.DataFrame, track_id: int,
                     neighbours: list[int] | None = None) -> None:
    if neighbours is None:
        neighbours = [n.track_id for n in store.similar(track_id, K_SIMILAR)]
    wanted = [track_id, *neighbours]
    pos = frame.set_index("id").reindex(wanted).dropna(subset=["x"])
    trace.x = pos["x"].tolist()
    trace.y = pos["y"].tolist()
    trace.customdata = [[int(i)] for i in pos.index]
    trace.text = [f"{'selected' if int(i) == track_id else 'similar'}: {t}" for i, t in
                  zip(pos.index, pos["title"].astype("string").fillna("—"), strict=True)]
    trace.marker.size = [22 if int(i) == track_id else 14 for i in pos.index]


def _panel(track: dict[str, Any], neighbours: list[Any], styles: list[tuple[str, float]],
           model_label: str) -> list[Any]:
    def field(name: str, value: Any) -> Any:
        return html.Tr([html.Th(name, style={"textAlign": "left", "paddingRight": "8px"}),
                        html.Td("—" if value is None else str(value))])

    duration = track.get("duration")
    rows = [field("artist", track.get("artist")), field("album", track.get("album")),
            field("genre", track.get("genre")), field("year", track.get("year")),
            field("length", f"{int(duration) // 60}:{int(duration) % 60:02d}" if duration else None),
            field("file", track.get("path"))]
    items = [
        html.Li(html.Button(
            f"{n.score:.3f}  {n.track.get('artist') or '?'} – {n.track.get('title') or '?'}"
            f"  [{n.track.get('genre') or '-'}]",
            id={"type": "similar", "index": n.track_id}, n_clicks=0, className="similar-item",
            style={"border": "none", "background": "none", "cursor": "pointer", "textAlign": "left",
                   "padding": "2px 0"},
        ))
        for n in neighbours
    ]
    out: list[Any] = [
        html.H3(track.get("title") or "(untitled)", id="track-title", style={"marginBottom": "4px"}),
        html.Table(rows),
        html.Audio(id="player", src=f"/audio/{int(track['id'])}", controls=True, autoPlay=True,
                   style={"width": "100%", "marginTop": "8px"}),
    ]
    if styles:
        out.append(html.P("styles: " + ", ".join(f"{label} {a:.2f}" for label, a in styles)))
    out += [html.H4(f"Similar tracks ({model_label})"), html.Ol(items, id="similar-list")]
    return out


def _register_routes(app: dash.Dash, store: Store) -> None:
    server = app.server

    def error(status: int, message: str) -> Response:
        response = jsonify({"error": message, "status": status})
        response.status_code = status
        return response

    @server.route("/audio/<int:track_id>")
    def audio(track_id: int) -> Response:
        """Stream a track's file by id (never by a path from the client), with HTTP Range."""
        try:
            path = store.file_path(track_id)
        except StoreError:
            return error(404, f"no track with id {track_id}")
        mimetype = mimetypes.guess_type(path)[0] or "application/octet-stream"
        try:
            return send_file(path, mimetype=mimetype, conditional=True)
        except FileNotFoundError:
            return error(404, f"the file of track {track_id} is no longer on disk")

    @server.route("/api/v1/tracks/<int:track_id>")
    def api_track(track_id: int) -> Response:
        try:
            return jsonify(store.track(track_id))
        except StoreError as exc:
            return error(404, str(exc))

    def search_params() -> dict[str, Any]:
        """Query-string options of the similarity API, checked; ValueError names the bad one."""
        args = request.args
        raw_k = args.get("k", str(K_SIMILAR))
        if not raw_k.isdigit() or not 1 <= int(raw_k) <= 1000:
            raise ValueError(f"k={raw_k!r}: give a whole number from 1 to 1000")
        out: dict[str, Any] = {"k": int(raw_k), "where": args.get("where") or None,
                               "dedupe": args.get("dedupe", "false").lower() in ("1", "true", "yes")}
        for name, kind in (("max_per_artist", int), ("max_per_album", int), ("mmr", float), ("min_score", float)):
            raw = args.get(name)
            if raw is not None and raw != "":
                try:
                    out[name] = kind(raw)
                except ValueError:
                    raise ValueError(f"{name}={raw!r}: give a {'whole ' if kind is int else ''}number") from None
        unknown = set(args) - {"k", "where", "dedupe", "max_per_artist", "max_per_album", "mmr", "min_score"}
        if unknown:
            raise ValueError(f"unknown parameter {sorted(unknown)[0]!r}; see /api/v1 in the README")
        return out

    @server.route("/api/v1/similar/<int:track_id>")
    def api_similar(track_id: int) -> Response:
        """Tracks like ``track_id``: ``?k=&where=&max_per_artist=&max_per_album=&dedupe=&mmr=&min_score=``."""
        try:
            params = search_params()
        except ValueError as exc:
            return error(400, str(exc))
        try:
            store.track(track_id)
        except StoreError as exc:
            return error(404, str(exc))
        try:
            neighbours = store.similar(track_id, **params)
        except StoreError as exc:
            return error(400, str(exc))
        return jsonify({"track_id": track_id, "model": store.manifest.model.id,
                        "results": [{"track_id": n.track_id, "score": n.score, **n.track} for n in neighbours]})

    @server.errorhandler(404)
    def not_found(_exc: Exception) -> Response:
        return error(404, f"not found: {request.path}")

