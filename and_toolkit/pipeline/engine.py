"""Execution engines: where the distributable work of a stage runs.

A stage hands its work to the run's engine instead of looping itself:

- :meth:`Engine.map` applies a module-level function to independent items (one activation
  layer of the extremes stage, one layer of Module A) and returns the results **in the order
  of the items**, however many workers ran them;
- :meth:`Engine.record` runs the record stage's forward pass with hooks over the probe set and
  writes one ``ActivationTable`` file per layer; the inputs are an array the driver holds, or
  a feed (:mod:`and_toolkit.pipeline.clip_inputs`) from which workers load, resample and
  featurize their own clips (engines with ``loads_clips``);
- :meth:`Engine.actor_map` applies a function made once per worker (an audio captioner
  loaded once) to items (clip ranges), results in item order;
- :meth:`Engine.generate` sends LLM requests (prompt lists, each one backend ``generate``
  call) to an LLM backend loaded once per worker (the ICL and LLM-summary stages, through
  :mod:`and_toolkit.pipeline.llm_chunks`).

:class:`LocalEngine` (``[execution] engine = "local"``, the default) is the code path the
pipeline always had: everything in this process. ``engine = "ray"`` selects
:class:`~and_toolkit.pipeline.ray_engine.RayEngine` (built on this module), which
:func:`and_toolkit.pipeline.context.make_engine` imports only then, so the local engine and the
command line never need Ray installed. Both write the same records (byte-identical on
CPU: tests/pipeline/test_ray_engine.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import torch
from torch import nn

from and_toolkit.run import Run

S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class RecordJob:
    """One target's recording: everything :meth:`Engine.record` needs.

    Attributes:
        model: the target network (eval mode, float32 weights).
        inputs: model inputs of every probe clip in probe order: log-mel [N, T, F] or
            waveforms [N, S]; None when ``clips`` is given.
        batch_size: clips per forward pass.
        layers: module paths to record (module order).
        pooling: the token pooling name (``record.pooling``).
        run: the run the files go to.
        model_id: the target id.
        probe_sha256: hash of the ordered clip ids.
        provenance: extra provenance stored in each file.
        progress: show a progress bar.
        frames: valid frames of each clip by padded time length, ``{T: int [N]}`` (an output
            with time length T is pooled over clip i's first ``frames[T][i]`` frames only:
            :data:`~and_toolkit.recording.record.FramedBatch`); None: every frame.
        clips: instead of ``inputs`` / ``frames``: a feed that makes the batches of any clip
            range itself (:class:`~and_toolkit.pipeline.clip_inputs.ClipInputs`,
            :class:`~and_toolkit.pipeline.clip_inputs.ExternalInputs`).
    """

    model: nn.Module
    inputs: np.ndarray | None
    batch_size: int
    layers: Sequence[str]
    pooling: str
    run: Run
    model_id: str
    probe_sha256: str
    provenance: dict[str, Any] = field(default_factory=dict)
    progress: bool = False
    frames: dict[int, np.ndarray] | None = None
    clips: InputFeed | None = None

    def __post_init__(self) -> None:
        if (self.inputs is None) == (self.clips is None):
            raise ValueError("RecordJob: give exactly one of inputs and clips")

    @property
    def n_clips(self) -> int:
        return self.source().n_clips

    def source(self) -> InputFeed:
        """The job's batches of any clip range: ``clips``, or ``inputs`` / ``frames`` cut."""
        if self.clips is not None:
            return self.clips
        assert self.inputs is not None
        return ArrayInputs(self.inputs, self.frames)


class InputFeed(Protocol):
    """Forward batches of any clip range (picklable: sent to record workers once)."""

    @property
    def n_clips(self) -> int:
        """N, the probe's clips."""
        ...

    def batches(self, start: int, stop: int, batch_size: int) -> Iterator[Any]:
        """The batches of clips ``[start, stop)``, cut every ``batch_size`` clips from
        ``start`` (a multiple of ``batch_size``: the local engine's batches)."""
        ...


@dataclass(frozen=True)
class ArrayInputs:
    """Inputs held in memory [N, ...], with optional valid frames ``{T: int [N]}``."""

    inputs: np.ndarray
    frames: dict[int, np.ndarray] | None = None

    @property
    def n_clips(self) -> int:
        return int(self.inputs.shape[0])

    def batches(self, start: int, stop: int, batch_size: int) -> Iterator[Any]:
        return cut_batches(self.inputs, self.frames, start, stop, batch_size)


def cut_batches(inputs: np.ndarray, frames: dict[int, np.ndarray] | None, start: int,
                stop: int, batch_size: int) -> Iterator[Any]:
    """The forward batches of clips ``[start, stop)``, cut every ``batch_size`` clips from
    ``start`` (a multiple of ``batch_size``, so these are the local engine's batches): tensors,
    or ``(tensor, {T: int [B]})`` with ``frames`` (:data:`~and_toolkit.recording.record.
    FramedBatch`).

    Args:
        inputs: model inputs of every probe clip [N, ...].
        frames: ``{T: int [N]}`` valid frames per clip, or None.
    """
    for i in range(start, stop, batch_size):
        j = min(i + batch_size, stop)
        x = torch.from_numpy(np.array(inputs[i:j]))  # a copy: the object store's are read-only
        yield x if frames is None else (x, {t: v[i:j] for t, v in frames.items()})


class LLMLoader(Protocol):
    """A picklable way to load a cached LLM backend (:class:`~and_toolkit.pipeline.backends.
    LLMSource`)."""

    @property
    def name(self) -> str:
        """The backend name."""
        ...

    def load(self) -> Any:
        """The backend: ``generate(prompts, sampling)``, ``id``, ``last.generated``.

        Raises:
            StageNotRun: the backend cannot be loaded here.
        """
        ...


@dataclass(frozen=True)
class Generation:
    """What :meth:`Engine.generate` returns.

    Attributes:
        texts: per request, one completion per prompt (request order, prompt order).
        generated: distinct prompts the backend generated (cache misses), over all requests.
        backend_id: the backend's id.
    """

    texts: list[list[str]]
    generated: int
    backend_id: str


class WorkerLoader(Protocol):
    """A picklable way to make a worker's function, loaded once per worker (e.g. an audio
    captioner: :class:`~and_toolkit.pipeline.backends.ClipCaptions`)."""

    def load(self) -> Callable[[Any], Any]:
        """The function applied to each item (it may hold a loaded model)."""
        ...


class Engine(Protocol):
    """What a stage may ask of an engine (see the module docstring)."""

    name: str
    loads_clips: bool
    """The record workers load and featurize their own clips (give :meth:`record` a
    ``RecordJob.clips`` feed, not the probe's inputs)."""

    def map(self, stage: str, fn: Callable[[S, T], R], items: Sequence[T], shared: S
            ) -> list[R]:
        """``[fn(shared, item) for item in items]``, in item order.

        ``fn`` must be a module-level function (workers import it by name); ``shared`` is sent
        to the workers once.
        """
        ...

    def record(self, job: RecordJob) -> dict[str, Path]:
        """Record ``job.layers`` over the probe set; write one file per layer; ``{layer: path}``."""
        ...

    def actor_map(self, stage: str, source: WorkerLoader, items: Sequence[Any]) -> list[Any]:
        """``[worker(item) for item in items]`` with ``worker = source.load()`` made once per
        worker (a pool of actors under Ray, stopped when done); results in item order."""
        ...

    def generate(self, stage: str, source: LLMLoader,
                 requests: Sequence[tuple[Sequence[Any], Any]]) -> Generation:
        """Each request ``(prompts, sampling)`` as one ``generate`` call of the backend
        ``source`` loads (once per worker); results in request order.

        Raises:
            StageNotRun: the backend cannot be loaded.
        """
        ...

    def release(self) -> None:
        """Free the workers :meth:`record` keeps between calls (the record stage calls it
        when its last target is written)."""
        ...

    def describe(self, stage: str) -> dict[str, Any]:
        """JSON-serialisable facts for the stage's manifest entry (engine, workers)."""
        ...

    def close(self) -> None:
        """Release what the engine started (a local Ray cluster)."""
        ...


class LocalEngine:
    """Everything in this process: the pipeline's original code path."""

    name = "local"
    loads_clips = False

    def map(self, stage: str, fn: Callable[[S, T], R], items: Sequence[T], shared: S
            ) -> list[R]:
        return [fn(shared, item) for item in items]

    def record(self, job: RecordJob) -> dict[str, Path]:
        from and_toolkit.recording.record import record_to_run

        batches = job.source().batches(0, job.n_clips, job.batch_size)
        return record_to_run(job.model, batches, job.layers, job.pooling, job.run, job.model_id,
                             job.probe_sha256, n_clips=job.n_clips, progress=job.progress,
                             provenance=job.provenance)

    def actor_map(self, stage: str, source: WorkerLoader, items: Sequence[Any]) -> list[Any]:
        worker = source.load()
        return [worker(item) for item in items]

    def generate(self, stage: str, source: LLMLoader,
                 requests: Sequence[tuple[Sequence[Any], Any]]) -> Generation:
        model = source.load()
        texts: list[list[str]] = []
        generated = 0
        for prompts, sampling in requests:
            texts.append(list(model.generate(list(prompts), sampling)))
            generated += model.last.generated
        return Generation(texts, generated, str(model.id))

    def release(self) -> None:
        return None

    def describe(self, stage: str) -> dict[str, Any]:
        return {"engine": self.name}

    def close(self) -> None:
        return None
