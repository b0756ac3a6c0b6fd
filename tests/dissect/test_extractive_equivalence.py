"""The extractive summariser equals its straightforward formulation (kept here as reference).

:func:`reference_summarise_many` is the summariser as first written: one Dice per ordered pair
of a neuron's sentences in a numpy matrix, greedy groups over numpy scalars, medoid by
:func:`numpy.argmax`, word clip sets as Python sets. The optimised
:func:`and_toolkit.dissect.extractive.summarise_many` must return equal summaries (same
points, order, supports, clips and text) for any caption lists and settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import hypothesis.strategies as st
import numpy as np
from hypothesis import given, settings

from and_toolkit.backends.tagger import DictTagger
from and_toolkit.dissect.extractive import (
    ExtractiveConfig,
    ExtractivePoint,
    ExtractiveSummary,
    _first_lower,
    _join,
    _sentence_words,
    content_lemmas,
    summarise_many,
)
from and_toolkit.dissect.extractive_groups import first_argmax
from and_toolkit.dissect.text import split_sentences
from and_toolkit.interfaces import Tagger, TextEncoder

# ----- reference formulation -------------------------------------------------------------------


class _Item(NamedTuple):
    clip: int
    text: str
    lemmas: frozenset[str]


def _dice(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    return 2.0 * len(a & b) / (len(a) + len(b))


def _group(items: list[_Item], sim: np.ndarray, threshold: float) -> list[list[int]]:
    groups: list[list[int]] = []
    for i in range(len(items)):
        best, best_sim = -1, -np.inf
        for g, members in enumerate(groups):
            s = float(max(sim[i, j] for j in members))
            if s > best_sim:
                best, best_sim = g, s
        if best >= 0 and best_sim >= threshold:
            groups[best].append(i)
        else:
            groups.append([i])
    return groups


def _medoid(members: list[int], sim: np.ndarray) -> int:
    if len(members) == 1:
        return members[0]
    scores = [sum(float(sim[i, j]) for j in members if j != i) for i in members]
    return members[int(np.argmax(scores))]


def _shared_words(items: list[_Item], words_of: dict[str, tuple[tuple[str, str, str], ...]],
                  kinds: tuple[str, ...]) -> dict[str, dict[str, tuple[set[int], str, int]]]:
    out: dict[str, dict[str, tuple[set[int], str, int]]] = {k: {} for k in kinds}
    pos = 0
    for it in items:
        for kind, lem, form in words_of[it.text]:
            pos += 1
            if kind in out:
                out[kind].setdefault(lem, (set(), form, pos))[0].add(it.clip)
    return out


def _summarise_one(items: list[_Item], k: int, sim: np.ndarray, threshold: float,
                   cfg: ExtractiveConfig, words_of: dict[str, tuple[tuple[str, str, str], ...]],
                   with_nouns: bool) -> ExtractiveSummary:
    ranked: list[tuple[int, int, int, ExtractivePoint]] = []
    stated: list[tuple[frozenset[str], int]] = []
    for g, members in enumerate(_group(items, sim, threshold)):
        clips = tuple(sorted({items[i].clip for i in members}))
        if len(clips) < cfg.min_support:
            continue
        rep = items[_medoid(members, sim)]
        ranked.append((-len(clips), 0, g, ExtractivePoint(
            text=rep.text, support=len(clips), clips=clips, kind="sentence")))
        stated.append((rep.lemmas, len(clips)))
    if cfg.word_points:
        kinds = ("adjectives", "nouns") if with_nouns else ("adjectives",)
        for order, (kind, words) in enumerate(_shared_words(items, words_of, kinds).items(), 1):
            by_clips: dict[frozenset[int], list[tuple[int, str]]] = {}
            for lem, (clips_set, form, first) in words.items():
                n = len(clips_set)
                if n < cfg.min_support or any(lem in lems and n <= sup for lems, sup in stated):
                    continue
                by_clips.setdefault(frozenset(clips_set), []).append((first, form))
            for clip_set, entries in by_clips.items():
                entries.sort()
                joined = _join([f for _, f in entries])
                text = (f"It is {joined}." if kind == "adjectives"
                        else joined[:1].upper() + joined[1:] + ".")
                ranked.append((-len(clip_set), order, entries[0][0], ExtractivePoint(
                    text=text, support=len(clip_set), clips=tuple(sorted(clip_set)),
                    kind=kind)))  # type: ignore[arg-type]
    ranked.sort(key=lambda r: r[:3])
    details = tuple(r[3] for r in ranked[:cfg.max_points])
    if details:
        text = "\n".join(f"{p.support}/{k} clips: {_first_lower(p.text)}" for p in details)
    else:
        text = f"No point is shared by at least {cfg.min_support} of the {k} clips."
    return ExtractiveSummary(text=text, points=tuple(p.text for p in details),
                             details=details, k=k)


def reference_summarise_many(caption_lists: Sequence[Sequence[str]], cfg: ExtractiveConfig,
                             encoder: TextEncoder | None = None,
                             tagger: Tagger | None = None) -> list[ExtractiveSummary]:
    """The summariser as first written (no input checks)."""
    sentences_of: dict[str, list[tuple[str, frozenset[str]]]] = {}
    per_neuron: list[list[_Item]] = []
    for caps in caption_lists:
        items = []
        for c, cap in enumerate(caps):
            if cap not in sentences_of:
                sents = [(s, content_lemmas(s)) for s in split_sentences(cap)]
                sentences_of[cap] = [(s, lem) for s, lem in sents if lem]
            items += [_Item(clip=c, text=s, lemmas=lem) for s, lem in sentences_of[cap]]
        per_neuron.append(items)
    distinct = list(dict.fromkeys(s for sents in sentences_of.values() for s, _ in sents))
    row = {s: i for i, s in enumerate(distinct)}
    emb = encoder.encode(distinct) if cfg.similarity == "embedding" and encoder else None
    words_of: dict[str, tuple[tuple[str, str, str], ...]] = {}
    if cfg.word_points:
        tags = tagger.tag(distinct) if tagger is not None and distinct else [None] * len(distinct)
        words_of = {s: _sentence_words(s, t) for s, t in zip(distinct, tags, strict=True)}
    threshold = cfg.embedding_threshold if emb is not None else cfg.lexical_threshold
    out = []
    for caps, items in zip(caption_lists, per_neuron, strict=True):
        if emb is not None:
            e = emb[[row[it.text] for it in items]]
            sim = e @ e.T if items else np.zeros((0, 0))
        else:
            sim = np.array([[_dice(a.lemmas, b.lemmas) for b in items] for a in items])
        out.append(_summarise_one(items, len(caps), sim, threshold, cfg, words_of,
                                  with_nouns=tagger is not None))
    return out


# ----- inputs ----------------------------------------------------------------------------------

POOL = [
    "A dog barks.", "Dogs are barking loudly.", "It is the sound of a dog barking.",
    "A dog barks. It is loud and high-pitched.", "A dog barks.  ", "",
    "   ", "...", "It is loud, high-pitched and repetitive!", "It is not loud. A bird chirps?",
    "A bird is chirping. It is loud.", "Birds chirp; there is no wind.",
    "An engine idles. It is loud, steady and low.", "An engine is idling.",
    "Engines idle without rain. Mr. Smith speaks.", "Rain falls on a roof. Water drips.",
    "Heavy rain and water. It is quiet.", "Water falls on stones, e.g. gravel.",
    "The recording: 1. a dog barks 2. a cat meows", "A cat meows.\n\nA cat meows again.",
    "Static noise. Static noise.", "It is the sound of static.", "A man speaks; a woman laughs.",
    "Men speak and women laugh!", "Bells ring, ring, ring.", "A bell. It is high-pitched and tonal.",
]
TAGGER_WORDS = {"dog": "NN", "dogs": "NN", "bird": "NN", "birds": "NN", "engine": "NN",
                "engines": "NN", "rain": "NN", "water": "NN", "static": "JJ", "noise": "NN",
                "loud": "JJ", "loudly": "RB", "high-pitched": "JJ", "repetitive": "JJ",
                "quiet": "JJ", "steady": "JJ", "low": "JJ", "heavy": "JJ", "tonal": "JJ",
                "barks": "VBZ", "barking": "VBG", "is": "VBZ", "are": "VBP", "no": "DT",
                "not": "RB", "a": "DT", "the": "DT", "it": "PRP", "of": "IN", "and": "CC"}


class ToyEncoder:
    """Deterministic 4-d embeddings with frequent exact ties; "static" sentences are NaN."""

    id = "toy"

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), 4), dtype=np.float32)
        for i, t in enumerate(texts):
            if "static" in t.lower():
                out[i] = np.nan
                continue
            for w in content_lemmas(t):
                out[i, len(w) % 4] += 1.0
            out[i] /= max(float(np.linalg.norm(out[i])), 1e-6)
        return out


def _same(caption_lists: list[list[str]], cfg: ExtractiveConfig, tagged: bool) -> None:
    enc = ToyEncoder() if cfg.similarity == "embedding" else None
    fast = summarise_many(caption_lists, cfg, enc, DictTagger(TAGGER_WORDS) if tagged else None)
    ref = reference_summarise_many(caption_lists, cfg, enc,
                                   DictTagger(TAGGER_WORDS) if tagged else None)
    for f, r in zip(fast, ref, strict=True):
        assert f == r and f.text == r.text and f.model_dump() == r.model_dump()


configs = st.builds(
    ExtractiveConfig,
    similarity=st.sampled_from(["lexical", "embedding"]),
    lexical_threshold=st.sampled_from([0.2, 0.5, 0.6, 2 / 3, 0.8, 1.0]),
    embedding_threshold=st.sampled_from([-0.5, 0.0, 0.5, 0.75, 0.9, 1.0]),
    min_support=st.integers(1, 3),
    max_points=st.integers(1, 8),
    word_points=st.booleans(),
)
caption_lists = st.lists(st.lists(st.sampled_from(POOL), min_size=1, max_size=6),
                         min_size=1, max_size=8)


@settings(max_examples=300, deadline=None)
@given(lists=caption_lists, cfg=configs, tagged=st.booleans())
def test_fast_summaries_equal_the_reference(lists: list[list[str]], cfg: ExtractiveConfig,
                                            tagged: bool) -> None:
    _same(lists, cfg, tagged)


def test_every_window_of_the_pool_equals_the_reference() -> None:
    lists = [POOL[i:i + k] for k in (2, 3, 5) for i in range(len(POOL) - k + 1)]
    lists += [[c] * 5 for c in POOL[:6]] + [POOL[::-1][:5], POOL[3:4] + POOL[:5]]
    for cfg in (ExtractiveConfig(), ExtractiveConfig(min_support=1, max_points=3),
                ExtractiveConfig(similarity="embedding")):
        for tagged in (False, True):
            _same(lists, cfg, tagged)


@given(st.lists(st.sampled_from([0.0, -0.0, 0.5, 1.0, -1.0, float("nan"), float("inf"),
                                 float("-inf")]), min_size=1, max_size=6))
def test_first_argmax_is_numpy_argmax(xs: list[float]) -> None:
    assert first_argmax(xs) == int(np.argmax(xs))
