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
from and_toolkit.pipeline.context import Context
from and_toolkit.pipeline.experiment_inputs import caption_lengths, closed_reasons
from and_toolkit.pipeline.report_stage import manifest_backends, stage_report, write_reports_index
from and_toolkit.probe.subset import class_names
from and_toolkit.records.models import ProbeClip, ResultRow
from and_toolkit.report.findings import ModelFacts, paper_findings
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


def table4(gaps: dict[tuple[str, str], float | None]) -> pl.DataFrame:
    return ResultRow.frame([row("table4", f"{m}/{s}/gap", "gap", v, model=m, group=s,
                                note="not run: no CLAP" if v is None else "")
                            for (m, s), v in gaps.items()])


def fig4b(curves: dict[tuple[str, str], list[float]]) -> pl.DataFrame:
    rows = []
    for (m, crit), values in curves.items():
        for x, v in zip((0.0, 2.0, 4.0), values, strict=True):
            rows.append(row("fig4b", f"{m}/4b/{crit}/mean/{x:g}/accuracy", "accuracy", v,
                            model=m, group=crit, series="mean", x=x))
    return ResultRow.frame(rows)


def fig5(fits: dict[str, tuple[float, float]]) -> pl.DataFrame:
    rows = []
    for m, (slope, p) in fits.items():
        for metric, v in (("slope", slope), ("p_value", p)):
            rows.append(row("fig5", f"{m}/fit/per_neuron/{metric}", metric, v, model=m,
                            group="fit", series="per_neuron"))
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
        "table4": table4({("ast", "Random"): 0.0, ("ast", "DB"): -0.2, ("ast", "OCP"): 3.9,
                          ("cnn", "Random"): 0.0, ("cnn", "OCP"): 1.5}),
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
    assert "9 concordant, 0 discordant" in found[1].evidence
    assert "OCP 3.90 vs DB -0.20, Random 0.00" in found[2].evidence
    assert "basic 0.600 vs high-level 0.700" in found[3].evidence
    assert "fz (BEATs-frozen) 0.001 (p=0.6)" in found[4].evidence


def test_claims_fail_when_the_numbers_say_so() -> None:
    res = paper_like()
    res["table2"] = table2({("ast", "DB"): 80.0, ("ast", "TAB"): 80.0,   # tie on top-1 and top-5
                            ("cnn", "DB"): 95.0, ("cnn", "TAB"): 10.0})  # cnn less accurate
    res["table4"] = table4({("ast", "Random"): 0.5, ("ast", "OCP"): 0.4})
    res["fig4b"] = fig4b({("ast", "basic_adj"): [0.9, 0.8, 0.7],
                          ("ast", "high_adj"): [0.9, 0.7, 0.6]})
    res["fig6"] = fig6({"ast": [10, 20, 30, 40], "cnn": [70, 60, 55, 40], "fz": [70, 70, 70, 70]})
    found = paper_findings(res, FACTS)
    assert [f.verdict for f in found] == ["does not hold"] * 5
    assert "discordant" in found[1].evidence and "1 discordant" in found[1].evidence


def test_frozen_model_with_a_significant_slope_breaks_claim_5() -> None:
    res = paper_like()
    res["fig5"] = fig5({"ast": (-0.05, 1e-6), "cnn": (-0.02, 1e-4), "fz": (-0.03, 0.001)})
    assert paper_findings(res, FACTS)[4].verdict == "does not hold"


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


def test_partial_comparison_says_what_was_not_compared() -> None:
    res = {"table2": table2({("ast", "DB"): 90.0, ("ast", "ICL"): 60.0, ("ast", "TAB"): None},
                            note="not run: TAB needs CLAP weights")}
    finding = paper_findings(res, FACTS)[0]
    assert finding.verdict == "holds"
    assert "Not compared with TAB (not run: TAB needs CLAP weights)." in finding.evidence


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
                "summaries": {"summarizer": "extractive-v1", "seconds": 1.0}})
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
    first = ctx.run.report_path.read_bytes()
    published = tmp_path / "reports" / "tiny-report" / "index.html"
    assert published.read_bytes() == first
    index = (tmp_path / "reports" / "index.html").read_text()
    assert 'href="tiny-report/index.html"' in index
    html = first.decode()
    for text in ("not run: TAB needs CLAP weights", "holds", "extractive-v1",
                 "closed.DB", "minilm-id", "weights ast (cache key)", "handmade",
                 "settings: {&#34;a&#34;: 1, &#34;b&#34;: 2}", "block1.fc1 #3"):
        assert text in html, text
    assert "<script>alert" not in html
    assert "4321" not in html and "seconds" not in html  # no timings
    assert set(info["verdicts"].values()) == {"holds"}
    # timings and dict order in the manifest change; the page does not
    manifest = ctx.run.manifest()
    manifest["stages"]["targets"]["seconds"] = 99.0
    manifest["stages"] = dict(reversed(list(manifest["stages"].items())))
    ctx.run.write_manifest(manifest)
    stage_report(Context(cfg=ctx.cfg, run=ctx.run, cache=ctx.cache, progress=False))
    assert ctx.run.report_path.read_bytes() == first
    assert published.read_bytes() == first


def test_setup_summary_and_index_come_from_the_run(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Setup rows carry this run's facts (accuracy from the manifest, encoders from the config);
    summary.json feeds one index row per report; a synthetic run grades nothing."""
    monkeypatch.chdir(tmp_path)
    ctx = _tiny_run(tmp_path / "run")
    stage_report(ctx)
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
    info = stage_report(ctx)
    results = ctx.run.results()
    assert info["data"] == len(results) and {p.stem for p in data.glob("*")} == set(results)
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
