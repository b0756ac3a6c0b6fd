"""The frozen-encoder AST trained on its encoder's output computed once per clip.

An ``ast-frozen`` target trains only its ``classifier`` (LayerNorm + Linear) on the pooled
output of a frozen, randomly initialised encoder. Run on augmented inputs, every epoch pays a
forward pass of the whole encoder per clip; with ``TrainConfig.encoder_once`` the pooled output
(the mean of the CLS and distillation tokens after the final LayerNorm: what the classifier
reads) is computed once per clip, in the target's precision, and the classifier is fitted on
those vectors. Input augmentation (time shift, SpecAugment) cannot act on them and must be off;
mixup, label smoothing, the schedule and early stopping work as usual (mixup then mixes pooled
vectors). The trained classifier is the model's own, so the full model maps log-mels to logits
as before.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import ASTForAudioClassification

from and_toolkit.targets.timing import autocast

__all__ = ["pooled_outputs"]


def pooled_outputs(model: nn.Module, features: np.ndarray, precision: str, batch_size: int,
                   progress: bool = False) -> np.ndarray:
    """The frozen encoder's pooled output of every clip: float32 [N, hidden].

    Args:
        model: an ``ASTForAudioClassification`` (its encoder is run in eval mode; the model's
            mode is restored).
        features: float32 log-mels [N, T, F].
        precision: ``"fp32"`` or ``"bf16"`` (CPU autocast), the target's training precision.
        batch_size: clips per forward pass.
        progress: show a bar over the batches.

    Raises:
        TypeError: ``model`` is not an AST.
        ValueError: ``features`` is not [N, T, F] with N > 0.
    """
    if not isinstance(model, ASTForAudioClassification):
        raise TypeError(f"encoder_once: expected an AST model, got {type(model).__name__}")
    if features.ndim != 3 or features.shape[0] == 0:
        raise ValueError(f"features: expected log-mels [N, T, F] with N > 0, got "
                         f"{features.shape}")
    encoder = model.audio_spectrogram_transformer
    was_training = encoder.training
    encoder.eval()
    out = []
    try:
        with torch.inference_mode(), autocast(precision):
            for i in tqdm(range(0, len(features), batch_size), desc="encoder once",
                          disable=not progress, leave=False):
                x = torch.from_numpy(np.ascontiguousarray(features[i:i + batch_size],
                                                          dtype=np.float32))
                out.append(encoder(x).pooler_output.float())
    finally:
        encoder.train(was_training)
    return torch.cat(out).numpy()
