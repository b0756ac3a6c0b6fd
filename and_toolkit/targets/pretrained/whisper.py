"""Whisper base from its CTranslate2 fp16 ``model.bin`` to a transformers Whisper model.

:func:`whisper_state` maps the named CTranslate2 tensors to transformers' names, splitting the
fused attention projections (self-attention ``linear_0`` = q | k | v rows, cross-attention
``linear_1`` = k | v rows; Whisper's k projections have no bias, CTranslate2 stores zeros there)
and widening fp16 to fp32 (exact). :func:`convert_whisper` writes a transformers directory
(``config.json``, ``model.safetensors``, ``preprocessor_config.json``, ``tokenizer.json``);
:func:`load_whisper_classifier` builds the ESC-50 target (encoder only, no CTranslate2 at run
time).

The target: waveforms [B, S] at 16 kHz -> Whisper's log-mel front end (80 bands, 25 ms / 10 ms,
``log10`` clamped 8 below the window's max, ``(x + 4) / 4``; zero-padded to the window, 30 s by
default) -> encoder (``encoder.layers.<i>`` with ``self_attn.{q,k,v,out}_proj``, ``fc1``,
``fc2``) -> mean over the encoder frames that hold the clip's samples (2 mel frames each, i.e.
``ceil(S / 320)``) -> ``classifier`` (Linear 512 -> n_classes). Clips longer than the window are
cut to it. A shorter window (``window_seconds``, e.g. the clip's 5 s) keeps the encoder's first
positions only: faster, but not what Whisper saw in training (measure its effect on accuracy).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from and_toolkit.targets.pretrained.ct2 import CT2Model, parse_ct2

__all__ = ["WhisperClassifier", "WhisperLogMel", "convert_whisper", "load_ct2_whisper",
           "load_whisper_classifier", "valid_frames", "whisper_config", "whisper_state"]

SAMPLE_RATE, N_FFT, HOP, N_MELS, WINDOW_SECONDS = 16000, 400, 160, 80, 30.0


def load_ct2_whisper() -> tuple[CT2Model, dict[str, Any]]:
    """The packaged Whisper base (pinned parts joined in memory) and its CTranslate2 config.

    Raises:
        DataError: a part is missing or not the pinned file (names the package to install).
    """
    from and_toolkit.targets.pretrained.pins import WHISPER_BASE_PARTS, verified_path

    paths = [verified_path(p) for p in WHISPER_BASE_PARTS]
    data = b"".join(p.read_bytes() for p in paths)
    config = json.loads((paths[0].parent / "config.json").read_text())
    return parse_ct2(data, "+".join(str(p) for p in paths)), config


def whisper_config(ct2: CT2Model, ct2_config: dict[str, Any]) -> Any:
    """The transformers ``WhisperConfig`` of the CTranslate2 model's shapes."""
    from transformers import WhisperConfig

    v = ct2.variables
    n_enc = sum(1 for k in v if k.startswith("encoder/layer_") and k.endswith("ffn/linear_0/bias"))
    n_dec = sum(1 for k in v if k.startswith("decoder/layer_") and k.endswith("ffn/linear_0/bias"))
    vocab, d_model = v["decoder/embeddings/weight"].shape
    return WhisperConfig(
        vocab_size=int(vocab), num_mel_bins=int(v["encoder/conv1/weight"].shape[1]),
        d_model=int(d_model), encoder_layers=n_enc, decoder_layers=n_dec,
        encoder_attention_heads=int(v["encoder/num_heads"]),
        decoder_attention_heads=int(v["decoder/num_heads"]),
        encoder_ffn_dim=int(v["encoder/layer_0/ffn/linear_0/bias"].shape[0]),
        decoder_ffn_dim=int(v["decoder/layer_0/ffn/linear_0/bias"].shape[0]),
        max_source_positions=int(v["encoder/position_encodings/encodings"].shape[0]),
        max_target_positions=int(v["decoder/position_encodings/encodings"].shape[0]),
        suppress_tokens=list(ct2_config.get("suppress_ids", [])),
        begin_suppress_tokens=list(ct2_config.get("suppress_ids_begin", [])),
        decoder_start_token_id=50258, pad_token_id=50257, bos_token_id=50257,
        eos_token_id=50257)


def _split_rows(w: np.ndarray, parts: int) -> list[np.ndarray]:
    if w.shape[0] % parts:
        raise ValueError(f"fused projection of {w.shape[0]} rows does not split in {parts}")
    return np.split(w, parts, axis=0)


def whisper_state(ct2: CT2Model, encoder_only: bool = False) -> dict[str, torch.Tensor]:
    """transformers ``WhisperForConditionalGeneration`` tensors (fp32) from the CTranslate2 ones.

    Raises:
        ValueError: the file is not a ``WhisperSpec`` or a fused projection does not split.
    """
    if ct2.spec != "WhisperSpec":
        raise ValueError(f"CTranslate2 spec {ct2.spec!r}: expected WhisperSpec")
    v = ct2.variables
    out: dict[str, np.ndarray] = {}

    def lin(dst: str, src: str) -> None:
        out[f"{dst}.weight"], out[f"{dst}.bias"] = v[f"{src}/weight"], v[f"{src}/bias"]

    def norm(dst: str, src: str) -> None:
        out[f"{dst}.weight"], out[f"{dst}.bias"] = v[f"{src}/gamma"], v[f"{src}/beta"]

    def fused(dst: str, src: str, names: tuple[str, ...]) -> None:
        ws, bs = _split_rows(v[f"{src}/weight"], len(names)), _split_rows(v[f"{src}/bias"],
                                                                         len(names))
        for name, w, b in zip(names, ws, bs, strict=True):
            out[f"{dst}.{name}.weight"] = w
            if name != "k_proj":  # Whisper's key projections have no bias
                out[f"{dst}.{name}.bias"] = b
            elif np.any(b != 0):
                raise ValueError(f"{src}/bias: the key part is not zero; not Whisper")

    e = "model.encoder"
    for conv in ("conv1", "conv2"):
        lin(f"{e}.{conv}", f"encoder/{conv}")
    out[f"{e}.embed_positions.weight"] = v["encoder/position_encodings/encodings"]
    norm(f"{e}.layer_norm", "encoder/layer_norm")
    for i in range(sum(1 for k in v if k.startswith("encoder/layer_") and k.endswith(
            "ffn/linear_0/bias"))):
        s, d = f"encoder/layer_{i}", f"{e}.layers.{i}"
        fused(f"{d}.self_attn", f"{s}/self_attention/linear_0", ("q_proj", "k_proj", "v_proj"))
        lin(f"{d}.self_attn.out_proj", f"{s}/self_attention/linear_1")
        norm(f"{d}.self_attn_layer_norm", f"{s}/self_attention/layer_norm")
        lin(f"{d}.fc1", f"{s}/ffn/linear_0")
        lin(f"{d}.fc2", f"{s}/ffn/linear_1")
        norm(f"{d}.final_layer_norm", f"{s}/ffn/layer_norm")
    if not encoder_only:
        m = "model.decoder"
        out[f"{m}.embed_tokens.weight"] = v["decoder/embeddings/weight"]
        out[f"{m}.embed_positions.weight"] = v["decoder/position_encodings/encodings"]
        out["proj_out.weight"] = v[ct2.aliases.get("decoder/projection/weight",
                                                   "decoder/projection/weight")]
        norm(f"{m}.layer_norm", "decoder/layer_norm")
        for i in range(sum(1 for k in v if k.startswith("decoder/layer_") and k.endswith(
                "ffn/linear_0/bias"))):
            s, d = f"decoder/layer_{i}", f"{m}.layers.{i}"
            fused(f"{d}.self_attn", f"{s}/self_attention/linear_0",
                  ("q_proj", "k_proj", "v_proj"))
            lin(f"{d}.self_attn.out_proj", f"{s}/self_attention/linear_1")
            norm(f"{d}.self_attn_layer_norm", f"{s}/self_attention/layer_norm")
            lin(f"{d}.encoder_attn.q_proj", f"{s}/attention/linear_0")
            fused(f"{d}.encoder_attn", f"{s}/attention/linear_1", ("k_proj", "v_proj"))
            lin(f"{d}.encoder_attn.out_proj", f"{s}/attention/linear_2")
            norm(f"{d}.encoder_attn_layer_norm", f"{s}/attention/layer_norm")
            lin(f"{d}.fc1", f"{s}/ffn/linear_0")
            lin(f"{d}.fc2", f"{s}/ffn/linear_1")
            norm(f"{d}.final_layer_norm", f"{s}/ffn/layer_norm")
    return {k: torch.from_numpy(np.asarray(a, dtype=np.float32).copy()) for k, a in out.items()}


def convert_whisper(out_dir: Path) -> Path:
    """Write the packaged Whisper base as a transformers directory (fp32 safetensors, config,
    feature-extractor config, tokenizer); returns ``out_dir``."""
    from safetensors.torch import save_file
    from transformers import WhisperFeatureExtractor

    from and_toolkit.targets.pretrained.pins import WHISPER_BASE_TOKENIZER, verified_path

    ct2, ct2_config = load_ct2_whisper()
    out_dir.mkdir(parents=True, exist_ok=True)
    whisper_config(ct2, ct2_config).save_pretrained(out_dir)
    save_file(whisper_state(ct2), str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    WhisperFeatureExtractor(feature_size=N_MELS).save_pretrained(out_dir)
    shutil.copyfile(verified_path(WHISPER_BASE_TOKENIZER), out_dir / "tokenizer.json")
    return out_dir


class WhisperLogMel(nn.Module):
    """Whisper's front end: waveforms [B, S] -> log-mel float32 [B, 80, 100 * window seconds]
    (zero-padded or cut to the window), as ``WhisperFeatureExtractor`` computes it in torch."""

    mel: torch.Tensor
    window: torch.Tensor

    def __init__(self, window_seconds: float = WINDOW_SECONDS) -> None:
        super().__init__()
        from transformers import WhisperFeatureExtractor

        self.samples = int(round(window_seconds * SAMPLE_RATE))
        mel = WhisperFeatureExtractor(feature_size=N_MELS).mel_filters  # [201, 80]
        self.register_buffer("mel", torch.from_numpy(np.asarray(mel, np.float32)),
                             persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        wav = wav.float()[:, :self.samples]
        wav = nn.functional.pad(wav, (0, self.samples - wav.shape[1]))
        stft = torch.stft(wav, N_FFT, HOP, window=self.window, return_complex=True)
        power = stft[..., :-1].abs() ** 2  # [B, 201, frames]
        log_spec = torch.clamp(self.mel.T @ power, min=1e-10).log10()
        peak = log_spec.amax(dim=(1, 2), keepdim=True)
        return (torch.maximum(log_spec, peak - 8.0) + 4.0) / 4.0


class WhisperClassifier(nn.Module):
    """Whisper encoder + linear head: waveforms [B, S] (16 kHz) -> logits [B, n_classes]."""

    def __init__(self, encoder: nn.Module, n_classes: int, window_seconds: float) -> None:
        super().__init__()
        self.frontend = WhisperLogMel(window_seconds)
        self.encoder = encoder
        d_model = int(encoder.config.d_model)  # type: ignore[union-attr,arg-type]
        self.classifier = nn.Linear(d_model, n_classes)

    def embed(self, wav: torch.Tensor) -> torch.Tensor:
        """Clip embeddings [B, 512]: the mean over the encoder frames that hold audio."""
        hidden = self.encoder(self.frontend(wav)).last_hidden_state  # [B, frames, 512]
        audio = min(hidden.shape[1], math.ceil(min(wav.shape[1], self.frontend.samples)
                                               / (2 * HOP)))
        return hidden[:, :audio].mean(dim=1)  # type: ignore[no-any-return]

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(wav))  # type: ignore[no-any-return]


def valid_frames(n_samples: np.ndarray, window_seconds: float = WINDOW_SECONDS
                 ) -> dict[int, np.ndarray]:
    """Frames of the window holding each clip's audio, by padded frame count (for recording:
    ``recording.record.FramedBatch``): ``ceil(S / 160)`` of the mel frames (conv1's output),
    ``ceil(S / 320)`` of the encoder frames (conv2 and the layers), S = samples at 16 kHz cut
    to the window, as :meth:`WhisperClassifier.embed` pools them."""
    samples = int(round(window_seconds * SAMPLE_RATE))
    n = np.minimum(np.asarray(n_samples, dtype=np.int64), samples)
    return {samples // HOP: np.maximum(1, -(-n // HOP)),
            samples // (2 * HOP): np.maximum(1, -(-n // (2 * HOP)))}


def load_whisper_classifier(n_classes: int, window_seconds: float = WINDOW_SECONDS
                            ) -> WhisperClassifier:
    """The packaged Whisper base encoder (pinned, fp32) with a fresh head (current torch RNG).

    A window shorter than 30 s keeps the first ``50 * window_seconds`` position embeddings.

    Raises:
        DataError: a weight package is missing or not the pinned file.
        ValueError: ``window_seconds`` outside (0, 30] or not a whole number of encoder frames.
    """
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    frames = window_seconds * SAMPLE_RATE / (2 * HOP)
    if not 0 < window_seconds <= WINDOW_SECONDS or frames != int(frames):
        raise ValueError(f"window_seconds: expected a multiple of 0.02 s in (0, 30], got "
                         f"{window_seconds}")
    ct2, ct2_config = load_ct2_whisper()
    config = whisper_config(ct2, ct2_config)
    config.max_source_positions = int(frames)
    state = {k[len("model.encoder."):]: t for k, t in whisper_state(ct2, True).items()}
    state["embed_positions.weight"] = state["embed_positions.weight"][:int(frames)]
    encoder = WhisperEncoder(config)
    encoder.load_state_dict(state)
    return WhisperClassifier(encoder.eval(), n_classes, window_seconds)
