"""``CachedEvaluate``: one forward pass per distinct mask and target, cached on disk, its
passes counted and timed for the experiments stage's per-target timing."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from and_toolkit.cache import Cache
from and_toolkit.config import parse_config
from and_toolkit.pipeline import pruned_eval
from and_toolkit.pipeline.context import Context
from and_toolkit.run import Run


def _evaluate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, calls: list[Any]
              ) -> pruned_eval.CachedEvaluate:
    cfg = parse_config({"name": "t", "targets": [{"id": "cnn", "arch": "cnn"}]})
    ctx = Context(cfg=cfg, run=Run.at(tmp_path / "run"), cache=Cache(tmp_path / "cache"),
                  progress=False)
    loaded = SimpleNamespace(weights_key="w" * 64)
    monkeypatch.setattr(pruned_eval, "load_target", lambda c, t: loaded)

    def logits_on(c: Any, lt: Any, rows: np.ndarray, mask: dict[str, np.ndarray]) -> np.ndarray:
        calls.append(sorted(mask))
        sum(range(200_000))  # some CPU, so that the timers move
        return np.full((rows.size, 3), float(sum(int(m.sum()) for m in mask.values())))

    monkeypatch.setattr(pruned_eval, "logits_on", logits_on)
    return pruned_eval.CachedEvaluate(ctx, cfg.targets[0], np.arange(4, dtype=np.int64))


def test_each_distinct_mask_is_one_timed_forward_pass(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    ev = _evaluate(tmp_path, monkeypatch, calls)
    one = {"l1": np.array([True, False]), "l2": np.zeros(3, dtype=bool)}
    two = {"l1": np.array([True, True]), "l2": np.zeros(3, dtype=bool)}
    assert ev(one)[0, 0] == 1.0 and ev(two)[0, 0] == 2.0
    assert ev({"l1": np.array([True, False])})[0, 0] == 1.0  # same pruned units: cached
    assert calls == [["l1"], ["l1"]]  # all-False layers are not passed on
    timing = ev.timing()
    assert timing["calls"] == 3 and timing["forward_passes"] == 2
    assert timing["cached"] == 0  # the repeat was computed by this evaluator, not read
    assert ev.wall_s > 0 and ev.cpu_s > 0  # (timing() rounds them to 0.01 s)


def test_a_warm_cache_performs_no_forward_pass(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    mask = {"l1": np.array([False, True])}
    first = _evaluate(tmp_path, monkeypatch, [])
    first(mask)
    calls: list[Any] = []
    again = _evaluate(tmp_path, monkeypatch, calls)
    assert again(mask)[0, 0] == 1.0 and again(mask)[0, 0] == 1.0 and calls == []
    timing = again.timing()
    assert {k: timing[k] for k in ("calls", "forward_passes", "wall_s", "cpu_s", "cached",
                                   "cached_without_cost")} == {
        "calls": 2, "forward_passes": 0, "wall_s": 0.0, "cpu_s": 0.0, "cached": 1,
        "cached_without_cost": 0}
    # what producing the cached pass cost, as measured when it ran
    assert timing["cached_cost_cpu_s"] == round(first.cpu_s, 2)
    assert timing["cached_cost_wall_s"] == round(first.wall_s, 2)


def test_a_pass_cached_without_its_cost_is_counted(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    mask = {"l1": np.array([True, True])}
    _evaluate(tmp_path, monkeypatch, [])(mask)
    for entry in (tmp_path / "cache" / "logits-cost").rglob("*"):
        if entry.is_file():
            entry.unlink()  # as if cached by a version that stored no cost
    again = _evaluate(tmp_path, monkeypatch, [])
    again(mask)
    timing = again.timing()
    assert timing["cached"] == 1 and timing["cached_without_cost"] == 1
    assert timing["cached_cost_wall_s"] == 0.0


def test_info_shows_each_targets_recording_and_pruned_passes(tmp_path: Path) -> None:
    from and_toolkit.validation import info_text, run_info

    run = Run.at(tmp_path / "run")
    run.mark_stage("record", _execution={"engine": "local"},
                   cnn={"layers": ["l1"], "resources": {"wall_s": 3.25, "cpu_s": 6.5}},
                   ast={"layers": ["l1"], "reused": "abcd"})
    run.mark_stage("experiments", pruning={"cnn": {"calls": 9, "forward_passes": 7,
                                                   "wall_s": 12.5, "cpu_s": 24.0, "cached": 2}})
    info = run_info(tmp_path / "run")
    assert set(info["per_target"]) == {"ast", "cnn"}
    assert info["per_target"]["cnn"]["pruning"]["forward_passes"] == 7
    lines = info_text(info).splitlines()
    cnn = next(line for line in lines if line.startswith("cnn "))
    assert cnn.split() == ["cnn", "3.2", "6.5", "7", "12.5", "24.0", "2"]
    ast = next(line for line in lines if line.startswith("ast "))
    assert ast.split() == ["ast", "reused", "-", "-", "-", "-", "-"]
