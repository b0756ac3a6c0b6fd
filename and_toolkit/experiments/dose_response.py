"""Pruning sanity check: accuracy under random ablation from 0 % to 100 % of the pool.

Before any ablation result (Table 4, Figs 4 and 10) is read, this shows that the pruning code
path can destroy a target: random ablation of every prunable neuron must bring accuracy to
chance. It uses exactly the Fig 4 machinery (:func:`~and_toolkit.experiments.ablation.
prune_order` without counts, :func:`~and_toolkit.experiments.ablation.select_for_budget`,
:func:`~and_toolkit.experiments.masks.mask_from_units` over the hidden layers, the injected
:data:`~and_toolkit.experiments.masks.Evaluate`), so a path that leaves some units or layers
untouched shows here as accuracy above chance at 100 %.

The pool is every hidden neuron of ``layer_sizes`` (the classifier is never pruned); x is the
percentage of that pool. Chance is the accuracy of the best constant prediction on the test
clips (the share of the most frequent target id): a network whose every prunable unit is zero
computes the same logits for every clip when no unpruned path carries the input to the
classifier.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator

from and_toolkit.experiments.ablation import budgets, prune_order, select_for_budget
from and_toolkit.experiments.masks import (
    Evaluate,
    EvaluateMany,
    accuracy,
    empty_mask,
    evaluate_masks,
    hidden_layers,
    mask_from_units,
    n_pruned,
)
from and_toolkit.experiments.paper import FIG4A, PaperModel
from and_toolkit.experiments.rows import result_key, result_row, tagged
from and_toolkit.records.models import ResultRow

__all__ = ["DOSE_PERCENTS", "DoseConfig", "chance_accuracy", "dose_response", "relative_loss"]

DOSE_PERCENTS: tuple[float, ...] = (5.0, 12.0, 25.0, 50.0, 75.0, 90.0, 100.0)
"""Default doses (% of the hidden pool): Fig 4's 12 % and the way to 100 %."""


class DoseConfig(BaseModel):
    """Settings of :func:`dose_response`.

    Attributes:
        model: target-network id (ResultRow.model).
        classifier_layer: module path of the classifier (never pruned).
        percents: doses in % of the hidden neurons, in (0, 100]; 0 is always measured.
        seeds: shuffle seeds of the random selection (``random.Random(seed)``, as Fig 4).
        experiment: experiment id of the rows.
        group: ``group`` of every row (e.g. the paper model the target stands for).
        paper_model: the paper model the target stands for; "AST" attaches the paper's
            relative loss at 12 % (Fig 4a random: 0.95 -> 0.160, chance 1/50).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(min_length=1)
    classifier_layer: str = Field(min_length=1)
    percents: tuple[float, ...] = DOSE_PERCENTS
    seeds: tuple[int, ...] = Field(default=(20, 202, 2024), min_length=1)
    experiment: str = "ablation_dose"
    group: str = ""
    paper_model: PaperModel | None = None

    @field_validator("percents")
    @classmethod
    def _doses(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v or any(not 0 < p <= 100 for p in v) or len(set(v)) != len(v):
            raise ValueError(f"percents must be distinct and lie in (0, 100], got {v}")
        return tuple(sorted(v))


def relative_loss(before: float, after: float, chance: float) -> float | None:
    """Share of the above-chance accuracy lost: ``(before - after) / (before - chance)``;
    None when ``before <= chance`` (nothing above chance to lose). 1 = down to chance."""
    return None if before <= chance else (before - after) / (before - chance)


PAPER_RELATIVE_LOSS_12 = relative_loss(FIG4A["random"][0], FIG4A["random"][-1], 1 / 50)
"""The paper's AST at 12 % random ablation (Fig 4a: 0.95 -> 0.160 on 50 balanced classes)."""


def chance_accuracy(targets: np.ndarray) -> float:
    """Accuracy of the best constant prediction: the share of the most frequent target id."""
    t = np.asarray(targets, dtype=np.int64)
    if t.size == 0:
        raise ValueError("targets: no test clips")
    return float(np.bincount(t).max() / t.size)


def dose_response(layer_sizes: Mapping[str, int], test_clips: pl.DataFrame, evaluate: Evaluate,
                  config: DoseConfig, *, evaluate_many: EvaluateMany | None = None
                  ) -> pl.DataFrame:
    """Top-1 accuracy after randomly ablating x % of the hidden neurons, per seed and mean.

    Args:
        layer_sizes: ``{module path: n_units}`` of the recorded layers, classifier included.
        test_clips: ProbeClip frame of the test clips, rows in logits-row order (``target``).
        evaluate: see :data:`~and_toolkit.experiments.masks.Evaluate`.
        config: see :class:`DoseConfig`.
        evaluate_many: optional batched evaluation of all distinct masks.

    Returns:
        ResultRow frame (experiment ``config.experiment``), ``model`` = target, ``group`` =
        ``config.group``. Plotted rows (x = % of the hidden pool ablated, 0 included):
        series ``"mean"`` with metrics ``accuracy`` (fraction, mean over seeds) and
        ``accuracy_sd`` (sample SD over seeds, with >= 2 seeds), series ``"chance"`` with
        metric ``accuracy`` = :func:`chance_accuracy` at every x (the chance line).
        Tabulated rows (x null): per dose and seed, series ``"<x> %"``, metric
        ``"seed=<s>"``; series ``""``: ``n_hidden`` (pool size), ``chance``,
        ``relative_loss_at_12`` (:func:`relative_loss` at 12 %, when configured; the paper's
        AST value for ``paper_model="AST"``), ``accuracy_at_100`` (mean at 100 %, when that
        dose is configured) and
        ``above_chance_at_100`` (its excess over chance; > 0 means some path bypasses the
        pruned units).

    Raises:
        ValueError: malformed ``layer_sizes`` or logits, or no test clips.
    """
    hidden = hidden_layers(layer_sizes, config.classifier_layer)
    layers = np.array([lay for lay, n in hidden.items() for _ in range(n)], dtype=object)
    units = np.concatenate([np.arange(n) for n in hidden.values()]).astype(np.int64)
    total = int(units.size)
    sizes = budgets(config.percents, total)
    masks = {}
    for seed in config.seeds:
        order = prune_order(None, total, seed)
        for b in sizes:
            pos = select_for_budget(order, b)
            masks[(seed, b)] = mask_from_units(hidden, layers[pos].tolist(), units[pos].tolist(),
                                               "dose")
    t = test_clips["target"].to_numpy().astype(np.int64)
    chance = chance_accuracy(t)
    logits = evaluate_masks([empty_mask(hidden), *masks.values()], evaluate, evaluate_many,
                            t.size)
    acc0 = accuracy(logits[0], t)
    acc = {k: accuracy(z, t) for k, z in zip(masks, logits[1:], strict=True)}

    def row(series: str, x: float | None, metric: str, value: float | None,
            note: str = "") -> dict[str, Any]:
        parts = (config.model, series, x, metric) if x is not None else (config.model, metric)
        return result_row(config.experiment, result_key(*parts), metric, value,
                          model=config.model, group=config.group, series=series, x=x,
                          note=note)

    def seed_row(x: float, seed: int, value: float) -> dict[str, Any]:
        return result_row(config.experiment, result_key(config.model, "seeds", x, tagged(
            "seed", seed)), tagged("seed", seed), value, model=config.model,
            group=config.group, series=f"{x:g} %")

    n_seeds = len(config.seeds)
    chance_note = "chance: share of the most frequent test class"
    rows = [row("mean", 0.0, "accuracy", acc0, "measured, unpruned"),
            row("chance", 0.0, "accuracy", chance, chance_note)]
    for pct, b in zip(config.percents, sizes, strict=True):
        x = float(pct)
        per = [acc[(s, b)] for s in config.seeds]
        rows.append(row("mean", x, "accuracy", float(np.mean(per)),
                        f"{b} of {total} hidden neurons, random, {n_seeds} seeds"))
        if n_seeds > 1:
            rows.append(row("mean", x, "accuracy_sd", float(np.std(per, ddof=1)),
                            f"sample SD over {n_seeds} seeds"))
        rows.append(row("chance", x, "accuracy", chance, chance_note))
        rows += [seed_row(x, s, a) for s, a in zip(config.seeds, per, strict=True)]
    rows += [row("", None, "n_hidden", float(total), "prunable neurons (classifier excluded)"),
             row("", None, "chance", chance, chance_note)]
    if 12.0 in config.percents:
        at12 = float(np.mean([acc[(s, sizes[config.percents.index(12.0)])]
                              for s in config.seeds]))
        loss = relative_loss(acc0, at12, chance)
        rows.append(result_row(
            config.experiment, result_key(config.model, "relative_loss_at_12"),
            "relative_loss_at_12", loss, model=config.model, group=config.group, series="",
            paper_value=PAPER_RELATIVE_LOSS_12 if config.paper_model == "AST" else None,
            note=("share of the above-chance accuracy lost at 12 % random ablation (paper: "
                  "Fig 4a AST, 12 % of all linear-layer neurons)") if loss is not None else
            "unpruned accuracy is at or below chance"))
    if config.percents[-1] == 100.0:
        full = [acc[(s, sizes[-1])] for s in config.seeds]
        assert all(n_pruned(masks[(s, sizes[-1])]) == total for s in config.seeds)
        rows += [row("", None, "accuracy_at_100", float(np.mean(full)),
                     "every hidden neuron ablated"),
                 row("", None, "above_chance_at_100", float(np.mean(full)) - chance,
                     "> 0: some path bypasses the pruned units")]
    return ResultRow.frame(rows)
