"""The explorer's JSON API, ``/api/v1`` on the same server, and audio by track id.

Every error is JSON ``{"error": message, "status": code}`` with the right status: a bad parameter
is 400 (naming it), an unknown track 404; never a 500 for something the client sent. Every route's
parameters are declared once, in :data:`ENDPOINTS` (:mod:`explorer.params`): the same table parses
and checks the query string and writes the OpenAPI document at ``/api/v1/openapi.json`` (a test
checks it lists every route; another fuzzes every operation from it).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import math
import mimetypes
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from flask import Flask, Response, jsonify, request, send_file
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

from store import Event, InvalidQuery, NothingToMix, NotRecording, Store, StoreError, TooManyEvents, TrackNotFound
from store.journal import KINDS, MAX_BATCH
from store.listening import MAX_EXTEND, MAX_PATH

from . import art, subsonic
from .controls import ListControls
from .figure import COLOR_FIELDS
from .limits import (
    K_API_MAX,
    K_DEFAULT,
    K_PAGE_MAX,
    MIX_MAX,
    MIX_N,
    PAGE_MAX,
    SEARCH_MAX,
    SQL_MAX_ROWS,
    SQL_TIMEOUT,
)
from .mapdata import MapData, release_unused_memory
from .panels import Recording
from .params import ERROR, BadRequest, Endpoint, Param, document, ok, read_all
from .upload import UploadError, Uploads

logger = logging.getLogger(__name__)

API = "/api/v1"
TOKEN = frozenset({"token"})
"""Query parameters every route accepts: the access token (:mod:`explorer.auth`)."""
Args = dict[str, Any]
Handler = Callable[..., Response]
PanelFn = Callable[[int, ListControls, int | None], Any]
"""``panel(track_id, controls, path_from)``: the explorer's track panel as data
(:meth:`explorer.callbacks.Callbacks.track_view`)."""

UPLOAD_PATH = f"{API}/similar/upload"
MAP_FIELDS = ("title", "artist", "album", "genre", "year", "style", "cluster")
"""What ``/api/v1/map?fields=`` may add to the coordinates (never paths: no file paths in bulk)."""

# --- the parameter table: parsing and the OpenAPI document come from it ---------------------------

TRACK_ID = Param("track_id", "a track id", "integer", location="path")
WHERE = Param("where", "SQL boolean expression over tracks' columns, e.g. genre = 'Jazz' AND year >= 1970")
TASTE = Param("taste", "steer the list by the person's taste (likes, dislikes, plays, skips: POST /api/v1/events); "
                       "false: plain similarity", "boolean", default=True)
SIMILAR = (
    Param("k", "how many", "integer", minimum=1, maximum=K_API_MAX, default=K_DEFAULT),
    WHERE,
    Param("max_per_artist", "at most this many results per artist", "integer", minimum=1),
    Param("max_per_album", "at most this many results per album", "integer", minimum=1),
    Param("dedupe", "drop other copies of the same song (same artist and title)", "boolean"),
    Param("mmr", "maximal marginal relevance λ in (0, 1]: 1 = pure similarity, 0.5 = balanced", "number"),
    Param("min_score", "drop results below this cosine similarity", "number"),
    TASTE,
)
"""The options of a similarity search (:class:`store.search.SearchOptions`), as query parameters."""
VARIETY = (
    Param("where", "SQL boolean expression over tracks' columns"),
    Param("max_per_artist", "at most this many per artist, counted over the whole list", "integer", minimum=1),
    Param("max_per_album", "at most this many per album", "integer", minimum=1),
    Param("dedupe", "one version of each song", "boolean"),
    TASTE,
    Param("format", "json (default) or m3u (an M3U8 playlist)", choices=("json", "m3u")),
)
"""The variety rules of paths and playlists (:class:`store.search.VarietyOptions`), and the answer's format."""
IDS_HINT = f"give 1 to {PAGE_MAX} track ids separated by commas, e.g. ids=12,40,7"
EVENT_FIELDS = ("kind", "track_id", "at", "seconds", "duration", "source", "context", "key", "undo")
EVENT_SCHEMA: dict[str, Any] = {"type": "object", "required": ["kind", "track_id"], "properties": {
    "kind": {"type": "string", "enum": list(KINDS)},
    "track_id": {"type": "integer", "minimum": 0},
    "at": {"type": "number", "description": "Unix seconds (default: now); at most 5 minutes ahead"},
    "seconds": {"type": "number", "description": "played: the time heard; skipped: the second skipped at"},
    "duration": {"type": "number", "description": "the track's length, when known"},
    "source": {"type": "string", "description": "who records it (default api): explorer, cli, a player's name"},
    "context": {"type": "object", "description": "the list it came from, e.g. {\"list\": \"similar\", \"of\": 12}"},
    "key": {"type": "string", "description": "an idempotency key: an event sent again with it is a duplicate"},
    "undo": {"type": "boolean", "description": "take back: a like/dislike all of the track's, a play/skip the "
                                               "latest"}}}
"""One listening event as ``POST /api/v1/events`` takes it (:class:`store.Event`)."""
TASTE_ROWS = Param("limit", "liked and disliked tracks listed, each", "integer", minimum=0, maximum=PAGE_MAX,
                   default=20)

ENDPOINTS: dict[str, Endpoint] = {e.key: e for e in (
    Endpoint(f"{API}/tracks", "Tracks, paged and filtered, by id", (
        Param("offset", "first row", "integer", minimum=0, maximum=10**12, default=0),
        Param("limit", "rows per page", "integer", minimum=0, maximum=PAGE_MAX, default=100),
        Param("where", "SQL boolean expression over tracks' columns (read-only sandbox)"),
        Param("genre", "a genre and its other spellings (differing only in case, spaces or punctuation)"),
        Param("artist", "exact artist"), Param("album", "exact album"),
        Param("year_min", "earliest year", "integer"), Param("year_max", "latest year", "integer"),
    ), {"200": ok("{total, offset, limit, results: [track]}"), "400": ERROR}),
    Endpoint(f"{API}/tracks/{{track_id}}", "One track: tags, top styles, map position, audio URL", (TRACK_ID,),
             {"200": ok("track"), "404": ERROR}),
    Endpoint(f"{API}/similar/{{track_id}}", "Tracks that sound like this one, with scores (cosine similarity)",
             (TRACK_ID, *SIMILAR),
             {"200": ok("{track_id, model, results: [track + score]}"), "400": ERROR, "404": ERROR}),
    Endpoint(f"{API}/panel/{{track_id}}", "What the explorer's track panel shows for a track: tags, the file, top "
                                          "styles, similar tracks (a bad `where` is said in `problem` and the list "
                                          "made without it), the song path offer, and the highlight drawn on the map",
             (TRACK_ID, Param("k", "how many similar tracks", "integer", minimum=1, maximum=K_PAGE_MAX,
                              default=K_DEFAULT), *SIMILAR[1:5],
              Param("path_from", "a song path's chosen start: the panel offers the path from it to this track",
                    "integer", minimum=0), TASTE),
             {"200": ok("{id, title, byline, fields, cover, audio, styles_heading, styles, problem, similar_heading, "
                        "similar, select, path, highlight, thumb, taste, recording}"), "400": ERROR, "404": ERROR,
              "501": ERROR}),
    Endpoint(f"{API}/similar", "Tracks that sound like several tracks together (the centroid of their vectors)",
             (Param("ids", "track ids separated by commas, e.g. 12,40,7", "ids", maximum=PAGE_MAX, required=True,
                    hint=IDS_HINT), *SIMILAR),
             {"200": ok("{ids, model, results: [track + score]}"), "400": ERROR, "404": ERROR}),
    Endpoint(UPLOAD_PATH, "Tracks that sound like an uploaded clip, and where it lands on the map (only with "
                          "`musicmap serve --allow-upload`; the clip is embedded with the store's model and deleted)",
             SIMILAR, {"200": ok("{query: {type, filename, bytes, position}, model, results: [track + score]}"),
                       "400": ERROR, "403": ERROR, "413": ERROR},
             method="post", body={"required": True, "content": {
                 "multipart/form-data": {"schema": {"type": "object", "properties": {
                     "file": {"type": "string", "format": "binary"}}}},
                 "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}),
    Endpoint(f"{API}/path", "A path of tracks from one to another: each step near the last and closer to the end", (
        Param("from", "first track id", "integer", minimum=0, required=True, hint="give a track id, e.g. from=12"),
        Param("to", "last track id", "integer", minimum=0, required=True, hint="give a track id, e.g. to=12"),
        Param("steps", "tracks in the path, both ends included", "integer", minimum=2, maximum=MAX_PATH, default=10),
        *VARIETY,
    ), {"200": ok("{from, to, model, steps: [track + to_previous + to_end]}, or M3U"), "400": ERROR, "404": ERROR}),
    Endpoint(f"{API}/extend", "Tracks that fit a playlist (never one of its own), by its centroid or by each track", (
        Param("ids", "the playlist's track ids separated by commas", "ids", maximum=PAGE_MAX, required=True,
              hint=IDS_HINT),
        Param("n", "tracks to add", "integer", minimum=1, maximum=MAX_EXTEND, default=20),
        Param("mode", "centroid (default) or seeds", choices=("centroid", "seeds")),
        *VARIETY,
    ), {"200": ok("{ids, mode, model, results: [track + score]}, or M3U"), "400": ERROR, "404": ERROR}),
    Endpoint(f"{API}/find", "Tracks by a description of their sound (\"calm piano without drums\"), each with what "
                            "matched (word → tags → strength); with `like`, that track's neighbours re-ranked by the "
                            "words. No word to search by, or no tags yet: no results and the `reason`", (
        Param("q", "the sound in words (at most 300 characters)", required=True,
              hint="describe the sound in words, e.g. q=calm piano without drums"),
        Param("k", "how many", "integer", minimum=1, maximum=K_API_MAX, default=K_DEFAULT),
        Param("like", "a track id: its nearest neighbours, re-ranked by the words", "integer", minimum=0),
        WHERE, *SIMILAR[2:5],
        Param("centroid", "move toward what the best hits sound like: 0 (default) words only, 1 sound only", "number"),
        TASTE,
        Param("format", "json (default) or m3u (an M3U8 playlist)", choices=("json", "m3u")),
    ), {"200": ok("{query: {type, text, like}, model, understood: [{word, how, negated, tags}], unknown: "
                  "[{word, nearest}], ignored, untagged, reason, results: [track + score + matched]}, or M3U"),
        "400": ERROR, "404": ERROR}),
    Endpoint(f"{API}/search", "Tracks whose artist, title or album contain every word", (
        Param("q", "words", required=True, hint="give some words of a title, artist or album"),
        Param("limit", "how many", "integer", minimum=1, maximum=SEARCH_MAX, default=10),
    ), {"200": ok("{q, results: [track]}"), "400": ERROR}),
    Endpoint(f"{API}/sql", "One read-only SQL query over the store (tracks, styles, projections, ...; similarity(id, "
                           "seed) and similar_to(seed, k)); no file access, time and row limits", (
        Param("q", "one SELECT statement", required=True,
              hint="give one SQL statement, e.g. SELECT genre, count(*) FROM tracks GROUP BY genre"),
        Param("limit", "row cap", "integer", minimum=1, maximum=SQL_MAX_ROWS, default=1000),
    ), {"200": ok("{columns, rows, truncated}"), "400": ERROR}),
    Endpoint(f"{API}/events", "Record listening events: one event object, or {\"events\": [...]} (at most "
                              f"{MAX_BATCH}); each answered with what became of it (a duplicate is recognised and "
                              "not stored); 403 when this server does not record (`musicmap serve --no-record`), "
                              "429 with Retry-After when a source sends too many", (),
             {"200": ok("{recorded: [{kind, track_id, at, undo, ids, duplicate, undone}]}"), "400": ERROR,
              "403": ERROR, "404": ERROR, "429": ERROR},
             method="post", body={"required": True, "content": {"application/json": {"schema": {"oneOf": [
                 EVENT_SCHEMA,
                 {"type": "object", "required": ["events"], "additionalProperties": False, "properties": {
                     "events": {"type": "array", "items": EVENT_SCHEMA, "minItems": 1, "maxItems": MAX_BATCH}}}]}}}}),
    Endpoint(f"{API}/events", "The listening journal's latest events, oldest first (undo rows included: kind "
                              "`undo`, `undoes` the event taken back)", (
        Param("since", "only events from this time on (Unix seconds)", "number"),
        Param("limit", "the latest this many", "integer", minimum=1, maximum=PAGE_MAX, default=100),
    ), {"200": ok("{events: [{id, at, recorded, kind, track_id, seconds, duration, source, context, undoes}]}"),
        "400": ERROR}),
    Endpoint(f"{API}/taste", "The person's taste as the journal has it: counts, the liked tracks (highest weight "
                             "first) and the disliked ones, with their rows; whether this server records and why not",
             (TASTE_ROWS,),
             {"200": ok("{summary: {events, tracks, liked, disliked, plays, skips}, recording: {on, why}, steering, "
                        "liked: [track + weight + plays + skips + last], disliked: [...]}")}),
    Endpoint(f"{API}/mix", "A mix for the person: tracks not heard lately that fit what was liked and played (its "
                           "moods kept apart), each with the seed it came from and why; nothing liked or played yet: "
                           "no results and the `reason`", (
        Param("n", "how many", "integer", minimum=1, maximum=MIX_MAX, default=MIX_N),
        Param("since_days", "from what was liked or played in the last this many days (default 30)", "number"),
        *VARIETY[:4], VARIETY[-1],
    ), {"200": ok("{n, since, taste, reason, results: [track + score + taste + seed + why]}, or M3U"),
        "400": ERROR}),
    Endpoint(f"{API}/map", "The map's coordinates, compact: parallel arrays id, x, y (and the fields asked for)",
             (Param("fields", "comma-separated: " + ", ".join(MAP_FIELDS)),),
             {"200": ok("{map, method, quality, n, id, x, y, ...}"), "400": ERROR}),
    Endpoint(f"{API}/map/points", "Every point of the map as binary, for drawing: the tracks' ids (int32), then "
                                  "their x, then their y (float32), little-endian, 12 bytes a track in map order",
             (Param("v", "the map's version (the page's figure names it): any value; a new one each time the map "
                         "changes, so an answer may be cached"),),
             {"200": {"description": "n × int32 ids, n × float32 x, n × float32 y; header X-Musicmap-Points: n",
                      "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}),
    Endpoint(f"{API}/map/colors", "Each point's colour category, a byte a track in the order of map/points: the "
                                  "index of its legend entry (the largest categories, then \"other\")",
             (Param("by", "the field the map is coloured by", choices=COLOR_FIELDS, default="genre"),
              Param("v", "the map's version, as for map/points")),
             {"200": {"description": "n bytes", "content": {"application/octet-stream": {
                 "schema": {"type": "string", "format": "binary"}}}}, "400": ERROR}),
    Endpoint(f"{API}/map/{{track_id}}", "One track on the map: its position and what the map's hover card shows "
                                        "(title, artist, album, genre, year), from the explorer's memory", (TRACK_ID,),
             {"200": ok("{id, title, artist, album, genre, year, map, x, y}"), "404": ERROR}),
    Endpoint(f"{API}/art/{{track_id}}", "The track's cover art as a thumbnail: the picture in the file, else "
                                        "an image beside it (cover.jpg, folder.jpg, ...), else a neutral placeholder",
             (TRACK_ID, Param("size", "largest edge in pixels", "integer", minimum=art.SIZES[0], maximum=art.SIZES[1],
                              default=96)),
             {"200": {"description": "JPEG, or the SVG placeholder; header X-Musicmap-Art says which "
                                     "(embedded, folder, none)",
                      "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                                  "image/svg+xml": {"schema": {"type": "string"}}}},
              "304": {"description": "not modified (ETag)"}, "400": ERROR, "404": ERROR}),
    Endpoint(f"{API}/audio/{{track_id}}", "The track's audio file (HTTP Range supported)", (TRACK_ID,),
             {"200": {"description": "audio bytes"}, "206": {"description": "a byte range"}, "404": ERROR}),
    Endpoint(f"{API}/openapi.json", "This document", (), {"200": ok("OpenAPI 3")}),
)}

OPENAPI: dict[str, Any] = document(
    "musicmap explorer API",
    "Access to a musicmap store: tracks, similar tracks, search, the map, audio (read-only), and the listening "
    "journal (likes, dislikes, plays, skips) that steers the lists.",
    list(ENDPOINTS.values()))


def _options(args: dict[str, Any], names: tuple[Param, ...]) -> dict[str, Any]:
    """The search options among ``args`` that were given (the store's defaults for the rest)."""
    wanted = {p.name for p in names} - {"format"}
    return {k: v for k, v in args.items() if k in wanted and v is not None}


def error(status: int, message: str) -> Response:
    response = jsonify({"error": message, "status": status})
    response.status_code = status
    return response


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


def _note(result: Any) -> dict[str, Any] | None:
    """A result's taste note (``{"shift", "why"}``: how the person's taste moved it), or None."""
    note = getattr(result, "taste", None)
    return None if note is None else note.as_json()


def _results(neighbours: list[Any]) -> list[dict[str, Any]]:
    return [{"track_id": n.track_id, "score": round(float(n.score), 6),
             **{k: _json_safe(v) for k, v in n.track.items()}, "taste": _note(n)} for n in neighbours]


def _event(item: Any, where: str) -> Event:
    """One event of a ``POST /api/v1/events`` body; :class:`BadRequest` naming what is wrong (the
    values themselves are checked by :meth:`store.Event.checked`)."""
    if not isinstance(item, dict):
        raise BadRequest(f"{where}: an event is an object {{kind, track_id, ...}}")
    unknown = sorted(set(item) - set(EVENT_FIELDS))
    if unknown:
        raise BadRequest(f"{where}: unknown field {unknown[0]!r}; an event has {', '.join(EVENT_FIELDS)}")
    for name in ("kind", "track_id"):
        if name not in item:
            raise BadRequest(f"{where}: {name} is required")
    track_id = item["track_id"]
    if isinstance(track_id, bool) or not isinstance(track_id, int) or not 0 <= track_id < 2**63:
        raise BadRequest(f"{where}: track_id {track_id!r}: a track id (a whole number)")
    if not isinstance(item.get("undo", False), bool):
        raise BadRequest(f"{where}: undo {item['undo']!r}: true or false")
    if item.get("context") is not None and not isinstance(item["context"], dict):
        raise BadRequest(f"{where}: context: an object, e.g. {{\"list\": \"similar\", \"of\": 12}}")
    return Event(kind=item["kind"], track_id=track_id, at=item.get("at"), seconds=item.get("seconds"),
                 duration=item.get("duration"), source=item.get("source", "api"), context=item.get("context"),
                 key=item.get("key"), undo=item.get("undo", False))


def events_of(body: object) -> list[Event]:
    """The events of a ``POST /api/v1/events`` body: one event object, or ``{"events": [...]}``."""
    if not isinstance(body, dict):
        raise BadRequest('send a JSON object: one event {"kind": "liked", "track_id": 12} or {"events": [...]}')
    if "events" not in body:
        return [_event(body, "the event")]
    items = body["events"]
    if len(body) != 1 or not isinstance(items, list) or not items:
        raise BadRequest('events: a non-empty list of events, alone in the body: {"events": [...]}')
    if len(items) > MAX_BATCH:
        raise BadRequest(f"events: at most {MAX_BATCH} at once, got {len(items)}")
    return [_event(item, f"events[{i}]") for i, item in enumerate(items)]


ROUTES: list[tuple[str, str, bool, str]] = []
"""Every route of :class:`Api`: (operation, e.g. ``GET /api/v1/tracks``, endpoint name, hold the
store for the request, method name)."""


def route(path: str, endpoint: str, *, hold: bool = True, method: str = "GET") -> Callable[[Handler], Handler]:
    """Declare the decorated :class:`Api` method the handler of ``path``: a documented path
    (:data:`ENDPOINTS`) gets its query parameters parsed and checked into ``args``, others an empty
    ``args``; with ``hold``, the store's file is held for the whole request (one connection however
    many reads; not while a clip is embedded)."""
    def declare(fn: Handler) -> Handler:
        ROUTES.append((f"{method} {path}", endpoint, hold, fn.__name__))
        return fn
    return declare


class Api:
    """The JSON API and audio over one store: one method per route (see :data:`ROUTES`).

    ``projection()`` returns the explorer's current :class:`explorer.mapdata.MapData` (the map it
    shows); ``uploads`` turns on ``POST /api/v1/similar/upload``; ``panel`` serves the page's track
    panel (:data:`PanelFn`)."""

    def __init__(self, store: Store, projection: Callable[[], Any], uploads: Uploads | None = None,
                 panel: PanelFn | None = None, no_record: str | None = None) -> None:
        self.store, self.projection, self.uploads, self.panel = store, projection, uploads, panel
        self.no_record = no_record
        """Why this server records no events (``musicmap serve --no-record``), or None."""
        self.art = art.CoverArt()
        self._map_cache: dict[tuple[int, tuple[str, ...]], bytes] = {}  # gzipped JSON per map, fields

    def handler(self, operation: str, method_name: str, hold: bool) -> Callable[..., Response]:
        """The Flask view of one route: parse, hold the store, call, and turn errors into JSON with
        the status of their kind."""
        declared = ENDPOINTS.get(operation)
        method = getattr(self, method_name)

        def view(**kwargs: Any) -> Response:
            try:
                args = read_all(declared.params, request.args, ignore=TOKEN) if declared else {}
                with self.store.holding() if hold else contextlib.nullcontext():
                    return method(args, **kwargs)
            except BadRequest as exc:
                return error(400, str(exc))
            # the store's errors by meaning (store.errors): an unknown track, a bad question, or the
            # store itself (busy, unreadable: not the client's fault)
            except TrackNotFound as exc:  # its text names the store's folder: not for the web
                return error(404, f"no track with id {exc.track_id}")
            except TooManyEvents as exc:
                response = error(429, str(exc))
                response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
                return response
            except InvalidQuery as exc:
                return error(400, str(exc))
            except NotRecording as exc:
                return error(403, str(exc))
            except StoreError as exc:
                logger.warning("%s: %s", request.path, exc)
                return error(503, str(exc))
            except UploadError as exc:
                return error(exc.status, str(exc))
        return view

    def send_audio(self, track_id: int) -> Response:
        try:
            path = self.store.file_path(track_id)
        except TrackNotFound:
            return error(404, f"no track with id {track_id}")
        mimetype = mimetypes.guess_type(path)[0] or "application/octet-stream"
        try:
            response = send_file(path, mimetype=mimetype, conditional=True)  # HTTP Range: seeking works
        except (FileNotFoundError, PermissionError, IsADirectoryError):
            return error(404, f"the file of track {track_id} is no longer readable on disk")
        response.headers["Accept-Ranges"] = "bytes"
        return response

    @route("/audio/<int:track_id>", "audio")
    def audio(self, args: Args, track_id: int) -> Response:
        """A track's file by id (never by a path from the client)."""
        return self.send_audio(track_id)

    @route(f"{API}/audio/{{track_id}}", "api_audio")
    def api_audio(self, args: Args, track_id: int) -> Response:
        return self.send_audio(track_id)

    @route(f"{API}/art/{{track_id}}", "api_art", hold=False)
    def api_art(self, args: Args, track_id: int) -> Response:
        """Cover art by track id (:mod:`explorer.art`); cached by the browser, revalidated by ETag."""
        thumb = self.art.get(track_id, self.store.file_path(track_id), args["size"])
        response = Response(thumb.data, mimetype=thumb.mimetype)
        response.headers["X-Musicmap-Art"] = thumb.source
        response.headers["Cache-Control"] = "private, max-age=3600"
        response.add_etag()
        response.make_conditional(request)  # 304 when the browser's copy is current
        return response

    @route(API, "api_index")
    def api_index(self, args: Args) -> Response:
        return jsonify({"openapi": f"{API}/openapi.json", "endpoints": sorted(OPENAPI["paths"])})

    @route(f"{API}/openapi.json", "api_openapi")
    def api_openapi(self, args: Args) -> Response:
        return jsonify(OPENAPI)

    @route(f"{API}/tracks", "api_tracks")
    def api_tracks(self, args: Args) -> Response:
        clauses = [f"({args['where']})"] if args["where"] else []
        clauses += [f"{column} = {_sql_string(args[column])}" for column in ("artist", "album") if args[column]]
        if args["genre"]:  # every spelling of the genre's group ("Game soundtrack", "Game Soundtrack")
            spellings = self.store.genre_groups().spellings(args["genre"]) or [args["genre"]]
            clauses.append(f"genre IN ({', '.join(_sql_string(g) for g in spellings)})")
        clauses += [f"year {op} {int(args[name])}" for name, op in (("year_min", ">="), ("year_max", "<="))
                    if args[name] is not None]
        total, page = self.store.page_tracks(where=" AND ".join(clauses) or None, offset=args["offset"],
                                        limit=args["limit"])
        rows = [{k: _json_safe(v) for k, v in r.items()} for r in page.astype(object).where(page.notna(), None)
                .to_dict(orient="records")]
        return jsonify({"total": total, "offset": args["offset"], "limit": args["limit"], "results": rows})

    @route(f"{API}/tracks/{{track_id}}", "api_track")
    def api_track(self, args: Args, track_id: int) -> Response:
        track = self.store.track(track_id)
        data = self.projection()
        position = None
        if track_id in data.row_of.index:
            row = data.frame.iloc[int(data.row_of[track_id])]
            position = {"map": data.projection, "x": float(row["x"]), "y": float(row["y"])}
        styles = [{"label": label, "activation": round(float(a), 4)} for label, a in self.store.styles(track_id)]
        return jsonify({**{k: _json_safe(v) for k, v in track.items()}, "styles": styles, "position": position,
                        "audio": f"{API}/audio/{track_id}"})

    @route(f"{API}/similar/{{track_id}}", "api_similar")
    def api_similar(self, args: Args, track_id: int) -> Response:
        neighbours = self.store.search(track_id, **_options(args, SIMILAR))
        return jsonify({"track_id": track_id, "model": self.store.manifest.model.id,
                        "taste": self.steered(args["taste"]), "results": _results(neighbours)})

    @route(f"{API}/panel/{{track_id}}", "api_panel")
    def api_panel(self, args: Args, track_id: int) -> Response:
        """The page's track panel as data (``explorer/assets/track.js`` draws it): a click on the map
        asks for it directly, not through a Dash callback."""
        if self.panel is None:
            return error(501, "no track panel: this server has no explorer page")
        view = self.panel(track_id, ListControls.from_args(args), args["path_from"])
        response = jsonify(view)
        response.headers["Cache-Control"] = "no-store"
        return response

    @route(f"{API}/similar", "api_similar_many")
    def api_similar_many(self, args: Args) -> Response:
        """Tracks like several tracks together (the centroid of their vectors): ``?ids=1,2,3``."""
        neighbours = self.store.search(args["ids"], **_options(args, SIMILAR))
        return jsonify({"ids": args["ids"], "model": self.store.manifest.model.id,
                        "taste": self.steered(args["taste"]), "results": _results(neighbours)})

    @route(f"{API}/path", "api_path")
    def api_path(self, args: Args) -> Response:
        """A song path from one track to another (``store.listening.song_path``); JSON or M3U."""
        start, end = args["from"], args["to"]
        steps = self.store.song_path(start, end, length=args["steps"], **_options(args, VARIETY))
        if args["format"] == "m3u":
            return self._m3u([s.track_id for s in steps], f"path-{start}-{end}")
        return jsonify({"from": start, "to": end, "model": self.store.manifest.model.id,
                        "taste": self.steered(args["taste"]), "steps": [
            {"track_id": s.track_id, "to_previous": None if s.to_previous is None else round(s.to_previous, 6),
             "to_end": round(s.to_end, 6), **{k: _json_safe(v) for k, v in s.track.items()}, "taste": _note(s)}
            for s in steps]})

    @route(f"{API}/extend", "api_extend")
    def api_extend(self, args: Args) -> Response:
        """Tracks that fit a playlist (``store.listening.extend_playlist``); JSON or M3U."""
        mode = args["mode"] or "centroid"
        added = self.store.extend(args["ids"], n=args["n"], mode=mode, **_options(args, VARIETY))
        if args["format"] == "m3u":
            return self._m3u([a.track_id for a in added], "extension")
        return jsonify({"ids": args["ids"], "mode": mode, "model": self.store.manifest.model.id,
                        "taste": self.steered(args["taste"]), "results": _results(added)})

    @route(f"{API}/find", "api_find")
    def api_find(self, args: Args) -> Response:
        """Tracks by a description of their sound (:meth:`store.Store.find`); JSON or M3U."""
        found = self.store.find(args["q"], k=args["k"], like=args["like"], centroid=args["centroid"] or 0.0,
                                taste=args["taste"], **_options(args, (WHERE, *SIMILAR[2:5])))
        if args["format"] == "m3u":
            return self._m3u([r.track_id for r in found.results], "find")
        results = [{**{k: _json_safe(v) for k, v in r.to_dict().items()}, "taste": _note(r)} for r in found.results]
        return jsonify({"model": self.store.manifest.model.id, **found.to_dict(), "results": results})

    # -- taste: the listening journal (store/journal.py) and what it steers -------------------------

    def recording(self) -> Recording:
        """Whether this server records listening events, and why not: ``{"on": bool, "why": str | None}``."""
        why = self.no_record or self.store.journal.why_not
        return Recording(on=why is None, why=why)

    def steered(self, taste: bool) -> dict[str, int] | None:
        """The taste that steers a list asked with ``taste`` (:meth:`store.taste.Taste.summary`), or
        None: not asked, or nothing liked, disliked, played or skipped yet."""
        steer = self.store.steer() if taste else None
        return None if steer is None else steer.taste.summary()

    @route(f"{API}/events", "api_record", method="POST")
    def api_record(self, args: Args) -> Response:
        """Record listening events (:meth:`store.Store.record`): a body of one event or ``{"events": [...]}``."""
        events = events_of(request.get_json(force=True, silent=True))
        if self.no_record:
            raise NotRecording(f"cannot record listening events: {self.no_record}")
        recorded = self.store.record(events)
        return jsonify({"recorded": [r.as_json() for r in recorded]})

    @route(f"{API}/events", "api_events")
    def api_events(self, args: Args) -> Response:
        frame = self.store.journal.events(since=args["since"], limit=args["limit"])
        rows = []
        for r in frame.astype(object).where(frame.notna(), None).to_dict(orient="records"):
            context = r["context"]
            with contextlib.suppress(TypeError, ValueError):
                context = json.loads(context) if isinstance(context, str) else context
            rows.append({"id": int(r["id"]), "at": r["at"], "recorded": r["recorded"], "kind": r["kind"],
                         "track_id": int(r["track_id"]), "seconds": r["seconds"], "duration": r["duration"],
                         "source": r["source"], "context": context,
                         "undoes": None if r["undoes"] is None else int(r["undoes"])})
        return jsonify({"events": rows})

    @route(f"{API}/taste", "api_taste")
    def api_taste(self, args: Args) -> Response:
        taste = self.store.taste()
        liked = sorted((t for t in taste.tracks.values() if t.liked), key=lambda t: (-t.weight, -t.last))
        disliked = sorted((t for t in taste.tracks.values() if t.disliked), key=lambda t: -t.last)
        liked, disliked = liked[: args["limit"]], disliked[: args["limit"]]
        rows = self.store.track_rows([t.track_id for t in liked + disliked])

        def listed(tracks: list[Any]) -> list[dict[str, Any]]:
            return [{"track_id": t.track_id, **{k: _json_safe(v) for k, v in rows.get(t.track_id, {}).items()},
                     "weight": round(t.weight, 6), "plays": t.plays, "skips": t.skips, "last": t.last}
                    for t in tracks]
        return jsonify({"summary": taste.summary(), "recording": self.recording(),
                        "steering": self.store.steer() is not None, "liked": listed(liked),
                        "disliked": listed(disliked)})

    @route(f"{API}/mix", "api_mix")
    def api_mix(self, args: Args) -> Response:
        """A mix from what the person liked and played (:meth:`store.Store.mix`); JSON or M3U."""
        days = 30.0 if args["since_days"] is None else args["since_days"]
        if not 0 < days <= 36500:
            raise BadRequest(f"since_days={days!r}: give a number of days above 0")
        since = time.time() - days * 86400.0
        reason = None
        try:
            items = self.store.mix(n=args["n"], since=since, **_options(args, VARIETY[:4]))
        except NothingToMix as exc:
            items, reason = [], str(exc)
        if args["format"] == "m3u":
            return self._m3u([i.neighbour.track_id for i in items], "for-you")
        results = [{**_results([i.neighbour])[0], "seed": i.seed, "why": i.why} for i in items]
        return jsonify({"n": args["n"], "since": since, "taste": self.steered(True), "reason": reason,
                        "results": results})

    def _m3u(self, track_ids: list[int], name: str) -> Response:
        from store.m3u import m3u_bytes

        return Response(m3u_bytes(self.store, track_ids), mimetype="audio/x-mpegurl",
                        headers={"Content-Disposition": f'attachment; filename="{name}.m3u8"'})

    @route(UPLOAD_PATH, "api_similar_upload", hold=False, method="POST")
    def api_similar_upload(self, args: Args) -> Response:
        """Tracks like an uploaded clip (multipart field ``file``, or the raw bytes as the body),
        and where it lands on the map. Only with ``musicmap serve --allow-upload``."""
        if self.uploads is None:
            return error(403, "uploads are off on this server: start it with `musicmap serve --allow-upload`")
        if request.files:
            if "file" not in request.files:
                raise BadRequest(f"send the clip in the multipart field 'file' (got {', '.join(request.files)})")
            part = request.files["file"]
            filename, data = part.filename or "clip", part.read(self.uploads.max_bytes + 1)
        else:
            filename, data = "clip", request.get_data(cache=False)
        vector = self.uploads.vector(data, filename)
        data_map = self.projection()
        position = self.uploads.position(data_map.projection, vector) if data_map.info is not None else None
        with self.store.holding():
            neighbours = self.store.search(vector=vector, **_options(args, SIMILAR))
        where = {"map": data_map.projection, "x": position[0], "y": position[1]} if position else None
        return jsonify({"query": {"type": "upload", "filename": filename[:200], "bytes": len(data),
                                  "position": where},
                        "model": self.store.manifest.model.id, "taste": self.steered(args["taste"]),
                        "results": _results(neighbours)})

    @route(f"{API}/search", "api_search")
    def api_search(self, args: Args) -> Response:
        text = args["q"].strip()
        if not text:
            raise BadRequest("q: give some words of a title, artist or album")
        return jsonify({"q": text, "results": self.projection().search(text, args["limit"])})

    @route(f"{API}/sql", "api_sql")
    def api_sql(self, args: Args) -> Response:
        """One read-only query in the store's SQL sandbox: ``?q=SELECT ...&limit=``."""
        query = args["q"].strip()
        if not query:
            raise BadRequest("q: give one SQL statement, e.g. SELECT genre, count(*) FROM tracks GROUP BY genre")
        result = self.store.sql(query, max_rows=args["limit"], timeout=SQL_TIMEOUT)
        rows = [[_json_safe(v) if not isinstance(v, (bytes, bytearray, memoryview)) else None for v in row]
                for row in result.rows]
        return jsonify({"columns": result.columns, "rows": rows, "truncated": result.truncated})

    @route(f"{API}/map", "api_map")
    def api_map(self, args: Args) -> Response:
        data = self.projection()
        version = data.version  # read before the frame: a reload in between caches newer data, never older
        frame = data.frame
        fields = tuple(f for f in (args["fields"] or "").split(",") if f)
        bad = [f for f in fields if f not in MAP_FIELDS]
        if bad:
            raise BadRequest(f"fields: unknown field {bad[0]!r}")
        key = (version, fields)  # a new version whenever the map or the tracks change
        if key not in self._map_cache:
            packed = _map_json(data, frame, fields)
            if len(self._map_cache) >= 8 or any(k[0] != key[0] for k in self._map_cache):
                self._map_cache.clear()  # only the current map's answers are kept
            self._map_cache[key] = packed
            release_unused_memory()  # the build's transients, ~100 MB at 1M tracks, all freed by now
        return _encoded(self._map_cache[key], "application/json")

    @route(f"{API}/map/points", "api_map_points", hold=False)
    def api_map_points(self, args: Args) -> Response:
        """The points as the page's renderer draws them (no store read: from the explorer's memory)."""
        data = self.projection()
        response = _encoded(data.points(), "application/octet-stream", cache=bool(args["v"]))
        response.headers["X-Musicmap-Points"] = str(len(data.frame))
        return response

    @route(f"{API}/map/colors", "api_map_colors", hold=False)
    def api_map_colors(self, args: Args) -> Response:
        return _encoded(self.projection().codes(args["by"]), "application/octet-stream", cache=bool(args["v"]))

    @route(f"{API}/map/{{track_id}}", "api_map_point", hold=False)
    def api_map_point(self, args: Args, track_id: int) -> Response:
        """The hover card of one point (no store read: it is asked for on every hover)."""
        card = self.projection().card(track_id)
        if card is None:
            return error(404, f"no track with id {track_id} on the map")
        response = jsonify({k: _json_safe(v) for k, v in card.items()})
        response.headers["Cache-Control"] = "private, max-age=60"
        return response

    @route("/audio/<path:rest>", "audio_unknown")
    def audio_unknown(self, args: Args, rest: str) -> Response:
        """/audio/<not a track id>: never Dash's page, never a file."""
        return error(404, f"no audio at {request.path}: audio is served by track id, /audio/<id>")

    @route(f"{API}/<path:rest>", "api_unknown")
    def api_unknown(self, args: Args, rest: str) -> Response:  # before Dash's catch-all page route
        return error(404, f"no such endpoint: {request.path} (see {API}/openapi.json)")


def _map_json(data: MapData, frame: pd.DataFrame, fields: tuple[str, ...]) -> bytes:
    """``/api/v1/map``'s answer for ``frame`` (``data``'s), gzipped: the map's head, then its
    parallel arrays."""
    head: dict[str, Any] = {
        "map": data.projection, "method": data.info.method if data.info else None,
        "quality": data.info.params.get("quality") if data.info else None, "n": len(frame),
    }
    # The big arrays written by pandas' C JSON writer: a Python object per value cost ~100 MB
    # of the server's memory at 1M tracks. 3 decimals are far below a pixel.
    arrays = {"id": frame["id"].astype(np.int64), "x": frame["x"].astype(float).round(3),
              "y": frame["y"].astype(float).round(3)} if len(frame) else {}
    parts = [json.dumps(head, separators=(",", ":"), ensure_ascii=False)[:-1]]
    for name in ("id", "x", "y"):
        parts.append(f',"{name}":' + (arrays[name].to_json(orient="values") if arrays else "[]"))
    for f in fields:
        values = [_json_safe(v) for v in frame[f].astype(object).where(frame[f].notna(), None)]
        parts.append(f',"{f}":' + json.dumps(values, separators=(",", ":"), ensure_ascii=False))
    return gzip.compress(("".join(parts) + "}").encode(), compresslevel=5, mtime=0)


def _encoded(packed: bytes, mimetype: str, cache: bool = False) -> Response:
    """An answer kept gzipped (``packed``: only the gzip is held in memory), sent as it is where the
    client takes gzip, decompressed where it does not; with ``cache``, cacheable by the browser for
    a day (the URL names the map's version)."""
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        response = Response(packed, mimetype=mimetype)
        response.headers["Content-Encoding"] = "gzip"  # flask-compress leaves an encoded answer alone
    else:
        response = Response(gzip.decompress(packed), mimetype=mimetype)
    response.headers["Vary"] = "Accept-Encoding"
    if cache:
        response.cache_control.private = True
        response.cache_control.max_age = 86400
    return response


class AsciiInteger(IntegerConverter):
    """``<int:...>`` in a route, in ASCII digits only: werkzeug's ``\\d+`` also matches other
    scripts' digits (``/api/v1/tracks/١`` was track 1), against the rule of ``store.is_whole_number``."""

    regex = r"[0-9]+"


def register(server: Flask, store: Store, *, projection: Callable[[], Any], uploads: Uploads | None = None,
             token: str | None = None, panel: PanelFn | None = None, no_record: str | None = None) -> Api:
    """Add the API, the audio routes and OpenSubsonic to ``server`` (see :class:`Api`); ``no_record``:
    why this server records no listening events (None: it records)."""
    api = Api(store, projection, uploads, panel, no_record)
    server.url_map.converters["int"] = AsciiInteger  # before the rules: /tracks/١ is no track 1
    subsonic.register(server, store, token=token, send_audio=api.send_audio, cover_art=api.art)
    for operation, endpoint, hold, name in ROUTES:
        declared = ENDPOINTS.get(operation)
        method, path = operation.split(" ", 1)
        server.add_url_rule(declared.rule if declared else path, endpoint, api.handler(operation, name, hold),
                            methods=[method])

    @server.before_request
    def audio_only_by_id() -> Response | None:
        # Whatever else matched (Dash's catch-all page route takes "/audio//etc/passwd"): 404.
        if request.path.startswith(("/audio/", f"{API}/audio/")) and request.endpoint not in ("audio", "api_audio"):
            return error(404, f"no audio at {request.path}: audio is served by track id, /audio/<id>")
        return None

    def json_errors(exc: HTTPException) -> Response | HTTPException:
        if request.path.startswith(API) or request.path.startswith("/audio/"):
            return error(exc.code or 500, f"{exc.name}: {request.method} {request.path}")
        return exc

    server.register_error_handler(HTTPException, json_errors)
    return api


