"""Probe clips for the browser: WAV audio and log-mel spectrogram PNGs, by clip id only.

A clip id is looked up in the run's probe table; the file opened is the table's ``path`` under
the dataset root of the run's configuration (ESC-50: ``$AND_DATA_DIR/esc50``; folder probes:
``probe.folder``), and must resolve inside that root. Nothing from a request is ever joined to
a path: an id the table does not hold raises :class:`UnknownClip` (the app answers 404).
Synthetic probes have no files: the set is regenerated from the run's seed and size (once per
process) and checked against the table's clip lengths.

Audio is served as the network heard it: mono, at the front end's rate (16 kHz), 16-bit PCM
WAV. The spectrogram is the run's log-mel front end (``targets.features``, normalised
log-mel, frames x mel bins) drawn with time left to right and low frequencies at the bottom;
rendered on first request and kept in a bounded in-memory cache.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from and_toolkit.config import RunConfig
from and_toolkit.errors import DataError

CACHE_SIZE = 256
"""Spectrogram PNGs (and WAVs) kept in memory, most recently used first (~50 kB each)."""


class UnknownClip(KeyError):
    """A clip id the run's probe table does not hold."""


class _Lru:
    """A small thread-safe LRU of bytes."""

    def __init__(self, size: int) -> None:
        self._size, self._items = size, OrderedDict[str, bytes]()
        self._lock = threading.Lock()

    def get(self, key: str, make: Callable[[], bytes]) -> bytes:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value


class ClipSource:
    """Waveforms, WAV bytes and spectrograms of one run's probe clips.

    Args:
        probe: the run's ProbeClip frame.
        config: the run's configuration (probe kind, dataset root, seed, features).
        data_root: override of the dataset root (tests); default from ``config``.
    """

    def __init__(self, probe: pl.DataFrame, config: RunConfig,
                 data_root: Path | None = None) -> None:
        self._rows: dict[str, dict[str, Any]] = {r["clip_id"]: r for r in probe.to_dicts()}
        self._config = config
        self._root = data_root
        self._synthetic: dict[str, np.ndarray] | None = None
        self._lock = threading.Lock()
        self._wav, self._png = _Lru(CACHE_SIZE), _Lru(CACHE_SIZE)
        self._feature_cfg = self._features()  # imports the front end (torch) now, not mid-request

    @property
    def sample_rate(self) -> int:
        """The front end's rate in Hz (``FeatureConfig.sample_rate``)."""
        return int(self._feature_cfg.sample_rate)

    def row(self, clip_id: str) -> dict[str, Any]:
        """The probe row of a clip.

        Raises:
            UnknownClip: the probe table holds no such clip id.
        """
        row = self._rows.get(clip_id)
        if row is None:
            raise UnknownClip(clip_id)
        return row

    def _features(self) -> Any:
        from and_toolkit.targets.features import FeatureConfig

        f = self._config.features
        return FeatureConfig(num_mel_bins=f.num_mel_bins, max_length=f.max_length)

    def dataset_root(self) -> Path:
        """Folder the probe paths are relative to.

        Raises:
            DataError: a synthetic probe (no files), or a folder probe without ``folder``.
        """
        if self._root is not None:
            return self._root
        probe = self._config.probe
        if probe.kind == "esc50":
            from and_toolkit.probe.esc50 import esc50_data_dir

            return esc50_data_dir()
        if probe.kind == "folder" and probe.folder:
            return Path(probe.folder)
        raise DataError(f"probe.kind = {probe.kind!r}: the clips have no dataset root")

    def _synthetic_waves(self) -> dict[str, np.ndarray]:
        with self._lock:
            if self._synthetic is None:
                from and_toolkit.probe.synthetic import SyntheticConfig, synthetic_probe

                per_class = self._config.probe.per_class
                cfg = SyntheticConfig(seed=self._config.seed,
                                      **({"n_per_class": per_class} if per_class else {}))
                self._synthetic = dict(synthetic_probe(cfg).waveforms)
            return self._synthetic

    def waveform(self, clip_id: str) -> np.ndarray:
        """Float32 mono waveform [S] at :attr:`sample_rate`.

        Raises:
            UnknownClip: unknown id.
            DataError: the file is missing, outside the dataset root or unreadable, or the
                regenerated synthetic clip does not match the probe table.
        """
        row = self.row(clip_id)
        if self._config.probe.kind == "synthetic":
            wave = self._synthetic_waves().get(clip_id)
            if wave is None or len(wave) != row["n_samples"]:
                raise DataError(f"probe.parquet: field 'n_samples': synthetic clip {clip_id!r} "
                                "does not regenerate from the run's seed and per_class")
            return wave
        from and_toolkit.probe.audio import load_audio

        root = self.dataset_root().resolve()
        path = (root / row["path"]).resolve()
        if root not in path.parents:
            raise DataError(f"probe.parquet: field 'path': {row['path']!r} leaves {root}")
        return load_audio(path, self.sample_rate, self._config.probe.resample,
                          downmix=self._config.probe.downmix)

    def wav(self, clip_id: str) -> bytes:
        """The clip as 16-bit PCM mono WAV at :attr:`sample_rate`."""
        import soundfile as sf

        def make() -> bytes:
            buf = io.BytesIO()
            sf.write(buf, np.clip(self.waveform(clip_id), -1.0, 1.0), self.sample_rate,
                     format="WAV", subtype="PCM_16")
            return buf.getvalue()

        self.row(clip_id)
        return self._wav.get(clip_id, make)

    def spectrogram(self, clip_id: str) -> bytes:
        """PNG of the clip's log-mel features (the run's front end), 640 x 200 px."""
        self.row(clip_id)
        return self._png.get(clip_id, lambda: _png(self.waveform(clip_id), self._feature_cfg))


def _png(wave: np.ndarray, cfg: Any) -> bytes:
    """Draw normalised log-mel features [T, F] of one waveform; padding frames cut off."""
    from matplotlib.figure import Figure

    from and_toolkit.targets.features import logmel_features

    feats = logmel_features([wave], cfg)[0]  # [T, F]
    frames = min(feats.shape[0], max(1, int(len(wave) / cfg.sample_rate * 100)))  # 10 ms hop
    fig = Figure(figsize=(6.4, 2.0), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(feats[:frames].T, origin="lower", aspect="auto", cmap="magma",
              interpolation="nearest")
    ax.set_axis_off()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
