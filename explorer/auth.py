"""Token access to the explorer: with a token set, every request must carry it.

Accepted, in this order: the header ``X-Musicmap-Token``, ``Authorization: Bearer <token>``, the
cookie ``musicmap_token``, or ``?token=`` in the URL. A page opened with a good ``?token=`` gets the
cookie (HttpOnly, SameSite=Strict) and is redirected to the same address without it, so the token
leaves the address bar and the page's own requests (callbacks, audio) carry the cookie. Tokens are
compared in constant time (HMAC-SHA-256 digests of both, :func:`hmac.compare_digest`). Anything else
gets 401: JSON for the API and audio, a small page with a token field for browsers. The
OpenSubsonic endpoints under ``/rest/`` check the same token their own way (:mod:`explorer.subsonic`).
"""

from __future__ import annotations

import hashlib
import hmac
import html
from urllib.parse import urlencode

from flask import Flask, Response, jsonify, redirect, request
from werkzeug.wrappers import Response as BaseResponse

COOKIE = "musicmap_token"
SUBSONIC_PREFIX = "/rest/"
HEADER = "X-Musicmap-Token"
COOKIE_DAYS = 30


def _digest(key: bytes, value: str) -> bytes:
    return hmac.new(key, value.encode("utf-8", "surrogateescape"), hashlib.sha256).digest()


def _given() -> tuple[str | None, str]:
    """The token the request carries and where it was found."""
    if request.headers.get(HEADER):
        return request.headers[HEADER], "header"
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip(), "header"
    if request.cookies.get(COOKIE):
        return request.cookies[COOKIE], "cookie"
    if request.args.get("token"):
        return request.args["token"], "query"
    return None, ""


def _machine_route(path: str) -> bool:
    return path.startswith(("/api/", "/audio/", "/rest/", "/_dash-", "/_reload", "/assets/", "/_favicon"))


def protect(server: Flask, token: str) -> None:
    """Refuse every request to ``server`` that does not carry ``token`` (runs before all else)."""
    if not token:
        raise ValueError("an empty token protects nothing")
    key = hashlib.sha256(b"musicmap-token-key" + token.encode("utf-8", "surrogateescape")).digest()
    expected = _digest(key, token)

    def check() -> BaseResponse | None:
        if request.path.startswith(SUBSONIC_PREFIX):
            return None  # OpenSubsonic checks its own credentials (u/p, u/t/s or apiKey against the token)
        given, where = _given()
        if given is not None and hmac.compare_digest(_digest(key, given), expected):
            if where == "query" and request.method == "GET" and not _machine_route(request.path):
                rest = urlencode([(k, v) for k, v in request.args.items(multi=True) if k != "token"])
                response = redirect(request.path + (f"?{rest}" if rest else ""), code=303)
                response.set_cookie(COOKIE, given, max_age=COOKIE_DAYS * 86400, httponly=True, samesite="Strict",
                                    secure=request.is_secure)
                return response
            return None
        wrong = given is not None
        if _machine_route(request.path):
            response = jsonify({"error": ("wrong token" if wrong else "this musicmap needs a token") +
                                f": send the header {HEADER} (or Authorization: Bearer ...), or open the page "
                                "once with ?token=...", "status": 401})
            response.status_code = 401
            response.headers["WWW-Authenticate"] = 'Bearer realm="musicmap"'
            return response
        note = "That token is not the right one. " if wrong else ""
        page = (f"<!doctype html><meta charset=utf-8><title>musicmap: token needed</title>"
                f"<body style='font-family:sans-serif;margin:3em'><h2>musicmap</h2>"
                f"<p>{html.escape(note)}This explorer needs its token (the one given to "
                f"<code>musicmap serve --token</code>).</p>"
                f"<form method=get action='{html.escape(request.path)}'><input name=token type=password "
                f"autofocus placeholder=token> <button>open</button></form></body>")
        response = Response(page, status=401, mimetype="text/html")
        response.headers["WWW-Authenticate"] = 'Bearer realm="musicmap"'
        return response

    server.before_request_funcs.setdefault(None, []).insert(0, check)
