"""The report drawn on two processes: byte-identical to one, errors and a dead worker surface,
small reports start no process (and_toolkit.report.parallel)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

import and_toolkit
from and_toolkit.report import parallel
from and_toolkit.report.context import ReportContext
from and_toolkit.report.parallel import (
    MIN_PARALLEL_SECONDS,
    ReportWorkerError,
    SectionJob,
    WorkerTraceback,
    build_views,
    claim_order,
    estimated_seconds,
    use_worker,
)
from and_toolkit.report.render import render_report, section_jobs

WAIT_SECONDS = 120.0
"""How long this process waits for the worker's first section before the test fails."""


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[parallel._Worker]:
    """Every worker started during the test. This process's first claim waits until the worker
    has taken a section, so the worker surely builds one (whatever the machine's speed)."""
    workers: list[parallel._Worker] = []
    init, claim = parallel._Worker.__init__, parallel._Worker.claim_back

    def tracked(self: parallel._Worker, queued: list[SectionJob]) -> None:
        workers.append(self)
        init(self, queued)

    def after_the_worker(self: parallel._Worker) -> int | None:
        deadline = time.monotonic() + WAIT_SECONDS
        while self.taken == 0 and self._failure is None:
            assert time.monotonic() < deadline, "the worker took no section"
            time.sleep(0.01)
        return claim(self)

    monkeypatch.setattr(parallel._Worker, "__init__", tracked)
    monkeypatch.setattr(parallel._Worker, "claim_back", after_the_worker)
    return workers


def _larger(results: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """The sample results with three descriptor variants: enough figures for two processes."""
    more = {f"{k}_descriptors": results[k].with_columns(experiment=pl.lit(f"{k}_descriptors"))
            for k in ("fig4b", "fig5", "fig9")}
    return {**results, **more}


def _jobs(results: dict[str, pl.DataFrame], context: ReportContext, *ids: str
          ) -> list[SectionJob]:
    by_id = {j.spec.id: j for j in section_jobs(results, context)}
    return [by_id[i] for i in ids]


def _broken(job: SectionJob, column: str) -> SectionJob:
    """``job`` split into panels by a column frames do not have: drawing raises polars'
    ColumnNotFoundError (not a ValueError, which a section turns into its error box)."""
    return replace(job, spec=replace(job.spec, panel_by=(column,)))


@pytest.mark.slow
def test_two_processes_give_the_same_page_as_one(sample_results: dict[str, pl.DataFrame],
                                                 sample_context: ReportContext,
                                                 started: list[parallel._Worker]) -> None:
    results = _larger(sample_results)
    costs = [estimated_seconds(j) for j in section_jobs(results, sample_context)]
    assert sum(costs) >= MIN_PARALLEL_SECONDS  # goes parallel at the default threshold
    one = render_report(results, sample_context, workers=1)
    assert started == []
    two = render_report(results, sample_context, workers=2)
    assert len(started) == 1 and started[0].taken > 0
    assert two == one
    assert "fig9_descriptors-fig" in two


@pytest.mark.slow
def test_an_error_in_the_worker_keeps_its_type_and_message(
        sample_results: dict[str, pl.DataFrame], sample_context: ReportContext,
        started: list[parallel._Worker], monkeypatch: pytest.MonkeyPatch) -> None:
    fig5, fig6, fig4a = _jobs(sample_results, sample_context, "fig5", "fig6", "fig4a")
    # page order: fig5, broken fig6 (the worker's), broken fig4a (this process's)
    jobs = [fig5, _broken(fig6, "no_such_column"), _broken(fig4a, "another_missing_column")]
    with pytest.raises(pl.exceptions.ColumnNotFoundError) as one:
        build_views(jobs, workers=1)
    monkeypatch.setattr(parallel, "MIN_PARALLEL_SECONDS", 0.0)
    monkeypatch.setattr(parallel, "claim_order", lambda costs: [1, 0, 2])  # worker: broken fig6
    with pytest.raises(pl.exceptions.ColumnNotFoundError) as two:
        build_views(jobs, workers=2)
    assert len(started) == 1 and started[0].taken >= 1
    assert type(two.value) is type(one.value)
    assert str(two.value) == str(one.value) and "no_such_column" in str(two.value)
    assert isinstance(two.value.__cause__, WorkerTraceback)
    assert "build_section" in str(two.value.__cause__)  # the worker's traceback


@pytest.mark.slow
def test_a_dead_worker_raises_a_clear_error(sample_results: dict[str, pl.DataFrame],
                                            sample_context: ReportContext,
                                            started: list[parallel._Worker],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    jobs = _jobs(sample_results, sample_context, "fig4a", "fig4b", "fig5", "fig6", "fig11_13")
    monkeypatch.setattr(parallel, "MIN_PARALLEL_SECONDS", 0.0)
    claim = parallel._Worker.claim_back  # waits for the worker's first section (fixture)

    def kill_then_claim(self: parallel._Worker) -> int | None:
        k = claim(self)
        if self.pid is not None and self._proc.is_alive():
            os.kill(self.pid, signal.SIGKILL)
        return k

    monkeypatch.setattr(parallel._Worker, "claim_back", kill_then_claim)
    with pytest.raises(ReportWorkerError, match="worker process was killed by SIGKILL"):
        build_views(jobs, workers=2)
    assert len(started) == 1 and not started[0]._proc.is_alive()


def test_small_reports_start_no_process(sample_results: dict[str, pl.DataFrame],
                                        sample_context: ReportContext, sample_html: str,
                                        started: list[parallel._Worker]) -> None:
    costs = [estimated_seconds(j) for j in section_jobs(sample_results, sample_context)]
    assert 0 < sum(costs) < MIN_PARALLEL_SECONDS
    assert render_report(sample_results, sample_context, workers=2) == sample_html
    assert started == []


def test_workers_argument_and_threshold() -> None:
    big, small = [MIN_PARALLEL_SECONDS / 2] * 2, [MIN_PARALLEL_SECONDS / 3] * 2
    assert use_worker(big, 2) and not use_worker(small, 2) and not use_worker(big, 1)
    with pytest.raises(ValueError, match="workers"):
        use_worker(big, 3)


def test_claim_order_gives_each_side_its_big_sections_first() -> None:
    costs = [0.0, 2.5, 0.1, 1.0, 0.9, 0.2, 0.0]
    order = claim_order(costs, head_start=1.0)
    assert sorted(order) == list(range(len(costs)))
    assert order[-1] == 1  # this process starts at once with the most expensive
    assert order[0] == 3  # the worker, 1 s late, starts with the next one
    assert {order[len(order) // 2], order[len(order) // 2 - 1]} <= {0, 2, 5, 6}  # cheap middle


def test_the_worker_imports_no_torch() -> None:
    """The worker imports the report modules and the command's main module: no torch,
    transformers or ONNX Runtime (a spawn child pays for every import)."""
    heavy = ("torch", "transformers", "onnxruntime")
    code = ("import sys, and_toolkit.cli, and_toolkit.report.parallel; "
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r}))")
    env = {**os.environ, "PYTHONPATH": str(Path(and_toolkit.__file__).parents[1])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True, timeout=120)
    assert out.stdout.strip() == "[]"
