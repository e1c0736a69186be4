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

Each method is a method of :class:`Subsonic` under one ``@method(name, *args)`` line, its row of
:data:`METHODS` (the OpenSubsonic name, its parameters as :class:`Arg`); one dispatcher,
:meth:`Subsonic.endpoint`, checks the credentials, reads the parameters and writes the envelope.
Adding a method is one method and its ``@method`` line.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import mimetypes
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import PurePath
from typing import Any, Literal, TypeVar
from xml.etree import ElementTree as ET

from flask import Flask, Response, request

from store import Store, StoreError, TrackNotFound, TrackRow, is_whole_number, l2_normalise, relative_to_roots
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


Args = dict[str, Any]
"""A method's parameters, read and checked (:attr:`Method.args`), by name."""
Body = dict[str, Any]
"""What an ``ok`` answer carries under ``subsonic-response`` besides the envelope."""
Answer = TypeVar("Answer", bound=Callable[..., Any])


@dataclass(frozen=True)
class Arg:
    """One parameter of an OpenSubsonic method, read from the query string or a form post.

    ``kind``: ``song`` (a track id: not digits is error 70, as the specification has it for an
    unknown song), ``count`` (a whole number from 1 to ``most``: else error 0) or ``string``. A
    ``required`` one that is missing or empty is error 10; an optional one is then ``default``.
    """

    name: str
    kind: Literal["song", "count", "string"] = "string"
    required: bool = False
    default: int | None = None
    most: int = SUBSONIC_MAX_COUNT

    def read(self, params: Mapping[str, str]) -> int | str | None:
        """This parameter's value from ``params``; :class:`SubsonicError` when it is missing or bad."""
        raw = params.get(self.name)
        if raw is None or raw == "":
            if self.required:
                raise SubsonicError(10, f"Required parameter is missing: {self.name}")
            return self.default
        if self.kind == "song":
            if not is_whole_number(raw):
                raise SubsonicError(70, f"Song not found: {raw}")
            return int(raw)
        if self.kind == "count":
            if not is_whole_number(raw) or not 1 <= int(raw) <= self.most:
                raise SubsonicError(0, f"{self.name}={raw!r}: give a whole number from 1 to {self.most}")
            return int(raw)
        return raw


def song(name: str) -> Arg:
    """A required song (track) id named ``name``."""
    return Arg(name, "song", required=True)


def count(default: int, most: int = SUBSONIC_MAX_COUNT) -> Arg:
    """``count``: how many songs, ``default`` when not given, at most ``most``."""
    return Arg("count", "count", default=default, most=most)


@dataclass(frozen=True)
class Method:
    """One OpenSubsonic method: its name, the :class:`Subsonic` method answering it, its parameters
    (in the order they are read: the first bad one is the error); a ``public`` one needs no
    credentials."""

    name: str
    attribute: str
    args: tuple[Arg, ...] = ()
    public: bool = False


METHODS: dict[str, Method] = {}
"""Every OpenSubsonic method served, by name: one row per method, declared by :func:`method` on the
:class:`Subsonic` method that answers it."""


def method(name: str, *args: Arg, public: bool = False) -> Callable[[Answer], Answer]:
    """Declare the decorated :class:`Subsonic` method the answer to OpenSubsonic's ``name``, taking
    ``args`` (read and checked before it is called, into its ``args`` dict)."""
    def declare(fn: Answer) -> Answer:
        METHODS[name] = Method(name, fn.__name__, args, public)
        return fn
    return declare


def similarity(cosine: float) -> float:
    """The ``sonicSimilarity`` extension's 0..1 for musicmap's cosine: (1 + c) / 2."""
    return round((1.0 + max(-1.0, min(1.0, float(cosine)))) / 2.0, 6)


class Subsonic:
    """OpenSubsonic over one store: one method per OpenSubsonic method (:data:`METHODS`), each taking
    its checked parameters and returning the body of an ``ok`` answer (``stream``: the audio
    itself); :meth:`endpoint` does the rest once for all of them — credentials, parameters, the
    XML/JSON envelope and every error as a ``failed`` answer. ``send_audio(track_id)`` is the
    explorer's audio route (:meth:`explorer.api.Api.send_audio`)."""

    def __init__(self, store: Store, *, token: str | None, send_audio: Callable[[int], Response]) -> None:
        self.store, self.token, self.send_audio = store, token, send_audio
        self._roots: list[str] = []

    def endpoint(self, method: str) -> Response:
        """The Flask view of ``/rest/<method>`` (``.view`` suffix optional)."""
        name = method.removesuffix(".view")
        params = _params()
        declared = METHODS.get(name)
        try:
            if declared is None or not declared.public:
                check_credentials(params, self.token)
            if declared is None:
                return failed(0, f"Unknown or unsupported method: {name}", 404)
            answer = getattr(self, declared.attribute)({a.name: a.read(params) for a in declared.args})
            return answer if isinstance(answer, Response) else respond("ok", answer)
        except SubsonicError as exc:
            return failed(exc.code, exc.message)
        except TrackNotFound as exc:  # its text names the store's folder: not for the web
            return failed(70, f"no track with id {exc.track_id}")
        except StoreError as exc:
            return failed(0, str(exc))

    # -- the methods ------------------------------------------------------------------------------
    @method("ping")
    def ping(self, args: Args) -> Body:
        return {}

    @method("getOpenSubsonicExtensions", public=True)  # public, as the specification requires
    def extensions(self, args: Args) -> Body:
        return {"openSubsonicExtensions": EXTENSIONS}

    @method("getSonicSimilarTracks", song("id"), count(10))
    def sonic_similar(self, args: Args) -> Body:
        neighbours = self.store.similar(args["id"], k=args["count"])
        return {"sonicMatch": [self._match(n.track, n.score) for n in neighbours]}

    @method("findSonicPath", song("startSongId"), song("endSongId"), count(25, MAX_PATH))
    def sonic_path(self, args: Args) -> Body:
        """Each step's similarity is to the start song."""
        steps = self.store.song_path(args["startSongId"], args["endSongId"], length=args["count"])
        vectors = l2_normalise(vectors_of(self.store.index, [s.track_id for s in steps]))
        to_start = vectors @ vectors[0]
        return {"sonicMatch": [self._match(s.track, c) for s, c in zip(steps, to_start, strict=True)]}

    @method("getSimilarSongs2", Arg("id", required=True), count(50))
    def similar_songs2(self, args: Args) -> Body:
        """``id``: a song id (an instant mix from the song), or an artist id (from the artist's songs)."""
        raw, n = args["id"], args["count"]
        if is_whole_number(raw):
            songs = [x.track for x in self.store.similar(int(raw), k=n)]
        else:
            seeds = self._artist_tracks(raw)
            if not seeds:
                raise SubsonicError(70, f"Artist not found: {raw}")
            songs = [x.track for x in self.store.search(seeds[:100], k=n)]
        return {"similarSongs2": {"song": [self._child(t) for t in songs]}}

    @method("getSong", song("id"))
    def get_song(self, args: Args) -> Body:
        return {"song": self._child(self.store.track(args["id"]))}

    @method("stream", song("id"))
    def stream(self, args: Args) -> Response:
        return self.send_audio(args["id"])

    # -- what the methods share -------------------------------------------------------------------
    def _match(self, track: TrackRow, cosine: float) -> Body:
        """A ``sonicMatch``: the song and its similarity."""
        return {"entry": self._child(track), "similarity": similarity(cosine)}

    def _child(self, row: TrackRow) -> Body:
        """A track as OpenSubsonic's ``Child`` (fields the track lacks are left out)."""
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
            "path": self._relative(path), "isVideo": False, "type": "music", "mediaType": "song",
        }
        if isinstance(album, str) and album:
            out["albumId"] = out["parent"] = _name_id("al", f"{row.get('album_artist') or artist or ''}\n{album}")
        if isinstance(artist, str) and artist:
            out["artistId"] = _name_id("ar", artist_key(artist) or artist)
        return {k: v for k, v in out.items() if v is not None}

    def _relative(self, path: str) -> str:
        if not self._roots:  # the folders indexed, read once
            try:
                self._roots.extend(self.store.library_roots() or [""])
            except StoreError:
                self._roots.append("")
        return relative_to_roots(path, self._roots)

    def _artist_tracks(self, artist_id: str) -> list[int]:
        if not artist_id.startswith("ar-"):
            return []
        found = self.store.sql("SELECT id, artist FROM tracks WHERE artist IS NOT NULL", max_rows=10_000_000).rows
        return [int(i) for i, a in found if _name_id("ar", artist_key(a) or a) == artist_id]


def register(server: Flask, store: Store, *, token: str | None,
             send_audio: Callable[[int], Response]) -> None:
    """Add the ``/rest/`` endpoints to ``server`` (see :class:`Subsonic`)."""
    subsonic = Subsonic(store, token=token, send_audio=send_audio)
    server.add_url_rule(f"{PREFIX}/<path:method>", "subsonic", subsonic.endpoint, methods=["GET", "POST"])
