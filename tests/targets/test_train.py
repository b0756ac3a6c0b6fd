"""Training: determinism, frozen encoder, curve, evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from and_toolkit.targets import build_model, evaluate, train_target

from .conftest import tiny_cfg

Data = tuple[np.ndarray, np.ndarray, np.ndarray]


def _state_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("arch", ["cnn", "ast"])
def test_one_epoch_is_deterministic(arch: str, tiny_data: Data) -> None:
    cfg = tiny_cfg(arch)
    a = train_target(cfg, *tiny_data, progress=False)
    b = train_target(cfg, *tiny_data, progress=False)
    c = train_target(tiny_cfg(arch, seed=1), *tiny_data, progress=False)
    assert _state_equal(a.model, b.model)
    assert not _state_equal(a.model, c.model)
    assert not _state_equal(a.model, build_model(cfg))  # it did train
    assert not a.model.training
    assert [r["train_loss"] for r in a.curve] == [r["train_loss"] for r in b.curve]


def test_bf16_cosine_runs_and_curve_fields(tiny_data: Data) -> None:
    cfg = tiny_cfg("cnn", epochs=2, precision="bf16", schedule="cosine", label_smoothing=0.1)
    out = train_target(cfg, *tiny_data, progress=False)
    assert [r["epoch"] for r in out.curve] == [1, 2]
    for row in out.curve:
        assert set(row) == {"epoch", "train_loss", "test_accuracy", "seconds"}
        assert np.isfinite(row["train_loss"]) and row["seconds"] > 0
        assert 0.0 <= row["test_accuracy"] <= 1.0
    assert all(p.dtype == torch.float32 for p in out.model.parameters())


def test_frozen_encoder_unchanged(tiny_data: Data) -> None:
    cfg = tiny_cfg("ast-frozen", lr=1e-2)
    init = build_model(cfg).state_dict()
    trained = train_target(cfg, *tiny_data, progress=False).model.state_dict()
    for name, value in trained.items():
        if name.startswith("classifier."):
            continue
        assert torch.equal(value, init[name]), name
    assert not torch.equal(trained["classifier.dense.weight"], init["classifier.dense.weight"])


def test_evaluate_matches_logits(tiny_data: Data) -> None:
    features, targets, folds = tiny_data
    model = build_model(tiny_cfg("cnn"))
    acc, logits = evaluate(model, features, targets, batch_size=7)
    assert logits.shape == (40, 5) and logits.dtype == np.float32
    assert acc == pytest.approx(float((logits.argmax(1) == targets).mean()))
    out = train_target(tiny_cfg("cnn"), features, targets, folds, progress=False)
    test = folds == 1
    acc1, _ = evaluate(out.model, features[test], targets[test], precision="fp32")
    assert acc1 == pytest.approx(out.curve[-1]["test_accuracy"])


def test_input_validation(tiny_data: Data) -> None:
    features, targets, folds = tiny_data
    with pytest.raises(ValueError, match="targets"):
        train_target(tiny_cfg("cnn", n_classes=3), features, targets, folds, progress=False)
    with pytest.raises(ValueError, match="test_fold"):
        train_target(tiny_cfg("cnn", test_fold=9), features, targets, folds, progress=False)
    with pytest.raises(ValueError, match="folds"):
        train_target(tiny_cfg("cnn"), features, targets, folds[:5], progress=False)
    with pytest.raises(ValueError, match="features"):
        train_target(tiny_cfg("cnn"), features[0], targets, folds, progress=False)
