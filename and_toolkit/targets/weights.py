"""Safetensors weight files and content keys for caching trained targets.

Only safetensors is used: pickled checkpoints (``torch.load``) are never read.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from and_toolkit.targets.config import TrainConfig

__all__ = ["TRAINING_CODE_VERSION", "labels_sha", "load_weights", "save_weights", "weights_key"]

#: Bump when a change to the training code changes the weights a config produces. (Not bumped
#: for ``precision="auto"``: explicit fp32 / bf16 configs train bitwise as before and keep their
#: keys; "auto" must be resolved to one of them before keying.)
TRAINING_CODE_VERSION = 1


def save_weights(
    model: nn.Module, path: str | Path, metadata: dict[str, str] | None = None
) -> Path:
    """Write the model's ``state_dict`` (parameters and buffers) to a safetensors file atomically.

    Args:
        model: Any torch module.
        path: Destination file (parent directories are created).
        metadata: Optional string metadata stored in the file header.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(state, str(tmp), metadata=metadata)
    os.replace(tmp, path)
    return path


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a safetensors file written by :func:`save_weights` into ``model`` (strict, in place).

    Args:
        model: A module of the same architecture (e.g. from ``build_model(cfg)``).
        path: Safetensors file.

    Returns:
        The same module.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If keys or shapes do not match the model.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    state = load_file(str(path))
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    bad = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or extra or bad:
        raise ValueError(
            f"{path}: state does not fit the model (missing {missing[:5]}, unexpected "
            f"{extra[:5]}, shape mismatch {bad[:5]})"
        )
    model.load_state_dict(state, strict=True)
    return model


def labels_sha(targets: np.ndarray, folds: np.ndarray) -> str:
    """SHA-256 of the int64 targets and folds (both [N]), for :func:`weights_key`."""
    h = hashlib.sha256()
    for arr in (targets, folds):
        h.update(np.ascontiguousarray(arr, dtype=np.int64).tobytes())
        h.update(b"|")
    return h.hexdigest()


def weights_key(cfg: TrainConfig, features_sha: str, labels: str | None = None) -> str:
    """Content key of everything that determines trained weights.

    Covers the training config (without the unused architecture block) including its concrete
    precision, the feature hash, the label/fold hash if given, :data:`TRAINING_CODE_VERSION`
    and the torch / transformers versions. Thread count (``cfg.threads``) is not covered:
    results are bitwise reproducible only at a fixed thread count.

    Args:
        cfg: Resolved training configuration (``resolve_train_config(cfg)[0]``).
        features_sha: Hash of the feature array (``features_sha(features)``).
        labels: Optional ``labels_sha(targets, folds)``.

    Returns:
        64-character hex SHA-256.

    Raises:
        ValueError: If ``cfg.precision`` is still ``"auto"`` (the weights depend on the choice).
    """
    import transformers

    if cfg.precision == "auto":
        raise ValueError(
            "weights_key: precision 'auto' is unresolved; key the config returned by "
            "and_toolkit.targets.precision.resolve_train_config(cfg)"
        )
    config = cfg.arch_payload()
    config.pop("threads", None)  # keys stay those of configs written before the field existed
    payload = {
        "config": config,
        "features_sha": features_sha,
        "labels_sha": labels,
        "code_version": TRAINING_CODE_VERSION,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
