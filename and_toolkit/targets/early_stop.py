"""Early stopping of a target's training on a held-out part of the training folds.

With ``TrainConfig.patience`` set, a seeded, class-stratified ``val_fraction`` of the training
clips is held out of the optimisation (:func:`validation_rows`); after each epoch the model's
accuracy on them is measured, and training stops once it has not improved for ``patience``
epochs (:class:`EarlyStop`). The weights of the best epoch (first of ties) are restored, and that
epoch's curve row is flagged ``restored = 1.0``, so the target's fold-1 accuracy is read from
that row (:func:`final_row`), not from the last epoch run. The test fold plays no part in the
choice.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["EarlyStop", "final_row", "validation_rows"]


def validation_rows(targets: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A seeded, class-stratified hold-out of the training clips.

    Args:
        targets: int [N] class ids of the training clips.
        fraction: share of each class held out, in (0, 1); rounded per class, at least one
            clip of every class with two or more (a class with one clip stays in training).
        seed: seed of the draw.

    Returns:
        bool [N]: True for the held-out (validation) clips.

    Raises:
        ValueError: ``fraction`` outside (0, 1), or nothing would be held out.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"val_fraction: expected a value in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    held = np.zeros(len(targets), bool)
    for c in np.unique(targets):
        rows = np.flatnonzero(targets == c)
        if len(rows) < 2:
            continue
        n = min(len(rows) - 1, max(1, round(fraction * len(rows))))
        held[rng.choice(rows, size=n, replace=False)] = True
    if not held.any():
        raise ValueError("val_fraction: no class has two training clips to hold one out")
    return held


class EarlyStop:
    """Tracks the held-out accuracy per epoch and keeps the best epoch's weights.

    Args:
        patience: epochs without improvement (strictly higher accuracy) before stopping.
    """

    def __init__(self, patience: int) -> None:
        if patience < 1:
            raise ValueError(f"patience: expected >= 1, got {patience}")
        self.patience = patience
        self.best_accuracy = -1.0
        self.best_epoch = 0
        self._state: dict[str, torch.Tensor] | None = None

    def update(self, epoch: int, accuracy: float, model: nn.Module) -> bool:
        """Record epoch ``epoch``'s held-out ``accuracy`` (fraction); True when training should
        stop (no improvement for ``patience`` epochs)."""
        if accuracy > self.best_accuracy:
            self.best_accuracy, self.best_epoch = accuracy, epoch
            self._state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return epoch - self.best_epoch >= self.patience

    def restore(self, model: nn.Module, curve: list[dict[str, Any]]) -> None:
        """Load the best epoch's weights into ``model`` and flag its row of ``curve``."""
        if self._state is None:
            raise RuntimeError("EarlyStop.restore: no epoch was recorded")
        model.load_state_dict(self._state)
        for row in curve:
            if row["epoch"] == self.best_epoch:
                row["restored"] = 1.0


def final_row(curve: list[dict[str, Any]]) -> dict[str, Any]:
    """The curve row of the weights training returned: the restored epoch's when early stopping
    restored one, else the last epoch's.

    Raises:
        ValueError: ``curve`` is empty.
    """
    if not curve:
        raise ValueError("final_row: empty training curve")
    restored = [r for r in curve if r.get("restored")]
    return restored[-1] if restored else curve[-1]
