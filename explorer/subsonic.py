"""OpenSubsonic under ``/rest/``: sonic similarity for music players that speak it.

Endpoints (``.view`` suffix optional; GET or form POST; ``f=xml`` (default), ``json``, ``jsonp``):

    ping, getOpenSubsonicExtensions (public, as the specification requires),
    getSonicSimilarTracks (id, count=10), findSonicPath (startSongId, endSongId, count=25),
    getSimilarSongs2 (id: an artist id, or a song id; count=50), getSong (id), stream (id)

Following the OpenSubsonic specification (``sonicSimilarity`` extension, version 1): results are
``sonicMatch`` entries — a ``Child`` and a ``similarity`` normalised to 0..1 (musicmap's cosine
c maps to (1 + c) / 2: 1.0 is the same sound) — directly under ``subsonic-response``. Errors are
HTTP 200 with ``status="failed"`` and an ``error`` {code, message} (10 missing parameter, 40 wrong
credentials, 43 conflicting mechanisms, 44 invalid API key, 70 not found, 0 other).

Authentication maps Subsonic's to the server's token (``musicmap serve --token``): ``p`` (plain or
``enc:`` hex), ``t`` = md5(token + ``s``), or ``apiKey``; ``u`` is any user name. A server without
a token (loopback only) accepts every request. Track ids are musicmap's; artist and album ids are
``ar-``/``al-`` and a hash of the name.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import mimetypes
import re
from collections.abc import Callable
from importlib import metadata
from pathlib import PurePath
from typing import Any
from xml.etree import ElementTree as ET

import numpy as np
from flask import Flask, Response, request

from store import Store, StoreError, TrackNotFound, TrackRow, relative_to_roots
from store.listening import MAX_PATH
from store.search import artist_key, vectors_of

from .limits import SUBSONIC_MAX_COUNT

PREFIX = "/rest"
API_VERSION = "1.16.1"
NAMESPACE = "http://subsonic.org/restapi"
EXTENSIONS = [{"name": "sonicSimilarity", "versions": [1]}, {"name": "apiKeyAuthentication", "versions": [1]},
              {"name": "formPost", "versions": [1]}]
_CALLBACK = re.compile(r"^[A-Za-z_$][\w$.]{0,63}$")


class SubsonicError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _server_version() -> str:
    try:
        return metadata.version("musicmap")
    except metadata.PackageNotFoundError:
        return "dev"


def _params() -> dict[str, str]:
    values = dict(request.args.items())
    if request.method == "POST" and request.mimetype == "application/x-www-form-urlencoded":
        values.update(request.form.items())
    return values


def _envelope(status: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"status": status, "version": API_VERSION, "type": "musicmap", "serverVersion": _server_version(),
            "openSubsonic": True, **body}


def _xml(parent: ET.Element, name: str, value: Any) -> None:
    """Subsonic's XML convention: scalars are attributes, objects child elements, lists repeated ones."""
    if isinstance(value, list):
        for item in value:
            _xml(parent, name, item)
    elif isinstance(value, dict):
        child = ET.SubElement(parent, name)
        for key, v in value.items():
            if isinstance(v, (dict, list)):
                _xml(child, key, v)
            elif v is not None:
                child.set(key, _text(v))
    elif value is not None:
        ET.SubElement(parent, name).text = _text(value)


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def respond(status: str, body: dict[str, Any], http_status: int = 200) -> Response:
    params = _params()
    fmt = params.get("f", "xml")
    envelope = _envelope(status, body)
    if fmt in ("json", "jsonp"):
        text = json.dumps({"subsonic-response": envelope}, ensure_ascii=False)
        callback = params.get("callback", "")
        if fmt == "jsonp" and _CALLBACK.match(callback):
            return Response(f"{callback}({text});", http_status, mimetype="application/javascript")
        return Response(text, http_status, mimetype="application/json")
    root = ET.Element("subsonic-response", {"xmlns": NAMESPACE})
    for key, value in envelope.items():
        if isinstance(value, (dict, list)):
            _xml(root, key, value)
        else:
            root.set(key, _text(value))
    data = b'<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(root, encoding="utf-8", xml_declaration=False)
    return Response(data, http_status, mimetype="text/xml")


def failed(code: int, message: str, http_status: int = 200) -> Response:
    return respond("failed", {"error": {"code": code, "message": message}}, http_status)


def check_credentials(params: dict[str, str], token: str | None) -> None:
    """Raise :class:`SubsonicError` unless the request's credentials match ``token`` (None: open server)."""
    if "apiKey" in params:
        if any(k in params for k in ("u", "p", "t", "s")):
            raise SubsonicError(43, "Multiple conflicting authentication mechanisms provided")
        if token is not None and not _same(params["apiKey"], token):
            raise SubsonicError(44, "Invalid API key")
        return
    has_password, has_token = "p" in params, "t" in params or "s" in params
    if has_password and has_token:
        raise SubsonicError(43, "Multiple conflicting authentication mechanisms provided")
    if token is None:
        return
    if "u" not in params or not (has_password or ("t" in params and "s" in params)):
        raise SubsonicError(10, "Required parameter is missing: u and p, or u, t and s, or apiKey")
    if has_password:
        given = params["p"]
        if given.startswith("enc:"):
            try:
                given = bytes.fromhex(given[4:]).decode("utf-8")
            except ValueError:
                raise SubsonicError(40, "Wrong username or password") from None
        if not _same(given, token):
            raise SubsonicError(40, "Wrong username or password")
        return
    expected = hashlib.md5((token + params["s"]).encode("utf-8")).hexdigest()  # the protocol's (weak) token
    if not _same(params["t"].lower(), expected):
        raise SubsonicError(40, "Wrong username or password")


def _same(a: str, b: str) -> bool:
    """Equal, compared in constant time (HMAC digests of both)."""
    key = b"musicmap-subsonic"
    return hmac.compare_digest(hmac.new(key, a.encode(), "sha256").digest(),
                               hmac.new(key, b.encode(), "sha256").digest())


def _name_id(prefix: str, name: str) -> str:
    return f"{prefix}-{hashlib.blake2b(name.encode('utf-8'), digest_size=8).hexdigest()}"


def register(server: Flask, store: Store, *, token: str | None,
             send_audio: Callable[[int], Response]) -> None:
    """Add the ``/rest/`` endpoints to ``server``."""

    def child(row: TrackRow) -> dict[str, Any]:
        path = str(row.get("path") or "")
        suffix = PurePath(path).suffix.lstrip(".").lower()
        artist, album, duration = row.get("artist"), row.get("album"), row.get("duration")
        out: dict[str, Any] = {
            "id": str(row["id"]), "isDir": False, "title": row.get("title") or PurePath(path).stem,
            "album": album, "artist": artist, "track": row.get("track_number"), "year": row.get("year"),
            "genre": row.get("genre"),
            "duration": round(float(duration)) if duration is not None else None,
            "size": row.get("size"), "suffix": suffix or None,
            "contentType": mimetypes.guess_type(path)[0] or "application/octet-stream",
            "path": _relative(path), "isVideo": False, "type": "music", "mediaType": "song",
        }
        if isinstance(album, str) and album:
            out["albumId"] = out["parent"] = _name_id("al", f"{row.get('album_artist') or artist or ''}\n{album}")
        if isinstance(artist, str) and artist:
            out["artistId"] = _name_id("ar", artist_key(artist) or artist)
        return {k: v for k, v in out.items() if v is not None}

    roots: list[str] = []

    def _relative(path: str) -> str:
        if not roots:  # the folders indexed, read once
            try:
                roots.extend(store.library_roots() or [""])
            except StoreError:
                roots.append("")
        return relative_to_roots(path, roots)

    def song_id(params: dict[str, str], name: str) -> int:
        raw = params.get(name)
        if raw is None or raw == "":
            raise SubsonicError(10, f"Required parameter is missing: {name}")
        if not raw.isdigit():
            raise SubsonicError(70, f"Song not found: {raw}")
        return int(raw)

    def count(params: dict[str, str], default: int, most: int = SUBSONIC_MAX_COUNT) -> int:
        raw = params.get("count")
        if raw is None or raw == "":
            return default
        if not raw.isdigit() or not 1 <= int(raw) <= most:
            raise SubsonicError(0, f"count={raw!r}: give a whole number from 1 to {most}")
        return int(raw)

    def similarity(cosine: float) -> float:
        return round((1.0 + max(-1.0, min(1.0, float(cosine)))) / 2.0, 6)

    def ping(_p: dict[str, str]) -> dict[str, Any]:
        return {}

    def extensions(_p: dict[str, str]) -> dict[str, Any]:
        return {"openSubsonicExtensions": EXTENSIONS}

    def sonic_similar(p: dict[str, str]) -> dict[str, Any]:
        neighbours = store.similar(song_id(p, "id"), k=count(p, 10))
        return {"sonicMatch": [{"entry": child(n.track), "similarity": similarity(n.score)} for n in neighbours]}

    def sonic_path(p: dict[str, str]) -> dict[str, Any]:
        start, end = song_id(p, "startSongId"), song_id(p, "endSongId")
        steps = store.song_path(start, end, length=count(p, 25, MAX_PATH))
        ids = [s.track_id for s in steps]
        vectors = vectors_of(store.index, ids)
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        to_start = vectors @ vectors[0]
        return {"sonicMatch": [{"entry": child(s.track), "similarity": similarity(c)}
                               for s, c in zip(steps, to_start, strict=True)]}

    def similar_songs2(p: dict[str, str]) -> dict[str, Any]:
        raw = p.get("id")
        if not raw:
            raise SubsonicError(10, "Required parameter is missing: id")
        n = count(p, 50)
        if raw.isdigit():  # a song id: an instant mix from the song
            songs = [x.track for x in store.similar(int(raw), k=n)]
        else:
            seeds = _artist_tracks(raw)
            if not seeds:
                raise SubsonicError(70, f"Artist not found: {raw}")
            songs = [x.track for x in store.search(seeds[:100], k=n)]
        return {"similarSongs2": {"song": [child(t) for t in songs]}}

    def _artist_tracks(artist_id: str) -> list[int]:
        if not artist_id.startswith("ar-"):
            return []
        found = store.sql("SELECT id, artist FROM tracks WHERE artist IS NOT NULL", max_rows=10_000_000).rows
        return [int(i) for i, a in found if _name_id("ar", artist_key(a) or a) == artist_id]

    def get_song(p: dict[str, str]) -> dict[str, Any]:
        return {"song": child(store.track(song_id(p, "id")))}

    methods: dict[str, Callable[[dict[str, str]], dict[str, Any]]] = {
        "ping": ping, "getOpenSubsonicExtensions": extensions, "getSonicSimilarTracks": sonic_similar,
        "findSonicPath": sonic_path, "getSimilarSongs2": similar_songs2, "getSong": get_song,
    }

    def endpoint(method: str) -> Response:
        name = method[:-5] if method.endswith(".view") else method
        params = _params()
        try:
            if name != "getOpenSubsonicExtensions":  # public, as the specification requires
                check_credentials(params, token)
            if name == "stream":
                track_id = song_id(params, "id")
                return send_audio(track_id)
            fn = methods.get(name)
            if fn is None:
                return failed(0, f"Unknown or unsupported method: {name}", 404)
            return respond("ok", fn(params))
        except SubsonicError as exc:
            return failed(exc.code, exc.message)
        except TrackNotFound as exc:  # its text names the store's folder: not for the web
            return failed(70, f"no track with id {exc.track_id}")
        except StoreError as exc:
            return failed(0, str(exc))

    server.add_url_rule(f"{PREFIX}/<path:method>", "subsonic", endpoint, methods=["GET", "POST"])
