"""Builders: module paths, parameter counts, frozen encoder."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from and_toolkit.targets import (
    ASTArchConfig,
    CNNArchConfig,
    build_ast,
    build_ast_frozen,
    build_cnn,
    build_model,
)

from .conftest import TINY_AST, tiny_cfg


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _ast_params(c: ASTArchConfig, n_classes: int) -> int:
    d, m = c.hidden_size, c.intermediate_size
    f, t = c.grid()
    embed = d * c.patch_size**2 + d + 2 * d + (f * t + 2) * d
    block = 4 * (d * d + d) + 2 * 2 * d + (d * m + m) + (m * d + d)
    head = 2 * d + d * n_classes + n_classes
    return embed + c.num_layers * block + 2 * d + head


def test_ast_module_paths_and_param_count() -> None:
    model = build_ast(TINY_AST, 5)
    names = dict(model.named_modules())
    for path in [
        "audio_spectrogram_transformer.layers.0.attention.q_proj",
        "audio_spectrogram_transformer.layers.0.attention.o_proj",
        "audio_spectrogram_transformer.layers.0.mlp.fc1",
        "audio_spectrogram_transformer.layers.0.mlp.fc2",
        "classifier.dense",
    ]:
        assert isinstance(names[path], torch.nn.Linear), path
    assert names["classifier.dense"].out_features == 5
    assert _n_params(model) == _ast_params(TINY_AST, 5)
    out = model(torch.zeros(2, TINY_AST.max_length, TINY_AST.num_mel_bins)).logits
    assert out.shape == (2, 5)


def test_default_ast_shape() -> None:
    cfg = ASTArchConfig()
    assert cfg.num_layers >= 6 and cfg.hidden_size == 192 and cfg.intermediate_size == 768
    model = build_ast(cfg, 50)
    assert _n_params(model) == _ast_params(cfg, 50)
    n_linear_units = sum(
        m.out_features
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and n.startswith("audio_spectrogram_transformer.")
    )
    assert n_linear_units == cfg.num_layers * (4 * 192 + 768 + 192)


def test_ast_config_rejects_bad_heads() -> None:
    with pytest.raises(ValidationError, match="num_heads"):
        ASTArchConfig(hidden_size=192, num_heads=5)


def test_frozen_only_head_trains() -> None:
    model = build_ast_frozen(TINY_AST, 5)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {
        "classifier.layernorm.weight",
        "classifier.layernorm.bias",
        "classifier.dense.weight",
        "classifier.dense.bias",
    }


def test_cnn_module_paths_and_param_count() -> None:
    cfg = CNNArchConfig()
    model = build_cnn(cfg, 50)
    names = dict(model.named_modules())
    for i in range(4):
        assert isinstance(names[f"blocks.{i}.conv1"], torch.nn.Conv2d)
        assert isinstance(names[f"blocks.{i}.conv2"], torch.nn.Conv2d)
        assert isinstance(names[f"blocks.{i}.bn2"], torch.nn.BatchNorm2d)
    assert isinstance(names["head"], torch.nn.Linear)
    assert names["blocks.0.conv1"].out_channels == 24
    assert names["blocks.3.conv2"].out_channels == 160
    widths = (1, *cfg.channels)
    convs = sum(9 * a * b + 9 * b * b for a, b in zip(widths[:-1], widths[1:], strict=True))
    bns = 2 * 2 * sum(cfg.channels) + 2 * cfg.num_mel_bins
    expected = convs + bns + 160 * 50 + 50
    assert _n_params(model) == expected
    assert 450_000 < expected < 600_000
    model.eval()
    assert model(torch.zeros(2, 512, 64)).shape == (2, 50)


def test_build_model_is_seeded_and_keeps_global_rng() -> None:
    state = torch.random.get_rng_state()
    a, b, c = (build_model(tiny_cfg("cnn", seed=s)).state_dict() for s in (3, 3, 4))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a["head.weight"], b["head.weight"])
    assert not torch.equal(a["head.weight"], c["head.weight"])


def test_n_classes_validated() -> None:
    with pytest.raises(ValueError, match="n_classes"):
        build_cnn(CNNArchConfig(), 1)


def test_cnn_time_pool_halves_frames_keeps_params() -> None:
    base = build_cnn(CNNArchConfig(channels=(4, 8), num_mel_bins=8), 3)
    pooled = build_cnn(CNNArchConfig(channels=(4, 8), num_mel_bins=8, time_pool=2), 3)
    assert _n_params(base) == _n_params(pooled)
    seen: list[tuple[int, ...]] = []
    hook = pooled.get_submodule("blocks.0.conv1").register_forward_hook(
        lambda _m, _i, out: seen.append(tuple(out.shape))
    )
    pooled.eval()
    assert pooled(torch.zeros(2, 33, 8)).shape == (2, 3)
    hook.remove()
    assert seen == [(2, 4, 17, 8)]


def test_cnn_stem_stride_quarters_positions_and_keeps_old_keys() -> None:
    arch = CNNArchConfig(channels=(4, 8), num_mel_bins=8, stem_stride=2)
    strided = build_cnn(arch, 3).eval()
    assert _n_params(strided) == _n_params(build_cnn(CNNArchConfig(channels=(4, 8),
                                                                   num_mel_bins=8), 3))
    seen: dict[str, tuple[int, ...]] = {}
    for path in ("blocks.0.conv1", "blocks.1.conv1"):
        strided.get_submodule(path).register_forward_hook(
            lambda _m, _i, out, p=path: seen.__setitem__(p, tuple(out.shape)))
    assert strided(torch.zeros(2, 33, 8)).shape == (2, 3)
    # [33, 8] -> stride 2 (rounded up) [17, 4] -> 2x2 pool [8, 2] into block 1
    assert seen == {"blocks.0.conv1": (2, 4, 17, 4), "blocks.1.conv1": (2, 8, 8, 2)}
    # stride 1 is left out of the dump, so weights keys written before the field stay valid
    assert "stem_stride" not in CNNArchConfig().model_dump()
    assert CNNArchConfig.model_validate(arch.model_dump()) == arch
    assert "stem_stride" not in tiny_cfg("cnn").arch_payload()["cnn"]  # type: ignore[operator]
    with pytest.raises(ValidationError, match="stem_stride"):
        CNNArchConfig(stem_stride=0)
