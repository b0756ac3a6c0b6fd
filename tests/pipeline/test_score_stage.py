"""The score stage on a hand-made run: caption and audio sides, held-out clips, not-run reasons.

The audio side runs through the same factory as TAB (``pipeline.backends.clap``); here it is
replaced by a fake AudioTextEncoder whose audio embedding is the clip's planted concept, so a
neuron firing on that concept's clips must score near 1 from the audio alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

import and_toolkit.pipeline.score_stage as score_stage
from and_toolkit.cache import Cache
from and_toolkit.config import parse_config
from and_toolkit.errors import StageNotRun
from and_toolkit.interfaces import AudioTextEncoder
from and_toolkit.pipeline.context import Context
from and_toolkit.records import (
    ActivationTable,
    CalibratedSummary,
    Caption,
    ConceptSet,
    ExplanationScore,
    Extremes,
    ProbeClip,
)
from and_toolkit.run import Run

WORDS = ["dog", "rain", "bell", "siren"]
N_PER = 30
K = 3


class FakeAudioText:
    """One-hot embeddings: audio by the planted concept (the waveform's first sample holds its
    index), text by the first concept word it contains (none: a fifth axis)."""

    id = "fake-audio-text"

    def encode_text(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), len(WORDS) + 1), dtype=np.float32)
        for i, t in enumerate(texts):
            hit = [j for j, w in enumerate(WORDS) if w in t]
            out[i, hit[0] if hit else len(WORDS)] = 1.0
        return out

    def encode_audio(self, waveforms: list[np.ndarray], sample_rate: int) -> np.ndarray:
        out = np.zeros((len(waveforms), len(WORDS) + 1), dtype=np.float32)
        out[np.arange(len(waveforms)), [int(w[0]) for w in waveforms]] = 1.0
        return out


def _make_run(root: Path) -> tuple[Run, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(len(WORDS)), N_PER)
    rng.shuffle(labels)
    n = labels.size
    clip_ids = [f"c{i:03d}" for i in range(n)]
    run = Run.at(root)
    run.write(ProbeClip, ProbeClip.frame([
        {"dataset": "toy", "clip_id": c, "index": i, "path": "", "label": WORDS[labels[i]],
         "target": int(labels[i]), "fold": 1, "sample_rate": 16000, "n_samples": 16000}
        for i, c in enumerate(clip_ids)]))
    # captions say nothing about the concept: only the audio side can find it
    run.write(Caption, Caption.frame([
        {"dataset": "toy", "clip_id": c, "captioner": cap, "text": f"A sound {i % 7}." + extra,
         "prompt": "", "provenance": "{}"}
        for i, c in enumerate(clip_ids)
        for cap, extra in (("cap", ""), ("cap+descriptors-v1", " It is loud."))]))
    acts = (labels[None, :] == np.arange(len(WORDS))[:, None]).astype(np.float32)
    acts += rng.normal(0, 0.01, acts.shape).astype(np.float32)
    run.write_activations(ActivationTable.frame([
        {"model": "m", "layer": "fc", "unit": u, "alias": "block1.fc", "block": 1,
         "pooling": "mean", "probe_sha256": "x", "values": acts[u].tolist()}
        for u in range(len(WORDS))]))
    ext = []
    for u in range(len(WORDS)):
        order = np.argsort(-acts[u], kind="stable")
        for side, idx in (("high", order[:K]), ("low", order[::-1][:K])):
            ext.append({"model": "m", "layer": "fc", "unit": u, "side": side, "k": K,
                        "clip_ids": [clip_ids[i] for i in idx],
                        "values": [float(acts[u, i]) for i in idx]})
    run.write_extremes(Extremes.frame(ext))
    run.write(ConceptSet, ConceptSet.frame([
        {"model": "m", "layer": "fc", "unit": u, "method": "DB", "similarity": "cos",
         "concept": w, "kind": "closed", "rank": 0, "score": 1.0, "pos": None, "verdict": "kept"}
        for u, w in enumerate(WORDS)]))
    for variant in ("", "descriptors"):
        run.write(CalibratedSummary, CalibratedSummary.frame([
            {"model": "m", "layer": "fc", "unit": u, "kept": [f"The {w} sound."], "dropped": [],
             "dropped_match": [], "dropped_cos": [], "threshold": 0.7, "rule": "paper",
             "encoder": "x"} for u, w in enumerate(WORDS)]), variant=variant)
    return run, labels


CONFIG: dict[str, Any] = {
    "name": "toy", "targets": [{"id": "m", "arch": "cnn"}], "record": {"k": K},
    "captions": {"captioner_id": "cap", "descriptors": True},
    "closed": {"clap_path": "/fake/clap"}, "score": {"encoder": "hashing", "q": 0.2365},
}
"""q: ceil(0.2365 * 114 held-out clips) = 27 positives = a concept's 30 clips minus its top-K."""


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    run, labels = _make_run(tmp_path / "run")
    context = Context(cfg=parse_config(CONFIG), run=run, cache=Cache(tmp_path / "cache"),
                      progress=False)
    context._waveforms = [np.full(16, float(k), dtype=np.float32) for k in labels]
    return context


def test_audio_side_scores_with_the_audio_text_encoder(ctx: Context,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(FakeAudioText(), AudioTextEncoder)
    monkeypatch.setattr(score_stage, "clap", lambda c, path: FakeAudioText())
    info = score_stage.stage_score(ctx)
    assert info["not_run"] == {}
    scores = ctx.run.read(ExplanationScore)
    audio = scores.filter(pl.col("source") == "audio")
    assert set(audio["variant"]) == {"", "descriptors"}
    assert set(audio["encoder"]) == {"fake-audio-text"}
    # each neuron's own concept, found from the audio alone; captions carry no concept
    assert (audio["auc"] > 0.99).all()
    caption = scores.filter((pl.col("source") == "caption") & (pl.col("kind") == "closed"))
    assert (caption["auc"] - 0.5).abs().max() < 0.35  # no information in the captions
    # held-out: the 2K clips of each neuron's extremes are never scored
    assert (scores["n_heldout"] == len(WORDS) * N_PER - 2 * K).all()
    view = ctx.run.neurons().collect()
    assert {"auc_DB_cos", "auc_DB_cos_audio", "auc_SUM_descriptors_audio"} <= set(view.columns)
    result = ctx.run.results()["explanation_scores"]
    assert set(result.filter(pl.col("x").is_null())["series"]) == {
        "captions", "captions + descriptors", "audio", "audio · descriptors"}


def test_audio_side_not_run_says_why(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable(c: Context, path: str | None) -> Any:
        raise StageNotRun("no CLAP weights here")

    monkeypatch.setattr(score_stage, "clap", unavailable)
    info = score_stage.stage_score(ctx)
    assert info["not_run"] == {"audio": "no CLAP weights here"}
    scores = ctx.run.read(ExplanationScore)
    assert set(scores["source"]) == {"caption"}
    notes = ctx.run.results()["explanation_scores"]["note"].to_list()
    assert "not run: no CLAP weights here" in notes


def test_layers_are_cached_and_rescored_only_when_an_input_changes(
        ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(score_stage, "clap", lambda c, path: FakeAudioText())
    first = score_stage.stage_score(ctx)
    assert (first["cached_layers"], first["layers"]) == (0, 1)
    before = ctx.run.read(ExplanationScore)
    second = score_stage.stage_score(ctx)
    assert second["cached_layers"] == 1
    assert ctx.run.read(ExplanationScore).equals(before)
    # another description of one neuron: the layer is scored again, and differently
    concepts = ctx.run.read(ConceptSet).with_columns(
        pl.when(pl.col("unit") == 0).then(pl.lit("siren")).otherwise(pl.col("concept"))
        .alias("concept"))
    ctx.run.write(ConceptSet, concepts)
    third = score_stage.stage_score(ctx)
    assert third["cached_layers"] == 0
    assert not ctx.run.read(ExplanationScore).equals(before)
    # the cache is content-keyed: a fresh context over the same run reads it back
    ctx.cache.stats.clear()
    assert score_stage.stage_score(ctx)["cached_layers"] == 1
