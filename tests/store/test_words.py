"""How find reads words: inflections, synonyms, negation, fuzzy matching, and bad input."""

from __future__ import annotations

import pytest

from indexer.embedders.musicnn import MSD_TAGS, MTT_TAGS
from store import InvalidQuery
from store.words import ALIASES, MAX_CHARS, Term, Vocabulary, stem, table

STYLES = ["Electronic---Ambient", "Electronic---Dark Ambient", "Electronic---Techno", "Classical---Baroque",
          "Stage & Screen---Score", "Jazz---Swing", "Hip Hop---Boom Bap"]


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return Vocabulary({"musicnn-mtt": list(MTT_TAGS), "musicnn-msd": list(MSD_TAGS)})


def words(vocab: Vocabulary, text: str, **kw: bool) -> list[tuple[str, str, bool]]:
    return [(w.text, w.how, w.negated) for w in vocab.parse(text, **kw).words]


def test_every_tag_in_the_synonym_table_is_a_real_tag() -> None:
    """A misspelt tag in words.toml would silently mean nothing: every MTT/MSD tag it names exists."""
    known = {"mtt": set(MTT_TAGS), "msd": set(MSD_TAGS)}
    t = table()
    for spec in [*t.synonyms.values(), *t.opposites.values()]:
        for name in spec:
            alias, _, label = name.partition(":")
            assert alias in ALIASES, name
            if alias in known:
                assert label in known[alias], f"words.toml names {name}, which the tagger does not have"


def test_inflections_match_tag_names(vocab: Vocabulary) -> None:
    assert stem("calmer") == stem("calm") and stem("drums") == stem("drum") and stem("happier") == stem("happy")
    parsed = vocab.parse("pianos, violins and female vocalists")
    assert [w.text for w in parsed.words] == ["pianos", "violins", "female vocalists"]
    assert Term("musicnn-mtt", "piano") in parsed.words[0].terms
    assert Term("musicnn-msd", "female vocalists") in parsed.words[2].terms


def test_longest_phrase_wins_and_synonyms_expand(vocab: Vocabulary) -> None:
    parsed = vocab.parse("chill hip-hop with a female vocal")
    assert [w.text for w in parsed.words] == ["chill", "hip hop", "female vocal"]
    assert Term("musicnn-msd", "chillout") in parsed.words[0].terms
    assert Term("musicnn-msd", "Hip-Hop") in parsed.words[1].terms
    orchestral = vocab.parse("orchestral").words[0]
    assert orchestral.how == "synonym"
    assert {Term("musicnn-mtt", "strings"), Term("musicnn-mtt", "cello")} <= set(orchestral.terms)
    assert words(vocab, "orchestral", synonyms=False) == []  # without the table it is unknown


def test_negation_turns_the_rest_of_the_clause_around(vocab: Vocabulary) -> None:
    assert words(vocab, "calm piano without drums") == [("calm", "synonym", False), ("piano", "exact", False),
                                                         ("drums", "exact", True)]
    assert words(vocab, "no drums or vocals, fast") == [("drums", "exact", True), ("vocals", "exact", True),
                                                        ("fast", "exact", False)]
    drums = vocab.parse("without drums").words[0]
    assert all(w < 0 for w in drums.terms.values())
    vocals = vocab.parse("not vocal").words[0]  # the tags that name the absence count for it
    assert vocals.terms[Term("musicnn-mtt", "no vocals")] > 0 and vocals.terms[Term("musicnn-mtt", "vocal")] < 0
    assert words(vocab, "less drums") == [("drums", "exact", True)]
    # "no vocals" is a tag of its own: read as one phrase, not as a negation
    assert words(vocab, "no vocals") == [("no vocals", "exact", False)]


def test_misspellings_and_unknown_words(vocab: Vocabulary) -> None:
    parsed = vocab.parse("pianno orchestal")
    assert [(w.text, w.how) for w in parsed.words] == [("pianno", "fuzzy (piano)"), ("orchestal", "fuzzy (orchestral)")]
    assert [(w.text, w.negated) for w in vocab.parse("calm wihtout durms").words] == [("calm", False), ("durms", True)]
    assert [w.negated for w in vocab.parse("racing with drums").words] == [False]  # "racing" is no "lacking"
    unfuzzy = vocab.parse("pianno", fuzzy=False)
    assert unfuzzy.words == [] and unfuzzy.unknown[0][0] == "pianno" and "piano" in unfuzzy.unknown[0][1]
    assert 'nearest: piano' in (unfuzzy.reason() or "")
    parsed = vocab.parse("glorpy piano")
    assert [w.text for w in parsed.words] == ["piano"]
    assert parsed.unknown[0][0] == "glorpy"


def test_queries_with_nothing_to_search_by_say_why(vocab: Vocabulary) -> None:
    stop = vocab.parse("some music please")
    assert stop.words == [] and stop.ignored == ["some", "music", "please"]
    assert "no word that describes a sound" in (stop.reason() or "")
    unknown = vocab.parse("xqzt")
    assert unknown.reason() == 'no tag matches "xqzt"'
    cyrillic = vocab.parse("тихий пианино")
    assert cyrillic.words == [] and [w for w, _ in cyrillic.unknown] == ["тихий", "пианино"]
    for text in ("", "   "):
        with pytest.raises(InvalidQuery, match="describe the sound"):
            vocab.parse(text)
    with pytest.raises(InvalidQuery, match=f"at most {MAX_CHARS}"):
        vocab.parse("calm " * 200)


def test_sql_and_html_are_only_words(vocab: Vocabulary) -> None:
    parsed = vocab.parse("piano'; DROP TABLE tracks; -- <script>alert(1)</script>")
    assert [w.text for w in parsed.words] == ["piano"]
    assert {"drop", "script", "alert"} <= {w for w, _ in parsed.unknown}


def test_discogs_genres_and_styles_where_maest_made_the_vectors() -> None:
    vocab = Vocabulary({"musicnn-mtt": list(MTT_TAGS), "styles": STYLES})
    dark = vocab.parse("dark ambient").words
    assert [w.text for w in dark] == ["dark ambient"] and dark[0].how == "discogs"
    assert Term("styles", "Electronic---Dark Ambient") in dark[0].terms
    assert Term("genre", "Electronic") in vocab.parse("electronic").words[0].terms
    assert Term("styles", "Hip Hop---Boom Bap") in vocab.parse("boom bap").words[0].terms
    assert Term("styles", "Classical---Baroque") in vocab.parse("baroque").words[0].terms  # and via the table
