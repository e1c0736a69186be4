"""OpenSubsonic under ``/rest/``: sonic similarity for music players that speak it.

Endpoints (``.view`` suffix optional; GET or form POST; ``f=xml`` (default), ``json``, ``jsonp``):

    ping, getOpenSubsonicExtensions (public, as the specification requires),
    getSonicSimilarTracks (id, count=10), findSonicPath (startSongId, endSongId, count=25),
    getSimilarSongs2 (id: an artist id, or a song id; count=50), getSong (id), stream (id),
    download (id), getCoverArt (id: a song, album or artist; size), getTopSongs (artist, count=50),
    scrobble (id..., time..., submission=true), star (id...), unstar (id...), setRating (id, rating),
    getStarred2, getPlaylists, getPlaylist (id),
    getLicense, getMusicFolders, getUser (username), getIndexes (ifModifiedSince), getArtists,
    getArtist (id), getAlbum (id), getAlbumList2 (type, size=10, offset=0, fromYear, toYear, genre),
    getGenres, getSongsByGenre (genre, count=10, offset=0), getRandomSongs (size=10, genre, fromYear,
    toYear), search3 (query, artistCount/albumCount/songCount=20 and their offsets)

Following the OpenSubsonic specification (``sonicSimilarity`` extension, version 1): results are
``sonicMatch`` entries — a ``Child`` and a ``similarity`` normalised to 0..1 (musicmap's cosine
c maps to (1 + c) / 2: 1.0 is the same sound) — directly under ``subsonic-response``. Errors are
HTTP 200 with ``status="failed"`` and an ``error`` {code, message} (10 missing parameter, 40 wrong
credentials, 43 conflicting mechanisms, 44 invalid API key, 70 not found, 0 other).

Authentication maps Subsonic's to the server's token (``musicmap serve --token``): ``p`` (plain or
``enc:`` hex), ``t`` = md5(token + ``s``), or ``apiKey``; ``u`` is any user name. A server without
a token (loopback only) accepts every request. Track ids are musicmap's; artist and album ids are
``ar-``/``al-`` and a hash of the normalised name (album: album artist and album name), so they hold
across re-index runs and file moves; what an album is (tags, else its folder; discs; various
artists) is :mod:`explorer.catalog`'s rule. Page sizes over 500 are 500, offsets past the end give
an empty page; ``musicFolderId`` is accepted and not filtered by (one library).

Players feed the person's taste (issue #31, :mod:`store.taste`): ``scrobble`` with ``submission=true``
(the default) records a ``played`` event, ``submission=false`` ("now playing") notes the track,
and a new "now playing" from the same user and client before the previous track's end (and before
it was scrobbled) records that one ``skipped`` at the second reached; ``time`` (milliseconds since
1970) dates the event and makes its key, so a scrobble sent twice is recorded once. ``star`` is
``liked``, ``unstar`` takes it back; ``setRating`` 1 is ``disliked``, 4 or 5 ``liked``, 0, 2 or 3
take both back. The source of each event is ``subsonic:<c>`` (the client's name). ``getStarred2``
lists the liked songs; ``getPlaylists`` lists one playlist, "musicmap · For you", made afresh from
:meth:`store.Store.mix` each time it is asked for (empty until something is liked or played). Every
list (``getSonicSimilarTracks``, ``findSonicPath``, ``getSimilarSongs2``) is steered by that taste:
disliked songs never appear. A server that does not record (``Store.record_events`` False, or a
read-only store folder) answers the recording methods with an error saying so.

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
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import PurePath
from typing import Any, Literal, TypeVar
from xml.etree import ElementTree as ET

import numpy as np
from flask import Flask, Response, g, has_request_context, request
from werkzeug.datastructures import MultiDict

from store import (
    Event,
    InvalidQuery,
    NotRecording,
    Store,
    StoreError,
    Taste,
    TrackNotFound,
    TrackRow,
    genre_key,
    is_whole_number,
    l2_normalise,
    relative_to_roots,
)
from store.journal import FUTURE_SLACK_S, MAX_SECONDS
from store.listening import MAX_PATH
from store.search import artist_key, vectors_of
from store.taste import LATE_SKIP_SHARE

from .art import CoverArt
from .catalog import IGNORED_ARTICLES, Album, Artist, Catalog, CatalogCache, index_letter, name_id
from .limits import SUBSONIC_MAX_COUNT, SUBSONIC_MAX_OFFSET

PREFIX = "/rest"
API_VERSION = "1.16.1"
NAMESPACE = "http://subsonic.org/restapi"
EXTENSIONS = [{"name": "sonicSimilarity", "versions": [1]}, {"name": "apiKeyAuthentication", "versions": [1]},
              {"name": "formPost", "versions": [1]}]
_CALLBACK = re.compile(r"^[A-Za-z_$][\w$.]{0,63}$")
_NOT_SOURCE = re.compile(r"[^A-Za-z0-9_.:@ -]")
_PLAIN_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
NOT_RECORDING = ("cannot record listening: this server does not record (its store folder is read-only, or it was "
                 "started not to record)")
COVER_MAX = 1200
"""The largest cover art edge served (``getCoverArt`` without ``size``, or a larger one)."""
FOR_YOU_ID = "foryou"
FOR_YOU_NAME = "musicmap · For you"
FOR_YOU_SIZE = 30
"""Songs in the "For you" playlist (:meth:`store.Store.mix`)."""


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


Params = MultiDict[str, str]
"""A request's parameters: the query string's, a form post's replacing them name by name; a name
may repeat (``id=1&id=2``): ``get`` gives the first, ``getlist`` all."""


def _params() -> Params:
    values: Params = MultiDict(request.args)
    if request.method == "POST" and request.mimetype == "application/x-www-form-urlencoded":
        for key in request.form:
            values.setlist(key, request.form.getlist(key))
    return values


def _envelope(status: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"status": status, "version": API_VERSION, "type": "musicmap", "serverVersion": _server_version(),
            "openSubsonic": True, **body}


def _xml(parent: ET.Element, name: str, value: Any) -> None:
    """Subsonic's XML convention: scalars are attributes, objects child elements, lists repeated ones
    (a list of scalars: elements with the value as text, as ``folder`` of ``user``); a ``value`` is
    its element's text (``<genre songCount="3" albumCount="1">Jazz</genre>``)."""
    if isinstance(value, list):
        for item in value:
            _xml(parent, name, item)
    elif isinstance(value, dict):
        child = ET.SubElement(parent, name)
        for key, v in value.items():
            if isinstance(v, (dict, list)):
                _xml(child, key, v)
            elif key == "value" and v is not None:  # a genre's name is the element's text
                child.text = _text(v)
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


def check_credentials(params: Mapping[str, str], token: str | None) -> None:
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
        if not _private_channel():
            raise SubsonicError(42, "A plain password (p) is accepted only on this machine or over HTTPS: send a "
                                    "salted token (t and s) or apiKey")
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


def _private_channel() -> bool:
    """Whether a password sent in this request stays private: the client is on this machine
    (loopback), or the request came over HTTPS. Outside a request (tests calling in): True."""
    if not has_request_context():
        return True
    import ipaddress

    try:
        loopback = ipaddress.ip_address((request.remote_addr or "").split("%")[0]).is_loopback
    except ValueError:
        loopback = False
    return loopback or request.is_secure


def _same(a: str, b: str) -> bool:
    """Equal, compared in constant time (HMAC digests of both)."""
    key = b"musicmap-subsonic"
    return hmac.compare_digest(hmac.new(key, a.encode(), "sha256").digest(),
                               hmac.new(key, b.encode(), "sha256").digest())


def folder_id(root: str) -> int:
    """The ``musicFolder`` id of a library folder: a whole number from its path, the same on every run."""
    return int.from_bytes(hashlib.blake2b(root.encode("utf-8"), digest_size=4).digest(), "big") & 0x7FFFFFFF


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


Args = dict[str, Any]
"""A method's parameters, read and checked (:attr:`Method.args`), by name."""
Body = dict[str, Any]
"""What an ``ok`` answer carries under ``subsonic-response`` besides the envelope."""
Answer = TypeVar("Answer", bound=Callable[..., Any])


@dataclass(frozen=True)
class Arg:
    """One parameter of an OpenSubsonic method, read from the query string or a form post.

    ``kind``: ``song`` (a track id: not digits is error 70, as the specification has it for an
    unknown song), ``count`` (a whole number from ``least`` to ``most``: else error 0; with ``clamp``
    a larger one is ``most``), ``flag``
    (``true`` or ``false``: else error 0) or ``string``. A ``required`` one that is missing or empty
    is error 10; an optional one is then ``default``. ``many``: the parameter may repeat
    (``id=1&id=2``), and its value is the list of them (empty ones left out; ``[]`` when none).
    """

    name: str
    kind: Literal["song", "count", "flag", "string"] = "string"
    required: bool = False
    default: int | None = None
    most: int = SUBSONIC_MAX_COUNT
    least: int = 1
    many: bool = False
    clamp: bool = False
    """A ``count`` over ``most`` is ``most`` (a page size or offset), not an error."""
    blank: bool = False
    """An empty value is the value ``""`` (``search3``'s empty query), not a missing one."""

    def read(self, params: Params) -> int | str | bool | list[int | str | bool] | None:
        """This parameter's value from ``params``; :class:`SubsonicError` when it is missing or bad."""
        if self.many:
            raws = [r for r in params.getlist(self.name) if r != ""]
            if not raws and self.required:
                raise SubsonicError(10, f"Required parameter is missing: {self.name}")
            return [self._one(r) for r in raws]
        raw = params.get(self.name)
        if raw == "" and self.blank:
            return raw
        if raw is None or raw == "":
            if self.required:
                raise SubsonicError(10, f"Required parameter is missing: {self.name}")
            return self.default
        return self._one(raw)

    def _one(self, raw: str) -> int | str | bool:
        if self.kind == "song":
            if not is_whole_number(raw) or int(raw) >= 1 << 63:  # echoed only when it cannot be a path
                shown = raw if _PLAIN_ID.match(raw) else "(a song id is a whole number)"
                raise SubsonicError(70, f"Song not found: {shown}")
            return int(raw)
        if self.kind == "count":
            if self.clamp and is_whole_number(raw) and int(raw) >= self.least:
                return min(int(raw), self.most)
            if not is_whole_number(raw) or not self.least <= int(raw) <= self.most:
                raise SubsonicError(0, f"{self.name}={raw!r}: give a whole number from {self.least} to {self.most}")
            return int(raw)
        if self.kind == "flag":
            if raw.lower() not in ("true", "false"):
                raise SubsonicError(0, f"{self.name}={raw!r}: give true or false")
            return raw.lower() == "true"
        return raw


def song(name: str) -> Arg:
    """A required song (track) id named ``name``."""
    return Arg(name, "song", required=True)


def count(default: int, most: int = SUBSONIC_MAX_COUNT) -> Arg:
    """``count``: how many songs, ``default`` when not given, at most ``most``."""
    return Arg("count", "count", default=default, most=most)


def songs(name: str = "id") -> Arg:
    """One or more song (track) ids named ``name`` (``id=1&id=2``), at least one."""
    return Arg(name, "song", required=True, many=True)


def size(name: str, default: int, most: int = SUBSONIC_MAX_COUNT) -> Arg:
    """A page size named ``name``: 0 to ``most`` (a larger one is ``most``), ``default`` when not given."""
    return Arg(name, "count", default=default, most=most, least=0, clamp=True)


def offset(name: str = "offset") -> Arg:
    """A page offset named ``name``: 0 or more (past the end: an empty page), 0 when not given."""
    return Arg(name, "count", default=0, most=SUBSONIC_MAX_OFFSET, least=0, clamp=True)


def year(name: str, required: bool = False) -> Arg:
    """A year named ``name`` (a whole number, 0 to 9999)."""
    return Arg(name, "count", required=required, least=0, most=9999)


CLIENT = (Arg("u"), Arg("c"))
"""Who is playing: the user name and the client's (the ``c`` parameter), for a recording method."""


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


@dataclass
class NowPlaying:
    """The song a user's client said it is playing (``scrobble`` with ``submission=false``): since
    when (Unix seconds: its ``time``, else when it was said; ``heard``: when it was said, by this
    server's clock), its length, and whether it was scrobbled as played since."""

    track_id: int
    since: float
    heard: float
    duration: float | None
    scrobbled: bool = False


def source_of(client: str | None) -> str:
    """The journal's source for a Subsonic client named ``client`` (the ``c`` parameter):
    ``subsonic:<client>``, other characters than ``[A-Za-z0-9_.:@ -]`` as ``_``, 64 at most."""
    name = _NOT_SOURCE.sub("_", (client or "").strip())
    return f"subsonic:{name}"[:64] if name else "subsonic"


def _seconds(value: object) -> float | None:
    """A track's duration as the journal takes it (None when unknown or out of its range)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= MAX_SECONDS:
        return float(value)
    return None


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _moment(raw: str | None, now: float) -> float:
    """A ``time`` parameter (milliseconds since 1970) as Unix seconds (``now`` when not given)."""
    if raw is None:
        return now
    if raw.startswith("-") and is_whole_number(raw[1:]):
        raise SubsonicError(0, f"time={raw}: before 1970 (give milliseconds since 1 January 1970)")
    if not is_whole_number(raw):
        raise SubsonicError(0, f"time={raw!r}: give milliseconds since 1 January 1970 (a whole number)")
    at = int(raw) / 1000.0
    if at > now + FUTURE_SLACK_S:
        raise SubsonicError(0, f"time={raw}: {at - now:.0f} s in the future by this server's clock "
                               "(give milliseconds since 1 January 1970)")
    return at


def similarity(cosine: float) -> float:
    """The ``sonicSimilarity`` extension's 0..1 for musicmap's cosine: (1 + c) / 2."""
    return round((1.0 + max(-1.0, min(1.0, float(cosine)))) / 2.0, 6)


def _artist(artist: Artist) -> Body:
    """An artist as OpenSubsonic's ``ArtistID3``."""
    return {"id": artist.id, "name": artist.name, "coverArt": artist.id, "albumCount": len(artist.albums)}


class Subsonic:
    """OpenSubsonic over one store: one method per OpenSubsonic method (:data:`METHODS`), each taking
    its checked parameters and returning the body of an ``ok`` answer (``stream``: the audio
    itself); :meth:`endpoint` does the rest once for all of them — credentials, parameters, the
    XML/JSON envelope and every error as a ``failed`` answer. ``send_audio(track_id)`` is the
    explorer's audio route (:meth:`explorer.api.Api.send_audio`)."""

    def __init__(self, store: Store, *, token: str | None, send_audio: Callable[[int], Response],
                 cover_art: CoverArt | None = None) -> None:
        self.store, self.token, self.send_audio = store, token, send_audio
        self.cover_art = cover_art if cover_art is not None else CoverArt()
        """The thumbnails' cache (the explorer's own: one picture decoded once for both)."""
        self._roots: list[str] = []
        self.clock: Callable[[], float] = time.time
        """This server's clock (Unix seconds), for "now playing" and events without a ``time``."""
        self._playing: dict[tuple[str, str], NowPlaying] = {}
        """What each (user, source) is playing now, by the last "now playing"."""
        self._playing_lock = threading.Lock()
        self._taste: tuple[object, Taste] | None = None
        self._catalogs = CatalogCache(store)
        self._names: tuple[Catalog, list[tuple[str, Artist]], list[tuple[str, Album]]] | None = None

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
        except NotRecording:  # its text may name the store's folder
            return failed(0, NOT_RECORDING)
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

    @method("getTopSongs", Arg("artist", required=True), count(50))
    def top_songs(self, args: Args) -> Body:
        """An artist's (by name, as the specification has it) most played songs by the listening
        journal: plays, then liked, then the latest heard; songs never played nor liked are left out
        (musicmap asks no outside service). An unknown artist: an empty list."""
        name = str(args["artist"])
        tracks = self._artist_tracks(name_id("ar", artist_key(name) or name))
        taste = self._taste_now().tracks
        heard = [taste[t] for t in tracks if t in taste and (taste[t].plays or taste[t].liked)]
        heard.sort(key=lambda t: (-t.plays, not t.liked, -t.last))
        return {"topSongs": {"song": self._children([t.track_id for t in heard[: args["count"]]])}}

    @method("getSong", song("id"))
    def get_song(self, args: Args) -> Body:
        return {"song": self._child(self.store.track(args["id"]))}

    @method("stream", song("id"))
    def stream(self, args: Args) -> Response:
        """The file as it is (HTTP Range), or error 70 for an unknown song."""
        self.store.track(args["id"])
        return self.send_audio(args["id"])

    @method("download", song("id"))
    def download(self, args: Args) -> Response:
        """The file as it is (as ``stream``: musicmap does not transcode)."""
        self.store.track(args["id"])
        return self.send_audio(args["id"])

    @method("getCoverArt", Arg("id", required=True), Arg("size", "count", most=COVER_MAX, clamp=True))
    def get_cover_art(self, args: Args) -> Response:
        """The picture of a song (``coverArt`` of a ``Child``), an album (``al-…``: its first song's)
        or an artist (``ar-…``: their first album's): embedded in the file, else the folder's image,
        as a JPEG fitting ``size`` × ``size`` (not enlarged; no ``size``: at most :data:`COVER_MAX`);
        error 70 when there is none. Kept in memory once made (:class:`explorer.art.CoverArt`)."""
        track_id = self._art_track(str(args["id"]))
        path = self.store.file_path(track_id)
        picture = self.cover_art.get(track_id, path, int(args["size"] or COVER_MAX))
        if picture.source == "none":
            raise SubsonicError(70, "Cover art not found")
        response = Response(picture.data, mimetype=picture.mimetype)
        response.headers["Cache-Control"] = "private, max-age=86400"
        return response

    def _art_track(self, raw: str) -> int:
        """The song whose picture stands for ``raw`` (a song, album or artist id); error 70 otherwise."""
        if raw.isascii() and raw.isdigit() and len(raw) < 19:
            track_id = int(raw)
            if track_id not in self.store.track_rows([track_id]):
                raise SubsonicError(70, "Cover art not found")
            return track_id
        catalog = self._catalog()
        artist = catalog.artists.get(raw)
        album = catalog.albums.get(artist.albums[0] if artist is not None and artist.albums else raw)
        if album is None or not album.songs:
            raise SubsonicError(70, "Cover art not found")
        return album.songs[0]

    # -- browsing: the library's folders, artists, albums, genres; search ----------------------------
    @method("getLicense")
    def license(self, args: Args) -> Body:
        return {"license": {"valid": True}}

    @method("getMusicFolders")
    def music_folders(self, args: Args) -> Body:
        """The library folders given to ``musicmap index``."""
        return {"musicFolders": {"musicFolder": self._folders()}}

    @method("getUser", Arg("username", required=True))
    def user(self, args: Args) -> Body:
        """The one user (any name: the server has one token): may stream and download, nothing else."""
        roles = dict.fromkeys(("adminRole", "settingsRole", "uploadRole", "playlistRole", "coverArtRole", "commentRole",
                               "podcastRole", "jukeboxRole", "shareRole", "videoConversionRole"), False)
        return {"user": {"username": args["username"], "scrobblingEnabled": self._recording(), **roles,
                         "streamRole": True, "downloadRole": True, "folder": [f["id"] for f in self._folders()]}}

    @method("getIndexes", Arg("ifModifiedSince", "count", least=0, most=1 << 62, clamp=True))
    def indexes(self, args: Args) -> Body:
        """Artists by letter (``Artist`` entries); only the time when nothing changed since ``ifModifiedSince``."""
        catalog = self._catalog()
        body: Body = {"ignoredArticles": IGNORED_ARTICLES, "lastModified": catalog.modified_ms}
        since = args["ifModifiedSince"]
        if since is None or since < catalog.modified_ms:
            body["index"] = self._letters(catalog, lambda a: {"id": a.id, "name": a.name})
        return {"indexes": body}

    @method("getArtists")
    def artists(self, args: Args) -> Body:
        """Artists by letter (``ArtistID3``), "The" and "A" ignored."""
        return {"artists": {"ignoredArticles": IGNORED_ARTICLES, "index": self._letters(self._catalog(), _artist)}}

    @method("getArtist", Arg("id", required=True))
    def artist(self, args: Args) -> Body:
        """An artist and their albums (those they are the album artist of or have a song on)."""
        catalog = self._catalog()
        found = catalog.artists.get(args["id"])
        if found is None:
            raise SubsonicError(70, "Artist not found")
        taste = self._taste_now()
        return {"artist": {**_artist(found), "album": [self._album(catalog.albums[a], taste) for a in found.albums]}}

    @method("getAlbum", Arg("id", required=True))
    def album(self, args: Args) -> Body:
        """An album and its songs, in order (by folder, track number, file)."""
        found = self._catalog().albums.get(args["id"])
        if found is None:
            raise SubsonicError(70, "Album not found")
        rows = self.store.track_rows(list(found.songs))
        songs = [self._child(rows[t]) for t in found.songs if t in rows]
        return {"album": {**self._album(found, self._taste_now()), "song": songs}}

    @method("getAlbumList2", Arg("type", required=True), size("size", 10), offset(), year("fromYear"), year("toYear"),
            Arg("genre"))
    def album_list2(self, args: Args) -> Body:
        """Albums by ``type``: ``random``, ``newest`` (first added), ``alphabeticalByName``, ``alphabeticalByArtist``,
        ``byYear`` (``fromYear`` to ``toYear``, latest first when ``fromYear`` is the later), ``byGenre``
        (every spelling of ``genre``), and from the listening journal ``frequent`` (most played songs),
        ``recent`` (latest played), ``starred`` (latest liked song) and ``highest`` (most liked songs)."""
        catalog, kind, n, skip = self._catalog(), args["type"], args["size"], args["offset"]
        if kind == "random":
            albums = list(catalog.albums.values())
            chosen = random.sample(albums, min(n, len(albums)))
        elif kind in ("newest", "alphabeticalByName", "alphabeticalByArtist"):
            chosen = catalog.ordered(kind)[skip:skip + n]
        elif kind == "byYear":
            if args["fromYear"] is None or args["toYear"] is None:
                raise SubsonicError(10, "Required parameter is missing: fromYear and toYear (type=byYear)")
            first, last = args["fromYear"], args["toYear"]
            low, high = min(first, last), max(first, last)
            within = [a for a in catalog.ordered("byYear") if a.year is not None and low <= a.year <= high]
            chosen = (within if first <= last else within[::-1])[skip:skip + n]
        elif kind == "byGenre":
            if not args["genre"]:
                raise SubsonicError(10, "Required parameter is missing: genre (type=byGenre)")
            key = genre_key(args["genre"])
            chosen = [a for a in catalog.ordered("alphabeticalByName") if key in a.genre_keys][skip:skip + n]
        elif kind in ("frequent", "recent", "starred", "highest"):
            chosen = [catalog.albums[a] for a in self._by_taste(catalog, kind)][skip:skip + n]
        else:
            raise SubsonicError(0, f"type={kind!r}: give random, newest, frequent, recent, starred, highest, "
                                   "alphabeticalByName, alphabeticalByArtist, byYear or byGenre")
        taste = self._taste_now()
        return {"albumList2": {"album": [self._album(a, taste) for a in chosen]}}

    @method("getGenres")
    def genres(self, args: Args) -> Body:
        """Every genre (its spellings that differ only in case, spaces or punctuation are one), the largest first."""
        groups = self.store.genre_groups()
        albums: dict[str, int] = {}
        for album in self._catalog().albums.values():
            for key in album.genre_keys:
                albums[key] = albums.get(key, 0) + 1
        order = sorted(groups.tracks, key=lambda k: (-groups.tracks[k], groups.names[k]))
        return {"genres": {"genre": [{"songCount": groups.tracks[k], "albumCount": albums.get(k, 0),
                                      "value": groups.names[k]} for k in order]}}

    @method("getSongsByGenre", Arg("genre", required=True), size("count", 10), offset())
    def songs_by_genre(self, args: Args) -> Body:
        """The songs of a genre (every spelling of it), by id."""
        ids = self._matching([self._genre_clause(args["genre"])])
        return {"songsByGenre": {"song": self._children(ids[args["offset"]:args["offset"] + args["count"]])}}

    @method("getRandomSongs", size("size", 10), Arg("genre"), year("fromYear"), year("toYear"))
    def random_songs(self, args: Args) -> Body:
        """Songs at random, of ``genre`` and from ``fromYear`` to ``toYear`` when given."""
        clauses = [self._genre_clause(args["genre"])] if args["genre"] else []
        if args["fromYear"] is not None:
            clauses.append(f"year >= {int(args['fromYear'])}")
        if args["toYear"] is not None:
            clauses.append(f"year <= {int(args['toYear'])}")
        ids = self._matching(clauses) if clauses else list(self._catalog().album_of)
        return {"randomSongs": {"song": self._children(random.sample(ids, min(args["size"], len(ids))))}}

    @method("search3", Arg("query", blank=True), size("artistCount", 20), offset("artistOffset"),
            size("albumCount", 20), offset("albumOffset"), size("songCount", 20), offset("songOffset"))
    def search3(self, args: Args) -> Body:
        """Artists, albums and songs whose names hold every word of ``query`` (songs: as
        :meth:`store.Store.find_tracks`, artist, title, album and file name); an empty query (or ``""``)
        is everything, page by page, for a client that copies the library."""
        if args["query"] is None:
            raise SubsonicError(10, "Required parameter is missing: query")
        words = [w for w in args["query"].replace('"', " ").casefold().split() if w.strip("*")]
        artist_names, album_names = self._search_names(self._catalog())
        artists = [a for name, a in artist_names if all(w in name for w in words)]
        albums = [a for name, a in album_names if all(w in name for w in words)]
        a_skip, b_skip, s_skip = args["artistOffset"], args["albumOffset"], args["songOffset"]
        if words:
            found = self.store.find_tracks(" ".join(words), limit=s_skip + args["songCount"])
            song_ids = [int(i) for i in found["id"]][s_skip:]
        else:
            _, page = self.store.page_tracks(offset=s_skip, limit=args["songCount"], columns=["id"])
            song_ids = [int(i) for i in page["id"]]
        taste = self._taste_now()
        return {"searchResult3": {"artist": [_artist(a) for a in artists[a_skip:a_skip + args["artistCount"]]],
                                  "album": [self._album(a, taste) for a in albums[b_skip:b_skip + args["albumCount"]]],
                                  "song": self._children(song_ids)}}

    def _search_names(self, catalog: Catalog) -> tuple[list[tuple[str, Artist]], list[tuple[str, Album]]]:
        """The artists and albums in their listing order with their names casefolded, made once per
        catalog (a search at 100k tracks otherwise casefolds 40k names)."""
        with self._playing_lock:
            cached = self._names
        if cached is not None and cached[0] is catalog:
            return cached[1], cached[2]
        artists = [(a.name.casefold(), a) for a in catalog.ordered_artists()]
        albums = [(f"{a.name} {a.artist}".casefold(), a) for a in catalog.ordered("alphabeticalByName")]
        with self._playing_lock:
            self._names = (catalog, artists, albums)
        return artists, albums

    def _folders(self) -> list[Body]:
        try:
            roots = self.store.library_roots()
        except StoreError:
            roots = []
        return sorted(({"id": folder_id(r), "name": PurePath(r).name or r} for r in roots), key=lambda f: f["name"])

    def _recording(self) -> bool:
        return self.store.record_events and self.store.journal.writable

    def _catalog(self) -> Catalog:
        """The albums and artists (:mod:`explorer.catalog`), looked up once a request."""
        if not has_request_context():
            return self._catalogs.get()
        if "musicmap_catalog" not in g:
            g.musicmap_catalog = self._catalogs.get()
        catalog: Catalog = g.musicmap_catalog
        return catalog

    def _letters(self, catalog: Catalog, entry: Callable[[Artist], Body]) -> list[Body]:
        """The artists by their index letter (``#`` last), each letter's in order."""
        letters: dict[str, list[Body]] = {}
        for artist in catalog.ordered_artists():
            letters.setdefault(index_letter(artist.name), []).append(entry(artist))
        return [{"name": k, "artist": letters[k]} for k in sorted(letters, key=lambda k: (k == "#", k))]

    def _album(self, album: Album, taste: Taste) -> Body:
        """An album as OpenSubsonic's ``AlbumID3``; its play count and last play from the listening journal."""
        heard = [t for t in (taste.tracks.get(i) for i in album.songs) if t is not None and t.plays]
        out: Body = {"id": album.id, "name": album.name, "coverArt": album.id, "artist": album.artist,
                     "artistId": album.artist_id,
                     "songCount": len(album.songs), "duration": round(album.duration), "created": album.created,
                     "playCount": sum(t.plays for t in heard), "year": album.year, "genre": album.genre}
        if heard:
            out["played"] = _iso(max(t.last for t in heard))
        return {k: v for k, v in out.items() if v is not None}

    def _by_taste(self, catalog: Catalog, kind: str) -> list[str]:
        """Album ids by the listening journal: ``frequent`` (plays), ``recent`` (latest play),
        ``starred`` (latest liked song), ``highest`` (liked songs); those without any left out."""
        score: dict[str, tuple[float, float]] = {}
        for track in self._taste_now().tracks.values():
            album_id = catalog.album_of.get(track.track_id)
            if album_id is None:
                continue
            n, last = score.get(album_id, (0.0, 0.0))
            if kind in ("frequent", "recent") and track.plays:
                score[album_id] = (n + track.plays, max(last, track.last))
            elif kind in ("starred", "highest") and track.liked:
                score[album_id] = (n + 1, max(last, track.last))
        first = 0 if kind in ("frequent", "highest") else 1
        return sorted(score, key=lambda a: (-score[a][first], -score[a][1 - first], a))

    def _genre_clause(self, genre: str) -> str:
        """A SQL condition: the track's genre is one of ``genre``'s spellings (``FALSE`` when none)."""
        spellings = self.store.genre_groups().spellings(genre)
        return f"genre IN ({', '.join(_sql_string(s) for s in spellings)})" if spellings else "FALSE"

    def _matching(self, clauses: list[str]) -> list[int]:
        """The ids of the tracks meeting every one of ``clauses``, in order."""
        return [int(i) for i in np.sort(self.store.filter_ids(" AND ".join(clauses)))]

    def _children(self, ids: list[int]) -> list[Body]:
        """The songs of ``ids`` as ``Child`` entries, in that order."""
        rows = self.store.track_rows(ids)
        return [self._child(rows[i]) for i in ids if i in rows]

    # -- taste: what players say was played, liked and disliked ------------------------------------
    @method("scrobble", songs(), Arg("time", many=True), Arg("submission", "flag", default=True), *CLIENT)
    def scrobble(self, args: Args) -> Body:
        """``submission=true``: each song ``played`` (for its length, or the time since its "now
        playing" when that is shorter); ``false``: each song is now playing, and the song playing
        before it, cut short and not scrobbled, is ``skipped`` at the second reached. The n-th
        ``time`` dates the n-th song and keys it (a scrobble sent twice is recorded once)."""
        self._must_record()
        now = self.clock()
        source, who = source_of(args["c"]), (args["u"] or "", source_of(args["c"]))
        times: list[str] = args["time"]
        if len(times) > len(args["id"]):
            raise SubsonicError(0, f"{len(times)} time parameters for {len(args['id'])} id parameters")
        plays = [(track_id, times[i] if i < len(times) else None) for i, track_id in enumerate(args["id"])]
        rows = {t: self.store.track(t) for t, _ in plays}  # each must exist: else error 70
        moments = [_moment(raw, now) for _, raw in plays]
        events: list[Event] = []
        with self._playing_lock:
            playing = self._playing.get(who)
            for (track_id, raw), at in zip(plays, moments, strict=True):
                duration = _seconds(rows[track_id].get("duration"))
                if args["submission"]:
                    heard = duration
                    if playing is not None and playing.track_id == track_id and not playing.scrobbled:
                        playing.scrobbled = True
                        since = now - playing.heard  # by this server's clock: a client's time may be the start
                        if since > 0 and (duration is None or since < duration):
                            heard = min(since, MAX_SECONDS)
                    events.append(Event("played", track_id, at=at, seconds=heard, duration=duration, source=source,
                                        key=f"scrobble:{track_id}:{raw}" if raw is not None else None))
                    continue
                if playing is not None and playing.track_id == track_id and not playing.scrobbled:
                    continue  # the same song said again (a client resuming): it plays on
                if playing is not None and not playing.scrobbled and playing.duration:
                    reached = at - playing.since
                    if 0 <= reached < LATE_SKIP_SHARE * playing.duration:  # later: a play that missed its end
                        events.append(Event("skipped", playing.track_id, at=at, seconds=reached,
                                            duration=playing.duration, source=source,
                                            key=f"skipped:{playing.track_id}:{round(playing.since * 1000)}"))
                playing = NowPlaying(track_id, at, now, duration)
            if events:
                self.store.record(events)
            if playing is not None:
                self._playing[who] = playing
        return {}

    @method("star", Arg("id", "song", many=True), Arg("albumId", many=True), Arg("artistId", many=True), *CLIENT)
    def star(self, args: Args) -> Body:
        """Each song ``liked`` (musicmap likes songs: albums and artists are refused)."""
        self._record_songs(args, Event("liked", 0, context={"via": "star"}))
        return {}

    @method("unstar", Arg("id", "song", many=True), Arg("albumId", many=True), Arg("artistId", many=True), *CLIENT)
    def unstar(self, args: Args) -> Body:
        """Each song's likes taken back."""
        self._record_songs(args, Event("liked", 0, undo=True, context={"via": "unstar"}))
        return {}

    @method("setRating", song("id"), Arg("rating", "count", required=True, least=0, most=5), *CLIENT)
    def set_rating(self, args: Args) -> Body:
        """1: ``disliked``; 4 or 5: ``liked``; 0 (no rating), 2 or 3: both taken back."""
        self._must_record()
        track_id, rating, source = args["id"], args["rating"], source_of(args["c"])
        context = {"via": "setRating", "rating": rating}
        if rating == 1:
            events = [Event("disliked", track_id, source=source, context=context)]
        elif rating >= 4:
            events = [Event("liked", track_id, source=source, context=context)]
        else:
            events = [Event(kind, track_id, source=source, context=context, undo=True)
                      for kind in ("liked", "disliked")]
        self.store.record(events)
        return {}

    @method("getStarred2")
    def starred2(self, args: Args) -> Body:
        """The liked songs, the latest first (musicmap stars no albums or artists)."""
        taste = self._taste_now()
        liked = sorted((t for t in taste.tracks.values() if t.liked), key=lambda t: -t.last)
        rows = self.store.track_rows([t.track_id for t in liked])
        return {"starred2": {"song": [self._child(rows[t.track_id]) for t in liked if t.track_id in rows]}}

    @method("getPlaylists", Arg("username"))
    def playlists(self, args: Args) -> Body:
        """One playlist: "musicmap · For you" (:meth:`for_you`)."""
        summary, _ = self._for_you(args.get("username"))
        return {"playlists": {"playlist": [summary]}}

    @method("getPlaylist", Arg("id", required=True))
    def playlist(self, args: Args) -> Body:
        """"musicmap · For you": a mix made now from what was liked and played in the last 30 days."""
        if args["id"] != FOR_YOU_ID:
            raise SubsonicError(70, f"Playlist not found: {args['id']} (musicmap has one: {FOR_YOU_ID})")
        summary, entries = self._for_you(None)
        return {"playlist": {**summary, "entry": entries}}

    def _for_you(self, owner: str | None) -> tuple[Body, list[Body]]:
        """The "For you" playlist's summary and songs, made afresh (:meth:`store.Store.mix`)."""
        try:
            mixed = self.store.mix(n=FOR_YOU_SIZE)
            comment = "Made by musicmap now from the songs you liked and played in the last 30 days."
        except InvalidQuery:  # nothing liked or played yet
            mixed = []
            comment = "Nothing to mix from yet: star or play a few songs, then come back."
        entries = [self._child(item.neighbour.track) for item in mixed]
        now = _iso(self.clock())
        summary = {"id": FOR_YOU_ID, "name": FOR_YOU_NAME, "comment": comment, "owner": owner or "musicmap",
                   "public": True, "songCount": len(entries), "duration": sum(e.get("duration", 0) for e in entries),
                   "created": now, "changed": now, "readonly": True}
        return summary, entries

    def _record_songs(self, args: Args, like: Event) -> None:
        """``like`` (its kind and undo) for each song of ``args["id"]``, from the client's source."""
        if args["albumId"] or args["artistId"]:
            raise SubsonicError(0, "musicmap stars songs only: give id (a song), not albumId or artistId")
        if not args["id"]:
            raise SubsonicError(10, "Required parameter is missing: id")
        self._must_record()
        source = source_of(args["c"])
        self.store.record([Event(like.kind, t, source=source, context=like.context, undo=like.undo)
                           for t in args["id"]])

    def _must_record(self) -> None:
        if not self.store.record_events or not self.store.journal.writable:
            raise SubsonicError(0, NOT_RECORDING)

    def _taste_now(self) -> Taste:
        """:meth:`store.Store.taste`, read again only when the journal changed."""
        stamp = self.store.journal.stamp()
        if self._taste is None or self._taste[0] != stamp:
            self._taste = (stamp, self.store.taste())
        return self._taste[1]

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
        catalog = self._catalog()
        album_id = catalog.album_of.get(int(row["id"]))
        out["coverArt"] = str(row["id"])  # its own picture: songs of one album may differ
        if album_id is not None:
            out["albumId"] = out["parent"] = album_id
            out["album"] = album or catalog.albums[album_id].name
        if isinstance(artist, str) and artist:
            out["artistId"] = name_id("ar", artist_key(artist) or artist)
        liked = self._taste_now().tracks.get(int(row["id"]))
        if liked is not None and liked.liked:
            out["starred"] = _iso(liked.last)
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
        return [int(i) for i, a in found if name_id("ar", artist_key(a) or a) == artist_id]


def register(server: Flask, store: Store, *, token: str | None,
             send_audio: Callable[[int], Response], cover_art: CoverArt | None = None) -> None:
    """Add the ``/rest/`` endpoints to ``server`` (see :class:`Subsonic`)."""
    subsonic = Subsonic(store, token=token, send_audio=send_audio, cover_art=cover_art)
    server.add_url_rule(f"{PREFIX}/<path:method>", "subsonic", subsonic.endpoint, methods=["GET", "POST"])
