"""The report encodings of experiment rows (experiments/encoding.py), on hand-made frames."""

from __future__ import annotations

from typing import Any

import polars as pl

from and_toolkit.experiments import encoding as enc
from and_toolkit.experiments.rows import result_key, result_row
from and_toolkit.records import ResultRow


def row(experiment: str, key: str, metric: str, value: float | None, **kw: Any) -> dict:
    return result_row(experiment, key, metric, value, **kw)


def test_fig10_rows_become_a_dumbbell() -> None:
    rows = ResultRow.frame([
        row("fig10", "m/OCP/dog/n_pruned", "n_pruned", 5.0, model="m", group="OCP",
            series="dog"),
        *[row("fig10", f"m/OCP/dog/{c}/{k}", k, v, model="m", group="OCP", series=c,
              x=float(i)) for i, c in enumerate(("dog", "cat"))
          for k, v in (("own_logit_before", 1.0), ("own_logit_after", 0.5), ("change", -0.5))],
    ])
    out = ResultRow.validate_frame(enc.fig10_rows(rows), source="fig10")
    plotted = out.filter(pl.col("x").is_not_null())
    assert plotted.height == 4  # change rows dropped
    assert set(plotted["series"]) == {"before", "after"}
    assert set(plotted["group"]) == {"dog", "cat"} and set(plotted["metric"]) == {"own_logit"}
    assert out.filter(pl.col("x").is_null()).select("group", "series").row(0) == ("dog", "OCP")
    assert set(out["key"]) <= set(rows["key"])  # keys unchanged


def fig4_rows() -> pl.DataFrame:
    rows = []
    for exp, panel, crit in (("fig4a", "4a", "nouns"), ("fig4b", "4b", "basic_adj")):
        for x in (0.0, 2.0, 12.0):
            rows.append(row(exp, result_key("m", panel, crit, "mean", x, "accuracy"), "accuracy",
                            0.5, model="m", group=crit, series="mean", x=x))
            if x:
                rows.append(row(exp, result_key("m", panel, crit, "mean", x, "n_pruned"),
                                "n_pruned", 7.0, model="m", group=crit, series="mean", x=x))
                rows += [row(exp, result_key("m", panel, crit, f"seed={s}", x, "accuracy"),
                             "accuracy", 0.4 + s / 100, model="m", group=crit,
                             series=f"seed={s}", x=x) for s in (1, 2)]
    return ResultRow.frame(rows)


def test_fig4_split_keeps_mean_curves_and_tabulates_seeds() -> None:
    out = enc.split_fig4(fig4_rows())
    assert set(out) == {"fig4a", "fig4b", "fig4c", "fig4_seeds"}
    assert out["fig4a"].height == 3 and set(out["fig4a"]["series"]) == {"mean"}
    assert out["fig4c"].height == 0
    seeds = ResultRow.validate_frame(out["fig4_seeds"], source="seeds")
    assert seeds["x"].is_null().all() and seeds["paper_value"].is_null().all()
    assert set(seeds["experiment"]) == {"fig4_seeds"}
    assert set(seeds["metric"]) == {"seed=1", "seed=2", "n_pruned"}
    assert set(seeds["group"]) == {"4a \u00b7 nouns", "4b \u00b7 basic_adj"}
    assert set(seeds["series"]) == {"2.0 %", "12.0 %"}
    # one cell per (model, group, series, metric): the report can pivot it
    assert not seeds.select("model", "group", "series", "metric").is_duplicated().any()
    # budgets zero-filled: 2 % sorts before 12 %
    assert seeds.sort("key")["series"].to_list()[:3] == ["2.0 %"] * 3
    by_key = dict(seeds.select("key", "value").iter_rows())
    assert by_key["m/4a/nouns/0002.0/seed=2"] == 0.4 + 2 / 100
    assert by_key["m/4b/basic_adj/0012.0/n_pruned"] == 7.0


def test_fig4_split_keeps_not_run_counts() -> None:
    rows = ResultRow.frame([row("fig4c", "m/4c/loud/mean/2/n_pruned", "n_pruned", None,
                                model="m", group="loud", series="mean", x=2.0,
                                note="not run: no open concepts")])
    seeds = enc.split_fig4(rows)["fig4_seeds"]
    assert seeds.select("key", "value", "note").row(0) == ("m/4c/loud/0002.0/n_pruned", None, "")


def test_label_counts_and_table6_aliases() -> None:
    assert enc.label_counts(["a", "b", "b", "c", "a", "b"]) == ["b \u00d73", "a \u00d72", "c"]
    rows = ResultRow.frame([row("table6", "m/x.y#3/n", "n", 1.0, model="m", group="x.y",
                                series="3"),
                            row("table6", "m/z#4/n", "n", 1.0, model="m", group="z",
                                series="4")])
    out = enc.table6_rows(rows, {("m", "x.y"): "block1.fc1"})
    assert out.select("group", "series").rows() == [("block1.fc1", "#3"), ("z", "#4")]
    assert out["key"].to_list() == rows["key"].to_list()
