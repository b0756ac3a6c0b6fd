"""The Ray engine: the record stage in an actor pool, per-layer stages as Ray tasks.

The only module that imports Ray (lazily, through :func:`_ray`); :func:`and_toolkit.pipeline.
engine.make_engine` imports this module only for ``[execution] engine = "ray"``.

Record stage (:meth:`RayEngine.record`): the model is put in the object store once and each
actor of the pool deserialises it once; the probe's inputs are put once and read zero-copy by
the actors on a node. The probe is cut into partitions of ``partition_clips`` clips rounded up
to a multiple of the forward batch, so every forward pass sees exactly the local engine's
batch (same values bit for bit on CPU). An actor returns one object per recorded layer; the
driver fetches **one layer at a time** (the other layers stay in the object store, which
spills to disk when full), concatenates its partitions in clip order and writes the layer's
file through the local engine's block writer (:func:`and_toolkit.recording.write.write_layer`,
same row groups, same bytes), so driver memory is one layer [N, width] plus one block, not the
whole [N, total width] matrix. Non-finite values are reported by the actors and refused before
any file is written (as locally).

Per-layer stages (:meth:`RayEngine.map`): one task per item with the stage's resources, at most
``workers`` in flight; results come back in item order, so the files do not depend on the
number of workers. Tasks read activation files through the run directory: on a multi-node
cluster the run directory must be on storage every node mounts (one machine: nothing to do).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from and_toolkit.config import ExecutionSection, StageResources
from and_toolkit.errors import ConfigError, StageNotRun
from and_toolkit.pipeline.engine import Generation, LLMLoader, RecordJob, cut_batches

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


class _Recorder:
    """Actor body: holds one target network for the whole record stage."""

    def __init__(self, threads: int, gpu: bool) -> None:
        torch.set_num_threads(threads)
        self.gpu = gpu
        self.model: nn.Module | None = None

    def load(self, model: nn.Module) -> None:
        """Hold ``model`` for the following partitions (one deserialisation per actor)."""
        self.model = model.to("cuda") if self.gpu else model

    def run(self, inputs: np.ndarray, start: int, stop: int, batch_size: int,
            layers: list[str], pooling: str, frames: dict[int, np.ndarray] | None
            ) -> tuple[Any, ...]:
        """Record clips ``[start, stop)``: ``(labels, nonfinite, values of each layer...)``."""
        from and_toolkit.recording.record import record_partition

        batches = cut_batches(inputs, frames, start, stop, batch_size)
        if self.model is None:
            raise RuntimeError("record actor: run() before load()")
        part = record_partition(self.model, batches, layers, pooling, n_clips=stop - start)
        return (part.labels, part.nonfinite, *[part.values[layer] for layer in layers])


class _Generator:
    """Actor body: one LLM backend (with its generation cache), loaded once per actor."""

    def __init__(self, source: LLMLoader, threads: int) -> None:
        torch.set_num_threads(threads)
        self.model: Any = None
        self.error: str | None = None
        try:
            self.model = source.load()
        except StageNotRun as exc:  # reported by ready(): the stage records it as not run
            self.error = str(exc)

    def ready(self) -> tuple[str | None, str]:
        """(load error or None, backend id)."""
        return self.error, "" if self.model is None else str(self.model.id)

    def run(self, prompts: list[Any], sampling: Any) -> tuple[list[str], int]:
        """One backend ``generate`` call: (completions, distinct prompts generated)."""
        texts = self.model.generate(prompts, sampling)
        return list(texts), int(self.model.last.generated)


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

    def __init__(self, execution: ExecutionSection) -> None:
        ray = _ray()
        self.execution = execution
        self._started = False
        self._recorders: list[Any] = []
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

    # ----- LLM stages ---------------------------------------------------------------------------
    def generate(self, stage: str, source: LLMLoader,
                 requests: Sequence[tuple[Sequence[Any], Any]]) -> Generation:
        """Requests spread over an actor pool of ``workers(stage)`` LLM actors (each loads the
        backend once; stopped when done); results in request order."""
        ray = _ray()
        res = self._resources(stage)
        if not requests:
            return Generation([], 0, "")
        actor_cls = ray.remote(_Generator).options(num_cpus=res.num_cpus, num_gpus=res.num_gpus)
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
        from and_toolkit.recording.hooks import block_index, layer_aliases
        from and_toolkit.recording.record import units_per_chunk
        from and_toolkit.recording.write import check_finite, write_layer

        ray = _ray()
        res = self._resources("record")
        layers = list(job.layers)
        for layer in layers:  # unsafe ids fail before any work
            job.run.activation_path(job.model_id, layer)
        if job.n_clips <= 0:
            raise ValueError(f"n_clips: must be positive, got {job.n_clips}")
        parts = partitions(job.n_clips, job.batch_size, self.execution.partition_clips)
        if not self._recorders:  # one pool for every target of the stage (until release())
            actor_cls = ray.remote(_Recorder).options(num_cpus=res.num_cpus,
                                                      num_gpus=res.num_gpus)
            self._recorders = [actor_cls.remote(max(1, int(res.num_cpus)), res.num_gpus > 0)
                               for _ in range(self.workers("record"))]
        actors = self._recorders[:len(parts)]
        model_ref = ray.put(job.model)
        ray.get([actor.load.remote(model_ref) for actor in actors])
        out = self._run_partitions(actors, ray.put(job.inputs), parts, job, layers)
        labels = ray.get(out[0][0])
        bad: dict[str, list[int]] = {layer: [] for layer in layers}
        for (start, _), rows in zip(parts, ray.get([o[1] for o in out]), strict=True):
            for layer, r in rows.items():
                bad[layer] += [start + i for i in r]
        check_finite(job.run, job.model_id, bad)
        names = layer_aliases(layers)
        written: dict[str, Path] = {}
        for j, layer in enumerate(layers):
            pieces = ray.get([o[2 + j] for o in out])
            values = np.concatenate(pieces, axis=0) if len(pieces) > 1 else pieces[0]
            del pieces
            for o in out:  # this layer's objects can leave the object store
                o[2 + j] = None
            written[layer] = write_layer(
                job.run, values, units=units_per_chunk(job.n_clips), model_id=job.model_id,
                layer=layer, alias=names[layer], block=block_index(layer), pooling=labels[layer], probe_sha256=job.probe_sha256,
                n_clips=job.n_clips, provenance=job.provenance)
            del values
        return written

    def _run_partitions(self, actors: list[Any], inputs_ref: Any,
                        parts: list[tuple[int, int]], job: RecordJob, layers: list[str]
                        ) -> list[list[Any]]:
        """Feed partitions to free actors (two queued per actor); refs per partition, in order."""
        ray = _ray()
        out: list[list[Any]] = [[] for _ in parts]
        slots = deque(actors * 2)
        todo = deque(range(len(parts)))
        inflight: dict[Any, Any] = {}
        bar = None
        if job.progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(parts), desc=f"record {job.model_id} (ray)", unit="part")
        while todo or inflight:
            while todo and slots:
                actor, p = slots.popleft(), todo.popleft()
                refs = actor.run.options(num_returns=2 + len(layers)).remote(
                    inputs_ref, *parts[p], job.batch_size, layers, job.pooling, job.frames)
                out[p] = list(refs)
                inflight[out[p][0]] = actor
            done, _ = ray.wait(list(inflight), num_returns=1)
            slots.append(inflight.pop(done[0]))
            ray.get(done[0])  # an actor's error surfaces here, with its traceback
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        return out

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
