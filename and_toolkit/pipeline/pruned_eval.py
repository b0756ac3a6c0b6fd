"""Pruned evaluation of one target for the pruning experiments (Table 4 / Fig 10, Fig 4, the
dose check): ``evaluate(mask) -> logits``, cached on disk, timed per target."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from and_toolkit.cache import cache_key
from and_toolkit.config import TargetSection
from and_toolkit.experiments.masks import mask_sha
from and_toolkit.pipeline.context import Context
from and_toolkit.pipeline.targets import load_target, logits_on

__all__ = ["EVAL_PRECISION_VERSION", "CachedEvaluate"]

EVAL_PRECISION_VERSION = "autocast-as-trained-v1"
"""Part of the pruned-logits cache key: evaluations run in the target's training precision."""


@dataclass
class CachedEvaluate:
    """``evaluate(mask) -> logits float32 [len(test_rows), C]`` of one target, cached on disk.

    Entries are keyed by the weights key, the sha256 of the pruned-unit bits and the probe rows,
    so a warm re-run performs no forward pass. ``wall_s`` / ``cpu_s`` (seconds; CPU of every
    thread of the process) add up the forward passes run here; each pass also stores its cost
    beside its logits (cache namespace ``logits-cost``), so a run that reads a pass from the
    cache reports what producing it cost (``cached_*``), as the targets stage reports a cached
    target's ``train_seconds``. A progress bar counts the passes on a terminal.

    Attributes:
        ctx: the pipeline context.
        target: the target's config section.
        test_rows: probe row indices int [n_test] of the test clips, in result order.
    """

    ctx: Context
    target: TargetSection
    test_rows: np.ndarray
    calls: int = 0
    forwards: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    _rows_sha: str = field(default="", init=False)
    _bar: Any = field(default=None, init=False, repr=False)
    _computed: set[str] = field(default_factory=set, init=False, repr=False)
    _cached: dict[str, dict[str, float] | None] = field(default_factory=dict, init=False,
                                                         repr=False)

    def __call__(self, mask: Mapping[str, np.ndarray]) -> np.ndarray:
        self.calls += 1
        loaded = load_target(self.ctx, self.target)
        if not self._rows_sha:
            self._rows_sha = hashlib.sha256(self.test_rows.tobytes()).hexdigest()
        key = cache_key(kind="pruned-logits", precision=EVAL_PRECISION_VERSION,
                        weights=loaded.weights_key,
                        mask=mask_sha(mask), rows=self._rows_sha)
        active = {k: np.asarray(v, dtype=bool) for k, v in mask.items() if np.any(v)}

        def compute() -> np.ndarray:
            wall, cpu = time.perf_counter(), time.process_time()
            out = logits_on(self.ctx, loaded, self.test_rows, active).astype(np.float32)
            cost = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}
            self.ctx.cache.put_json("logits-cost", key, cost)
            self.forwards += 1
            self.wall_s += cost["wall_s"]
            self.cpu_s += cost["cpu_s"]
            self._computed.add(key)
            if self._bar is None:
                self._bar = tqdm(desc=f"pruned passes {self.target.id}", unit="pass",
                                 disable=not self.ctx.progress)
            self._bar.update(1)
            return out

        logits = self.ctx.cached_array("logits", key, compute)
        if key not in self._computed and key not in self._cached:
            self._cached[key] = self.ctx.cache.get_json("logits-cost", key)
        return logits

    def timing(self) -> dict[str, Any]:
        """So far (closes the progress bar): ``calls``; ``forward_passes``, ``wall_s``,
        ``cpu_s`` of the passes run here; ``cached`` passes read from the cache, what producing
        them cost (``cached_cost_wall_s``, ``cached_cost_cpu_s``) and how many have no recorded
        cost (``cached_without_cost``: cached before costs were stored)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        costs = [c for c in self._cached.values() if isinstance(c, dict)]
        return {"calls": self.calls, "forward_passes": self.forwards,
                "wall_s": round(self.wall_s, 2), "cpu_s": round(self.cpu_s, 2),
                "cached": len(self._cached),
                "cached_cost_wall_s": round(sum(float(c["wall_s"]) for c in costs), 2),
                "cached_cost_cpu_s": round(sum(float(c["cpu_s"]) for c in costs), 2),
                "cached_without_cost": len(self._cached) - len(costs)}
