"""Partial fine-tuning of YAMNet (``yamnet_tuned_blocks``): frozen trunk, cached once per clip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from and_toolkit.cache import Cache
from and_toolkit.targets.config import DEFAULT_TARGETS, TrainConfig, build_model
from and_toolkit.targets.pretrained import partial
from and_toolkit.targets.pretrained.yamnet import YAMNet
from and_toolkit.targets.train import evaluate, train_target
from and_toolkit.targets.weights import weights_key
from tests.targets.conftest import YAMNET_WEIGHTS, tone_clips


def _keys(waves: np.ndarray) -> list[str]:
    from and_toolkit.targets.pretrained.pins import backbone_sha256

    return [partial.trunk_key(backbone_sha256("yamnet"), 2, w) for w in waves]


def _cfg(**update: Any) -> TrainConfig:
    return DEFAULT_TARGETS["yamnet"].model_copy(update={
        "n_classes": 3, "epochs": 2, "batch_size": 4, "precision": "fp32", **update})


@YAMNET_WEIGHTS
def test_top_blocks_train_the_trunk_stays_and_its_outputs_are_computed_once_per_clip(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    waves, targets, folds = tone_clips()
    clips_through_trunk: list[int] = []
    trunk = partial._trunk

    def counting(model: Any, wav: torch.Tensor, first: int) -> torch.Tensor:
        clips_through_trunk.append(len(wav))
        return trunk(model, wav, first)

    monkeypatch.setattr(partial, "_trunk", counting)
    cache = Cache(root=tmp_path)
    cfg = _cfg(yamnet_tuned_blocks=2)
    trained = train_target(cfg, waves, targets, folds, progress=False, cache=cache)
    assert sum(clips_through_trunk) == len(waves)  # once per clip for all epochs
    assert len(list((tmp_path / "yamnet-trunk").rglob("*"))) == len(waves) + len(
        {k[:2] for k in _keys(waves)})  # one entry per clip (in its key-prefix directory)
    fresh = build_model(cfg).state_dict()
    changed = {k.rsplit(".", 1)[0] for k, v in trained.model.state_dict().items()
               if not torch.equal(v, fresh[k])}
    assert changed == {"layers.12.depthwise", "layers.12.pointwise", "layers.13.depthwise",
                       "layers.13.pointwise", "classifier"}
    # the full model, from waveforms, predicts what the top blocks did on the cached outputs
    acc, _ = evaluate(trained.model, waves[folds == 1], targets[folds == 1], 4)
    assert acc == trained.curve[-1]["test_accuracy"]
    # again with the same cache: no trunk pass, the same weights (read clip by clip)
    again = train_target(cfg, waves, targets, folds, progress=False, cache=cache)
    assert sum(clips_through_trunk) == len(waves)
    for k, v in again.model.state_dict().items():
        assert torch.equal(v, trained.model.state_dict()[k]), k


@YAMNET_WEIGHTS
def test_tuned_blocks_is_yamnet_only_and_keys_only_yamnet() -> None:
    with pytest.raises(ValueError, match="only for arch 'yamnet'"):
        TrainConfig(arch="yamnet-frozen", yamnet_tuned_blocks=1)
    frozen = DEFAULT_TARGETS["yamnet-frozen"].model_copy(update={"precision": "fp32"})
    assert "yamnet_tuned_blocks" not in frozen.arch_payload()
    one, two = _cfg(yamnet_tuned_blocks=1), _cfg(yamnet_tuned_blocks=2)
    assert weights_key(one, "f") != weights_key(two, "f")
    with pytest.raises(ValueError, match="log-mel inputs"):
        train_target(_cfg(yamnet_tuned_blocks=1, time_masks=2), *tone_clips(), progress=False)


@pytest.mark.parametrize("n_tuned", [1, 2, 14])
def test_top_blocks_on_trunk_outputs_compute_the_full_model(n_tuned: int) -> None:
    """Random weights (no package needed): trunk outputs (flattened channels-last) through
    :class:`TopBlocks` give the full model's logits from waveforms, bitwise (the same
    operations on the same values); 14 tunes the stem too (the trunk is the front end)."""
    torch.manual_seed(0)
    net = YAMNet().eval()
    wav = np.random.default_rng(0).normal(0, 0.1, (3, 23280)).astype(np.float32)
    x, shape = partial.trunk_outputs(net, wav, np.arange(3), n_tuned, None, "0" * 64)
    assert x.shape == (3, int(np.prod(shape)))
    top = partial.TopBlocks(net, n_tuned, shape)
    assert len(top.blocks) == n_tuned
    with torch.no_grad():
        torch.testing.assert_close(top(torch.from_numpy(x)), net(torch.from_numpy(wav)),
                                   rtol=0, atol=0)
    partial.freeze_trunk(net, n_tuned)
    trainable = {n.rsplit(".", 2)[0] for n, p in net.named_parameters() if p.requires_grad}
    assert trainable == {f"layers.{i}" for i in range(14 - n_tuned, 14)} | {"classifier"}
