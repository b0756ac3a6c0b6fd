"""The offline extractive summariser: what do the K captions of a neuron's clips share?

A deterministic stand-in for the LLM summary S_h / S_l (reference-spec §4). Given the K
captions of a neuron's top (or bottom) clips it returns points with support counts::

    4/5 clips: A dog barks.
    3/5 clips: it is loud and high-pitched.
    2/5 clips: dog and engine.

Algorithm (:func:`summarise_many`):

1. Each caption is split into sentences (:func:`and_toolkit.dissect.text.split_sentences`).
2. Each sentence is reduced to its *content lemmas*: lower-cased word tokens minus a stopword
   list (English function words plus caption boilerplate such as "sound", "audio", "clip"),
   passed through a small suffix stripper (:func:`lemma`: "barks", "barking", "barked" ->
   "bark").
3. Sentences are grouped greedily in caption order: a sentence joins the existing group with
   the most similar member if that similarity reaches the threshold, else starts a group.
   Similarity is the Dice coefficient of content-lemma sets ("lexical", default) or the
   cosine of sentence embeddings from an injected :class:`TextEncoder` ("embedding").
4. A group's support is the number of distinct clips with a sentence in it; its text is its
   medoid (the member most similar to the others; ties: first). Groups with support >=
   ``min_support`` become points.
5. Word points: adjectives (and, with a tagger, nouns) that occur in >= ``min_support``
   clips and are not already stated by a sentence point of at least that support; words
   found in exactly the same clips share one point ("it is loud and high-pitched."). Without a tagger, adjectives are the
   words of :data:`and_toolkit.dissect.open_concepts.ACOUSTIC_ADJECTIVES`; with one, tags
   JJ/JJR/JJS (nouns NN/NNS). A word preceded by "no"/"not"/"without" within 3 tokens does
   not count.
6. Points are ordered by support (descending), then sentence points before adjective
   before noun points, then first appearance; at most ``max_points``.

Steps 3-5 live in :mod:`and_toolkit.dissect.extractive_groups`, arranged so that what
neurons share (a caption's sentences and words, a sentence pair's Dice) is computed once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from and_toolkit.dissect.extractive_groups import (
    CaptionInfo,
    Word,
    caption_info,
    group,
    lexical_sim,
    mask_clips,
    medoid,
    shared_words,
)
from and_toolkit.dissect.open_concepts import ACOUSTIC_ADJECTIVES
from and_toolkit.dissect.text import split_sentences
from and_toolkit.interfaces import TaggedToken, Tagger, TextEncoder

SUMMARIZER_ID = "extractive-v1"

_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
_NEGATORS = frozenset({"no", "not", "without", "never"})
_IRREGULAR = {"men": "man", "women": "woman", "children": "child", "people": "person",
              "mice": "mouse", "geese": "goose", "feet": "foot", "teeth": "tooth",
              "leaves": "leaf", "wolves": "wolf", "knives": "knife"}

#: Words ignored when comparing sentences: English function words and caption boilerplate.
EXTRACTIVE_STOPWORDS: frozenset[str] = frozenset("""
a an the this that these those it its it's is are was were be been being am of in on at to
from by with without for as and or but nor so then than there here also very quite rather
somewhat some any each all both few more most other such no not only own same too can could
will would should may might must shall do does did doing done have has had having i you he
she we they them their his her our your my me him us what which who whom whose when where why
how while during before after above below up down out off over under again further once into
through about against between just now s t one two three several many much another either
neither like likely seems seem appears appear sound sounds sounding audio clip clips
recording recorded record hear heard hearing listen listening heard whole entire throughout
duration overall also something someone type kind series
""".split())


class ExtractiveConfig(BaseModel):
    """Settings of the extractive summariser.

    Attributes:
        similarity: "lexical" (Dice of content lemmas) or "embedding" (needs an encoder).
        lexical_threshold: Dice >= this groups two sentences, in (0, 1].
        embedding_threshold: cosine >= this groups two sentences, in (-1, 1].
        min_support: a point needs sentences from at least this many distinct clips.
        max_points: keep at most this many points.
        word_points: add shared-adjective (and, with a tagger, shared-noun) points.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    similarity: Literal["lexical", "embedding"] = "lexical"
    lexical_threshold: float = Field(default=0.6, gt=0.0, le=1.0)
    embedding_threshold: float = Field(default=0.75, gt=-1.0, le=1.0)
    min_support: int = Field(default=2, ge=1)
    max_points: int = Field(default=8, ge=1)
    word_points: bool = True


class ExtractivePoint(BaseModel):
    """One point of an extractive summary.

    Attributes:
        text: the point as a sentence (no support prefix), e.g. "A dog barks.".
        support: number of distinct clips supporting it.
        clips: 0-based indices (caption order) of the supporting clips, ascending.
        kind: "sentence" (a grouped caption sentence), "adjectives" or "nouns" (shared words).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str
    support: int
    clips: tuple[int, ...]
    kind: Literal["sentence", "adjectives", "nouns"]


class ExtractiveSummary(BaseModel):
    """The extractive summary of K captions.

    Attributes:
        text: one line per point, "<support>/<K> clips: <point>"; or a sentence saying that
            nothing is shared.
        points: the point sentences without prefix (what Module B / C consume).
        details: the points with supports and clip indices.
        k: number of captions summarised.
        summarizer: summariser id ("extractive-v1").
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str
    points: tuple[str, ...]
    details: tuple[ExtractivePoint, ...]
    k: int
    summarizer: str = SUMMARIZER_ID


def lemma(word: str) -> str:
    """A crude, deterministic lemma key: lower-case, strip plural / -ing / -ed, final "e".

    Only used to compare words ("barking" ~ "barks" ~ "barked" -> "bark"; "sneezes" ~
    "sneezing" -> "sneez"), never shown.

    Args:
        word: a word token.

    Returns:
        The key.
    """
    w = word.lower()
    if w in _IRREGULAR:
        return _IRREGULAR[w]
    if len(w) <= 3 or "-" in w:
        return w
    if w.endswith("ies") and len(w) > 4:
        w = w[:-3] + "y"
    elif w.endswith("ing") and len(w) > 5:
        w = _undouble(w[:-3])
    elif w.endswith("ed") and len(w) > 4:
        w = w[:-3] + "y" if w.endswith("ied") else _undouble(w[:-2])
    elif w.endswith("es") and w[:-2].endswith(("ch", "sh", "x", "ss", "zz")):
        w = w[:-2]
    elif w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    if len(w) > 3 and w.endswith("e"):
        w = w[:-1]
    return w


def _undouble(stem: str) -> str:
    if len(stem) >= 3 and stem[-1] == stem[-2] and stem[-1] not in "lsz":
        return stem[:-1]
    return stem


def content_lemmas(sentence: str) -> frozenset[str]:
    """Content-lemma set of a sentence (stopwords of :data:`EXTRACTIVE_STOPWORDS` removed)."""
    return frozenset(lemma(w) for w in _WORD.findall(sentence.lower())
                     if w not in EXTRACTIVE_STOPWORDS and not w.isdigit())


def _join(words: Sequence[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def _first_lower(s: str) -> str:
    if len(s) > 1 and s[0].isupper() and not s[1].isupper():
        return s[0].lower() + s[1:]
    return s


def _sentence_words(text: str, tags: list[TaggedToken] | None) -> tuple[Word, ...]:
    """Adjectives / nouns of one sentence that are not negated (see the module docstring)."""
    if tags is not None:
        toks = [(t.text.lower(), t.tag) for t in tags]
    else:
        toks = [(w, "JJ" if w in ACOUSTIC_ADJECTIVES else "") for w in _WORD.findall(text.lower())]
    out = []
    for i, (w, tag) in enumerate(toks):
        kind = "adjectives" if tag in {"JJ", "JJR", "JJS"} else "nouns" if tag in {"NN", "NNS"} else ""
        if not kind or w in EXTRACTIVE_STOPWORDS or not _WORD.fullmatch(w):
            continue
        if any(p in _NEGATORS for p, _ in toks[max(0, i - 3):i]):
            continue
        out.append((kind, lemma(w), w))
    return tuple(out)


class _Sentences(NamedTuple):
    """The run's distinct content sentences (first-appearance order) and their lemma sets."""

    texts: list[str]
    lemmas: list[frozenset[str]]


def _summarise_one(
    infos: list[CaptionInfo], sim: list[list[float]], rows: list[int], clip_of: list[int],
    sentences: _Sentences, threshold: float, cfg: ExtractiveConfig, with_nouns: bool,
) -> ExtractiveSummary:
    """Summary of one neuron: ``infos`` its K captions, ``rows`` / ``clip_of`` its n content
    sentences (rows into ``sentences``, clip indices), ``sim`` their [n][n] similarities."""
    ranked: list[tuple[int, int, int, str, tuple[int, ...], str]] = []
    stated: dict[str, int] = {}  # lemma -> largest support of a sentence point stating it
    for g, members in enumerate(group(sim, threshold)):
        if len(members) < cfg.min_support:  # fewer sentences than needed clips
            continue
        clips = tuple(sorted({clip_of[i] for i in members}))
        if len(clips) < cfg.min_support:
            continue
        rep = rows[medoid(members, sim)]
        ranked.append((-len(clips), 0, g, sentences.texts[rep], clips, "sentence"))
        for lem in sentences.lemmas[rep]:
            stated[lem] = max(stated.get(lem, 0), len(clips))
    if cfg.word_points:
        kinds = ("adjectives", "nouns") if with_nouns else ("adjectives",)
        by_clips: dict[tuple[int, int], list[tuple[int, str]]] = {}
        for order, lem, mask, form, first in shared_words(infos, kinds, cfg.min_support):
            if mask.bit_count() > stated.get(lem, 0):
                by_clips.setdefault((order, mask), []).append((first, form))
        for (order, mask), entries in by_clips.items():
            entries.sort()
            joined = _join([f for _, f in entries])
            kind = kinds[order - 1]
            text = (f"It is {joined}." if kind == "adjectives"
                    else joined[:1].upper() + joined[1:] + ".")
            clips = mask_clips(mask)
            ranked.append((-len(clips), order, entries[0][0], text, clips, kind))
    # (-support, kind order, group / first position) is unique per point, so the order
    # candidates were appended in does not matter.
    ranked.sort(key=lambda r: r[:3])
    k = len(infos)
    details = tuple(ExtractivePoint(text=text, support=-neg, clips=clips, kind=kind)  # type: ignore[arg-type]
                    for neg, _, _, text, clips, kind in ranked[:cfg.max_points])
    if details:
        text = "\n".join(f"{p.support}/{k} clips: {_first_lower(p.text)}" for p in details)
    else:
        text = f"No point is shared by at least {cfg.min_support} of the {k} clips."
    return ExtractiveSummary(text=text, points=tuple(p.text for p in details),
                             details=details, k=k)


def _split_captions(caption_lists: Sequence[Sequence[str]]
                    ) -> tuple[dict[str, list[str]], dict[str, frozenset[str]]]:
    """(distinct caption -> its content sentences, distinct sentence -> its content lemmas),
    each lemma set computed once; checks every neuron's list."""
    sentences_of: dict[str, list[str]] = {}
    lemmas_of: dict[str, frozenset[str]] = {}
    for n, caps in enumerate(caption_lists):
        if isinstance(caps, str) or len(caps) == 0:
            raise ValueError(f"caption_lists[{n}] must be a non-empty list of captions")
        for c, cap in enumerate(caps):
            if not isinstance(cap, str):
                raise ValueError(f"caption_lists[{n}][{c}] is {type(cap).__name__}, not str")
            if cap not in sentences_of:
                kept = []
                for sentence in split_sentences(cap):
                    if sentence not in lemmas_of:
                        lemmas_of[sentence] = content_lemmas(sentence)
                    if lemmas_of[sentence]:
                        kept.append(sentence)
                sentences_of[cap] = kept
    return sentences_of, lemmas_of


def summarise_many(
    caption_lists: Sequence[Sequence[str]],
    cfg: ExtractiveConfig | None = None,
    encoder: TextEncoder | None = None,
    tagger: Tagger | None = None,
) -> list[ExtractiveSummary]:
    """Extractive summaries of many neurons' captions (see the module docstring).

    Every distinct sentence is embedded (embedding mode) and tagged (with a tagger) once
    across all neurons, a distinct caption is split once, the Dice of a pair of distinct
    sentences is computed once, and neurons with identical caption lists share one
    computation.

    Args:
        caption_lists: per neuron, its K captions in clip order (top clips by descending
            activation, or bottom clips by ascending activation).
        cfg: settings (default :class:`ExtractiveConfig`).
        encoder: sentence encoder, required iff ``cfg.similarity == "embedding"``.
        tagger: POS tagger for adjective / noun word points (optional).

    Returns:
        One :class:`ExtractiveSummary` per neuron, in input order.

    Raises:
        ValueError: if a neuron has no captions, a caption is not a string, or the
            embedding mode lacks an encoder.
    """
    cfg = cfg or ExtractiveConfig()
    if cfg.similarity == "embedding" and encoder is None:
        raise ValueError("cfg.similarity='embedding' needs an encoder")
    sentences_of, lemmas_of = _split_captions(caption_lists)
    distinct = list(dict.fromkeys(s for sents in sentences_of.values() for s in sents))
    row = {s: i for i, s in enumerate(distinct)}
    sentences = _Sentences(distinct, [lemmas_of[s] for s in distinct])
    emb = encoder.encode(distinct) if cfg.similarity == "embedding" and encoder else None
    words: list[tuple[Word, ...]] = [()] * len(distinct)
    if cfg.word_points:
        tags = tagger.tag(distinct) if tagger is not None and distinct else [None] * len(distinct)
        words = [_sentence_words(s, t) for s, t in zip(distinct, tags, strict=True)]
    info_of = {cap: caption_info(tuple(row[s] for s in sents), words)
               for cap, sents in sentences_of.items()}
    threshold = cfg.embedding_threshold if emb is not None else cfg.lexical_threshold
    pair_dice: dict[int, float] = {}
    memo: dict[tuple[str, ...], ExtractiveSummary] = {}
    out = []
    for caps in caption_lists:
        key = tuple(caps)
        if key not in memo:
            infos = [info_of[cap] for cap in caps]
            rows = [r for info in infos for r in info.sents]
            clip_of = [c for c, info in enumerate(infos) for _ in info.sents]
            if emb is not None:  # e @ e.T exactly as before (numpy may take a syrk path)
                e = emb[rows]
                sim = (e @ e.T).tolist() if rows else []
            else:
                sim = lexical_sim(rows, sentences.lemmas, pair_dice)
            memo[key] = _summarise_one(infos, sim, rows, clip_of, sentences, threshold, cfg,
                                       with_nouns=tagger is not None)
        out.append(memo[key])
    return out


def summarise(
    captions: Sequence[str],
    cfg: ExtractiveConfig | None = None,
    encoder: TextEncoder | None = None,
    tagger: Tagger | None = None,
) -> ExtractiveSummary:
    """Extractive summary of one neuron's K captions (see :func:`summarise_many`)."""
    return summarise_many([captions], cfg, encoder, tagger)[0]
