"""Words → weighted tags: how ``musicmap find`` understands "calm piano without drums", offline.

A query is cut into clauses (at commas and "and", "but", ...); in each clause the longest phrases
known to the vocabulary are taken first ("no vocals", "female vocal", "hip hop"), so a tag name of
several words wins over its parts. A word is known

- **exactly or inflected**: a tagger's own tag, compared after case folding and a light stemmer
  (:func:`stem`: "calmer" → calm, "drums" → drum, "vocalists" → vocalist);
- **through the synonym table** shipped as data (``words.toml``: "chill" → chillout, chill,
  Mellow, ambient ...; "orchestral" → strings, classical, violin, cello ...);
- **as a Discogs genre or style** (MAEST's 400 styles, where MAEST made the vectors);
- **fuzzily**: a misspelling within a slip or two of a known word ("pianno", "orchestal",
  "durms": :func:`slips`, :func:`max_slips`).

A negator ("no", "not", "without", "less") turns the rest of its clause around: its words' tags
count inverted, plus the tags that name their absence (``[opposites]``: "no vocals" → MTT's
"no vocals", MSD's "instrumental"). A word that matches nothing is reported with the nearest known
words, never silently dropped. Stop words ("some", "music") are ignored and listed.
"""

from __future__ import annotations

import difflib
import re
import tomllib
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from .errors import InvalidQuery

MAX_CHARS = 300
"""The longest description read, in characters."""
def max_slips(word: str) -> int:
    """Typing slips (a letter missing, extra, wrong, or two swapped) a word of this length may hold
    and still stand for a known word: none below four letters, one up to six, two from seven."""
    return 0 if len(word) < 4 else 1 if len(word) <= 6 else 2
ALIASES = {"mtt": "musicnn-mtt", "msd": "musicnn-msd", "discogs": "styles"}
"""Tagger names in ``words.toml`` → the ``tagger`` of a :class:`Term` (``styles``: the store's own
model's styles table, MAEST's Discogs labels)."""


@dataclass(frozen=True)
class Term:
    """One tag a word stands for. ``tagger`` is a ``sound_tags.tagger``, ``styles`` (one of the
    store's Discogs styles: ``label`` is the full ``Genre---Style``) or ``genre`` (a Discogs genre:
    the sum of its styles)."""

    tagger: str
    label: str


@dataclass
class Word:
    """A word or phrase of the query and what it stands for."""

    text: str
    how: str
    """``exact``, ``inflected``, ``synonym``, ``discogs`` or ``fuzzy (for WORD)``."""
    negated: bool
    terms: dict[Term, float]
    """Tag → weight; a negative weight counts the tag inverted."""


@dataclass
class Parsed:
    """A query understood: its words, the words it could not place, the ones it ignored."""

    text: str
    words: list[Word] = field(default_factory=list)
    unknown: list[tuple[str, list[str]]] = field(default_factory=list)
    """(word, nearest known words)."""
    ignored: list[str] = field(default_factory=list)

    def reason(self) -> str | None:
        """Why the query has nothing to search by (None when it has)."""
        if self.words:
            return None
        if self.unknown:
            return "; ".join(_unknown_message(w, near) for w, near in self.unknown)
        return (f"\"{self.text}\" has no word that describes a sound (ignored: {', '.join(self.ignored)}); "
                "try words like calm, piano, female vocal, fast, no drums")


def _unknown_message(word: str, near: list[str]) -> str:
    hint = f" (nearest: {', '.join(near)})" if near else ""
    return f"no tag matches \"{word}\"{hint}"


_TOKEN = re.compile(r"[^\W_]+(?:[&'][^\W_]+)*|,|;|\.", re.UNICODE)
_CLAUSE_MARKS = {",", ";", "."}


def slips(a: str, b: str, limit: int) -> int:
    """Typing slips between ``a`` and ``b`` (optimal string alignment distance: insertions,
    deletions, substitutions and swaps of neighbours), or ``limit + 1`` once it exceeds ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    before, row = None, list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            current[j] = min(row[j] + 1, current[j - 1] + 1, row[j - 1] + (ca != cb))
            if before is not None and i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], before[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        before, row = row, current
    return row[-1]


def fold(text: str) -> str:
    """Case folded, accents stripped from Latin letters ("café" → cafe; other scripts stay as
    written), hyphens and slashes as spaces."""
    out = []
    for c in unicodedata.normalize("NFC", text).casefold():
        base = unicodedata.normalize("NFKD", c)[0]
        out.append(base if base.isascii() else c)
    return re.sub(r"[-_/]+", " ", "".join(out))


def stem(word: str) -> str:
    """A light English stemmer, applied alike to query words and to the vocabulary: plurals,
    comparatives, -ing, -ed, -ly, a final e and a doubled final consonant go ("calmer" → calm,
    "happier" → happy, "drummer" → drum, "voices" → voic)."""
    w = word
    if len(w) <= 3 or not w.isalpha():
        return w
    for suffix, repl in (("iest", "y"), ("ier", "y"), ("ies", "y"), ("ily", "y"), ("est", ""), ("er", ""),
                         ("ing", ""), ("ed", ""), ("ly", ""), ("es", ""), ("s", "")):
        if w.endswith(suffix) and not w.endswith("ss") and len(w) - len(suffix) + len(repl) >= 3:
            w = w[: len(w) - len(suffix)] + repl
            break
    if w.endswith("e") and len(w) > 3:
        w = w[:-1]
    if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "aeiouls":
        w = w[:-1]
    return w


def phrase_key(text: str) -> str:
    """The vocabulary key of a word or phrase: folded, tokenised, each token stemmed."""
    return " ".join(stem(t) for t in _TOKEN.findall(fold(text)) if t not in _CLAUSE_MARKS)


@dataclass(frozen=True)
class Table:
    """``words.toml``: synonyms and opposites (key → tag spec → weight) and the word lists."""

    synonyms: dict[str, dict[str, float]]
    opposites: dict[str, dict[str, float]]
    surface: dict[str, str]
    """Key → the word as written in the table (for fuzzy matching and suggestions)."""
    stop: frozenset[str]
    negators: frozenset[str]
    more: frozenset[str]
    separators: frozenset[str]


@cache
def table() -> Table:
    """The shipped synonym table (``store/words.toml``), read once.

    Raises
    ------
    ValueError
        A ``same_as`` naming a word that is not in the table, or a weight outside [-1, 1].
    """
    data = tomllib.loads(resources.files("store").joinpath("words.toml").read_text(encoding="utf-8"))
    raw = data["synonyms"]

    def resolve(word: str, seen: tuple[str, ...] = ()) -> dict[str, float]:
        entry = raw[word]
        if "same_as" in entry:
            target = entry["same_as"]
            if target not in raw or target in seen:
                raise ValueError(f"words.toml: {word} = same_as {target!r}, which is not a synonym entry")
            return resolve(target, (*seen, word))
        for spec, weight in entry.items():
            if not -1.0 <= float(weight) <= 1.0 or ":" not in spec:
                raise ValueError(f"words.toml: {word}: {spec} = {weight} (a tag is tagger:label, weights in [-1, 1])")
        return {k: float(v) for k, v in entry.items()}

    synonyms = {phrase_key(w): resolve(w) for w in raw}
    opposites = {phrase_key(w): {k: float(v) for k, v in e.items()} for w, e in data.get("opposites", {}).items()}
    words = data["words"]
    return Table(synonyms, opposites, {phrase_key(w): w for w in raw},
                 frozenset(words["stop"]), frozenset(words["negators"]), frozenset(words["more"]),
                 frozenset(words["separators"]))


class Vocabulary:
    """What the words of a query can mean in one store: its taggers' labels (``labels``: tagger →
    labels, ``styles`` being the store's Discogs styles), the synonym table, Discogs genres and
    styles. Build once per store (cheap: a few hundred entries)."""

    def __init__(self, labels: dict[str, list[str]]) -> None:
        self.labels = {t: list(ls) for t, ls in labels.items() if ls}
        self.entries: dict[str, dict[Term, float]] = {}
        """Stemmed phrase → its terms, with the synonym table."""
        self.plain: dict[str, dict[Term, float]] = {}
        """The same without the synonym table (tag names and Discogs names only)."""
        self.how: dict[str, str] = {}
        self.surface: dict[str, str] = {}
        styles = self.labels.get("styles", [])
        by_style: dict[str, list[str]] = {}
        genres: set[str] = set()
        for label in styles:
            genre, _, style = label.partition("---")
            genres.add(genre)
            by_style.setdefault(style or genre, []).append(label)
        self._by_style = by_style
        self._genres = genres
        for tagger, names in self.labels.items():
            if tagger == "styles":
                continue
            for label in names:
                self._add(label, {Term(tagger, label): 1.0}, "exact")
        for style, full in by_style.items():
            self._add(style, {Term("styles", f): 1.0 for f in full}, "discogs")
        for genre in genres:
            self._add(genre, {Term("genre", genre): 1.0}, "discogs")
        t = table()
        for key, spec in t.synonyms.items():
            terms = self._terms(spec)
            if terms:
                self._add(t.surface[key], terms, "synonym")
        self.opposites = {key: terms for key, spec in t.opposites.items() if (terms := self._terms(spec))}
        self.longest = max((len(k.split()) for k in self.entries), default=1)

    def _terms(self, spec: dict[str, float]) -> dict[Term, float]:
        """``words.toml`` tag specs → the terms this store has."""
        out: dict[Term, float] = {}
        for name, weight in spec.items():
            alias, _, label = name.partition(":")
            tagger = ALIASES.get(alias, alias)
            if tagger == "styles":
                if label in self._genres:
                    out[Term("genre", label)] = weight
                for full in self._by_style.get(label, ()):
                    out[Term("styles", full)] = weight
            elif label in self.labels.get(tagger, ()):
                out[Term(tagger, label)] = weight
        return out

    def _add(self, text: str, terms: dict[Term, float], how: str) -> None:
        key = phrase_key(text)
        if not key:
            return
        for entries in (self.entries,) if how == "synonym" else (self.entries, self.plain):
            merged = entries.setdefault(key, {})
            for term, weight in terms.items():
                if abs(weight) > abs(merged.get(term, 0.0)):
                    merged[term] = weight
        if key not in self.how or how == "exact":
            self.how[key] = how
        self.surface.setdefault(key, fold(text))

    def nearest(self, word: str, n: int = 3, cutoff: float = 0.6) -> list[str]:
        """The known words closest in spelling to ``word``."""
        return difflib.get_close_matches(fold(word), sorted(set(self.surface.values())), n=n, cutoff=cutoff)

    def parse(self, text: str, *, synonyms: bool = True, fuzzy: bool = True,
              matcher: Callable[[str, dict[str, str]], str | None] | None = None) -> Parsed:
        """Understand ``text`` (``synonyms`` / ``fuzzy`` off: for measuring what each adds).
        ``matcher(word, {key: known word})`` → key or None replaces the spelling match for words
        not otherwise known (``benchmarks/bench_find.py`` measures wordllama's embeddings so).

        Raises
        ------
        InvalidQuery
            Empty text, or longer than :data:`MAX_CHARS`.
        """
        if not isinstance(text, str) or not text.strip():
            raise InvalidQuery("describe the sound in words, e.g. \"calm piano without drums\"")
        if len(text) > MAX_CHARS:
            raise InvalidQuery(f"the description is {len(text)} characters long; use at most {MAX_CHARS}")
        t = table()
        entries = self.entries if synonyms else self.plain
        out = Parsed(text.strip())
        clauses: list[list[str]] = [[]]
        for token in _TOKEN.findall(fold(text)):
            if token in _CLAUSE_MARKS or token in t.separators:
                clauses.append([])
            else:
                clauses[-1].append(token)
        for clause in clauses:
            negated = False
            i = 0
            while i < len(clause):
                for n in range(min(self.longest, len(clause) - i), 0, -1):
                    key = " ".join(stem(w) for w in clause[i : i + n])
                    if key in entries:
                        self._take(out, entries, " ".join(clause[i : i + n]), key, self.how[key], negated)
                        i += n
                        break
                else:
                    token = clause[i]
                    i += 1
                    if token in t.negators or (fuzzy and len(token) >= 6 and any(
                            slips(token, n, 1) <= 1 for n in t.negators if len(n) >= 6)):  # "wihtout", one slip
                        negated = True
                    elif token in t.stop or token in t.more:
                        out.ignored.append(token)
                    elif fuzzy and (near := (matcher or self._fuzzy)(token, {k: self.surface[k] for k in entries})):
                        self._take(out, entries, token, near, f"fuzzy ({self.surface[near]})", negated)
                    else:
                        out.unknown.append((token, self.nearest(token)))
        return out

    @staticmethod
    def _fuzzy(token: str, known: dict[str, str]) -> str | None:
        """The key of the known word fewest slips from ``token`` (:func:`max_slips` at most; the
        first in order on a tie), or None."""
        limit = max_slips(token)
        if limit == 0:
            return None
        best, best_slips = None, limit + 1
        for key, surface in sorted(known.items()):
            n = slips(token, surface, min(limit, best_slips - 1) if best is not None else limit)
            if n < best_slips:
                best, best_slips = key, n
        return best

    def _take(self, out: Parsed, entries: dict[str, dict[Term, float]], text: str, key: str, how: str,
              negated: bool) -> None:
        terms = dict(entries[key])
        if negated:
            terms = {term: -w for term, w in terms.items()}
            for term, w in self.opposites.get(key, {}).items():
                terms[term] = w
        out.words.append(Word(text, how, negated, terms))
