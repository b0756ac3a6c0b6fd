"""Tests of the POS taggers (real spaCy small model with hyphen merging; dictionary fake)."""

from __future__ import annotations

import pytest

from and_toolkit.backends.tagger import DictTagger, SpacyTagger, _merge_spans
from and_toolkit.interfaces import TaggedToken, Tagger


@pytest.fixture(scope="module")
def spacy_tagger() -> SpacyTagger:
    return SpacyTagger.load()


def test_merge_spans_unites_chains() -> None:
    assert _merge_spans([(4, 7), (0, 3), (2, 5), (9, 12)]) == [(0, 7), (9, 12)]


def test_spacy_keeps_hyphenated_words_whole_and_tags_them(spacy_tagger: SpacyTagger) -> None:
    (toks,) = spacy_tagger.tag(["the sound is very high-pitched and not loud."])
    texts = [t.text for t in toks]
    assert texts == ["the", "sound", "is", "very", "high-pitched", "and", "not", "loud", "."]
    hp = toks[texts.index("high-pitched")]
    assert hp.tag == "JJ" and hp.n_pieces == 3
    assert toks[texts.index("loud")].tag == "JJ"
    assert sum(t.n_pieces for t in toks) == 11  # plain spaCy token count


def test_spacy_merges_chains_and_numbers_but_not_spaced_dashes(
        spacy_tagger: SpacyTagger) -> None:
    a, b, c = spacy_tagger.tag(
        ["a state-of-the-art 737-800 engine.", "a - b", ""])
    assert [t.text for t in a] == ["a", "state-of-the-art", "737-800", "engine", "."]
    assert [t.n_pieces for t in a] == [1, 7, 3, 1, 1]
    assert [t.text for t in b] == ["a", "-", "b"]
    assert c == []
    assert isinstance(spacy_tagger, Tagger)
    assert spacy_tagger.id.startswith("spacy:en_core_web_sm")


def test_spacy_rejects_a_bare_string(spacy_tagger: SpacyTagger) -> None:
    with pytest.raises(ValueError, match="not a single string"):
        spacy_tagger.tag("a dog")


def test_dict_tagger() -> None:
    tagger = DictTagger({"loud": "JJ", "barks": "VBZ"})
    (toks,) = tagger.tag(["A loud, high-pitched dog barks."])
    assert toks == [
        TaggedToken("A", "NN", 1), TaggedToken("loud", "JJ", 1), TaggedToken(",", ",", 1),
        TaggedToken("high-pitched", "NN", 3), TaggedToken("dog", "NN", 1),
        TaggedToken("barks", "VBZ", 1), TaggedToken(".", ".", 1)]
    assert tagger.calls == [["A loud, high-pitched dog barks."]]
