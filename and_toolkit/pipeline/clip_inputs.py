"""Model inputs a worker makes itself from probe clips: load, resample, featurize a clip range.

Under the Ray engine the record actors do not receive the probe's inputs from the driver: each
gets one of these picklable feeds (once per target) and builds the forward batches of its own
clip partition ``[start, stop)`` with the functions the local engine's inputs come from
(:func:`and_toolkit.probe.audio.load_clips` / the synthetic generator,
:func:`and_toolkit.signal.resample`, :func:`and_toolkit.targets.features.logmel_features`). Those
are per clip (no statistic over the probe), so a partition's inputs equal the matching rows of
the driver's ``Context.features()`` / ``Context.waveform_matrix()`` bit for bit on one machine,
and the recorded files are the local engine's (``tests/pipeline/test_ray_engine.py``).

Feeds (each has ``n_clips`` and ``batches(start, stop, batch_size)``, the batches of
:data:`~and_toolkit.recording.record.FramedBatch` / tensors the forward pass takes):

- :class:`ClipInputs`: log-mel features [B, T, F] of the targets trained here (read from the
  content cache entry of the probe's features when it exists, as ``Context.features`` does), or 16 kHz
  waveforms [B, S] zero-padded to the probe's longest clip (pretrained targets; the Whisper
  target's valid frames from the clips' lengths);
- :class:`ExternalInputs`: a user's model's batches through its family adapter
  (:func:`and_toolkit.targets.external.batches_of`).

Memory of a worker: one forward batch of audio and inputs (clips are loaded batch by batch).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from and_toolkit.errors import DataError

__all__ = ["ClipAudio", "ClipInputs", "ExternalInputs"]


@lru_cache(maxsize=2)
def _synthetic_waveforms(per_class: int, seed: int) -> dict[str, np.ndarray]:
    """The synthetic probe's waveforms (generated once per worker process)."""
    from and_toolkit.probe.synthetic import SyntheticConfig, synthetic_probe

    return synthetic_probe(SyntheticConfig(n_per_class=per_class, seed=seed)).waveforms


@dataclass(frozen=True)
class ClipAudio:
    """Where the probe's clips are read from, and at which rate (one entry per probe clip).

    Attributes:
        sample_rate: the rate in Hz the waveforms are returned at.
        clip_rates: each clip's own rate in Hz (``ProbeClip.sample_rate``).
        paths: file paths relative to ``root`` (``ProbeClip.path``); empty for the synthetic
            probe.
        root: the dataset root, or None for the synthetic probe.
        resample: files at another rate are resampled (``probe.resample``), else refused.
        downmix: multi-channel files are averaged (``probe.downmix``), else refused.
        synthetic: ``(per_class, seed)`` of the synthetic probe, or None.
        clip_ids: clip ids in probe order (the synthetic waveforms are looked up by id).
        resample_synthetic: resample synthetic clips to ``sample_rate`` (a user's model's rate);
            False: passed on at their generated rate (``Context.waveforms``).
    """

    sample_rate: int
    clip_rates: tuple[int, ...]
    paths: tuple[str, ...] = ()
    root: str | None = None
    resample: bool = False
    downmix: bool = False
    synthetic: tuple[int, int] | None = None
    clip_ids: tuple[str, ...] = ()
    resample_synthetic: bool = False

    @property
    def n_clips(self) -> int:
        return len(self.clip_rates)

    def waveforms(self, start: int, stop: int) -> list[np.ndarray]:
        """Float32 mono waveforms of clips ``[start, stop)`` at :attr:`sample_rate`.

        Raises:
            DataError: a file is unreadable, at another rate without ``resample``, or has
                several channels without ``downmix`` (naming the file).
        """
        if self.synthetic is not None:
            from and_toolkit.signal import resample

            waves = _synthetic_waveforms(*self.synthetic)
            ids = self.clip_ids[start:stop]
            if not self.resample_synthetic:
                return [waves[c] for c in ids]
            return [resample(waves[c], sr, self.sample_rate)
                    for c, sr in zip(ids, self.clip_rates[start:stop], strict=True)]
        from and_toolkit.probe.audio import load_clips

        if self.root is None:
            raise ValueError("ClipAudio: root is required for a probe read from files")
        return load_clips(Path(self.root), list(self.paths[start:stop]), self.sample_rate,
                          self.resample, downmix=self.downmix)


@dataclass(frozen=True)
class ClipInputs:
    """The inputs of a target trained here, made per clip range (see the module docstring).

    Attributes:
        audio: where the clips come from (at the front end's rate).
        kind: ``"logmel"`` (features [B, T, F]) or ``"waveform"`` (16 kHz samples [B, S]).
        features: the log-mel ``FeatureConfig`` (kind ``"logmel"``).
        width: S, the probe's longest clip in samples (kind ``"waveform"``): every clip is
            zero-padded to it, as ``Context.waveform_matrix`` pads.
        lengths: each clip's samples (kind ``"waveform"``; ``ProbeClip.n_samples``), checked
            against the loaded clip.
        whisper_window: seconds of the Whisper target's window: batches carry the valid frames
            of ``targets.pretrained.whisper.valid_frames``; None: every frame counts.
        cached: the content-cache entry holding the probe's log-mel features
            (``Context.features``' entry, verified by the driver), or None: a worker reads its
            rows from it (:func:`~and_toolkit.cache.npy_rows`: the bytes the local engine
            reads) instead of featurizing, as ``Context.features`` reads the cache before
            computing; where the file is not visible (a node without the shared cache), it
            featurizes its clips.
    """

    audio: ClipAudio
    kind: Literal["logmel", "waveform"]
    features: Any = None
    width: int = 0
    lengths: tuple[int, ...] = ()
    whisper_window: float | None = None
    cached: str | None = None

    @property
    def n_clips(self) -> int:
        return self.audio.n_clips

    def inputs(self, start: int, stop: int) -> np.ndarray:
        """Model inputs of clips ``[start, stop)``: float32 [B, T, F] or [B, S].

        Raises:
            DataError: a waveform clip's loaded length differs from its ``n_samples`` in the
                probe table (the padding width would differ from the local engine's).
        """
        if self.kind == "logmel" and self.cached is not None and Path(self.cached).is_file():
            from and_toolkit.cache import npy_rows

            return npy_rows(self.cached, start, stop)
        waves = self.audio.waveforms(start, stop)
        if self.kind == "logmel":
            from and_toolkit.targets.features import logmel_features

            return logmel_features(waves, self.features)
        out = np.zeros((len(waves), self.width), np.float32)
        for i, w in enumerate(waves):
            want = self.lengths[start + i]
            if len(w) != want:
                where = self.audio.paths[start + i] if self.audio.paths else \
                    self.audio.clip_ids[start + i]
                raise DataError(f"{where}: loaded {len(w)} samples, the probe table's field "
                                f"'n_samples' says {want}")
            out[i, :len(w)] = w
        return out

    def batches(self, start: int, stop: int, batch_size: int) -> Iterator[Any]:
        """The forward batches of clips ``[start, stop)`` (``start`` a multiple of
        ``batch_size``: the local engine's batches), loaded batch by batch."""
        for i in range(start, stop, batch_size):
            j = min(i + batch_size, stop)
            x = torch.from_numpy(self.inputs(i, j))
            if self.whisper_window is None:
                yield x
                continue
            from and_toolkit.targets.pretrained.whisper import valid_frames

            yield x, valid_frames(np.array(self.lengths[i:j]), self.whisper_window)


@lru_cache(maxsize=2)
def _external(pretrained: str | None, factory: str | None, online: bool) -> Any:
    """A user's model loaded in this worker process (once per process and spec)."""
    from and_toolkit.targets.external import load_external

    return load_external(pretrained=pretrained, factory=factory, online=online)


@dataclass(frozen=True)
class ExternalInputs:
    """A user's model's batches of a clip range, through its family adapter; the worker loads
    the model itself from its spec (a saved directory on storage the workers mount, or an
    importable factory), never unpickled from the driver (transformers modules with weight
    norm, as wav2vec2's, cannot be pickled).

    Attributes:
        pretrained, factory, online: the target's spec (``config.TargetSection``).
        weights_sha256: ``targets.external.weights_sha256`` of the driver's model: a worker
            whose loaded weights differ (another directory content, a factory that is not
            seeded) refuses to record.
        audio: the clips at the model's rate.
    """

    pretrained: str | None
    factory: str | None
    online: bool
    weights_sha256: str
    audio: ClipAudio

    @property
    def n_clips(self) -> int:
        return self.audio.n_clips

    def model(self) -> Any:
        """The :class:`~and_toolkit.targets.external.ExternalModel`, loaded in this process.

        Raises:
            DataError: its weights are not the driver's.
        """
        from and_toolkit.targets.external import weights_sha256

        ext = _external(self.pretrained, self.factory, self.online)
        got = weights_sha256(ext.module)
        if got != self.weights_sha256:
            raise DataError(f"{self.pretrained or self.factory}: a record worker loaded weights "
                            f"{got[:12]}, the driver's are {self.weights_sha256[:12]} (the "
                            "directory must be the same on every node; a factory must be "
                            "seeded)")
        return ext

    def batches(self, start: int, stop: int, batch_size: int) -> Iterator[Any]:
        """Prepared batches of clips ``[start, stop)``: ``(inputs, frames)``. Needs exact
        padding (batches then cut every ``batch_size`` clips, as the local pass cuts them)."""
        from and_toolkit.targets.external import batches_of

        ext = self.model()
        if not ext.exact_padding:
            raise ValueError("ExternalInputs: a model whose batches end where the clip length "
                             "changes (exact_padding = False) is recorded in one pass")

        def clips() -> Iterator[np.ndarray]:
            for i in range(start, stop, batch_size):
                yield from self.audio.waveforms(i, min(i + batch_size, stop))

        for p in batches_of(ext, clips(), batch_size):
            yield p.inputs, p.frames
