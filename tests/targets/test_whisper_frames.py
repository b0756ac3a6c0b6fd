"""The packaged Whisper target's layers are pooled over the frames holding audio, not over the
zero-padded window (the same frames its clip embedding averages)."""

from __future__ import annotations

import numpy as np
import torch

from and_toolkit.recording.record import record_activations
from and_toolkit.targets.pretrained.whisper import WhisperClassifier, valid_frames


def test_valid_frames_of_the_window() -> None:
    frames = valid_frames(np.array([80_000, 1, 900_000]), window_seconds=30.0)
    assert set(frames) == {3000, 1500}
    assert frames[3000].tolist() == [500, 1, 3000] and frames[1500].tolist() == [250, 1, 1500]


def test_recorded_encoder_output_equals_the_clip_embedding() -> None:
    """Recording ``encoder.layer_norm`` with the valid frames gives exactly what the classifier
    averages (its embedding); over the whole 1 s window it would not (0.3 s of audio)."""
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    torch.manual_seed(0)
    cfg = WhisperConfig(d_model=16, encoder_layers=1, encoder_attention_heads=2,
                        encoder_ffn_dim=32, num_mel_bins=80, max_source_positions=50)
    model = WhisperClassifier(WhisperEncoder(cfg).eval(), 3, window_seconds=1.0).eval()
    wav = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 4800)).astype(
        np.float32) * 0.1)
    batch = (wav, valid_frames(np.array([4800, 4800]), 1.0))
    got = record_activations(model, [batch], ["encoder.layer_norm"], "mean", progress=False,
                             n_clips=2)["encoder.layer_norm"]
    with torch.no_grad():
        want = model.embed(wav).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * float(np.abs(want).max()) + 1e-7)
    unmasked = record_activations(model, [wav], ["encoder.layer_norm"], "mean", progress=False,
                                  n_clips=2)["encoder.layer_norm"]
    assert not np.allclose(unmasked, want, atol=1e-3)
