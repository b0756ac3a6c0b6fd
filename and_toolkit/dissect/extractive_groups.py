"""Sentence grouping of the extractive summariser (:mod:`and_toolkit.dissect.extractive`).

The per-neuron work of steps 3-5 of that module's algorithm, arranged so that what neurons
share is computed once per run: a distinct caption's sentences and word positions
(:class:`CaptionInfo`), and the Dice similarity of a pair of distinct sentences
(:func:`lexical_sim`'s cache). Similarities are plain Python floats, [n][n] lists, n = the
neuron's number of content sentences; every value and every float sum is formed exactly as in
the straightforward formulation (one Dice per ordered pair, numpy matrix, numpy argmax), which
``tests/dissect/test_extractive_equivalence.py`` keeps as the reference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

Word = tuple[str, str, str]
"""(kind, lemma, display form) of an adjective / noun of a sentence."""


def dice(a: frozenset[str], b: frozenset[str]) -> float:
    """Dice coefficient of two content-lemma sets, in [0, 1]; 0.0 if either is empty."""
    if not a or not b:
        return 0.0
    return 2.0 * len(a & b) / (len(a) + len(b))


class CaptionInfo(NamedTuple):
    """What every neuron holding one distinct caption reuses.

    Attributes:
        sents: rows (indices into the run's distinct content sentences) of its content
            sentences, in order.
        words: the first occurrence of each (kind, lemma) among its sentences' words, as
            (kind, lemma, display form, 1-based position among all its words).
        n_words: number of words (every kind) of its sentences, to offset positions.
    """

    sents: tuple[int, ...]
    words: tuple[tuple[str, str, str, int], ...]
    n_words: int


def caption_info(sents: tuple[int, ...], words: Sequence[tuple[Word, ...]]) -> CaptionInfo:
    """:class:`CaptionInfo` of a caption from its sentence rows and the words of every row."""
    first: dict[tuple[str, str], tuple[str, str, str, int]] = {}
    pos = 0
    for r in sents:
        for kind, lem, form in words[r]:
            pos += 1
            first.setdefault((kind, lem), (kind, lem, form, pos))
    return CaptionInfo(sents, tuple(first.values()), pos)


def lexical_sim(rows: list[int], lemmas: Sequence[frozenset[str]],
                cache: dict[int, float]) -> list[list[float]]:
    """Dice similarities of a neuron's content sentences, [n][n] Python floats.

    Dice is symmetric and exactly 1.0 for a sentence with itself (content lemmas are never
    empty), so each pair of distinct rows is computed once per run.

    Args:
        rows: the neuron's sentences as rows into ``lemmas``, length n.
        lemmas: content-lemma set of every distinct sentence (non-empty).
        cache: pair key ``min * len(lemmas) + max`` -> Dice; read and filled.

    Returns:
        ``sim[i][j]`` = Dice of sentences i and j.
    """
    n, stride = len(rows), len(lemmas)
    sim = [[1.0] * n for _ in range(n)]
    for i in range(1, n):
        a, row_i = rows[i], sim[i]
        for j in range(i):
            b = rows[j]
            if a == b:
                continue
            key = a * stride + b if a < b else b * stride + a
            s = cache.get(key)
            if s is None:
                s = cache[key] = dice(lemmas[a], lemmas[b])
            row_i[j] = sim[j][i] = s
    return sim


def group(sim: list[list[float]], threshold: float) -> list[list[int]]:
    """Greedy groups in sentence order: a sentence joins the group whose most similar member
    is most similar (first group on ties) if that reaches ``threshold``, else starts one.

    Args:
        sim: [n][n] similarities.
        threshold: similarity needed to join a group.

    Returns:
        Groups of sentence indices, in order of their first member.
    """
    groups: list[list[int]] = []
    for i, row in enumerate(sim):
        best, best_sim = -1, -math.inf
        for g, members in enumerate(groups):
            s = max([row[j] for j in members])
            if s > best_sim:
                best, best_sim = g, s
        if best >= 0 and best_sim >= threshold:
            groups[best].append(i)
        else:
            groups.append([i])
    return groups


def first_argmax(xs: list[float]) -> int:
    """Index of the first maximum of a non-empty list, or of its first NaN if it has one
    (what :func:`numpy.argmax` returns)."""
    for i, x in enumerate(xs):
        if x != x:
            return i
    return xs.index(max(xs))


def medoid(members: list[int], sim: list[list[float]]) -> int:
    """The member with the largest summed similarity to the other members (ties: first)."""
    if len(members) == 1:
        return members[0]
    scores = [sum(sim[i][j] for j in members if j != i) for i in members]
    return members[first_argmax(scores)]


def shared_words(
    infos: Sequence[CaptionInfo], kinds: tuple[str, ...], min_support: int,
) -> list[tuple[int, str, int, str, int]]:
    """Words found in at least ``min_support`` of a neuron's clips.

    Args:
        infos: the neuron's captions in clip order (clip index = position).
        kinds: word kinds to collect; positions count the words of every kind.
        min_support: fewest clips a word must occur in.

    Returns:
        (1-based index of its kind in ``kinds``, lemma, clip mask (bit c = clip c), display
        form, first position), in order of first appearance; positions are 1-based over all
        words of all the neuron's sentences.
    """
    wanted = {k: i for i, k in enumerate(kinds, 1)}
    masks: dict[tuple[str, str], int] = {}
    firsts: dict[tuple[str, str], tuple[str, int]] = {}
    offset = 0
    for clip, info in enumerate(infos):
        bit = 1 << clip
        for kind, lem, form, pos in info.words:
            key = (kind, lem)
            mask = masks.get(key)
            if mask is None:
                masks[key] = bit
                firsts[key] = (form, offset + pos)
            else:
                masks[key] = mask | bit
        offset += info.n_words
    return [(wanted[kind], lem, mask, *firsts[kind, lem]) for (kind, lem), mask in masks.items()
            if kind in wanted and mask.bit_count() >= min_support]


def mask_clips(mask: int) -> tuple[int, ...]:
    """Clip indices (ascending) of a clip mask."""
    return tuple(c for c in range(mask.bit_length()) if mask >> c & 1)
