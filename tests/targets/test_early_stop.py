"""Early stopping on a held-out part of the training folds, and the frozen head's std floor and
cached clip embeddings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from and_toolkit.cache import Cache
from and_toolkit.targets import evaluate, train_target
from and_toolkit.targets.config import TrainConfig
from and_toolkit.targets.early_stop import EarlyStop, final_row, validation_rows
from and_toolkit.targets.pretrained.head import train_frozen_head

from .conftest import tiny_cfg

Data = tuple[np.ndarray, np.ndarray, np.ndarray]


def test_validation_rows_are_stratified_seeded_and_leave_every_class_in_training() -> None:
    targets = np.repeat(np.arange(4), [10, 10, 3, 1])
    held = validation_rows(targets, 0.2, seed=7)
    assert held.dtype == bool and held.shape == targets.shape
    assert [int(held[targets == c].sum()) for c in range(4)] == [2, 2, 1, 0]
    assert all((~held)[targets == c].any() for c in range(4))  # no class leaves training
    assert np.array_equal(held, validation_rows(targets, 0.2, seed=7))
    assert not np.array_equal(held, validation_rows(targets, 0.2, seed=8))
    with pytest.raises(ValueError, match="val_fraction"):
        validation_rows(targets, 1.0, seed=0)


def test_early_stop_keeps_the_first_best_epoch_and_stops_after_patience() -> None:
    model = nn.Linear(2, 1)
    stop = EarlyStop(patience=2)
    curve: list[dict[str, Any]] = []
    best_weight = None
    decisions = []
    for epoch, acc in enumerate([0.2, 0.5, 0.5, 0.4], start=1):
        with torch.no_grad():
            model.weight.fill_(float(epoch))
        if epoch == 2:
            best_weight = model.weight.detach().clone()
        curve.append({"epoch": epoch, "test_accuracy": acc / 2})
        decisions.append(stop.update(epoch, acc, model))
    assert decisions == [False, False, False, True]  # epoch 3 ties: not an improvement
    stop.restore(model, curve)
    assert torch.equal(model.weight, best_weight)
    assert [r.get("restored") for r in curve] == [None, 1.0, None, None]
    assert final_row(curve)["epoch"] == 2
    assert final_row([{"epoch": 1}, {"epoch": 2}])["epoch"] == 2  # no early stopping: last


def test_training_with_patience_returns_the_kept_epochs_weights(tiny_data: Data) -> None:
    features, targets, folds = tiny_data
    cfg = tiny_cfg("cnn", epochs=6, patience=1, val_fraction=0.25, lr=3e-2)
    out = train_target(cfg, features, targets, folds, progress=False)
    kept = final_row(out.curve)
    assert all(0 <= r["val_accuracy"] <= 1 for r in out.curve)
    assert kept["restored"] == 1.0
    best = max(r["val_accuracy"] for r in out.curve)
    assert kept["val_accuracy"] == best
    assert kept["epoch"] == min(r["epoch"] for r in out.curve if r["val_accuracy"] == best)
    # it ran until `patience` epochs after the kept one, or to the maximum
    assert len(out.curve) in {min(cfg.epochs, kept["epoch"] + cfg.patience)}
    test = folds == 1
    acc, _ = evaluate(out.model, features[test], targets[test])
    assert acc == pytest.approx(kept["test_accuracy"])
    again = train_target(cfg, features, targets, folds, progress=False)
    assert [r["val_accuracy"] for r in again.curve] == [r["val_accuracy"] for r in out.curve]


def test_patience_is_part_of_the_weights_key_only_when_set() -> None:
    plain = TrainConfig(arch="cnn", precision="fp32")
    assert "patience" not in plain.arch_payload() and "val_fraction" not in plain.arch_payload()
    stopping = plain.model_copy(update={"patience": 3})
    assert stopping.arch_payload()["patience"] == 3
    assert stopping.arch_payload()["val_fraction"] == 0.1
    with pytest.raises(ValueError, match="patience"):
        TrainConfig(arch="whisper-frozen", patience=2)
    with pytest.raises(ValueError, match="head_sd_floor"):
        TrainConfig(arch="cnn", head_sd_floor=1.0)


class _Backbone(nn.Module):
    """A stand-in frozen backbone: the clip embedding is the waveform itself (D = S)."""

    def __init__(self, dim: int, n_classes: int) -> None:
        super().__init__()
        self.classifier = nn.Linear(dim, n_classes)
        self.calls = 0

    def embed(self, wav: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return wav


def _embeddings() -> Data:
    """60 clips, 3 classes; dimension 0 carries the class, dimension 3 is almost always 0."""
    rng = np.random.default_rng(0)
    targets = np.tile(np.arange(3), 20)
    x = rng.normal(size=(60, 4)).astype(np.float32)
    x[:, 0] += 2.0 * targets
    x[:, 3] = 0.0
    x[20, 3] = 1e-4  # a near-dead channel (row 20 is in fold 2): std ~1e-5 in training
    folds = np.repeat(np.arange(1, 6), 12)
    return x, targets, folds


@pytest.mark.parametrize("floor", [None, 1.0])
def test_the_sd_floor_bounds_the_folded_head(floor: float | None) -> None:
    x, targets, folds = _embeddings()
    cfg = TrainConfig(arch="yamnet-frozen", n_classes=3, epochs=30, batch_size=8,
                      precision="fp32", head_sd_floor=floor)
    model, curve = train_frozen_head(_Backbone(4, 3), cfg, x, targets, folds)
    w = model.classifier.weight.detach().abs()
    if floor is None:
        assert float(w[:, 3].max()) > 100 * float(w[:, :3].max())  # the near-dead channel
    else:
        assert float(w.max()) < 10  # no dimension is scaled up more than the median one
    assert curve[-1]["test_accuracy"] > 0.6  # the class dimension is still learned


def test_clip_embeddings_are_cached_per_clip(tmp_path: Path) -> None:
    x, targets, folds = _embeddings()
    cfg = TrainConfig(arch="yamnet-frozen", n_classes=3, epochs=2, batch_size=8,
                      precision="fp32")
    cache = Cache(tmp_path)
    first = _Backbone(4, 3)
    a, _ = train_frozen_head(first, cfg, x, targets, folds, cache=cache, backbone="b1")
    assert first.calls > 0
    second = _Backbone(4, 3)
    b, _ = train_frozen_head(second, cfg, x, targets, folds, cache=cache, backbone="b1")
    assert second.calls == 0  # every clip read back
    assert torch.equal(a.classifier.weight, b.classifier.weight)
    third = _Backbone(4, 3)
    train_frozen_head(third, cfg, x, targets, folds, cache=cache, backbone="b2")
    assert third.calls > 0  # another backbone: not mixed up
