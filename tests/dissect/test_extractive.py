"""Tests of the offline extractive summariser on hand-made captions."""

from __future__ import annotations

import pytest

from and_toolkit.backends.encoders import CachedEncoder, HashingEncoder, LookupEncoder
from and_toolkit.backends.tagger import DictTagger
from and_toolkit.dissect.extractive import (
    SUMMARIZER_ID,
    ExtractiveConfig,
    content_lemmas,
    lemma,
    summarise,
    summarise_many,
)

DOGS = ["A dog barks.", "Dogs are barking.", "It is the sound of a dog barking.",
        "A cat meows.", "Rain falls on a roof."]


def test_lemma_and_content_words() -> None:
    assert {lemma(w) for w in ("barks", "barking", "barked", "bark")} == {"bark"}
    assert lemma("sneezes") == lemma("sneezing") == "sneez"
    assert lemma("glasses") == "glass" and lemma("cries") == lemma("crying") == "cry"
    assert lemma("running") == "run" and lemma("hissing") == "hiss"
    assert lemma("high-pitched") == "high-pitched" and lemma("people") == "person"
    assert content_lemmas("It is the sound of a dog barking.") == {"dog", "bark"}


def test_shared_sentence_becomes_a_point_with_support() -> None:
    s = summarise(DOGS)
    assert s.text == "3/5 clips: a dog barks."
    assert s.points == ("A dog barks.",)
    (p,) = s.details
    assert (p.support, p.clips, p.kind) == (3, (0, 1, 2), "sentence")
    assert s.k == 5 and s.summarizer == SUMMARIZER_ID == "extractive-v1"


def test_order_by_support_then_first_appearance_and_shared_adjectives() -> None:
    caps = ["A bird chirps. It is loud and high-pitched.",
            "An engine idles. It is loud, high-pitched and steady.",
            "A bird is chirping. It is loud.",
            "An engine is idling.",
            "Birds chirp loudly. It is quiet."]
    s = summarise(caps)
    # Ties in support keep first appearance: the bird group starts before the 'loud' group.
    # 'loudly' (clip 4) is not 'loud'; the word 'loud' is already stated with support 3.
    assert s.text.splitlines() == [
        "3/5 clips: a bird chirps.",
        "3/5 clips: it is loud and high-pitched.",  # medoid of the three 'It is loud' sentences
        "2/5 clips: an engine idles.",
    ]
    assert [p.clips for p in s.details] == [(0, 2, 4), (0, 1, 2), (1, 3)]
    assert summarise(caps) == s  # deterministic


def test_word_points_for_adjectives_not_in_a_sentence_point() -> None:
    caps = ["A crow caws. It is loud, high-pitched and repetitive.",
            "A rooster crows. It is loud and bright.",
            "A hen clucks. It is loud and high-pitched.",
            "Wind blows. It is quiet.",
            "A crow caws. It is soft."]
    s = summarise(caps, ExtractiveConfig(lexical_threshold=0.9))
    lines = s.text.splitlines()
    assert "3/5 clips: it is loud." in lines
    assert "2/5 clips: it is high-pitched." in lines
    assert "2/5 clips: a crow caws." in lines
    adj = [p for p in s.details if p.kind == "adjectives"]
    assert [(p.text, p.clips) for p in adj] == [
        ("It is loud.", (0, 1, 2)), ("It is high-pitched.", (0, 2))]
    off = summarise(caps, ExtractiveConfig(lexical_threshold=0.9, word_points=False))
    assert all(p.kind == "sentence" for p in off.details)


def test_nouns_with_a_tagger_and_negation() -> None:
    tagger = DictTagger({"water": "NN", "rain": "NN", "falls": "VBZ", "drips": "VBZ",
                         "heavy": "JJ", "no": "DT", "is": "VBZ", "there": "EX"})
    caps = ["Water falls on stones.", "Heavy rain and water.", "Water drips slowly.",
            "There is no rain.", "A car passes."]
    s = summarise(caps, tagger=tagger)
    nouns = [p for p in s.details if p.kind == "nouns"]
    assert [(p.text, p.clips) for p in nouns] == [("Water.", (0, 1, 2))]  # rain: 1 free clip
    assert "3/5 clips: water." in s.text.splitlines()
    assert tagger.calls == [[c for c in caps]]  # every distinct sentence tagged once


def test_nothing_in_common() -> None:
    s = summarise(["A dog barks.", "Rain falls.", "A car passes."])
    assert s.points == () and s.details == ()
    assert s.text == "No point is shared by at least 2 of the 3 clips."


def test_embedding_mode_encodes_distinct_sentences_once() -> None:
    vec: dict[str, list[float]] = {"A dog barks.": [1, 0, 0], "A hound yelps.": [0.9, 0.1, 0], "Rain.": [0, 0, 1],
           "Thunder rumbles.": [0, 0.2, 1]}
    inner = LookupEncoder(vec)
    enc = CachedEncoder(inner)
    cfg = ExtractiveConfig(similarity="embedding", embedding_threshold=0.9)
    outs = summarise_many([["A dog barks.", "A hound yelps.", "Rain."],
                           ["Rain.", "Thunder rumbles.", "A dog barks."],
                           ["A dog barks.", "A hound yelps.", "Rain."]], cfg, encoder=enc)
    assert inner.calls == [["A dog barks.", "A hound yelps.", "Rain.", "Thunder rumbles."]]
    assert outs[0].text == "2/3 clips: a dog barks." and outs[2] == outs[0]
    assert outs[1].text == "2/3 clips: rain."
    with pytest.raises(ValueError, match="encoder"):
        summarise(DOGS, cfg)
    assert summarise(DOGS, cfg, encoder=HashingEncoder()).k == 5


def test_validation() -> None:
    with pytest.raises(ValueError, match=r"caption_lists\[0\]"):
        summarise_many([[]])
    with pytest.raises(ValueError, match=r"caption_lists\[0\]\[1\]"):
        summarise_many([["a", 3]])  # type: ignore[list-item]


def test_words_share_a_point_only_when_found_in_the_same_clips() -> None:
    caps = ["Wind. It is loud and bright.", "Rain. It is bright, loud and high-pitched.",
            "A bell. It is high-pitched and tonal.", "A car."]
    s = summarise(caps, ExtractiveConfig(lexical_threshold=1.0))
    assert [(p.text, p.support, p.clips) for p in s.details] == [
        ("It is loud and bright.", 2, (0, 1)), ("It is high-pitched.", 2, (1, 2))]
