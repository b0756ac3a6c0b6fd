"""CLAP via transformers: the audio-text encoder of Module A's TAB evidence matrix.

Reference: reference-spec §0 (CLAP preprocessing) and §3.1 (TAB: ``P = Â Tᵀ``, raw cosine of
L2-normalised CLAP audio and text embeddings). The authors used ``laion_clap``'s
``CLAP_Module(enable_fusion=False)`` with the 630k-audioset-best checkpoint; the same LAION
weights load in transformers' ``ClapModel`` (e.g. ``"laion/clap-htsat-unfused"``).

Audio preprocessing, as the reference: resample to the feature extractor's rate (48 kHz; here
with ``scipy.signal.resample_poly``, the authors used torchaudio's ``Resample``), then the int16
quantisation round trip (clip to [-1, 1], x32767, truncate to int16, /32767; switchable), then
the ``ClapFeatureExtractor`` log-mel (repeat-padded to 10 s). Clips longer than the extractor's
``max_length_s`` are cut to their first ``max_length_s`` seconds by default (``crop="head"``,
deterministic); ``crop="processor"`` leaves them to the extractor, which picks a *random* window
(``rand_trunc``, as ``laion_clap``) or random fusion crops. ``is_longer`` is always the true
per-clip flag (the extractor's "mark one random clip longer" trick for fused models is not used),
so embeddings do not depend on the batch.

Text: the model's tokenizer (RoBERTa) with truncation to 77 tokens, as ``laion_clap``; padded to
the longest text of the batch rather than to 77 (padding is masked out: same embeddings).

Model loading happens only in :meth:`ClapEncoder.load`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from and_toolkit.backends.clip import batches, features_tensor, load_hf_pretrained, weights_tag
from and_toolkit.backends.encoders import _check_texts
from and_toolkit.interfaces import l2_normalise
from and_toolkit.signal import check_waveforms, resample

CLAP_DEFAULT = "laion/clap-htsat-unfused"
CLAP_MAX_TOKENS = 77
INT16_SCALE = 32767.0


def int16_round_trip(waveform: np.ndarray) -> np.ndarray:
    """The authors' int16 quantisation round trip (``laion_clap`` float32_to_int16 and back).

    Args:
        waveform: float array (any shape), amplitude nominally in [-1, 1].

    Returns:
        float32 array of the same shape: ``trunc(clip(x, -1, 1) * 32767) / 32767``.
    """
    x = np.clip(np.asarray(waveform, dtype=np.float32), -1.0, 1.0)
    return ((x * np.float32(INT16_SCALE)).astype(np.int16) / INT16_SCALE).astype(np.float32)


def prepare_waveform(waveform: np.ndarray, sample_rate: int, target_sr: int, *,
                     quantize_int16: bool = True, max_samples: int | None = None) -> np.ndarray:
    """Reference CLAP preprocessing of one clip: resample, optional int16 round trip, crop.

    Args:
        waveform: 1-D float array at ``sample_rate`` Hz.
        sample_rate: input rate in Hz.
        target_sr: the feature extractor's rate in Hz (48000 for LAION CLAP).
        quantize_int16: apply :func:`int16_round_trip` after resampling (the reference does).
        max_samples: keep only the first ``max_samples`` samples (None: keep all).

    Returns:
        float32 [n'] at ``target_sr``.
    """
    x = resample(waveform, sample_rate, target_sr)
    if quantize_int16:
        x = int16_round_trip(x)
    if max_samples is not None:
        x = x[:max_samples]
    return x


CLAP_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                     "pytorch_model.bin.index.json")
"""Any one of these holds a local CLAP directory's weights (transformers' names)."""
CLAP_PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
"""Either holds the feature extractor's settings (recent transformers write the second)."""
CLAP_TOKENIZER_FILES = (("tokenizer.json",), ("vocab.json", "merges.txt"))
"""Either set holds the RoBERTa tokenizer of a local CLAP directory."""


def check_clap_dir(path: str | Path) -> None:
    """Refuse a local CLAP directory that lacks a file ``ClapModel`` / ``ClapProcessor`` read.

    A complete directory (e.g. ``laion/clap-htsat-unfused`` downloaded with
    ``huggingface-cli download``) holds ``config.json``, the weights (one of
    :data:`CLAP_WEIGHT_FILES`), ``preprocessor_config.json`` (the feature extractor; recent
    transformers save it inside ``processor_config.json``) and the
    tokenizer (``tokenizer.json``, or ``vocab.json`` + ``merges.txt``; ``tokenizer_config.json``
    and ``special_tokens_map.json`` are read when present).

    Raises:
        FileNotFoundError: naming the directory and every missing file.
    """
    root = Path(path).expanduser()
    missing = [] if (root / "config.json").is_file() else ["config.json"]
    if not any((root / name).is_file() for name in CLAP_PROCESSOR_FILES):
        missing.append(" or ".join(CLAP_PROCESSOR_FILES))
    if not any((root / name).is_file() for name in CLAP_WEIGHT_FILES):
        missing.append(" or ".join(CLAP_WEIGHT_FILES))
    if not any(all((root / n).is_file() for n in names) for names in CLAP_TOKENIZER_FILES):
        missing.append("tokenizer.json or vocab.json + merges.txt")
    if missing:
        raise FileNotFoundError(f"CLAP directory {root} (closed.clap_path) lacks: "
                                + "; ".join(missing))


class ClapEncoder:
    """LAION CLAP (transformers ``ClapModel``) as an ``AudioTextEncoder`` (see interfaces).

    Build with :meth:`load`; ``__init__`` takes the parts, so a stand-in feature extractor or
    tokenizer can be injected.

    Args:
        model: a ``ClapModel`` (moved to ``device``, eval mode: batch-norm uses running stats).
        feature_extractor: a ``ClapFeatureExtractor`` (or compatible callable with
            ``sampling_rate`` and ``nb_max_samples`` attributes returning ``input_features``).
        tokenizer: the text tokenizer (RoBERTa for LAION checkpoints).
        model_id: the ``id`` to report, e.g. ``"clap:laion/clap-htsat-unfused@<rev>"``.
        quantize_int16: apply the reference int16 round trip to audio (default True).
        crop: ``"head"`` (default) keeps the first ``max_length_s`` seconds of long clips;
            ``"processor"`` lets the feature extractor truncate (random window).
        text_batch_size: texts per forward pass.
        audio_batch_size: clips per forward pass.
        max_length: text truncation length in tokens (77, as ``laion_clap``).
        device: torch device string.

    Raises:
        ValueError: for non-positive batch sizes / ``max_length`` or an unknown ``crop``.
    """

    def __init__(self, model: Any, feature_extractor: Any, tokenizer: Any, *, model_id: str,
                 quantize_int16: bool = True, crop: Literal["head", "processor"] = "head",
                 text_batch_size: int = 64, audio_batch_size: int = 16,
                 max_length: int = CLAP_MAX_TOKENS, device: str = "cpu") -> None:
        for name, value in (("text_batch_size", text_batch_size),
                            ("audio_batch_size", audio_batch_size), ("max_length", max_length)):
            if value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if crop not in ("head", "processor"):
            raise ValueError(f"crop must be 'head' or 'processor', got {crop!r}")
        self.model = model.to(device).eval()
        self.feature_extractor = feature_extractor
        self.tokenizer = tokenizer
        self.id = model_id
        self.quantize_int16 = quantize_int16
        self.crop = crop
        self.text_batch_size = text_batch_size
        self.audio_batch_size = audio_batch_size
        self.max_length = max_length
        self.device = device

    @classmethod
    def load(cls, name_or_path: str | Path = CLAP_DEFAULT, device: str = "cpu",
             local_files_only: bool = True, quantize_int16: bool = True,
             crop: Literal["head", "processor"] = "head", text_batch_size: int = 64,
             audio_batch_size: int = 16) -> ClapEncoder:
        """Load ``ClapModel`` + ``ClapProcessor`` (feature extractor and tokenizer).

        Args:
            name_or_path: local model directory or hub id (default LAION HTSAT unfused).
            device: torch device string.
            local_files_only: never download (default True).
            quantize_int16: see the class docstring.
            crop: see the class docstring.
            text_batch_size: texts per forward pass.
            audio_batch_size: clips per forward pass.

        Returns:
            The encoder; ``id`` is ``"clap:<source>@<revision or local fingerprint>"``, with
            ``"+noint16"`` when the int16 round trip is off.

        Raises:
            FileNotFoundError: naming the path / id when weights or processor files are missing
                (for a local directory: each missing file, see :func:`check_clap_dir`).
        """
        from transformers import ClapModel, ClapProcessor

        if Path(name_or_path).expanduser().is_dir():
            check_clap_dir(name_or_path)
        model, source, is_local = load_hf_pretrained(ClapModel, name_or_path,
                                                     local_files_only=local_files_only)
        processor, _, _ = load_hf_pretrained(ClapProcessor, source,
                                             local_files_only=local_files_only)
        tag = weights_tag(model, source, is_local)
        return cls(model, processor.feature_extractor, processor.tokenizer,
                   model_id=f"clap:{tag}" + ("" if quantize_int16 else "+noint16"),
                   quantize_int16=quantize_int16, crop=crop, text_batch_size=text_batch_size,
                   audio_batch_size=audio_batch_size, device=device)

    @property
    def dim(self) -> int:
        """Embedding width d (the projection dimension, 512 for LAION CLAP)."""
        return int(self.model.config.projection_dim)

    @property
    def sample_rate(self) -> int:
        """The feature extractor's rate in Hz (48000 for LAION CLAP)."""
        return int(self.feature_extractor.sampling_rate)

    def encode_text(self, texts: list[str]) -> np.ndarray:
        """Embed texts (see ``AudioTextEncoder.encode_text``); float32 [M, d], L2-normalised.

        Raises:
            ValueError: if ``texts`` is a single string or holds a non-string.
        """
        texts = _check_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = []
        with torch.inference_mode():
            for chunk in batches(texts, self.text_batch_size):
                enc = self.tokenizer(list(chunk), padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt")
                out = self.model.get_text_features(
                    input_ids=enc["input_ids"].to(self.device),
                    attention_mask=enc["attention_mask"].to(self.device))
                parts.append(features_tensor(out).float().cpu().numpy())
        return l2_normalise(np.concatenate(parts, axis=0))

    def prepare(self, waveforms: list[np.ndarray], sample_rate: int) -> list[np.ndarray]:
        """Validate and preprocess clips (resample, int16 round trip, head crop).

        Args:
            waveforms: N 1-D float arrays at ``sample_rate`` Hz.
            sample_rate: their rate in Hz.

        Returns:
            N float32 arrays at :attr:`sample_rate`.

        Raises:
            ValueError: see :func:`and_toolkit.signal.check_waveforms`.
        """
        clips = check_waveforms(waveforms, sample_rate)
        max_samples = int(self.feature_extractor.nb_max_samples) if self.crop == "head" else None
        return [prepare_waveform(w, int(sample_rate), self.sample_rate,
                                 quantize_int16=self.quantize_int16, max_samples=max_samples)
                for w in clips]

    def _features(self, clips: list[np.ndarray]) -> dict[str, torch.Tensor]:
        feats = self.feature_extractor(clips, sampling_rate=self.sample_rate,
                                       return_tensors="pt")
        limit = int(self.feature_extractor.nb_max_samples)
        longer = torch.tensor([[len(c) > limit] for c in clips], dtype=torch.bool)
        return {"input_features": feats["input_features"].to(self.device),
                "is_longer": longer.to(self.device)}

    def encode_audio(self, waveforms: list[np.ndarray], sample_rate: int) -> np.ndarray:
        """Embed clips (see ``AudioTextEncoder.encode_audio``); float32 [N, d], L2-normalised.

        Raises:
            ValueError: for an invalid rate or waveform (see
                :func:`and_toolkit.signal.check_waveforms`).
        """
        clips = self.prepare(waveforms, sample_rate)
        if not clips:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = []
        with torch.inference_mode():
            for chunk in batches(clips, self.audio_batch_size):
                out = self.model.get_audio_features(**self._features(list(chunk)))
                parts.append(features_tensor(out).float().cpu().numpy())
        return l2_normalise(np.concatenate(parts, axis=0))
