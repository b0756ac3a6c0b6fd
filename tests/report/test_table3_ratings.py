"""Table 3 drawn from the explorer's ratings: a table beside the paper, labelled as ours."""

from __future__ import annotations

import re

import polars as pl

from and_toolkit.experiments.human_ratings import rating_table
from and_toolkit.experiments.qualitative import HumanEvalConfig
from and_toolkit.records import Rating
from and_toolkit.report.context import ReportContext
from and_toolkit.report.render import render_report


def test_table3_from_ratings_says_whose_ratings(sample_results: dict[str, pl.DataFrame],
                                               sample_context: ReportContext) -> None:
    ratings = Rating.frame([
        {"rating_id": f"{i:032x}", "model": "ast", "layer": "l", "unit": i % 2, "method": m,
         "description": "d", "rating": 2 + i % 3, "rater": "a", "comment": None,
         "created": "2026-01-01T00:00:00Z"}
        for i, m in enumerate(["TAB", "DB", "SUM"] * 2)])
    results = {**sample_results,
               "table3": rating_table(ratings, HumanEvalConfig(), {"ast": "AST"})}
    html = render_report(results, sample_context)
    section = re.search(r'<section class="result" id="table3">.*?</section>', html, re.S)
    assert section
    text = section.group(0)
    assert "<table" in text and 'class="notrun"' not in text.split("<table")[0]
    assert "not the paper&#39;s annotators" in text
    assert "our own raters&#39; ratings of this run&#39;s descriptions" in text
    assert "3.49" in text  # the paper's SUM rating beside ours
