"""The explorer's callbacks: each a method of :class:`Callbacks`, declared once with its inputs and outputs.

``@callback(Output(...), ..., inputs={"name": Input(...)}, state={...})`` sits on the method it
declares: the keys of ``inputs``/``state`` are the method's parameter names (Dash calls it with
keywords), so renaming a control is one edit here and one in :mod:`explorer.layout`.
:meth:`Callbacks.register` hands every declared method (and the browser-side ones,
:func:`clientside`) to Dash. The methods are plain functions of the controls' values: the tests
call them without a browser.

Fetching happens here, drawing in :mod:`explorer.panels` (side panels) and :mod:`explorer.figure`
(the map: the big scatter is sent once per colour choice; a selection, path or clip is a small
:class:`explorer.figure.Highlight` the browser draws over it; filters patch it). The chosen track's
panel is not a callback's output: :meth:`Callbacks.track_view` answers ``GET /api/v1/panel/<id>``
and the page draws it (``explorer/assets/track.js``), so a click costs one plain request.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict, TypeVar

import dash
import numpy as np
import plotly.graph_objects as go
from dash import ALL, Input, Output, State, dcc, html
from dash.development.base_component import Component

from store import Neighbour, Store, StoreError
from store.listening import MAX_PATH

from . import panels, sqltab
from .controls import ListControls
from .figure import (
    COLOR_FIELDS,
    NO_HIGHLIGHT,
    Traces,
    centred_ranges,
    clip_points,
    filter_mask,
    highlight_json,
    highlight_points,
    map_figure,
    path_points,
    shown_json,
    spot_points,
    taste_points,
)
from .limits import EXTEND_N, K_DEFAULT, MIX_N, PATH_STEPS, SEARCH_RESULTS, SOUND_LIGHT, SOUND_LIST
from .mapdata import MapData
from .panels import LabelWords, Recording, Thumbs
from .state import ViewState, encode, parse
from .upload import UploadError, Uploads, data_url_bytes

Method = TypeVar("Method", bound=Callable[..., Any])
Children = Component | list[Component]
"""What a callback puts into a panel: one component or a list of them."""


SQLPanel = tuple[list[dict[str, str]], list[dict[str, object]], str, str, list[int] | None]
"""The SQL panel's grid columns, grid rows, error, status line and result track ids."""


class Clip(TypedDict, total=False):
    """What the browser-side upload gate passes on: the file as a data URL, and its name."""

    contents: str
    filename: str


@dataclass(frozen=True)
class Declared:
    """One callback: the method's name (or the browser-side code) and what Dash wires to it."""

    name: str
    outputs: tuple[Output, ...]
    inputs: dict[str, Input] = field(default_factory=dict)
    state: dict[str, State] = field(default_factory=dict)
    prevent_initial_call: bool | str = True
    needs_uploads: bool = False
    javascript: str | None = None
    positional: tuple[Input | State, ...] = ()


DECLARED: list[Declared] = []
"""Every callback of the page, in declaration order."""


def callback(*outputs: Output, inputs: dict[str, Input], state: dict[str, State] | None = None,
             prevent_initial_call: bool | str = True, needs_uploads: bool = False) -> Callable[[Method], Method]:
    """Declare the decorated method a Dash callback (see the module docstring)."""
    def declare(method: Method) -> Method:
        DECLARED.append(Declared(method.__name__, outputs, inputs, state or {}, prevent_initial_call, needs_uploads))
        return method
    return declare


def clientside(javascript: str, *dependencies: Output | Input | State, prevent_initial_call: bool = True,
               needs_uploads: bool = False) -> None:
    """Declare a callback that runs in the browser (no server round trip)."""
    outputs = tuple(d for d in dependencies if isinstance(d, Output))
    rest = tuple(d for d in dependencies if not isinstance(d, Output))
    DECLARED.append(Declared("(browser)", outputs, prevent_initial_call=prevent_initial_call,
                             needs_uploads=needs_uploads, javascript=javascript, positional=rest))


#: The view controls, as the URL keeps them (see :mod:`explorer.state`).
VIEW = {"color": "color-by", "genres": "genre-filter", "styles": "style-filter", "years": "year-filter",
        "k": "k", "per_artist": "per-artist", "per_album": "per-album", "dedupe": "dedupe", "where": "where"}


def _view(kind: type[Input] | type[State]) -> dict[str, Any]:
    return {name: kind(control, "value") for name, control in VIEW.items()}


def _clicked(kind: str) -> Input:
    """The clicks of every button of a pattern-matched ``kind`` (the panels make them)."""
    return Input({"type": kind, "index": ALL}, "n_clicks")


def _under_each(clicks: list[int | None], draw: Callable[[], Children]) -> list[Children]:
    """``draw()`` once, for the list under each of the pattern-matched buttons whose ``clicks`` these
    are; PreventUpdate when none was clicked (the buttons were just drawn)."""
    if not any(clicks):
        raise dash.exceptions.PreventUpdate
    return [draw()] * len(clicks)


def _triggered_index() -> str:
    """The ``index`` of the pattern-matched button that was clicked; PreventUpdate when the call
    came from a list being re-rendered (n_clicks 0), not from a click."""
    trigger = dash.ctx.triggered_id
    if not isinstance(trigger, dict) or not dash.ctx.triggered[0]["value"]:
        raise dash.exceptions.PreventUpdate
    return str(trigger["index"])



# The chosen track in the URL (``?track=``), set in the browser: on every click a server round trip
# for it competed with the track panel's. The rest of the view is encoded by ``url_for``.
clientside(
    """function(track, search) {
        const params = new URLSearchParams(search || "");
        if (track === null || track === undefined) { params.delete("track"); }
        else { params.set("track", String(track)); }
        const out = params.toString();
        return out ? "?" + out : "";
    }""",
    Output("url-out", "search", allow_duplicate=True), Input("selected", "data"), State("url-out", "search"))

# The track panel is drawn by the page (explorer/assets/track.js) from GET /api/v1/panel/<id>: asked
# for here whenever the chosen track or a variety control changes. A click on the map or on a list
# asks at once, before Dash runs this, so the same request is not sent twice; no server callback.
clientside(
    """function(track, k, perArtist, perAlbum, dedupe, where, pathFrom, useTaste) {
        const context = window.dash_clientside.callback_context || {};
        const chosen = (context.triggered || []).some(t => t.prop_id === "selected.data");
        if (window.musicmapTrack) {
            window.musicmapTrack.request({track: track, k: k, per_artist: perArtist, per_album: perAlbum,
                                          dedupe: !!(dedupe && dedupe.length), where: where || "",
                                          path_from: pathFrom, taste: !!(useTaste && useTaste.length)}, chosen);
        }
        return window.dash_clientside.no_update;
    }""",
    Output("track-view", "data-request"), Input("selected", "data"), Input("k", "value"),
    Input("per-artist", "value"), Input("per-album", "value"), Input("dedupe", "value"), Input("where", "value"),
    Input("path-from", "data"), Input("use-taste", "value"), prevent_initial_call=False)

# A file over the upload limit is refused at once in the browser, never sent.
clientside(
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
    State("upload", "filename"), State("upload-limit", "data"), needs_uploads=True)


class Callbacks:
    """The explorer's callbacks over one store and its map (see the module docstring)."""

    def __init__(self, store: Store, data: MapData, model_label: str, uploads: Uploads | None = None,
                 labels: LabelWords | None = None) -> None:
        self.store, self.data, self.model_label, self.uploads = store, data, model_label, uploads
        self.labels = labels or LabelWords("styles", "Predicted styles")
        self._roots_read: tuple[float, list[str]] = (-1e9, [])
        self.recording: Callable[[], Recording] = lambda: Recording(on=store.journal.why_not is None,
                                                                     why=store.journal.why_not)
        """Whether the page's thumbs and player can record, and why not (``create_app`` sets the API's)."""

    def register(self, app: dash.Dash) -> None:
        """Hand every declared callback to ``app`` (those that need uploads only when they are on)."""
        for d in DECLARED:
            if d.needs_uploads and self.uploads is None:
                continue
            if d.javascript is not None:
                app.clientside_callback(d.javascript, *d.outputs, *d.positional,
                                        prevent_initial_call=d.prevent_initial_call)
                continue
            method = getattr(self, d.name)

            @functools.wraps(method)
            def run(*args: Any, _method: Callable[..., Any] = method, **kwargs: Any) -> Any:
                return _method(*args, **kwargs)

            wiring: dict[str, Any] = {"state": d.state} if d.state else {}
            app.callback(output=list(d.outputs) if len(d.outputs) > 1 else d.outputs[0], inputs=d.inputs,
                         prevent_initial_call=d.prevent_initial_call, **wiring)(run)

    def _traces(self, data: MapData, color_by: str | None) -> Traces:
        return data.traces(color_by if color_by in COLOR_FIELDS else "genre")

    # -- the URL --------------------------------------------------------------------------------
    @callback(Output("selected", "data", allow_duplicate=True), *[Output(c, "value") for c in VIEW.values()],
              Output("centre-on", "data", allow_duplicate=True),
              inputs={"search": Input("url", "search")}, state={"selected": State("selected", "data"), **_view(State)},
              prevent_initial_call="initial_duplicate")
    def from_url(self, search: str | None, selected: int | None, color: str,
                 genres: list[str] | None, styles: list[str] | None, years: list[int] | None, k: int | None,
                 per_artist: int | None, per_album: int | None, dedupe: list[str] | None,
                 where: str | None) -> tuple[object, ...]:
        """The controls set from the URL on a page load or back/forward (only what differs)."""
        current = parse(self.url_for(selected, color, genres, styles, years, k, per_artist, per_album,
                                     dedupe, where), COLOR_FIELDS)
        values = self.state_from_url(search, current)
        centre = values[0] if values[0] is not dash.no_update and values[0] is not None else dash.no_update
        return (*values, centre)

    def state_from_url(self, search: str | None, current: ViewState) -> tuple[object, ...]:
        """Control values from the URL (``dash.no_update`` for what already matches, so a page load
        with the default view sends nothing)."""
        state = parse(search, COLOR_FIELDS)
        data = self.data.refresh()
        full = data.year_range()
        years = list(state.years) if state.years and full else ([*full] if full else [0, 1])
        # A genre as the URL spells it → its group's filter option ("game soundtrack" → "Game Soundtrack").
        genres = list(dict.fromkeys(data.genre_name(g) for g in state.genres))
        wanted: tuple[Any, ...] = (state.track, state.color, genres, state.styles, years, state.k,
                                   state.per_artist, state.per_album, ["dedupe"] if state.dedupe else [],
                                   state.where)
        have: tuple[Any, ...] = (current.track, current.color,
                                 list(dict.fromkeys(data.genre_name(g) for g in current.genres)), current.styles,
                                 list(current.years) if current.years else ([*full] if full else [0, 1]), current.k,
                                 current.per_artist, current.per_album, ["dedupe"] if current.dedupe else [],
                                 current.where)
        if wanted == have:
            raise dash.exceptions.PreventUpdate
        return tuple(w if w != h else dash.no_update for w, h in zip(wanted, have, strict=True))

    @callback(Output("url-out", "search"), inputs=_view(Input), state={"selected": State("selected", "data")})
    def url_for(self, selected: int | None, color: str, genres: list[str] | None, styles: list[str] | None,
                years: list[int] | None, k: int | None, per_artist: int | None, per_album: int | None,
                dedupe: list[str] | None, where: str | None) -> str:
        """The URL's query string for the current view (a new track alone changes it in the browser:
        the :func:`clientside` callback above, no server round trip on every click)."""
        controls = ListControls.from_controls(k, per_artist, per_album, dedupe, where)
        state = ViewState(track=selected, color=color or "genre", genres=list(genres or []),
                          styles=list(styles or []), years=self._years(years), k=controls.k,
                          per_artist=controls.max_per_artist, per_album=controls.max_per_album,
                          dedupe=controls.dedupe, where=controls.where or "")
        return encode(state)

    def _years(self, value: Sequence[int] | None) -> tuple[int, int] | None:
        """The year slider's range, or None when it covers every year of the map."""
        full = self.data.year_range()
        if not value or full is None or (value[0] <= full[0] and value[1] >= full[1]):
            return None
        return int(value[0]), int(value[1])

    # -- the figure ---------------------------------------------------------------------------
    @callback(Output("map", "figure"), inputs={"color_by": Input("color-by", "value")})
    def figure(self, color_by: str) -> go.Figure:
        """The whole map for a colour choice (filters, a selection and the highlight are drawn over
        it by the browser, again after it is redrawn)."""
        if color_by not in COLOR_FIELDS:
            raise dash.exceptions.PreventUpdate
        with self.store.holding():
            data = self.data.refresh()
        return map_figure(data.frame, color_by, data.traces(color_by), data.token)

    @callback(Output("map-filter", "data-filter"), Output("filter-note", "children"),
              inputs={"genres": Input("genre-filter", "value"), "styles": Input("style-filter", "value"),
                      "years": Input("year-filter", "value"), "selection": Input("selection", "data")})
    def filters(self, genres: list[str] | None, styles: list[str] | None,
                years: Sequence[int] | None, selection: list[int] | None = None) -> tuple[str, str]:
        """Which tracks stand out on the map (those matching the filters, within the selection when
        there is one; the rest is greyed by the point renderer: :func:`explorer.figure.shown_json`),
        and a line saying how many match the filters."""
        data = self.data.refresh()
        mask = filter_mask(data.frame, genres=genres, styles=styles, years=self._years(years))
        shown = mask
        if selection:
            chosen = data.frame["id"].isin([int(i) for i in selection]).to_numpy(bool)
            shown = chosen if mask is None else mask & chosen
        note = "" if mask is None else f"{int(mask.sum())} of {len(mask)} tracks match the filters"
        return shown_json(shown), note

    @callback(Output("map", "figure", allow_duplicate=True), inputs={"track_id": Input("centre-on", "data")})
    def centre(self, track_id: int | None) -> dash.Patch:
        """Pan the map to a track (a search hit, a hub, a permalink)."""
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

    # -- choosing a track -----------------------------------------------------------------------
    @callback(Output("selected", "data"), Output("centre-on", "data"),
              Output("panel", "children", allow_duplicate=True),
              Output("highlight", "data-highlight", allow_duplicate=True),
              inputs={"hits": _clicked("hit"), "hubs": _clicked("hub"), "clear": Input("clear", "n_clicks")})
    def select(self, hits: list[int | None], hubs: list[int | None], clear: int | None) -> tuple[Any, ...]:
        """The chosen track (a search hit, a hub), and where to centre the map (hits and hubs may be
        off screen); × clears the chosen track, a clip's panel and the map's highlight. A map click
        and a row of a track list set ``selected`` in the browser, once their panel is drawn
        (``explorer/assets/track.js``)."""
        trigger = dash.ctx.triggered_id
        if trigger == "clear":
            return None, dash.no_update, None, highlight_json(NO_HIGHLIGHT)
        if not isinstance(trigger, dict):
            raise dash.exceptions.PreventUpdate
        track = int(_triggered_index())
        return track, track, dash.no_update, dash.no_update

    def track_view(self, track_id: int, controls: ListControls, path_from: int | None = None) -> panels.TrackView:
        """The track panel and the map's highlight (rings, lines, dimming) for ``track_id``, its similar
        list made with ``controls``, as the page draws them (``GET /api/v1/panel/<id>``,
        ``explorer/assets/track.js``); with ``path_from`` (a track chosen as a path's start), the
        panel offers the path to this one. An unknown track raises :class:`store.TrackNotFound`."""
        with self.store.holding():  # one connection for the whole panel
            data = self.data.refresh()
            track = self.store.track(int(track_id))
            neighbours, problem = self._similar(int(track_id), None, controls)
            start = None
            if path_from is not None and int(path_from) != int(track_id):
                with contextlib.suppress(StoreError):  # a start since deleted: no offer
                    start = self.store.track(int(path_from))
            styles = self.store.styles(int(track_id))
            thumbs, steer = self.thumbs(), self.store.steer() if controls.taste else None
        highlight = highlight_points(data.frame, int(track_id), [n.track_id for n in neighbours], data.row_of)
        return panels.track_view(track, neighbours, styles, self.model_label, highlight, problem,
                                 heading=self.labels.heading, roots=self._roots(), start=start, path_from=path_from,
                                 thumbs=thumbs, taste=None if steer is None else steer.taste.summary(),
                                 recording=self.recording())

    def thumbs(self) -> Thumbs:
        """The person's thumbs now (``liked``/``disliked`` by track id): the rows draw theirs pressed."""
        steer = self.store.steer()  # kept until the journal changes; None: nothing liked or disliked
        if steer is None:
            return {}
        return {i: "liked" if t.liked else "disliked" for i, t in steer.taste.tracks.items() if t.liked or t.disliked}

    def _roots(self) -> list[str]:
        """The library folders (file paths are shown relative to them), read once a minute."""
        now = time.monotonic()
        if now - self._roots_read[0] > 60:
            with contextlib.suppress(StoreError):  # busy: the last roots, or the file names
                self._roots_read = (now, self.store.library_roots())
        return self._roots_read[1]

    def _similar(self, track_id: int | None, vector: np.ndarray | None,
                 controls: ListControls) -> tuple[list[Neighbour], str | None]:
        """(neighbours, why the variety controls were not applied): a bad filter expression is said
        in the panel, above the plain list, rather than leaving the panel empty."""
        seeds = [] if track_id is None else [track_id]
        try:
            return self.store.search(seeds, vector=vector, k=controls.k, **controls.variety()), None
        except StoreError as exc:
            return self.store.search(seeds, vector=vector, k=controls.k, taste=controls.taste), str(exc)

    # -- query by an uploaded clip --------------------------------------------------------------
    @callback(Output("panel", "children"),
              Output("highlight", "data-highlight", allow_duplicate=True),
              Output("upload-error", "children", allow_duplicate=True), Output("upload", "contents"),
              Output("selected", "data", allow_duplicate=True),
              inputs={"go_data": Input("upload-go", "data")},
              state={"k": State("k", "value"),
                     "per_artist": State("per-artist", "value"), "per_album": State("per-album", "value"),
                     "dedupe": State("dedupe", "value"), "where": State("where", "value")},
              needs_uploads=True)
    def upload_go(self, go_data: Clip | None, k: int | None, per_artist: int | None, per_album: int | None,
                  dedupe: list[str] | None,
                  where: str | None) -> tuple[Children | dash.NoUpdate, str | dash.NoUpdate, str, None,
                                              dash.NoUpdate | None]:
        """A clip the browser let through (:func:`clientside` gate); the upload box is cleared so
        the same file can come again; its panel takes the chosen track's place (no track chosen)."""
        if not go_data:
            raise dash.exceptions.PreventUpdate
        panel, highlight, problem = self.upload(go_data.get("contents"), go_data.get("filename"),
                                                ListControls.from_controls(k, per_artist, per_album, dedupe, where))
        return panel, highlight, problem, None, None if panel is not dash.no_update else dash.no_update

    def upload(self, contents: str | None, filename: str | None,
               controls: ListControls) -> tuple[Children | dash.NoUpdate, str | dash.NoUpdate, str]:
        """(panel, map highlight, error line) for a clip dropped on the page: its neighbours (made
        with ``controls``) in the panel, a star where it lands on the map with lines to them."""
        if self.uploads is None or not contents:
            raise dash.exceptions.PreventUpdate
        name = str(filename or "clip")[:200]
        try:
            vector = self.uploads.vector(data_url_bytes(contents), name)
        except UploadError as exc:
            return dash.no_update, dash.no_update, f"{name}: {exc}"
        data = self.data.refresh()
        position = self.uploads.position(self.data.projection, vector) if data.info is not None else None
        with self.store.holding():
            neighbours, problem = self._similar(None, vector, controls)
        highlight = NO_HIGHLIGHT if position is None else \
            clip_points(data.frame, position, [n.track_id for n in neighbours], data.row_of)
        where_note = (f"on the map at the star ({position[0]:.1f}, {position[1]:.1f})" if position is not None
                      else "not placed: this map cannot place new tracks (fit it with openTSNE or PCA)")
        panel = panels.upload_panel(name, self.model_label, where_note, neighbours, problem)
        return panel, highlight_json(highlight), ""

    # -- SQL ------------------------------------------------------------------------------------
    @callback(Output("sql-grid", "columns"), Output("sql-grid", "data"), Output("sql-error", "children"),
              Output("sql-status", "children"), Output("sql-ids", "data"),
              inputs={"clicks": Input("sql-run", "n_clicks")},
              state={"query": State("sql-text", "value"), "selected": State("selected", "data")})
    def run_sql(self, query: str | None, selected: int | None, clicks: int | None = None) -> SQLPanel:
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

    @callback(Output("sql-text", "value"),
              inputs={"example": Input("sql-examples", "value"), "saved_name": Input("sql-saved-list", "value")},
              state={"saved": State("sql-saved", "data")})
    def pick_query(self, example: int | None, saved_name: str | None, saved: dict[str, str] | None) -> str:
        """An example query, or a saved one, into the editor."""
        if dash.ctx.triggered_id == "sql-examples" and example is not None:
            return sqltab.EXAMPLES[int(example)][1]
        if dash.ctx.triggered_id == "sql-saved-list" and saved_name and saved and saved_name in saved:
            return saved[saved_name]
        raise dash.exceptions.PreventUpdate

    @callback(Output("sql-saved", "data"), inputs={"clicks": Input("sql-save", "n_clicks")},
              state={"name": State("sql-name", "value"), "query": State("sql-text", "value"),
                     "saved": State("sql-saved", "data")})
    def save_query(self, clicks: int | None, name: str | None, query: str | None,
                   saved: dict[str, str] | None) -> dict[str, str]:
        """Keep the editor's query under a name (in the browser's storage)."""
        if not name or not name.strip() or not query or not query.strip():
            raise dash.exceptions.PreventUpdate
        return {**(saved or {}), name.strip()[:80]: query}

    @callback(Output("sql-saved-list", "options"), inputs={"saved": Input("sql-saved", "data")},
              prevent_initial_call=False)
    def saved_list(self, saved: dict[str, str] | None) -> list[str]:
        return sorted(saved or {})

    @callback(Output("selection", "data", allow_duplicate=True), inputs={"clicks": Input("sql-show", "n_clicks")},
              state={"ids": State("sql-ids", "data")})
    def sql_to_selection(self, clicks: int | None, ids: list[int] | None) -> list[int]:
        """“show on map”: the tracks of the last result become the selection."""
        if not ids:
            raise dash.exceptions.PreventUpdate
        return ids

    # -- selections -----------------------------------------------------------------------------
    @callback(Output("selection", "data"), inputs={"clear": _clicked("selection-clear")})
    def selection(self, clear: list[int | None]) -> None:
        """“clear” empties the selection. (A lasso or box on the map sets it in the browser, from
        the points inside: ``explorer/assets/pointmap.js``; so does “select these” under a list:
        :func:`explorer.panels.action`.)"""
        _triggered_index()  # a click, not a re-render
        return None

    @callback(Output("selection-panel", "children"), inputs={"ids": Input("selection", "data")},
              prevent_initial_call=False)
    def selection_panel(self, ids: list[int] | None) -> Children:
        """Count, genre breakdown, a player that plays the selection in order, exports."""
        if not ids:
            return html.P("Lasso or box-select tracks on the map (or “select these” under a similar list) "
                          "to make a playlist.", className="what")
        rows = self.data.refresh().frame.set_index("id").reindex(ids).dropna(subset=["x"])
        return panels.selection_panel(rows)

    @callback(Output({"type": "selection-similar-list", "index": ALL}, "children"),
              inputs={"clicks": _clicked("selection-similar")},
              state={"ids": State("selection", "data"), "use_taste": State("use-taste", "value")})
    def selection_similar(self, clicks: list[int | None], ids: list[int] | None,
                          use_taste: list[str] | None = None) -> list[Children]:
        return _under_each(clicks, lambda: self.similar_to_selection(ids, taste=use_taste != []))

    def similar_to_selection(self, ids: list[int] | None, k: int = K_DEFAULT, taste: bool = True) -> Children:
        """Tracks like the selection as a whole (the centroid of its vectors), none of its own."""
        if not ids:
            return html.P("nothing selected", className="what")
        with self.store.holding():
            neighbours = self.store.search([int(i) for i in ids], k=k, taste=taste)
            thumbs = self.thumbs()
        return [html.H4(f"Like these {len(ids)} tracks ({self.model_label})"),
                panels.similar_list(neighbours, "centroid-list", thumbs=thumbs)]

    @callback(Output({"type": "selection-extend-list", "index": ALL}, "children"),
              inputs={"clicks": _clicked("selection-extend")},
              state={"ids": State("selection", "data"), "use_taste": State("use-taste", "value")})
    def selection_extend(self, clicks: list[int | None], ids: list[int] | None,
                         use_taste: list[str] | None = None) -> list[Children]:
        return _under_each(clicks, lambda: self.extend_selection(ids, taste=use_taste != []))

    def extend_selection(self, ids: list[int] | None, n: int = EXTEND_N, taste: bool = True) -> Children:
        """Tracks that fit the selection as a playlist (its centroid), never one of its own."""
        if not ids:
            return html.P("nothing selected", className="what")
        members = [int(i) for i in ids]
        with self.store.holding():
            added = self.store.extend(members, n=n, taste=taste)
            thumbs = self.thumbs()
        return panels.extension(members, added, self.model_label, n, thumbs)

    @callback(Output("download", "data"), inputs={"clicks": _clicked("export")},
              state={"ids": State("selection", "data")})
    def download(self, clicks: list[int | None], ids: list[int] | None) -> dict[str, Any]:
        return self.export(_triggered_index(), ids)

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

    # -- why, and paths -------------------------------------------------------------------------
    @callback(Output("explain-panel", "children"), inputs={"request": Input("explain-pair", "data")})
    def explain_clicked(self, request: dict[str, Any] | None) -> Children:
        """A list row's "why?" (``explorer/assets/lists.js`` sets ``{"pair": "SEED-OTHER", "at": ms}``)."""
        try:
            seed, other = (int(x) for x in str((request or {}).get("pair", "")).split("-"))
        except ValueError:
            raise dash.exceptions.PreventUpdate from None
        return self.explain(seed, other)

    def explain(self, seed: int, other: int) -> Children:
        """Why ``other`` is like ``seed`` (:func:`explorer.panels.explain`)."""
        with self.store.holding():
            try:
                a, b = self.store.track(seed), self.store.track(other)
            except StoreError as exc:
                return html.P(str(exc), className="error")
            found = self.store.sql(f"SELECT similarity({int(other)}, {int(seed)})").rows
            score = float(found[0][0]) if found and found[0][0] is not None else float("nan")
            comparison = panels.Comparison(a, b, score, dict(self.store.styles(seed, 8)),
                                           dict(self.store.styles(other, 8)), *self.store.windows(seed),
                                           *self.store.windows(other))
        return panels.explain(comparison, self.model_label, self.labels)

    @callback(Output("path-panel", "children"), Output("highlight", "data-highlight", allow_duplicate=True),
              inputs={"request": Input("path-request", "data")}, state={"use_taste": State("use-taste", "value")})
    def draw_path(self, request: dict[str, Any] | None,
                  use_taste: list[str] | None = None) -> tuple[Children, str | dash.NoUpdate]:
        """The track panel's "draw the path" (``explorer/assets/track.js`` sets
        ``{"from": id, "to": id, "steps": n, "at": ms}``)."""
        try:
            start, end = int((request or {})["from"]), int((request or {})["to"])
            steps = (request or {}).get("steps")
            steps = int(steps) if steps not in (None, "") else None
        except (KeyError, TypeError, ValueError):
            raise dash.exceptions.PreventUpdate from None
        return self.path(start, end, steps, taste=use_taste != [])

    def path(self, start: int, end: int, steps: int | None,
             taste: bool = True) -> tuple[Children, str | dash.NoUpdate]:
        """(the path panel, the map's highlight of it) for a song path from ``start`` to ``end``."""
        steps = int(steps) if steps and 2 <= int(steps) <= MAX_PATH else PATH_STEPS
        data = self.data.refresh()
        with self.store.holding():
            try:
                path = self.store.song_path(int(start), int(end), length=steps, taste=taste)
            except StoreError as exc:
                return html.P(str(exc), className="error", id="path-error"), dash.no_update
            thumbs = self.thumbs()
        drawn = path_points(data.frame, [s.track_id for s in path], data.row_of)
        return panels.song_path(path, start, end, steps, thumbs), highlight_json(drawn)

    # -- search ---------------------------------------------------------------------------------
    @callback(Output("search-results", "children"), Output("highlight", "data-highlight", allow_duplicate=True),
              inputs={"text": Input("search", "value"), "by": Input("search-by", "value"),
                      "like": Input("search-like", "data")}, state={"use_taste": State("use-taste", "value")})
    def search(self, text: str | None, by: str | None, like: int | None,
               use_taste: list[str] | None = None) -> tuple[list[Component], str | dash.NoUpdate]:
        """Search as you type. By title/artist: tracks on the map, each a button that centres the
        map on it. By sound (:meth:`store.Store.find`; with ``like``, among that track's neighbours):
        how the words were read, the matches lit on the map and listed (a list that opens, selects
        and exports like the others), or why there are none."""
        if by != "sound":
            if not text or not text.strip():
                return [], dash.no_update
            return panels.search_hits(self.data.refresh().search(text, SEARCH_RESULTS)), dash.no_update
        if not text or not text.strip():
            return [html.P("describe a sound: calm piano without drums, upbeat female vocal, orchestral, no choir",
                           className="what", id="sound-prompt")], highlight_json(NO_HIGHLIGHT)
        data = self.data.refresh()
        with self.store.holding():
            try:
                like_row = self.store.track(int(like)) if like is not None else None
                # among a track's neighbours the list is the answer; otherwise more are lit than listed
                # a tenth of a small library at most: lit, the matches stand out from the rest
                light = min(SOUND_LIGHT, max(SOUND_LIST, len(data.frame) // 10))
                found = self.store.find(text, k=SOUND_LIST if like_row else light,
                                        like=like_row["id"] if like_row else None, taste=use_taste != [])
                thumbs = self.thumbs()
            except StoreError as exc:
                return [html.P(str(exc), className="error", id="sound-reason")], highlight_json(NO_HIGHLIGHT)
        lit = spot_points(data.frame, [r.track_id for r in found.results], data.row_of)
        found.results = found.results[:SOUND_LIST]
        return panels.sound_results(found, like_row, text, thumbs), highlight_json(lit)

    # -- taste: "For you" and the thumbs on the map ----------------------------------------------
    @callback(Output("mix-panel", "children"), inputs={"clicks": Input("mix-go", "n_clicks")})
    def for_you(self, clicks: int | None) -> Children:
        """The "For you" button: the mix (:meth:`store.Store.mix`), as :func:`explorer.panels.mix_panel` draws it."""
        if not clicks:
            raise dash.exceptions.PreventUpdate
        return self.mix()

    def mix(self, n: int = MIX_N) -> Children:
        """``n`` tracks from what the person liked and played in the last 30 days, or why there are none."""
        with self.store.holding():
            steer = self.store.steer()
            try:
                items, reason = self.store.mix(n=n), None
            except StoreError as exc:
                items, reason = [], str(exc)
            thumbs = self.thumbs()
        return panels.mix_panel(items, reason, None if steer is None else steer.taste.summary(), thumbs)

    @callback(Output("highlight", "data-highlight", allow_duplicate=True), Output("taste-note", "children"),
              inputs={"clicks": Input("taste-spots", "n_clicks")})
    def taste_spots(self, clicks: int | None) -> tuple[str, str]:
        """"show my likes": the liked tracks lit green on the map, the disliked red (``spots``)."""
        if not clicks:
            raise dash.exceptions.PreventUpdate
        thumbs = self.thumbs()
        liked = [i for i, t in thumbs.items() if t == "liked"]
        disliked = [i for i, t in thumbs.items() if t == "disliked"]
        data = self.data.refresh()
        lit = taste_points(data.frame, liked, disliked, data.row_of)
        note = f"{len(liked)} liked (green), {len(disliked)} disliked (red) on the map" if thumbs else \
            "nothing liked or disliked yet: 👍/👎 on a track or a list row"
        return highlight_json(lit), note

