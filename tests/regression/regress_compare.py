"""Meaning-level comparisons of the dissection regression tests against their baselines.

Float arrays get a per-element absolute tolerance (``check_arrays`` / ``array_problems``);
YAML baselines are compared by meaning (``check_yaml`` with a ``compare_*`` function): the
stored outcome must be one that this run's scores, within tolerance, can produce (near-tied
concepts swapping, cosines within tolerance of a threshold flipping, near-tied medoids) and
nothing else. ``all_problems`` runs every comparison of one ``Dissection`` against the committed
baselines in ``tests/regression/test_dissection_regression/`` (read with ``baseline``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pytest_regressions.common import perform_regression_check
from pytest_regressions.data_regression import RegressionYamlDumper
from regression import tolerances as tol
from regression.regress_dissect import (
    POPULATIONS,
    RULES,
    Dissection,
    Inputs,
    SummaryGroup,
    calibration_arrays,
    calibration_data,
    evidence_tolerances,
    high_low,
    layer_matrices,
    neuron_name,
    open_data,
    open_entry,
    summary_data,
    tagged_keys,
)

from and_toolkit.dissect.calibrate import CalibrationConfig, calibrate_points
from and_toolkit.dissect.extractive import ExtractiveSummary, lemma
from and_toolkit.dissect.open_concepts import open_concepts_many
from and_toolkit.dissect.similarity import SIMILARITY_NAMES

BASELINES = Path(__file__).with_name("test_dissection_regression")
"""pytest-regressions' data directory of ``test_dissection_regression.py``."""


# ----- tolerant YAML regression ------------------------------------------------------------------
Compare = Callable[[dict[str, Any], dict[str, Any]], list[str]]


def check_yaml(data_regression: Any, data: dict[str, Any], compare: Compare) -> None:
    """``data_regression.check`` with a comparison by meaning instead of by text.

    Same files and options as data_regression (basename from the test name, ``.obtained.yml``
    next to the copy, ``--force-regen`` / ``--regen-all``); ``compare(expected, obtained)``
    lists the problems (empty = pass).
    """
    __tracebackhide__ = True

    def dump(path: Path) -> None:
        path.write_bytes(yaml.dump_all([data], Dumper=RegressionYamlDumper,
                                       default_flow_style=False, allow_unicode=True, indent=2,
                                       encoding="utf-8"))

    def check(obtained: Path, expected: Path) -> None:
        problems = compare(yaml.safe_load(expected.read_text("utf-8")),
                           yaml.safe_load(obtained.read_text("utf-8")))
        if problems:
            raise AssertionError(f"{expected.name}: {len(problems)} difference(s) beyond "
                                 "tolerance / ties:\n  " + "\n  ".join(problems[:40]))

    perform_regression_check(
        datadir=data_regression.datadir, original_datadir=data_regression.original_datadir,
        request=data_regression.request, check_fn=check, dump_fn=dump, extension=".yml")


def array_problems(expected: dict[str, np.ndarray], obtained: dict[str, np.ndarray],
                   atol: dict[str, np.ndarray]) -> list[str]:
    """What ``ndarrays_regression`` checks with ``tolerances={k: {atol, rtol: 0}}``, as a list."""
    problems = [f"keys differ: {sorted(set(expected) ^ set(obtained))}"] \
        if set(expected) != set(obtained) else []
    for k in sorted(set(expected) & set(obtained)):
        e, o = np.asarray(expected[k]), np.asarray(obtained[k])
        if e.shape != o.shape:
            problems.append(f"{k}: shape {o.shape} != {e.shape}")
            continue
        bad = ~np.isclose(o, e, rtol=0.0, atol=atol[k], equal_nan=True)
        for idx in np.argwhere(bad)[:5]:
            i = tuple(idx)
            problems.append(f"{k}{list(i)}: {o[i]!r} vs {e[i]!r} (|diff| "
                            f"{abs(float(o[i]) - float(e[i])):.3g} > tol "
                            f"{float(np.broadcast_to(atol[k], o.shape)[i]):.3g})")
    return problems


def check_arrays(ndarrays_regression: Any, arrays: dict[str, np.ndarray],
                 atol: dict[str, np.ndarray]) -> None:
    """``ndarrays_regression.check`` with a per-element absolute tolerance (no rtol)."""
    __tracebackhide__ = True
    ndarrays_regression.check(arrays, tolerances={k: {"atol": np.asarray(atol[k]), "rtol": 0.0}
                                                  for k in arrays})


def baseline(name: str) -> Any:
    """A committed baseline file by name (YAML -> data, npz -> dict of arrays)."""
    path = BASELINES / name
    if path.suffix == ".npz":
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    return yaml.safe_load(path.read_text("utf-8"))


# ----- summaries ---------------------------------------------------------------------------------
def _point_lemmas(point: str) -> frozenset[str]:
    """Lemmas of a word point ("It is loud and high-pitched." / "Burst, noise and seconds.")."""
    body = point.removeprefix("It is ").rstrip(".").lower()
    return frozenset(lemma(w) for part in body.split(", ") for w in part.split(" and "))


def _fixed_points(d: dict[str, Any], free: frozenset[str]) -> list[tuple[str, int, str, str]]:
    """(kind, support, point, text line) of the points that no near-tied medoid can change."""
    lines = d["text"].split("\n") if d["points"] else []
    return [(kind, sup, point, line) for kind, sup, point, line
            in zip(d["kinds"], d["support"], d["points"], lines, strict=True)
            if kind == "sentence" or not _point_lemmas(point) & free]


def compare_summaries(expected: dict[str, Any], obtained: dict[str, Any], keys: list[str],
                      groups: list[list[SummaryGroup]], max_points: int = 8) -> list[str]:
    """Equal, except where a near-tied medoid decides.

    A sentence point may be any near-tied medoid of its group; a word point naming a word that
    only some of those medoids state may be present or absent (the library leaves out words a
    sentence point states). Everything else (other points, supports, order, kinds) is exact.
    """
    problems = [] if set(expected) == set(obtained) else \
        [f"neurons differ: {sorted(set(expected) ^ set(obtained))}"]
    for key, grp in zip(keys, groups, strict=True):
        exp, obt = expected.get(key), obtained.get(key)
        if exp is None or obt is None or exp == obt:
            continue
        why = "; ".join(sorted({g.unstable for g in grp if g.unstable}))
        free = frozenset().union(*(g.words for g in grp))

        if why or (free and max(len(exp["points"]), len(obt["points"])) >= max_points):
            problems.append(f"{key}: {obt['points']} != {exp['points']} and this run cannot say "
                            f"which outcomes are reachable ({why or 'points truncated'})")
            continue
        fe, fo = _fixed_points(exp, free), _fixed_points(obt, free)
        if [f[:2] for f in fe] != [f[:2] for f in fo]:
            problems.append(f"{key}: points {obt['points']} (support {obt['support']}) != "
                            f"{exp['points']} (support {exp['support']})")
            continue
        for (_, _, pe, le), (_, _, po, lo) in zip(fe, fo, strict=True):
            tied = [g for g in grp if po in g.medoids]
            if pe != po and not (tied and pe in tied[0].medoids):
                problems.append(f"{key}: point {po!r} != {pe!r}, not near-tied medoids")
            elif pe == po and le != lo:
                problems.append(f"{key}: line {lo!r} != {le!r}")
    return problems


# ----- Module B ----------------------------------------------------------------------------------
def calibration_outcomes(high: list[str], low: list[str], cos: np.ndarray, cfg: CalibrationConfig
                         ) -> list[tuple[list[str], list[str], list[str]]]:
    """Every (kept, dropped, dropped_match) reachable with cosines within tolerance of ``cos``.

    Only two kinds of comparison decide the outcome: cos > t, and (paper rule) which low point
    is the most similar. Entries within cosine_error of t, and entries within 2 cosine_error of
    their row's maximum, are "sensitive"; every corner of the box cos +- cosine_error over them
    is a cosine matrix another machine may produce, and together the corners reach every
    outcome. Each is evaluated by the library itself: ``calibrate_points`` gets the corner as
    the high "embeddings" and the identity as the low ones (high @ I.T = the corner).
    """
    if not (high and low):
        return []
    dc, t = tol.cosine_error(), cfg.t
    row_max = cos.max(axis=1, keepdims=True)
    sensitive = np.argwhere((np.abs(cos - t) <= dc) | ((cos >= row_max - 2 * dc)
                                                       & (cos < row_max)))
    assert len(sensitive) <= 12, f"{len(sensitive)} near-tied cosines: too many to enumerate"
    out = []
    for signs in itertools.product((-1.0, 1.0), repeat=len(sensitive)):
        corner = cos.copy()
        for (i, j), s in zip(sensitive, signs, strict=True):
            corner[i, j] += s * dc * (1 + 1e-9)
        c = calibrate_points(high, low, corner, np.eye(len(low)), cfg)
        outcome = (list(c.kept), list(c.dropped), list(c.dropped_match))
        if outcome not in out:
            out.append(outcome)
    return out


def compare_calibration(expected: dict[str, Any], obtained: dict[str, Any], keys: list[str],
                        high: list[list[str]], low: list[list[str]], cos: list[np.ndarray],
                        cfg: CalibrationConfig) -> list[str]:
    """Same decisions, or both reachable from this run's cosines within tolerance (a
    near-threshold flip); dropped cosines within tolerance."""
    problems = [] if set(expected) == set(obtained) else \
        [f"neurons differ: {sorted(set(expected) ^ set(obtained))}"]
    dc = tol.cosine_error()
    for key, h, lo, c in zip(keys, high, low, cos, strict=True):
        exp, obt = expected.get(key), obtained.get(key)
        if exp is None or obt is None:
            continue
        if exp["threshold"] != obt["threshold"]:
            problems.append(f"{key}: threshold {obt['threshold']} != {exp['threshold']}")
        decision = [exp[f] for f in ("kept", "dropped", "dropped_match")]
        got = [obt[f] for f in ("kept", "dropped", "dropped_match")]
        if decision != got:
            reachable = [list(o) for o in calibration_outcomes(h, lo, c, cfg)]
            if decision not in reachable or got not in reachable:
                problems.append(f"{key}: kept {obt['kept']} / dropped {obt['dropped']} "
                                f"(match {obt['dropped_match']}) != kept {exp['kept']} / "
                                f"dropped {exp['dropped']} (match {exp['dropped_match']}), and "
                                "no cosine is within tolerance of the threshold to explain it")
            # a near-threshold alternative: its cosines are entries of this run's matrix
            elif not all(np.any(np.abs(c - x) <= dc) for x in exp["dropped_cos"]):
                problems.append(f"{key}: dropped cosines {exp['dropped_cos']} not in this run")
        elif len(exp["dropped_cos"]) != len(obt["dropped_cos"]) or not np.allclose(
                obt["dropped_cos"], exp["dropped_cos"], rtol=0.0, atol=dc):
            problems.append(f"{key}: dropped_cos {obt['dropped_cos']} != {exp['dropped_cos']} "
                            f"(+- {dc:.2g})")
    return problems


# ----- Module C ----------------------------------------------------------------------------------
def compare_open(expected: dict[str, Any], obtained: dict[str, Any], tagger: Any
                 ) -> list[str]:
    """Exact (tagging is discrete); a neuron whose input points differ (a near-threshold
    calibration flip, checked by test_calibration) is recomputed on the stored points."""
    problems = [] if set(expected) == set(obtained) else \
        [f"neurons differ: {sorted(set(expected) ^ set(obtained))}"]
    for key in sorted(set(expected) & set(obtained)):
        exp, obt = expected[key], obtained[key]
        if exp["points"] != obt["points"]:
            obt = open_entry(exp["points"], open_concepts_many([exp["points"]], tagger)[0])
        if exp != obt:
            problems.append(f"{key}: {obt} != {exp}")
    return problems


# ----- Module A ----------------------------------------------------------------------------------
def compare_top(expected: dict[str, Any], obtained: dict[str, Any], inp: Inputs,
                scores: dict[str, np.ndarray], tols: dict[str, np.ndarray],
                concepts: list[str]) -> list[str]:
    """The stored top-5 must be a ranking this run's scores can produce within tolerance.

    Near-tied concepts (score intervals +- tol overlap) may swap, also across the top-5
    boundary; anything else (a different top-1, a concept entering from far below) fails.
    """
    problems = [] if set(expected) == set(obtained) else \
        [f"neurons differ: {sorted(set(expected) ^ set(obtained))}"]
    index = {c: i for i, c in enumerate(concepts)}
    for layer, alias, units, _ in layer_matrices(inp):
        for n, unit in enumerate(units):
            key = f"{layer}/{unit}"
            for sim in SIMILARITY_NAMES:
                exp = (expected.get(key) or {}).get(sim)
                obt = (obtained.get(key) or {}).get(sim)
                if exp == obt:
                    continue
                s, t = scores[f"{alias}-{sim}"][n], tols[f"{alias}-{sim}"][n]
                if exp is None or any(c not in index for c in exp) or not tol.feasible_order(
                        [index[c] for c in exp], s, t):
                    got = [f"{c} {float(s[index[c]]):.7g}" for c in obt or [] if c in index]
                    problems.append(f"{key} {sim}: top {got} cannot be {exp} within tolerance")
    return problems


# ----- every comparison at once ------------------------------------------------------------------
def all_problems(inp: Inputs, sums: list[ExtractiveSummary], concepts: list[str], d: Dissection,
                 tagger: Any, name: str = "") -> dict[str, list[str]]:
    """Every comparison of ``d`` against the committed baselines (what the tests check)."""
    keys, high, low = high_low(inp, sums)
    names = [neuron_name(k) for k in keys]
    out: dict[str, list[str]] = {}
    out["summaries"] = compare_summaries(baseline(
        "test_extractive_summaries_embedding_tagged.yml"), summary_data(inp, d.tagged),
        tagged_keys(inp), d.tagged_groups)
    for rule, compat in RULES.items():
        cfg = CalibrationConfig(compat=compat)  # type: ignore[arg-type]
        out[f"calibration {rule}"] = compare_calibration(
            baseline(f"test_calibration_{rule}_.yml"),
            calibration_data(keys, d.calibrated[rule]), names, high, low, d.cal_cos[rule], cfg)
        out[f"calibration {rule} cosines"] = array_problems(
            baseline(f"test_calibration_{rule}_.npz"),
            *calibration_arrays(keys, d.cal_cos[rule]))
    points = [list(c.kept) for c in d.calibrated["paper"]]
    out["open concepts"] = compare_open(baseline("test_open_concepts.yml"), open_data(
        keys, points, open_concepts_many(points, tagger)), tagger)
    out["evidence"] = array_problems(baseline("test_db_evidence.npz"), d.evidence,
                                     evidence_tolerances(d.evidence))
    for population in POPULATIONS:
        s, t = d.scores[population], d.score_tol[population]
        out[f"top-5 {population}"] = compare_top(
            baseline(f"test_closed_concepts_{population}_.yml"), d.top[population], inp, s, t,
            concepts)
        out[f"scores {population}"] = array_problems(
            baseline(f"test_closed_concepts_{population}_.npz"), s, t)
    return {k: v for k, v in out.items() if v}
