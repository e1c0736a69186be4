"""The explorer's view state in the URL: reload or share a link and the same view comes back.

``?track=12&color=style&genre=Jazz&genre=Blues&years=1960-1979&k=20&per_artist=2&dedupe=1``;
unknown or malformed values are dropped (a shared link never breaks the page), defaults are left
out of the URL.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from urllib.parse import parse_qs, urlencode

from store import is_whole_number

from .limits import K_DEFAULT, K_PAGE_MAX


@dataclass
class ViewState:
    track: int | None = None
    color: str = "genre"
    genres: list[str] = field(default_factory=list)
    styles: list[str] = field(default_factory=list)
    years: tuple[int, int] | None = None
    k: int = K_DEFAULT
    per_artist: int | None = None
    per_album: int | None = None
    dedupe: bool = False
    where: str = ""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _positive(raw: str | None, hi: int = 10_000) -> int | None:
    if raw is None or not is_whole_number(raw):
        return None
    value = int(raw)
    return value if 1 <= value <= hi else None


def parse(search: str | None, colors: tuple[str, ...]) -> ViewState:
    """The state in a URL query string (``?a=b&...`` or without the ``?``)."""
    q = parse_qs((search or "").lstrip("?"), keep_blank_values=False)

    def one(name: str) -> str | None:
        values = q.get(name)
        return values[-1] if values else None

    state = ViewState()
    raw_track = one("track")
    if raw_track is not None and is_whole_number(raw_track):
        state.track = int(raw_track)
    color = one("color")
    if color in colors:
        state.color = color
    state.genres = [g for g in q.get("genre", []) if g][:50]
    state.styles = [s for s in q.get("style", []) if s][:50]
    years = (one("years") or "").split("-")
    if len(years) == 2 and all(is_whole_number(y) for y in years) and int(years[0]) <= int(years[1]):
        state.years = (int(years[0]), int(years[1]))
    state.k = _positive(one("k"), K_PAGE_MAX) or K_DEFAULT
    state.per_artist = _positive(one("per_artist"))
    state.per_album = _positive(one("per_album"))
    state.dedupe = one("dedupe") in ("1", "true", "yes")
    state.where = (one("where") or "")[:1000]
    return state


def encode(state: ViewState) -> str:
    """The query string for ``state`` ("" for the default view), with its leading ``?``."""
    pairs: list[tuple[str, str]] = []
    if state.track is not None:
        pairs.append(("track", str(state.track)))
    if state.color != "genre":
        pairs.append(("color", state.color))
    pairs += [("genre", g) for g in state.genres] + [("style", s) for s in state.styles]
    if state.years is not None:
        pairs.append(("years", f"{state.years[0]}-{state.years[1]}"))
    if state.k != K_DEFAULT:
        pairs.append(("k", str(state.k)))
    if state.per_artist:
        pairs.append(("per_artist", str(state.per_artist)))
    if state.per_album:
        pairs.append(("per_album", str(state.per_album)))
    if state.dedupe:
        pairs.append(("dedupe", "1"))
    if state.where:
        pairs.append(("where", state.where))
    return "?" + urlencode(pairs) if pairs else ""
