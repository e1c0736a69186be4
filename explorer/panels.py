"""What the explorer's side panels show: pure renderers from data to Dash components, or to the
data the page draws itself (track lists: ``explorer/assets/lists.js``; the track panel:
``explorer/assets/track.js``, from :func:`track_view`).

Nothing here reads the store: :mod:`explorer.callbacks` fetches, these draw. Ids the page's
callbacks listen to (``similar-list``, ``{"type": "export", ...}`` buttons, ...) are set here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict
from urllib.parse import urlencode

import numpy as np
import pandas as pd
from dash import dcc, html
from dash.development.base_component import Component

from store import FindResult, MixItem, ModelInfo, Neighbour, PathStep, TasteNote, TrackRow, relative_to_roots
from store.listening import MAX_PATH

from .figure import Highlight, genre_groups
from .limits import EXTEND_N, MIX_N, PATH_STEPS

COVER = 96
"""The cover in the track panel, in pixels."""
PROMPT = "Click a track on the map, or search, to play it and see similar tracks."
"""The track panel before anything is chosen."""


def name(track: TrackRow) -> str:
    """"Artist – Title", with "?" for what the tags do not say."""
    return f"{track.get('artist') or '?'} – {track.get('title') or '?'}"


def cover_url(track_id: int, size: int) -> str:
    """The URL of the track's cover art (:mod:`explorer.art`) shown ``size`` px wide, fetched at twice
    that for sharp high-DPI screens (at most 512); the placeholder when it has none. The browser
    caches it (an hour, then revalidates by ETag)."""
    return f"/api/v1/art/{int(track_id)}?size={min(2 * size, 512)}"


Thumbs = Mapping[int, str]
"""The person's thumbs: track id → ``liked`` or ``disliked`` (the rows' 👍/👎 are drawn pressed)."""


def similar_list(neighbours: Sequence[Neighbour], list_id: str, seed: int | None = None,
                 thumbs: Thumbs | None = None) -> Component:
    """A similar-track list (:func:`similar_rows`) sent as data (:func:`track_list`)."""
    return track_list(list_id, similar_rows(neighbours, seed, thumbs))


def _why(note: TasteNote | None) -> str | None:
    """How the person's taste moved a row ("↑ close to 3 tracks you liked"), or None."""
    return None if note is None else note.why


def similar_rows(neighbours: Sequence[Neighbour], seed: int | None = None,
                 thumbs: Thumbs | None = None) -> list[ListRow]:
    """A similar-track list's rows: cover, "artist – title" on one line (genre under it), the score
    as a number and a bar (spread over the list's own range, so the ranking shows even when every
    score is near 1), and with a ``seed`` track "why?" inline; clicking a row opens its track. Where
    the person's taste moved a row, its reason under it; each row's 👍/👎 (pressed per ``thumbs``)."""
    scores = [n.score for n in neighbours]
    low, high = (min(scores), max(scores)) if scores else (0.0, 1.0)

    def width(score: float) -> int:  # the list's spread: its best full, its last a third
        return round(100 * (1.0 if high <= low else 1 / 3 + 2 / 3 * (score - low) / (high - low)))

    return [ListRow(id=n.track_id, name=name(n.track), genre=n.track.get("genre") or "", score=f"{n.score:.3f}",
                    bar=width(n.score), why=None if seed is None else f"{seed}-{n.track_id}",
                    note=_why(n.taste), thumb=(thumbs or {}).get(n.track_id)) for n in neighbours]


class ListRow(TypedDict):
    """One row of a track list as the page's ``explorer/assets/lists.js`` draws it."""

    id: int
    name: str
    genre: str
    score: str
    bar: int | None
    why: str | None
    note: NotRequired[str | None]
    """Why the person's taste moved it ("↑ close to 3 tracks you liked"), or the mix's reason."""
    thumb: NotRequired[str | None]
    """``liked`` or ``disliked``: its 👍 or 👎 is drawn pressed."""


def track_list(list_id: str, rows: list[ListRow]) -> Component:
    """An ordered list of tracks sent as JSON in ``data-rows`` and drawn by the browser
    (``explorer/assets/lists.js``): a list of Dash components costs the page ~10 ms a row to take
    in (Dash walks every new component for the callbacks it may feed), this costs nothing. A row's
    button selects its track, its "why?" opens the explanation (``dash_clientside.set_props`` on
    the ``selected`` and ``explain-pair`` stores)."""
    attrs: dict[str, Any] = {"id": list_id, "className": "track-list", "data-rows": json.dumps(rows)}
    return html.Ol(**attrs)


def action(label: str, kind: str, value: str, **attrs: Any) -> Component:
    """A button the browser handles (``explorer/assets/lists.js``): ``select`` makes the ids in
    ``value`` the selection, ``path-from`` starts a song path at the track ``value``. No Dash
    callback listens to it: a pattern-matched button costs the page a callback round trip each
    time a panel brings a new one."""
    return html.Button(label, type="button", className="small-button",
                       **{"data-action": kind, "data-value": value, **attrs})


def listed(panel: Component | Sequence[Component], list_id: str | None = None) -> list[ListRow]:
    """The rows of the track lists in ``panel`` (or of the one with ``list_id``), in order."""
    found: list[ListRow] = []
    stack: list[Any] = list(panel) if isinstance(panel, Sequence) else [panel]
    while stack:
        node = stack.pop(0)
        if isinstance(node, (list, tuple)):
            stack[:0] = list(node)
            continue
        if not isinstance(node, Component):
            continue
        rows = getattr(node, "data-rows", None)
        if rows is not None and (list_id is None or getattr(node, "id", None) == list_id):
            found += json.loads(rows)
        children = getattr(node, "children", None)
        if children is not None:
            stack[:0] = [children]
    return found


@dataclass(frozen=True)
class LabelWords:
    """How the page names a model's labels: MAEST predicts Discogs *styles*, MusiCNN *tags*."""

    plural: str
    heading: str


def label_words(model: ModelInfo) -> LabelWords:
    """The words for ``model``'s (a :class:`store.ModelInfo`) predicted labels."""
    if model.kind == "musicnn":
        return LabelWords("tags", f"Predicted {model.extra.get('labels', 'tags')}")  # "... MagnaTagATune tags"
    return LabelWords("styles", "Predicted styles")


def clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


class Styled(TypedDict):
    """One predicted style or tag as the track panel draws it: its name and its bar's width in %."""

    label: str
    width: int


class PathOffer(TypedDict):
    """The track panel's song path controls: ``start`` (set once a start is chosen elsewhere: "draw
    the path from it to here"), ``starts_here`` (the path starts at this track)."""

    start: str | None
    start_id: int | None
    starts_here: bool
    steps: int
    max_steps: int


class TrackView(TypedDict):
    """Everything the track panel shows, as ``explorer/assets/track.js`` draws it (from
    ``GET /api/v1/panel/<id>``): a click on the map asks for it and draws it at once, no Dash
    callback in between (issue #20)."""

    id: int
    title: str
    byline: str
    fields: list[tuple[str, str, str | None]]
    cover: str
    audio: str
    styles_heading: str
    styles: list[Styled]
    problem: str | None
    similar_heading: str
    similar: list[ListRow]
    select: str
    path: PathOffer
    highlight: Highlight
    thumb: str | None
    """The track's own thumb: ``liked``, ``disliked`` or None."""
    taste: dict[str, int] | None
    """The taste that steered the similar list (:meth:`store.taste.Taste.summary`), or None."""
    recording: Recording


class Recording(TypedDict):
    """Whether a thumb or a play can be recorded on this server, and why not."""

    on: bool
    why: str | None


def track_view(track: TrackRow, neighbours: Sequence[Neighbour], styles: list[tuple[str, float]],
               model_label: str, highlight: Highlight, problem: str | None = None, heading: str = "Predicted styles",
               roots: Sequence[str] = (), start: TrackRow | None = None, path_from: int | None = None,
               thumbs: Thumbs | None = None, taste: dict[str, int] | None = None,
               recording: Recording | None = None) -> TrackView:
    """A track's panel as data: cover, tags, the file (relative to its library folder, the full path
    on hover), the player's source, its top styles or tags, the similar tracks (rows as
    :func:`similar_list` makes them), the song path controls and the map's ``highlight``."""
    track_id = int(track["id"])
    duration = track.get("duration")
    path = str(track.get("path") or "")

    def shown(value: object) -> str:
        return "—" if value is None or value == "" else str(value)

    fields: list[tuple[str, str, str | None]] = [
        (label, shown(track.get(label)), None) for label in ("artist", "album", "genre", "year")]
    fields += [("length", clock(float(duration)) if duration else "—", None),
               ("file", relative_to_roots(path, roots) or "—", path or None)]
    return TrackView(
        id=track_id, title=str(track.get("title") or "(untitled)"),
        byline=" · ".join(str(v) for v in (track.get("artist"), track.get("album")) if v), fields=fields,
        cover=cover_url(track_id, COVER), audio=f"/audio/{track_id}", styles_heading=heading,
        styles=[Styled(label=label.replace("---", " › "), width=max(2, round(100 * a))) for label, a in styles],
        problem=problem, similar_heading=f"Similar tracks ({model_label})",
        similar=similar_rows(neighbours, seed=track_id, thumbs=thumbs),
        select=",".join(map(str, [track_id, *(n.track_id for n in neighbours)])),
        path=PathOffer(start=None if start is None else f"{start.get('artist') or '?'} – {start.get('title') or '?'}",
                       start_id=None if start is None else int(start["id"]),
                       starts_here=start is None and path_from is not None and int(path_from) == track_id,
                       steps=PATH_STEPS, max_steps=MAX_PATH),
        highlight=highlight, thumb=(thumbs or {}).get(track_id), taste=taste,
        recording=recording or Recording(on=True, why=None))


def upload_panel(name_: str, model_label: str, where_note: str, neighbours: Sequence[Neighbour],
                 problem: str | None) -> list[Component]:
    """The panel for an uploaded clip: where it landed, its neighbours."""
    panel: list[Component] = [
        html.H3(f"Your clip: {name_}", id="track-title"),
        html.P(f"embedded with {model_label}, {where_note}; the file was deleted after embedding",
               className="what", id="upload-where"),
    ]
    if problem:
        panel.append(html.Div(f"filter not applied: {problem}", className="error", id="similar-problem"))
    panel += [html.H4(f"Similar tracks ({model_label})"),
              similar_list(neighbours, "similar-list"),
              action("select these", "select", ",".join(str(n.track_id) for n in neighbours), id="select-similar")]
    return panel


def selection_panel(rows: pd.DataFrame) -> list[Component]:
    """Count, genre breakdown, a player that plays the selection in order, exports; ``rows``: the
    selected tracks' map rows, indexed by id, in selection order."""
    genres = genre_groups(rows).astype("string").fillna("(none)").value_counts()  # spellings grouped
    breakdown = ", ".join(f"{g} {c}" for g, c in genres.head(6).items()) + (", …" if len(genres) > 6 else "")
    queue = [f"/audio/{int(i)}" for i in rows.index]
    listing = [html.Li(f"{r.artist if isinstance(r.artist, str) else '?'} – "
                       f"{r.title if isinstance(r.title, str) else '?'}") for r in rows.head(50).itertuples()]
    where = f"WHERE id IN ({', '.join(str(int(i)) for i in rows.index)})"
    return [
        html.H4(f"Selection: {len(rows)} tracks", id="selection-count"),
        html.P(breakdown, className="what", id="selection-genres"),
        html.Audio(id="queue-player", src=queue[0] if queue else None, controls=True, preload="none",
                   **{"data-queue": json.dumps(queue), "data-pos": "0"}),  # type: ignore[arg-type]
        html.Div(className="selection-buttons", children=[
            html.Button("M3U", id={"type": "export", "index": "m3u-absolute"}, n_clicks=0,
                        className="small-button", title="a playlist with absolute paths"),
            html.Button("M3U (relative)", id={"type": "export", "index": "m3u-relative"}, n_clicks=0,
                        className="small-button",
                        title="paths relative to the folder holding all these files: save it there"),
            html.Button("CSV", id={"type": "export", "index": "csv"}, n_clicks=0, className="small-button"),
            dcc.Clipboard(target_id="selection-where", title="copy the WHERE clause", className="copy"),
            html.Button("clear", id={"type": "selection-clear", "index": 0}, n_clicks=0,
                        className="small-button"),
            html.Button("similar to these", id={"type": "selection-similar", "index": 0}, n_clicks=0,
                        className="small-button", title="tracks like the selection as a whole (its centroid)"),
            html.Button(f"extend by {EXTEND_N}", id={"type": "selection-extend", "index": 0}, n_clicks=0,
                        className="small-button",
                        title="grow the selection as a playlist: tracks that fit it, none already in it"),
        ]),
        html.Div(id={"type": "selection-extend-list", "index": 0}),
        html.Div(id={"type": "selection-similar-list", "index": 0}),
        html.Code(where if len(where) <= 4000 else where[:4000] + " …", id="selection-where"),
        html.Ol(listing + ([html.Li(f"… and {len(rows) - 50} more")] if len(rows) > 50 else []),
                id="selection-list"),
    ]


@dataclass(frozen=True)
class Comparison:
    """What :func:`explain` shows for a pair: ``a`` the seed, ``b`` the similar track."""

    a: TrackRow
    b: TrackRow
    score: float
    styles_a: dict[str, float]
    styles_b: dict[str, float]
    starts_a: np.ndarray
    windows_a: np.ndarray
    starts_b: np.ndarray
    windows_b: np.ndarray


def explain(c: Comparison, model_label: str, labels: LabelWords) -> list[Component]:
    """Why ``c.b`` is like ``c.a``: their score, their top predicted styles side by side (shared ones
    marked) and the closest pair of windows, each playable from its start."""
    seed, other = int(c.a["id"]), int(c.b["id"])
    out: list[Component] = [html.H4(f"Why {name(c.b)} is like {name(c.a)}"),
                      html.P(f"similarity {c.score:.3f} (cosine, {model_label})", className="what")]
    if c.styles_a or c.styles_b:
        ranked = sorted(set(c.styles_a) | set(c.styles_b),
                        key=lambda label: -(c.styles_a.get(label, 0.0) + c.styles_b.get(label, 0.0)))
        shared = set(c.styles_a) & set(c.styles_b)
        out.append(html.Table(className="explain-styles", children=[
            html.Tr([html.Th("style"), html.Th("this"), html.Th("that")])] + [
            html.Tr([html.Td(label.replace("---", " › "), className="shared" if label in shared else ""),
                     html.Td(f"{c.styles_a[label]:.2f}" if label in c.styles_a else "—"),
                     html.Td(f"{c.styles_b[label]:.2f}" if label in c.styles_b else "—")]) for label in ranked]))
        word = labels.plural
        out.append(html.P(f"{len(shared)} of their top {word} shared" if shared else f"no top {word[:-1]} shared",
                          id="explain-shared"))
    else:
        out.append(html.P("No style predictions in this store (MAEST makes them).", className="what"))
    if len(c.windows_a) and len(c.windows_b):
        sims = c.windows_a @ c.windows_b.T
        i, j = np.unravel_index(int(np.argmax(sims)), sims.shape)
        at_a = float(c.starts_a[i]) if np.isfinite(c.starts_a[i]) else 0.0
        at_b = float(c.starts_b[j]) if np.isfinite(c.starts_b[j]) else 0.0
        out += [html.P(f"Closest moments: {clock(at_a)} here and {clock(at_b)} there "
                       f"(window similarity {float(sims[i, j]):.3f}).", id="explain-windows"),
                html.Div(className="explain-play", children=[
                    html.Span("this from here"),
                    html.Audio(src=f"/audio/{seed}#t={at_a:.1f}", controls=True, preload="none"),
                    html.Span("that from here"),
                    html.Audio(src=f"/audio/{other}#t={at_b:.1f}", controls=True, preload="none",
                               id="explain-play-other")])]
    else:
        out.append(html.P("No per-window vectors stored (MAEST stores them; --no-windows skips them).",
                          className="what"))
    return out


def song_path(path: Sequence[PathStep], start: int, end: int, steps: int,
              thumbs: Thumbs | None = None) -> list[Component]:
    """A drawn song path: title, a player for the whole path, its M3U, the steps."""
    ids = [s.track_id for s in path]
    first, last = path[0].track, path[-1].track
    queue = [f"/audio/{i}" for i in ids]
    rows = [ListRow(id=s.track_id, name=name(s.track), genre=s.track.get("genre") or "",
                    score="" if s.to_previous is None else f"{s.to_previous:.3f}", bar=None, why=None,
                    note=_why(s.taste), thumb=(thumbs or {}).get(s.track_id)) for s in path]
    return [
        html.H4(f"Path: {first.get('title') or '?'} → {last.get('title') or '?'} ({len(path)} tracks)",
                id="path-title"),
        html.P("each step close to the last (its similarity shown) and closer to the end; drawn on the map",
               className="what"),
        html.Audio(id="path-player", src=queue[0], controls=True, preload="none",
                   **{"data-queue": json.dumps(queue), "data-pos": "0"}),  # type: ignore[arg-type]
        html.Div(className="selection-buttons", children=[
            html.A("M3U", href=f"/api/v1/path?from={int(start)}&to={int(end)}&steps={steps}&format=m3u",
                   download=f"musicmap-path-{int(start)}-{int(end)}.m3u8", className="small-button",
                   id="path-m3u"),
            action("select these", "select", ",".join(str(i) for i in ids), id="select-path")]),
        track_list("path-list", rows),
    ]


def extension(members: Sequence[int], added: Sequence[Neighbour], model_label: str, n: int,
              thumbs: Thumbs | None = None) -> list[Component]:
    """Tracks that extend a selection, with buttons to add them and an M3U of them."""
    new_ids = [a.track_id for a in added]
    return [html.H4(f"{len(added)} more for these {len(members)} tracks ({model_label})"),
            similar_list(added, "extend-list", thumbs=thumbs),
            html.Div(className="selection-buttons", children=[
                action("add to selection", "select", ",".join(str(i) for i in [*members, *new_ids]),
                       id="select-extension"),
                html.A("M3U of the new ones", className="small-button", id="extend-m3u",
                       href=f"/api/v1/extend?ids={','.join(map(str, members[:1000]))}&n={n}&format=m3u",
                       download="musicmap-extension.m3u8")])]


def sound_results(found: FindResult, like: TrackRow | None, query: str,
                  thumbs: Thumbs | None = None) -> list[Component]:
    """A search by sound: how the words were read, the matching tracks as a list that opens,
    selects and exports like the others (:func:`track_list`), or why there are none."""
    out: list[Component] = []
    if like is not None:
        out.append(html.Div(className="sound-like", children=[
            html.Span(f"like {name(like)}, but…", id="sound-like-note"),
            action("×", "like-clear", "", id="sound-like-clear", title="search the whole library again")]))
    if found.parsed.words:
        read = "; ".join(("not " if w.negated else "") + w.text
                         + (f" ({w.how})" if w.how.startswith("fuzzy") else "") + " → "
                         + ", ".join(list(dict.fromkeys(t.label.split("---")[-1] for t, _ in
                                                        sorted(w.terms.items(), key=lambda x: -abs(x[1]))))[:3])
                         for w in found.parsed.words)
        out.append(html.P(f"sounding {read}", className="what", id="sound-read"))
    if found.reason is not None:  # it names the unknown words itself
        out.append(html.P(found.reason, className="error", id="sound-reason"))
        return out
    for word, near in found.parsed.unknown:
        out.append(html.P(f"no tag matches \"{word}\"" + (f": try {', '.join(near)}" if near else ""),
                          className="search-none sound-unknown"))
    rows = [ListRow(id=r.track_id, name=name(r.track), genre=_matched_words(r.matched), score=f"{r.score:.2f}",
                    bar=round(100 * r.score), why=None, note=_why(r.taste), thumb=(thumbs or {}).get(r.track_id))
            for r in found.results]
    ids = ",".join(str(r.track_id) for r in found.results)
    asked = {"q": query, "k": len(rows), "format": "m3u", **({"like": like["id"]} if like else {})}
    m3u = f"/api/v1/find?{urlencode(asked)}"
    out += [track_list("sound-list", rows),
            html.Div(className="selection-buttons", children=[
                action("select these", "select", ids, id="select-sound"),
                html.A("M3U", className="small-button", id="sound-m3u", href=m3u, download="musicmap-find.m3u8")])]
    if found.untagged:
        out.append(html.P(f"{found.untagged} tracks have no sound tags yet (musicmap index adds them)",
                          className="what"))
    return out


def mix_panel(items: Sequence[MixItem], reason: str | None, taste: dict[str, int] | None,
              thumbs: Thumbs | None = None) -> list[Component]:
    """The "For you" mix (:meth:`store.Store.mix`): a player that plays it in order, its M3U, "select
    these", and the tracks, each with why it is there; or why there is none yet."""
    head = html.H4("For you", id="mix-title")
    if not items:
        return [head, html.P(reason or "nothing to mix yet", className="what", id="mix-reason")]
    ids = [i.neighbour.track_id for i in items]
    queue = [f"/audio/{i}" for i in ids]
    rows = [ListRow(id=i.neighbour.track_id, name=name(i.neighbour.track), genre=i.neighbour.track.get("genre") or "",
                    score=f"{i.neighbour.score:.3f}", bar=None, why=None, note=i.why,
                    thumb=(thumbs or {}).get(i.neighbour.track_id)) for i in items]
    counted = "" if taste is None else f" (your taste: {taste['liked']} liked, {taste['plays']} plays)"
    return [
        head,
        html.P(f"{len(items)} tracks not heard lately, like what you liked and played in the last 30 days"
               f"{counted}; each says why it is here", className="what"),
        html.Audio(id="mix-player", src=queue[0], controls=True, preload="none",
                   **{"data-queue": json.dumps(queue), "data-pos": "0"}),  # type: ignore[arg-type]
        html.Div(className="selection-buttons", children=[
            html.A("M3U", href=f"/api/v1/mix?n={MIX_N}&format=m3u",
                   download="musicmap-for-you.m3u8", className="small-button", id="mix-m3u"),
            action("select these", "select", ",".join(str(i) for i in ids), id="select-mix")]),
        track_list("mix-list", rows),
    ]


def _matched_words(matched: list[dict[str, Any]]) -> str:
    """What carried a result, under its name: "piano 0.97 · calm 0.81"."""
    return " · ".join(f"{'not ' if m['negated'] else ''}{m['word']} {m['strength']:.2f}" for m in matched
                      if m["strength"] is not None)


def search_hits(hits: Sequence[dict[str, Any]]) -> list[Component]:
    """Search results as buttons that centre the map on a track."""
    if not hits:
        return [html.Div("no match on the map", className="search-none")]
    return [html.Button(f"{h['artist'] or '?'} – {h['title'] or '?'}" + (f"  ({h['album']})" if h["album"] else ""),
                        id={"type": "hit", "index": h["id"]}, n_clicks=0, className="search-hit")
            for h in hits]
