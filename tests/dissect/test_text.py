"""Tests of caption cleaning, sentence splitting and summary points (reference-spec §4, §10)."""

from __future__ import annotations

import pytest

from and_toolkit.dissect.text import (
    AUTHORS_JUNK_PHRASES,
    PointsConfig,
    clean_repeated_substring,
    has_repeated_substring,
    is_junk,
    sentence_pool,
    split_sentences,
    summary_points,
    word_tokenize,
)


def test_word_tokenize_keeps_hyphenated_words_and_splits_punctuation() -> None:
    assert word_tokenize("A high-pitched, 737-800 engine's hum.") == [
        "A", "high-pitched", ",", "737-800", "engine", "'s", "hum", "."]


def test_repeated_substring_truncates_before_first_period() -> None:
    loop = "a dog barks and a cat meows " * 3
    caption = f"It starts. Then {loop}."
    assert has_repeated_substring(caption)
    assert clean_repeated_substring(caption) == "It starts"


def test_repeated_substring_truncates_to_first_line() -> None:
    caption = "First line here.\n" + "one two three four five six seven eight " * 2
    assert clean_repeated_substring(caption) == "First line here."


def test_caption_without_repeat_is_unchanged() -> None:
    caption = "a dog barks and a dog barks."  # 8 tokens: no 8-token window repeats
    assert not has_repeated_substring(caption)
    assert clean_repeated_substring(caption) == caption
    assert clean_repeated_substring(caption, window=3) == "a dog barks and a dog barks"
    # Tokens are compared case-sensitively (as NLTK tokens): "A dog" != "a dog".
    assert clean_repeated_substring("A dog barks and a dog barks.", window=3).endswith(".")
    with pytest.raises(ValueError, match="window"):
        clean_repeated_substring(caption, window=0)


def test_split_sentences() -> None:
    text = ('Here are the commonalities:\n\n1. The sound is loud. 2. It is high-pitched, '
            'e.g. a whistle! Is it 3.5 s long? "Yes." Done')
    assert split_sentences(text) == [
        "Here are the commonalities:", "1. The sound is loud.",
        "2. It is high-pitched, e.g. a whistle!", "Is it 3.5 s long?", '"Yes."', "Done"]
    assert split_sentences("  ") == []


def test_points_filter_short_and_junk() -> None:
    text = ("Sure! Here are the commonalities among the clips. The clips feature a loud dog "
            "barking. It is short. All clips were recorded outdoors in the rain.")
    assert summary_points(text) == [
        "The clips feature a loud dog barking.",
        "All clips were recorded outdoors in the rain."]


def test_points_token_threshold_is_more_than_five() -> None:
    five = "A dog barks very loudly"  # 5 tokens: dropped
    six = "A dog barks very loudly ."  # 6 tokens: kept (punctuation counts)
    text = f"{five}\n{six}"  # one sentence -> newline fallback
    assert summary_points(text) == [six]
    assert summary_points(text, PointsConfig(filter_short=False)) == [five, six]


def test_points_newline_fallback_below_three_sentences() -> None:
    text = "Loud dog barking in the yard\nHigh-pitched bird song in the morning"
    assert summary_points(text) == [
        "Loud dog barking in the yard", "High-pitched bird song in the morning"]


def test_junk_substring_compat_kills_pressure() -> None:
    # The authors match "sure" as a substring, so "pressure" / "measure" sentences die too.
    text = ("The air pressure changes in every clip. A loud hiss is heard in all clips. "
            "Engines measure the load in each clip.")
    assert summary_points(text, PointsConfig.reference()) == [
        "A loud hiss is heard in all clips."]
    assert summary_points(text) == [
        "The air pressure changes in every clip.", "A loud hiss is heard in all clips.",
        "Engines measure the load in each clip."]
    assert summary_points(text, PointsConfig(filter_junk=False, filter_short=False)) == [
        "The air pressure changes in every clip.", "A loud hiss is heard in all clips.",
        "Engines measure the load in each clip."]


def test_junk_phrases_verbatim_and_word_matching() -> None:
    assert AUTHORS_JUNK_PHRASES == (
        "sure", "here are", "this help", "based on", "\n\n1", "let me know", "please",
        "need any more help")
    cfg = PointsConfig()
    assert is_junk("Sure, here is the summary.", cfg)
    assert is_junk("Based on these descriptions, they share a dog.", cfg)
    assert not is_junk("The pleased crowd cheers.", cfg)  # "please" is not a word here
    assert is_junk("The pleased crowd cheers.", PointsConfig.reference())


def test_sentence_pool_has_no_length_filter() -> None:
    assert sentence_pool("A cough. Sure thing. It is loud.") == ["A cough.", "It is loud."]
