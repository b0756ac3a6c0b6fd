"""Module B: summary calibration (reference-spec §5, §15 items 1-2).

A point p of the high summary S_h is dropped if its sentence embedding has cosine > t
(strict) with some point of the low summary S_l; the kept points are S_h^c.

Rules:

- "paper" (default, ``compat="none"``, t = 0.7 as in the paper): S_h^c = [p in S_h :
  max_q cos(p, q) <= t]. A dropped point records the most similar low point (first on ties)
  and that cosine. S_l is never modified; order and duplicates of S_h are kept.
- "reference" (``compat="reference"``, t = 0.5, the value the authors' code actually used):
  the authors' ``remove_mutual_information`` loop, reproduced step by step. It iterates
  ``zip(S_h, E_h)`` and, inside, ``zip(S_l, E_l)`` over the very lists it mutates, with the
  embedding arrays E computed before any removal; on cos > t it calls ``S_h.remove(a)`` and
  ``S_l.remove(b)``. Consequences: matched low points are deleted too; after a removal the
  next element is skipped; texts and embeddings go out of step (the cosine compares the text
  now at position i with the *original* i-th embedding); later high points meet a shrunken
  S_l; the tail of S_h is never examined; ``remove`` deletes the first *equal* string. A
  dropped point records the low text and the cosine that triggered its removal.

Adjective-list points ("It is loud, high-pitched and brief.": the acoustic-descriptor sentences
appended to captions, and the extractive summariser's shared-adjective points) are never compared
as sentences: a sentence encoder scores contrasting ones alike (MiniLM: "It is loud." vs "It is
quiet." 0.78 > t), so the point of a neuron whose top clips are loud would be dropped because its
bottom clips are quiet. They are calibrated word by word instead (:func:`adjective_list`): a word
of such an S_h point is dropped iff the same word occurs in some point of S_l (word identity, so
an antonym never matches); the dropped word is recorded as "It is <word>." with the first S_l
point holding it and cosine 1.0 (a word with itself); the point's other words stay in S_h^c as
"It is <rest>.", in place. The other points follow the configured rule against S_l's other
points. Both rules treat adjective-list points this way.

Embeddings: every distinct sentence over all neurons is encoded once (one ``encode`` call);
per neuron a small [n_h, n_l] matrix product gives all cosines (rows are unit-norm).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from and_toolkit.interfaces import TextEncoder

PAPER_THRESHOLD = 0.7
REFERENCE_THRESHOLD = 0.5

_ADJECTIVE_LIST = re.compile(r"^\s*it is ([a-z0-9-]+(?:(?:, | and )[a-z0-9-]+)*)\.?\s*$",
                             re.IGNORECASE)
_TOKEN = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def adjective_list(point: str) -> tuple[str, ...] | None:
    """The words of an adjective-list point "It is A, B and C." (lower case), else None.

    Such points are what the descriptor captioner appends and what the extractive summariser
    writes for shared adjectives; Module B compares their words, not their sentences.
    """
    m = _ADJECTIVE_LIST.match(point)
    if m is None:
        return None
    return tuple(w.strip().lower() for w in re.split(r", | and ", m.group(1)))


def _join(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _calibrate_words(words: tuple[str, ...], low: list[str]) -> tuple[
        str | None, list[tuple[str, str]]]:
    """(kept point or None, [(dropped word, S_l point holding it)]) of one adjective list."""
    tokens = [set(_TOKEN.findall(q.lower())) for q in low]
    kept, dropped = [], []
    for w in words:
        hit = next((q for q, toks in zip(low, tokens, strict=True) if w in toks), None)
        if hit is None:
            kept.append(w)
        else:
            dropped.append((w, hit))
    return (f"It is {_join(kept)}." if kept else None), dropped


class CalibrationConfig(BaseModel):
    """Settings of Module B.

    Attributes:
        compat: "none" = the paper's rule; "reference" = the authors' loop (see module doc).
        threshold: cosine threshold t (drop iff cos > t); None = 0.7 for the paper rule,
            0.5 for the reference rule.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    compat: Literal["none", "reference"] = "none"
    threshold: float | None = Field(default=None, ge=-1.0, le=1.0)

    @property
    def rule(self) -> Literal["paper", "reference"]:
        """The rule name recorded in outputs."""
        return "reference" if self.compat == "reference" else "paper"

    @property
    def t(self) -> float:
        """The effective threshold."""
        if self.threshold is not None:
            return self.threshold
        return REFERENCE_THRESHOLD if self.compat == "reference" else PAPER_THRESHOLD


class Calibration(BaseModel):
    """Module B output for one neuron (the fields of the CalibratedSummary record).

    Attributes:
        kept: points of S_h kept (S_h^c), in order.
        dropped: points of S_h dropped, in drop order (sentence points first, then the
            dropped words of adjective lists as "It is <word>.").
        dropped_match: for each dropped point, the S_l point that caused the drop.
        dropped_cos: for each dropped point, the cosine that caused it, in [-1, 1] (1.0 for a
            word dropped by identity).
        threshold: t used (drop iff cos > t).
        rule: "paper" or "reference".
        encoder: sentence-encoder id.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kept: tuple[str, ...]
    dropped: tuple[str, ...]
    dropped_match: tuple[str, ...]
    dropped_cos: tuple[float, ...]
    threshold: float
    rule: Literal["paper", "reference"]
    encoder: str

    def record_fields(self) -> dict[str, Any]:
        """The fields as a dict of lists, ready for ``CalibratedSummary.frame`` rows."""
        return {"kept": list(self.kept), "dropped": list(self.dropped),
                "dropped_match": list(self.dropped_match),
                "dropped_cos": [float(c) for c in self.dropped_cos],
                "threshold": self.threshold, "rule": self.rule, "encoder": self.encoder}


def _paper(high: list[str], low: list[str], cos: np.ndarray, t: float):
    kept, dropped, match, dcos = [], [], [], []
    for i, p in enumerate(high):
        if low and cos.shape[1] and float(cos[i].max()) > t:
            j = int(np.argmax(cos[i]))
            dropped.append(p)
            match.append(low[j])
            dcos.append(float(cos[i, j]))
        else:
            kept.append(p)
    return kept, dropped, match, dcos


def _reference(high: list[str], low: list[str], cos: np.ndarray, t: float):
    """The authors' loop; ``cos[k, m]`` = cosine of the original k-th high / m-th low embedding."""
    h, l_ = list(high), list(low)
    dropped, match, dcos = [], [], []
    for a, k in zip(h, range(len(high)), strict=False):  # as zip(S_h, E_h): h shrinks
        for b, m in zip(l_, range(len(low)), strict=False):
            if float(cos[k, m]) > t:
                try:
                    h.remove(a)
                    dropped.append(a)
                    match.append(b)
                    dcos.append(float(cos[k, m]))
                except ValueError:
                    pass
                try:
                    l_.remove(b)
                except ValueError:
                    pass
    return h, dropped, match, dcos


def calibrate_points(
    high: Sequence[str], low: Sequence[str], high_emb: np.ndarray, low_emb: np.ndarray,
    cfg: CalibrationConfig | None = None, encoder_id: str = "",
) -> Calibration:
    """Calibrate one neuron's high points against its low points.

    Args:
        high: S_h points, n_h strings.
        low: S_l points, n_l strings.
        high_emb: float [n_h, d] unit-norm embeddings of ``high`` (row i <-> high[i]).
        low_emb: float [n_l, d] unit-norm embeddings of ``low``.
        cfg: settings (default: paper rule, t = 0.7).
        encoder_id: id recorded in the output.

    Returns:
        The neuron's :class:`Calibration`.

    Raises:
        ValueError: if embedding rows do not match the point counts.
    """
    cfg = cfg or CalibrationConfig()
    high, low = list(high), list(low)
    he = np.asarray(high_emb, dtype=np.float64)
    le = np.asarray(low_emb, dtype=np.float64)
    if he.ndim != 2 or le.ndim != 2:
        raise ValueError(f"high_emb/low_emb must be 2-D [n, d], got shapes {he.shape}/{le.shape}")
    if he.shape[0] != len(high) or le.shape[0] != len(low):
        raise ValueError(f"high_emb/low_emb have {he.shape[0]}/{le.shape[0]} rows for "
                         f"{len(high)}/{len(low)} points")
    if len(high) and len(low) and he.shape[1] != le.shape[1]:
        raise ValueError(f"high_emb width {he.shape[1]} != low_emb width {le.shape[1]}")
    lists = [adjective_list(p) for p in high]
    hi = [i for i, w in enumerate(lists) if w is None]
    li = [j for j, q in enumerate(low) if adjective_list(q) is None]
    cos = (he[hi] @ le[li].T if hi and li else np.zeros((len(hi), len(li))))
    fn = _reference if cfg.compat == "reference" else _paper
    s_kept, dropped, match, dcos = fn([high[i] for i in hi], [low[j] for j in li], cos, cfg.t)
    kept: list[str] = []
    remaining = list(s_kept)
    for p, words in zip(high, lists, strict=True):
        if words is None:
            if remaining and remaining[0] == p:
                kept.append(remaining.pop(0))
            continue
        point, lost = _calibrate_words(words, low)
        if point is not None:
            kept.append(point)
        for w, q in lost:
            dropped.append(f"It is {w}.")
            match.append(q)
            dcos.append(1.0)
    return Calibration(kept=tuple(kept), dropped=tuple(dropped), dropped_match=tuple(match),
                       dropped_cos=tuple(dcos), threshold=cfg.t, rule=cfg.rule,
                       encoder=encoder_id)


def calibrate_many(
    high_points: Sequence[Sequence[str]],
    low_points: Sequence[Sequence[str]],
    encoder: TextEncoder,
    cfg: CalibrationConfig | None = None,
) -> list[Calibration]:
    """Module B for many neurons, embedding each distinct sentence once.

    Args:
        high_points: per neuron, its S_h points.
        low_points: per neuron, its S_l points (same neuron order).
        encoder: sentence encoder; called once with all distinct sentences (it batches).
        cfg: settings (default: paper rule, t = 0.7).

    Returns:
        One :class:`Calibration` per neuron, in input order.

    Raises:
        ValueError: if the two lists differ in length, a neuron's points are a bare string,
            or the encoder returns the wrong number of rows.
    """
    cfg = cfg or CalibrationConfig()
    if len(high_points) != len(low_points):
        raise ValueError(f"high_points has {len(high_points)} neurons, low_points "
                         f"{len(low_points)}")
    for name, lists in (("high_points", high_points), ("low_points", low_points)):
        for n, pts in enumerate(lists):
            if isinstance(pts, str):
                raise ValueError(f"{name}[{n}] must be a list of sentences, not a string")
    distinct = list(dict.fromkeys(p for lists in (high_points, low_points)
                                  for pts in lists for p in pts))
    emb = np.asarray(encoder.encode(distinct), dtype=np.float32)
    if emb.shape[0] != len(distinct):
        raise ValueError(f"encoder {encoder.id!r} returned {emb.shape[0]} rows for "
                         f"{len(distinct)} sentences")
    row = {s: i for i, s in enumerate(distinct)}
    out = []
    for high, low in zip(high_points, low_points, strict=True):
        he = emb[[row[p] for p in high]] if high else np.zeros((0, 1), np.float32)
        le = emb[[row[p] for p in low]] if low else np.zeros((0, 1), np.float32)
        out.append(calibrate_points(high, low, he, le, cfg, encoder.id))
    return out
