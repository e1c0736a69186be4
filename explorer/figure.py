"""The map figure: every track as one WebGL point, one trace per colour category.

The big traces are sent once per colour choice; everything that changes often (a selected track,
its neighbours, filters, a search hit) is a small :class:`dash.Patch` against them: the highlight
trace's points, each category trace's ``selectedpoints`` (filters grey out the rest) and opacity
(a selection dims the map), and the axis ranges (centring on a track).
"""

from __future__ import annotations

import html as html_lib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

COLOR_FIELDS: tuple[str, ...] = ("genre", "style", "cluster", "artist", "album", "decade", "year", "format")
TOP_CATEGORIES = 15
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#7f7f7f", "#393b79", "#ad494a", "#637939", "#8c6d31", "#7b4173",
)
OTHER_COLOR = "#c7c7c7"
DIMMED_OPACITY = 0.3
"""Category traces while a track is selected: greyed, still visible."""
FILTERED_OPACITY = 0.15
"""Points that do not match the filters."""


def hover_texts(frame: pd.DataFrame) -> np.ndarray:
    """Per track: title, artist, album, genre and year, HTML-escaped (tags are user data)."""
    def esc(value: Any) -> str:
        return html_lib.escape(str(value)) if value is not None and not pd.isna(value) else "—"

    return np.asarray([
        f"<b>{esc(r.title)}</b><br>{esc(r.artist)}<br><i>{esc(r.album)}</i><br>genre: {esc(r.genre)} · {esc(r.year)}"
        for r in frame.itertuples(index=False)
    ], dtype=object)


def category_labels(frame: pd.DataFrame, color_by: str) -> pd.Series:
    """The category of each track for ``color_by`` (``decade`` from ``year``; "(none)" when missing)."""
    if not len(frame):
        return pd.Series([], dtype="string")
    if color_by == "decade":
        years = pd.to_numeric(frame["year"], errors="coerce")
        labels = (years // 10 * 10).astype("Int64").astype("string") + "s"
    elif color_by == "cluster":
        labels = "cluster " + frame["cluster"].astype("Int64").astype("string")
    else:
        labels = frame[color_by].astype("string")
    return labels.fillna("(none)")


@dataclass
class Traces:
    """How the map's points are split into category traces: ``names[i]`` and the frame rows
    ``members[i]`` (ascending) of trace ``i``; the highlight trace comes after them."""

    names: list[str]
    members: list[np.ndarray]

    @property
    def highlight(self) -> int:
        return len(self.names)


def split(frame: pd.DataFrame, color_by: str, top: int = TOP_CATEGORIES) -> Traces:
    """The ``top`` largest categories of ``color_by`` in order of size (years and decades in time
    order), then "other" for the rest."""
    labels = category_labels(frame, color_by)
    counts = labels.value_counts()
    keep = list(counts.index[:top])
    if color_by in ("year", "decade"):
        keep.sort()
    codes = labels.where(labels.isin(keep), "other").to_numpy(dtype=object)
    names = keep + (["other"] if (codes == "other").any() else [])
    return Traces(names, [np.flatnonzero(codes == name) for name in names])


MODEBAR_MARGIN = 34
"""Top margin of the map in pixels: room for Plotly's mode bar above the legend."""


def marker_size(n: int) -> float:
    """Marker diameter in pixels for a map of ``n`` tracks: ~11 at 40 tracks, 6 at 10k, 3.5 at 1M
    (16·n^-0.11, between 3 and 12): a small library is not a few specks, a big one not a blot."""
    return round(float(np.clip(16.0 * max(n, 1) ** -0.11, 3.0, 12.0)), 1)


def map_figure(frame: pd.DataFrame, color_by: str, hover: np.ndarray | None, traces: Traces | None = None) -> go.Figure:
    """The map: one WebGL trace per category (top-N + "other"), then the (empty) highlight trace.

    Coordinates and track ids go as typed arrays (base64, 4 bytes a number). ``hover=None`` leaves
    the hover texts out (half the bytes at 100k tracks): the page's first paint sends them in a
    patch right after (:func:`hover_patch`)."""
    traces = traces or split(frame, color_by)
    ids = frame["id"].to_numpy(np.int64) if len(frame) else np.zeros(0, np.int64)
    xs = frame["x"].to_numpy(np.float32) if len(frame) else np.zeros(0, np.float32)
    ys = frame["y"].to_numpy(np.float32) if len(frame) else np.zeros(0, np.float32)
    size = marker_size(len(frame))
    fig = go.Figure()
    for i, (name, rows) in enumerate(zip(traces.names, traces.members, strict=True)):
        fig.add_trace(go.Scattergl(
            x=xs[rows], y=ys[rows], mode="markers", name=f"{name} ({len(rows)})",
            # the track ids; a click is resolved from (curve, point) on the server, since a typed
            # array may arrive as None in clickData (plotly#5119)
            customdata=ids[rows].astype(np.int32),
            text=None if hover is None else hover[rows].tolist(), hovertemplate="%{text}<extra></extra>",
            marker={"size": size, "color": OTHER_COLOR if name == "other" else PALETTE[i % len(PALETTE)],
                    "opacity": 0.85},
            unselected={"marker": {"opacity": FILTERED_OPACITY}},
        ))
    fig.add_trace(go.Scattergl(
        x=[], y=[], mode="markers+lines", name="selection", showlegend=False, customdata=[], text=[],
        hovertemplate="%{text}<extra></extra>", line={"width": 1, "color": "rgba(17,17,17,0.35)"},
        marker={"size": [], "color": [], "symbol": [], "line": {"width": 3, "color": []}},
    ))
    fig.update_layout(
        template="none",  # the default template adds 8 kB of styling to every figure sent
        uirevision="map",  # keep zoom and pan across updates
        # the mode bar sits in the top margin, above the legend (right of the plot, outside it)
        margin={"l": 10, "r": 10, "t": MODEBAR_MARGIN, "b": 10},
        xaxis={"visible": False}, yaxis={"visible": False, "scaleanchor": "x"},
        legend={"title": {"text": color_by}, "itemsizing": "constant", "x": 1.0, "y": 1.0, "xanchor": "left",
                "yanchor": "top"},
        plot_bgcolor="white", paper_bgcolor="white", clickmode="event", hovermode="closest", dragmode="pan",
    )
    return fig


def hover_patch(patch: Any, hover: np.ndarray, traces: Traces) -> Any:
    """Put the hover texts into the category traces of a figure sent without them."""
    for i, rows in enumerate(traces.members):
        patch["data"][i]["text"] = hover[rows].tolist()
    return patch


def track_at(traces: Traces, ids: np.ndarray, curve: int, point: int) -> int | None:
    """The track id of point ``point`` of category trace ``curve`` (None if out of range)."""
    if not 0 <= curve < len(traces.members) or not 0 <= point < len(traces.members[curve]):
        return None
    return int(ids[traces.members[curve][point]])


def _rays(frame: pd.DataFrame, origin: tuple[float, float], origin_id: int, origin_text: str, symbol: str,
          fill: str, neighbours: list[int], row_of: pd.Series) -> dict[str, Any]:
    """The highlight trace: the origin, and a line from it to each neighbour's ring (the path goes
    out and back through the origin)."""
    wanted = list(dict.fromkeys(t for t in neighbours if t in row_of.index))
    positions = frame.iloc[row_of[wanted].to_numpy()].set_index("id") if wanted else frame.iloc[:0].set_index("id")
    titles = positions["title"].astype("string").fillna("—")
    x0, y0 = origin
    out: dict[str, list[Any]] = {"x": [x0], "y": [y0], "customdata": [origin_id], "text": [origin_text],
                                 "size": [20], "color": ["#111111"], "symbol": [symbol], "fill": [fill]}
    for n in wanted:
        for key, value in (("x", float(positions.at[n, "x"])), ("y", float(positions.at[n, "y"])),
                           ("customdata", n), ("text", f"similar: {titles[n]}"), ("size", 13), ("color", "#d62728"),
                           ("symbol", "circle"), ("fill", "rgba(0,0,0,0)")):
            out[key].append(value)
        for key, value in (("x", x0), ("y", y0), ("customdata", origin_id), ("text", origin_text), ("size", 20),
                           ("color", "#111111"), ("symbol", symbol), ("fill", fill)):
            out[key].append(value)
    return out


def highlight_points(frame: pd.DataFrame, track_id: int, neighbours: list[int],
                     row_of: pd.Series | None = None) -> dict[str, Any]:
    """The highlight trace for a selected track and its neighbours: rings, and a line from the
    selected track to each neighbour. ``row_of`` maps track id to frame row (built here when not given)."""
    if row_of is None:
        row_of = pd.Series(np.arange(len(frame)), index=frame["id"].astype(np.int64))
    if track_id not in row_of.index:
        return {"x": [], "y": [], "customdata": [], "text": [], "size": [], "color": [], "symbol": [], "fill": []}
    row = frame.iloc[int(row_of[track_id])]
    title = row["title"] if isinstance(row["title"], str) else "—"
    return _rays(frame, (float(row["x"]), float(row["y"])), track_id, f"selected: {title}", "circle",
                 "rgba(0,0,0,0)", [n for n in neighbours if n != track_id], row_of)


def path_points(frame: pd.DataFrame, track_ids: list[int], row_of: pd.Series) -> dict[str, Any]:
    """The highlight trace for a song path: one line through its tracks in order, the ends large."""
    out: dict[str, list[Any]] = {"x": [], "y": [], "customdata": [], "text": [], "size": [], "color": [],
                                 "symbol": [], "fill": []}
    shown = [t for t in track_ids if t in row_of.index]
    for step, track_id in enumerate(shown):
        row = frame.iloc[int(row_of[track_id])]
        title = row["title"] if isinstance(row["title"], str) else "—"
        end = step in (0, len(shown) - 1)
        label = "start" if step == 0 else "end" if step == len(shown) - 1 else f"step {step + 1}"
        for key, value in (("x", float(row["x"])), ("y", float(row["y"])), ("customdata", track_id),
                           ("text", f"{label}: {html_lib.escape(title)}"), ("size", 20 if end else 13),
                           ("color", "#111111" if end else "#1f77b4"), ("symbol", "diamond" if end else "circle"),
                           ("fill", "#ffd400" if end else "rgba(0,0,0,0)")):
            out[key].append(value)
    return out


CLIP_ID = -1
"""The highlight trace's track id for an uploaded clip's star (not a track: clicks on it do nothing)."""


def clip_points(frame: pd.DataFrame, position: tuple[float, float], neighbours: list[int], row_of: pd.Series,
                name: str) -> dict[str, Any]:
    """The highlight trace for an uploaded clip: a filled star where it lands, lines to its neighbours."""
    return _rays(frame, position, CLIP_ID, f"your clip: {html_lib.escape(name)}", "star", "#ffd400", neighbours,
                 row_of)


def filter_mask(frame: pd.DataFrame, *, genres: list[str] | None = None, styles: list[str] | None = None,
                years: tuple[int, int] | None = None) -> np.ndarray | None:
    """Which tracks match the filters (None: no filter set)."""
    if not len(frame) or not (genres or styles or years):
        return None
    mask = np.ones(len(frame), bool)
    if genres:
        mask &= frame["genre"].astype("string").isin(genres).fillna(False).to_numpy(bool)
    if styles:
        mask &= frame["style"].astype("string").isin(styles).fillna(False).to_numpy(bool)
    if years:
        year = pd.to_numeric(frame["year"], errors="coerce")
        mask &= ((year >= years[0]) & (year <= years[1])).fillna(False).to_numpy(bool)
    return mask


def selected_points(traces: Traces, mask: np.ndarray | None) -> list[list[int] | None]:
    """Each category trace's ``selectedpoints`` for a filter mask (None: all shown normally)."""
    if mask is None:
        return [None] * len(traces.names)
    return [np.flatnonzero(mask[rows]).tolist() for rows in traces.members]


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
