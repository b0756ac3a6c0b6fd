"""SSAST-style masked-patch pretraining."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from and_toolkit.targets import build_ast, build_model, train_target
from and_toolkit.targets.pretrain import PretrainConfig, patchify, random_mask

from .conftest import TINY_AST, tiny_cfg

Data = tuple[np.ndarray, np.ndarray, np.ndarray]
TINY_PRE = PretrainConfig(epochs=1, batch_size=8, time_shift=2)


def test_patchify_matches_patch_embedding_order() -> None:
    model = build_ast(TINY_AST, 5)
    conv = model.audio_spectrogram_transformer.embeddings.patch_embeddings
    x = torch.randn(3, TINY_AST.max_length, TINY_AST.num_mel_bins)
    patches = patchify(x, TINY_AST)
    f, t = TINY_AST.grid()
    assert patches.shape == (3, f * t, TINY_AST.patch_size**2)
    want = conv(x)
    bias = conv.projection.bias
    assert bias is not None
    got = patches @ conv.projection.weight.flatten(1).T + bias
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_random_mask_counts_and_seed() -> None:
    a = random_mask(4, 10, 0.3, torch.Generator().manual_seed(0))
    b = random_mask(4, 10, 0.3, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.sum(dim=1).tolist() == [3, 3, 3, 3]


@pytest.mark.parametrize("arch", ["ast", "ast-frozen"])
def test_pretrained_targets(arch: str, tiny_data: Data) -> None:
    cfg = tiny_cfg(arch, pretrain=TINY_PRE, lr=1e-2)
    a = train_target(cfg, *tiny_data, progress=False)
    b = train_target(cfg, *tiny_data, progress=False)
    assert len(a.pretrain_curve) == 1 and np.isfinite(a.pretrain_curve[0]["loss"])
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    init = build_model(cfg).state_dict()
    key = "audio_spectrogram_transformer.layers.0.mlp.fc1.weight"
    assert not torch.equal(sa[key], init[key])  # the encoder was pretrained
    trainable = {n for n, p in a.model.named_parameters() if p.requires_grad}
    if arch == "ast-frozen":
        assert all(n.startswith("classifier.") for n in trainable)
    else:
        assert key in trainable


def test_pretrain_only_for_ast() -> None:
    with pytest.raises(ValidationError, match="pretrain"):
        tiny_cfg("cnn", pretrain=TINY_PRE)
