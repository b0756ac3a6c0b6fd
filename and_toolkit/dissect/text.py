"""Caption and summary text processing: cleaning, sentence splitting, summary "points".

Reference: reference-spec §4 (caption cleaning, points), §10 (sentence pool), §15 item 10.

Tokenisation is a small regex word tokenizer (:func:`word_tokenize`), not NLTK: a token is a
run of word characters with internal hyphens kept ("high-pitched", "737-800"), an apostrophe
clitic ("'s", "'t"), or a single punctuation character. Differences from NLTK's
``word_tokenize``: "don't" -> "don", "'t" (NLTK: "do", "n't"; same count); "..." -> three
tokens (NLTK: one); quotes are single characters (NLTK rewrites them to `` and '').
Token counts therefore match NLTK's on ordinary prose and may differ by a few on ellipses.

Sentence splitting (:func:`split_sentences`) replaces NLTK's Punkt: a sentence ends at ".",
"!" or "?" (plus closing quotes/brackets) followed by whitespace, except after a few common
abbreviations ("e.g.", "i.e.", "Mr." ...) and after a bare list number ("1."), which starts the
next sentence instead. Newlines are ordinary whitespace (Punkt does not split on them either).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

_TOKEN = re.compile(r"\w+(?:-\w+)*|'\w+|[^\w\s]")
_BOUNDARY = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*(?=\s)")
_ABBREVIATIONS = frozenset({
    "e.g.", "i.e.", "etc.", "vs.", "mr.", "mrs.", "ms.", "dr.", "prof.", "st.", "approx.",
    "ca.", "cf.", "fig.", "no.", "inc.", "ltd."})
_LIST_MARKER = re.compile(r"(?:^|\n)\s*(\d+[.)])$")

#: The authors' junk phrases (``sentence_utils.is_junk_sentence``), verbatim; matched against
#: the lower-cased sentence.
AUTHORS_JUNK_PHRASES: tuple[str, ...] = (
    "sure", "here are", "this help", "based on", "\n\n1", "let me know", "please",
    "need any more help")


def word_tokenize(text: str) -> list[str]:
    """Split ``text`` into word and punctuation tokens (regex; see the module docstring).

    Args:
        text: any string.

    Returns:
        Tokens in order; punctuation characters are separate tokens.
    """
    return _TOKEN.findall(text)


def has_repeated_substring(caption: str, window: int = 8) -> bool:
    """Whether some ``window`` consecutive tokens, concatenated without spaces, occur twice.

    Args:
        caption: caption text.
        window: number of consecutive tokens (the authors use 8).

    Returns:
        True if a repeated window exists (a sign of a looping captioner).

    Raises:
        ValueError: if ``window`` < 1.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    toks = word_tokenize(caption)
    seen: set[str] = set()
    for i in range(len(toks) - window + 1):
        key = "".join(toks[i:i + window])
        if key in seen:
            return True
        seen.add(key)
    return False


def clean_repeated_substring(caption: str, window: int = 8) -> str:
    """Truncate a caption that repeats itself (reference-spec §4, ``clean_repeated_substring``).

    If any window of ``window`` consecutive tokens occurs twice, the caption is cut to its
    first line when it contains a newline, else to the text before its first "." (the
    authors' rule; the period itself is dropped). Otherwise the caption is returned unchanged.

    Args:
        caption: caption text.
        window: token window (default 8, as the authors).

    Returns:
        The cleaned caption.
    """
    if not has_repeated_substring(caption, window):
        return caption
    if "\n" in caption:
        return caption.split("\n")[0]
    return caption.split(".")[0]


def split_sentences(text: str) -> list[str]:
    """Split text into sentences (a Punkt replacement; see the module docstring).

    Args:
        text: any string.

    Returns:
        Stripped, non-empty sentences in order.
    """
    text = text.strip()
    parts: list[str] = []
    start = 0
    for m in _BOUNDARY.finditer(text):
        parts.append(text[start:m.end()])
        start = m.end()
    parts.append(text[start:])
    out: list[str] = []
    carry = ""
    for raw in parts:
        piece = f"{carry} {raw.strip()}".strip() if carry else raw.strip()
        carry = ""
        if not piece:
            continue
        if piece.split()[-1].lower() in _ABBREVIATIONS:
            carry = piece
            continue
        marker = _LIST_MARKER.search(piece)
        if marker:  # "...:\n\n1." -> the list number starts the next sentence
            head = piece[:marker.start(1)].strip()
            if head:
                out.append(head)
            carry = marker.group(1)
            continue
        out.append(piece)
    if carry:
        out.append(carry)
    return out


class PointsConfig(BaseModel):
    """How a summary is split into "points" (reference-spec §4, ``tokenize_summary``).

    Attributes:
        newline_fallback_below: if fewer sentences than this, split on "\\n" instead (authors: 3).
        filter_short: drop points with fewer than ``min_tokens`` tokens.
        min_tokens: keep a point iff it has at least this many tokens, punctuation included
            (authors: ``len(word_tokenize(s)) > 5``, i.e. 6).
        filter_junk: drop points containing a junk phrase.
        junk_phrases: lower-case phrases marking greetings / meta text (authors' list).
        junk_match: "word" = the phrase must match whole words (fixed default: "pressure" and
            "measure" survive the phrase "sure"); "substring" = plain substring as the authors
            (``"sure" in s.lower()``, which also kills "pressure", "measure", "ensure").
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    newline_fallback_below: int = Field(default=3, ge=0)
    filter_short: bool = True
    min_tokens: int = Field(default=6, ge=0)
    filter_junk: bool = True
    junk_phrases: tuple[str, ...] = AUTHORS_JUNK_PHRASES
    junk_match: Literal["word", "substring"] = "word"

    @classmethod
    def reference(cls) -> PointsConfig:
        """The authors' exact behaviour (substring junk matching)."""
        return cls(junk_match="substring")


def is_junk(sentence: str, cfg: PointsConfig) -> bool:
    """Whether a sentence contains one of ``cfg.junk_phrases`` (lower-cased).

    Args:
        sentence: one sentence.
        cfg: points config (phrases and matching mode).

    Returns:
        True if it is junk.
    """
    low = sentence.lower()
    for phrase in cfg.junk_phrases:
        if cfg.junk_match == "substring":
            if phrase in low:
                return True
        elif re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", low):
            return True
    return False


def summary_points(text: str, cfg: PointsConfig | None = None) -> list[str]:
    """Split a summary into points (reference-spec §4).

    Sentences via :func:`split_sentences`; if there are fewer than
    ``cfg.newline_fallback_below``, the text is split on newlines instead. A point is kept iff
    it has at least ``cfg.min_tokens`` tokens (if ``filter_short``) and is not junk (if
    ``filter_junk``). Points are stripped; empty lines are dropped.

    Args:
        text: raw summary text.
        cfg: points config (default: fixed junk matching).

    Returns:
        The points, possibly empty.
    """
    cfg = cfg or PointsConfig()
    sents = split_sentences(text)
    if len(sents) < cfg.newline_fallback_below:
        sents = [s.strip() for s in text.split("\n")]
    out = []
    for s in sents:
        if not s:
            continue
        if cfg.filter_short and len(word_tokenize(s)) < cfg.min_tokens:
            continue
        if cfg.filter_junk and is_junk(s, cfg):
            continue
        out.append(s)
    return out


def sentence_pool(text: str, cfg: PointsConfig | None = None) -> list[str]:
    """Sentences of a caption for the interpretability sentence pool (reference-spec §10).

    Sentences via :func:`split_sentences`, junk sentences removed (if ``cfg.filter_junk``);
    no length filter, no newline fallback, no repeated-substring cleaning (as the authors).

    Args:
        text: caption text.
        cfg: points config (only the junk settings are used).

    Returns:
        The sentences, possibly empty.
    """
    cfg = cfg or PointsConfig()
    return [s for s in split_sentences(text) if not (cfg.filter_junk and is_junk(s, cfg))]
