"""Tests of the sentence encoders (hashing fake, lookup fake, cache wrapper, real MiniLM)."""

from __future__ import annotations

import numpy as np
import pytest

from and_toolkit.backends.encoders import (
    CachedEncoder,
    HashingEncoder,
    LookupEncoder,
    MiniLMEncoder,
)
from and_toolkit.interfaces import TextEncoder, l2_normalise


def test_hashing_encoder_is_deterministic_unit_norm_float32() -> None:
    enc = HashingEncoder(dim=64)
    texts = ["A dog barks.", "a DOG barks", "Rain falls on a roof.", ""]
    a, b = enc.encode(texts), HashingEncoder(dim=64).encode(texts)
    assert a.dtype == np.float32 and a.shape == (4, 64)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-6)
    # Same bag of words (case and punctuation ignored) -> identical vectors.
    np.testing.assert_allclose(a[0] @ a[1], 1.0, rtol=1e-6)
    assert a[0] @ a[1] > a[0] @ a[2]
    assert isinstance(enc, TextEncoder)
    assert enc.encode([]).shape == (0, 64)


def test_encoders_reject_a_bare_string() -> None:
    with pytest.raises(ValueError, match="list of strings"):
        HashingEncoder().encode("a dog")  # type: ignore[arg-type]


def test_lookup_encoder_normalises_and_names_missing_text() -> None:
    enc = LookupEncoder({"x": [3.0, 4.0], "y": [0.0, 2.0]})
    out = enc.encode(["x", "y", "x"])
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 1.0], [0.6, 0.8]], rtol=1e-6)
    with pytest.raises(ValueError, match="'z'"):
        enc.encode(["z"])
    with pytest.raises(ValueError, match="same length"):
        LookupEncoder({"a": [1.0], "b": [1.0, 0.0]})


def test_l2_normalise_keeps_zero_rows() -> None:
    out = l2_normalise(np.array([[0.0, 0.0], [0.0, 5.0]]))
    np.testing.assert_array_equal(out, [[0.0, 0.0], [0.0, 1.0]])


def test_cached_encoder_encodes_each_distinct_text_once() -> None:
    inner = LookupEncoder({"a": [1, 0], "b": [0, 1], "c": [1, 1]}, encoder_id="lk")
    enc = CachedEncoder(inner)
    first = enc.encode(["a", "b", "a"])
    second = enc.encode(["b", "c", "c"])
    assert inner.calls == [["a", "b"], ["c"]]
    assert (enc.stats.n_inputs, enc.stats.n_encoded, enc.stats.n_calls) == (6, 3, 2)
    np.testing.assert_array_equal(first, inner.encode(["a", "b", "a"]))
    np.testing.assert_array_equal(second, inner.encode(["b", "c", "c"]))
    enc.encode(["a", "c"])
    assert enc.stats.n_calls == 2  # all cached
    assert enc.id == "lk"
    assert enc.encode([]).shape == (0, 2)


def test_minilm_loads_offline_and_encodes() -> None:
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    enc = MiniLMEncoder.load()
    out = enc.encode(["A dog barks loudly.", "A dog is barking.", "Rain falls on a tin roof."])
    assert out.shape == (3, 384) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    assert out[0] @ out[1] > 0.7 > out[0] @ out[2]
    assert "all-MiniLM-L6-v2" in enc.id
    assert enc.encode([]).shape == (0, 384)
