"""Audio captioner: a tiny random Qwen2-Audio with a processor built locally (no downloads)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from and_toolkit.backends.captioner import (
    FakeCaptioner,
    TransformersAudioCaptioner,
    caption_messages,
    clip_seed,
)
from and_toolkit.backends.hf_loading import weights_fingerprint
from and_toolkit.interfaces import CAPTION_PROMPT, Captioner, Sampling
from and_toolkit.signal import resample
from tests.backends.conftest import tiny_qwen2_audio_model

torch.set_num_threads(1)
SR = 16000


@pytest.fixture(scope="module")
def tiny_qwen2_audio() -> tuple[Any, Any]:
    """(model, processor): Qwen2-Audio architecture, 1-layer 16-wide audio and text towers."""
    return tiny_qwen2_audio_model()


@pytest.fixture
def captioner(tiny_qwen2_audio: tuple[Any, Any]) -> TransformersAudioCaptioner:
    model, processor = tiny_qwen2_audio
    return TransformersAudioCaptioner(model, processor, model_id="tiny-qwen2-audio",
                                      sampling=Sampling(max_new_tokens=6), batch_size=3)


def clips() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(SR * 2) / SR
    return [0.1 * rng.standard_normal(SR * 5).astype(np.float32),
            (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32),
            0.01 * rng.standard_normal(SR // 2).astype(np.float32)]


def test_caption_messages() -> None:
    assert CAPTION_PROMPT == "Please describe the audio in detail."
    assert caption_messages() == [{"role": "user", "content": [
        {"type": "audio"}, {"type": "text", "text": "Please describe the audio in detail."}]}]


def test_protocol_and_prompt(captioner: TransformersAudioCaptioner) -> None:
    assert isinstance(captioner, Captioner) and isinstance(FakeCaptioner(), Captioner)
    assert captioner.prompt == "Please describe the audio in detail."
    assert captioner.text.count("<|AUDIO|>") == 1
    assert captioner.text.endswith("Please describe the audio in detail.<|im_end|>\n"
                                   "<|im_start|>assistant\n")


def test_caption_shapes_determinism_and_batch_invariance(
        captioner: TransformersAudioCaptioner) -> None:
    out = captioner.caption(clips(), SR)
    assert len(out) == 3 and all(isinstance(c, str) for c in out)
    assert captioner.caption(clips(), SR) == out
    captioner.batch_size = 1
    assert captioner.caption(clips(), SR) == out
    assert captioner.caption(clips()[1:2], SR) == out[1:2]
    assert captioner.caption([], SR) == []


def test_audio_reaches_the_model(captioner: TransformersAudioCaptioner) -> None:
    """The audio tower is used: the processor expands one placeholder per 40 ms of audio."""
    model = captioner.model
    seen: list[tuple[int, ...]] = []
    handle = model.model.audio_tower.register_forward_hook(
        lambda mod, inp, out: seen.append(tuple(out.last_hidden_state.shape)))
    try:
        captioner.caption(clips()[:1], SR)
    finally:
        handle.remove()
    assert seen and seen[0][0] == 1 and seen[0][2] == 16
    inputs = captioner.processor(text=[captioner.text], audio=clips()[:1], sampling_rate=SR,
                                 return_tensors="pt")
    n_audio = int((inputs["input_ids"] == model.config.audio_token_index).sum())
    assert n_audio == 125  # 5 s -> 500 mel frames -> 125 audio tokens


def test_resampling_and_sampled_captions(captioner: TransformersAudioCaptioner) -> None:
    x = clips()[1]
    y = resample(x, SR, 44100)
    assert y.dtype == np.float32 and abs(y.size - x.size * 44100 / SR) <= 1
    np.testing.assert_array_equal(resample(x, SR, SR), x)
    assert captioner.caption([y], 44100) == captioner.caption([resample(y, 44100, SR)], SR)
    captioner.sampling = Sampling(temperature=1.0, max_new_tokens=6, seed=1)
    sampled = captioner.caption(clips(), SR)
    captioner.batch_size = 1
    assert captioner.caption(clips(), SR) == sampled  # seeded per clip, not per batch
    assert clip_seed(1, clips()[0], "p") != clip_seed(1, clips()[2], "p")


def test_input_validation(captioner: TransformersAudioCaptioner) -> None:
    """Malformed clips are refused by the shared check (see tests/test_signal.py)."""
    with pytest.raises(ValueError, match=r"waveforms\[1\] holds non-finite"):
        captioner.caption([np.zeros(4), np.array([0.0, np.nan])], SR)
    with pytest.raises(ValueError, match="sample_rate"):
        FakeCaptioner().caption([np.zeros(4)], 0)


def test_from_pretrained_local_dir(tiny_qwen2_audio: tuple[Any, Any], tmp_path: Path,
                                   captioner: TransformersAudioCaptioner) -> None:
    model, processor = tiny_qwen2_audio
    model.save_pretrained(tmp_path / "qa")
    processor.save_pretrained(tmp_path / "qa")
    loaded = TransformersAudioCaptioner.from_pretrained(
        tmp_path / "qa", sampling=Sampling(max_new_tokens=6))
    assert loaded.id == f"transformers:{tmp_path / 'qa'}"
    assert loaded.weights_id == weights_fingerprint(tmp_path / "qa")
    assert loaded.caption(clips(), SR) == captioner.caption(clips(), SR)
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "absent")):
        TransformersAudioCaptioner.from_pretrained(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="'no-org/no-audio-lm' is not in the local"):
        TransformersAudioCaptioner.from_pretrained("no-org/no-audio-lm")


def test_fake_captioner() -> None:
    fake = FakeCaptioner(threshold=0.1)
    assert fake.caption(clips(), SR) == ["A quiet sound lasting 5.0 seconds.",
                                         "A loud sound lasting 2.0 seconds.",
                                         "A quiet sound lasting 0.5 seconds."]
    assert fake.calls == 1
