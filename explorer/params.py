"""The JSON API's parameters, declared once: each :class:`Param` parses itself from the query string
and describes itself in the OpenAPI document, and each :class:`Endpoint` lists its parameters.

A bad value is a :class:`BadRequest` naming the parameter and what to give instead; a parameter the
endpoint does not take is refused the same way (a typo is never silently ignored).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from store import is_whole_number


class BadRequest(ValueError):
    """A query parameter the API cannot use; the message names it."""


@dataclass(frozen=True)
class Param:
    """One parameter. ``kind``: ``integer``, ``number``, ``boolean``, ``string`` or ``ids`` (track ids
    separated by commas, at most ``maximum``); ``hint`` is what to give, said when it is missing or bad."""

    name: str
    description: str
    kind: str = "string"
    minimum: int | None = None
    maximum: int | None = None
    default: Any = None
    required: bool = False
    choices: tuple[str, ...] = ()
    hint: str = ""
    location: str = "query"

    def read(self, args: Mapping[str, str]) -> Any:
        """This parameter's value from ``args`` (the default when absent or empty)."""
        raw = args.get(self.name)
        if raw is None or raw == "":
            if self.required:
                raise BadRequest(f"{self.name}: {self.hint or 'required'}")
            return self.default
        if self.kind == "integer":
            return self._integer(raw)
        if self.kind == "number":
            return self._number(raw)
        if self.kind == "boolean":
            if raw.lower() not in ("1", "true", "yes", "0", "false", "no"):
                raise BadRequest(f"{self.name}={raw!r}: give true or false")
            return raw.lower() in ("1", "true", "yes")
        if self.kind == "ids":
            parts = [part.strip() for part in raw.split(",") if part.strip()]
            if not parts or not all(is_whole_number(p) for p in parts) or len(parts) > (self.maximum or len(parts)):
                raise BadRequest(f"{self.name}: {self.hint}")
            return list(dict.fromkeys(int(p) for p in parts))
        if self.choices and raw not in self.choices:
            raise BadRequest(f"{self.name}={raw!r}: give {' or '.join(self.choices)}")
        return raw

    def _integer(self, raw: str) -> int:
        try:
            value: int | None = int(raw) if raw.isascii() else None  # int() also reads '١٢' as 12
        except ValueError:
            value = None
        lo, hi = self.minimum, self.maximum
        if value is None or (lo is not None and value < lo) or (hi is not None and value > hi) \
                or (lo is not None and lo >= 0 and not is_whole_number(raw)):
            if self.hint:
                raise BadRequest(f"{self.name}: {self.hint}")
            span = (f" from {lo} to {hi}" if lo is not None and hi is not None
                    else f" of at least {lo}" if lo is not None else "")
            raise BadRequest(f"{self.name}={raw!r}: give a whole number{span}")
        return value

    def _number(self, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise BadRequest(f"{self.name}={raw!r}: give a number") from None
        if not math.isfinite(value):
            raise BadRequest(f"{self.name}={raw!r}: give a finite number")
        return value

    def openapi(self) -> dict[str, Any]:
        """This parameter as an OpenAPI 3 parameter object."""
        schema: dict[str, Any] = {"type": "string" if self.kind == "ids" else self.kind}
        if self.minimum is not None and self.kind != "ids":
            schema["minimum"] = self.minimum
        if self.maximum is not None and self.kind != "ids":
            schema["maximum"] = self.maximum
        if self.default is not None:
            schema["default"] = self.default
        if self.choices:
            schema["enum"] = list(self.choices)
        return {"name": self.name, "in": self.location, "required": self.required or self.location == "path",
                "description": self.description, "schema": schema}


def read_all(params: Sequence[Param], args: Mapping[str, str], *,
             ignore: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Every query parameter of ``params`` from ``args``, by name; a name in ``args`` that is not
    among them (nor in ``ignore``) is a BadRequest."""
    query = [p for p in params if p.location == "query"]
    names = [p.name for p in query]
    unknown = sorted(set(args) - set(names) - ignore)
    if unknown:
        raise BadRequest(f"unknown parameter {unknown[0]!r}; this endpoint takes {', '.join(names) or 'none'} "
                         "(see /api/v1/openapi.json)")
    return {p.name: p.read(args) for p in query}


ERROR = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def ok(description: str) -> dict[str, Any]:
    """A 200 answer with a JSON object, described in a few words."""
    return {"description": description, "content": {"application/json": {"schema": {"type": "object"}}}}


@dataclass(frozen=True)
class Endpoint:
    """One documented route: its path (OpenAPI form, ``{track_id}``), method, what it answers."""

    path: str
    summary: str
    params: tuple[Param, ...] = ()
    responses: dict[str, Any] = field(default_factory=dict)
    method: str = "get"
    body: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        """``"GET /api/v1/tracks"``: one operation (a path may have several methods)."""
        return f"{self.method.upper()} {self.path}"

    @property
    def rule(self) -> str:
        """The Flask rule: ``{track_id}`` becomes ``<int:track_id>``."""
        out = self.path
        for p in self.params:
            if p.location == "path":
                out = out.replace("{" + p.name + "}", f"<{'int:' if p.kind == 'integer' else ''}{p.name}>")
        return out

    def openapi(self) -> dict[str, Any]:
        operation: dict[str, Any] = {"summary": self.summary}
        if self.params:
            operation["parameters"] = [p.openapi() for p in self.params]
        if self.body is not None:
            operation["requestBody"] = self.body
        operation["responses"] = self.responses
        return {self.method: operation}


def _paths(endpoints: Sequence[Endpoint]) -> dict[str, dict[str, Any]]:
    """Each path's operations, by method (``GET`` and ``POST /api/v1/events`` share one path)."""
    out: dict[str, dict[str, Any]] = {}
    for e in endpoints:
        out.setdefault(e.path, {}).update(e.openapi())
    return out


def document(title: str, description: str, endpoints: Sequence[Endpoint]) -> dict[str, Any]:
    """The OpenAPI 3 document of ``endpoints``."""
    return {
        "openapi": "3.0.3",
        "info": {"title": title, "version": "1", "description": description},
        "paths": _paths(endpoints),
        "components": {"schemas": {"Error": {"type": "object", "required": ["error", "status"],
                                             "properties": {"error": {"type": "string"},
                                                            "status": {"type": "integer"}}}}},
    }
