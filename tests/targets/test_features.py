"""Log-mel features from ASTFeatureExtractor."""

from __future__ import annotations

import numpy as np
import pytest

from and_toolkit.targets import FeatureConfig, features_sha, logmel_features


def _tone(seconds: float, hz: float) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_shape_dtype_and_padding() -> None:
    cfg = FeatureConfig()
    out = logmel_features([_tone(1.0, 440.0), _tone(6.0, 2000.0)], cfg)
    assert out.shape == (2, 512, 64) and out.dtype == np.float32
    assert np.isfinite(out).all()
    # 1 s of audio is ~98 frames; the rest is padding (constant rows).
    assert np.ptp(out[0, 120:], axis=0).max() == 0
    # A 440 Hz tone puts its energy lower in the mel axis than a 2 kHz tone.
    assert out[0, :90].mean(0).argmax() < out[1, :90].mean(0).argmax()


def test_config_controls_size_and_is_frozen() -> None:
    cfg = FeatureConfig(num_mel_bins=32, max_length=100)
    assert logmel_features([_tone(0.5, 300.0)], cfg).shape == (1, 100, 32)
    with pytest.raises(Exception, match="frozen"):
        cfg.num_mel_bins = 64  # type: ignore[misc]


def test_rejects_bad_waveforms() -> None:
    cfg = FeatureConfig()
    with pytest.raises(ValueError, match="waveforms\\[0\\]"):
        logmel_features([np.zeros((2, 16000), np.float32)], cfg)
    with pytest.raises(ValueError, match="waveforms\\[1\\]"):
        logmel_features([_tone(0.1, 100), np.full(1600, np.nan, np.float32)], cfg)
    with pytest.raises(ValueError, match="at least one"):
        logmel_features([], cfg)


def test_features_sha_sensitive() -> None:
    a = np.zeros((2, 3), np.float32)
    b = a.copy()
    b[0, 0] = 1
    assert features_sha(a) == features_sha(a.copy())
    assert features_sha(a) != features_sha(b)
    assert features_sha(a) != features_sha(a.reshape(3, 2))


def test_first_use_from_several_threads_at_once() -> None:
    """The explorer draws spectrograms in a thread pool: the first calls of several threads
    import transformers' extractor at once, which transformers' lazy module refuses in all
    but one thread (ImportError) unless the import is serialised. Fresh interpreter: the
    first import is the one under test."""
    import subprocess
    import sys

    code = ("import threading\nimport numpy as np\n"
            "from and_toolkit.targets.features import FeatureConfig, logmel_features\n"
            "errors = []\nbarrier = threading.Barrier(4)\n"
            "def draw():\n    barrier.wait()\n    try:\n"
            "        logmel_features([np.zeros(16000, np.float32)], FeatureConfig())\n"
            "    except Exception as exc:\n        errors.append(repr(exc))\n"
            "threads = [threading.Thread(target=draw) for _ in range(4)]\n"
            "for t in threads: t.start()\nfor t in threads: t.join()\nprint(errors)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=300)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout
