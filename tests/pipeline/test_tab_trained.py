"""TAB with the audio-text model trained here (closed.tab_model = "trained") on a tiny
synthetic run: ConceptSet rows for all five similarity functions, provenance in the manifest
and the concepts file, the zero-shot result, Table 7 notes, the setup line, warm-cache reuse."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from and_toolkit.cache import Cache
from and_toolkit.config import parse_config
from and_toolkit.pipeline import run_pipeline
from and_toolkit.pipeline.context import Context
from and_toolkit.pipeline.report_stage import run_facts
from and_toolkit.run import Run
from and_toolkit.store import provenance_of

AUDIO_TEXT = {"cnn": {"channels": [4, 8], "time_pool": 2}, "embed_dim": 8,
              "epochs": 2, "batch_size": 8, "threads": 1}
TINY: dict[str, Any] = {
    "name": "tiny-tab",
    "probe": {"kind": "synthetic", "per_class": 4},
    "features": {"num_mel_bins": 32, "max_length": 64},
    "targets": [
        {"id": "cnn", "arch": "cnn", "epochs": 1,
         "overrides": {"batch_size": 8, "schedule": "cosine", "cnn": {"channels": [4, 8]}}},
    ],
    "record": {"k": 3, "extra_k": []},
    "captions": {"source": "synthetic", "captioner_id": "synthetic-params"},
    "closed": {"methods": ["DB", "TAB"], "encoder": "hashing", "tab_model": "trained",
               "audio_text": AUDIO_TEXT},
    "calibrate": {"encoder": "hashing"},
    "experiments": {"include": ["tab_model", "table7", "table2", "table4", "table4_classes",
                                "fig10"], "unlearning_classes": 2},
    "score": {"encoder": "hashing"},
    "stages": ["probe", "targets", "record", "extremes", "captions", "summaries", "calibrate",
               "open", "closed", "score", "experiments"],
}


@pytest.fixture(scope="module")
def tab_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("tab")
    run_pipeline(parse_config(TINY), run_dir=base / "run", cache=Cache(base / "cache"),
                 progress=False)
    return base / "run", base / "cache"


def test_tab_rows_and_provenance(tab_run: tuple[Path, Path]) -> None:
    run, _ = tab_run
    manifest = json.loads((run / "manifest.json").read_text())
    closed = manifest["stages"]["closed"]
    assert "TAB" not in closed["not_run"]
    made = closed["tab_model"]
    assert closed["backends"]["TAB"] == made["model"]
    assert made["model"].startswith("audio-text-cnn@")
    assert made["model"].endswith(made["weights_key"][:12])
    assert made["epochs"] == 2 and made["seed"] == 0 and made["test_fold"] == 1
    assert made["config"]["cnn"]["num_mel_bins"] == 32  # the run's features, not the default
    assert "synthetic clips of folds 2, 3, 4 (all but test fold 1" in made["trained_on"]
    assert "synthetic-params" in made["trained_on"]
    assert 0.0 <= made["zero_shot_accuracy"] <= 1.0 and made["zero_shot_clips"] > 0
    # the synthetic set has folds 1..4: the model trained on folds 2-4 only
    probe = pl.read_parquet(run / "probe.parquet")
    assert made["train_clips"] == probe.filter(pl.col("fold") != 1).height
    concepts = pl.read_parquet(run / "concepts.parquet")
    tab = concepts.filter(pl.col("method") == "TAB")
    assert set(tab["similarity"].unique()) == {
        "cos", "cos_cubed", "rank_reorder", "wpmi", "soft_wpmi"}
    db = concepts.filter(pl.col("method") == "DB")
    assert tab.select("model", "layer", "unit").unique().height == db.select(
        "model", "layer", "unit").unique().height
    meta = provenance_of(run / "concepts.parquet")
    assert meta["tab_model"]["weights_key"] == made["weights_key"]


def test_score_stage_audio_side_uses_the_trained_model(tab_run: tuple[Path, Path]) -> None:
    """With tab_model = "trained" the audio side of the explanation scores runs through it,
    and its result rows say it learned from the probe's captions."""
    run, _ = tab_run
    manifest = json.loads((run / "manifest.json").read_text())
    model_id = manifest["stages"]["closed"]["tab_model"]["model"]
    assert "audio" not in manifest["stages"]["score"]["not_run"]
    scores = pl.read_parquet(run / "scores.parquet")
    audio = scores.filter(pl.col("source") == "audio")
    assert audio.height > 0 and set(audio["encoder"].unique()) == {model_id}
    assert audio.select("model", "layer", "unit", "method", "similarity").unique().height == \
        scores.filter(pl.col("source") == "caption").select(
            "model", "layer", "unit", "method", "similarity").unique().height
    rows = pl.read_parquet(run / "results" / "explanation_scores.parquet")
    notes = rows.filter(pl.col("series").str.starts_with("audio"))["note"].unique().to_list()
    assert notes and all("trained here" in n and "not independent of the captioner" in n
                         for n in notes)


def test_zero_shot_result_table7_notes_and_setup(tab_run: tuple[Path, Path]) -> None:
    run, cache = tab_run
    made = json.loads((run / "manifest.json").read_text())["stages"]["closed"]["tab_model"]
    res = pl.read_parquet(run / "results" / "tab_model.parquet")
    zs = res.filter(pl.col("group") == "trained audio-text")
    assert zs["value"].to_list() == [pytest.approx(made["zero_shot_accuracy"])]
    classes = probe_classes(run)
    assert res.filter(pl.col("group") == "chance")["value"].to_list() == [
        pytest.approx(1 / classes)]
    t7 = pl.read_parquet(run / "results" / "table7.parquet").filter(pl.col("group") == "TAB")
    assert t7.height and all(made["model"] in n for n in t7["note"].to_list())
    assert all(v is not None for v in t7["value"].to_list())
    # Table 4 prunes by TAB's ranking too
    t4 = pl.read_parquet(run / "results" / "table4.parquet").filter(pl.col("group") == "TAB")
    assert t4.height and not any(n.startswith("not run") for n in t4["note"].to_list())
    ctx = Context(cfg=parse_config(TINY), run=Run.at(run), cache=Cache(cache), progress=False)
    line = run_facts(ctx, {}).items["TAB audio-text model"]
    assert made["model"] in line and "other folds" in line


def test_warm_cache_reuses_the_weights(tab_run: tuple[Path, Path], tmp_path: Path) -> None:
    run, cache = tab_run
    cfg = parse_config({**TINY, "stages": [s for s in TINY["stages"] if s != "experiments"]})
    again = run_pipeline(cfg, run_dir=tmp_path / "again", cache=Cache(cache), progress=False)
    first = json.loads((run / "manifest.json").read_text())["stages"]["closed"]["tab_model"]
    second = again.stage_info("closed")["tab_model"]
    assert second == first  # same key, curve and zero-shot: loaded, not retrained
    assert (again.root / "concepts.parquet").read_bytes() == (
        run / "concepts.parquet").read_bytes()



def test_auto_precision_is_measured_before_keying(tab_run: tuple[Path, Path], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """``audio_text.precision = "auto"`` trains in the precision the machine's rule picks (here
    pinned to fp32 by the environment, as the suite does): the same key as an explicit fp32,
    so the cached model is read, not retrained in an emulated precision."""
    run, cache = tab_run
    monkeypatch.setenv("AND_TRAIN_PRECISION", "fp32")
    closed = {**TINY["closed"], "audio_text": {**AUDIO_TEXT, "precision": "auto"}}
    cfg = parse_config({**TINY, "closed": closed, "stages": [s for s in TINY["stages"]
                                                              if s != "experiments"]})
    again = run_pipeline(cfg, run_dir=tmp_path / "auto", cache=Cache(cache), progress=False)
    first = json.loads((run / "manifest.json").read_text())["stages"]["closed"]["tab_model"]
    assert again.stage_info("closed")["tab_model"] == first


def probe_classes(run: Path) -> int:
    return pl.read_parquet(run / "probe.parquet")["target"].n_unique()
