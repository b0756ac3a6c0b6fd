"""Target networks: log-mel features, AST / CNN builders, seeded training, safetensors weights.

The names below load on first use (PEP 562): importing a torch-free submodule such as
:mod:`~and_toolkit.targets.cnn_config`, :mod:`~and_toolkit.targets.audio_text_config` or
:mod:`~and_toolkit.targets.train_config` (the run configuration does) must not import torch and
transformers through this package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from and_toolkit.targets.ast import build_ast, build_ast_frozen, freeze_encoder
    from and_toolkit.targets.ast_config import ASTArchConfig
    from and_toolkit.targets.augment import mixup, spec_augment, time_shift
    from and_toolkit.targets.cnn import LogMelCNN, build_cnn
    from and_toolkit.targets.cnn_config import CNNArchConfig
    from and_toolkit.targets.config import build_model
    from and_toolkit.targets.features import FeatureConfig, features_sha, logmel_features
    from and_toolkit.targets.precision import (
        PrecisionDecision,
        autocast,
        resolve_precision,
        resolve_train_config,
    )
    from and_toolkit.targets.train import TrainedTarget, evaluate, logits_of, train_target
    from and_toolkit.targets.train_config import DEFAULT_TARGETS, Arch, TrainConfig
    from and_toolkit.targets.weights import labels_sha, load_weights, save_weights, weights_key

_HOME: dict[str, str] = {
    **dict.fromkeys(("build_ast", "build_ast_frozen", "freeze_encoder"), "ast"),
    "ASTArchConfig": "ast_config",
    **dict.fromkeys(("mixup", "spec_augment", "time_shift"), "augment"),
    **dict.fromkeys(("LogMelCNN", "build_cnn"), "cnn"),
    "CNNArchConfig": "cnn_config",
    **dict.fromkeys(("DEFAULT_TARGETS", "Arch", "TrainConfig"), "train_config"),
    "build_model": "config",
    **dict.fromkeys(("FeatureConfig", "features_sha", "logmel_features"), "features"),
    **dict.fromkeys(("PrecisionDecision", "autocast", "resolve_precision",
                     "resolve_train_config"), "precision"),
    **dict.fromkeys(("TrainedTarget", "evaluate", "logits_of", "train_target"), "train"),
    **dict.fromkeys(("labels_sha", "load_weights", "save_weights", "weights_key"), "weights"),
}
"""Each exported name and the submodule that defines it."""

__all__ = [
    "DEFAULT_TARGETS",
    "ASTArchConfig",
    "Arch",
    "CNNArchConfig",
    "FeatureConfig",
    "LogMelCNN",
    "PrecisionDecision",
    "TrainConfig",
    "TrainedTarget",
    "autocast",
    "build_ast",
    "build_ast_frozen",
    "build_cnn",
    "build_model",
    "evaluate",
    "features_sha",
    "freeze_encoder",
    "labels_sha",
    "load_weights",
    "logits_of",
    "logmel_features",
    "mixup",
    "resolve_precision",
    "resolve_train_config",
    "save_weights",
    "spec_augment",
    "time_shift",
    "train_target",
    "weights_key",
]


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` (one of :data:`__all__`) and return it."""
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
