"""Family adapters: a loaded transformers model + its feature extractor -> :class:`ExternalModel`.

Each adapter says how waveforms become inputs and which output frames hold audio:

* AST: the feature extractor's log-mel spectrogram ``input_values [B, T, F]`` (padded or cut to
  its ``max_length`` frames, as the model was trained); patch tokens mix time and frequency, so
  every token is pooled.
* wav2vec2 / HuBERT: raw waveforms ``input_values [B, S]`` zero-padded to the longest clip, with
  ``attention_mask`` when the model uses one (``feat_extract_norm = "layer"``). The valid frames
  of each conv layer follow its kernel and stride from the valid samples (the model's
  ``_get_feat_extract_output_lengths`` arithmetic, layer by layer), so padded frames never enter
  a pooled value. Group-norm models (no attention mask, statistics over the padded time axis)
  get batches of equal-length clips instead. The positional convolution is not recorded.
* Whisper: the encoder alone, on the log-mel ``input_features [B, n_mels, 3000]`` of its fixed
  30 s window (``chunk_length``); conv1 keeps the mel frame rate, conv2 and the layers halve
  it; only the frames covering the clip's samples are pooled.
* CLAP: the audio tower (``ClapAudioModel``, or ``ClapModel.audio_model``) on
  ``input_features`` / ``is_longer``. Clips are cut to the extractor's window first (its own
  ``rand_trunc`` would crop at random); shorter clips are repeat-padded by the extractor, so
  every frame holds audio. Windowed attention outputs (batch = clips x windows) are not
  recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import nn

from and_toolkit.errors import ConfigError
from and_toolkit.targets.external.model import ExternalModel, Prepared

__all__ = ["FAMILIES", "adapt", "family_of"]

FAMILIES: dict[str, str] = {
    "audio-spectrogram-transformer": "ast", "wav2vec2": "wav2vec2", "hubert": "hubert",
    "whisper": "whisper", "clap": "clap", "clap_audio_model": "clap"}
"""transformers ``model_type`` -> family."""


def family_of(model_type: str, source: str) -> str:
    """The family of a transformers ``model_type``.

    Raises:
        ConfigError: a model type no adapter handles (names the source and the known types).
    """
    if model_type not in FAMILIES:
        raise ConfigError(f"{source}: model_type {model_type!r} is not a supported audio model "
                          f"family; supported: {sorted(FAMILIES)} (or use factory = "
                          "'package.module:function')")
    return FAMILIES[model_type]


def _ast(model: nn.Module, fe: Any, source: dict[str, Any]) -> ExternalModel:
    sr = int(fe.sampling_rate)

    def prepare(waves: Sequence[np.ndarray]) -> Prepared:
        x = fe(list(waves), sampling_rate=sr, return_tensors="pt")
        return Prepared({"input_values": x["input_values"]})

    return ExternalModel(module=model, family="ast", sample_rate=sr, prepare=prepare,
                         exclude=("*patch_embeddings*",), source=source)


def conv_lengths(lengths: np.ndarray, kernels: Sequence[int], strides: Sequence[int]
                 ) -> list[np.ndarray]:
    """Output lengths of each conv layer (no padding) for input lengths (samples), in order."""
    out = []
    cur = np.asarray(lengths, dtype=np.int64)
    for k, s in zip(kernels, strides, strict=True):
        cur = (cur - k) // s + 1
        out.append(cur)
    return out


def _wav2vec2(model: nn.Module, fe: Any, family: str, source: dict[str, Any]) -> ExternalModel:
    sr = int(fe.sampling_rate)
    cfg: Any = model.config
    masked = cfg.feat_extract_norm == "layer"
    kernels, strides = list(cfg.conv_kernel), list(cfg.conv_stride)

    def prepare(waves: Sequence[np.ndarray]) -> Prepared:
        x = fe(list(waves), sampling_rate=sr, return_tensors="pt", padding=True,
               return_attention_mask=True)
        inputs = {"input_values": x["input_values"]}
        n = np.array([len(w) for w in waves])
        padded = conv_lengths(np.array([x["input_values"].shape[1]]), kernels, strides)
        valid = conv_lengths(n, kernels, strides)
        if (valid[-1] < 1).any():
            short = int(np.argmin(valid[-1]))
            raise ValueError(f"clip {short} of the batch has {n[short]} samples: too short for "
                             f"the model's convolutions (kernels {kernels}, strides {strides})")
        if masked:
            inputs["attention_mask"] = x["attention_mask"]
        frames = {int(p[0]): v for p, v in zip(padded, valid, strict=True)}
        return Prepared(inputs, frames)

    return ExternalModel(module=model, family=family, sample_rate=sr, prepare=prepare,
                         exclude=("*pos_conv_embed*",), exact_padding=masked, source=source)


def _whisper(model: nn.Module, fe: Any, source: dict[str, Any]) -> ExternalModel:
    sr = int(fe.sampling_rate)
    encoder: nn.Module = model.get_encoder() if hasattr(model, "get_encoder") else model  # type: ignore[operator]
    hop, window = int(fe.hop_length), int(fe.n_samples)
    n_frames = int(fe.nb_max_frames)

    def prepare(waves: Sequence[np.ndarray]) -> Prepared:
        x = fe(list(waves), sampling_rate=sr, return_tensors="pt")
        n = np.minimum(np.array([len(w) for w in waves]), window)
        mel = np.maximum(1, -(-n // hop))  # mel frames holding samples (ceil)
        frames = {n_frames: mel, -(-n_frames // 2): -(-mel // 2)}
        return Prepared({"input_features": x["input_features"]}, frames)

    return ExternalModel(module=encoder, family="whisper", sample_rate=sr, prepare=prepare,
                         max_batch=8, source=source)


def _clap(model: nn.Module, fe: Any, source: dict[str, Any]) -> ExternalModel:
    sr = int(fe.sampling_rate)
    tower: Any = model.audio_model if hasattr(model, "audio_model") else model
    window = int(fe.nb_max_samples)

    def prepare(waves: Sequence[np.ndarray]) -> Prepared:
        cut = [np.asarray(w[:window]) for w in waves]
        x = fe(cut, sampling_rate=sr, return_tensors="pt")
        return Prepared({"input_features": x["input_features"], "is_longer": x["is_longer"]})

    return ExternalModel(module=tower, family="clap", sample_rate=sr, prepare=prepare,
                         exclude=("*patch_embed*", "*attention.output.dense"), source=source)


def adapt(model: nn.Module, fe: Any, family: str, source: dict[str, Any]) -> ExternalModel:
    """The :class:`ExternalModel` of a loaded transformers model and feature extractor."""
    model.eval()
    if family == "ast":
        return _ast(model, fe, source)
    if family in ("wav2vec2", "hubert"):
        return _wav2vec2(model, fe, family, source)
    if family == "whisper":
        return _whisper(model, fe, source)
    if family == "clap":
        return _clap(model, fe, source)
    raise ValueError(f"unknown family {family!r}")


