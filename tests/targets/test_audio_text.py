"""The audio-text model trained here (TAB's stand-in for CLAP): training, determinism, weights,
the AudioTextEncoder wrapper, keys and config errors. Tiny models on synthetic arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from and_toolkit.config import parse_config
from and_toolkit.errors import ConfigError
from and_toolkit.interfaces import l2_normalise
from and_toolkit.targets import FeatureConfig, load_weights, logmel_features, save_weights
from and_toolkit.targets.audio_text import (
    AudioTextConfig,
    audio_text_key,
    build_audio_text,
    embed_features,
    symmetric_info_nce,
    train_audio_text,
    zero_shot_accuracy,
)
from and_toolkit.targets.audio_text_encoder import TrainedAudioTextEncoder

TINY = AudioTextConfig(cnn={"channels": (4, 8), "num_mel_bins": 16, "time_pool": 2},
                       embed_dim=8, epochs=6, batch_size=8, lr=1e-2, time_masks=0,
                       freq_masks=0, time_shift=0, threads=1)
N_CLASSES, PER_CLASS, T, F, D = 3, 12, 32, 16, 12


def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Features [N, T, F] whose energy sits in a class-specific mel band, caption embeddings
    [N, D] near a class direction, folds 1..3, targets, class-text embeddings [C, D]."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(N_CLASSES), PER_CLASS)
    x = rng.normal(0, 0.3, (len(y), T, F)).astype(np.float32)
    for i, c in enumerate(y):
        x[i, :, 5 * c:5 * c + 5] += 2.0
    classes = l2_normalise(rng.normal(size=(N_CLASSES, D)).astype(np.float32))
    caps = l2_normalise(classes[y] + rng.normal(0, 0.2, (len(y), D)).astype(np.float32))
    folds = np.tile(np.arange(1, 4), len(y) // 3)
    return x, caps, folds, y, classes


def test_loss_decreases_and_training_uses_only_other_folds() -> None:
    x, caps, folds, _, _ = _data()
    trained = train_audio_text(TINY, x, caps, folds)
    losses = [row["train_loss"] for row in trained.curve]
    assert len(losses) == TINY.epochs
    assert losses[-1] < losses[0]
    assert trained.n_train == int((folds != 1).sum())
    assert not trained.model.training


def test_training_is_deterministic_under_a_seed() -> None:
    x, caps, folds, _, _ = _data()
    a = train_audio_text(TINY, x, caps, folds).model.state_dict()
    b = train_audio_text(TINY, x, caps, folds).model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = train_audio_text(TINY.model_copy(update={"seed": 1}), x, caps, folds).model.state_dict()
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_save_load_round_trip_gives_the_same_embeddings(tmp_path: Path) -> None:
    x, caps, folds, _, _ = _data()
    model = train_audio_text(TINY, x, caps, folds).model
    path = save_weights(model, tmp_path / "w.safetensors")
    again = build_audio_text(TINY, D)
    load_weights(again, path)
    assert np.array_equal(embed_features(model, x), embed_features(again, x))
    with torch.inference_mode():
        t = torch.from_numpy(caps)
        assert torch.equal(model.embed_text(t), again.embed_text(t))
    with pytest.raises(ValueError, match="does not fit"):
        load_weights(build_audio_text(TINY, D + 1), path)


def test_trained_model_beats_chance_zero_shot_on_the_held_out_fold() -> None:
    x, caps, folds, y, classes = _data()
    model = train_audio_text(TINY.model_copy(update={"epochs": 15}), x, caps, folds).model
    test = folds == 1
    with torch.inference_mode():
        text = model.embed_text(torch.from_numpy(classes)).numpy()
    acc = zero_shot_accuracy(embed_features(model, x[test]), text, y[test])
    # 12 held-out clips, 3 classes: chance 1/3; the bands separate the classes completely
    assert acc > 2 / 3


def test_info_nce_is_log_batch_for_uninformative_pairs() -> None:
    same = torch.nn.functional.normalize(torch.ones(4, 3), dim=-1)
    loss = symmetric_info_nce(same, same, torch.tensor(10.0))
    assert float(loss) == pytest.approx(np.log(4), rel=1e-6)


class _FrozenText:
    """A TextEncoder stand-in: a fixed vector per text (D = 12)."""

    id = "frozen-test"

    def encode(self, texts: list[str]) -> np.ndarray:
        rows = [np.random.default_rng(sum(map(ord, t))).normal(size=D) for t in texts]
        return l2_normalise(np.asarray(rows, dtype=np.float32).reshape(len(texts), D))


def test_encoder_wrapper_matches_features_and_normalises() -> None:
    feats = FeatureConfig(num_mel_bins=16, max_length=T)
    model = build_audio_text(TINY, D)
    enc = TrainedAudioTextEncoder(model, _FrozenText(), feats, model_id="audio-text-cnn@test")
    rng = np.random.default_rng(1)
    waves = [rng.normal(0, 0.1, 4000).astype(np.float32) for _ in range(3)]
    audio = enc.encode_audio(waves, 16000)
    assert audio.shape == (3, TINY.embed_dim) and audio.dtype == np.float32
    np.testing.assert_array_equal(audio, enc.encode_features(logmel_features(waves, feats)))
    text = enc.encode_text(["dog", "rain"])
    assert text.shape == (2, TINY.embed_dim)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)
    # another rate is resampled to the front end's, never passed on at its own rate
    assert enc.encode_audio([rng.normal(0, 0.1, 8000).astype(np.float32)], 32000).shape == (
        1, TINY.embed_dim)
    with pytest.raises(ValueError, match="one str"):
        enc.encode_text("dog")  # type: ignore[arg-type]


def test_key_covers_config_captions_encoder_and_folds() -> None:
    folds = np.array([1, 2, 3])
    base = audio_text_key(TINY, "f" * 64, ["a", "b", "c"], "enc", folds)
    assert base == audio_text_key(TINY.model_copy(update={"threads": 2}), "f" * 64,
                                  ["a", "b", "c"], "enc", folds)
    others = {
        audio_text_key(TINY.model_copy(update={"seed": 1}), "f" * 64, ["a", "b", "c"], "enc",
                       folds),
        audio_text_key(TINY, "e" * 64, ["a", "b", "c"], "enc", folds),
        audio_text_key(TINY, "f" * 64, ["a", "b", "d"], "enc", folds),
        audio_text_key(TINY, "f" * 64, ["a", "b", "c"], "other", folds),
        audio_text_key(TINY, "f" * 64, ["a", "b", "c"], "enc", np.array([1, 1, 3])),
        audio_text_key(TINY.model_copy(update={"precision": "bf16"}), "f" * 64,
                       ["a", "b", "c"], "enc", folds),
    }
    assert base not in others and len(others) == 6


def test_bad_inputs_and_configs_are_refused() -> None:
    x, caps, folds, _, _ = _data()
    with pytest.raises(ValueError, match="caption_embeddings"):
        train_audio_text(TINY, x, caps[:-1], folds)
    with pytest.raises(ValueError, match="test_fold"):
        train_audio_text(TINY, x, caps, np.ones_like(folds))
    with pytest.raises(ValidationError):
        AudioTextConfig(epochs=0)
    with pytest.raises(ValidationError):
        AudioTextConfig(unknown=1)  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match="clap_path"):
        parse_config({"name": "x", "closed": {"tab_model": "trained", "clap_path": "/w"}})
    with pytest.raises(ConfigError, match="audio_text"):
        parse_config({"name": "x", "closed": {"audio_text": {"lr": -1}}})
    with pytest.raises(ConfigError, match="tab_model"):
        parse_config({"name": "x", "closed": {"tab_model": "clip"}})
