"""A person's taste, read from the listening journal, and what it does to every list.

**From events to taste** (:func:`derive`): per track, the latest of ``liked``/``disliked`` that
was not taken back is its state; every ``played`` and ``skipped`` counts. Each event weighs
``0.5 ** (age / HALF_LIFE_DAYS)`` (recency decay), times its kind's weight: a like
:data:`LIKE`, a play heard to at least half (or 4 minutes) :data:`PLAY` each, a skip before half
:data:`SKIP` each (a skip near the end counts as a play), a dislike :data:`DISLIKE`. A track's
weight is their sum, each kind capped (:data:`CAP`), so 30 plays do not drown one dislike.

**Steering a list** (:class:`Steer`, a relevance-feedback step in the embedding space): the
candidates of a list (a pool larger than the list) are re-ranked by ``cosine + shift``, where

    shift = spread · (A · tanh(Σ⁺ wᵢ K(sᵢ)) − B · tanh(Σ⁻ |wᵢ| K(sᵢ)))

over the tracks with a positive (liked, played) and a negative (disliked, skipped) weight,
``sᵢ`` the candidate's cosine to track ``i``, and ``K(s) = clip((s − μ) / (1 − μ), 0, 1)^p``: 0 for a
track no closer than two random tracks of this library (μ, the mean cosine of random pairs), ½ at
a track's 10-nearest-neighbour radius (τ, the median over sampled tracks; ``p`` is set so), 1 for
the track itself.
``spread = τ − μ``: the shift is measured in the library's own scale of "close". A skipped track
itself moves down once more (it was skipped, its neighbours only sound like it). A disliked track
is never listed (unless asked for by id, as a seed). Each moved track says why
("↑ close to 3 tracks you liked", "↓ sounds like one you skipped twice"). The scores shown stay
cosine similarities; the shift is reported beside them.

**A mix** (:func:`mix`): the tracks with a positive weight in the last ``since`` seconds are the
seeds, grouped into moods (a seed joins the first group whose centroid is within τ, else starts
one); each mood brings its own neighbours, steered, in proportion to its weight, interleaved;
tracks heard in that window and the seeds themselves are left out.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import faiss
import numpy as np
import pandas as pd

from .errors import InvalidQuery
from .journal import NothingToMix
from .search import SearchOptions, Variety, knn, vectors_of
from .types import Neighbour, TasteNote
from .vectors import l2_normalise

if TYPE_CHECKING:
    from .store import Store

HALF_LIFE_DAYS = 30.0
LIKE = 1.0
PLAY = 0.25
SKIP = -0.4
DISLIKE = -1.0
CAP = 1.0
"""The most one kind of event adds to a track's weight (in absolute value)."""
FULL_PLAY_SHARE = 0.5
FULL_PLAY_SECONDS = 240.0
LATE_SKIP_SHARE = 0.9
"""A skip after 90 % of the track is a play that missed its last seconds."""
A_UP = 2.0
B_DOWN = 2.0
"""Weights of the pull toward liked tracks and the push away from disliked ones (in units of the
library's spread τ − μ); measured in ``benchmarks/bench_taste.py``: at 1.0 / 1.0 a listener's
liked soundtrack rose from 0.156 to 0.271 of the similar lists after 10 events (×1.74), at
2.0 / 2.0 to 0.328 (×2.10; ×2.02 after 20), the lists still varied: the best of the grid in
benchmarks/results/taste-listener-20261206-012205.json;
docs/benchmarks.md, "Taste")."""
NEIGHBOURS = 10
SAMPLE = 64
POOL_FACTOR = 4
"""A steered list re-ranks this many times its length of nearest candidates (at least 40 more)."""
CLOSE = 0.5
"""K at least this counts a track as one the candidate is "close to" in the explanation."""


@dataclass(frozen=True)
class TrackTaste:
    """One track's derived state: ``weight`` > 0 pulls its neighbours up, < 0 pushes them down."""

    track_id: int
    liked: bool
    disliked: bool
    plays: int
    skips: int
    weight: float
    last: float


@dataclass(frozen=True)
class Taste:
    """Every track the person did something with (current track ids), and the events' count."""

    tracks: dict[int, TrackTaste]
    events: int
    now: float

    @property
    def empty(self) -> bool:
        return not any(t.weight or t.disliked for t in self.tracks.values())

    @property
    def disliked(self) -> set[int]:
        return {i for i, t in self.tracks.items() if t.disliked}

    def summary(self) -> dict[str, int]:
        ts = self.tracks.values()
        return {"events": self.events, "tracks": len(self.tracks), "liked": sum(t.liked for t in ts),
                "disliked": sum(t.disliked for t in ts), "plays": sum(t.plays for t in ts),
                "skips": sum(t.skips for t in ts)}


def resolve_ids(events: pd.DataFrame, tracks: pd.DataFrame) -> pd.Series:
    """Each event's current track id (or -1): its own id when that track still has the same file
    (fingerprint, else path), else the track now holding its fingerprint, else its path — so the
    events of a pruned track come back with it under its new id."""
    if events.empty:
        return pd.Series([], dtype="int64")
    by_id = tracks.set_index("id")
    fp = {f: i for i, f in zip(tracks["id"], tracks["fingerprint"], strict=True) if isinstance(f, str)}
    paths = dict(zip(tracks["path"], tracks["id"], strict=True))
    out = []
    for tid, path, fingerprint in zip(events["track_id"], events["path"], events["fingerprint"], strict=True):
        tid = int(tid)
        if tid in by_id.index:
            row = by_id.loc[tid]
            same = (not isinstance(fingerprint, str) or row["fingerprint"] == fingerprint
                    or (isinstance(path, str) and row["path"] == path))
            if same:
                out.append(tid)
                continue
        if isinstance(fingerprint, str) and fingerprint in fp:
            out.append(int(fp[fingerprint]))
        elif isinstance(path, str) and path in paths:
            out.append(int(paths[path]))
        else:
            out.append(-1)
    return pd.Series(out, index=events.index, dtype="int64")


def active_events(events: pd.DataFrame) -> pd.DataFrame:
    """The events not taken back, undo rows dropped."""
    undone = set(events.loc[events["kind"] == "undo", "undoes"].dropna().astype(int))
    return events[(events["kind"] != "undo") & ~events["id"].isin(undone)]


def derive(events: pd.DataFrame, current: pd.Series, *, now: float | None = None,
           since: float | None = None) -> Taste:
    """The taste of ``events`` (:class:`store.journal.Journal` rows) whose current track ids are
    ``current`` (:func:`resolve_ids`; -1 for a track not in the store now, left out)."""
    now = time.time() if now is None else now
    n_events = len(events)
    live = active_events(events.assign(current=current))
    live = live[live["current"] >= 0]
    if since is not None:
        live = live[live["at"] >= since]
    out: dict[int, TrackTaste] = {}
    for tid, group in live.groupby("current", sort=False):
        decay = np.power(0.5, (now - group["at"].to_numpy(float)) / (HALF_LIFE_DAYS * 86400.0))
        kinds = group["kind"].to_numpy()
        state = group[group["kind"].isin(("liked", "disliked"))]
        last_state = state.sort_values(["at", "id"])["kind"].iloc[-1] if len(state) else None
        plays = skips = 0
        up = down = 0.0
        for kind, w, secs, dur in zip(kinds, decay, group["seconds"], group["duration"], strict=True):
            share = secs / dur if _num(secs) and _num(dur) and dur > 0 else None
            if kind == "played":
                if (share is not None and share >= FULL_PLAY_SHARE) or (_num(secs) and secs >= FULL_PLAY_SECONDS) \
                        or (share is None and not _num(secs)):
                    plays += 1
                    up += PLAY * w
            elif kind == "skipped":
                if share is not None and share >= LATE_SKIP_SHARE:
                    plays += 1
                    up += PLAY * w
                else:
                    skips += 1
                    down += -SKIP * w
        weight = min(up, CAP) - min(down, CAP)
        liked = last_state == "liked"
        disliked = last_state == "disliked"
        if liked or disliked:
            w_state = float(np.power(0.5, (now - float(state["at"].max())) / (HALF_LIFE_DAYS * 86400.0)))
            weight += LIKE * w_state if liked else DISLIKE * w_state
        out[int(tid)] = TrackTaste(int(tid), liked, disliked, plays, skips, float(weight), float(group["at"].max()))
    return Taste(out, n_events, now)


def _num(x: object) -> bool:
    return isinstance(x, (int, float)) and not (isinstance(x, float) and math.isnan(x))


@dataclass(frozen=True)
class Closeness:
    """The library's scale of "close": μ, the mean cosine of random pairs; τ, the median cosine of
    a track to its 10th nearest neighbour."""

    mu: float
    tau: float

    @property
    def spread(self) -> float:
        return max(self.tau - self.mu, 1e-3)

    @property
    def power(self) -> float:
        """The exponent that puts :meth:`kernel` at one half on τ."""
        reach = min(max(self.spread / max(1.0 - self.mu, 1e-6), 1e-6), 1.0 - 1e-6)
        return float(np.log(0.5) / np.log(reach))

    def kernel(self, sims: np.ndarray) -> np.ndarray:
        """How close cosines ``sims`` are, from 0 (no closer than random pairs, μ) through ½ (a
        10th neighbour, τ) to 1 (the same vector)."""
        return np.clip((sims - self.mu) / max(1.0 - self.mu, 1e-6), 0.0, 1.0) ** self.power


def closeness(index: faiss.Index, ids: np.ndarray) -> Closeness:
    """Measure :class:`Closeness` on ``index`` (its track ``ids``) from :data:`SAMPLE` tracks."""
    if len(ids) < 3:
        return Closeness(0.0, 1.0)
    rng = np.random.default_rng(len(ids))
    picked = rng.choice(ids, size=min(SAMPLE, len(ids)), replace=False)
    vectors = l2_normalise(vectors_of(index, picked))
    sims = vectors @ vectors.T
    off = sims[~np.eye(len(picked), dtype=bool)]
    k = min(NEIGHBOURS, len(ids) - 1)
    tenth = []
    for v in vectors:
        found = knn(index, v, k + 1)
        if len(found) > k:
            tenth.append(found[k][1])
    tau = float(np.median(tenth)) if tenth else float(np.max(off))
    mu = float(np.mean(off))
    return Closeness(mu, max(tau, mu + 1e-3))


@dataclass
class Steer:
    """A :class:`Taste` bound to a store's vectors: re-ranks candidates (see the module docstring)."""

    taste: Taste
    scale: Closeness
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 1), np.float32))
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @classmethod
    def bind(cls, taste: Taste, index: faiss.Index, scale: Closeness, indexed: set[int]) -> Steer:
        tracks = [t for t in taste.tracks.values() if t.weight and t.track_id in indexed]
        ids = np.array([t.track_id for t in tracks], np.int64)
        vectors = l2_normalise(vectors_of(index, ids)) if len(ids) else np.zeros((0, int(index.d)), np.float32)
        return cls(taste, scale, ids, vectors, np.array([t.weight for t in tracks], float))

    @property
    def disliked(self) -> set[int]:
        return self.taste.disliked

    def shifts(self, index: faiss.Index, ids: Sequence[int]) -> tuple[np.ndarray, list[TasteNote | None]]:
        """Each candidate's shift (in cosine units) and its note (None: not moved)."""
        if not len(ids):
            return np.zeros(0), []
        cand = l2_normalise(vectors_of(index, ids))
        if not len(self.ids):
            return np.zeros(len(ids)), [None] * len(ids)
        kern = self.scale.kernel(cand @ self.vectors.T)  # (n, m)
        pos = np.clip(self.weights, 0, None)
        neg = np.clip(-self.weights, 0, None)
        shift = self.scale.spread * (A_UP * np.tanh(kern @ pos) - B_DOWN * np.tanh(kern @ neg))
        own = {int(i): float(w) for i, w in zip(self.ids, self.weights, strict=True) if w < 0}
        shift -= self.scale.spread * B_DOWN * np.array([np.tanh(-own.get(int(i), 0.0)) for i in ids])
        notes = [self._note(float(s), kern[i]) for i, s in enumerate(shift)]
        return shift, notes

    def _note(self, shift: float, kern: np.ndarray) -> TasteNote | None:
        if abs(shift) < 0.02 * self.scale.spread:
            return None
        close = kern >= CLOSE
        if not close.any():
            close = kern == kern.max()
        tracks = [self.taste.tracks[int(i)] for i in self.ids[close]]
        if shift > 0:
            liked = [t for t in tracks if t.liked]
            played = [t for t in tracks if not t.liked and t.weight > 0]
            why = (f"↑ close to {_count(len(liked), 'track')} you liked" if liked
                   else f"↑ close to {_count(len(played), 'track')} you played")
        else:
            disliked = [t for t in tracks if t.disliked]
            skipped = sorted((t for t in tracks if not t.disliked and t.weight < 0), key=lambda t: -t.skips)
            if disliked:
                why = f"↓ sounds like {_count(len(disliked), 'track')} you disliked"
            elif len(skipped) == 1:
                why = f"↓ sounds like one you skipped {_times(skipped[0].skips)}"
            else:
                why = f"↓ sounds like {len(skipped)} tracks you skipped"
        return TasteNote(round(shift, 6), why)

    def rerank(self, index: faiss.Index, candidates: list[tuple[int, float]], *, unit: float | None = None
               ) -> tuple[list[tuple[int, float]], dict[int, TasteNote]]:
        """``candidates`` (best first, by cosine) without disliked tracks, ordered by score + shift;
        and the notes of the tracks that moved. ``unit``: for scores that are not cosines (a word
        search's), the shift of a track fully inside liked neighbourhoods (default: the spread τ − μ)."""
        kept = [(i, s) for i, s in candidates if i not in self.taste.disliked]
        shift, notes = self.shifts(index, [i for i, _ in kept])
        if unit is not None:
            shift = shift / self.scale.spread * unit
            notes = [None if n is None else TasteNote(round(float(x), 6), n.why)
                     for n, x in zip(notes, shift, strict=True)]
        order: list[int] = np.argsort(-(np.array([s for _, s in kept]) + shift), kind="stable").tolist() if kept else []
        out = [kept[j] for j in order]
        return out, {kept[j][0]: n for j, n in enumerate(notes) if n is not None}


def _count(n: int, noun: str) -> str:
    return f"one {noun}" if n == 1 else f"{n} {noun}s"


def _times(n: int) -> str:
    return {1: "once", 2: "twice"}.get(n, f"{n} times")


@dataclass(frozen=True)
class MixItem:
    """One track of a mix: the neighbour (score: cosine to its mood's centroid), the seed nearest
    it, and why it is there."""

    neighbour: Neighbour
    seed: int
    why: str


def moods(vectors: np.ndarray, weights: np.ndarray, scale: Closeness, most: int = 6) -> list[list[int]]:
    """Seeds grouped into moods: by weight, each joins the first group whose centroid it is
    within τ of, else starts one (at most ``most``; later ones join the nearest)."""
    groups: list[list[int]] = []
    centroids: list[np.ndarray] = []
    for i in np.argsort(-weights, kind="stable"):
        sims = [float(vectors[i] @ c) for c in centroids]
        if sims and (max(sims) >= scale.tau or len(groups) >= most):
            g = int(np.argmax(sims))
            groups[g].append(int(i))
            centroids[g] = l2_normalise(vectors[groups[g]].mean(axis=0))
        else:
            groups.append([int(i)])
            centroids.append(vectors[i])
    return groups


def mix(store: Store, steer: Steer, *, n: int = 30, since: float, where: str | None = None,
        max_per_artist: int | None = None, max_per_album: int | None = None, dedupe: bool = False) -> list[MixItem]:
    """A mix of ``n`` tracks from what the person played and liked since ``since`` (Unix seconds):
    see the module docstring. Raises :class:`InvalidQuery` when there is nothing to start from."""
    if not isinstance(n, int) or not 1 <= n <= 1000:
        raise InvalidQuery(f"n must be a whole number from 1 to 1000, got {n!r}")
    options = SearchOptions(k=n, where=where, max_per_artist=max_per_artist, max_per_album=max_per_album,
                            dedupe=dedupe)
    options.validate()
    taste = steer.taste
    recent = {i: t for i, t in taste.tracks.items() if t.last >= since}
    seeds = [t for t in recent.values() if t.weight > 0 and t.track_id in set(steer.ids.tolist())]
    if not seeds:
        raise NothingToMix("nothing to mix from yet: no track was liked or played to the end in that time "
                           "(like a few, or play them, then ask again)")
    index = store.index
    seed_ids = [t.track_id for t in seeds]
    vectors = l2_normalise(vectors_of(index, seed_ids))
    weights = np.array([t.weight for t in seeds])
    groups = moods(vectors, weights, steer.scale)
    seed_rows = store.track_rows(seed_ids)
    heard = set(recent) | set(seed_ids)
    share = np.array([weights[g].sum() for g in groups])
    quota = _quotas(share, n)
    ranked: list[list[Neighbour]] = []
    for g, q in zip(groups, quota, strict=True):
        centroid = l2_normalise(vectors[g].mean(axis=0))
        ranked.append(store.search(vector=centroid, k=max(3 * q + 10, 20), where=where, exclude=sorted(heard),
                                   taste=True) if q else [])
    variety = Variety(options)
    taken: set[int] = set()
    out: list[MixItem] = []
    positions = [0] * len(groups)
    counts = [0] * len(groups)
    while len(out) < n:
        progressed = False
        for gi, group in enumerate(groups):
            if counts[gi] >= quota[gi]:
                continue
            lst = ranked[gi]
            while positions[gi] < len(lst):
                cand = lst[positions[gi]]
                positions[gi] += 1
                if cand.track_id in taken or not variety.admits(cand.track):
                    continue
                variety.take(cand.track)
                taken.add(cand.track_id)
                counts[gi] += 1
                near = group[int(np.argmax(vectors[group] @ l2_normalise(vectors_of(index, [cand.track_id]))[0]))]
                seed = seed_ids[near]
                why = _mix_why(taste.tracks[seed], seed_rows.get(seed, {}), len(group), cand)
                out.append(MixItem(cand, seed, why))
                progressed = True
                break
            if len(out) >= n:
                break
        if not progressed:
            if any(counts[i] >= quota[i] and positions[i] < len(ranked[i]) for i in range(len(groups))):
                quota = [n] * len(groups)  # a mood ran short: the others fill in
                continue
            break
    return out


def _quotas(share: np.ndarray, n: int) -> list[int]:
    """``n`` split in proportion to ``share`` (largest remainder), each mood at least one while n allows."""
    raw = share / share.sum() * n
    quota = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - quota))[: n - int(quota.sum())]:
        quota[i] += 1
    return [int(q) for q in quota]


def _mix_why(seed: TrackTaste, row: Mapping[str, object], mood_size: int, cand: Neighbour) -> str:
    what = "you liked" if seed.liked else f"you played {_times(seed.plays)}" if seed.plays else "you heard"
    days = max(0.0, (time.time() - seed.last) / 86400.0)
    when = "today" if days < 1 else "yesterday" if days < 2 else f"{days:.0f} days ago"
    mood = f" (one of {mood_size} in this mood)" if mood_size > 1 else ""
    name = f"{row.get('artist') or '?'} – {row.get('title') or '?'}" if row else "a track"
    text = f"like #{seed.track_id} {name}, which {what} {when}{mood}"
    return f"{text}; {cand.taste.why}" if cand.taste is not None else text
