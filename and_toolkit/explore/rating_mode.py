"""The rating mode's walk: a seeded random sample of neurons per block, as in the paper's study.

The sample and the order of the descriptions are the annotation sheet's
(:func:`and_toolkit.experiments.qualitative.annotation_sheet`: ``n`` neurons per (model,
block), head neurons left out, each neuron's method rows shuffled by the seed), so the explorer
and the CSV sheet of the same seed show raters the same neurons in the same order. Pages show
the descriptions as "Description 1, 2, 3" without method names.
"""

from __future__ import annotations

import threading
from typing import Any

import polars as pl

from and_toolkit.experiments.human_ratings import DESCRIBED_SIMILARITY
from and_toolkit.experiments.qualitative import AnnotationConfig, annotation_sheet
from and_toolkit.explore.data import KEY, RATED_METHODS, Tables


class RatingWalk:
    """Samples of one run, computed once per (model, seed, n per block)."""

    def __init__(self, tables: Tables) -> None:
        self._tables = tables
        self._extremes: pl.DataFrame | None = None
        self._samples: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def models(self) -> list[str]:
        """Models with block neurons (the ones a walk can sample)."""
        view = self._tables.view.filter(pl.col("block").is_not_null())
        return sorted(view["model"].unique().to_list())

    def sample(self, model: str, seed: int, n_per_block: int) -> list[dict[str, Any]]:
        """The neurons to rate, in walk order.

        Returns:
            One dict per neuron: ``model, layer, unit, block, alias`` and ``descriptions``
            (list of ``{method, text}`` in the shuffled order; methods without a description
            of that neuron are left out).

        Raises:
            ValueError: ``model`` has no block neurons.
        """
        if model not in self.models():
            raise ValueError(f"model: {model!r} has no block neurons to rate; "
                             f"known: {self.models()}")
        key = (model, seed, n_per_block)
        with self._lock:
            if key not in self._samples:
                self._samples[key] = self._build(model, seed, n_per_block)
            return self._samples[key]

    def _build(self, model: str, seed: int, n_per_block: int) -> list[dict[str, Any]]:
        t = self._tables
        if self._extremes is None:
            self._extremes = t.run.extremes()
        neurons = t.view.filter(pl.col("model") == model).select(*KEY, "block", "alias")
        sheet = annotation_sheet(
            neurons, self._extremes, t.probe, t.calibrated, t.concepts,
            AnnotationConfig(n_per_block=n_per_block, seed=seed, methods=RATED_METHODS,
                             similarity=dict(DESCRIBED_SIMILARITY)))
        aliases = dict(zip(neurons.select(KEY).rows(), neurons["alias"].to_list(), strict=True))
        out: list[dict[str, Any]] = []
        for (m, layer, unit, block), rows in sheet.group_by(
                [*KEY, "block"], maintain_order=True):
            described = [{"method": r["method"], "text": r["description"]}
                         for r in rows.iter_rows(named=True) if r["description"]]
            out.append({"model": m, "layer": layer, "unit": unit, "block": block,
                        "alias": aliases[(m, layer, unit)], "descriptions": described})
        return out
