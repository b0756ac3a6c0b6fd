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

    from tests.backends.conftest import tiny_qwen2_audio_model

    model, processor = tiny_qwen2_audio_model()
    tok = processor.tokenizer
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
