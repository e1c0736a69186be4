"""The explorer's JSON API, ``/api/v1`` on the same server, and audio by track id.

Every error is JSON ``{"error": message, "status": code}`` with the right status: a bad parameter
is 400 (naming it), an unknown track 404; never a 500 for something the client sent. The OpenAPI
document at ``/api/v1/openapi.json`` lists every route below (a test checks they agree).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import math
import mimetypes
from collections.abc import Callable
from typing import Any

import numpy as np
from flask import Flask, Response, jsonify, request, send_file
from werkzeug.exceptions import HTTPException

from store import InvalidQuery, Store, StoreError, TrackNotFound
from store.listening import MAX_EXTEND, MAX_PATH
from store.search import VarietyOptions

from . import subsonic
from .limits import K_API_MAX, K_DEFAULT, PAGE_MAX, SEARCH_MAX, SQL_MAX_ROWS, SQL_TIMEOUT
from .upload import UploadError, Uploads

logger = logging.getLogger(__name__)

API = "/api/v1"

UPLOAD_PATH = f"{API}/similar/upload"
SIMILAR_OPTIONS: dict[str, type] = {"max_per_artist": int, "max_per_album": int, "mmr": float, "min_score": float}


class BadRequest(ValueError):
    """A query parameter the API cannot use; the message names it."""


def error(status: int, message: str) -> Response:
    response = jsonify({"error": message, "status": status})
    response.status_code = status
    return response


def _int(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not lo <= int(raw) <= hi:
        raise BadRequest(f"{name}={raw!r}: give a whole number from {lo} to {hi}")
    return int(raw)


def _number(name: str, kind: type) -> Any:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = kind(raw)
    except ValueError:
        raise BadRequest(f"{name}={raw!r}: give a {'whole ' if kind is int else ''}number") from None
    if kind is float and not math.isfinite(value):
        raise BadRequest(f"{name}={raw!r}: give a finite number")
    return value


def _flag(name: str) -> bool:
    raw = request.args.get(name, "false").lower()
    if raw not in ("1", "true", "yes", "0", "false", "no"):
        raise BadRequest(f"{name}={raw!r}: give true or false")
    return raw in ("1", "true", "yes")


def _only(*allowed: str) -> None:
    unknown = sorted(set(request.args) - set(allowed) - {"token"})  # token: explorer.auth's
    if unknown:
        raise BadRequest(f"unknown parameter {unknown[0]!r}; this endpoint takes {', '.join(allowed) or 'none'} "
                         f"(see {API}/openapi.json)")


def similar_options() -> dict[str, Any]:
    """The similarity options of the query string (k, where, dedupe, max_per_artist, ...), checked."""
    out: dict[str, Any] = {"k": _int("k", K_DEFAULT, 1, K_API_MAX), "where": request.args.get("where") or None,
                           "dedupe": _flag("dedupe")}
    for name, kind in SIMILAR_OPTIONS.items():
        value = _number(name, kind)
        if value is not None:
            out[name] = value
    return out


def _ids_param() -> list[int]:
    raw = [part.strip() for part in (request.args.get("ids") or "").split(",") if part.strip()]
    if not raw or not all(part.isdigit() for part in raw) or len(raw) > PAGE_MAX:
        raise BadRequest(f"ids: give 1 to {PAGE_MAX} track ids separated by commas, e.g. ids=12,40,7")
    return list(dict.fromkeys(int(part) for part in raw))


def _variety() -> VarietyOptions:
    """``where``, ``dedupe`` and the caps of the query string (for paths and playlists)."""
    out: VarietyOptions = {"where": request.args.get("where") or None, "dedupe": _flag("dedupe")}
    artist, album = _number("max_per_artist", int), _number("max_per_album", int)
    if artist is not None:
        out["max_per_artist"] = int(artist)
    if album is not None:
        out["max_per_album"] = int(album)
    return out


def _format() -> str:
    value = request.args.get("format") or "json"
    if value not in ("json", "m3u"):
        raise BadRequest(f"format={value!r}: give json or m3u")
    return value


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


def _results(neighbours: list[Any]) -> list[dict[str, Any]]:
    return [{"track_id": n.track_id, "score": round(float(n.score), 6),
             **{k: _json_safe(v) for k, v in n.track.items()}} for n in neighbours]


def register(server: Flask, store: Store, *, projection: Callable[[], Any], uploads: Uploads | None = None,
             token: str | None = None) -> None:
    """Add the API and the audio route to ``server``. ``projection()`` returns the explorer's
    current :class:`explorer.app.MapData` (the map it shows); ``uploads`` turns on
    ``POST /api/v1/similar/upload``."""

    def route(rule: str, endpoint: str, methods: tuple[str, ...] = ("GET",),
              hold: bool = True) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
        def wrap(fn: Callable[..., Response]) -> Callable[..., Response]:
            def handler(**kwargs: Any) -> Response:
                try:
                    # one connection for the request, however many reads (not while a clip is embedded)
                    with store.holding() if hold else contextlib.nullcontext():
                        return fn(**kwargs)
                except BadRequest as exc:
                    return error(400, str(exc))
                # the store's errors by meaning (store.errors): an unknown track, a bad question,
                # or the store itself (busy, unreadable: not the client's fault)
                except TrackNotFound as exc:
                    return error(404, str(exc))
                except InvalidQuery as exc:
                    return error(400, str(exc))
                except StoreError as exc:
                    logger.warning("%s: %s", request.path, exc)
                    return error(503, str(exc))
                except UploadError as exc:
                    return error(exc.status, str(exc))
            server.add_url_rule(rule, endpoint, handler, methods=list(methods))
            return fn
        return wrap

    def send_audio(track_id: int) -> Response:
        try:
            path = store.file_path(track_id)
        except TrackNotFound:
            return error(404, f"no track with id {track_id}")
        mimetype = mimetypes.guess_type(path)[0] or "application/octet-stream"
        try:
            response = send_file(path, mimetype=mimetype, conditional=True)  # HTTP Range: seeking works
        except (FileNotFoundError, PermissionError, IsADirectoryError):
            return error(404, f"the file of track {track_id} is no longer readable on disk")
        response.headers["Accept-Ranges"] = "bytes"
        return response

    subsonic.register(server, store, token=token, send_audio=send_audio)

    @route("/audio/<int:track_id>", "audio")
    def audio(track_id: int) -> Response:
        """A track's file by id (never by a path from the client)."""
        return send_audio(track_id)

    @route(f"{API}/audio/<int:track_id>", "api_audio")
    def api_audio(track_id: int) -> Response:
        _only()
        return send_audio(track_id)

    @route(API, "api_index")
    def api_index() -> Response:
        return jsonify({"openapi": f"{API}/openapi.json",
                        "endpoints": sorted(p for p in OPENAPI["paths"])})

    @route(f"{API}/openapi.json", "api_openapi")
    def api_openapi() -> Response:
        return jsonify(OPENAPI)

    @route(f"{API}/tracks", "api_tracks")
    def api_tracks() -> Response:
        _only("offset", "limit", "where", "genre", "artist", "album", "year_min", "year_max")
        offset = _int("offset", 0, 0, 10**12)
        limit = _int("limit", 100, 0, PAGE_MAX)
        clauses = [f"({request.args['where']})"] if request.args.get("where") else []
        for column in ("genre", "artist", "album"):
            if request.args.get(column):
                clauses.append(f"{column} = {_sql_string(request.args[column])}")
        for name, op in (("year_min", ">="), ("year_max", "<=")):
            year = _number(name, int)
            if year is not None:
                clauses.append(f"year {op} {int(year)}")
        total, page = store.page_tracks(where=" AND ".join(clauses) or None, offset=offset, limit=limit)
        rows = [{k: _json_safe(v) for k, v in r.items()} for r in page.astype(object).where(page.notna(), None)
                .to_dict(orient="records")]
        return jsonify({"total": total, "offset": offset, "limit": limit, "results": rows})

    @route(f"{API}/tracks/<int:track_id>", "api_track")
    def api_track(track_id: int) -> Response:
        _only()
        track = store.track(track_id)
        data = projection()
        position = None
        if track_id in data.row_of.index:
            row = data.frame.iloc[int(data.row_of[track_id])]
            position = {"map": data.projection, "x": float(row["x"]), "y": float(row["y"])}
        styles = [{"label": label, "activation": round(float(a), 4)} for label, a in store.styles(track_id)]
        return jsonify({**{k: _json_safe(v) for k, v in track.items()}, "styles": styles, "position": position,
                        "audio": f"{API}/audio/{track_id}"})

    @route(f"{API}/similar/<int:track_id>", "api_similar")
    def api_similar(track_id: int) -> Response:
        _only("k", "where", "dedupe", *SIMILAR_OPTIONS)
        return similar_response(track_id, {"track_id": track_id})

    @route(f"{API}/similar", "api_similar_many")
    def api_similar_many() -> Response:
        """Tracks like several tracks together (the centroid of their vectors): ``?ids=1,2,3``."""
        _only("ids", "k", "where", "dedupe", *SIMILAR_OPTIONS)
        ids = _ids_param()
        return similar_response(ids, {"ids": ids})

    @route(f"{API}/path", "api_path")
    def api_path() -> Response:
        """A song path from one track to another (``store.listening.song_path``); JSON or M3U."""
        _only("from", "to", "steps", "where", "dedupe", "max_per_artist", "max_per_album", "format")
        ends = []
        for name in ("from", "to"):
            raw = request.args.get(name) or ""
            if not raw.isdigit():
                raise BadRequest(f"{name}: give a track id, e.g. {name}=12")
            ends.append(int(raw))
        steps = store.song_path(ends[0], ends[1], length=_int("steps", 10, 2, MAX_PATH), **_variety())
        if _format() == "m3u":
            return _m3u([s.track_id for s in steps], f"path-{ends[0]}-{ends[1]}")
        return jsonify({"from": ends[0], "to": ends[1], "model": store.manifest.model.id, "steps": [
            {"track_id": s.track_id, "to_previous": None if s.to_previous is None else round(s.to_previous, 6),
             "to_end": round(s.to_end, 6), **{k: _json_safe(v) for k, v in s.track.items()}} for s in steps]})

    @route(f"{API}/extend", "api_extend")
    def api_extend() -> Response:
        """Tracks that fit a playlist (``store.listening.extend_playlist``); JSON or M3U."""
        _only("ids", "n", "mode", "where", "dedupe", "max_per_artist", "max_per_album", "format")
        ids = _ids_param()
        mode = request.args.get("mode") or "centroid"
        if mode not in ("centroid", "seeds"):
            raise BadRequest(f"mode={mode!r}: give centroid or seeds")
        added = store.extend(ids, n=_int("n", 20, 1, MAX_EXTEND), mode=mode, **_variety())
        if _format() == "m3u":
            return _m3u([a.track_id for a in added], "extension")
        return jsonify({"ids": ids, "mode": mode, "model": store.manifest.model.id, "results": _results(added)})

    def _m3u(track_ids: list[int], name: str) -> Response:
        from store.m3u import m3u_bytes

        return Response(m3u_bytes(store, track_ids), mimetype="audio/x-mpegurl",
                        headers={"Content-Disposition": f'attachment; filename="{name}.m3u8"'})

    def similar_response(seeds: int | list[int], head: dict[str, Any]) -> Response:
        """Search from seed tracks: 404 for a seed that does not exist, 400 for a bad option."""
        neighbours = store.search(seeds, **similar_options())
        return jsonify({**head, "model": store.manifest.model.id, "results": _results(neighbours)})

    @route(UPLOAD_PATH, "api_similar_upload", methods=("POST",), hold=False)
    def api_similar_upload() -> Response:
        """Tracks like an uploaded clip (multipart field ``file``, or the raw bytes as the body),
        and where it lands on the map. Only with ``musicmap serve --allow-upload``."""
        if uploads is None:
            return error(403, "uploads are off on this server: start it with `musicmap serve --allow-upload`")
        _only("k", "where", "dedupe", *SIMILAR_OPTIONS)
        params = similar_options()
        if request.files:
            if "file" not in request.files:
                raise BadRequest(f"send the clip in the multipart field 'file' (got {', '.join(request.files)})")
            part = request.files["file"]
            filename, data = part.filename or "clip", part.read(uploads.max_bytes + 1)
        else:
            filename, data = "clip", request.get_data(cache=False)
        vector = uploads.vector(data, filename)
        data_map = projection()
        position = uploads.position(data_map.projection, vector) if data_map.info is not None else None
        with store.holding():
            neighbours = store.similar_to_vector(vector, **params)
        where = {"map": data_map.projection, "x": position[0], "y": position[1]} if position else None
        return jsonify({"query": {"type": "upload", "filename": filename[:200], "bytes": len(data),
                                  "position": where},
                        "model": store.manifest.model.id, "results": _results(neighbours)})

    @route(f"{API}/search", "api_search")
    def api_search() -> Response:
        _only("q", "limit")
        text = (request.args.get("q") or "").strip()
        if not text:
            raise BadRequest("q: give some words of a title, artist or album")
        limit = _int("limit", 10, 1, SEARCH_MAX)
        found = projection().search(text, limit)
        return jsonify({"q": text, "results": found})

    @route(f"{API}/sql", "api_sql")
    def api_sql() -> Response:
        """One read-only query in the store's SQL sandbox: ``?q=SELECT ...&limit=``."""
        _only("q", "limit")
        query = (request.args.get("q") or "").strip()
        if not query:
            raise BadRequest("q: give one SQL statement, e.g. SELECT genre, count(*) FROM tracks GROUP BY genre")
        limit = _int("limit", 1000, 1, SQL_MAX_ROWS)
        result = store.sql(query, max_rows=limit, timeout=SQL_TIMEOUT)
        rows = [[_json_safe(v) if not isinstance(v, (bytes, bytearray, memoryview)) else None for v in row]
                for row in result.rows]
        return jsonify({"columns": result.columns, "rows": rows, "truncated": result.truncated})

    map_cache: dict[tuple[int, tuple[str, ...]], tuple[bytes, bytes]] = {}  # (JSON, gzip) per map and fields

    @route(f"{API}/map", "api_map")
    def api_map() -> Response:
        _only("fields")
        data = projection()
        version = data.version  # read before the frame: a reload in between caches newer data, never older
        frame = data.frame
        fields = tuple(f for f in (request.args.get("fields") or "").split(",") if f)
        bad = [f for f in fields if f not in ("title", "artist", "album", "genre", "year", "style", "cluster")]
        if bad:
            raise BadRequest(f"fields: unknown field {bad[0]!r}")
        key = (version, fields)  # a new version whenever the map or the tracks change
        if key not in map_cache:
            body: dict[str, Any] = {
                "map": data.projection, "method": data.info["method"] if data.info else None,
                "quality": (data.info or {}).get("params", {}).get("quality"), "n": len(frame),
                "id": frame["id"].astype(int).tolist() if len(frame) else [],
                # 3 decimals are far below a pixel: the payload stays small
                "x": np.round(frame["x"].to_numpy(float), 3).tolist() if len(frame) else [],
                "y": np.round(frame["y"].to_numpy(float), 3).tolist() if len(frame) else [],
            }
            for f in fields:
                body[f] = [_json_safe(v) for v in frame[f].astype(object).where(frame[f].notna(), None)]
            raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
            if len(map_cache) >= 8 or any(k[0] != key[0] for k in map_cache):
                map_cache.clear()  # only the current map's answers are kept
            map_cache[key] = (raw, gzip.compress(raw, compresslevel=5, mtime=0))
        raw, packed = map_cache[key]
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            response = Response(packed, mimetype="application/json")
            response.headers["Content-Encoding"] = "gzip"  # flask-compress leaves an encoded answer alone
        else:
            response = Response(raw, mimetype="application/json")
        response.headers["Vary"] = "Accept-Encoding"
        return response

    @route("/audio/<path:rest>", "audio_unknown")
    def audio_unknown(rest: str) -> Response:  # /audio/<not a track id>: never Dash's page, never a file
        return error(404, f"no audio at {request.path}: audio is served by track id, /audio/<id>")

    @server.before_request
    def audio_only_by_id() -> Response | None:
        # Whatever else matched (Dash's catch-all page route takes "/audio//etc/passwd"): 404.
        if request.path.startswith(("/audio/", f"{API}/audio/")) and request.endpoint not in ("audio", "api_audio"):
            return error(404, f"no audio at {request.path}: audio is served by track id, /audio/<id>")
        return None

    @route(f"{API}/<path:rest>", "api_unknown")
    def api_unknown(rest: str) -> Response:  # before Dash's catch-all page route
        return error(404, f"no such endpoint: {request.path} (see {API}/openapi.json)")

    def json_errors(exc: HTTPException) -> Response | HTTPException:
        if request.path.startswith(API) or request.path.startswith("/audio/"):
            return error(exc.code or 500, f"{exc.name}: {request.method} {request.path}")
        return exc

    server.register_error_handler(HTTPException, json_errors)


def _param(name: str, description: str, kind: str = "string", **extra: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": kind, **extra}}


_ERROR = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_TRACK_ID = {"name": "track_id", "in": "path", "required": True, "schema": {"type": "integer"}}
_SIMILAR_PARAMS = [
    _param("k", "how many", "integer", minimum=1, maximum=K_API_MAX, default=K_DEFAULT),
    _param("where", "SQL boolean expression over tracks' columns, e.g. genre = 'Jazz' AND year >= 1970"),
    _param("max_per_artist", "at most this many results per artist", "integer", minimum=1),
    _param("max_per_album", "at most this many results per album", "integer", minimum=1),
    _param("dedupe", "drop other copies of the same song (same artist and title)", "boolean"),
    _param("mmr", "maximal marginal relevance λ in (0, 1]: 1 = pure similarity, 0.5 = balanced", "number"),
    _param("min_score", "drop results below this cosine similarity", "number"),
]


_VARIETY_PARAMS = [
    _param("where", "SQL boolean expression over tracks' columns"),
    _param("max_per_artist", "at most this many per artist, counted over the whole list", "integer", minimum=1),
    _param("max_per_album", "at most this many per album", "integer", minimum=1),
    _param("dedupe", "one version of each song", "boolean"),
    {**_param("format", "json (default) or m3u (an M3U8 playlist)"),
     "schema": {"type": "string", "enum": ["json", "m3u"]}},
]


def _ok(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"type": "object"}}}}


OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "musicmap explorer API", "version": "1",
             "description": "Read-only access to a musicmap store: tracks, similar tracks, search, the map, audio."},
    "paths": {
        f"{API}/tracks": {"get": {
            "summary": "Tracks, paged and filtered, by id",
            "parameters": [
                _param("offset", "first row", "integer", minimum=0, default=0),
                _param("limit", "rows per page", "integer", minimum=0, maximum=PAGE_MAX, default=100),
                _param("where", "SQL boolean expression over tracks' columns (read-only sandbox)"),
                _param("genre", "exact genre"), _param("artist", "exact artist"), _param("album", "exact album"),
                _param("year_min", "earliest year", "integer"), _param("year_max", "latest year", "integer"),
            ],
            "responses": {"200": _ok("{total, offset, limit, results: [track]}"), "400": _ERROR}}},
        f"{API}/tracks/{{track_id}}": {"get": {
            "summary": "One track: tags, top styles, map position, audio URL",
            "parameters": [_TRACK_ID], "responses": {"200": _ok("track"), "404": _ERROR}}},
        f"{API}/similar/{{track_id}}": {"get": {
            "summary": "Tracks that sound like this one, with scores (cosine similarity)",
            "parameters": [_TRACK_ID, *_SIMILAR_PARAMS],
            "responses": {"200": _ok("{track_id, model, results: [track + score]}"), "400": _ERROR,
                          "404": _ERROR}}},
        f"{API}/similar": {"get": {
            "summary": "Tracks that sound like several tracks together (the centroid of their vectors)",
            "parameters": [{**_param("ids", "track ids separated by commas, e.g. 12,40,7"), "required": True},
                           *_SIMILAR_PARAMS],
            "responses": {"200": _ok("{ids, model, results: [track + score]}"), "400": _ERROR, "404": _ERROR}}},
        UPLOAD_PATH: {"post": {
            "summary": "Tracks that sound like an uploaded clip, and where it lands on the map (only with "
                       "`musicmap serve --allow-upload`; the clip is embedded with the store's model and deleted)",
            "parameters": _SIMILAR_PARAMS,
            "requestBody": {"required": True, "content": {
                "multipart/form-data": {"schema": {"type": "object", "properties": {
                    "file": {"type": "string", "format": "binary"}}}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
            "responses": {"200": _ok("{query: {type, filename, bytes, position}, model, results: [track + score]}"),
                          "400": _ERROR, "403": _ERROR, "413": _ERROR}}},
        f"{API}/path": {"get": {
            "summary": "A path of tracks from one to another: each step near the last and closer to the end",
            "parameters": [{**_param("from", "first track id", "integer", minimum=0), "required": True},
                           {**_param("to", "last track id", "integer", minimum=0), "required": True},
                           _param("steps", "tracks in the path, both ends included", "integer", minimum=2,
                                  maximum=MAX_PATH, default=10),
                           *_VARIETY_PARAMS],
            "responses": {"200": _ok("{from, to, model, steps: [track + to_previous + to_end]}, or M3U"),
                          "400": _ERROR, "404": _ERROR}}},
        f"{API}/extend": {"get": {
            "summary": "Tracks that fit a playlist (never one of its own), by its centroid or by each track",
            "parameters": [{**_param("ids", "the playlist's track ids separated by commas"), "required": True},
                           _param("n", "tracks to add", "integer", minimum=1, maximum=MAX_EXTEND, default=20),
                           {**_param("mode", "centroid (default) or seeds"),
                            "schema": {"type": "string", "enum": ["centroid", "seeds"]}},
                           *_VARIETY_PARAMS],
            "responses": {"200": _ok("{ids, mode, model, results: [track + score]}, or M3U"), "400": _ERROR,
                          "404": _ERROR}}},
        f"{API}/search": {"get": {
            "summary": "Tracks whose artist, title or album contain every word",
            "parameters": [{**_param("q", "words"), "required": True},
                           _param("limit", "how many", "integer", minimum=1, maximum=SEARCH_MAX, default=10)],
            "responses": {"200": _ok("{q, results: [track]}"), "400": _ERROR}}},
        f"{API}/sql": {"get": {
            "summary": "One read-only SQL query over the store (tracks, styles, projections, ...; similarity(id, "
                       "seed) and similar_to(seed, k)); no file access, time and row limits",
            "parameters": [{**_param("q", "one SELECT statement"), "required": True},
                           _param("limit", "row cap", "integer", minimum=1, maximum=SQL_MAX_ROWS, default=1000)],
            "responses": {"200": _ok("{columns, rows, truncated}"), "400": _ERROR}}},
        f"{API}/map": {"get": {
            "summary": "The map's coordinates, compact: parallel arrays id, x, y (and the fields asked for)",
            "parameters": [_param("fields", "comma-separated: title, artist, album, genre, year, style, cluster")],
            "responses": {"200": _ok("{map, method, quality, n, id, x, y, ...}"), "400": _ERROR}}},
        f"{API}/audio/{{track_id}}": {"get": {
            "summary": "The track's audio file (HTTP Range supported)",
            "parameters": [_TRACK_ID],
            "responses": {"200": {"description": "audio bytes"}, "206": {"description": "a byte range"},
                          "404": _ERROR}}},
        f"{API}/openapi.json": {"get": {"summary": "This document", "responses": {"200": _ok("OpenAPI 3")}}},
    },
    "components": {"schemas": {"Error": {"type": "object", "required": ["error", "status"],
                                         "properties": {"error": {"type": "string"},
                                                        "status": {"type": "integer"}}}}},
}
