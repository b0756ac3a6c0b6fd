"""The report stage and the findings re-tested on hand-made result frames (the row encodings
are tested in tests/experiments/test_encoding.py).

No training and no model loading: the run directory is built by hand (manifest, probe table,
result frames) and the report stage renders it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from and_toolkit.cache import Cache
from and_toolkit.config import parse_config
from and_toolkit.experiments.masks import mask_sha
from and_toolkit.pipeline.backends import loaded_text_encoder
from and_toolkit.pipeline.context import Context
from and_toolkit.pipeline.experiment_inputs import caption_lengths, closed_reasons, word_cos
from and_toolkit.pipeline.report_stage import manifest_backends, stage_report
from and_toolkit.probe.subset import class_names
from and_toolkit.records.models import ProbeClip, ResultRow
from and_toolkit.report.findings import ModelFacts, paper_findings
from and_toolkit.report.index import write_reports_index
from and_toolkit.report.publish import publish_report
from and_toolkit.run import Run
from and_toolkit.store import provenance_of, read_records

FACTS = {"ast": ModelFacts("AST", 0.6), "cnn": ModelFacts("BEATs-finetuned", 0.4),
         "fz": ModelFacts("BEATs-frozen", 0.2)}


def row(experiment: str, key: str, metric: str, value: float | None, *, model: str = "",
        group: str = "", series: str = "", x: float | None = None,
        paper: float | None = None, note: str = "") -> dict[str, Any]:
    return {"experiment": experiment, "key": key, "model": model, "group": group,
            "series": series, "x": x, "metric": metric, "value": value, "paper_value": paper,
            "note": note}


def table2(top1: dict[tuple[str, str], float | None], note: str = "") -> pl.DataFrame:
    """Table 2 rows: ``{(model, method): top-1}`` (None = not run); top-5 = top-1 + 10."""
    rows = []
    for (m, method), v in top1.items():
        for metric, val in (("top1", v), ("top5", None if v is None else v + 10)):
            rows.append(row("table2", f"{m}/{method}/{metric}", metric, val, model=m,
                            group=method, note=note if v is None else ""))
    return ResultRow.frame(rows)


def table4(gaps: dict[tuple[str, str], float | None], se: float = 0.05, pruned: int = 10,
           targets: int = 10, count: str = "matched_count") -> pl.DataFrame:
    """Table 4 summary rows: ``{(model, strategy): ΔR − ΔA}`` (None = not run), the same
    standard error over classes and pruned-class count for every strategy."""
    rows = []
    for (m, s), v in gaps.items():
        vals = {"r_minus_a": v, "r_minus_a_se": se, "classes_pruned": float(pruned),
                "target_classes": float(targets), "r_minus_a_per_100": v}
        for metric, val in vals.items():
            rows.append(row("table4", f"{m}/{s}/{count}/{metric}", metric,
                            None if v is None else val, model=m, group=s, series=count,
                            note="not run: no CLAP" if v is None else ""))
    return ResultRow.frame(rows)


def fig4b(curves: dict[tuple[str, str], list[float]], seed_offsets: tuple[float, ...] = (
        -0.005, 0.0, 0.005), variant: str = "") -> pl.DataFrame:
    """Fig 4b mean curves at x = 0, 2, 4 % plus per-seed rows (mean + offset per seed)."""
    rows = []
    for (m, crit), values in curves.items():
        for x, v in zip((0.0, 2.0, 4.0), values, strict=True):
            rows.append(row("fig4b", f"{m}/4b/{variant}{crit}/mean/{x:g}/accuracy", "accuracy",
                            v, model=m, group=crit, series="mean", x=x))
            for seed, off in zip((20, 202, 2024), seed_offsets, strict=False):
                rows.append(row("fig4b", f"{m}/4b/{variant}{crit}/seed={seed}/{x:g}/accuracy",
                                "accuracy", v + off, model=m, group=crit,
                                series=f"seed={seed}", x=x))
    return ResultRow.frame(rows)


def fig5(fits: dict[str, tuple[float, float]], series: str = "per_neuron") -> pl.DataFrame:
    rows = []
    for m, (slope, p) in fits.items():
        for metric, v in (("slope", slope), ("p_value", p)):
            rows.append(row("fig5", f"{m}/fit/{series}/{metric}", metric, v, model=m,
                            group="fit", series=series))
        rows.append(row("fig5", f"{m}/block=1/mean", "mean_adjectives", 3.0, model=m,
                        group="block", x=1.0))
    return ResultRow.frame(rows)


def fig6(curves: dict[str, list[float]]) -> pl.DataFrame:
    rows = [row("fig6", f"{m}/k=11/max_cluster_support/block={b}", "pct_uninterpretable", v,
                model=m, group="max_cluster_support", series="k=11", x=float(b))
            for m, values in curves.items() for b, v in enumerate(values, start=1)]
    return ResultRow.frame(rows)


def paper_like() -> dict[str, pl.DataFrame]:
    """Frames on which every claim holds (the paper's pattern)."""
    return {
        "table2": table2({("ast", "DB"): 90.0, ("ast", "TAB"): 80.0, ("ast", "ICL"): 60.0,
                          ("cnn", "DB"): 70.0, ("cnn", "TAB"): 65.0, ("cnn", "ICL"): 40.0,
                          ("fz", "DB"): 50.0, ("fz", "TAB"): 30.0, ("fz", "ICL"): 10.0}),
        "table4": table4({("ast", "Random"): 0.0, ("ast", "DB"): -0.2, ("ast", "TAB"): 0.16,
                          ("ast", "OCP"): 3.9, ("cnn", "Random"): 0.0, ("cnn", "OCP"): 1.5}),
        "fig4b": fig4b({("ast", "basic_adj"): [0.9, 0.7, 0.5],
                        ("ast", "high_adj"): [0.9, 0.8, 0.6],
                        ("ast", "random"): [0.9, 0.8, 0.7]}),
        "fig5": fig5({"ast": (-0.05, 1e-6), "cnn": (-0.02, 1e-4), "fz": (0.001, 0.6)}),
        "fig6": fig6({"ast": [50, 40, 30, 20], "cnn": [70, 60, 55, 40], "fz": [70, 71, 70, 69]}),
    }


# ----- findings ---------------------------------------------------------------------------------
def test_every_claim_holds_on_the_papers_pattern() -> None:
    found = paper_findings(paper_like(), FACTS)
    assert [f.verdict for f in found] == ["holds"] * 5
    assert [f.section for f in found] == ["table2", "table2", "table4", "fig4b", "fig5"]
    assert "DB 90.0/100.0" in found[0].evidence and "ICL 60.0/70.0" in found[0].evidence
    assert "9 concordant, 0 discordant, 0 within the uncertainty" in found[1].evidence
    assert "count without an uncertainty" in found[1].evidence  # FACTS have no counts
    assert "OCP 3.900 ± 0.050" in found[2].evidence and "DB -0.200 ± 0.050" in found[2].evidence
    assert "basic 0.600 vs high-level 0.700" in found[3].evidence
    assert "seed spread 0.010 over 3 seeds" in found[3].evidence
    assert "fz (BEATs-frozen) 0.001 (p=0.6)" in found[4].evidence
    assert all(f.evidence.startswith("Test: ") for f in found)
    assert "Holds for: ast (AST), cnn (BEATs-finetuned)." in found[2].evidence


def test_claims_fail_when_the_numbers_say_so() -> None:
    res = paper_like()
    res["table2"] = table2({("ast", "DB"): 70.0, ("ast", "TAB"): 80.0, ("ast", "ICL"): 10.0,
                            ("cnn", "DB"): 95.0, ("cnn", "TAB"): 10.0, ("cnn", "ICL"): 5.0})
    res["table4"] = table4({("ast", "Random"): 0.5, ("ast", "TAB"): 0.0, ("ast", "DB"): 0.0,
                            ("ast", "OCP"): 0.2}, se=0.01)
    res["fig4b"] = fig4b({("ast", "basic_adj"): [0.9, 0.8, 0.7],
                          ("ast", "high_adj"): [0.9, 0.7, 0.6]})
    res["fig6"] = fig6({"ast": [10, 20, 30, 40], "cnn": [70, 60, 55, 40], "fz": [70, 70, 70, 70]})
    found = paper_findings(res, FACTS)
    assert [f.verdict for f in found] == ["does not hold"] * 5
    assert "1 discordant" in found[1].evidence and "(DB ast vs cnn discordant)" in found[1].evidence
    assert "Does not hold for: ast (AST)." in found[4].evidence


def test_accuracy_tracking_ignores_pairs_within_their_uncertainty() -> None:
    facts = {"a": ModelFacts("AST", 0.808, n_test=400, n_classes=50),
             "b": ModelFacts("BEATs-finetuned", 0.768, n_test=400, n_classes=50),
             "c": ModelFacts("BEATs-frozen", 0.15, n_test=400, n_classes=50)}
    res = {"table2": table2({(m, method): v for method in ("DB", "TAB", "ICL")
                             for m, v in (("a", 94.0), ("b", 96.0), ("c", 74.0))})}
    found = paper_findings(res, facts)[1]
    # a vs b: accuracies 4 pp apart (2 SE = 5.8 pp) and top-1 2 pp apart (2 SE = 8.7 pp): not a
    # discordant pair; a, b vs c: both far apart and ordered alike
    assert found.verdict == "holds"
    assert "6 concordant, 0 discordant, 3 within the uncertainty" in found.evidence
    far = {**facts, "b": ModelFacts("BEATs-finetuned", 0.5, n_test=400, n_classes=50)}
    res = {"table2": table2({("a", "DB"): 70.0, ("b", "DB"): 96.0, ("c", "DB"): 40.0})}
    found = paper_findings(res, far)[1]
    assert found.verdict == "does not hold" and "(DB a vs b discordant)" in found.evidence
    res = {"table2": table2({("a", "DB"): 94.0, ("b", "DB"): 96.0})}
    assert paper_findings(res, facts)[1].verdict == "inconclusive"


def test_per_target_statements_when_targets_disagree() -> None:
    res = paper_like()
    res["table4"] = table4({("ast", "Random"): 0.0, ("ast", "TAB"): 0.0, ("ast", "DB"): 0.0,
                            ("ast", "OCP"): 2.0, ("cnn", "Random"): 1.0, ("cnn", "TAB"): 0.0,
                            ("cnn", "DB"): 0.0, ("cnn", "OCP"): 0.1})
    finding = paper_findings(res, FACTS)[2]
    assert finding.verdict == "does not hold"
    assert "Holds for: ast (AST). Does not hold for: cnn (BEATs-finetuned)." in finding.evidence


def test_inconclusive_within_seed_spread() -> None:
    """Claim 4 as in the ESC-50 run: 0.364 vs 0.372 while seeds differ by up to 0.021."""
    res = paper_like()
    res["fig4b"] = fig4b({("ast", "basic_adj"): [0.38, 0.368, 0.360],
                          ("ast", "high_adj"): [0.38, 0.376, 0.368]},
                         seed_offsets=(-0.0105, 0.0, 0.0105))
    finding = paper_findings(res, FACTS)[3]
    assert finding.verdict == "inconclusive"
    assert "difference -0.008, seed spread 0.021 over 3 seeds" in finding.evidence
    assert "Inconclusive for: ast (AST)." in finding.evidence
    # one seed: the spread is unknown, so the difference cannot be judged
    res["fig4b"] = fig4b({("ast", "basic_adj"): [0.9, 0.7, 0.5],
                          ("ast", "high_adj"): [0.9, 0.8, 0.6]}, seed_offsets=(0.0,))
    assert paper_findings(res, FACTS)[3].verdict == "inconclusive"


def test_inconclusive_within_class_spread_or_with_few_pruned_classes() -> None:
    res = paper_like()
    gaps = {("ast", "Random"): 0.06, ("ast", "TAB"): 0.0, ("ast", "DB"): 0.24,
            ("ast", "OCP"): 0.30}
    res["table4"] = table4(gaps, se=0.05)  # 0.30 − 0.24 < 2 · hypot(0.05, 0.05)
    assert paper_findings(res, FACTS)[2].verdict == "inconclusive"
    res["table4"] = table4({**gaps, ("ast", "OCP"): 3.9}, se=0.05, pruned=4, targets=10)
    finding = paper_findings(res, FACTS)[2]
    assert finding.verdict == "inconclusive"
    assert "fewer than half of the target classes" in finding.evidence
    assert "4/10 classes pruned" in finding.evidence


def test_inconclusive_on_an_exact_tie_or_an_insignificant_slope() -> None:
    res = paper_like()
    res["table2"] = table2({("ast", "DB"): 80.0, ("ast", "TAB"): 80.0, ("ast", "ICL"): 10.0})
    assert paper_findings(res, FACTS)[0].verdict == "inconclusive"
    res["fig5"] = fig5({"ast": (-0.05, 0.2), "cnn": (-0.02, 1e-4), "fz": (0.001, 0.6)})
    finding = paper_findings(res, FACTS)[4]
    assert finding.verdict == "inconclusive" and "Inconclusive for: ast (AST)." in \
        finding.evidence


def test_partially_tested_when_a_needed_method_did_not_run() -> None:
    res = paper_like()
    res["table2"] = table2({("ast", "DB"): 90.0, ("ast", "ICL"): 60.0, ("ast", "TAB"): None},
                           note="not run: TAB needs CLAP weights")
    finding = paper_findings(res, FACTS)[0]
    assert finding.verdict == "partially tested"
    assert "Not tested: TAB (not run: TAB needs CLAP weights)." in finding.evidence
    assert "Holds for: ast (AST)." in finding.evidence
    res = paper_like()
    res["table4"] = table4({("ast", "Random"): 0.0, ("ast", "DB"): -0.2, ("ast", "OCP"): 3.9})
    assert paper_findings(res, FACTS)[2].verdict == "partially tested"
    res = paper_like()
    res["fig6"] = fig6({"ast": [100] * 4, "cnn": [100] * 4, "fz": [100] * 4})
    finding = paper_findings(res, FACTS)[4]
    assert finding.verdict == "partially tested" and "degenerate" in finding.evidence


def test_pruning_claims_name_the_targets_left_unpruned() -> None:
    skipped = "not run: not in experiments.pruning_models (ast, cnn)"
    res = paper_like()
    for e in ("table4", "fig4b"):
        res[e] = pl.concat([res[e], ResultRow.frame([row(e, "yam/not_run", "not_run", None,
                                                          model="yam", note=skipped)])])
    findings = paper_findings(res, {**FACTS, "yam": ModelFacts("AST", 0.8)})
    for finding in (findings[2], findings[3]):
        assert finding.verdict == "partially tested"
        assert f"Not tested: yam ({skipped})." in finding.evidence
        assert "Holds for: ast (AST)" in finding.evidence


def test_adjective_claims_use_the_captions_only_variant() -> None:
    res = paper_like()
    both = {("ast", "basic_adj"): [0.9, 0.7, 0.5], ("ast", "high_adj"): [0.9, 0.8, 0.6]}
    res["fig4b"] = pl.concat([
        fig4b(both, variant="captions_descriptors/"),  # would hold
        fig4b({("ast", "basic_adj"): [0.9, 0.8, 0.7], ("ast", "high_adj"): [0.9, 0.7, 0.6]},
              variant="captions/")])  # does not hold: the paper's setting
    finding = paper_findings(res, FACTS)[3]
    assert finding.verdict == "does not hold" and "(captions only)" in finding.evidence
    fits = {"ast": (-0.05, 1e-6), "cnn": (-0.02, 1e-4), "fz": (0.001, 0.6)}
    res["fig5"] = pl.concat([fig5(fits, "captions_descriptors/per_neuron"),
                             fig5({**fits, "ast": (0.05, 1e-6)}, "captions/per_neuron")])
    assert paper_findings(res, FACTS)[4].verdict == "does not hold"


def test_fig5_on_relative_depth() -> None:
    res = paper_like()
    res["fig5"] = pl.concat([
        fig5({"ast": (0.05, 1e-6), "cnn": (0.02, 1e-4), "fz": (0.001, 0.6)}, "per_neuron"),
        fig5({"ast": (-0.5, 1e-6), "cnn": (-0.2, 1e-4), "fz": (0.01, 0.6)},
             "per_neuron_relative")]).unique("key", keep="first")
    finding = paper_findings(res, FACTS)[4]
    assert finding.verdict == "holds" and "adjectives / relative depth" in finding.evidence
    # the same fit name, x = block / number of blocks
    rel = fig5({"ast": (-0.5, 1e-6), "cnn": (-0.2, 1e-4), "fz": (0.01, 0.6)})
    res["fig5"] = pl.concat([rel, ResultRow.frame([row(
        "fig5", "ast/block=2/mean", "mean_adjectives", 2.0, model="ast", group="block",
        x=0.5)])])
    assert "adjectives / relative depth" in paper_findings(res, FACTS)[4].evidence


def test_seed_spread_from_the_fig4_seeds_table() -> None:
    """Seeds as the fig4_seeds table holds them: metric ``seed=<n>``, budget in the key."""
    res = paper_like()
    res["fig4b"] = fig4b({("ast", "basic_adj"): [0.38, 0.368, 0.360],
                          ("ast", "high_adj"): [0.38, 0.376, 0.368]}, seed_offsets=())
    res["fig4_seeds"] = ResultRow.frame([
        row("fig4_seeds", f"ast/4b/{c}/{b:06.1f}/seed={s}", f"seed={s}", v + off,
            model="ast", group=f"4b \u00b7 {c}", series=f"{b:.1f} %")
        for c, vals in (("basic_adj", (0.368, 0.360)), ("high_adj", (0.376, 0.368)))
        for b, v in zip((2.0, 4.0), vals, strict=True)
        for s, off in ((20, -0.0105), (202, 0.0), (2024, 0.0105))])
    finding = paper_findings(res, FACTS)[3]
    assert finding.verdict == "inconclusive"
    assert "seed spread 0.021 over 3 seeds" in finding.evidence


def test_missing_or_not_run_results_give_not_run_with_the_reason() -> None:
    res: dict[str, pl.DataFrame] = {
        "table2": table2({("ast", "DB"): None, ("ast", "TAB"): None},
                         note="not run: the closed-set stage (Module A) has not run"),
        "table4": table4({("ast", "OCP"): None}),
    }
    found = paper_findings(res, FACTS)
    assert [f.verdict for f in found] == ["not run"] * 5
    assert "closed-set stage (Module A) has not run" in found[0].evidence
    assert "no CLAP" in found[2].evidence
    assert "no result rows" in found[3].evidence


def test_db_alone_cannot_be_compared() -> None:
    res = {"table2": table2({("ast", "DB"): 90.0, ("ast", "TAB"): None, ("ast", "ICL"): None},
                            note="not run: TAB needs CLAP weights")}
    finding = paper_findings(res, FACTS)[0]
    assert finding.verdict == "not run"
    assert "TAB not run" in finding.evidence and "TAB needs CLAP" in finding.evidence


def test_claim_5_needs_a_supervised_and_a_frozen_model() -> None:
    res = paper_like()
    res["fig5"] = fig5({"ast": (-0.05, 1e-6)})
    finding = paper_findings(res, FACTS)[4]
    assert finding.verdict == "not run" and "['ast']" in finding.evidence


# ----- inputs -----------------------------------------------------------------------------------
def test_mask_sha_ignores_layers_with_nothing_pruned() -> None:
    a = {"l1": np.array([True, False]), "l2": np.zeros(3, bool)}
    assert mask_sha(a) == mask_sha({"l1": np.array([True, False])})
    assert mask_sha(a) != mask_sha({"l1": np.array([False, True])})
    assert mask_sha({"l2": np.zeros(3, bool)}) == mask_sha({})


def test_class_names_and_caption_lengths() -> None:
    probe = pl.DataFrame({"target": [1, 0, 1], "label": ["cat", "dog", "cat"]})
    assert class_names(probe) == ["dog", "cat"]
    with pytest.raises(ValueError, match="probe.target"):
        class_names(pl.DataFrame({"target": [0, 2], "label": ["a", "b"]}))
    cal = pl.DataFrame({"model": ["m", "m", "o"], "layer": ["l", "l", "l"], "unit": [0, 1, 0],
                        "kept": [["a loud dog", "barks"], [], ["x"]]})
    assert caption_lengths(cal, "m")["caption_len"].to_list() == [4, 0]


def test_ocp_meaning_similarity_comes_through_the_context(tmp_path: Path) -> None:
    """OCP's ``meaning`` rule embeds nouns and class phrases with the run's cached encoder."""
    ctx = Context(cfg=parse_config({"name": "t", "calibrate": {"encoder": "hashing"}}),
                  run=Run.at(tmp_path / "run"), cache=Cache(tmp_path / "cache"), progress=False)
    assert loaded_text_encoder(ctx, "hashing") is None
    cos = word_cos(ctx, ctx.cfg.calibrate.encoder)(["dog", "rain"], ["dog", "train", "dog"])
    assert cos.shape == (2, 3) and cos[0, 0] == pytest.approx(1.0) and cos[0, 2] == cos[0, 0]
    assert cos[1, 1] < 1.0
    assert loaded_text_encoder(ctx, "hashing") is not None
    with pytest.raises(Exception, match="ocp_match"):
        parse_config({"name": "t", "experiments": {"ocp_match": "fuzzy"}})


# ----- the report stage -------------------------------------------------------------------------
CONFIG = {"name": "tiny-report", "targets": [
    {"id": "ast", "arch": "ast"}, {"id": "cnn", "arch": "cnn"}, {"id": "fz", "arch": "ast-frozen"}]}


def _tiny_run(root: Path, probe_kind: str = "esc50") -> Context:
    cfg = parse_config({**CONFIG, "probe": {"kind": probe_kind}})
    run = Run.at(root)
    probe = ProbeClip.frame([{"dataset": "synthetic", "clip_id": f"c{i}", "index": i,
                              "path": "", "label": "ab"[i % 2], "target": i % 2,
                              "fold": 1 + i % 2, "sample_rate": 16000, "n_samples": 160}
                             for i in range(4)])
    run.write(ProbeClip, probe)
    run.update_manifest(
        config=cfg.model_dump(mode="json"), versions={"numpy": "2", "python": "3.11"},
        stages={"targets": {"seconds": 4321.5, **{t: {"test_accuracy": a, "weights_key": t * 8}
                                                 for t, a in (("ast", .6), ("cnn", .4),
                                                              ("fz", .2))}},
                "closed": {"seconds": 3.0, "not_run": {"TAB": "TAB needs CLAP weights"},
                           "backends": {"DB": "minilm-id"}},
                "summaries": {"summarizer": "extractive-v1", "seconds": 1.0},
                "record": {"resources": {"wall_s": 12.25, "cpu_s": 20.5, "peak_rss_mib": 901.0}}})
    for exp, frame in paper_like().items():
        run.write_result(exp, frame, job="handmade", settings={"b": 2, "a": 1})
    (root / "experiments").mkdir()
    (root / "experiments" / "table6_neurons.json").write_text(json.dumps([
        {"model": "ast", "layer": "x.y", "alias": "block1.fc1", "unit": 3, "block": 1,
         "clip_labels": ["a \u00d72"], "s_h_c": ["<script>alert(1)</script>"], "DB": "a",
         "TAB": None, "ICL": None, "open_concepts": ["loud"]}]))
    return Context(cfg=cfg, run=run, cache=Cache(root / "cache"), progress=False)


def test_report_stage_is_byte_identical_and_publishes(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    ctx = _tiny_run(tmp_path / "run")
    info = stage_report(ctx)
    assert not (tmp_path / "reports").exists()  # the stage writes inside the run only
    first = ctx.run.report_path.read_bytes()
    published = publish_report(ctx.run, tmp_path / "reports").page
    assert published == tmp_path / "reports" / "tiny-report" / "index.html"
    assert published.read_bytes() == first
    index = (tmp_path / "reports" / "index.html").read_text()
    assert 'href="tiny-report/index.html"' in index
    html = first.decode()
    for text in ("not run: TAB needs CLAP weights", "holds", "extractive-v1",
                 "closed.DB", "minilm-id", "weights ast (cache key)", "handmade",
                 "settings: {&#34;a&#34;: 1, &#34;b&#34;: 2}", "block1.fc1 #3"):
        assert text in html, text
    assert "<script>alert" not in html
    assert "4321" not in html  # the old "seconds" key is not a resource figure
    timing = html[html.index("Where the time went"):html.index("claims", html.index("Where the time went"))]
    assert "<td class=\"label\">record</td><td>12.2</td><td>20.5</td><td>901</td>" in timing
    verdicts = list(info["verdicts"].values())
    # two classes: a Table 2 top-1 difference is never beyond its uncertainty (claim 2)
    assert verdicts[1] == "inconclusive" and set(verdicts[:1] + verdicts[2:]) == {"holds"}
    # dict order and the report stage's own timing change; the page does not
    manifest = ctx.run.manifest()
    manifest["stages"]["targets"]["seconds"] = 99.0
    manifest["stages"]["report"] = {"resources": {"wall_s": 3.0, "cpu_s": 3.0}}  # not shown
    manifest["stages"] = dict(reversed(list(manifest["stages"].items())))
    ctx.run.write_manifest(manifest)
    stage_report(Context(cfg=ctx.cfg, run=ctx.run, cache=ctx.cache, progress=False))
    assert ctx.run.report_path.read_bytes() == first
    publish_report(ctx.run, tmp_path / "reports")
    assert published.read_bytes() == first


def test_setup_summary_and_index_come_from_the_run(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Setup rows carry this run's facts (accuracy from the manifest, encoders from the config);
    summary.json feeds one index row per report; a synthetic run grades nothing."""
    monkeypatch.chdir(tmp_path)
    ctx = _tiny_run(tmp_path / "run")
    stage_report(ctx)
    publish_report(ctx.run, tmp_path / "reports")
    page = (tmp_path / "reports" / "tiny-report" / "index.html").read_text()
    setup = page[page.index('id="setup"'):page.index('id="table2"')]
    for text in ("fold-1 accuracy 60.0 %", "fold-1 accuracy 20.0 %", "95.0 %", "84.8 %",
                 "SALMONN-13B", "extractive", "smollm2", "minilm (Module A, Cos)"):
        assert text in setup, text
    summary = json.loads((tmp_path / "reports" / "tiny-report" / "summary.json").read_text())
    assert summary["models"][0] == "ast \u2192 AST: 60.0 % (paper 95.0 %)"
    index = (tmp_path / "reports" / "index.html").read_text()
    assert "<li>cnn \u2192 BEATs-finetuned: 40.0 % (paper 89.8 %)</li>" in index
    assert summary["summary"] in index and index.count('<tr><td class="label">') == 1
    (tmp_path / "reports" / "old").mkdir()
    (tmp_path / "reports" / "old" / "index.html").write_text("<html></html>")
    index = write_reports_index(tmp_path / "reports").read_text()
    assert "no summary.json beside this report" in index
    synthetic = _tiny_run(tmp_path / "run-synthetic", probe_kind="synthetic")
    info = stage_report(synthetic)
    assert set(info["verdicts"].values()) == {"not graded"}
    assert "not graded: synthetic data" in synthetic.run.report_path.read_text()


def test_report_ships_the_data_of_every_result(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    ctx = _tiny_run(tmp_path / "run")
    data = tmp_path / "reports" / "tiny-report" / "data"
    data.mkdir(parents=True)
    (data / "gone.parquet").write_bytes(b"a result this run no longer has")
    stage_report(ctx)
    published = publish_report(ctx.run, tmp_path / "reports")
    results = ctx.run.results()
    assert len(published.data) == len(results) and {p.stem for p in data.glob("*")} == set(results)
    for exp, frame in results.items():
        assert read_records(ResultRow, data / f"{exp}.parquet").equals(frame), exp
        assert provenance_of(data / f"{exp}.parquet")["job"] == "handmade"
    assert "data/table2.parquet" in ctx.run.report_path.read_text()


def test_manifest_backends_and_closed_reasons(tmp_path: Path) -> None:
    manifest = {"stages": {"open": {"adjective_filter": "lexicon", "seconds": 2},
                           "captions": {"captioners": ["a", "a+d"]},
                           "closed": {"backends": {"ICL": "smollm2"}, "not_run": {}}}}
    assert manifest_backends(manifest) == {"captions.captioners": "a, a+d",
                                           "closed.ICL": "smollm2",
                                           "open.adjective_filter": "lexicon"}
    ctx = _tiny_run(tmp_path / "run")
    assert closed_reasons(ctx) == {"ICL": "no ConceptSet rows", "TAB": "TAB needs CLAP weights",
                                   "DB": "no ConceptSet rows"}
    stages = ctx.run.manifest()["stages"]
    stages.pop("closed")
    ctx.run.update_manifest(stages=stages)
    assert set(closed_reasons(ctx).values()) == {"the closed-set stage (Module A) has not run"}


def test_paper_model_defaults_by_arch() -> None:
    cfg = parse_config({**CONFIG, "targets": [
        {"id": "a", "arch": "ast"}, {"id": "c", "arch": "cnn"},
        {"id": "f", "arch": "ast-frozen"}, {"id": "x", "arch": "cnn", "paper_model": "AST"}]})
    assert [t.paper_model_id for t in cfg.targets] == [
        "AST", "BEATs-finetuned", "BEATs-frozen", "AST"]


def test_claim_1_names_tabs_trained_model_from_its_table2_note() -> None:
    from and_toolkit.experiments.last_layer import TAB_MODEL_NOTE

    res = paper_like()
    assert TAB_MODEL_NOTE not in paper_findings(res, FACTS)[0].evidence
    line = f"{TAB_MODEL_NOTE} audio-text-cnn@abc, trained here on folds 2-5"
    res["table2"] = res["table2"].with_columns(
        pl.when(pl.col("group") == "TAB").then(pl.lit(f"best of 5; {line}"))
        .otherwise(pl.col("note")).alias("note"))
    found = paper_findings(res, FACTS)[0]
    assert found.verdict == "holds" and f" {line}." in found.evidence


def test_setup_names_the_blocks_fine_tuned_here() -> None:
    from and_toolkit.pipeline.report_stage import _pretraining

    cfg = parse_config({"name": "t", "targets": [{"id": "y", "arch": "yamnet"},
                                                 {"id": "f", "arch": "yamnet-frozen"}]})
    tuned, frozen = cfg.targets
    text = _pretraining(tuned, {"yamnet_tuned_blocks": 2})
    assert text.startswith("YAMNet, supervised on AudioSet, fine-tuned here")
    assert "top 2 separable blocks and the head" in text
    assert "every layer" in _pretraining(tuned, {"yamnet_tuned_blocks": 14})
    assert _pretraining(tuned, {}) == "YAMNet, supervised on AudioSet, fine-tuned here"
    assert "frozen; linear head" in _pretraining(frozen, {})
