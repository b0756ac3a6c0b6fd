"""Render a :class:`~and_toolkit.compare.report.DiffReport` as text, Markdown, JSON or HTML.

Text is what the CLI prints and what the pytest fixture fails with. HTML is one
self-contained page (inline CSS, no scripts, no external assets) rendered by Jinja with
autoescape on, so labels, concepts and summary points (untrusted text) stay inert.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import jinja2

from and_toolkit.compare.report import CHANGE_KINDS, DiffReport

Format = Literal["text", "markdown", "json", "html"]
FORMATS: tuple[str, ...] = ("text", "markdown", "json", "html")
CELL = 160
"""Characters of a before / after value shown in text and Markdown (JSON keeps all)."""


def render(report: DiffReport, fmt: str = "text", top: int = 20) -> str:
    """The report in one format; ``top`` = most-changed neurons listed.

    Raises:
        ValueError: unknown format.
    """
    if fmt == "text":
        return render_text(report, top)
    if fmt == "markdown":
        return render_markdown(report, top)
    if fmt == "json":
        return json.dumps(report.to_dict(top), indent=2, allow_nan=False, default=str) + "\n"
    if fmt == "html":
        return render_html(report, top)
    raise ValueError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")


def _short(text: str, limit: int = CELL) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def tolerance_line(report: DiffReport) -> str:
    """The tolerance in one line."""
    t = report.tolerance
    scores = (f"scores |d| <= {t.score_atol:.3g} + {t.score_rtol:.3g}|x|" if t.scores
              else "scores not compared")
    results = (f"results |d| <= {t.result_atol:.3g} + {t.result_rtol:.3g}|x|" if t.results
               else "result values not compared")
    return (f"{t.name}: Jaccard >= {t.jaccard:g}, top-{t.rank_window} concept ranks, {scores}, "
            f"activations |d| <= {t.activation_atol:.3g} + {t.activation_rtol:.3g}|x|, "
            f"{results}")


def _overview(report: DiffReport) -> list[str]:
    lines = [] if report.only is None else [f"compared: {', '.join(report.only)} (--only)"]
    lines.append(report.probe.message)
    lines.append("neurons: not compared (--only)" if report.neurons_a is None
                 else f"neurons: {report.neurons_a} in A, {report.neurons_b} in B")
    for what, items in (("models added", report.models_added),
                        ("models removed", report.models_removed),
                        ("layers added", [f"{m}/{la}" for m, la in report.layers_added]),
                        ("layers removed", [f"{m}/{la}" for m, la in report.layers_removed])):
        if items:
            lines.append(f"{what}: {', '.join(items)}")
    return lines


def _num(x: float | None) -> str:
    return "null" if x is None else f"{x:.6g}"


def _result_line(r: dict[str, Any]) -> str:
    where = f"{r['experiment']} / {r['key']} ({r['metric']}" + (
        f", {r['model']})" if r["model"] else ")")
    if r["change"] == "added":
        return f"{where}: added, value {_num(r['after'])}"
    if r["change"] == "removed":
        return f"{where}: removed (was {_num(r['before'])})"
    delta = f" (delta {r['delta']:+.3g})" if r["delta"] is not None else ""
    return f"{where}: {_num(r['before'])} -> {_num(r['after'])}{delta}"


def _results_lines(report: DiffReport, top: int) -> list[str]:
    """Result changes, at most ``max(top, 1)`` lines plus "... and N more"."""
    n = max(top, 1)
    lines = [_result_line(r) for r in report.results.head(n).iter_rows(named=True)]
    if report.results.height > n:
        lines.append(f"... and {report.results.height - n} more (see --format json)")
    return lines


def render_text(report: DiffReport, top: int = 20) -> str:
    """Plain text: header, overview, counts per model / layer, most-changed neurons with
    before -> after, result changes, near-ties not counted, notes."""
    out = ["and-toolkit diff", f"  A: {report.a}", f"  B: {report.b}",
           f"  tolerance: {tolerance_line(report)}", *_overview(report),
           report.summary_line()]
    counts = report.counts
    if counts.height:
        out += ["", "Changes per model / layer:"]
        header = [c for c in counts.columns]
        rows = [[str(v) for v in row] for row in counts.iter_rows()]
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
        out.append("  " + "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
        out += ["  " + "  ".join(v.ljust(w) if i < 2 else v.rjust(w)
                                 for i, (v, w) in enumerate(zip(r, widths, strict=True)))
                for r in rows]
        neurons = report.neurons
        out += ["", f"Most-changed neurons (top {min(top, neurons.height)} of "
                    f"{neurons.height}):"]
        for row in neurons.head(top).iter_rows(named=True):
            out.append(f"  {row['model']} {row['layer']} #{row['unit']} "
                       f"({row['changes']} change{'s' if row['changes'] != 1 else ''})")
            for change in _neuron_changes(report, row):
                out.append(f"    {change}")
    if report.results.height:
        out += ["", f"Result changes ({report.results.height}):"]
        out += [f"  {line}" for line in _results_lines(report, top)]
    if report.excused:
        out += ["", "Near-ties within tolerance, not counted: "
                + ", ".join(f"{k} {v}" for k, v in report.excused.items())]
    if report.notes:
        out += ["", "Notes:", *(f"  - {n}" for n in report.notes)]
    return "\n".join(out) + "\n"


def _neuron_changes(report: DiffReport, row: dict[str, Any]) -> list[str]:
    import polars as pl

    sel = report.changes.filter((pl.col("model") == row["model"])
                                & (pl.col("layer") == row["layer"])
                                & (pl.col("unit") == row["unit"]))
    return [f"{c['kind']} {c['detail']}: {_short(c['before'])} -> {_short(c['after'])}"
            for c in sel.iter_rows(named=True)]


def _md(text: Any, limit: int = CELL) -> str:
    """Text for a Markdown cell or line: shortened, pipes and angle brackets escaped."""
    return _short(str(text), limit).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def render_markdown(report: DiffReport, top: int = 20) -> str:
    """GitHub-flavoured Markdown with the same sections as the text."""
    out = ["# and-toolkit diff", "", f"- A: `{report.a}`", f"- B: `{report.b}`",
           f"- tolerance: {_md(tolerance_line(report), 1000)}",
           *(f"- {_md(x)}" for x in _overview(report)), "", f"**{report.summary_line()}**"]
    counts = report.counts
    if counts.height:
        out += ["", "## Changes per model / layer", "",
                "| " + " | ".join(counts.columns) + " |",
                "|" + "|".join("---" for _ in counts.columns) + "|"]
        out += ["| " + " | ".join(_md(v) for v in row) + " |" for row in counts.iter_rows()]
        out += ["", f"## Most-changed neurons (top {min(top, report.neurons.height)})", "",
                "| neuron | change | detail | before | after |", "|---|---|---|---|---|"]
        top_keys = report.neurons.head(top).select("model", "layer", "unit")
        sel = report.changes.join(top_keys, on=["model", "layer", "unit"], how="semi")
        for c in sel.iter_rows(named=True):
            out.append(f"| {_md(c['model'])} {_md(c['layer'])} #{c['unit']} | {c['kind']} | "
                       f"{_md(c['detail'])} | {_md(c['before'])} | {_md(c['after'])} |")
    if report.results.height:
        out += ["", f"## Result changes ({report.results.height})", ""]
        out += [f"- {_md(line)}" for line in _results_lines(report, top)]
    if report.excused:
        out += ["", "Near-ties within tolerance, not counted: "
                + ", ".join(f"{k} {v}" for k, v in report.excused.items())]
    if report.notes:
        out += ["", "## Notes", "", *(f"- {_md(n)}" for n in report.notes)]
    return "\n".join(out) + "\n"


HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>and-toolkit diff</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;max-width:80em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .5em;
text-align:left;vertical-align:top}th{background:#f3f3f3}.num{text-align:right}
.changed{color:#a00;font-weight:bold}.same{color:#070;font-weight:bold}code{font-size:90%}
</style></head><body>
<h1>and-toolkit diff</h1>
<ul><li>A: <code>{{ a }}</code></li><li>B: <code>{{ b }}</code></li>
<li>tolerance: {{ tolerance }}</li>
{% for line in overview %}<li>{{ line }}</li>
{% endfor %}</ul>
<p class="{{ 'changed' if changed else 'same' }}">{{ summary }}</p>
{% if counts %}<h2>Changes per model / layer</h2>
<table><tr>{% for c in count_columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for row in counts %}<tr>{% for v in row %}<td{% if loop.index > 2 %} class="num"{% endif %}>{{ v }}</td>{% endfor %}</tr>
{% endfor %}</table>
<h2>Most-changed neurons</h2>
<table><tr><th>neuron</th><th>change</th><th>detail</th><th>before</th><th>after</th></tr>
{% for c in changes %}<tr><td>{{ c.model }} {{ c.layer }} #{{ c.unit }}</td><td title="{{ kinds[c.kind] }}">{{ c.kind }}</td><td>{{ c.detail }}</td><td>{{ c.before }}</td><td>{{ c.after }}</td></tr>
{% endfor %}</table>{% endif %}
{% if results %}<h2>Result changes</h2><ul>
{% for r in results %}<li>{{ r }}</li>
{% endfor %}</ul>{% endif %}
{% if excused %}<p>Near-ties within tolerance, not counted: {{ excused }}</p>{% endif %}
{% if notes %}<h2>Notes</h2><ul>{% for n in notes %}<li>{{ n }}</li>{% endfor %}</ul>{% endif %}
</body></html>
"""


def render_html(report: DiffReport, top: int = 20) -> str:
    """One self-contained, escaped HTML page."""
    env = jinja2.Environment(loader=jinja2.DictLoader({"diff.html": HTML}), autoescape=True,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    top_keys = report.neurons.head(top).select("model", "layer", "unit")
    changes = report.changes.join(top_keys, on=["model", "layer", "unit"], how="semi")
    return env.get_template("diff.html").render(
        a=report.a, b=report.b, tolerance=tolerance_line(report), overview=_overview(report),
        changed=report.changed, summary=report.summary_line(),
        count_columns=report.counts.columns, counts=list(report.counts.iter_rows()),
        changes=[{**c, "before": _short(c["before"], 400), "after": _short(c["after"], 400)}
                 for c in changes.iter_rows(named=True)],
        kinds=CHANGE_KINDS,
        results=_results_lines(report, top),
        excused=", ".join(f"{k} {v}" for k, v in report.excused.items()),
        notes=list(report.notes))
