"""``and_toolkit.diff`` and ``and-toolkit diff`` on a tiny run and planted copies of it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from compare import plants

from and_toolkit import diff
from and_toolkit.cli import main
from and_toolkit.compare.render import render_text
from and_toolkit.compare.tolerance import PRESETS, Tolerance, load_tolerance
from and_toolkit.errors import ConfigError
from and_toolkit.records import ConceptSet, ProbeClip
from and_toolkit.run import Run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("diff")
    return plants.build_run(base / "run", base / "cache")


@pytest.fixture
def copy(tiny_run: Path, tmp_path: Path) -> Callable[[str], Path]:
    return lambda name: plants.copy_run(tiny_run, tmp_path / name)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["diff", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_identical_runs_exit_0_with_an_empty_report(
        tiny_run: Path, copy: Callable[[str], Path], capsys: pytest.CaptureFixture[str]) -> None:
    other = copy("same")
    report = diff(tiny_run, other)
    assert not report.changed and report.exit_code == 0
    assert report.changes.height == 0 and report.results.height == 0
    assert report.neurons.height == 0 and report.counts.height == 0
    assert report.probe.same and report.neurons_a == report.neurons_b > 0
    code, out, _ = cli(capsys, str(tiny_run), str(other))
    assert code == 0 and "no changes beyond tolerance" in out


PLANTS: dict[str, tuple[Callable[[Path], dict[str, Any]], str]] = {
    "top1 concept": (plants.swap_top1, "closed_top1"),
    "summary point": (plants.change_summary_point, "summary_high"),
    "top clip": (plants.replace_top_clip, "top_clips"),
}


@pytest.mark.parametrize("name", list(PLANTS))
def test_a_planted_neuron_change_exits_1_and_names_it(
        name: str, tiny_run: Path, copy: Callable[[str], Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    plant, kind = PLANTS[name]
    other = copy("planted")
    planted = plant(other)
    report = diff(tiny_run, other)
    assert report.changed
    assert report.changes.select(*plants.KEY, "kind").rows() == [
        (planted["model"], planted["layer"], planted["unit"], kind)]
    row = report.neurons.row(0, named=True)
    assert row["kinds"] == [kind] and row["changes"] == 1
    code, out, _ = cli(capsys, str(tiny_run), str(other))
    assert code == 1
    assert plants.neuron_text(planted) in out
    line = next(x for x in out.splitlines() if x.strip().startswith(kind))
    assert planted["before"] in line.split(" -> ")[0] and planted["after"] in line.split(" -> ")[1]


def test_a_planted_result_value_exits_1_and_names_the_key(
        tiny_run: Path, copy: Callable[[str], Path], capsys: pytest.CaptureFixture[str]) -> None:
    other = copy("result")
    planted = plants.change_result(other)
    report = diff(tiny_run, other)
    assert report.changes.height == 0
    assert report.results.select("experiment", "key", "change", "before", "after").rows() == [
        ("table7", "cnn/DB/wpmi", "value", planted["before"], planted["after"])]
    code, out, _ = cli(capsys, str(tiny_run), str(other))
    assert code == 1
    assert "table7 / cnn/DB/wpmi (top1, cnn): 0.5 -> 0.75 (delta +0.25)" in out


def test_scores_perturbed_below_tolerance_pass(
        tiny_run: Path, copy: Callable[[str], Path], capsys: pytest.CaptureFixture[str]) -> None:
    other = copy("noise")
    plants.perturb(other, 1e-6)  # far below 2^-12 relative; float32 activations move too
    assert not diff(tiny_run, other).changed
    assert cli(capsys, str(tiny_run), str(other))[0] == 0
    strict = diff(tiny_run, other, tolerance="strict")
    assert strict.changed and "closed_score" in strict.kind_totals
    assert not diff(tiny_run, other, tolerance="meaning").changed


def test_scores_beyond_tolerance_are_reported_but_not_under_meaning(
        tiny_run: Path, copy: Callable[[str], Path]) -> None:
    other = copy("scores")
    plants.perturb(other, 1e-2)
    report = diff(tiny_run, other)
    assert "closed_score" in report.kind_totals and report.results.height > 0
    assert "closed_top1" not in report.kind_totals  # a common scale keeps every order
    meaning = diff(tiny_run, other, tolerance="meaning")
    assert not meaning.changed


def test_a_near_tie_swap_is_not_a_change(tiny_run: Path, copy: Callable[[str], Path]) -> None:
    a, b = copy("tie_a"), copy("tie_b")
    planted = plants.swap_top1(b)
    # make the two swapped concepts near-tied (1e-6 apart) in both runs
    for path in (a, b):
        run = Run.at(path)
        cs = run.read(ConceptSet)
        hit = ((pl.col("model") == planted["model"]) & (pl.col("layer") == planted["layer"])
               & (pl.col("unit") == planted["unit"]) & (pl.col("method") == "DB")
               & (pl.col("similarity") == "cos"))
        top = cs.filter(hit & (pl.col("rank") == 0))["score"][0]
        run.write(ConceptSet, cs.with_columns(score=pl.when(hit & (pl.col("rank") == 1))
                                              .then(pl.lit(top - 1e-6))
                                              .otherwise(pl.col("score"))))
    report = diff(a, b)
    assert not report.changed
    assert report.excused == {"closed_rank": 1, "closed_top1": 1}
    assert diff(a, b, tolerance="strict").kind_totals == {"closed_top1": 1}


def test_probes_that_differ_are_not_compared_and_say_so(
        tiny_run: Path, copy: Callable[[str], Path]) -> None:
    other = copy("probe")
    run = Run.at(other)
    probe = run.read(ProbeClip)
    run.write(ProbeClip, probe.filter(pl.col("index") != probe["index"].max()))
    report = diff(tiny_run, other)
    assert report.changed and not report.probe.same and report.probe.only_a == 1
    assert "not comparable" in report.probe.message
    assert "not comparable" in render_text(report)
    assert "top_clips" not in report.kind_totals


def test_a_removed_neuron_is_reported_once(tiny_run: Path, copy: Callable[[str], Path]) -> None:
    from and_toolkit.records import CalibratedSummary, Summary

    other = copy("removed")
    run = Run.at(other)
    neuron = plants.first_neuron(other)
    keep = ~((pl.col("model") == neuron["model"]) & (pl.col("layer") == neuron["layer"])
             & (pl.col("unit") == neuron["unit"]))
    for record in (Summary, CalibratedSummary, ConceptSet):
        run.write(record, run.read(record).filter(keep))
    run.write_extremes(run.extremes().filter(keep))
    run.write_activations(run.activations(neuron["model"], neuron["layer"]).filter(keep))
    report = diff(tiny_run, other)
    assert report.changes.select(*plants.KEY, "kind").rows() == [
        (neuron["model"], neuron["layer"], neuron["unit"], "neuron_removed")]
    assert report.neurons_a == report.neurons_b + 1


def test_formats_json_markdown_and_escaped_html(
        tiny_run: Path, copy: Callable[[str], Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    other = copy("html")
    plants.change_summary_point(other, new="<script>alert('x')</script> & more")
    code, out, _ = cli(capsys, str(tiny_run), str(other), "--format", "json", "--top", "5")
    data = json.loads(out)
    assert code == 1 and data["changed"] and data["kind_totals"] == {"summary_high": 1}
    assert data["changes"][0]["after"] == "<script>alert('x')</script> & more"
    code, out, _ = cli(capsys, str(tiny_run), str(other), "--format", "markdown")
    assert code == 1 and "| neuron | change | detail | before | after |" in out
    assert "<script>" not in out
    page = tmp_path / "diff.html"
    code, out, _ = cli(capsys, str(tiny_run), str(other), "--format", "html", "--output",
                       str(page))
    html = page.read_text("utf-8")
    assert code == 1 and "CHANGED" in out and str(page) in out
    assert "<script>" not in html and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "http://" not in html and "https://" not in html and "<link" not in html


def test_bad_inputs_exit_2_with_one_line(
        tiny_run: Path, copy: Callable[[str], Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing"
    notrun = tmp_path / "notrun"
    notrun.mkdir()
    (notrun / "data.txt").write_text("hello")
    other = copy("version")
    concepts = other / "concepts.parquet"
    df = pl.read_parquet(concepts)
    meta = pl.read_parquet_metadata(concepts)
    df.write_parquet(concepts, metadata={**meta, "and_toolkit.schema_version": "99"})
    broken = copy("broken")
    summaries = broken / "summaries.parquet"
    pl.read_parquet(summaries).drop("points").write_parquet(
        summaries, metadata=pl.read_parquet_metadata(summaries))
    for args, words in (([str(missing), str(tiny_run)], "no such run directory"),
                        ([str(tiny_run), str(broken)], 'unable to find column "points"'),
                        ([str(tiny_run), str(notrun)], "not a run"),
                        ([str(tiny_run), str(other)], "schema version '99'"),
                        ([str(tiny_run), str(tiny_run), "--tolerance", "sloppy"],
                         "neither a preset")):
        code, out, err = cli(capsys, *args)
        assert code == 2, args
        assert out == "" and err.startswith("error: ") and words in err
        assert err.strip().count("\n") == 0, err


def test_tolerance_presets_and_files(tmp_path: Path) -> None:
    assert PRESETS["default"].score_atol == 2.0**-12 == PRESETS["default"].score_rtol
    assert PRESETS["default"].activation_atol == 2.0**-11
    assert PRESETS["strict"].score_atol == 0 and PRESETS["strict"].jaccard == 1
    assert not PRESETS["meaning"].scores and not PRESETS["meaning"].results
    assert Tolerance.from_accumulation(clips=4096).score_rtol == 2.0**-11
    toml = tmp_path / "tol.toml"
    toml.write_text('preset = "meaning"\njaccard = 0.5\nscore_atol = 1e-3\n')
    t = load_tolerance(toml)
    assert (t.jaccard, t.score_atol, t.scores, t.name) == (0.5, 1e-3, False, str(toml))
    js = tmp_path / "tol.json"
    js.write_text(json.dumps({"tolerance": {"rank_window": 3}}))
    assert load_tolerance(js).rank_window == 3 and load_tolerance(js).scores
    bad = tmp_path / "bad.toml"
    bad.write_text("jaccard = 2\nunknown = 1\n")
    with pytest.raises(ConfigError, match="jaccard.*unknown|unknown.*jaccard"):
        load_tolerance(bad)


def test_a_lower_jaccard_threshold_tolerates_one_swapped_clip(
        tiny_run: Path, copy: Callable[[str], Path]) -> None:
    other = copy("jaccard")
    plants.replace_top_clip(other)  # K = 3: one swap gives Jaccard 2/4 = 0.5
    assert diff(tiny_run, other).kind_totals == {"top_clips": 1}
    assert not diff(tiny_run, other, tolerance=Tolerance(jaccard=0.5)).changed


def test_a_baseline_round_trips_nulls_and_nans(tiny_run: Path, copy: Callable[[str], Path],
                                              tmp_path: Path) -> None:
    from and_toolkit.compare.baseline import read_baseline, write_baseline
    from and_toolkit.compare.snapshot import Snapshot

    other = copy("nan")
    run = Run.at(other)
    cs = run.read(ConceptSet)
    run.write(ConceptSet, cs.with_columns(score=pl.when(pl.col("rank") == 4)
                                          .then(float("nan")).otherwise(pl.col("score"))))
    res = run.results()["fig3"]
    run.write_result("fig3", res.with_columns(value=pl.when(pl.col("series") == "cos")
                                              .then(None).otherwise(pl.col("value"))))
    snap = Snapshot.from_run(other)
    write_baseline(snap, tmp_path / "b" / "base.yml")
    back = read_baseline(tmp_path / "b" / "base.yml")
    assert not diff(snap, back, tolerance="strict").changed
    assert not diff(back, back, tolerance="strict").changed
    assert diff(back, Snapshot.from_run(tiny_run)).changed


def test_the_package_is_callable_like_the_function(tiny_run: Path) -> None:
    import and_toolkit
    import and_toolkit.compare.report  # makes the attribute the package

    assert callable(and_toolkit.diff)
    assert not and_toolkit.diff(tiny_run, tiny_run).changed


def test_only_restricts_the_comparison(
        tiny_run: Path, copy: Callable[[str], Path], capsys: pytest.CaptureFixture[str]) -> None:
    other = copy("only")
    plants.swap_top1(other)
    assert diff(tiny_run, other).changed
    assert not diff(tiny_run, other, only=["results"]).changed
    assert diff(tiny_run, other, only=["closed"]).changed
    assert cli(capsys, str(tiny_run), str(other), "--only", "results,probe")[0] == 0
    code, _, err = cli(capsys, str(tiny_run), str(other), "--only", "activations")
    assert code == 2 and "unknown part" in err


def test_only_says_what_it_did_not_compare(
        tiny_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With --only, the header never claims a run lacks a probe or holds 0 neurons: parts left
    out are "not compared (--only)"."""
    code, out, _ = cli(capsys, str(tiny_run), str(tiny_run), "--only", "results")
    assert code == 0
    assert "compared: results (--only)" in out
    assert "probe: not compared (--only)" in out and "neurons: not compared (--only)" in out
    assert "probe.parquet" not in out and "0 in A" not in out
    code, out, _ = cli(capsys, str(tiny_run), str(tiny_run), "--only", "closed")
    n = diff(tiny_run, tiny_run).neurons_a
    assert code == 0 and "probe: not compared (--only)" in out
    assert f"neurons: {n} in A, {n} in B" in out and n
    assert "probe: the same" in cli(capsys, str(tiny_run), str(tiny_run), "--only", "probe")[1]
    code, out, _ = cli(capsys, str(tiny_run), str(tiny_run), "--only", "results",
                       "--format", "json")
    data = json.loads(out)
    assert data["only"] == ["results"] and data["neurons_a"] is None
    assert data["probe"]["message"] == "probe: not compared (--only)"
    assert json.loads(cli(capsys, str(tiny_run), str(tiny_run), "--format", "json")[1])[
        "only"] is None
