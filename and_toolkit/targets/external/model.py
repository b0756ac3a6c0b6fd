"""A user's audio model as the toolkit sees it: a torch module plus how clips become its inputs.

:class:`ExternalModel` is what :mod:`~and_toolkit.targets.external.load` returns for a
transformers directory or a ``package.module:function`` factory. Its ``prepare`` turns float32
mono waveforms at ``sample_rate`` into one batch of model inputs and, per padded frame count T
of the outputs that can hold padding, the number of frames holding each clip's audio
(:class:`Prepared`); recording pools only over those frames.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

__all__ = ["ExternalModel", "Prepared", "Preprocess", "WaveformPreprocess", "batches_of",
           "dummy_waveforms", "weights_sha256"]

Inputs = torch.Tensor | Mapping[str, torch.Tensor]
"""One batch of model inputs: a tensor passed positionally or a dict passed as keywords."""


@dataclass(frozen=True)
class Prepared:
    """One batch ready for the model.

    Attributes:
        inputs: the model inputs of B clips.
        frames: ``{T: int [B]}``: an output whose time axis has padded length T holds clip b's
            audio in its first ``frames[T][b]`` frames only (empty: every frame holds audio).
    """

    inputs: Inputs
    frames: dict[int, np.ndarray] = field(default_factory=dict)


@runtime_checkable
class Preprocess(Protocol):
    """What a factory's preprocessing callable must look like.

    ``preprocess(waveforms)`` takes float32 mono waveforms ``[S_i]`` at ``preprocess.sample_rate``
    Hz and returns the model inputs of the batch (a tensor ``[B, ...]`` or a dict of tensors).
    """

    sample_rate: int

    def __call__(self, waveforms: Sequence[np.ndarray]) -> Any: ...


@dataclass(frozen=True)
class WaveformPreprocess:
    """A preprocessing function with its declared sample rate (for factories).

    Attributes:
        fn: ``fn(waveforms) -> tensor | dict of tensors``.
        sample_rate: the rate in Hz the waveforms must have.
    """

    fn: Callable[[Sequence[np.ndarray]], Any]
    sample_rate: int

    def __call__(self, waveforms: Sequence[np.ndarray]) -> Any:
        return self.fn(waveforms)


@dataclass(frozen=True)
class ExternalModel:
    """A user's model, ready to record.

    Attributes:
        module: the network whose modules are recorded (for a Whisper checkpoint its encoder,
            for CLAP its audio tower); called as ``module(**inputs)`` or ``module(inputs)``.
        family: ``ast``, ``wav2vec2``, ``hubert``, ``whisper``, ``clap`` or ``factory``.
        sample_rate: the rate in Hz its preprocessing declares; clips are resampled to it.
        prepare: waveforms (float32 mono at ``sample_rate``) -> :class:`Prepared`.
        types: module types recorded by default.
        exclude: fnmatch patterns never recorded by default for this family (on top of the
            run's ``record.exclude``).
        exact_padding: False when padding a batch changes the valid frames (e.g. wav2vec2 with
            group norm over time): batches then hold clips of one length only.
        max_batch: at most this many clips per forward pass (None: the run's batch size).
        source: provenance (``pretrained`` directory or ``factory`` path, class, family).
    """

    module: nn.Module
    family: str
    sample_rate: int
    prepare: Callable[[Sequence[np.ndarray]], Prepared]
    types: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d)
    exclude: tuple[str, ...] = ()
    exact_padding: bool = True
    max_batch: int | None = None
    source: dict[str, Any] = field(default_factory=dict)

    def batch_size(self, default: int) -> int:
        """Clips per forward pass: ``default`` capped by :attr:`max_batch`."""
        return min(default, self.max_batch) if self.max_batch else default


def batches_of(model: ExternalModel, waveforms: Iterator[np.ndarray], batch_size: int
               ) -> Iterator[Prepared]:
    """Prepared batches of consecutive clips (probe order kept), ``batch_size`` at most; when
    the model's padding is not exact, a batch also ends where the clip length changes.

    Args:
        model: the model.
        waveforms: float32 mono waveforms at ``model.sample_rate``, in probe order (consumed
            lazily: at most one batch of audio is held).
        batch_size: clips per batch.
    """
    pending: list[np.ndarray] = []
    for wave in waveforms:
        if pending and (len(pending) >= batch_size or (
                not model.exact_padding and len(wave) != len(pending[0]))):
            yield model.prepare(pending)
            pending = []
        pending.append(wave)
    if pending:
        yield model.prepare(pending)


def dummy_waveforms(sample_rate: int, seconds: float = 1.0, n: int = 1) -> list[np.ndarray]:
    """``n`` seeded white-noise waveforms (float32, RMS 0.1) for a shape-finding forward pass."""
    rng = np.random.default_rng(0)
    length = max(1, int(round(seconds * sample_rate)))
    return [(0.1 * rng.standard_normal(length)).astype(np.float32) for _ in range(n)]


def weights_sha256(module: nn.Module) -> str:
    """SHA-256 over the module's state dict (names, dtypes, shapes and bytes, in order)."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
