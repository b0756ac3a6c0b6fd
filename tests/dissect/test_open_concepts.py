"""Tests of Module C (open concepts) with the real spaCy tagger and a dictionary fake."""

from __future__ import annotations

import pytest

from and_toolkit.backends.tagger import DictTagger, SpacyTagger
from and_toolkit.dissect.open_concepts import (
    AUTHORS_DUMMY_WORDS,
    BASIC_ADJECTIVES_CODE,
    BASIC_ADJECTIVES_PAPER,
    OpenConceptsConfig,
    lexicon_is_acoustic,
    open_concepts_many,
)

FAKE_TAGS = {"loud": "JJ", "quiet": "JJ", "small": "JJ", "various": "JJ", "green": "JJ",
             "muffled": "VBN", "recorded": "VBN", "is": "VBZ", "barks": "VBZ", "in": "IN",
             "of": "IN", "no": "DT", "not": "RB", "the": "DT", "a": "DT", "it": "PRP",
             "back": "NN", "very": "RB", "and": "CC"}


@pytest.fixture(scope="module")
def spacy_tagger() -> SpacyTagger:
    return SpacyTagger.load()


def verdicts(out) -> dict[str, str]:
    return {c.concept: c.verdict for c in out.concepts}


def test_reference_cases_with_spacy(spacy_tagger: SpacyTagger) -> None:
    (out,) = open_concepts_many(
        [["There is no loud sound in the background.",
          "The Sound Is Very High-Pitched And Muffled, With Various Small Details."]],
        spacy_tagger)
    v = verdicts(out)
    assert v["loud"] == "dropped:negation"
    assert v["high-pitched"] == "kept"  # one token, lower-cased
    assert v["muffled"] == "kept"
    assert v["various"] == v["small"] == "dropped:dummy"
    assert out.kept == ("high-pitched", "muffled")
    assert all(c.pos == "ADJ" for c in out.concepts)
    assert "background" in out.nouns and "details" in out.nouns
    assert "in" in out.preps
    # caption_len counts plain spaCy tokens: "high-pitched" is 3 of them.
    assert out.caption_len == 9 + 15


def test_negation_window_and_reference_slice_quirk() -> None:
    tagger = DictTagger(FAKE_TAGS)
    text = "not loud and it is a dog in the back."  # 'loud' at index 1
    fixed, ref = (open_concepts_many([[text]], tagger, cfg=cfg)[0]
                  for cfg in (OpenConceptsConfig(), OpenConceptsConfig.reference()))
    assert verdicts(fixed)["loud"] == "dropped:negation"
    # The authors' slice tags[i-4:i] is empty for i < 4 in texts of >= 4 tokens.
    assert verdicts(ref)["loud"] == "kept"
    # ...but not in texts shorter than 4 tokens: tags[-3:1] == tags[0:1].
    short = open_concepts_many([["not loud ."]], tagger, cfg=OpenConceptsConfig.reference())
    assert verdicts(short[0])["loud"] == "dropped:negation"
    # Five tokens back is outside the window; one free occurrence keeps the word.
    far = open_concepts_many([["no dog is in a loud room .", "not very loud . loud"]], tagger)
    assert verdicts(far[0])["loud"] == "kept"


def test_vbn_switch_dummy_list_and_acoustic_filter() -> None:
    tagger = DictTagger(FAKE_TAGS)
    pts = [["a muffled green dog is recorded in a small room ."]]
    (on,) = open_concepts_many(pts, tagger)
    assert verdicts(on) == {"muffled": "kept", "green": "dropped:not-acoustic",
                            "recorded": "dropped:dummy", "small": "dropped:dummy"}
    (off,) = open_concepts_many(pts, tagger, cfg=OpenConceptsConfig(include_vbn=False))
    assert verdicts(off) == {"green": "dropped:not-acoustic", "small": "dropped:dummy"}
    assert [c.tag for c in on.concepts] == ["VBN", "JJ", "VBN", "JJ"]


def test_each_distinct_word_and_sentence_decided_once() -> None:
    tagger = DictTagger(FAKE_TAGS)
    asked: list[str] = []

    def is_acoustic(word: str) -> bool:
        asked.append(word)
        return word != "green"

    pts = [["A loud green dog."], ["a loud green dog.", "It is quiet."], []]
    outs = open_concepts_many(pts, tagger, is_acoustic)
    assert asked == ["loud", "green", "quiet"]
    assert tagger.calls == [["a loud green dog.", "it is quiet."]]
    assert [o.kept for o in outs] == [("loud",), ("loud", "quiet"), ()]
    assert outs[2].caption_len == 0 and outs[2].concepts == ()
    batched: list[list[str]] = []

    def many(words: list[str]) -> list[bool]:
        batched.append(words)
        return [w != "green" for w in words]

    outs2 = open_concepts_many(pts, tagger, is_acoustic_many=many)
    assert batched == [["loud", "green", "quiet"]] and outs2 == outs
    with pytest.raises(ValueError, match="answers"):
        open_concepts_many(pts, tagger, is_acoustic_many=lambda ws: [])


def test_pos_lists_unique_or_repeated_and_stopwords() -> None:
    tagger = DictTagger(FAKE_TAGS)
    pts = [["a dog barks in the back of the yard .", "a dog barks in the yard ."]]
    (uniq,) = open_concepts_many(pts, tagger)
    assert uniq.nouns == ("dog", "yard")  # 'back' is a spaCy stopword (not an NLTK one)
    assert uniq.verbs == ("barks",) and uniq.preps == ("in", "of")
    (rep,) = open_concepts_many(pts, tagger, cfg=OpenConceptsConfig.reference())
    assert rep.nouns == ("dog", "yard", "dog", "yard")
    assert (rep.n_nouns, rep.n_verbs, rep.n_preps) == (4, 2, 3)
    (own,) = open_concepts_many(pts, tagger, cfg=OpenConceptsConfig(stopwords=frozenset()))
    assert own.nouns == ("dog", "back", "yard")
    with pytest.raises(ValueError, match="not a string"):
        open_concepts_many(["a dog"], tagger)  # type: ignore[list-item]


def test_constants_and_lexicon() -> None:
    assert len(AUTHORS_DUMMY_WORDS) == 60
    assert {"737-800", "2-3", "well-defined", "*", "a lot", "kitchen"} <= AUTHORS_DUMMY_WORDS
    assert BASIC_ADJECTIVES_PAPER == {"high-pitched", "high-quality", "clear", "loud"}
    assert BASIC_ADJECTIVES_CODE == {"clear", "high-pitched", "high", "loud", "random"}
    for w in ("loud", "High-Pitched", "muffled", "medium-pitched", "ear-piercing", "repetitive"):
        assert lexicon_is_acoustic(w), w
    for w in ("green", "wooden", "well-defined", "running"):
        assert not lexicon_is_acoustic(w), w
