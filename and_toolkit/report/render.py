"""Render a run's result frames into one self-contained HTML page, and the index of runs.

The page has inline CSS and inline SVG figures, no scripts and no external assets, so it opens
offline. Jinja runs with autoescape on for every template and ``StrictUndefined``: captions and
LLM text are untrusted and render as inert text, and a missing template variable is an error.
The same inputs always give byte-identical HTML (no timestamps; dicts are rendered sorted).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from urllib.parse import quote

import jinja2
import polars as pl

from and_toolkit.records.models import ResultRow
from and_toolkit.report.context import (
    VERDICTS,
    IndexEntry,
    Provenance,
    ReportContext,
    check_section_id,
)
from and_toolkit.report.parallel import SectionJob, build_views
from and_toolkit.report.sections import RESERVED_IDS, SECTIONS, SECTIONS_BY_ID, generic_spec
from and_toolkit.report.views import SectionView, not_run_reason

ADDITIONAL_ID = "additional"


def make_environment() -> jinja2.Environment:
    """The report's Jinja environment (templates shipped in ``and_toolkit/report/templates``).

    Returns:
        An environment with autoescape on for every template and ``StrictUndefined``.
    """
    return jinja2.Environment(
        loader=jinja2.PackageLoader("and_toolkit.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _provenance(p: Provenance) -> dict[str, object]:
    tables = [("Backends", sorted(p.backends.items())),
              ("Package versions", sorted(p.versions.items())),
              ("Data hashes", sorted(p.data_hashes.items()))]
    config = json.dumps(p.config, sort_keys=True, indent=2, default=str, ensure_ascii=False)
    return {"tables": tables, "config": config}


def _check_results(results: Mapping[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    out = {}
    for name in sorted(results):
        check_section_id(name, "results")
        if name in RESERVED_IDS:
            raise ValueError(f"results: {name!r} is reserved for the page itself; rename the "
                             "experiment")
        df = results[name]
        if not isinstance(df, pl.DataFrame):
            raise ValueError(f"results[{name!r}]: expected a polars DataFrame, got "
                             f"{type(df).__name__}")
        out[name] = ResultRow.validate_frame(df, source=f"results[{name!r}]")
    return out


def section_jobs(results: Mapping[str, pl.DataFrame], context: ReportContext
                 ) -> list[SectionJob]:
    """The result sections of a report, in page order: paper sections in the paper's order,
    then result frames without a paper section (sorted by id).

    Raises:
        RecordValidationError: if a frame does not conform to ResultRow.
        ValueError: if a result id is not a valid / free section id.
    """
    frames = _check_results(results)
    extra = context.extra_tables
    specs = [*SECTIONS, *map(generic_spec, sorted(set(frames) - set(SECTIONS_BY_ID)))]
    return [SectionJob(spec, frames.get(spec.id), tuple(extra.get(spec.id, ())), frames)
            for spec in specs]


def build_sections(results: Mapping[str, pl.DataFrame], context: ReportContext, *,
                   workers: int | None = None) -> list[SectionView]:
    """The section views of a report, in page order.

    Paper sections come first in the paper's order; result frames without a paper section follow
    (sorted by id), then one "Additional tables" section for extra tables of other ids. A report
    with enough figures is drawn on two processes (:mod:`and_toolkit.report.parallel`), with the
    same views as in one.

    Args:
        results: experiment id -> ResultRow frame.
        context: the report context.
        workers: 1 = draw in this process only; 2 = also in one worker process when the figures
            are worth it; None (default) = 2 when two CPUs are available.

    Returns:
        The section views.

    Raises:
        RecordValidationError: if a frame does not conform to ResultRow.
        ValueError: if a result id is not a valid / free section id.
        ReportWorkerError: if the worker process dies.
    """
    views = build_views(section_jobs(results, context), workers=workers)
    extra = context.extra_tables
    leftover = sorted(set(extra) - set(SECTIONS_BY_ID) - set(results))
    if leftover:
        tables = tuple(t for name in leftover for t in extra[name])
        views.append(SectionView(
            id=ADDITIONAL_ID, title="Additional tables", toc="extra tables", status="ok",
            caption="Tables supplied with the run that belong to no paper section.",
            extra_tables=tables))
    return views


def render_report(results: Mapping[str, pl.DataFrame], context: ReportContext, *,
                  workers: int | None = None) -> str:
    """Render one run's report as a self-contained HTML page.

    Args:
        results: experiment id (e.g. ``"table7"``) -> ResultRow frame. Missing paper experiments
            and frames whose rows all carry a ``not run: ...`` note render as "not run" boxes.
        context: run name, title, provenance, findings, extra tables and notes.
        workers: processes drawing the figures (see :func:`build_sections`).

    Returns:
        The HTML text (UTF-8 when written).

    Raises:
        RecordValidationError: if a frame does not conform to ResultRow.
        ValueError: if a result id is invalid or reserved.
        jinja2.UndefinedError: if a template refers to a variable that is not provided.
        ReportWorkerError: if the worker process dies.
    """
    sections = build_sections(results, context, workers=workers)
    if context.not_graded:
        sections = [replace(s, caption=f"Pipeline demo on {context.not_graded}: not graded "
                            f"against the paper. {s.caption}") if s.id in SECTIONS_BY_ID else s
                    for s in sections]
    paper = [s for s in sections if s.id in SECTIONS_BY_ID and SECTIONS_BY_ID[s.id].paper]
    counts = {k: sum(s.status == v for s in paper)
              for k, v in (("ok", "ok"), ("not_run", "not run"), ("error", "error"))}
    counts["paper"] = sum(s.paper for s in SECTIONS)
    titles = {s.id: s.title.split(" \u00b7 ")[0] for s in sections}
    tiles = [{"claim": f.claim, "verdict": f"not graded: {context.not_graded}"
              if context.not_graded else f.verdict, "cls": "not-graded" if context.not_graded
              else f.verdict.replace(" ", "-"), "evidence": f.evidence, "section": f.section,
              "ref": titles.get(f.section or "", f.section or "")} for f in context.findings]
    template = make_environment().get_template("report.html.j2")
    return template.render(
        title=context.title, run_name=context.run_name, sections=sections, counts=counts,
        verdicts=verdict_counts(context), findings=context.findings, notes=context.notes,
        provenance=_provenance(context.provenance), setup=context.setup, tiles=tiles,
        timings=context.timings, not_graded=context.not_graded)


def verdict_counts(context: ReportContext) -> list[tuple[str, int]]:
    """``[(verdict, count)]`` of the verdicts present, in :data:`VERDICTS` order; a run that
    grades nothing gives ``[("not graded", n)]``."""
    verdicts = [f.verdict for f in context.findings]
    if context.not_graded:
        return [("not graded", len(verdicts))] if verdicts else []
    return [(v, verdicts.count(v)) for v in VERDICTS if v in verdicts]


def summary_line(results: Mapping[str, pl.DataFrame], context: ReportContext) -> str:
    """One line for the index of runs, e.g. ``"14/16 paper sections with results · 3 claims:
    1 holds, 1 does not hold, 1 not run"``. Draws no figures.

    Args:
        results: experiment id -> ResultRow frame.
        context: the report context.

    Returns:
        The summary text.
    """
    paper = [s for s in SECTIONS if s.paper]
    done = sum(not_run_reason(results.get(s.id), s.id) is None or bool(
        context.extra_tables.get(s.id)) for s in paper)
    parts = [f"{done}/{len(paper)} paper sections with results"]
    n = len(context.findings)
    if n:
        counts = ", ".join(f"{c} {v}" for v, c in verdict_counts(context))
        parts.append(f"{n} claim{'s' if n > 1 else ''}: {counts}"
                     + (f" ({context.not_graded})" if context.not_graded else ""))
    return " \u00b7 ".join(parts)


def render_index(runs: Sequence[IndexEntry | tuple[str, str, str]],
                 title: str = "and-toolkit reports") -> str:
    """Render ``reports/index.html``: a link to every run's report, sorted by run name.

    Args:
        runs: ``(name, relative path, summary)`` triples or :class:`IndexEntry` objects.
        title: page title.

    Returns:
        The HTML text.

    Raises:
        ValueError: if a path is absolute, has a URL scheme or climbs out with ``..``.
    """
    entries = sorted((r if isinstance(r, IndexEntry) else IndexEntry(name=r[0], path=r[1],
                                                                     summary=r[2])
                      for r in runs), key=lambda e: (e.name, e.path))
    rows = [{"name": e.name, "href": quote(e.path), "summary": e.summary, "models": e.models}
            for e in entries]
    return make_environment().get_template("index.html.j2").render(title=title, runs=rows)
