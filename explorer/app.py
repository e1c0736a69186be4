"""The Dash explorer: ``create_app(store, embed=None)``, the app factory.

Reads the store only (it never imports ``indexer`` or torch); query by an uploaded clip gets its
``embed`` and ``place`` functions injected by the CLI (:mod:`explorer.upload`). The page shows
every track on the map (drawn by the page on a canvas: ``assets/pointmap.js``), coloured by a chosen
field, with hover details; clicking a track
opens its panel (metadata, top styles, an audio player streaming the file by track id, similar
tracks with scores and variety controls) and rings the track and its neighbours on the map while
the rest is dimmed. Search (as you type) centres a track; filters (genre, style, years) grey out
what does not match; the view state lives in the URL.

Where each part lives: the map's data in :mod:`explorer.mapdata`, the page in
:mod:`explorer.layout`, the callbacks in :mod:`explorer.callbacks`, the side panels in
:mod:`explorer.panels`, the figure and its patches in :mod:`explorer.figure`, the similar list's
controls in :mod:`explorer.controls`, the JSON API in :mod:`explorer.api`, OpenSubsonic in
:mod:`explorer.subsonic`.
"""

from __future__ import annotations

import dash

from store import Store

from . import api, auth
from .callbacks import Callbacks
from .layout import page
from .limits import BODY_LIMIT, MAX_UPLOAD_MB
from .mapdata import MapData
from .panels import label_words
from .upload import EmbedFn, PlaceFn, Uploads


def create_app(store: Store, embed: EmbedFn | None = None, *, place: PlaceFn | None = None,
               projection: str = "tsne", max_upload_bytes: int = MAX_UPLOAD_MB * 1_000_000,
               token: str | None = None, record: bool = True) -> dash.Dash:
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
    record : bool
        Record listening events (likes, dislikes, plays, skips: ``POST /api/v1/events``, the page's
        thumbs and player). False (``musicmap serve --no-record``) sets ``store.record_events`` off:
        the journal is read, still steers the lists, and the page says it cannot record.
    """
    if not record:
        store.record_events = False
    no_record = None if record else NO_RECORD
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
    callbacks = Callbacks(store, data, model.label, uploads, labels)
    served = api.register(app.server, store, projection=data.refresh, uploads=uploads, token=token or None,
                          panel=callbacks.track_view, no_record=no_record)
    callbacks.recording = served.recording  # the panel says whether a thumb can be recorded, and why not
    app.layout = lambda: page(data.refresh(), status_label, uploads, labels,  # each page load: the current map
                              no_record=served.recording()["why"])
    _cache_layout(app, data)
    callbacks.register(app)
    app.server.extensions["musicmap_callbacks"] = callbacks  # tests call them as plain functions
    return app


NO_RECORD = "this server was started with --no-record"
"""Why a server made with ``create_app(record=False)`` records no listening events."""


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


def _cache_layout(app: dash.Dash, data: MapData) -> None:
    """Serve the page's layout from memory, built and gzipped once per version of the map. When it
    carried every point (16.8 MB at 1M tracks), building and compressing it for every page load took
    1.3 s of a 1M first paint; the points now come as binary (``/api/v1/map/points``) and the layout
    is ~19 kB at 1M (``benchmarks/results/explorer-20261130-053527.json``), still built once per map
    version. A new map or new tracks (``MapData.version``) build it again.
    Runs after the token check and the body limits (registered after them)."""
    import gzip

    from flask import Response, request

    path = app.config.requests_pathname_prefix + "_dash-layout"
    cached: dict[str, tuple[int, bytes, bytes]] = {}

    @app.server.before_request
    def layout_from_memory() -> Response | None:
        if request.path != path or request.method != "GET":
            return None
        version = data.refresh().version
        entry = cached.get("layout")
        if entry is None or entry[0] != version:
            raw = app.serve_layout().get_data()
            entry = (version, raw, gzip.compress(raw, compresslevel=6, mtime=0))
            cached["layout"] = entry
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            response = Response(entry[2], mimetype="application/json")
            response.headers["Content-Encoding"] = "gzip"  # flask-compress leaves an encoded answer alone
        else:
            response = Response(entry[1], mimetype="application/json")
        response.headers["Vary"] = "Accept-Encoding"
        return response
