"""Captioning with an audio LM under the Ray engine: a pool of captioner actors, each loading
the model once and captioning clip chunks it loads itself, writes the local engine's bytes.

The captioner is a tiny random Qwen2-Audio (the backend test's architecture) saved as a
transformers directory; its head speaks lower-case ASCII only (no U+FFFD, which the Caption
record refuses). Skips without Ray.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from and_toolkit.cache import Cache
from and_toolkit.config import parse_config
from and_toolkit.pipeline import run_pipeline
from tests.pipeline.test_ray_engine import _demo


@pytest.fixture(scope="module")
def tiny_captioner_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import (
        Qwen2AudioConfig,
        Qwen2AudioForConditionalGeneration,
        Qwen2AudioProcessor,
        WhisperFeatureExtractor,
    )

    from tests.backends.test_captioner import byte_level_tokenizer

    tok = byte_level_tokenizer()
    processor = Qwen2AudioProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=128),
                                    tokenizer=tok)
    cfg = Qwen2AudioConfig(
        audio_config={"d_model": 16, "encoder_layers": 1, "encoder_attention_heads": 2,
                      "encoder_ffn_dim": 32, "num_mel_bins": 128, "max_source_positions": 1500},
        text_config={"model_type": "qwen2", "vocab_size": len(tok), "hidden_size": 16,
                     "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "num_key_value_heads": 1, "max_position_embeddings": 2048,
                     "pad_token_id": tok.pad_token_id, "eos_token_id": tok.eos_token_id},
        audio_token_index=tok.convert_tokens_to_ids("<|AUDIO|>"))
    torch.manual_seed(0)
    model = Qwen2AudioForConditionalGeneration(cfg)
    keep = {tok.convert_tokens_to_ids(c) for c in "abcdefghijklmnopqrstuvwxyz\u0120"}
    with torch.no_grad():
        head = model.get_output_embeddings().weight
        head[[i for i in range(head.shape[0]) if i not in keep]] = 0.0
    path = tmp_path_factory.mktemp("tiny-captioner")
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def _captions(root: Path, cache: Path, model: Path, **execution: Any) -> bytes:
    cfg = _demo(**execution)
    cfg["probe"]["per_class"] = 2  # 24 clips
    cfg["captions"] = {"source": "captioner", "captioner_path": str(model),
                       "captioner_id": "tiny-qwen2-audio", "descriptors": False}
    cfg["stages"] = ["probe", "captions"]
    run_pipeline(parse_config(cfg), run_dir=root, cache=Cache(cache), progress=False)
    return (root / "captions.parquet").read_bytes()


def test_captioner_actors_write_the_local_captions(
        ray_cluster: Any, tiny_captioner_dir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import polars as pl

    import and_toolkit.pipeline.backends as backends
    import and_toolkit.pipeline.data_stages as data_stages

    monkeypatch.setattr(data_stages, "CAPTION_CHUNK", 8)  # 3 chunks of 2 batches of 4 clips
    local = _captions(tmp_path / "local", tmp_path / "c", tiny_captioner_dir)

    def not_here(path: str) -> None:
        raise AssertionError("the Ray engine's driver loaded the captioner")

    monkeypatch.setattr(backends, "load_captioner", not_here)  # the actors' processes load it
    ray2 = _captions(tmp_path / "ray2", tmp_path / "c", tiny_captioner_dir, engine="ray",
                     stages={"captions": {"workers": 2}})
    ray1 = _captions(tmp_path / "ray1", tmp_path / "c", tiny_captioner_dir, engine="ray",
                     stages={"captions": {"workers": 1}})
    texts = pl.read_parquet(tmp_path / "local" / "captions.parquet")["text"]
    assert texts.len() == 24 and texts.n_unique() > 1 and all(t.strip() for t in texts)
    assert ray2 == local
    assert ray1 == local
    manifest = json.loads((tmp_path / "ray2" / "manifest.json").read_text())
    assert manifest["stages"]["captions"]["_execution"]["workers"] == 2
