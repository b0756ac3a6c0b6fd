"""The targets stage's plan: which trainings it announces before they start, and how."""

from __future__ import annotations

import pytest

from and_toolkit.config import TargetSection
from and_toolkit.pipeline.training_plan import Planned, announce, duration
from and_toolkit.targets.config import TrainConfig


@pytest.mark.parametrize(("seconds", "text"), [
    (45.2, "45 s"), (89.0, "89 s"), (90.0, "2 min"), (2117.0, "35 min"),
    (3784.0, "1 h 03 min"), (7200.0, "2 h 00 min")])
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def _planned(tid: str, cached: bool, estimate: float | None) -> Planned:
    cfg = TrainConfig(arch="ast", epochs=40, precision="fp32", threads=2)
    return Planned(TargetSection(id=tid, arch="ast"), cfg, {}, f"k-{tid}", cached, 2000,
                   estimate)


def test_only_long_uncached_measured_trainings_are_announced(
        capsys: pytest.CaptureFixture[str]) -> None:
    plan = [_planned("ast", False, 2117.0), _planned("short", False, 12.0),
            _planned("cached", True, None), _planned("unmeasured", False, None)]
    lines = announce(plan)
    assert lines == ["[targets] ast: training 40 epochs (2000 steps), about 35 min (fp32, "
                     "2 thread(s); estimated from its measured step)"]
    assert capsys.readouterr().out == lines[0] + "\n"
