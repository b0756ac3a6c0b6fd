"""Open-concept pruning (OCP): which open-set nouns name a target class (Table 4 / Fig 10).

A neuron is pruned for class c when one of its open nouns *matches* c. Four rules
(:data:`OcpRule`), all case-insensitive, class names split at ``_`` into tokens:

* ``substring`` (the authors' rule, reference §7): the noun is a substring of the class string
  ("use" hits "mouse_click", "rain" hits "train").
* ``token``: the noun equals a token of the class name ("bird" does not hit "chirping_birds").
* ``lemma``: the same after a lemmatiser on both sides (:func:`simple_lemma` by default:
  "birds" -> "bird"; it does not relate "laughter" to "laughing").
* ``meaning``: the cosine similarity of the noun's and the class's text embeddings (the run's
  sentence encoder, injected as :data:`WordSimilarity`) reaches ``threshold``. The class side
  is the class phrase ("door wood knock") and each of its tokens; the best of them counts, so
  every ``token`` match (cos 1) is also a ``meaning`` match. This is the only rule that can
  relate a caption's "laughter" to the class "laughing" or "housefly" to "insects".

Each match carries a score used to rank a class's neurons (count-matched unlearning): the
cosine for ``meaning``, 1.0 for the lexical rules.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = ["LemmaFn", "OcpRule", "WordSimilarity", "class_phrases", "describe_hits", "match_nouns",
           "ocp_matches", "rule_label", "simple_lemma"]

OcpRule = Literal["token", "lemma", "substring", "meaning"]
LemmaFn = Callable[[str], str]
WordSimilarity = Callable[[Sequence[str], Sequence[str]], npt.NDArray[np.floating]]
"""``sim(words, phrases) -> cos [len(words), len(phrases)]`` of the run's text encoder."""


def simple_lemma(word: str) -> str:
    """Rule-based English noun singular (default lemmatiser of the ``lemma`` rule).

    Lower-case; ``-ies`` -> ``-y``; ``-sses``/``-xes``/``-zes``/``-ches``/``-shes`` drop ``es``;
    any other ``-s`` (except ``-ss``/``-us``/``-is``) drops ``s``. "birds" -> "bird".
    """
    w = word.lower()
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 4 and w.endswith(("sses", "xes", "zes", "ches", "shes")):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def ocp_matches(word: str, class_name: str, match: Literal["token", "lemma", "substring"],
                lemma_fn: LemmaFn = simple_lemma) -> bool:
    """Whether ``word`` names ``class_name`` by one of the lexical rules (see module doc)."""
    w, c = word.lower(), class_name.lower()
    if match == "substring":
        return w in c
    tokens = c.split("_")
    if match == "token":
        return w in tokens
    return lemma_fn(w) in {lemma_fn(t) for t in tokens}


def class_phrases(class_name: str) -> list[str]:
    """The class texts the ``meaning`` rule compares a noun with: the phrase, then its tokens
    ("door_wood_knock" -> ["door wood knock", "door", "wood", "knock"]; one-token classes give
    one text)."""
    tokens = [t for t in class_name.lower().split("_") if t]
    return list(dict.fromkeys([" ".join(tokens), *tokens]))


def match_nouns(words: Sequence[str], targets: Sequence[str], rule: OcpRule, *,
                lemma_fn: LemmaFn = simple_lemma, similarity: WordSimilarity | None = None,
                threshold: float | None = None) -> dict[str, dict[str, float]]:
    """The nouns that match each target class, with their match score.

    Args:
        words: distinct open-set nouns.
        targets: class names.
        rule: see :data:`OcpRule`.
        lemma_fn: lemmatiser of the ``lemma`` rule.
        similarity: text-encoder cosine, required by ``meaning``.
        threshold: minimum cosine of ``meaning`` (in [-1, 1]).

    Returns:
        ``{class: {noun: score}}``; score = best cosine (``meaning``) or 1.0.

    Raises:
        ValueError: ``meaning`` without ``similarity`` / ``threshold``, or a similarity matrix
            of the wrong shape.
    """
    if rule != "meaning":
        return {c: {w: 1.0 for w in words if ocp_matches(w, c, rule, lemma_fn)} for c in targets}
    if similarity is None or threshold is None:
        raise ValueError("ocp_match='meaning' needs a text-encoder similarity and a threshold")
    if not words:
        return {c: {} for c in targets}
    texts = {c: class_phrases(c) for c in targets}
    flat = list(dict.fromkeys(t for c in targets for t in texts[c]))
    cos = np.asarray(similarity(list(words), flat), dtype=np.float64)
    if cos.shape != (len(words), len(flat)):
        raise ValueError(f"similarity: expected a [{len(words)}, {len(flat)}] matrix, "
                         f"got {cos.shape}")
    col = {t: j for j, t in enumerate(flat)}
    out: dict[str, dict[str, float]] = {}
    for c in targets:
        best = cos[:, [col[t] for t in texts[c]]].max(axis=1)
        out[c] = {w: float(s) for w, s in zip(words, best, strict=True) if s >= threshold}
    return out


def rule_label(rule: OcpRule, threshold: float | None = None, encoder: str | None = None,
               pos: Sequence[str] = ("NOUN",)) -> str:
    """Human-readable OCP rule for notes, e.g. ``"match=meaning (cos >= 0.70, minilm)"``."""
    what = {"substring": "substring (authors')", "token": "token", "lemma": "lemma"}.get(rule, "")
    if rule == "meaning":
        enc = f", {encoder}" if encoder else ""
        what = f"meaning (cos >= {threshold:.2f}{enc})"
    return f"match={what}, pos={','.join(pos)}"


def describe_hits(hits: Mapping[str, float], limit: int = 6) -> str:
    """The matched nouns of a class, best first, e.g. ``"laughter 0.81, laugh 0.78"``."""
    top = sorted(hits.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    more = f" (+{len(hits) - limit} more)" if len(hits) > limit else ""
    return ", ".join(f"{w} {s:.2f}" if s < 1.0 else w for w, s in top) + more
