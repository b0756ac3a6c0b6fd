"""Safetensors round-trip and weights keys."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from and_toolkit.targets import (
    build_model,
    evaluate,
    labels_sha,
    load_weights,
    save_weights,
    train_target,
    weights_key,
)

from .conftest import TINY_AST, TINY_CNN, tiny_cfg

Data = tuple[np.ndarray, np.ndarray, np.ndarray]


@pytest.mark.parametrize("arch", ["cnn", "ast"])
def test_roundtrip_bitwise_logits(arch: str, tiny_data: Data, tmp_path: Path) -> None:
    features, targets, folds = tiny_data
    trained = train_target(tiny_cfg(arch), features, targets, folds, progress=False)
    path = save_weights(trained.model, tmp_path / "w" / "m.safetensors", {"arch": arch})
    assert path.is_file() and not list(path.parent.glob(".*tmp"))
    fresh = build_model(tiny_cfg(arch, seed=99))
    load_weights(fresh, path)
    _, want = evaluate(trained.model, features, targets)
    _, got = evaluate(fresh, features, targets)
    assert np.array_equal(want, got)


def test_load_rejects_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "bad.safetensors"
    save_file({"head.weight": torch.zeros(3, 3)}, str(path))
    with pytest.raises(ValueError, match="does not fit"):
        load_weights(build_model(tiny_cfg("cnn")), path)
    with pytest.raises(FileNotFoundError):
        load_weights(build_model(tiny_cfg("cnn")), tmp_path / "missing.safetensors")


def test_weights_key_covers_what_matters() -> None:
    cfg = tiny_cfg("cnn")
    key = weights_key(cfg, "f" * 64)
    assert len(key) == 64 and key == weights_key(tiny_cfg("cnn"), "f" * 64)
    assert key != weights_key(tiny_cfg("cnn", seed=1), "f" * 64)
    assert key != weights_key(cfg, "e" * 64)
    assert key != weights_key(cfg, "f" * 64, labels_sha(np.arange(3), np.ones(3)))
    assert key != weights_key(
        tiny_cfg("cnn", cnn=TINY_CNN.model_copy(update={"dropout": 0.5})), "f" * 64
    )
    # The unused architecture block does not change the key.
    other_ast = TINY_AST.model_copy(update={"num_layers": 2})
    assert key == weights_key(tiny_cfg("cnn", ast=other_ast), "f" * 64)
    assert weights_key(tiny_cfg("ast"), "f" * 64) != weights_key(tiny_cfg("ast-frozen"), "f" * 64)


def test_labels_sha() -> None:
    t, f = np.arange(4), np.array([1, 1, 2, 2])
    assert labels_sha(t, f) == labels_sha(t.astype(np.int32), f)
    assert labels_sha(t, f) != labels_sha(t, f[::-1])
