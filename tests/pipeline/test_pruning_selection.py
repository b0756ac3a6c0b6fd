"""``experiments.pruning_models``: which targets the pruning experiments (Table 4 / Fig 10,
Fig 4, the dose check) run on, and the "not run" rows of the others."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import polars as pl
import pytest

from and_toolkit.config import parse_config
from and_toolkit.errors import ConfigError
from and_toolkit.pipeline import pruning_jobs as jobs
from and_toolkit.pipeline.experiment_inputs import Inputs, ModelInfo
from and_toolkit.records.models import ResultRow

TARGETS = [{"id": "ast", "arch": "ast"}, {"id": "cnn", "arch": "cnn"},
           {"id": "yam", "arch": "yamnet-frozen"}]


def _inputs(experiments: dict[str, Any]) -> Inputs:
    cfg = parse_config({"name": "t", "targets": TARGETS, "experiments": experiments})
    infos = [ModelInfo(target=t, paper_model=t.paper_model_id, layers={"l": 2, "fc": 2},
                       classifier="fc", class_names=["a", "b"],
                       test_rows=np.arange(2, dtype=np.int64), test_clips=pl.DataFrame(),
                       neurons=pl.DataFrame()) for t in cfg.targets]
    return Inputs(ctx=SimpleNamespace(cfg=cfg), infos=infos,  # type: ignore[arg-type]
                  concepts=pl.DataFrame(), extremes=pl.DataFrame(), reasons={})


def test_default_prunes_every_target() -> None:
    inp = _inputs({})
    assert [i.id for i in jobs._prunable(inp, inp.infos)] == ["ast", "cnn", "yam"]
    rows = jobs._unpruned_rows(inp, ("table4",), inp.infos)
    assert rows["table4"].height == 0


def test_left_out_targets_get_a_not_run_row_naming_the_field() -> None:
    inp = _inputs({"pruning_models": ["ast", "cnn"]})
    assert [i.id for i in jobs._prunable(inp, inp.infos)] == ["ast", "cnn"]
    rows = jobs._unpruned_rows(inp, ("table4", "fig10"), inp.infos)
    for e in ("table4", "fig10"):
        ResultRow.validate_frame(rows[e])
        assert rows[e]["model"].to_list() == ["yam"]
        assert rows[e]["experiment"].to_list() == [e]
        note = rows[e]["note"].item()
        assert note.startswith("not run: ") and "experiments.pruning_models" in note
        assert "ast, cnn" in note


def test_fig4_default_targets_intersect_pruning_models() -> None:
    inp = _inputs({"pruning_models": ["ast", "cnn"]})
    assert [i.id for i in jobs._fig4_chosen(inp)] == ["ast", "yam"]  # both stand for the AST
    assert [i.id for i in jobs._fig4_models(inp)] == ["ast"]


def test_dose_with_no_prunable_target_is_not_run() -> None:
    out = jobs.job_dose(_inputs({"pruning_models": []}))
    note = out.frames["ablation_dose"]["note"].item()
    assert note == "not run: no target in experiments.pruning_models"


def test_fig4_with_no_prunable_target_says_why() -> None:
    out = jobs.job_ablation(_inputs({"pruning_models": ["cnn"]}))
    assert set(out.frames) == {"fig4a", "fig4b", "fig4c", "fig4_seeds"}
    assert all(f["note"].item() == "not run: no Fig 4 target in experiments.pruning_models"
               for f in out.frames.values())


def test_unknown_id_is_a_config_error() -> None:
    inp = _inputs({"pruning_models": ["ast", "nope"]})
    with pytest.raises(ConfigError, match="experiments.pruning_models"):
        jobs._prunable(inp, inp.infos)


def test_an_ast_stand_in_left_out_of_fig4_models_gets_a_not_run_row() -> None:
    inp = _inputs({"fig4_models": ["ast"]})
    assert [i.id for i in jobs._fig4_chosen(inp)] == ["ast"]
    rows = jobs._fig4_left_out(inp, ("fig4b", "fig4c"))
    for e in ("fig4b", "fig4c"):
        ResultRow.validate_frame(rows[e])
        assert rows[e]["model"].to_list() == ["yam"]  # the CNN stands for BEATs: no row
        assert rows[e]["note"].item() == "not run: not in experiments.fig4_models (ast)"
    assert jobs._fig4_left_out(_inputs({}), ("fig4b",)) == {}
