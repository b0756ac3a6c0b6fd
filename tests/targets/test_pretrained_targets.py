"""Pretrained targets as ESC-50 targets: frozen head training, recording and pruning hooks."""

from __future__ import annotations

import numpy as np
import torch

from and_toolkit.recording.hooks import select_layers
from and_toolkit.recording.prune import pruned
from and_toolkit.recording.record import record_activations
from and_toolkit.targets.config import DEFAULT_TARGETS, build_model
from and_toolkit.targets.train import evaluate, train_target
from tests.targets.conftest import YAMNET_WEIGHTS, tone_clips

pytestmark = YAMNET_WEIGHTS


def test_frozen_yamnet_trains_only_its_head_and_folds_the_standardisation() -> None:
    waves, targets, folds = tone_clips()
    cfg = DEFAULT_TARGETS["yamnet-frozen"].model_copy(update={"n_classes": 3, "epochs": 20,
                                                              "batch_size": 4})
    trained = train_target(cfg, waves, targets, folds, progress=False)
    fresh = build_model(cfg)
    changed = {k for k, v in trained.model.state_dict().items()
               if not torch.equal(v, fresh.state_dict()[k])}
    assert changed == {"classifier.weight", "classifier.bias"}
    # the model (raw embeddings -> folded head) predicts what the standardised head predicted
    acc, _ = evaluate(trained.model, waves[folds == 1], targets[folds == 1], 4)
    assert acc == trained.curve[-1]["test_accuracy"]


def test_yamnet_records_conv_channels_and_prunes_them() -> None:
    waves, _, _ = tone_clips()
    model = build_model(DEFAULT_TARGETS["yamnet-frozen"].model_copy(update={"n_classes": 3}))
    model.eval()
    layers = select_layers(model)
    assert layers[0] == "layers.0.conv" and layers[-1] == "classifier"
    assert len(layers) == 28  # stem + 13 x (depthwise, pointwise) + head
    x = torch.from_numpy(waves[:4])
    rec = record_activations(model, [x], ["layers.1.pointwise", "classifier"], progress=False)
    assert rec["layers.1.pointwise"].shape == (4, 64)
    assert rec["classifier"].shape == (4, 3)
    mask = {"layers.1.pointwise": np.arange(64) == 5}
    with pruned(model, mask):
        cut = record_activations(model, [x], ["layers.1.pointwise"], progress=False)
    assert np.all(cut["layers.1.pointwise"][:, 5] == 0)
    np.testing.assert_array_equal(cut["layers.1.pointwise"][:, :5],
                                  rec["layers.1.pointwise"][:, :5])


def test_fine_tuned_yamnet_trains_its_backbone_on_waveforms() -> None:
    """``yamnet_tuned_blocks = None``: every layer is fine-tuned on waveforms."""
    waves, targets, folds = tone_clips()
    cfg = DEFAULT_TARGETS["yamnet"].model_copy(update={"n_classes": 3, "epochs": 1,
                                                       "batch_size": 6, "precision": "fp32",
                                                       "yamnet_tuned_blocks": None})
    trained = train_target(cfg, waves, targets, folds, progress=False)
    fresh = build_model(cfg)
    changed = {k.rsplit(".", 1)[0] for k, v in trained.model.state_dict().items()
               if not torch.equal(v, fresh.state_dict()[k])}
    assert {"layers.0.conv", "layers.13.pointwise", "classifier"} <= changed
    assert len(trained.curve) == 1
