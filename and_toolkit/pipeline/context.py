"""The pipeline's edge: config, run, cache and the run's inputs, loaded once and shared by stages.

A :class:`Context` holds typed, lazily filled slots (probe table, waveforms, features, loaded
backends and target networks); nothing is exchanged between stages through string keys.
Backends are loaded by :mod:`and_toolkit.pipeline.backends`, target networks by
:mod:`and_toolkit.pipeline.targets`; records are read through the :class:`~and_toolkit.run.Run`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import polars as pl

from and_toolkit.cache import Cache, array_bytes, bytes_array, cache_key
from and_toolkit.config import ExecutionSection, RunConfig, TargetSection
from and_toolkit.errors import ConfigError, DataError
from and_toolkit.records.models import ProbeClip
from and_toolkit.run import Run

if TYPE_CHECKING:
    from and_toolkit.pipeline.clip_inputs import ClipAudio
    from and_toolkit.pipeline.engine import Engine
    from and_toolkit.probe.synthetic import SyntheticProbe
    from and_toolkit.targets.external import ExternalModel
    from and_toolkit.targets.features import FeatureConfig

T = TypeVar("T")


def make_engine(execution: ExecutionSection) -> Engine:
    """The engine of ``[execution]``; Ray is imported only for ``engine = "ray"``.

    Raises:
        ConfigError: ``engine = "ray"`` without Ray installed (names the extra to install).
    """
    if execution.engine == "local":
        from and_toolkit.pipeline.engine import LocalEngine

        return LocalEngine()
    from and_toolkit.pipeline.ray_engine import RayEngine

    return RayEngine(execution)


def section_sha(*parts: Any) -> str:
    """Short fingerprint of config sections (for stage resumption)."""
    return cache_key(parts=[p.model_dump(mode="json") if hasattr(p, "model_dump") else p
                            for p in parts])[:16]


@dataclass
class Context:
    """Everything a stage needs besides its records: config, run, cache, inputs, backends.

    Attributes:
        cfg: the run configuration.
        run: the run directory.
        cache: content-addressed cache for expensive deterministic work.
        progress: show progress bars.
        targets: loaded target networks by target id (filled by
            :func:`and_toolkit.pipeline.targets.load_target`).
    """

    cfg: RunConfig
    run: Run
    cache: Cache
    progress: bool = True
    targets: dict[str, Any] = field(default_factory=dict)
    _probe: pl.DataFrame | None = field(default=None, repr=False)
    _waveforms: list[np.ndarray] | None = field(default=None, repr=False)
    _synthetic: SyntheticProbe | None = field(default=None, repr=False)
    _features: np.ndarray | None = field(default=None, repr=False)
    _waveform_matrix: np.ndarray | None = field(default=None, repr=False)
    _data_sha: str | None = field(default=None, repr=False)
    _backends: dict[str, Any] = field(default_factory=dict, repr=False)
    _engine: Engine | None = field(default=None, repr=False)

    # ----- data -------------------------------------------------------------------------------
    def data_dir(self) -> Path:
        """``$AND_DATA_DIR`` (required for ESC-50 and folder probes)."""
        from and_toolkit.probe.esc50 import esc50_data_dir

        return esc50_data_dir().parent

    def probe(self) -> pl.DataFrame:
        """The run's ProbeClip frame, in probe order."""
        if self._probe is None:
            self._probe = self.run.read(ProbeClip).sort("index")
        return self._probe

    def forget_probe(self) -> None:
        """Drop the loaded probe table and everything derived from it (after it is rewritten)."""
        self._probe = self._waveforms = self._data_sha = self._features = None
        self._waveform_matrix = None

    def probe_sha(self) -> str:
        """Hash of the ordered clip ids (ties activations to the probe set)."""
        from and_toolkit.recording.record import probe_sha256

        return probe_sha256(self.probe()["clip_id"].to_list())

    def class_names(self) -> list[str]:
        """The concept set D_c: the label of every class id 0..C-1."""
        from and_toolkit.probe.subset import class_names

        return class_names(self.probe())

    def sample_rate(self) -> int:
        """Rate in Hz of :meth:`waveforms`: the log-mel front end's (``FeatureConfig``), or,
        when every target is a user's model and they declare one rate, that rate (what their
        feature extractor / preprocess declares)."""
        own = [t for t in self.cfg.targets if t.external]
        if own and len(own) == len(self.cfg.targets):
            rates = {self.external_model(t).sample_rate for t in own}
            if len(rates) == 1:
                return rates.pop()
        return self.feature_config().sample_rate

    def external_model(self, target: TargetSection) -> ExternalModel:
        """A user's model (``pretrained`` / ``factory`` target), loaded once per process."""
        if target.id not in self.targets:
            from and_toolkit.targets.external import load_external

            self.targets[target.id] = load_external(
                pretrained=target.pretrained, factory=target.factory, online=target.online)
        return self.targets[target.id]  # type: ignore[no-any-return]

    def rate_plan(self) -> dict[str, Any]:
        """File rates vs the front end's (``probe.audio.rate_plan``; raises DataError when a
        clip's rate differs and ``probe.resample`` is false)."""
        from and_toolkit.probe.audio import rate_plan

        probe = self.probe()
        synthetic = self.cfg.probe.kind == "synthetic"  # generated at its rate, never resampled
        return rate_plan(probe["sample_rate"].to_list(), probe["path"].to_list(),
                         self.sample_rate(), self.cfg.probe.resample and not synthetic)

    def waveforms(self) -> list[np.ndarray]:
        """Float32 mono waveforms at :meth:`sample_rate`, in probe order (loaded once per
        process). Files at another rate are resampled (``probe.resample``) or refused; never
        passed on at their own rate."""
        if self._waveforms is None:
            probe = self.probe()
            self.rate_plan()
            if self.cfg.probe.kind == "synthetic":
                synth = self.synthetic()
                self._waveforms = [synth.waveforms[c] for c in probe["clip_id"]]
            else:
                from and_toolkit.probe.audio import load_clips

                self._waveforms = load_clips(
                    self.dataset_root(), probe["path"].to_list(), self.sample_rate(),
                    self.cfg.probe.resample, downmix=self.cfg.probe.downmix)
        return self._waveforms

    def clip_audio(self, sample_rate: int, *, resample_synthetic: bool) -> ClipAudio:
        """Where a worker reads the probe's clips from, at ``sample_rate`` Hz: the files, flags
        and synthetic generator of :meth:`waveforms` (``resample_synthetic``: synthetic clips
        resampled to ``sample_rate``, as a user's model's clips are)."""
        from and_toolkit.pipeline.clip_inputs import ClipAudio

        probe = self.probe()
        synthetic = self.cfg.probe.kind == "synthetic"
        return ClipAudio(
            sample_rate=sample_rate, clip_rates=tuple(int(r) for r in probe["sample_rate"]),
            paths=() if synthetic else tuple(probe["path"].to_list()),
            root=None if synthetic else str(self.dataset_root()),
            resample=self.cfg.probe.resample, downmix=self.cfg.probe.downmix,
            synthetic=(self.cfg.probe.per_class or 8, self.cfg.seed) if synthetic else None,
            clip_ids=tuple(probe["clip_id"].to_list()), resample_synthetic=resample_synthetic)

    def waveform_matrix(self) -> np.ndarray:
        """Waveforms float32 [N, S] at 16 kHz, zero-padded at the end to the longest clip (the
        input of pretrained targets).

        Raises:
            DataError: the probe set is not at 16 kHz.
        """
        if self._waveform_matrix is None:
            rates = set(self.probe()["sample_rate"].to_list())
            if rates != {16000}:
                raise DataError(f"{self.run.root / 'probe.parquet'}: field 'sample_rate': "
                                f"pretrained targets need 16 kHz clips, got {sorted(rates)} Hz")
            waves = self.waveforms()
            out = np.zeros((len(waves), max(len(w) for w in waves)), np.float32)
            for i, w in enumerate(waves):
                out[i, :len(w)] = w
            self._waveform_matrix = out
        return self._waveform_matrix

    def dataset_root(self) -> Path:
        """Folder that ProbeClip paths are relative to."""
        if self.cfg.probe.kind == "esc50":
            return self.data_dir() / "esc50"
        if self.cfg.probe.kind == "folder":
            if not self.cfg.probe.folder:
                raise ConfigError("probe.folder: required when probe.kind = 'folder'")
            return Path(self.cfg.probe.folder)
        raise ConfigError("the synthetic probe set has no dataset root")

    def synthetic(self) -> SyntheticProbe:
        """The synthetic probing set (generated once per process)."""
        if self._synthetic is None:
            from and_toolkit.probe.synthetic import SyntheticConfig, synthetic_probe

            cfg = SyntheticConfig(n_per_class=self.cfg.probe.per_class or 8, seed=self.cfg.seed)
            self._synthetic = synthetic_probe(cfg)
        return self._synthetic

    def data_sha(self) -> str:
        """Hash of the probe table (paths, sizes, labels): changes when the data changes."""
        if self._data_sha is None:
            blob = json.dumps(self.probe().to_dicts(), sort_keys=True).encode()
            self._data_sha = hashlib.sha256(blob).hexdigest()
        return self._data_sha

    def active_captioner(self) -> str:
        """The captioner id the dissection uses (combined captions when descriptors are on)."""
        from and_toolkit.dissect.captions import active_captioner

        return active_captioner(self.cfg.captions.captioner_id, self.cfg.captions.descriptors)

    # ----- cached arrays ----------------------------------------------------------------------
    def cached_array(self, namespace: str, key: str, compute: Callable[[], Any]) -> np.ndarray:
        """An array from the cache, or ``compute()`` stored under ``key``."""
        raw = self.cache.get_bytes(namespace, key)
        if raw is not None:
            return bytes_array(raw)
        arr = np.asarray(compute())
        self.cache.put_bytes(namespace, key, array_bytes(arr))
        return arr

    def feature_config(self) -> FeatureConfig:
        """The log-mel FeatureConfig of the run."""
        from and_toolkit.targets.features import FeatureConfig

        f = self.cfg.features
        return FeatureConfig(num_mel_bins=f.num_mel_bins, max_length=f.max_length)

    def features_key(self) -> str:
        """The cache key of :meth:`features` (namespace ``features``)."""
        return cache_key(kind="logmel", probe=self.probe_sha(), data=self.data_sha(),
                         cfg=self.feature_config().model_dump(mode="json"))

    def features(self) -> np.ndarray:
        """Log-mel features float32 [N, T, F] of the probe set (cached by probe hash + config)."""
        if self._features is None:
            from and_toolkit.targets.features import logmel_features

            feature_cfg = self.feature_config()
            self._features = self.cached_array(
                "features", self.features_key(),
                lambda: logmel_features(self.waveforms(), feature_cfg))
        return self._features

    def features_sha(self) -> str:
        """``targets.features_sha(self.features())`` (what a trained target's weights key
        hashes), without loading the features when the cache remembers it.

        The digest is memoised in the cache (namespace ``features_sha``, under the features'
        own key) together with the payload sha256 of the cached features entry it was computed
        from; it is used only while that entry still holds the same payload, so it is exactly
        the hash of the features :meth:`features` would return. A run whose features and
        targets are cached (e.g. the record stage under the Ray engine, whose workers featurize
        their own clips) thus never materialises [N, T, F] on the driver for its weights keys.
        """
        from and_toolkit.targets.features import features_sha

        key = self.features_key()
        digest = self.cache.payload_digest("features", key)
        memo = self.cache.get_json("features_sha", key) if digest is not None else None
        if isinstance(memo, dict) and memo.get("payload") == digest \
                and isinstance(memo.get("sha256"), str):
            return str(memo["sha256"])
        sha = features_sha(self.features())
        digest = self.cache.payload_digest("features", key)
        if digest is not None:
            self.cache.put_json("features_sha", key, {"payload": digest, "sha256": sha})
        return sha

    # ----- backends ---------------------------------------------------------------------------
    def backend(self, key: str, factory: Callable[[], T]) -> T:
        """A backend loaded once per process by ``factory()`` (keys: pipeline.backends only)."""
        if key not in self._backends:
            self._backends[key] = factory()
        return self._backends[key]  # type: ignore[no-any-return]

    def loaded_backend(self, key: str) -> Any | None:
        """A backend already loaded under ``key``, or None."""
        return self._backends.get(key)

    # ----- execution --------------------------------------------------------------------------
    def engine(self) -> Engine:
        """The run's execution engine (``[execution]``), made on first use (a Ray cluster is
        started or joined only when a distributed stage runs)."""
        if self._engine is None:
            self._engine = make_engine(self.cfg.execution)
        return self._engine

    def close(self) -> None:
        """Release the engine (shuts down a Ray cluster the engine started)."""
        if self._engine is not None:
            self._engine.close()
            self._engine = None
