"""The trained audio-text model (:mod:`and_toolkit.targets.audio_text`) as an ``AudioTextEncoder``.

Text goes through the frozen sentence encoder the model was trained with (any ``TextEncoder``,
passed in) and the model's text projection; audio through the run's log-mel front end
(:func:`~and_toolkit.targets.features.logmel_features`) and the CNN audio tower. Both sides come
out L2-normalised in the joint space, so TAB's ``P = Â Tᵀ`` is a cosine as with CLAP.
"""

from __future__ import annotations

import numpy as np
import torch

from and_toolkit.interfaces import TextEncoder
from and_toolkit.signal import check_waveforms, resample
from and_toolkit.targets.audio_text import AudioTextModel, embed_features
from and_toolkit.targets.features import FeatureConfig, logmel_features

__all__ = ["TrainedAudioTextEncoder"]


class TrainedAudioTextEncoder:
    """``AudioTextEncoder`` over a trained :class:`AudioTextModel`.

    Args:
        model: the trained model (put in eval mode).
        text_encoder: the frozen sentence encoder whose embeddings the model's text projection
            was trained on (same id, or the projection is meaningless).
        features: the log-mel settings the audio tower was trained on.
        model_id: the ``id`` to report (records, cache keys), e.g.
            ``"audio-text-cnn@<weights key[:12]>"``.
        batch_size: clips per audio forward pass.
    """

    def __init__(self, model: AudioTextModel, text_encoder: TextEncoder,
                 features: FeatureConfig, *, model_id: str, batch_size: int = 64) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {batch_size}")
        self.model = model.eval()
        self.text_encoder = text_encoder
        self.features = features
        self.id = model_id
        self.batch_size = batch_size

    @property
    def dim(self) -> int:
        """Width d of the joint space."""
        return int(self.model.audio.head.out_features)

    def encode_text(self, texts: list[str]) -> np.ndarray:
        """Embed texts: float32 [M, d], rows L2-normalised.

        Raises:
            ValueError: ``texts`` is a single string.
        """
        if isinstance(texts, str):
            raise ValueError("texts: expected a list of strings, got one str")
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        frozen = np.asarray(self.text_encoder.encode(list(texts)), dtype=np.float32)
        with torch.inference_mode():
            return self.model.embed_text(torch.from_numpy(frozen)).numpy()

    def encode_features(self, features: np.ndarray) -> np.ndarray:
        """Embed log-mel features [N, T, F] (made with :attr:`features`): float32 [N, d]."""
        return embed_features(self.model, features, self.batch_size)

    def encode_audio(self, waveforms: list[np.ndarray], sample_rate: int) -> np.ndarray:
        """Embed mono waveforms (resampled to the front end's rate): float32 [N, d].

        Raises:
            ValueError: for an invalid rate or waveform (see
                :func:`and_toolkit.signal.check_waveforms`).
        """
        clips = check_waveforms(waveforms, sample_rate)
        if not clips:
            return np.zeros((0, self.dim), np.float32)
        rate = self.features.sample_rate
        clips = [resample(w, int(sample_rate), rate) for w in clips]
        return self.encode_features(logmel_features(clips, self.features))
