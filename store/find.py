"""``find``: tracks by a description of their sound ("calm piano without drums"), explained.

The words become weighted tags (:mod:`store.words`); each track is scored on its library's own
distribution of each tag, not on the taggers' raw probabilities, whose priors differ wildly (a
tagger says "rock" far more often than "harpsichord"):

1. each tag's probabilities become **percentiles** over the library's tagged tracks (0.99: more
   piano than 99 % of this library), computed once per tag and store state, kept in memory;
2. a **word** scores the weighted mean of its tags' percentiles (a negated word or a negative
   weight counts ``1 - percentile``);
3. the words combine by their **geometric mean**, so that every word counts: a track that is very
   calm but has drums does not win "calm piano without drums" on calm alone;
4. optionally (``centroid`` β in (0, 1]) the best candidates move toward what the top hits sound
   like: ``(1 - β) · words + β · percentile of the similarity to the centroid of the top
   :data:`CENTROID_TOP` hits`` (measured: ``benchmarks/bench_find.py``).

With ``like`` (a track id), the candidates are that track's :data:`LIKE_POOL` nearest neighbours
(at least ``5 k``), re-ranked by the words: "like this one, but calmer".

Every result says what matched: per word, its strength and the tags that carried it, with their
percentile and the tagger's probability. Tracks not tagged yet are left out (counted in
``untagged``); a query with no word to search by returns no results and the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np

from .errors import InvalidQuery
from .search import TASTE_POOL, Searchable, SearchOptions, Steering, diversify, knn, seed_vector, vectors_of
from .types import TasteNote, TrackRow
from .vectors import l2_normalise
from .words import Parsed, Term, Vocabulary

CENTROID_TOP = 10
"""Hits whose centroid the ``centroid`` step moves toward."""
CENTROID_POOL = 200
"""Candidates (at least ``20 k``) the ``centroid`` step re-ranks."""
LIKE_POOL = 50
"""Nearest neighbours (at least ``5 k``) that ``like`` re-ranks by the words."""
Matched = dict[str, Any]
"""What matched one word for one result: ``word``, ``negated``, ``strength`` (the word's score, in
[0, 1]) and ``tags`` (the tags that carried it: ``tag``, ``tagger``, ``weight``, ``inverted``,
``percentile``, ``probability``)."""
FLOOR = 1e-3
"""The lowest word score in the geometric mean (a 0 would erase the other words)."""


class SoundTags:
    """One store's tags as the scorer reads them: the vocabulary (which tags this store has) and,
    loaded on first use, each tag's percentiles over the tagged tracks.

    ``connect`` gives a DuckDB cursor; ``styles`` says whether the store's ``styles`` are MAEST's
    Discogs styles (read as the ``styles`` / ``genre`` taggers)."""

    def __init__(self, cursor: Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]], *,
                 styles: bool) -> None:
        self._cursor = cursor
        with cursor() as cur:
            have = {r[0] for r in cur.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
            self.ids = np.array([r[0] for r in cur.execute("SELECT track_id FROM embeddings ORDER BY 1").fetchall()]
                                if "embeddings" in have else [], np.int64)
            labels: dict[str, list[str]] = {}
            tagged: set[int] = set()
            if "sound_tags" in have:
                pairs = cur.execute("SELECT DISTINCT tagger, label FROM sound_tags ORDER BY 1, 2").fetchall()
                for tagger, label in pairs:
                    labels.setdefault(tagger, []).append(label)
                tagged = {int(r[0]) for r in cur.execute("SELECT DISTINCT track_id FROM sound_tags").fetchall()}
            styled: set[int] = set()
            if styles:
                rows = cur.execute("SELECT DISTINCT label FROM styles ORDER BY 1").fetchall()
                labels["styles"] = [r[0] for r in rows]
                styled = {int(r[0]) for r in cur.execute("SELECT DISTINCT track_id FROM styles").fetchall()}
        self.tagged = np.isin(self.ids, np.fromiter(tagged | styled, np.int64, len(tagged | styled)))
        self._styled = np.isin(self.ids, np.fromiter(styled, np.int64, len(styled)))
        """Tracks with MAEST styles: only each track's top 20 are stored, so a style missing for one
        of them counts as 0, not unknown."""
        self.vocabulary = Vocabulary(labels)
        self._columns: dict[Term, np.ndarray] = {}

    def load_all(self) -> int:
        """Read and rank every tag of ``sound_tags`` now, one tag at a time (the server does it once,
        in the background, so that no search waits for its columns: one tag costs ~45 ms at 100k
        tracks, and memory stays at the columns' own 4 bytes a track a tag); returns how many tags."""
        with self._cursor() as cur:
            have = {r[0] for r in cur.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
            pairs = cur.execute("SELECT DISTINCT tagger, label FROM sound_tags ORDER BY 1, 2").fetchall() \
                if "sound_tags" in have else []
        for tagger, label in pairs:
            self.column(Term(tagger, label))
        return len(pairs)

    def column(self, term: Term) -> np.ndarray:
        """``term``'s percentile per track of :attr:`ids` (NaN where untagged)."""
        got = self._columns.get(term)
        if got is None:
            if term.tagger == "genre":
                sql, args = ("SELECT track_id, sum(activation) FROM styles WHERE starts_with(label, ?) GROUP BY 1",
                             [term.label + "---"])
            elif term.tagger == "styles":
                sql, args = "SELECT track_id, activation FROM styles WHERE label = ?", [term.label]
            else:
                sql, args = ("SELECT track_id, activation FROM sound_tags WHERE tagger = ? AND label = ?",
                             [term.tagger, term.label])
            with self._cursor() as cur:
                got_rows = cur.execute(sql, args).fetchnumpy()
            ids, values = (np.asarray(got_rows[k]) for k in list(got_rows)[:2])
            got = self._ranked(term, ids, values)
            self._columns[term] = got
        return got

    def _ranked(self, term: Term, ids: np.ndarray, values: np.ndarray) -> np.ndarray:
        """One tag's percentile per track of :attr:`ids`, from its stored rows."""
        rows = np.searchsorted(self.ids, ids)
        keep = (rows < len(self.ids)) & (self.ids[np.minimum(rows, len(self.ids) - 1)] == ids) \
            if len(self.ids) else np.zeros(len(ids), bool)
        rows, values = rows[keep], np.asarray(values, np.float64)[keep]
        if term.tagger in ("styles", "genre"):  # below a track's top 20 styles: 0
            missing = np.setdiff1d(np.flatnonzero(self._styled), rows)
            rows, values = np.concatenate([rows, missing]), np.concatenate([values, np.zeros(len(missing))])
        # float16: 2 bytes a track a tag (20 MB for 100 tags at 100k tracks), a percentile to ±0.0005
        percentile = np.full(len(self.ids), np.nan, np.float16)
        order = np.argsort(values, kind="stable")
        ranks = np.empty(len(values), np.float64)
        ranks[order] = np.arange(len(values))
        # equal values share their mean rank (a tag that is 0 for most tracks ranks them alike)
        uniq, inverse = np.unique(values, return_inverse=True)
        if len(uniq) < len(values):
            ranks = (np.bincount(inverse, ranks) / np.bincount(inverse))[inverse]
        percentile[rows] = (ranks + 0.5) / max(len(values), 1)
        return percentile

    def probabilities(self, track_ids: list[int], terms: set[Term]) -> dict[tuple[int, Term], float]:
        """The taggers' own probabilities of ``terms`` for ``track_ids`` (few: a result list), read
        from the database: what the explanation shows beside each percentile."""
        out: dict[tuple[int, Term], float] = {}
        if not track_ids or not terms:
            return out
        wanted = ", ".join(str(int(i)) for i in track_ids)  # integers only: safe to inline
        tagged = {(t.tagger, t.label): t for t in terms if t.tagger not in ("styles", "genre")}
        genres = {t.label for t in terms if t.tagger == "genre"}
        with self._cursor() as cur:
            if tagged:
                for tid, tagger, label, p in cur.execute(
                        f"SELECT track_id, tagger, label, activation FROM sound_tags WHERE track_id = ANY([{wanted}]) "
                        "AND label IN (SELECT unnest(?::VARCHAR[]))", [sorted({lab for _, lab in tagged})]).fetchall():
                    if (term := tagged.get((tagger, label))) is not None:
                        out[(int(tid), term)] = float(p)
            if any(t.tagger in ("styles", "genre") for t in terms):
                for tid, label, p in cur.execute(
                        f"SELECT track_id, label, activation FROM styles WHERE track_id = ANY([{wanted}])").fetchall():
                    out[(int(tid), Term("styles", label))] = float(p)
                    if (genre := label.partition("---")[0]) in genres:
                        key = (int(tid), Term("genre", genre))
                        out[key] = out.get(key, 0.0) + float(p)
        return out


@dataclass(frozen=True)
class FindOptions:
    """What a ``find`` asks for besides its text. See the module docstring."""

    k: int = 10
    where: str | None = None
    max_per_artist: int | None = None
    max_per_album: int | None = None
    dedupe: bool = False
    like: int | None = None
    centroid: float = 0.0
    synonyms: bool = True
    fuzzy: bool = True
    matcher: Callable[[str, dict[str, str]], str | None] | None = None
    """Replaces the spelling match of unknown words (:meth:`store.words.Vocabulary.parse`)."""

    def validate(self) -> None:
        """Raises InvalidQuery naming the first bad parameter."""
        SearchOptions(k=self.k, where=self.where, max_per_artist=self.max_per_artist,
                      max_per_album=self.max_per_album, dedupe=self.dedupe).validate()
        if not 0.0 <= float(self.centroid) <= 1.0:
            raise InvalidQuery(f"centroid is a blend β in [0, 1] (0: words only), got {self.centroid!r}")


@dataclass
class Found:
    """One result: the track, its score (in [0, 1]), what matched, and with ``like`` its similarity."""

    track_id: int
    score: float
    track: TrackRow
    matched: list[Matched]
    similarity: float | None = None
    taste: TasteNote | None = None

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"track_id": self.track_id, "score": round(self.score, 6), **self.track,
                               "matched": self.matched}
        if self.similarity is not None:
            out["similarity"] = round(self.similarity, 6)
        if self.taste is not None:
            out["taste"] = self.taste.as_json()
        return out


@dataclass
class FindResult:
    """The answer to one ``find``: what was understood, the results, or why there are none."""

    text: str
    parsed: Parsed
    results: list[Found] = field(default_factory=list)
    reason: str | None = None
    """Why there are no results (no word to search by, nothing tagged, nothing matches the filter)."""
    untagged: int = 0
    """Tracks with a vector that have no tags yet (left out)."""
    like: int | None = None
    taste: dict[str, int] | None = None
    """The person's taste that steered the list (:meth:`store.taste.Taste.summary`), or None."""

    def understood(self) -> list[dict[str, object]]:
        return [{"word": w.text, "how": w.how, "negated": w.negated,
                 "tags": [_tag_dict(t, wt) for t, wt in sorted(w.terms.items(), key=lambda x: -abs(x[1]))]}
                for w in self.parsed.words]

    def to_dict(self) -> dict[str, object]:
        """The JSON shape of ``find --json`` and the API (``results`` as ``similar --json``)."""
        return {"query": {"type": "words", "text": self.text, "like": self.like},
                "understood": self.understood(),
                "unknown": [{"word": w, "nearest": near} for w, near in self.parsed.unknown],
                "ignored": self.parsed.ignored, "untagged": self.untagged, "reason": self.reason,
                "taste": self.taste, "results": [r.to_dict() for r in self.results]}


def _tag_dict(term: Term, weight: float) -> dict[str, object]:
    return {"tag": term.label, "tagger": term.tagger, "weight": round(abs(weight), 3), "inverted": weight < 0}


def word_scores(tags: SoundTags, parsed: Parsed) -> np.ndarray:
    """Score of each word for each track: shape (words, tracks), NaN where a track has none of a
    word's tags."""
    out = np.full((len(parsed.words), len(tags.ids)), np.nan, np.float32)
    for i, word in enumerate(parsed.words):
        num = np.zeros(len(tags.ids), np.float32)
        den = np.zeros(len(tags.ids), np.float32)
        for term, weight in word.terms.items():
            pct = tags.column(term).astype(np.float32)
            known = ~np.isnan(pct)
            value = np.where(known, pct if weight > 0 else 1.0 - pct, 0.0)  # a track without it: no weight
            num += abs(weight) * value
            den += abs(weight) * known
        with np.errstate(invalid="ignore", divide="ignore"):
            out[i] = np.where(den > 0, num / den, np.nan)
    return out


def combine(scores: np.ndarray) -> np.ndarray:
    """Words' scores (words, tracks) → one score per track: their geometric mean (NaN: no word)."""
    logs = np.log(np.clip(scores, FLOOR, 1.0))
    with np.errstate(invalid="ignore"):
        known = (~np.isnan(scores)).sum(axis=0)
        total = np.where(known > 0, np.exp(np.nansum(np.where(np.isnan(scores), 0.0, logs), axis=0)
                                           / np.maximum(known, 1)), np.nan)
    return total


TASTE_UNIT = 0.1
"""The most the person's taste moves a word search's score (in [0, 1]): a track close to several
liked ones gains up to this much, one near disliked ones loses as much."""


def run_find(store: Searchable, tags: SoundTags, text: str, opts: FindOptions, *, timeout: float = 10.0,
             steer: Steering | None = None) -> FindResult:
    """The search behind :meth:`store.Store.find` (see the module docstring). With ``steer``, the
    person's taste: disliked tracks are left out, and the candidates re-ranked with its shift
    (at most :data:`TASTE_UNIT`).

    Raises
    ------
    InvalidQuery
        Empty or overlong text, a bad option, a ``like`` track that does not exist or has no vector.
    """
    opts.validate()
    parsed = tags.vocabulary.parse(text, synonyms=opts.synonyms, fuzzy=opts.fuzzy, matcher=opts.matcher)
    result = FindResult(parsed.text, parsed, like=opts.like,
                        untagged=int(len(tags.ids) - tags.tagged.sum()))
    if not tags.tagged.any():
        result.reason = (f"the tracks of {store.path} have no sound tags yet: run `musicmap index FOLDER --store "
                         f"{store.path}` once more to add them (nothing is embedded again)")
        return result
    if (reason := parsed.reason()) is not None:
        result.reason = reason
        return result
    per_word = word_scores(tags, parsed)
    total = combine(per_word)
    usable = tags.tagged & ~np.isnan(total)
    if opts.where:
        usable &= np.isin(tags.ids, store.filter_ids(opts.where, timeout))
    if steer is not None and steer.disliked:
        usable &= ~np.isin(tags.ids, np.fromiter(steer.disliked, np.int64))
    similarity: dict[int, float] = {}
    if opts.like is not None:
        index = store.index
        query = l2_normalise(seed_vector(store, [int(opts.like)], index))
        allowed = None if usable.sum() == int(index.ntotal) else tags.ids[usable]  # no selector when all may
        pool = knn(index, query, max(LIKE_POOL, 5 * opts.k) + 1, allowed)
        similarity = {i: s for i, s in pool if i != int(opts.like)}
        usable &= np.isin(tags.ids, np.fromiter(similarity, np.int64, len(similarity)))
    if not usable.any():
        result.reason = "no tagged track matches the filter" if opts.where else "no tagged track to search"
        return result
    rows_of = np.flatnonzero(usable)
    score = total[rows_of]
    if opts.centroid > 0 and len(rows_of) > 1:
        score = _toward_centroid(store, tags, rows_of, score, opts)
    variety = opts.max_per_artist is not None or opts.max_per_album is not None or opts.dedupe
    fetch = opts.k * (4 if variety else 1) * (TASTE_POOL if steer is not None else 1)
    notes: dict[int, TasteNote] = {}
    while True:
        head = _top(score, fetch)  # positions in rows_of, best first
        candidates = [(int(tags.ids[rows_of[p]]), float(score[p])) for p in head]
        if steer is not None:
            candidates, notes = steer.rerank(store.index, candidates, unit=TASTE_UNIT)
        rows = store.track_rows([i for i, _ in candidates])
        picked = diversify(candidates, rows, SearchOptions(k=opts.k, max_per_artist=opts.max_per_artist,
                                                           max_per_album=opts.max_per_album, dedupe=opts.dedupe),
                           set(), limit=opts.k)
        if len(picked) >= opts.k or fetch >= len(rows_of):
            break
        fetch *= 4
    position = np.searchsorted(tags.ids, np.array([i for i, _ in picked], np.int64))
    probability = tags.probabilities([i for i, _ in picked], {t for w in parsed.words for t in w.terms})
    result.results = [Found(i, s, rows[i], explain(tags, parsed, per_word, int(at), i, probability),
                            similarity.get(i), notes.get(i)) for (i, s), at in zip(picked, position, strict=True)]
    return result


def _top(score: np.ndarray, n: int) -> np.ndarray:
    """Positions of the ``n`` highest scores, best first (ties by position): a partial sort, not a
    full one (100k scores: about 1 ms against 8)."""
    if n >= len(score):
        return np.argsort(-score, kind="stable")
    part = np.argpartition(-score, n - 1)[:n]
    return part[np.lexsort((part, -score[part]))]


def _toward_centroid(store: Searchable, tags: SoundTags, rows_of: np.ndarray, score: np.ndarray,
                     opts: FindOptions) -> np.ndarray:
    """The ``centroid`` step: the best candidates re-scored toward the centroid of the top hits."""
    pool = min(len(rows_of), max(CENTROID_POOL, 20 * opts.k))
    best = _top(score, pool)
    ids = tags.ids[rows_of[best]]
    vectors = vectors_of(store.index, ids)
    centroid = l2_normalise(vectors[:CENTROID_TOP].mean(axis=0))
    sims = vectors @ centroid
    sim_pct = (np.argsort(np.argsort(sims)) + 0.5) / len(sims)
    out = (1.0 - opts.centroid) * np.asarray(score, np.float64)  # the rest: no similarity share, below the pool
    out[best] += opts.centroid * sim_pct
    return out


def explain(tags: SoundTags, parsed: Parsed, per_word: np.ndarray, row: int, track_id: int,
            probability: dict[tuple[int, Term], float], top: int = 3) -> list[Matched]:
    """What matched for the track at ``row``: per word its strength and the tags that carried it."""
    out = []
    for i, word in enumerate(parsed.words):
        carried = []
        for term, weight in word.terms.items():
            pct = tags.column(term)
            if np.isnan(pct[row]):
                continue
            value = float(pct[row]) if weight > 0 else 1.0 - float(pct[row])
            carried.append((abs(weight) * value, {**_tag_dict(term, weight), "percentile": round(float(pct[row]), 4),
                                                  "probability": round(probability.get((track_id, term), 0.0), 4)}))
        carried.sort(key=lambda c: -c[0])
        strength = per_word[i, row]
        out.append({"word": word.text, "negated": word.negated,
                    "strength": None if np.isnan(strength) else round(float(strength), 4),
                    "tags": [c[1] for c in carried[:top]]})
    return out

