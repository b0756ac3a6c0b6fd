"""The Ray engine: the record stage in an actor pool, per-layer stages as Ray tasks.

The only module that imports Ray (lazily, through :func:`_ray`); :func:`and_toolkit.pipeline.
engine.make_engine` imports this module only for ``[execution] engine = "ray"``.

Record stage (:meth:`RayEngine.record`): the model and its input feed are put in the object
store once (one object) and each actor of the pool deserialises them once. The feed is either
the probe's inputs held by the driver (``RecordJob.inputs``) or, as the record stage gives it,
a :mod:`~and_toolkit.pipeline.clip_inputs` feed from which each actor loads, resamples and
featurizes its own clips, batch by batch. The probe is cut into partitions of
``partition_clips`` clips rounded up to a multiple of the forward batch, so every forward pass
sees exactly the local engine's batch (same values bit for bit on CPU). Each actor records its
partitions into scratch files inside the run directory (:mod:`and_toolkit.recording.partition`,
the local engine's scratch format) and returns only metadata (pooling labels, widths, rows with
non-finite values, refused before any file is written, as locally); then each layer's file is
written by an actor from the partitions' scratch blocks through the local engine's writer (same
row groups, same bytes). The driver never receives activations or inputs: its memory does not
grow with N or with a layer's width (:attr:`RayEngine.received_arrays` counts what it
receives).

Per-layer stages (:meth:`RayEngine.map`): one task per item with the stage's resources, at most
``workers`` in flight; results come back in item order, so the files do not depend on the
number of workers. Tasks read activation files through the run directory: on a multi-node
cluster the run directory must be on storage every node mounts (one machine: nothing to do).
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from and_toolkit.config import ExecutionSection, StageResources
from and_toolkit.errors import ConfigError, StageNotRun
from and_toolkit.pipeline.clip_inputs import ExternalInputs
from and_toolkit.pipeline.engine import (
    Generation,
    LLMLoader,
    RecordJob,
    WorkerLoader,
)
from and_toolkit.pipeline.ray_actors import Generator, Recorder, Worker
from and_toolkit.recording.partition import ScratchPartition

S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")


def _ray() -> Any:
    """The ``ray`` module.

    Raises:
        ConfigError: Ray is not installed.
    """
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            "execution.engine = 'ray': Ray is not installed "
            "(pip install 'and-toolkit[ray]', or set execution.engine = 'local')") from exc
    return ray


def _call(fn: Callable[[S, T], R], shared: S, item: T) -> R:
    """Task body of :meth:`RayEngine.map` (``shared`` arrives resolved from the object store)."""
    return fn(shared, item)


@dataclass(frozen=True)
class _RemoteCall:
    """One actor method call of a pool: ``actor.<method>.remote(*args)``."""

    method: str
    args: tuple[Any, ...]

    def __call__(self, actor: Any) -> Any:
        return getattr(actor, self.method).remote(*self.args)


def _array_bytes(obj: Any) -> int:
    """Bytes of the numpy arrays inside ``obj`` (lists, tuples, dicts, dataclasses)."""
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if isinstance(obj, dict):
        return sum(_array_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_array_bytes(v) for v in obj)
    if hasattr(obj, "__dataclass_fields__"):
        return sum(_array_bytes(getattr(obj, f)) for f in obj.__dataclass_fields__)
    return 0


def partitions(n_clips: int, batch_size: int, partition_clips: int) -> list[tuple[int, int]]:
    """Clip ranges ``[start, stop)`` covering ``0..n_clips``, each a whole number of batches.

    Args:
        n_clips: N.
        batch_size: clips per forward pass.
        partition_clips: wanted clips per partition (rounded up to a multiple of the batch).
    """
    step = math.ceil(partition_clips / batch_size) * batch_size
    return [(a, min(a + step, n_clips)) for a in range(0, n_clips, step)]


class RayEngine:
    """Runs the distributed stages on a Ray cluster (see the module docstring).

    Connects to ``execution.address``, or starts a local cluster with
    ``ray.init(num_cpus=execution.num_cpus)``; when Ray is already initialised in this
    process (a caller's own cluster), it is reused and left running.
    """

    name = "ray"
    loads_clips = True

    def __init__(self, execution: ExecutionSection) -> None:
        ray = _ray()
        self.execution = execution
        self._started = False
        self._recorders: list[Any] = []
        self.received_arrays = 0
        """Bytes of numpy arrays the record stage's driver received from its actors (0: the
        activations never pass through the driver)."""
        if not ray.is_initialized():
            ray.init(address=execution.address,
                     num_cpus=execution.num_cpus if execution.address is None else None,
                     include_dashboard=False, logging_level=logging.WARNING)
            self._started = True

    # ----- resources ----------------------------------------------------------------------------
    def _resources(self, stage: str) -> StageResources:
        return self.execution.resources(stage)

    def workers(self, stage: str) -> int:
        """Actors / concurrent tasks of ``stage``.

        Raises:
            ConfigError: ``execution.stages.<stage>.workers`` x ``num_cpus`` (or ``num_gpus``)
                exceeds the cluster's CPUs (GPUs): the surplus actors would never start.
        """
        res = self._resources(stage)
        total = _ray().cluster_resources()
        cpus = float(total.get("CPU", 1.0))
        fit = max(1, int(cpus // res.num_cpus))
        unit, have = "CPUs", cpus
        if res.num_gpus > 0:
            gpus = float(total.get("GPU", 0.0))
            if int(gpus // res.num_gpus) < fit:
                fit, unit, have = int(gpus // res.num_gpus), "GPUs", gpus
            if fit < 1:
                raise ConfigError(f"execution.stages.{stage}.num_gpus: {res.num_gpus:g} GPUs per "
                                  f"worker, the cluster has {gpus:g}")
        if res.workers is None:
            return fit
        if res.workers > fit:
            per = res.num_gpus if unit == "GPUs" else res.num_cpus
            raise ConfigError(
                f"execution.stages.{stage}.workers: {res.workers} workers x {per:g} {unit} "
                f"exceed the cluster's {have:g} {unit} (at most {fit})")
        return res.workers

    def describe(self, stage: str) -> dict[str, Any]:
        res = self._resources(stage)
        return {"engine": self.name, "workers": self.workers(stage), "num_cpus": res.num_cpus,
                "num_gpus": res.num_gpus}

    # ----- per-item stages ----------------------------------------------------------------------
    def map(self, stage: str, fn: Callable[[S, T], R], items: Sequence[T], shared: S
            ) -> list[R]:
        ray = _ray()
        res = self._resources(stage)
        task = ray.remote(_call).options(num_cpus=res.num_cpus, num_gpus=res.num_gpus)
        shared_ref = ray.put(shared)
        limit = self.workers(stage)
        refs: list[Any] = []
        inflight: list[Any] = []
        for item in items:
            if len(inflight) >= limit:
                _, inflight = ray.wait(inflight, num_returns=1)
            ref = task.remote(fn, shared_ref, item)
            refs.append(ref)
            inflight.append(ref)
        return list(ray.get(refs)) if refs else []

    # ----- actor pools over items ---------------------------------------------------------------
    def actor_map(self, stage: str, source: WorkerLoader, items: Sequence[Any]) -> list[Any]:
        """Items spread over a pool of ``workers(stage)`` actors, each making its function once
        (``source.load()``), stopped when done; results in item order."""
        ray = _ray()
        if not items:
            return []
        res = self._resources(stage)
        actor_cls = ray.remote(Worker).options(num_cpus=res.num_cpus, num_gpus=res.num_gpus)
        actors = [actor_cls.remote(source, max(1, int(res.num_cpus)))
                  for _ in range(min(self.workers(stage), len(items)))]
        try:
            return self._pool_calls(actors, [_RemoteCall("run", (it,)) for it in items])
        finally:
            for actor in actors:
                ray.kill(actor)

    # ----- LLM stages ---------------------------------------------------------------------------
    def generate(self, stage: str, source: LLMLoader,
                 requests: Sequence[tuple[Sequence[Any], Any]]) -> Generation:
        """Requests spread over an actor pool of ``workers(stage)`` LLM actors (each loads the
        backend once; stopped when done); results in request order."""
        ray = _ray()
        res = self._resources(stage)
        if not requests:
            return Generation([], 0, "")
        actor_cls = ray.remote(Generator).options(num_cpus=res.num_cpus, num_gpus=res.num_gpus)
        actors = [actor_cls.remote(source, max(1, int(res.num_cpus)))
                  for _ in range(min(self.workers(stage), len(requests)))]
        try:
            status = ray.get([a.ready.remote() for a in actors])
            if status[0][0] is not None:
                raise StageNotRun(status[0][0])
            out: list[Any] = [None] * len(requests)
            free = deque(actors)
            todo = deque(range(len(requests)))
            inflight: dict[Any, tuple[int, Any]] = {}
            while todo or inflight:
                while todo and free:
                    i, actor = todo.popleft(), free.popleft()
                    prompts, sampling = requests[i]
                    ref = actor.run.remote(list(prompts), sampling)
                    inflight[ref] = (i, actor)
                done, _ = ray.wait(list(inflight), num_returns=1)
                i, actor = inflight.pop(done[0])
                out[i] = ray.get(done[0])  # an actor's error surfaces here
                free.append(actor)
        finally:
            for actor in actors:
                ray.kill(actor)
        return Generation([t for t, _ in out], sum(g for _, g in out), status[0][1])

    # ----- record -------------------------------------------------------------------------------
    def record(self, job: RecordJob) -> dict[str, Path]:
        """Partitions recorded by the actor pool into scratch files inside the run, then each
        layer's file written by an actor from those files (:mod:`and_toolkit.recording.
        partition`); the driver receives metadata and paths only (counted in
        :attr:`received_arrays`)."""
        from and_toolkit.recording.hooks import block_index, layer_aliases
        from and_toolkit.recording.record import units_per_chunk
        from and_toolkit.recording.write import check_finite

        ray = _ray()
        res = self._resources("record")
        layers = list(job.layers)
        for layer in layers:  # unsafe ids fail before any work
            job.run.activation_path(job.model_id, layer)
        if job.n_clips <= 0:
            raise ValueError(f"n_clips: must be positive, got {job.n_clips}")
        parts = partitions(job.n_clips, job.batch_size, self.execution.partition_clips)
        if not self._recorders:  # one pool for every target of the stage (until release())
            actor_cls = ray.remote(Recorder).options(num_cpus=res.num_cpus,
                                                      num_gpus=res.num_gpus)
            self._recorders = [actor_cls.remote(max(1, int(res.num_cpus)), res.num_gpus > 0)
                               for _ in range(self.workers("record"))]
        actors = self._recorders[:len(parts)]
        source = job.source()
        held = ray.put((None if isinstance(source, ExternalInputs) else job.model, source))
        ray.get([actor.load.remote(held) for actor in actors])
        units = units_per_chunk(job.n_clips)
        job.run.root.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=job.run.root, prefix=".record-"))
        try:
            done = self._run_partitions(actors, parts, job, layers, scratch, units)
            bad = {layer: [r for p in done for r in p.nonfinite[layer]] for layer in layers}
            check_finite(job.run, job.model_id, bad)
            names = layer_aliases(layers)
            fields = [{"run": job.run, "model_id": job.model_id, "alias": names[layer],
                       "block": block_index(layer), "pooling": done[0].labels[layer],
                       "probe_sha256": job.probe_sha256, "n_clips": job.n_clips,
                       "provenance": job.provenance} for layer in layers]
            paths = self._pool_calls(actors, [
                _RemoteCall("write", (done, j, layers[j], fields[j], units))
                for j in range(len(layers))])
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return {layer: Path(p) for layer, p in zip(layers, paths, strict=True)}

    def _pool_calls(self, actors: list[Any], calls: Sequence[_RemoteCall],
                    progress: Any = None) -> list[Any]:
        """Run ``calls[i](actor)`` on free actors (two queued per actor); results in call
        order (an actor's error surfaces with its traceback)."""
        ray = _ray()
        out: list[Any] = [None] * len(calls)
        slots = deque(actors * 2)
        todo = deque(range(len(calls)))
        inflight: dict[Any, tuple[int, Any]] = {}
        while todo or inflight:
            while todo and slots:
                actor, i = slots.popleft(), todo.popleft()
                inflight[calls[i](actor)] = (i, actor)
            ready, _ = ray.wait(list(inflight), num_returns=1)
            i, actor = inflight.pop(ready[0])
            out[i] = ray.get(ready[0])
            self.received_arrays += _array_bytes(out[i])
            slots.append(actor)
            if progress is not None:
                progress.update(1)
        return out

    def _run_partitions(self, actors: list[Any], parts: list[tuple[int, int]], job: RecordJob,
                        layers: list[str], scratch: Path, units: int
                        ) -> list[ScratchPartition]:
        """Every partition recorded into ``scratch/<p>``; their reports in clip order."""
        bar = None
        if job.progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(parts), desc=f"record {job.model_id} (ray)", unit="part")
        try:
            return self._pool_calls(actors, [
                _RemoteCall("run", (*parts[p], job.batch_size, layers, job.pooling,
                                    str(scratch / f"{p:06d}"), units))
                for p in range(len(parts))], bar)
        finally:
            if bar is not None:
                bar.close()

    def release(self) -> None:
        """Stop the record actors (they hold CPUs the task-based stages need)."""
        for actor in self._recorders:
            _ray().kill(actor)
        self._recorders = []

    def close(self) -> None:
        self.release()
        if self._started:
            _ray().shutdown()
            self._started = False
