"""Train several targets side by side, each in its own worker process, into the content cache.

One training does not always use a machine: on a 2-core CPU the measured thread choice
(:mod:`and_toolkit.targets.precision`) is often one thread, because a second one does not make
a step :data:`~and_toolkit.targets.precision.MIN_THREAD_GAIN` times faster. A run's targets are
independent, so the cores a training leaves idle can train the next target. Here each job
trains in a fresh ``spawn`` process (no torch / OpenMP state inherited from the parent) with
its config's thread count and stores what an in-process training stores: the weights
(safetensors) and the curve under its weights key (:func:`train_and_store`, atomic writes), so
the caller then loads every target from the cache as usual. A training is deterministic for a
config, data, torch build and thread count, so the stored weights do not depend on which
process trained them (tests/targets/test_concurrent.py compares them byte for byte).

Inputs go to the workers as ``.npy`` files in a temporary directory (one file per distinct
array), removed when the trainings end. Progress: each finished epoch is sent to the parent
(``on_epoch``). Failure: the first worker that raises (or dies) stops the others and
:func:`train_concurrently` raises a ``RuntimeError`` naming the target, with the worker's
traceback; what finished before is in the cache, and nothing half-written is (cache writes are
atomic).
"""

from __future__ import annotations

import multiprocessing as mp
import queue as queue_module
import tempfile
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from and_toolkit.cache import Cache
from and_toolkit.targets.config import TrainConfig
from and_toolkit.targets.timing import usable_cores

POLL_S = 0.5
"""Seconds between checks that the running workers are alive while none reports."""
TRAININGS = "trainings"
"""Cache namespace of what each stored training ran with (:func:`~and_toolkit.targets.machine.
training_facts`: threads, CPU, torch's kernels), keyed as its weights."""
MIN_WORKER_S = 60.0
"""Only a training estimated to take at least this long goes to a worker: starting one (spawn,
importing torch) costs seconds, about 10 s per wave on a loaded 2-core machine
(``benchmarks/results/train_workers.json``), more than the demo's trainings take."""


def estimated_seconds(cfg: TrainConfig, choice: dict[str, Any], n_train: int,
                      n_test: int = 0) -> float | None:
    """Training seconds of ``cfg`` estimated from its measured step: the target step's seconds
    at the chosen threads (``choice``: the decision's ``as_dict()``, ``threads_source ==
    "target"``) times the optimiser steps (epochs x batches of ``n_train`` clips), plus each
    epoch's test-fold evaluation of ``n_test`` clips counted as a third of a step per batch (a
    forward pass without the backward); None when the threads were not measured on the
    target's own step. Augmentation, the optimiser update and data handling are not counted:
    a rough guide (ESC-50 capped at AVX2: the trainings took 0.94x to 1.94x their estimates, see
    docs/architecture.md). With ``cfg.encoder_once``: one forward pass of every clip."""
    seconds = choice.get("thread_seconds") or {}
    step = seconds.get(str(cfg.threads)) if choice.get("threads_source") == "target" else None
    if not isinstance(step, int | float):
        return None
    if cfg.encoder_once:  # one forward pass of every clip; the classifier's steps are negligible
        return float(step) * (n_train + n_test) / cfg.batch_size / 3
    return float(step) * (optimiser_steps(cfg, n_train) + cfg.epochs * n_test / cfg.batch_size / 3)


def optimiser_steps(cfg: TrainConfig, n_train: int) -> int:
    """Optimiser steps of a full training of ``cfg`` on ``n_train`` clips (epochs x batches)."""
    return cfg.epochs * -(-n_train // cfg.batch_size)


def long_enough(estimates: Sequence[float | None], min_s: float = MIN_WORKER_S) -> list[bool]:
    """Per training, whether it is worth a worker: estimated at ``min_s`` or more, or not
    estimated (a pretrained target's step is not measured; its backbone pass is long)."""
    return [e is None or e >= min_s for e in estimates]


@dataclass(frozen=True)
class TrainJob:
    """One target to train in a worker.

    Attributes:
        target_id: the target's id (progress and errors name it).
        cfg: resolved training config (concrete precision and thread count).
        key: its weights key (cache namespaces ``weights`` and ``curves``).
        inputs: model inputs of every probe clip: log-mel [N, T, F] or waveforms [N, S].
        targets: int class ids [N].
        folds: int fold ids [N].
    """

    target_id: str
    cfg: TrainConfig
    key: str
    inputs: np.ndarray
    targets: np.ndarray
    folds: np.ndarray

    def without_inputs(self) -> TrainJob:
        """This job with an empty inputs array (what is pickled to a worker, which reads the
        inputs from their file)."""
        return TrainJob(self.target_id, self.cfg, self.key, np.empty(0, np.float32),
                        self.targets, self.folds)


def train_and_store(cache: Cache, cfg: TrainConfig, key: str, inputs: np.ndarray,
                    targets: np.ndarray, folds: np.ndarray, *, progress: bool,
                    on_epoch: Callable[[dict[str, float]], None] | None = None) -> Any:
    """Train ``cfg`` (:func:`~and_toolkit.targets.train.train_target`) and store its weights,
    its curve and what it ran with (namespace :data:`TRAININGS`) in ``cache`` under ``key``; the
    :class:`~and_toolkit.targets.train.TrainedTarget`.
    """
    from and_toolkit.targets import save_weights, train_target
    from and_toolkit.targets.machine import training_facts

    trained = train_target(cfg, inputs, targets, folds, progress=progress, on_epoch=on_epoch,
                           cache=cache)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.safetensors"
        save_weights(trained.model, path)
        cache.put_bytes("weights", key, path.read_bytes())
    cache.put_json("curves", key, trained.curve)
    cache.put_json(TRAININGS, key, training_facts(cfg.threads, cfg.precision))
    return trained


def workers_for(threads: Sequence[int], n_jobs: int, requested: int | None = None) -> int:
    """Trainings to run at once: ``requested`` if given, else the usable cores over the
    largest thread count chosen (at least 1), never more than ``n_jobs``.

    Raises:
        ValueError: on a requested count below 1.
    """
    if requested is not None and requested < 1:
        raise ValueError(f"train_workers must be >= 1, got {requested}")
    fit = requested if requested is not None else usable_cores() // max([1, *threads])
    return max(1, min(fit, n_jobs))


def _worker(job: TrainJob, cache_root: str, inputs_path: str, reports: Any) -> None:
    """Worker process body: train one job, report each epoch, then "done" (with the worker's
    wall / CPU seconds and peak memory) or "error" (with the traceback)."""
    from and_toolkit.resources import measured

    try:
        with measured() as usage:
            inputs = np.load(inputs_path)
            train_and_store(Cache(Path(cache_root)), job.cfg, job.key, inputs, job.targets,
                            job.folds, progress=False,
                            on_epoch=lambda row: reports.put(("epoch", job.target_id,
                                                              dict(row))))
        reports.put(("done", job.target_id, usage.as_dict()))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises
        reports.put(("error", job.target_id, traceback.format_exc()))


def train_concurrently(jobs: Sequence[TrainJob], cache: Cache, workers: int,
                       on_epoch: Callable[[str, dict[str, Any]], None] | None = None,
                       on_done: Callable[[str, dict[str, Any]], None] | None = None) -> None:
    """Train ``jobs`` in up to ``workers`` spawned processes at once (in job order).

    Args:
        jobs: the trainings; their weights and curves land in ``cache``.
        cache: the content cache (its root is handed to the workers).
        workers: processes at once (>= 1).
        on_epoch: called in this process with (target id, curve row) per finished epoch.
        on_done: called with (target id, the worker's ``resources.measured`` figures) when a
            training has been stored.

    Raises:
        ValueError: ``workers`` below 1.
        RuntimeError: a worker raised or died; names the target (and the traceback); the
            other workers are stopped first.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    ctx = mp.get_context("spawn")
    reports = ctx.Queue()
    pending = list(jobs)
    running: dict[str, Any] = {}
    files: dict[int, str] = {}  # id of an inputs array -> its .npy file
    with tempfile.TemporaryDirectory(prefix="and-train-") as tmp:
        try:
            while pending or running:
                while pending and len(running) < workers:
                    job = pending.pop(0)
                    if id(job.inputs) not in files:
                        files[id(job.inputs)] = str(Path(tmp) / f"inputs-{len(files)}.npy")
                        np.save(files[id(job.inputs)], np.ascontiguousarray(job.inputs))
                    proc = ctx.Process(target=_worker, name=f"train-{job.target_id}",
                                       args=(job.without_inputs(), str(cache.root),
                                             files[id(job.inputs)], reports), daemon=True)
                    proc.start()
                    running[job.target_id] = proc
                try:
                    kind, target_id, payload = reports.get(timeout=POLL_S)
                except queue_module.Empty:
                    for target_id, proc in running.items():
                        if not proc.is_alive() and proc.exitcode != 0:
                            raise RuntimeError(f"training {target_id!r}: worker process died "
                                               f"(exit code {proc.exitcode})") from None
                    continue
                if kind == "epoch" and on_epoch is not None:
                    on_epoch(target_id, payload)
                elif kind == "error":
                    raise RuntimeError(f"training {target_id!r} failed in its worker "
                                       f"process:\n{payload}")
                elif kind == "done":
                    running.pop(target_id).join()
                    if on_done is not None:
                        on_done(target_id, payload)
        finally:
            for proc in running.values():
                if proc.is_alive():
                    proc.terminate()
                proc.join()
            reports.close()
