"""Fixtures of the report tests: hand-made ResultRow frames for every section and a report
context carrying XSS text. Values are deterministic (one seeded generator)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl
import pytest

from and_toolkit.records.models import ResultRow
from and_toolkit.report.context import ExtraTable, Finding, Provenance, ReportContext, SetupItem

XSS_SCRIPT = "<script>alert(1)</script>"
XSS_IMG = "<img src=x onerror=alert(1)>"


def row(experiment: str, key: str, *, model: str = "", group: str = "", series: str = "",
        x: float | None = None, metric: str = "value", value: float | None = None,
        paper: float | None = None, note: str = "") -> dict[str, Any]:
    """One ResultRow as a dict."""
    return {"experiment": experiment, "key": key, "model": model, "group": group,
            "series": series, "x": x, "metric": metric, "value": value, "paper_value": paper,
            "note": note}


def _table7() -> list[dict[str, Any]]:
    paper = {("TAB", "cos"): (2, 16, .23), ("TAB", "cos_cubed"): (92, 98, .97),
             ("TAB", "rank_reorder"): (84, 92, .91), ("TAB", "wpmi"): (96, 100, .98),
             ("TAB", "soft_wpmi"): (96, 98, .98), ("DB", "cos"): (80, 82, .85),
             ("DB", "cos_cubed"): (100, 100, 1.0), ("DB", "rank_reorder"): (86, 100, .93),
             ("DB", "wpmi"): (88, 100, .95), ("DB", "soft_wpmi"): (2, 10, .24)}
    rows = []
    for i, ((method, sim), cell) in enumerate(paper.items()):
        for metric, p, delta in zip(("top1", "top5", "cos"), cell, (-4, 2, -0.031), strict=True):
            rows.append(row("table7", f"AST/{method}/{sim}/{metric}", model="AST", group=method,
                            series=sim, metric=metric, value=p + delta * (i % 3 - 1), paper=p))
    return rows


def _table2() -> list[dict[str, Any]]:
    paper = {("AST", "ICL"): (72, 60, .83), ("AST", "TAB"): (96, 100, .98),
             ("AST", "DB"): (100, 100, 1.0), ("BEATs-finetuned", "ICL"): (52, 56, .68),
             ("BEATs-finetuned", "TAB"): (74, 92, .82), ("BEATs-finetuned", "DB"): (76, 100, .83)}
    rows = []
    for (model, method), cell in paper.items():
        for metric, p in zip(("top1", "top5", "cos"), cell, strict=True):
            ours = None if method == "ICL" and model != "AST" else p - (2 if metric != "cos" else .02)
            note = "not run: no LLM backend for BEATs" if ours is None else ""
            rows.append(row("table2", f"{model}/{method}/{metric}", model=model, group=method,
                            metric=metric, value=ours, paper=p, note=note))
    return rows


def _table4() -> list[dict[str, Any]]:
    paper = {"Random": (3000, -13.52, -13.48, 0.04), "TAB": (3317, -4.19, -4.03, 0.16),
             "DB": (3317, -7.18, -7.41, -0.23), "OCP": (2808, -10.73, -6.83, 3.90)}
    ours = {"Random": (3000, -12.9, -12.85, 0.05), "TAB": (3317.76, -4.4, -4.1, 0.3),
            "DB": (3317.76, -6.9, -7.2, -0.3), "OCP": (2210.18, -9.4068, -5.21, 4.1968)}
    return [row("table4", f"AST/{s}/{m}", model="AST", group=s, metric=m, value=o, paper=p)
            for s in paper for m, o, p in zip(("avg_pruned", "delta_a", "delta_r", "r_minus_a"),
                                               ours[s], paper[s], strict=True)]


def _fig10() -> list[dict[str, Any]]:
    classes = ["water_drops", "toilet_flush", "pouring_water", "vacuum_cleaner",
               "drinking_sipping", "dog", "rain", "crow", "siren", "clapping", "train", "cat"]
    paper = {"toilet_flush": (-0.1, -15.6), "pouring_water": (-0.3, -13.3),
             "vacuum_cleaner": (-1.5, -14.4), "drinking_sipping": (-0.3, -10.6),
             "water_drops": (-0.8, -10.8)}
    rows = []
    for i, c in enumerate(classes):
        before = -0.2 - 0.15 * i
        after = paper[c][1] + 0.7 if c in paper else before - 4 - 0.4 * i
        for s, v in (("before", before), ("after", after)):
            p = paper[c][0 if s == "before" else 1] if c in paper else None
            rows.append(row("fig10", f"AST/{c}/{s}", model="AST", group=c, series=s, x=i,
                            metric="own_logit", value=v, paper=p))
    rows.append(row("fig10", "AST/water_drops/n_pruned", model="AST", group="water_drops",
                    series="OCP", metric="n_pruned", value=293, paper=2651))
    return rows


def _bars(experiment: str, models: list[str], n: int) -> list[dict[str, Any]]:
    words = ["high-pitched", "loud", "high-quality", "intense", "repetitive", "muffled",
             "distorted", "natural", "low-quality", "noisy", "sharp", "clear", XSS_IMG]
    paper = [15800, 15500, 8600, 7400, 5300, 4400, 4400, 3700, 2500, 2400]
    rows = []
    for m, model in enumerate(models):
        for r, w in enumerate(words[:n] if m else words[: n - 1] + [XSS_IMG]):
            rows.append(row(experiment, f"{model}/{r:02d}", model=model, series=w, x=r + 1,
                            metric="neurons", value=16000 / (r + 1.3) - 900 * m,
                            paper=paper[r] if model == "AST" and r < len(paper) and w != XSS_IMG
                            else None))
    return rows


def _fig4(experiment: str, curves: dict[str, str]) -> list[dict[str, Any]]:
    """Fig 4 curves; the ``random`` curve has one row per seed (three seeds: error bars)."""
    xs = (0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0)
    rows = []
    for k, (name, spec) in enumerate(curves.items()):
        for x, p in zip(xs, (float(v) for v in spec.split("/")), strict=True):
            for seed in (20, 202, 2024) if name == "random" else (0,):
                jitter = 0.004 * (seed % 3 - 1) * (x > 0)
                rows.append(row(experiment, f"{name}/{x:04.1f}/seed={seed}", model="AST",
                                series=name, x=x, metric="accuracy",
                                value=round(p - 0.01 * k * x / 4 + jitter, 4), paper=p))
    return rows


def _blocks(experiment: str, papers: Mapping[str, Sequence[float]], metric: str,
            group: str = "", series: str = "") -> list[dict[str, Any]]:
    return [row(experiment, f"{group}/{series}/{m}/{b:02d}", model=m, group=group, series=series,
                x=b + 1, metric=metric, value=round(v * (1.04 - 0.01 * b), 3), paper=v)
            for m, vals in papers.items() for b, v in enumerate(vals)]


FIG5 = {"AST": (3.44, 3.76, 3.50, 3.46, 3.55, 3.52, 3.44, 3.04, 3.20, 3.30, 3.06, 2.95),
        "BEATs-finetuned": (3.25, 3.24, 3.26, 3.22, 3.19, 3.15, 3.21, 3.17, 3.11, 3.01, 2.99, 3.08),
        "BEATs-frozen": (2.63, 2.66, 2.70, 2.70, 2.67, 2.64, 2.62, 2.64, 2.73, 2.65, 2.68, 2.69)}
FIG6 = {"AST": (42, 53, 56, 55, 53, 51, 34, 37, 13, 10, 13, 13),
        "BEATs-finetuned": (72, 69, 71, 68, 64, 63, 60, 51, 46, 42, 38, 38),
        "BEATs-frozen": (70, 71, 70, 68, 67, 65, 67, 66, 67, 68, 67, 68)}


def _fig8() -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    rows = []
    for group, metric, shift in (("loud", "amplitude", 0.03), ("high-pitched", "mdf_hz", 400.0)):
        for series, n, loc in (("with", 300, 1.0), ("without", 400, 0.0)):
            scale = 0.02 if metric == "amplitude" else 600.0
            base = 0.05 if metric == "amplitude" else 1500.0
            vals = np.abs(rng.normal(base + loc * shift, scale, n))
            rows += [row("fig8", f"{group}/{series}/{i:04d}", model="AST", group=group,
                         series=series, x=float(i), metric=metric, value=float(v))
                     for i, v in enumerate(vals)]
            rows.append(row("fig8", f"{group}/{series}/count", model="AST", group=group,
                            series=series, metric="neurons", value=n,
                            paper=(22612 if series == "with" else 32734) if group == "loud"
                            else None))
    return rows


def _table8() -> list[dict[str, Any]]:
    clusters = {
        "cluster 1 (212 / 1034)": "clock alarm ringing bell beeping repetitive high-pitched tone",
        "cluster 2 (187 / 903)": "engine motorcycle traffic car passing vehicle revving road",
        "cluster 3 (140 / 611)": f"water pouring drops rain splashing liquid stream {XSS_SCRIPT}",
    }
    rows = []
    for c, text in clusters.items():
        for r, w in enumerate(text.split()):
            rows.append(row("table8", f"{c}/{r:02d}", group=c, series=w, x=r + 1,
                            metric="count", value=float(40 - 3 * r)))
    return rows


def make_results() -> dict[str, pl.DataFrame]:
    """A result frame for every paper section except fig4c (missing: a not-run box)."""
    rows = {
        "table2": _table2(), "table7": _table7(), "table4": _table4(), "fig10": _fig10(),
        "table3": [row("table3", f"{m}/{k}", group=m, metric=k,
                       note="not run: needs human ratings (not released by the authors)")
                   for m in ("TAB", "DB", "SUM") for k in ("rating", "cos")],
        "fig3": _bars("fig3", ["AST"], 10),
        "fig9": _bars("fig9", ["AST", "BEATs-finetuned", "BEATs-frozen"], 12),
        "fig4a": _fig4("fig4a", {"random": ".95/.877/.826/.680/.487/.229/.160",
                                 "nouns": ".95/.913/.783/.618/.424/.319/.15",
                                 "adjectives": ".95/.925/.815/.648/.512/.337/.16"}),
        "fig4b": _fig4("fig4b", {"random": ".95/.877/.826/.680/.487/.229/.160",
                                 "basic_adj": ".95/.907/.788/.642/.424/.222/.163",
                                 "high_adj": ".95/.913/.813/.668/.515/.358/.182"}),
        "fig5": _blocks("fig5", FIG5, "adjectives") + [
            row("fig5", f"{m}/{k}", model=m, metric=k, value=v, note=f"{k} of a linear fit")
            for m, (slope, p) in {"AST": (-0.061, 2.1e-5), "BEATs-frozen": (0.001, 0.41)}.items()
            for k, v in (("slope", slope), ("p_value", p))],
        "fig6": _blocks("fig6", FIG6, "uninterpretable_pct"),
        "fig11_13": [r for g, taus in (("K=5", (3, 4, 5)), ("K=10", (6, 8, 10)))
                     for t in taus for r in _blocks("fig11_13", {"AST": FIG6["AST"]},
                                                    "uninterpretable_pct", g, f"\u03c4={t}")],
        "fig8": _fig8(),
        "table8": _table8(),
        "target_accuracy": [
            row("target_accuracy", f"{m}/neurons", model=m, metric="neurons", value=n,
                paper=55346 if m == "AST" else None)
            for m, n in (("AST", 55346), ("BEATs-finetuned", 46130), ("BEATs-frozen", 46130))],
    }
    return {k: ResultRow.frame(v) for k, v in rows.items()}


def make_context() -> ReportContext:
    """A context with findings, provenance, notes and a Table 6 carrying XSS captions."""
    table6 = ExtraTable.from_rows("Sampled AST neurons", [
        {"neuron": "block3.fc1 #17", "top-5 labels": ["church bells", "clock alarm", "clapping"],
         "TAB": "steam rushing", "DB": "bell-ringers",
         "SUM": f"Loud and clear sounds {XSS_SCRIPT} with ringing bells."},
        {"neuron": "block9.fc2 #301", "top-5 labels": ["glass breaking", "water drops"],
         "TAB": "ribbon being", "DB": f"glass chattering {XSS_IMG}",
         "SUM": "High-pitched, short, breaking or tapping sounds."},
    ], caption="Descriptions are LLM output, shown verbatim.")
    return ReportContext(
        run_name="esc50-sample",
        title="AND reproduction on ESC-50",
        provenance=Provenance(
            config={"seed": 20, "probe": {"dataset": "esc50", "n": 2000}, "k": 5,
                    "note": XSS_SCRIPT},
            backends={"summarizer": "llama-2-13b-chat@abc123", "text_encoder": "all-MiniLM-L6-v2"},
            versions={"torch": "2.13.0", "polars": "2.1.0", "matplotlib": "3.11.2"},
            data_hashes={"probe": "sha256:" + "ab" * 32, "captions": "sha256:" + "cd" * 32}),
        findings=(
            Finding(claim="DB beats TAB and ICL on every model (Table 2).", verdict="holds",
                    evidence="DB top-1 98 vs TAB 94 (AST).", section="table2"),
            Finding(claim="OCP ablation hits the target class hardest (Table 4).",
                    verdict="does not hold", evidence=f"gap 4.20 vs 3.90 {XSS_IMG}",
                    section="table4"),
            Finding(claim="Raters prefer calibrated summaries (Table 3).", verdict="not run",
                    evidence="no human ratings", section="table3"),
        ),
        extra_tables={"table6": (table6,)},
        notes=("Hand-made sample results for tests.", f"Untrusted note {XSS_SCRIPT}"),
        setup=(SetupItem(item="target AST", ours="AST, fold-1 accuracy 37.5 %",
                         paper="AST (Evan-Lin/ast-esc50), 95.0 %",
                         implication=f"weaker model {XSS_SCRIPT}"),
               SetupItem(item="K", ours="5", paper="5", implication="same as the paper")),
    )


@pytest.fixture
def result_row() -> Any:
    """The :func:`row` helper: ``result_row("table7", "key", metric="top1", value=1.0)``."""
    return row


@pytest.fixture(scope="session")
def sample_results() -> dict[str, pl.DataFrame]:
    """Result frames for every paper section except fig4c (see :func:`make_results`)."""
    return make_results()


@pytest.fixture(scope="session")
def sample_context() -> ReportContext:
    """The sample report context (see :func:`make_context`)."""
    return make_context()


@pytest.fixture(scope="session")
def sample_html(sample_results: dict[str, pl.DataFrame], sample_context: ReportContext) -> str:
    """The sample report, rendered once per session."""
    from and_toolkit.report.render import render_report

    return render_report(sample_results, sample_context)
