"""The explorer's page: top bar, controls, the map, the side panels and the stores the callbacks share.

:func:`page` is called on every page load (the store's current map); the ids it gives the
controls are the ones :mod:`explorer.callbacks` declares its inputs and outputs on.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from dash import dcc, html

from store import MapInfo

from . import sqltab
from .figure import COLOR_FIELDS, NO_HIGHLIGHT, highlight_json, map_figure
from .limits import K_DEFAULT, K_PAGE_MAX, SEARCH_DEBOUNCE_S
from .mapdata import MapData
from .panels import PROMPT, LabelWords
from .upload import Uploads


def status_line(frame: pd.DataFrame, info: MapInfo | None, model_label: str) -> str:
    parts = [f"{len(frame)} tracks", f"vectors: {model_label}"]
    if info is None:
        parts.append("no map yet: run `musicmap map`")
    else:
        params = info.params
        impl = params.get("implementation")
        parts.append(f"map: {info.method}" + (f" ({impl})" if impl else ""))
        q = params.get("quality") or {}
        figures = [f"{label} {q[key]:.2f}" for key, label in (("trustworthiness", "trustworthiness"),
                                                               ("knn_preservation", "kNN preservation"),
                                                               ("category_agreement", "same-genre neighbours"))
                   if isinstance(q.get(key), (int, float))]
        if figures:
            parts.append("quality: " + ", ".join(figures))
    return " · ".join(parts)


def quality_panel(data: MapData) -> Any:
    """The map's measured quality and its hub tracks (those in the most similar-track lists)."""
    params = data.info.params if data.info else {}
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


def upload_box(uploads: Uploads | None) -> Any:
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


HIGHLIGHT_SOURCE: dict[str, Any] = {"id": "highlight", "hidden": True, "data-highlight": highlight_json(NO_HIGHLIGHT)}


def taste_bar(no_record: str | None) -> html.Div:
    """The person's taste on the page: "use my taste" (off: the lists are plain similarity), "For
    you" (the mix), "show my likes" (on the map), and, when nothing can be recorded, why."""
    return html.Div(className="taste-bar", id="taste-bar", children=[
        html.Span(dcc.Checklist(id="use-taste", options=[{"label": " use my taste", "value": "on"}], value=["on"],
                                inline=True),
                  title="steer every list by what you liked, disliked, played and skipped (off: plain similarity)"),
        html.Button("For you", id="mix-go", n_clicks=0, className="small-button",
                    title="a mix of tracks not heard lately, like what you liked and played"),
        html.Button("show my likes", id="taste-spots", n_clicks=0, className="small-button",
                    title="light the tracks you liked (green) and disliked (red) on the map"),
        html.Span(id="taste-note", className="what"),
        html.P(f"👍/👎 and plays are not recorded: {no_record}", id="taste-off", className="what")
        if no_record else html.Span(id="taste-off", hidden=True),
    ])


def page(data: MapData, model_label: str, uploads: Uploads | None = None,
            labels: LabelWords | None = None, no_record: str | None = None) -> html.Div:
    """The page, built from the store's current map (Dash calls it on every page load); ``no_record``:
    why listening events cannot be recorded (None: they can)."""
    frame, info = data.frame, data.info
    initial = map_figure(frame, "genre", data.traces("genre"), data.token)
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
            html.Span(id="status-line", children=status_line(frame, info, model_label)),
            quality_panel(data),
        ]),
        html.Div(className="controls", children=[
            html.Div(className="search-box", children=[
                dcc.Input(id="search", type="search", placeholder="search title, artist, album…",
                          debounce=SEARCH_DEBOUNCE_S, autoComplete="off", style={"width": "260px"}),
                dcc.RadioItems(id="search-by", value="name", inline=True, className="search-by",
                               options=[{"label": "title, artist", "value": "name"},
                                        {"label": "sound (\"calm piano, no drums\")", "value": "sound"}]),
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
                # filled by explorer/assets/hovercard.js: a track's cover, title and artist, fetched by id
                html.Div(id="hover-card", className="hover-card", role="tooltip", hidden=True),
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
                taste_bar(no_record),
                upload_box(uploads),
                html.Div(id="mix-panel", className="explain"),
                html.Div(id="selection-panel", className="selection"),
                html.Div(id="explain-panel", className="explain"),
                html.Div(id="path-panel", className="explain"),
                html.Div(id="panel"),  # an uploaded clip's panel (while it has one, #track-view is hidden)
                # the chosen track, drawn by explorer/assets/track.js (GET /api/v1/panel/<id>), or the prompt
                html.Div(id="track-view", **{"data-prompt": PROMPT}),  # type: ignore[arg-type]

            ]),
        ]),
        dcc.Store(id="selected"),
        dcc.Store(id="search-like"),  # a search by sound among a track's neighbours ("like this, but…")
        dcc.Store(id="centre-on"),
        dcc.Store(id="selection"),
        dcc.Store(id="explain-pair"),  # a list row's "why?": {"pair": "SEED-OTHER", "at": ms}
        dcc.Store(id="path-from"),  # the track a path starts from, until the path is drawn
        dcc.Store(id="path-request"),  # "draw the path": {"from": id, "to": id, "steps": n, "at": ms}
        dcc.Download(id="download"),
        # what explorer/assets/overlay.js draws over the map, as JSON in an attribute, from the server's
        # callbacks (a path, a clip, "×"): the overlay sees it change (a MutationObserver) as soon as it
        # is rendered; the track panel (track.js) sets the overlay itself and this after it
        html.Div(**HIGHLIGHT_SOURCE),
        html.Div(id="map-filter", hidden=True, **{"data-filter": "null"}),  # type: ignore[arg-type]
    ])
