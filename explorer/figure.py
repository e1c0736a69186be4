"""The map figure: Plotly's axes, legend and mode bar, with every track drawn by the page's own
point renderer (``explorer/assets/pointmap.js``, a 2-D canvas), one colour per category.

The points travel once per map as binary (:func:`map_figure` says where), their categories once per
colour choice. A selected track, its neighbours, a song path or a clip's star, and the dimming of
the rest, are a :class:`Highlight` drawn on a canvas over the plot (``explorer/assets/overlay.js``).
Filters (and a selection shown on the map) are a bit per track (:func:`shown_json`) the renderer
greys by; a search hit is a patch of the axis ranges. Hover shows a card fetched by track id
(``explorer/assets/hovercard.js``): no per-point text is sent.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import TypedDict

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from store import genre_key, group_genres

COLOR_FIELDS: tuple[str, ...] = ("genre", "style", "cluster", "artist", "album", "decade", "year", "format")
TOP_CATEGORIES = 15
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#7f7f7f", "#393b79", "#ad494a", "#637939", "#8c6d31", "#7b4173",
)
OTHER_COLOR = "#c7c7c7"
GENRE_GROUP = "genre_group"
"""The map frame's column of genre groups (:func:`store.group_genres`: "Game soundtrack" and
"Game Soundtrack" are one), added once per map by :class:`explorer.mapdata.MapData`; the colours,
legend and filter use it, the hover card and search show the file's own ``genre``."""


def genre_groups(frame: pd.DataFrame) -> pd.Series:
    """Each track's genre group name (missing for no genre): the frame's :data:`GENRE_GROUP`
    column, or grouped now when the frame has none."""
    if GENRE_GROUP in frame:
        return frame[GENRE_GROUP]
    return pd.Series(group_genres(frame["genre"]), index=frame.index)


def category_codes(frame: pd.DataFrame, color_by: str) -> tuple[np.ndarray, list[str]]:
    """Each track's category for ``color_by`` as an index into the category names (``decade``
    from ``year``; "(none)" when missing). Factorised column-wise: a label string per track cost
    ~100 MB for a moment at 1M tracks."""
    if not len(frame):
        return np.zeros(0, np.int64), []
    if color_by in ("decade", "year", "cluster"):
        values = pd.to_numeric(frame["year" if color_by == "decade" else color_by], errors="coerce")
        if color_by == "decade":
            values = values // 10 * 10
        codes, uniques = pd.factorize(values.astype("Int64"), use_na_sentinel=True)
        names = [f"{int(v)}s" if color_by == "decade" else f"cluster {int(v)}" if color_by == "cluster" else str(int(v))
                 for v in uniques]
    else:
        # genre: the groups in their categories' order (largest first, ties by name), not first seen
        codes, uniques = pd.factorize(genre_groups(frame) if color_by == "genre" else frame[color_by],
                                      use_na_sentinel=True, sort=color_by == "genre")
        names = [str(v) for v in uniques]
    if (codes < 0).any():
        codes = np.where(codes < 0, len(names), codes)
        names.append("(none)")
    return np.asarray(codes, np.int64), names


@dataclass
class Traces:
    """How the map's points are split into category traces: ``names[i]`` and the frame rows
    ``members[i]`` (ascending) of trace ``i``."""

    names: list[str]
    members: list[np.ndarray]


def split(frame: pd.DataFrame, color_by: str, top: int = TOP_CATEGORIES) -> Traces:
    """The ``top`` largest categories of ``color_by`` in order of size (ties: first seen first;
    years and decades in time order), then "other" for the rest."""
    codes, names = category_codes(frame, color_by)
    counts = np.bincount(codes, minlength=len(names)) if len(codes) else np.zeros(0, np.int64)
    keep = [int(c) for c in np.argsort(-counts, kind="stable")[:top]]
    if color_by in ("year", "decade"):
        keep.sort(key=lambda c: names[c])
    trace_of = np.full(len(names), len(keep), np.int64)  # everything else: "other"
    trace_of[keep] = np.arange(len(keep))
    per_track = trace_of[codes] if len(codes) else codes
    members = [np.flatnonzero(per_track == i) for i in range(len(keep) + 1)]
    out = [names[c] for c in keep]
    if len(members[-1]):
        out.append("other")
    else:
        members.pop()
    return Traces(out, members)


MODEBAR_MARGIN = 34
"""Top margin of the map in pixels: room for Plotly's mode bar above the legend."""


def marker_size(n: int) -> float:
    """Marker diameter in pixels for a map of ``n`` tracks: ~11 at 40 tracks, 6 at 10k, 3.5 at 1M
    (16·n^-0.11, between 3 and 12): a small library is not a few specks, a big one not a blot."""
    return round(float(np.clip(16.0 * max(n, 1) ** -0.11, 3.0, 12.0)), 1)


def codes(traces: Traces, n: int) -> np.ndarray:
    """Each frame row's trace index (``uint8``: at most :data:`TOP_CATEGORIES` + 1 traces), as the
    page's point renderer colours it."""
    out = np.zeros(n, np.uint8)
    for i, rows in enumerate(traces.members):
        out[rows] = i
    return out


def trace_color(traces: Traces, i: int) -> str:
    return OTHER_COLOR if traces.names[i] == "other" else PALETTE[i % len(PALETTE)]


def extent(frame: pd.DataFrame) -> dict[str, list[float]]:
    """The map's axis ranges: every point, and a margin of 3 % around them."""
    if not len(frame):
        return {"x": [-1.0, 1.0], "y": [-1.0, 1.0]}
    out = {}
    for axis in ("x", "y"):
        values = frame[axis].to_numpy(np.float64)
        lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
        pad = max(hi - lo, 1e-6) * 0.03
        out[axis] = [round(lo - pad, 4), round(hi + pad, 4)]
    return out


def map_figure(frame: pd.DataFrame, color_by: str, traces: Traces | None = None, token: str = "0") -> go.Figure:
    """The map's axes, legend and mode bar, and what the page's point renderer needs to draw every
    track (``explorer/assets/pointmap.js``, on a canvas under Plotly's top layers).

    Plotly draws no point: its traces hold one point with no position, one per category (top-N +
    "other"), there for the legend (a click hides a category) and the lasso. The points come once per map as binary from
    ``/api/v1/map/points`` (id, x, y: 12 bytes a track), their categories per colour choice from
    ``/api/v1/map/colors`` (a byte a track); both URLs, the colours and the marker size travel in
    ``layout.meta.musicmap``. Plotly's WebGL scatter took ~2 s a frame at 1M points in a browser
    without a GPU (and every colour change, zoom or pan is a frame); the canvas draws 1M in ~40 ms
    (39 ms in ``benchmarks/results/explorer-20261130-053527.json``)."""
    traces = traces or split(frame, color_by)
    size = marker_size(len(frame))
    ranges = extent(frame)
    fig = go.Figure()
    for i, (name, rows) in enumerate(zip(traces.names, traces.members, strict=True)):
        # one point with no position: an empty trace would be left out of the legend and the lasso
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"{name} ({len(rows)})", hoverinfo="none",
                                 marker={"size": size, "color": trace_color(traces, i)}))
    fig.update_layout(
        template="none",  # the default template adds 8 kB of styling to every figure sent
        uirevision="map",  # keep zoom and pan across updates
        # the mode bar sits in the top margin, above the legend (right of the plot, outside it)
        margin={"l": 10, "r": 10, "t": MODEBAR_MARGIN, "b": 10},
        xaxis={"visible": False, "range": ranges["x"], "autorange": False},
        yaxis={"visible": False, "range": ranges["y"], "autorange": False, "scaleanchor": "x"},
        legend={"title": {"text": color_by}, "itemsizing": "constant", "x": 1.0, "y": 1.0, "xanchor": "left",
                "yanchor": "top"},
        plot_bgcolor="white", paper_bgcolor="white", clickmode="none", hovermode=False, dragmode="pan",
        meta={"musicmap": {
            "n": len(frame), "size": size, "colorBy": color_by,
            "points": f"/api/v1/map/points?v={token}",
            "codes": f"/api/v1/map/colors?by={color_by}&v={token}",
            "colors": [trace_color(traces, i) for i in range(len(traces.names))],
            # drawn first (under the rest): "other"
            "under": [i for i, name in enumerate(traces.names) if name == "other"],
        }},
    )
    return fig


class Mark(TypedDict):
    """One highlighted point, as the map's overlay draws it (``explorer/assets/overlay.js``)."""

    id: int
    x: float
    y: float
    size: int
    ring: str
    fill: str
    symbol: str


class Highlight(TypedDict):
    """What the overlay draws over the map: ``rays`` (a line from the first mark to each of the
    others: a selected track or an uploaded clip, and its neighbours), ``path`` (one line through
    the marks in order) or ``spots`` (the marks alone: a search by sound's matches); with marks,
    the rest of the map is dimmed."""

    mode: str
    marks: list[Mark]


NO_HIGHLIGHT: Highlight = {"mode": "none", "marks": []}


def highlight_json(highlight: Highlight) -> str:
    """The highlight as the page carries it (``#highlight[data-highlight]``, read by the overlay)."""
    return json.dumps(highlight, separators=(",", ":"))

def _mark(track_id: int, x: float, y: float, size: int, ring: str, fill: str, symbol: str) -> Mark:
    return {"id": int(track_id), "x": round(float(x), 4), "y": round(float(y), 4), "size": size, "ring": ring,
            "fill": fill, "symbol": symbol}


def _rays(frame: pd.DataFrame, origin: tuple[float, float], origin_id: int, symbol: str, fill: str,
          neighbours: list[int], row_of: pd.Series) -> Highlight:
    """The origin, then each neighbour on the map (a line is drawn from the origin to each)."""
    wanted = list(dict.fromkeys(t for t in neighbours if t in row_of.index))
    rows = row_of[wanted].to_numpy() if wanted else np.zeros(0, np.int64)
    xs, ys = frame["x"].to_numpy()[rows], frame["y"].to_numpy()[rows]
    marks = [_mark(origin_id, origin[0], origin[1], 20, "#111111", fill, symbol)]
    marks += [_mark(t, x, y, 13, "#d62728", "", "circle") for t, x, y in zip(wanted, xs, ys, strict=True)]
    return {"mode": "rays", "marks": marks}


def highlight_points(frame: pd.DataFrame, track_id: int, neighbours: list[int],
                     row_of: pd.Series | None = None) -> Highlight:
    """The highlight for a selected track and its neighbours: rings, and a line from the selected
    track to each neighbour. ``row_of`` maps track id to frame row (built here when not given)."""
    if row_of is None:
        row_of = pd.Series(np.arange(len(frame)), index=frame["id"].astype(np.int64))
    if track_id not in row_of.index:
        return NO_HIGHLIGHT
    row = int(row_of[track_id])
    origin = (float(frame["x"].iat[row]), float(frame["y"].iat[row]))
    return _rays(frame, origin, track_id, "circle", "", [n for n in neighbours if n != track_id], row_of)


def path_points(frame: pd.DataFrame, track_ids: list[int], row_of: pd.Series) -> Highlight:
    """The highlight for a song path: one line through its tracks in order, the ends large."""
    shown = [t for t in track_ids if t in row_of.index]
    marks: list[Mark] = []
    for step, track_id in enumerate(shown):
        row = int(row_of[track_id])
        end = step in (0, len(shown) - 1)
        marks.append(_mark(track_id, frame["x"].iat[row], frame["y"].iat[row], 20 if end else 13,
                           "#111111" if end else "#1f77b4", "#ffd400" if end else "",
                           "diamond" if end else "circle"))
    return {"mode": "path", "marks": marks}


CLIP_ID = -1
"""The highlight's track id for an uploaded clip's star (not a track)."""


def spot_points(frame: pd.DataFrame, track_ids: list[int], row_of: pd.Series) -> Highlight:
    """The highlight for a search by sound: its matches lit (best first, the first ones larger), no
    lines, the rest of the map dimmed."""
    marks: list[Mark] = []
    for rank, track_id in enumerate(t for t in track_ids if t in row_of.index):
        row = int(row_of[track_id])
        marks.append(_mark(track_id, frame["x"].iat[row], frame["y"].iat[row], 14 if rank < 10 else 9,
                           "#111111", "#ffd400" if rank < 10 else "#ffe97a", "circle"))
    return {"mode": "spots", "marks": marks}


def taste_points(frame: pd.DataFrame, liked: list[int], disliked: list[int], row_of: pd.Series) -> Highlight:
    """The highlight of the person's taste (the page's "show my likes"): liked tracks lit green,
    disliked ones red, as ``spots`` (no lines, the rest of the map dimmed)."""
    marks: list[Mark] = []
    for ids, fill in ((liked, "#2ca02c"), (disliked, "#d62728")):
        for track_id in (t for t in ids if t in row_of.index):
            row = int(row_of[track_id])
            marks.append(_mark(track_id, frame["x"].iat[row], frame["y"].iat[row], 12, "#111111", fill, "circle"))
    return {"mode": "spots", "marks": marks}


def clip_points(frame: pd.DataFrame, position: tuple[float, float], neighbours: list[int],
                row_of: pd.Series) -> Highlight:
    """The highlight for an uploaded clip: a filled star where it lands, lines to its neighbours."""
    return _rays(frame, position, CLIP_ID, "star", "#ffd400", neighbours, row_of)


def filter_mask(frame: pd.DataFrame, *, genres: list[str] | None = None, styles: list[str] | None = None,
                years: tuple[int, int] | None = None) -> np.ndarray | None:
    """Which tracks match the filters (None: no filter set). A genre matches its whole group
    (:func:`genre_groups`), however it is spelled."""
    if not len(frame) or not (genres or styles or years):
        return None
    mask = np.ones(len(frame), bool)
    if genres:  # every spelling of a chosen genre's group
        groups = genre_groups(frame).cat
        wanted = {genre_key(g) for g in genres}
        chosen = np.array([genre_key(name) in wanted for name in groups.categories] + [False])
        mask &= chosen[groups.codes.to_numpy()]  # code -1 (no genre) → the final False
    if styles:
        mask &= frame["style"].astype("string").isin(styles).fillna(False).to_numpy(bool)
    if years:
        year = pd.to_numeric(frame["year"], errors="coerce")
        mask &= ((year >= years[0]) & (year <= years[1])).fillna(False).to_numpy(bool)
    return mask


def shown_json(mask: np.ndarray | None) -> str:
    """Which tracks stand out on the map (the rest is greyed), as the page carries it
    (``#map-filter[data-filter]``, drawn by ``explorer/assets/pointmap.js``): ``null`` when all do,
    else a bit per frame row (numpy ``packbits``, little bit order, base64) and the row count —
    12.5 kB at 100k tracks, where the points' indices as JSON were 600 kB."""
    if mask is None:
        return "null"
    return json.dumps({"n": len(mask),
                       "bits": base64.b64encode(np.packbits(mask, bitorder="little").tobytes()).decode()},
                      separators=(",", ":"))


def centred_ranges(frame: pd.DataFrame, track_id: int, share: float | None = None) -> dict[str, list[float]] | None:
    """Axis ranges centred on a track, ``share`` of the map's extent on each side: by default
    0.12 from 10k tracks up, more on smaller maps (0.45 at 50 tracks), where a track's neighbours
    lie further apart on the map and should stay in view."""
    row = frame.loc[frame["id"] == track_id]
    if row.empty:
        return None
    if share is None:
        share = min(0.5, 0.12 * max(1.0, 10_000 / max(len(frame), 1)) ** 0.25)
    x, y = float(row["x"].iloc[0]), float(row["y"].iloc[0])
    half = share * max(float(np.ptp(frame["x"])), float(np.ptp(frame["y"])), 1e-6)
    return {"x": [x - half, x + half], "y": [y - half, y + half]}
