"""Build a report's section views on two cores: this process and one spawned worker process.

Drawing the figures (matplotlib to SVG) is most of a report's time, on one core. When a report
has enough of it (:data:`MIN_PARALLEL_SECONDS`), :func:`build_views` starts ONE worker process
with the ``spawn`` method (never ``fork``: the caller runs torch / OpenMP, ONNX Runtime and
polars thread pools, and a forked child of those can deadlock). Both processes take sections
from the two ends of one queue held here: the worker from the front (a thread here hands it one
at a time), this process from the back. Each side starts with its share of the expensive
sections (:func:`claim_order`) and the cheap ones meet in the middle: the worker's start-up
(about 1 s of imports, no torch) overlaps this process's own drawing, and the split balances
itself whatever the estimates are worth. Each section is built by the same
:func:`~and_toolkit.report.views.build_section` on the same data either way, so the page is
byte-identical to a sequential build. Like every ``spawn`` child, the worker imports the
caller's ``__main__`` module (as ``__mp_main__``): the ``and-toolkit`` command's is light; a
script that renders a report must keep its work under ``if __name__ == "__main__":``.

Failures: every section is attempted, then the exception of the first failing section in page
order is raised (what a sequential build raises), with its type and message; one raised in the
worker has the worker's traceback as its cause. A worker that dies or fails to start raises
:class:`ReportWorkerError` (no report is written); nothing waits on a dead worker.
"""

from __future__ import annotations

import multiprocessing
import pickle
import signal
import threading
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from types import MappingProxyType
from typing import Any

import polars as pl

from and_toolkit.report.context import ExtraTable
from and_toolkit.report.sections import SectionSpec
from and_toolkit.report.views import SectionView, build_section, not_run_reason
from and_toolkit.resources import usable_cores

MIN_PARALLEL_SECONDS = 3.0
"""Estimated drawing time (s, :func:`estimated_seconds`) from which a report is built on two
processes. The worker needs about 1 s to start (spawn, imports) and ~0.2 s more for its first
figure, during which this process draws alone, and its start-up takes CPU from anything else
running: below about 3 s of drawing (e.g. the unit tests' sample report, ~2.7 s) the saving
is a few hundred ms at best, so such a report stays in one process."""
SECONDS_PER_ROW: Mapping[str, tuple[float, float]] = MappingProxyType({
    "line": (0.12, 0.004), "bar": (0.12, 0.01), "dumbbell": (0.12, 0.006),
    "distribution": (0.12, 0.00005), "wordcloud": (0.02, 0.0015)})
"""Estimated drawing time of a section by kind: ``(fixed s, s per plotted row)``. Fitted on the
demo run's and the test sample's figures on the 2-core reference machine (a 558-row line plot
of 28 panels takes about 2.5 s, a 12-row one 0.13 s; a distribution's rows are values
summarised by violins, 15,000 of them about 0.9 s; word clouds are cheap). Other kinds draw no
figure."""
STOP_SECONDS = 5.0
"""How long (s) a worker that was told to stop may take to exit before it is killed."""
_STOP = -1  # the queue position that tells the worker to exit


def read_only(items: dict[Any, Any]) -> MappingProxyType[Any, Any]:
    """``MappingProxyType(items)``: section specs hold read-only mappings (``headers``), which
    multiprocessing's pickler (only it: not the process-wide registry) sends as copies."""
    return MappingProxyType(items)


ForkingPickler.register(MappingProxyType, lambda proxy: (read_only, (dict(proxy),)))


class ReportWorkerError(RuntimeError):
    """The report's worker process died or failed to start: the report is not built."""


class WorkerTraceback(Exception):
    """The traceback, formatted in the worker, of an exception raised there (the cause of the
    exception re-raised here)."""

    def __str__(self) -> str:
        return "\n" + str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class SectionJob:
    """One section to build: the arguments of :func:`build_section`.

    ``results`` is every frame of the run (read for ``spec.share_of``); it is the same mapping
    for all jobs, so pickling the jobs together sends it once.
    """

    spec: SectionSpec
    frame: pl.DataFrame | None
    extra: tuple[ExtraTable, ...]
    results: Mapping[str, pl.DataFrame]

    def build(self) -> SectionView:
        return build_section(self.spec, self.frame, self.extra, self.results)


Outcome = tuple[SectionView | None, BaseException | None, str]
"""``(view, None, "")`` or ``(None, exception, the worker's traceback or "")``."""


def estimated_seconds(job: SectionJob) -> float:
    """Estimated drawing time of a section (s, on the reference machine: see
    :data:`SECONDS_PER_ROW`).

    Only the threshold (:data:`MIN_PARALLEL_SECONDS`) and the order of the queue use it; the
    split between the processes balances itself at run time.

    Returns:
        0 for a section that draws no figure (tables, not run, no plotted row).
    """
    spec, df = job.spec, job.frame
    if df is None or spec.kind not in SECONDS_PER_ROW or not_run_reason(df, spec.id):
        return 0.0
    rows = df.height - df["x"].null_count()
    fixed, per_row = SECONDS_PER_ROW[spec.kind]
    return fixed + per_row * rows if rows else 0.0


def claim_order(costs: Sequence[float], head_start: float = 1.0) -> list[int]:
    """The queue: a permutation of the job indices, the worker's first sections at the front,
    this process's at the back.

    Jobs are dealt by decreasing cost (``costs``: estimated s per job) to the side with less
    estimated work so far, the worker starting ``head_start`` s behind (its start-up); each
    side's jobs run from its own end inward by decreasing cost, so the cheapest jobs of both
    meet in the middle and go to whichever side gets there first.
    """
    front: list[int] = []
    back: list[int] = []
    load = [head_start, 0.0]  # worker, this process
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        side = 0 if load[0] < load[1] else 1
        (front, back)[side].append(i)
        load[side] += costs[i]
    return front + back[::-1]


def use_worker(costs: Sequence[float], workers: int | None) -> bool:
    """Whether :func:`build_views` starts a worker.

    Args:
        costs: estimated seconds per section (:func:`estimated_seconds`).
        workers: 1 = this process only; 2 = this process and one worker; None = 2 when this
            process may use two or more CPUs and may start processes (is not a daemon).

    Returns:
        True when two processes are allowed and the estimated drawing time reaches
        :data:`MIN_PARALLEL_SECONDS`.

    Raises:
        ValueError: if ``workers`` is not None, 1 or 2.
    """
    if workers not in (None, 1, 2):
        raise ValueError(f"workers: expected None, 1 or 2, got {workers!r}")
    if workers is None:
        workers = 2 if usable_cores() >= 2 and not multiprocessing.current_process().daemon else 1
    return workers == 2 and sum(costs) >= MIN_PARALLEL_SECONDS


def build_views(jobs: Sequence[SectionJob], workers: int | None = None) -> list[SectionView]:
    """Build every job's section view, in one or two processes (see the module docstring).

    Args:
        jobs: the sections, in page order.
        workers: see :func:`use_worker`.

    Returns:
        The views in page order: the same as ``[job.build() for job in jobs]``.

    Raises:
        Exception: the first failing section's exception (page order), as a sequential build
            raises it.
        ReportWorkerError: if the worker process dies or fails to start.
    """
    costs = [estimated_seconds(j) for j in jobs]
    if not use_worker(costs, workers):
        return [job.build() for job in jobs]
    order = claim_order(costs)
    queued = [jobs[i] for i in order]
    outcomes: dict[int, Outcome] = {}
    with _Worker(queued) as worker:
        while (k := worker.claim_back()) is not None:
            outcomes[k] = _attempt(queued[k])
        outcomes.update(worker.collect())
    by_job = {order[k]: outcome for k, outcome in outcomes.items()}
    views = []
    for i in range(len(jobs)):
        view, exc, remote = by_job[i]
        if exc is not None:
            if remote:
                raise exc from WorkerTraceback(remote)
            raise exc
        assert view is not None
        views.append(view)
    return views


def _attempt(job: SectionJob) -> Outcome:
    try:
        return job.build(), None, ""
    except Exception as exc:  # raised later, in page order (see build_views)
        return None, exc, ""


class _Worker:
    """The worker process and the queue ``queued[front:back]`` of sections nobody has taken.

    A thread of this process feeds the worker: it sends the jobs, then, each time the worker
    is ready for one, takes the front section for it and waits for its view. This process's
    own thread takes sections from the back (:meth:`claim_back`). Leaving the ``with`` block
    always ends the worker.
    """

    def __init__(self, queued: Sequence[SectionJob]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._queued = queued
        self._lock = threading.Lock()
        self._front, self._back = 0, len(queued)
        self._in_flight: int | None = None  # the worker's current section (queue position)
        self._closing = False
        self._failure: ReportWorkerError | None = None
        self._outcomes: dict[int, Outcome] = {}
        self._conn, theirs = ctx.Pipe()
        self._proc = ctx.Process(target=serve, args=(theirs,), name="and-toolkit-report",
                                 daemon=True)
        self._proc.start()  # small arguments: the jobs go through the pipe, from the thread
        theirs.close()  # the worker then holds the only other end: its exit is our EOF
        self._feeder = threading.Thread(target=self._feed, name="and-toolkit-report-feeder",
                                        daemon=True)
        self._feeder.start()

    def __enter__(self) -> _Worker:
        return self

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    @property
    def taken(self) -> int:
        """How many sections the worker has taken so far."""
        return self._front

    def __exit__(self, exc_type: object, *rest: object) -> None:
        with self._lock:
            self._closing = True
        self._proc.join(STOP_SECONDS if exc_type is None else 0)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(STOP_SECONDS)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join()
        self._feeder.join()
        self._conn.close()

    def _feed(self) -> None:
        """The feeder thread: jobs out, views back, until the queue is empty or closing."""
        try:
            self._conn.send_bytes(ForkingPickler.dumps(self._queued))
            ready = pickle.loads(self._conn.recv_bytes())
            if ready[0] != "ready":
                error = ReportWorkerError(f"the report's worker process could not load its "
                                          f"sections: {ready[1]}")
                error.__cause__ = WorkerTraceback(ready[2])
                self._fail(error)
                return
            while (k := self._claim_front()) != _STOP:
                self._conn.send(k)
                done, outcome = pickle.loads(self._conn.recv_bytes())
                with self._lock:
                    self._outcomes[done] = outcome
                    self._in_flight = None
            self._conn.send(_STOP)
        except (EOFError, OSError):  # the worker is gone
            with self._lock:
                expected = self._closing and self._in_flight is None
            if not expected:
                self._fail(self._died())
        except Exception as exc:  # e.g. a job that cannot be pickled: never a silent fallback
            error = ReportWorkerError(f"the report's worker could not be sent its sections or "
                                      f"send back one: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            self._fail(error)

    def _fail(self, error: ReportWorkerError) -> None:
        with self._lock:
            self._failure = self._failure or error

    def _claim_front(self) -> int:
        with self._lock:
            if self._closing or self._front >= self._back:
                return _STOP
            self._in_flight = self._front
            self._front += 1
            return self._in_flight

    def _died(self) -> ReportWorkerError:
        self._proc.join(STOP_SECONDS)
        code = self._proc.exitcode
        how = ("closed its pipe" if code is None else f"exited with code {code}" if code >= 0
               else f"was killed by {signal.Signals(-code).name}")
        if self._in_flight is not None:
            when = f"while building section {self._queued[self._in_flight].spec.id!r}"
        else:
            when = ("before it was ready (if its traceback above is about importing the main "
                    "module: a script that renders a report must keep its work under "
                    "`if __name__ == \"__main__\":`)")
        return ReportWorkerError(f"the report's worker process {how} {when}; the report was "
                                 "not built (workers=1 builds it in one process)")

    def claim_back(self) -> int | None:
        """Take the last section of the queue for this process: its queue position, or None
        when the queue is empty. Raises the :class:`ReportWorkerError` of a worker known to have
        died."""
        with self._lock:
            if self._failure is not None:
                raise self._failure
            if self._front >= self._back:
                return None
            self._back -= 1
            return self._back

    def collect(self) -> dict[int, Outcome]:
        """The worker's sections, once this process has taken its last one: waits for the
        section the worker is building, if any, and ends a worker still starting up.

        Returns:
            Queue position -> outcome, for every section the worker took.

        Raises:
            ReportWorkerError: if the worker died or failed to start.
        """
        with self._lock:
            self._closing = True
            busy = self._in_flight is not None
        if not busy:
            if self._proc.exitcode not in (None, 0):  # died before the feeder could tell
                self._fail(self._died())
            self._proc.terminate()  # still starting, or told to stop already: not needed
        self._feeder.join()
        if self._failure is not None:
            raise self._failure
        return dict(self._outcomes)


def _pack(k: int, job: SectionJob, outcome: Outcome) -> bytes:
    """``(k, outcome)`` pickled; an exception or view that would not survive the trip becomes a
    RuntimeError naming it, so the caller always learns what went wrong."""
    view, exc, tb = outcome
    try:
        if exc is not None:
            pickle.loads(ForkingPickler.dumps(exc))
        return bytes(ForkingPickler.dumps((k, outcome)))
    except Exception as err:
        what = (f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}" if exc is not None
                else f"its view ({type(err).__name__}: {err})")
        replacement = RuntimeError(f"section {job.spec.id}: the report's worker could not send "
                                   f"back {what}")
        return pickle.dumps((k, (None, replacement, tb)))


def serve(conn: Connection) -> None:
    """The worker's main, on its end ``conn`` of the pipe: receive the queued jobs, say it is
    ready, then build each queue position it is sent and send back ``(position, outcome)``,
    until it is sent ``-1``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it ends the worker
    try:
        try:
            queued: Sequence[SectionJob] = pickle.loads(conn.recv_bytes())
        except Exception as exc:
            conn.send_bytes(pickle.dumps(("failed", f"{type(exc).__name__}: {exc}",
                                          traceback.format_exc())))
            return
        conn.send_bytes(pickle.dumps(("ready",)))
        while (k := conn.recv()) != _STOP:
            try:
                outcome: Outcome = (queued[k].build(), None, "")
            except Exception as exc:
                outcome = (None, exc, traceback.format_exc())
            conn.send_bytes(_pack(k, queued[k], outcome))
    except (EOFError, OSError):  # the parent is gone or stopped us
        return
    finally:
        conn.close()
