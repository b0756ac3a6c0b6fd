"""The target_accuracy result: every target beside the paper model it stands for."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from and_toolkit.experiments.paper import PAPER_NEURONS, PAPER_TEST_ACCURACY
from and_toolkit.pipeline.experiment_stage import job_accuracy


def test_every_target_has_its_paper_models_accuracy_and_neurons() -> None:
    stage = {"a": {"test_accuracy": 0.4}, "f": {"test_accuracy": 0.15}, "c": {}}
    run = SimpleNamespace(stage_info=lambda name: stage if name == "targets" else {})
    infos = [SimpleNamespace(id="a", paper_model="AST", layers={"l": 10}),
             SimpleNamespace(id="f", paper_model="BEATs-frozen", layers={"l": 5, "m": 3}),
             SimpleNamespace(id="c", paper_model="BEATs-finetuned", layers={"l": 2})]
    inp: Any = SimpleNamespace(ctx=SimpleNamespace(run=run), infos=infos)
    frame = job_accuracy(inp).frames["target_accuracy"]
    got = {(r["model"], r["metric"]): r for r in frame.iter_rows(named=True)}
    for tid, paper in (("a", "AST"), ("f", "BEATs-frozen"), ("c", "BEATs-finetuned")):
        assert got[(tid, "test_accuracy")]["paper_value"] == PAPER_TEST_ACCURACY[paper]
        assert got[(tid, "neurons")]["paper_value"] == PAPER_NEURONS[paper]
        assert paper in got[(tid, "test_accuracy")]["note"]
    assert got[("f", "neurons")]["value"] == 8.0 and got[("c", "test_accuracy")]["value"] is None
