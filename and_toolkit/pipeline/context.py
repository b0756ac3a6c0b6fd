"""The pipeline's edge: run, cache, data and lazily loaded backends, shared by all stages."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from and_toolkit.cache import Cache, cache_key
from and_toolkit.config import RunConfig
from and_toolkit.errors import ConfigError
from and_toolkit.records.models import ProbeClip
from and_toolkit.run import Run


def array_bytes(arr: np.ndarray) -> bytes:
    """``np.save`` bytes of an array (for the cache)."""
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def bytes_array(raw: bytes) -> np.ndarray:
    """Inverse of :func:`array_bytes` (no pickles)."""
    return np.load(io.BytesIO(raw), allow_pickle=False)


def section_sha(*parts: Any) -> str:
    """Short fingerprint of config sections (for stage resumption)."""
    return cache_key(parts=[p.model_dump(mode="json") if hasattr(p, "model_dump") else p
                            for p in parts])[:16]


@dataclass
class Context:
    """Everything a stage needs besides its records: config, run, cache, data, backends.

    Attributes:
        cfg: the run configuration.
        run: the run directory.
        cache: content-addressed cache for expensive deterministic work.
        progress: show progress bars.
    """

    cfg: RunConfig
    run: Run
    cache: Cache
    progress: bool = True
    memo: dict[str, Any] = field(default_factory=dict)

    # ----- data -------------------------------------------------------------------------------
    def data_dir(self) -> Path:
        """``$AND_DATA_DIR`` (required for ESC-50 and folder probes)."""
        from and_toolkit.probe.esc50 import esc50_data_dir

        return esc50_data_dir().parent

    def probe(self) -> pl.DataFrame:
        """The run's ProbeClip frame, in probe order."""
        if "probe" not in self.memo:
            self.memo["probe"] = self.run.read(ProbeClip).sort("index")
        return self.memo["probe"]  # type: ignore[no-any-return]

    def probe_sha(self) -> str:
        """Hash of the ordered clip ids (ties activations to the probe set)."""
        from and_toolkit.recording.record import probe_sha256

        return probe_sha256(self.probe()["clip_id"].to_list())

    def waveforms(self) -> list[np.ndarray]:
        """Float32 mono waveforms in probe order (loaded once per process)."""
        if "waveforms" not in self.memo:
            kind = self.cfg.probe.kind
            probe = self.probe()
            if kind == "synthetic":
                synth = self.synthetic()
                self.memo["waveforms"] = [synth.waveforms[c] for c in probe["clip_id"]]
            else:
                from and_toolkit.probe.audio import load_clips

                root = self.dataset_root()
                sr = int(probe["sample_rate"][0])
                self.memo["waveforms"] = load_clips(root, probe["path"].to_list(), sr)
        return self.memo["waveforms"]  # type: ignore[no-any-return]

    def dataset_root(self) -> Path:
        """Folder that ProbeClip paths are relative to."""
        if self.cfg.probe.kind == "esc50":
            return self.data_dir() / "esc50"
        if self.cfg.probe.kind == "folder":
            if not self.cfg.probe.folder:
                raise ConfigError("probe.folder: required when probe.kind = 'folder'")
            return Path(self.cfg.probe.folder)
        raise ConfigError("the synthetic probe set has no dataset root")

    def synthetic(self) -> Any:
        """The synthetic probing set (generated once per process)."""
        if "synthetic" not in self.memo:
            from and_toolkit.probe.synthetic import SyntheticConfig, synthetic_probe

            cfg = SyntheticConfig(n_per_class=self.cfg.probe.per_class or 8, seed=self.cfg.seed)
            self.memo["synthetic"] = synthetic_probe(cfg)
        return self.memo["synthetic"]

    # ----- cached arrays ----------------------------------------------------------------------
    def cached_array(self, namespace: str, key: str, compute: Any) -> np.ndarray:
        """An array from the cache, or ``compute()`` stored under ``key``."""
        raw = self.cache.get_bytes(namespace, key)
        if raw is not None:
            return bytes_array(raw)
        arr = np.asarray(compute())
        self.cache.put_bytes(namespace, key, array_bytes(arr))
        return arr

    def features(self, feature_cfg: Any) -> np.ndarray:
        """Log-mel features [N, T, F] of the probe set (cached by probe hash + config)."""
        memo_key = f"features:{feature_cfg.model_dump_json()}"
        if memo_key not in self.memo:
            from and_toolkit.targets.features import logmel_features

            key = cache_key(kind="logmel", probe=self.probe_sha(), data=self.data_sha(),
                            cfg=feature_cfg.model_dump(mode="json"))
            self.memo[memo_key] = self.cached_array(
                "features", key, lambda: logmel_features(self.waveforms(), feature_cfg))
        return self.memo[memo_key]  # type: ignore[no-any-return]

    def data_sha(self) -> str:
        """Hash of the probe table (paths, sizes, labels): changes when the data changes."""
        if "data_sha" not in self.memo:
            probe = self.probe()
            blob = json.dumps(probe.to_dicts(), sort_keys=True).encode()
            self.memo["data_sha"] = hashlib.sha256(blob).hexdigest()
        return self.memo["data_sha"]  # type: ignore[no-any-return]

    # ----- backends ---------------------------------------------------------------------------
    def backend(self, name: str, factory: Any) -> Any:
        """A backend loaded once per process by ``factory()``."""
        key = f"backend:{name}"
        if key not in self.memo:
            self.memo[key] = factory()
        return self.memo[key]
