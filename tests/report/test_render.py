"""The HTML report: escaping, strict templates, determinism, not-run boxes, index, baseline."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import jinja2
import polars as pl
import pytest

from and_toolkit.errors import RecordValidationError
from and_toolkit.records.models import ResultRow
from and_toolkit.report.context import ExtraTable, Finding, IndexEntry, Provenance, ReportContext
from and_toolkit.report.render import (
    build_sections,
    make_environment,
    render_index,
    render_report,
    summary_line,
)
from and_toolkit.report.sections import SECTIONS

XSS_SCRIPT = "<script>alert(1)</script>"
XSS_IMG = "<img src=x onerror=alert(1)>"
PAPER_IDS = ["table2", "table7", "table3", "ablation_dose", "table4", "fig10", "fig3", "fig9",
             "fig4a", "fig4b", "fig4c", "fig5", "fig6", "fig11_13", "fig8", "table6", "table8",
             "fig14", "explanation_scores"]


class _Tags(HTMLParser):
    """Collects every start tag with its attributes (what a browser would build)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    p = _Tags()
    p.feed(html)
    return p.tags


def section_html(html: str, section_id: str) -> str:
    m = re.search(rf'<section class="result" id="{section_id}">.*?</section>', html, re.S)
    assert m, f"section {section_id} missing"
    return m.group(0)


def test_sections_follow_the_paper_order_with_stable_ids(sample_html: str) -> None:
    assert [s.id for s in SECTIONS] == PAPER_IDS
    ids = re.findall(r'<section class="result" id="([^"]+)">', sample_html)
    assert ids == ["setup", *PAPER_IDS, "target_accuracy", "findings", "provenance"]
    for sid in PAPER_IDS:
        assert f'href="#{sid}"' in sample_html  # table of contents


def test_untrusted_text_renders_inert(sample_html: str) -> None:
    found = tags(sample_html)
    assert not [t for t, _ in found if t == "script"]
    assert not [t for t, _ in found if t == "img"]
    assert not [(t, a) for t, attrs in found for a in attrs if a.lower().startswith("on")]
    assert XSS_SCRIPT not in sample_html and XSS_IMG not in sample_html
    escaped_script = "&lt;script&gt;alert(1)&lt;/script&gt;"
    for where in ("setup", "table6", "table8", "notes", "provenance"):
        part = (section_html(sample_html, where) if where != "notes"
                else sample_html[sample_html.index('id="notes"'):])
        assert escaped_script in part, where
    assert "&lt;img src=x onerror=alert(1)&gt;" in section_html(sample_html, "fig3")  # SVG text
    assert "&lt;img src=x onerror=alert(1)&gt;" in section_html(sample_html, "findings")


def test_autoescape_applies_to_every_template() -> None:
    env = make_environment()
    assert env.from_string("{{ x }}").render(x=XSS_IMG) == "&lt;img src=x onerror=alert(1)&gt;"


def test_strict_undefined_raises_on_a_missing_variable() -> None:
    env = make_environment()
    with pytest.raises(jinja2.UndefinedError, match="nope"):
        env.from_string("{{ nope }}").render()
    with pytest.raises(jinja2.UndefinedError):
        env.get_template("report.html.j2").render(title="t", run_name="r")


def test_rerender_is_byte_identical_regardless_of_dict_order(
        sample_results: dict[str, pl.DataFrame], sample_context: ReportContext,
        sample_html: str) -> None:
    reordered = dict(reversed(list(sample_results.items())))
    prov = sample_context.provenance
    context = sample_context.model_copy(update={"provenance": Provenance(
        config=dict(reversed(list(prov.config.items()))),
        backends=dict(reversed(list(prov.backends.items()))),
        versions=dict(reversed(list(prov.versions.items()))),
        data_hashes=dict(reversed(list(prov.data_hashes.items()))))})
    again = render_report(reordered, context)
    assert again.encode("utf-8") == sample_html.encode("utf-8")


def test_page_is_self_contained(sample_html: str) -> None:
    found = tags(sample_html)
    assert not [t for t, _ in found if t in ("script", "link", "iframe", "object", "embed")]
    assert not [(t, a) for t, a in found if "src" in a]
    urls = re.findall(r'[\w:]+="?(https?://[^"\s]+)', sample_html)
    assert set(urls) <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
    assert sample_html.count("<svg") == 12  # 9 figures + 3 word clouds (fig4c is not run)


def test_missing_and_all_not_run_frames_render_not_run_boxes(sample_html: str) -> None:
    fig4c = section_html(sample_html, "fig4c")
    assert '<div class="notrun" role="note"><strong>not run:</strong> ' \
           "no result for experiment &#39;fig4c&#39; in this run</div>" in fig4c
    table3 = section_html(sample_html, "table3")
    assert "needs human ratings (not released by the authors)" in table3
    assert "<table" not in table3 and "<svg" not in table3
    assert 'class="notrun"' not in section_html(sample_html, "table2")


def test_partially_not_run_frame_keeps_its_rows_and_notes(sample_html: str) -> None:
    table2 = section_html(sample_html, "table2")
    assert 'class="notrun"' not in table2
    assert "<li>not run: no LLM backend for BEATs</li>" in table2
    assert 'title="not run: no LLM backend for BEATs"' in table2


def test_findings_and_provenance_are_rendered_sorted(sample_html: str) -> None:
    prov = section_html(sample_html, "provenance")
    names = re.findall(r"<tr><th>([^<]+)</th>", prov)
    assert names[:2] == ["summarizer", "text_encoder"]
    assert names[2:5] == ["matplotlib", "polars", "torch"]
    assert "&#34;k&#34;: 5,\n  &#34;note&#34;" in prov  # config JSON, sorted keys
    findings = section_html(sample_html, "findings")
    assert findings.count('class="badge holds"') == 1
    assert findings.count('class="badge does-not-hold"') == 1
    assert '<a href="#table4">' in findings


def test_a_frame_that_cannot_be_drawn_gets_an_error_box_only_in_its_section(
        sample_context: ReportContext, result_row: Any) -> None:
    dup = ResultRow.frame([result_row("table7", "a", group="DB", metric="top1", value=1.0),
                           result_row("table7", "b", group="DB", metric="top1", value=2.0)])
    ok = ResultRow.frame([result_row("table2", "a", group="DB", metric="top1", value=1.0)])
    html = render_report({"table7": dup, "table2": ok}, sample_context)
    assert "could not render:</strong> table7: rows &#39;a&#39; and &#39;b&#39;" in html
    assert "could not render" not in section_html(html, "table2")


def test_invalid_frames_and_ids_raise_clear_errors(sample_context: ReportContext,
                                                   result_row: Any) -> None:
    good = ResultRow.frame([result_row("table2", "a", metric="top1", value=1.0)])
    with pytest.raises(RecordValidationError, match=r"results\['table2'\].*value"):
        render_report({"table2": good.with_columns(pl.col("value").cast(pl.String))},
                      sample_context)
    with pytest.raises(ValueError, match="'findings' is reserved"):
        render_report({"findings": good}, sample_context)
    with pytest.raises(ValueError, match="not a section id"):
        render_report({"Fig 5": good}, sample_context)


def test_unknown_experiments_and_extra_tables_get_their_own_sections(
        result_row: Any) -> None:
    extra = ExtraTable(title="Pruned per class", columns=("class", "n"),
                       rows=({"class": "dog", "n": 2158}, {"class": XSS_IMG}))
    context = ReportContext(run_name="r", title="T", extra_tables={"pruning": (extra,)})
    frame = ResultRow.frame([result_row("sanity", "a", metric="m", value=1.0)])
    views = build_sections({"sanity": frame}, context)
    assert [v.id for v in views][-2:] == ["sanity", "additional"]
    html = render_report({"sanity": frame}, context)
    additional = section_html(html, "additional")
    assert "<td>dog</td><td>2158</td>" in additional
    assert "<td>&lt;img src=x onerror=alert(1)&gt;</td><td></td>" in additional


def test_context_validation() -> None:
    with pytest.raises(ValueError, match="Finding.section"):
        Finding(claim="c", verdict="holds", section="#x")
    with pytest.raises(ValueError, match="not columns"):
        ExtraTable(title="t", columns=("a",), rows=({"b": 1},))
    with pytest.raises(ValueError, match="verdict"):
        Finding(claim="c", verdict="maybe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="extra_tables"):
        ReportContext(run_name="r", title="t", extra_tables={"Bad Id": ()})


def test_index_lists_runs_sorted_escaped_and_linked() -> None:
    html = render_index([("zeta", "zeta/report/index.html", "second"),
                         IndexEntry(name="alpha run", path="alpha run/report/index.html",
                                    summary=XSS_SCRIPT)])
    assert html.index("alpha run") < html.index("zeta")
    assert 'href="alpha%20run/report/index.html"' in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert not [t for t, _ in tags(html) if t == "script"]
    assert render_index([]) .count("no reports yet") == 1
    for bad in ("javascript:alert(1)", "/etc/passwd", "../other/index.html", "a/../../b"):
        with pytest.raises(ValueError, match="relative path"):
            render_index([("x", bad, "")])


def _cells(table: Any) -> list[str]:
    """One line per table row: the cell texts joined by `` | ``."""
    return [" | ".join(c.text for c in r) for r in (*table.header, *table.body)]


def test_report_structure_matches_baseline(sample_results: dict[str, pl.DataFrame],
                                           sample_context: ReportContext,
                                           data_regression: Any) -> None:
    views = build_sections(sample_results, sample_context)
    data_regression.check({v.id: {
        "status": v.status, "reason": v.reason,
        "figures": [f.id for f in v.figures],
        "tables": [_cells(t) for t in v.tables],
        "data_tables": [_cells(t) for t in v.data_tables if len(t.body) <= 40],
        "extra_tables": [t.title for t in v.extra_tables],
        "notes": list(v.notes),
    } for v in views})


def test_summary_line_counts_sections_and_verdicts(sample_results: dict[str, pl.DataFrame],
                                                  sample_context: ReportContext) -> None:
    assert summary_line(sample_results, sample_context) == (
        "14/17 paper sections with results \u00b7 3 claims: 1 holds, 1 does not hold, 1 not run")
    assert summary_line({}, ReportContext(run_name="r", title="t")) == (
        "0/17 paper sections with results")
    ungraded = sample_context.model_copy(update={"not_graded": "synthetic data"})
    assert summary_line(sample_results, ungraded) == (
        "14/17 paper sections with results \u00b7 3 claims: 3 not graded (synthetic data)")


def test_setup_comes_first_with_one_tile_per_finding(sample_html: str,
                                                     sample_context: ReportContext) -> None:
    first = re.search(r'<section class="result" id="([^"]+)">', sample_html)
    assert first and first.group(1) == "setup"
    setup = section_html(sample_html, "setup")
    assert setup.count('<li class="tile ') == len(sample_context.findings)
    for f in sample_context.findings:
        assert f'class="tile {f.verdict.replace(" ", "-")}"' in setup
    assert 'href="#table2">evidence: Table 2<' in setup
    for item in sample_context.setup:
        assert f"<td class=\"label\">{item.item}</td>" in setup


def test_every_paper_item_is_accounted_for(sample_html: str) -> None:
    """A section per paper table / figure; Fig 14 (never in a run) says why it is not run."""
    for spec in SECTIONS:
        part = section_html(sample_html, spec.id)
        if 'class="notrun"' in part:
            assert re.search(r"<strong>not run:</strong> \S", part), spec.id
    fig14 = section_html(sample_html, "fig14")
    assert "GTZAN" in fig14 and "not available offline" in fig14
    counts = re.search(r"<b>(\d+) / (\d+)</b>paper items with results", sample_html)
    assert counts and int(counts.group(2)) == sum(s.paper for s in SECTIONS)
    ok = sum('badge ok">ok<' in section_html(sample_html, s.id) for s in SECTIONS if s.paper)
    assert int(counts.group(1)) == ok


def test_known_differences_show_where_the_numbers_are(sample_html: str) -> None:
    t7 = section_html(sample_html, "table7")
    assert 'class="explain"' in t7 and "per-neuron" not in t7.split("explain")[0]
    assert "2 / 10 / 0.23" in t7 and "two separate prompts" in t7
    assert "picked for each cell" in section_html(sample_html, "table2")
    assert "TAB" in section_html(sample_html, "table6").split('class="explain"')[1][:400]


def test_seed_rows_become_mean_with_error_bars_and_paper_gets_its_own_panel(
        sample_html: str) -> None:
    fig4a = section_html(sample_html, "fig4a")
    assert "this run" in fig4a and "\u00b1 1 SD over seeds" in fig4a
    assert "mean of 3 seeds" in fig4a  # figure data: one mean per x, the note says so
    assert "on their own axis because the scales differ" in fig4a
    fig10 = section_html(sample_html, "fig10")
    assert "target class" in fig10 and "paper (read-off)" in fig10


def test_shares_of_neurons_for_figures_3_and_9(sample_html: str, sample_results: dict[
        str, pl.DataFrame], sample_context: ReportContext) -> None:
    assert "neurons with the adjective (%)" in section_html(sample_html, "fig9")
    without = {k: v for k, v in sample_results.items() if k != "target_accuracy"}
    html = render_report(without, sample_context)
    part = section_html(html, "fig9")
    assert "could not render" in part and "target_accuracy" in part


def test_synthetic_run_grades_nothing(sample_results: dict[str, pl.DataFrame],
                                      sample_context: ReportContext) -> None:
    ctx = sample_context.model_copy(update={"not_graded": "synthetic data"})
    html = render_report(sample_results, ctx)
    setup = section_html(html, "setup")
    assert setup.count("not graded: synthetic data</span>") == len(ctx.findings)
    assert 'badge holds' not in html and 'badge does-not-hold' not in html
    assert "<strong>not graded: synthetic data.</strong>" in html


def test_index_row_has_models_and_verdicts() -> None:
    html = render_index([IndexEntry(name="esc50", path="esc50/index.html",
                                    summary="14/17 paper sections with results",
                                    models=("ast (AST): 37.5 % (paper 95.0 %)", XSS_IMG))])
    assert "<li>ast (AST): 37.5 % (paper 95.0 %)</li>" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert html.count("<tr>") == 2  # header + one row per report


def test_synthetic_captions_say_not_graded(sample_results: dict[str, pl.DataFrame],
                                           sample_context: ReportContext) -> None:
    ctx = sample_context.model_copy(update={"not_graded": "synthetic data"})
    html = render_report(sample_results, ctx)
    for spec in SECTIONS:
        assert "Pipeline demo on synthetic data: not graded" in section_html(html, spec.id)


def test_descriptor_variant_ids_reuse_the_paper_section_spec() -> None:
    from and_toolkit.report.sections import SECTIONS_BY_ID, generic_spec

    spec = generic_spec("fig8_descriptors")
    assert spec.kind == SECTIONS_BY_ID["fig8"].kind == "distribution"
    assert spec.id == "fig8_descriptors" and "captions + descriptors (variant)" in spec.title
    assert "never a finding" in spec.caption
    assert generic_spec("elbow").kind == "table"
    assert generic_spec("nothing_descriptors").kind == "table"
