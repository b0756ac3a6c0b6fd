"""How far two runs may differ and still count as "the same dissection".

The question a diff answers is "did the explanation change?", so by default the diff compares
*decisions* exactly (clip sets, concept ranks, the top-1 concept, summary points, open concepts)
and *numbers* (similarity scores, extreme activations, experiment results) with a tolerance
derived from float32 accumulation, never with exact float equality. Decisions that rest on
numbers within tolerance of each other (near-ties) are not changes.

Derivation of the numeric defaults. A score accumulated in float32 over N terms t_i (a
similarity over N probe clips, an activation over a fan-in of N inputs) has a rounding error
``|fl(S) - S| <= gamma_{N-1} * sum_i |t_i|`` with ``gamma_n = n u / (1 - n u) ~ n u`` and
``u = eps32 / 2`` (recursive summation, Higham 2002, eq. 4.4); blocked / pairwise / SIMD orders
only lower the bound. Two machines (other SIMD kernel, BLAS blocking or thread count) may each
be off by that much in opposite directions, so::

    |S_A - S_B| <= 2 (N - 1) u * sum_i |t_i| <= N * eps32 * sum_i |t_i|        (c = 1)

* Scores normalised by construction (cosines of unit vectors: ``sum |a_i b_i| <= |a||b| = 1``)
  get an absolute bound ``N * eps32``; sums of non-negative terms (probabilities, evidence
  averages: ``sum |t_i| = |S|``) get a relative bound ``N * eps32``; their logarithms (WPMI)
  an absolute one, since ``|d log S| = |dS| / S``. A tolerance ``atol + rtol * max(|a|, |b|)``
  with ``atol = rtol = N * eps32`` covers all three.
* Scores: N = 2048 = 2^11 >= 2000 clips of ESC-50 (the largest probing set of the paper), so
  ``score_atol = score_rtol = 2^11 * 2^-23 = 2^-12 = 2.44e-4``.
* Extreme activations: the largest fan-in of the paper's targets is AST's fc2 (3072 <= 2^12),
  so ``activation_atol = activation_rtol = 2^-11 = 4.88e-4`` (a first-order, one-layer bound).
* Experiment results (accuracies, fractions, means over at most a few thousand clips or
  neurons, computed from float32 inputs): ``result_atol = result_rtol = 2^-12``.

Nothing here is fitted to one machine's differences: the bounds follow from N and eps32 only.
For a larger probing set or wider layers use :meth:`Tolerance.from_accumulation`.

Near-ties. Each number may move by its own tolerance tau(x) = atol + rtol * |x|, so two
items whose order flipped between runs A and B (c above d in A, d above c in B) form a near-tie
when ``gap_A + gap_B <= tau(c) + tau(d)`` (with ``gap_A = s_A(c) - s_A(d) >= 0`` and ``gap_B =
s_B(d) - s_B(c) >= 0``): that much movement can swap them. When an item fell outside the
stored top ranks its score there is unknown; its gap is bounded below by the last stored score.

Presets: ``strict`` (every tolerance 0: exact equality, no near-ties), ``default`` (the
derivation above), ``meaning`` (only sets, ranks and top-1: score and result-value changes are
not reported; near-ties use the default tolerances).
"""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from and_toolkit.errors import ConfigError

EPS32 = float(np.finfo(np.float32).eps)
"""float32 machine epsilon, 2^-23 = 1.19e-7."""
SCORE_TERMS = 2048
"""Terms accumulated by a similarity score: 2^11 >= the 2000 clips of ESC-50."""
FAN_IN_TERMS = 4096
"""Terms accumulated by one activation: 2^12 >= AST's largest fan-in (3072)."""
RESULT_TERMS = 2048
"""Terms accumulated by an experiment result value."""


def accumulation_tolerance(n_terms: int, c: float = 1.0) -> float:
    """``c * n_terms * eps32``: the bound of two float32 accumulations of ``n_terms`` terms,
    relative to ``sum |t_i|`` (see the module docstring)."""
    return float(c * n_terms * EPS32)


class Tolerance(BaseModel):
    """Tolerances of a diff. Distances are in the units of the compared quantity.

    A number x of run A and y of run B are equal when ``|x - y| <= atol + rtol * max(|x|,
    |y|)``; both null, or both the same non-finite value, are equal.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field("default", description="Preset or file this tolerance came from.")
    jaccard: float = Field(
        1.0, ge=0.0, le=1.0,
        description="A top/bottom-K clip set changed when its Jaccard index (after near-tie "
        "swaps at the K-th value count as kept) is below this; 1.0 = any real change.")
    rank_window: int = Field(5, ge=1, description="Closed concepts compared: ranks 0..w-1.")
    scores: bool = Field(True, description="Report closed-concept score changes.")
    score_atol: float = Field(accumulation_tolerance(SCORE_TERMS), ge=0.0,
                              description="Absolute tolerance of a concept score.")
    score_rtol: float = Field(accumulation_tolerance(SCORE_TERMS), ge=0.0,
                              description="Relative tolerance of a concept score.")
    activation_atol: float = Field(accumulation_tolerance(FAN_IN_TERMS), ge=0.0,
                                   description="Absolute tolerance of an extreme activation.")
    activation_rtol: float = Field(accumulation_tolerance(FAN_IN_TERMS), ge=0.0,
                                   description="Relative tolerance of an extreme activation.")
    results: bool = Field(True, description="Report experiment result-value changes.")
    result_atol: float = Field(accumulation_tolerance(RESULT_TERMS), ge=0.0,
                               description="Absolute tolerance of a ResultRow value.")
    result_rtol: float = Field(accumulation_tolerance(RESULT_TERMS), ge=0.0,
                               description="Relative tolerance of a ResultRow value.")

    @classmethod
    def from_accumulation(cls, *, clips: int = SCORE_TERMS, fan_in: int = FAN_IN_TERMS,
                          result_terms: int = RESULT_TERMS, c: float = 1.0,
                          **overrides: Any) -> Tolerance:
        """Defaults for another probing-set size / fan-in: every tolerance ``c * N * eps32``."""
        s, a, r = (accumulation_tolerance(n, c) for n in (clips, fan_in, result_terms))
        fields: dict[str, Any] = {
            "name": f"accumulation(clips={clips}, fan_in={fan_in})",
            "score_atol": s, "score_rtol": s, "activation_atol": a, "activation_rtol": a,
            "result_atol": r, "result_rtol": r}
        return cls(**{**fields, **overrides})

    def score_tol(self, x: float) -> float:
        """tau of one score x."""
        return self.score_atol + self.score_rtol * abs(x)

    def activation_tol(self, x: float) -> float:
        """tau of one activation x."""
        return self.activation_atol + self.activation_rtol * abs(x)


PRESETS: dict[str, Tolerance] = {
    "strict": Tolerance(name="strict", score_atol=0.0, score_rtol=0.0, activation_atol=0.0,
                        activation_rtol=0.0, result_atol=0.0, result_rtol=0.0),
    "default": Tolerance(),
    "meaning": Tolerance(name="meaning", scores=False, results=False),
}
"""Named tolerances: ``strict`` = exact, ``default`` = derived, ``meaning`` = decisions only."""


def close(x: float | None, y: float | None, atol: float, rtol: float) -> bool:
    """Whether two nullable floats are equal within ``atol + rtol * max(|x|, |y|)``."""
    if x is None or y is None:
        return x is None and y is None
    if not (math.isfinite(x) and math.isfinite(y)):
        return x == y or (math.isnan(x) and math.isnan(y))
    return abs(x - y) <= atol + rtol * max(abs(x), abs(y))


def load_tolerance(spec: str | Path | Tolerance | None) -> Tolerance:
    """A tolerance from a preset name, a TOML / JSON file, or an instance (None = default).

    A file holds the fields of :class:`Tolerance` at its top level or in a ``[tolerance]``
    table, optionally with ``preset = "<name>"`` as the base its other fields override.

    Raises:
        ConfigError: unknown preset, unreadable file or invalid fields (one-line message).
    """
    if spec is None:
        return PRESETS["default"]
    if isinstance(spec, Tolerance):
        return spec
    text = str(spec)
    if text in PRESETS:
        return PRESETS[text]
    path = Path(text)
    if not path.is_file():
        raise ConfigError(f"tolerance {text!r} is neither a preset ({', '.join(PRESETS)}) "
                          "nor a file")
    try:
        raw = (json.loads(path.read_text("utf-8")) if path.suffix.lower() == ".json"
               else tomllib.loads(path.read_text("utf-8")))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable tolerance file: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a tolerance file holds a table of fields")
    if isinstance(raw.get("tolerance"), dict):
        raw = raw["tolerance"]
    base_name = raw.pop("preset", "default")
    if base_name not in PRESETS:
        raise ConfigError(f"{path}: unknown preset {base_name!r} (one of {', '.join(PRESETS)})")
    fields = {**PRESETS[base_name].model_dump(), "name": str(path), **raw}
    try:
        return Tolerance(**fields)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path}: invalid tolerance: {problems}") from None
