"""The frozen-encoder AST fitted on its encoder's output computed once (``encoder_once``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from and_toolkit.targets import build_model, evaluate, train_target
from and_toolkit.targets.concurrent import estimated_seconds
from and_toolkit.targets.config import TrainConfig
from and_toolkit.targets.pooled import pooled_outputs

from .conftest import tiny_cfg

Data = tuple[np.ndarray, np.ndarray, np.ndarray]
NO_INPUT_AUGMENTATION = {"time_shift": 0, "time_masks": 0, "freq_masks": 0}


def once_cfg(**kw: object) -> TrainConfig:
    return tiny_cfg("ast-frozen", encoder_once=True, **{**NO_INPUT_AUGMENTATION, **kw})


def test_only_the_classifier_changes_and_the_curve_is_the_full_models_accuracy(
        tiny_data: Data) -> None:
    features, targets, folds = tiny_data
    cfg = once_cfg(epochs=4, lr=3e-2)
    out = train_target(cfg, features, targets, folds, progress=False)
    fresh = build_model(cfg).state_dict()
    trained = out.model.state_dict()
    changed = {k for k in fresh if not torch.equal(fresh[k], trained[k])}
    assert changed and all(k.startswith("classifier.") for k in changed)
    assert not out.model.training
    # the classifier was fitted on pooled vectors; the full model on log-mels gives its accuracy
    test = folds == cfg.test_fold
    acc, _ = evaluate(out.model, features[test], targets[test])
    assert acc == pytest.approx(out.curve[-1]["test_accuracy"])
    assert len(out.curve) == cfg.epochs


def test_the_full_model_reproduces_the_logits_of_the_classifier_on_pooled_outputs(
        tiny_data: Data) -> None:
    features, targets, folds = tiny_data
    cfg = once_cfg(epochs=2)
    model = train_target(cfg, features, targets, folds, progress=False).model
    pooled = pooled_outputs(model, features, "fp32", batch_size=7)
    assert pooled.shape == (len(features), cfg.ast.hidden_size) and pooled.dtype == np.float32
    with torch.inference_mode():
        via_pooled = model.classifier(torch.from_numpy(pooled)).numpy()
    _, full = evaluate(model, features, targets, batch_size=64)
    # same float32 operations, batched differently: float32 rounding only
    np.testing.assert_allclose(full, via_pooled, rtol=1e-5, atol=1e-5)


def test_training_is_deterministic_and_patience_works(tiny_data: Data) -> None:
    features, targets, folds = tiny_data
    cfg = once_cfg(epochs=5, patience=1, val_fraction=0.25, lr=3e-2)
    a = train_target(cfg, features, targets, folds, progress=False)
    b = train_target(cfg, features, targets, folds, progress=False)
    assert [r["val_accuracy"] for r in a.curve] == [r["val_accuracy"] for r in b.curve]
    assert len(a.curve) <= cfg.epochs
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k


def test_config_rules_and_the_weights_key() -> None:
    plain = TrainConfig(arch="ast-frozen", precision="fp32")
    assert "encoder_once" not in plain.arch_payload()  # keys as before the field
    once = TrainConfig(arch="ast-frozen", precision="fp32", encoder_once=True,
                       **NO_INPUT_AUGMENTATION)
    assert once.arch_payload()["encoder_once"] is True
    with pytest.raises(ValueError, match="encoder_once: only for arch 'ast-frozen'"):
        TrainConfig(arch="ast", encoder_once=True, **NO_INPUT_AUGMENTATION)
    with pytest.raises(ValueError, match="time_masks, freq_masks act on log-mel inputs"):
        TrainConfig(arch="ast-frozen", encoder_once=True)


def test_pooled_outputs_refuses_other_models_and_bad_shapes(tiny_data: Data) -> None:
    features, _, _ = tiny_data
    cnn = build_model(tiny_cfg("cnn"))
    with pytest.raises(TypeError, match="expected an AST model, got LogMelCNN"):
        pooled_outputs(cnn, features, "fp32", 8)
    ast = build_model(once_cfg()).train()
    with pytest.raises(ValueError, match=r"expected log-mels \[N, T, F\]"):
        pooled_outputs(ast, features[0], "fp32", 8)
    pooled_outputs(ast, features[:3], "fp32", 8)
    assert ast.audio_spectrogram_transformer.training  # mode restored


def test_the_time_estimate_counts_one_forward_pass_per_clip() -> None:
    choice = {"threads_source": "target", "thread_seconds": {"1": 0.3}}
    once = TrainConfig(arch="ast-frozen", precision="fp32", threads=1, batch_size=32,
                       encoder_once=True, **NO_INPUT_AUGMENTATION)
    per_epoch = once.model_copy(update={"encoder_once": False})
    assert estimated_seconds(once, choice, 1600, 400) == pytest.approx(0.3 * 2000 / 32 / 3)
    assert estimated_seconds(per_epoch, choice, 1600, 400) > 50 * estimated_seconds(
        once, choice, 1600, 400)
