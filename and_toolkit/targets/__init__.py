"""Target networks: log-mel features, AST / CNN builders, seeded training, safetensors weights."""

from and_toolkit.targets.ast import ASTArchConfig, build_ast, build_ast_frozen, freeze_encoder
from and_toolkit.targets.augment import mixup, spec_augment, time_shift
from and_toolkit.targets.cnn import CNNArchConfig, LogMelCNN, build_cnn
from and_toolkit.targets.config import DEFAULT_TARGETS, Arch, TrainConfig, build_model
from and_toolkit.targets.features import FeatureConfig, features_sha, logmel_features
from and_toolkit.targets.precision import (
    PrecisionDecision,
    autocast,
    resolve_precision,
    resolve_train_config,
)
from and_toolkit.targets.train import TrainedTarget, evaluate, logits_of, train_target
from and_toolkit.targets.weights import labels_sha, load_weights, save_weights, weights_key

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
