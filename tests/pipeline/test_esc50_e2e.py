"""End to end on a small real ESC-50 subset: real audio, real Qwen2-Audio captions, MiniLM, spaCy.

8 classes (ESC-50 targets 0-7) x 4 clips (the first clip of each class in folds 1-4, so fold 1
is a non-empty test fold); tiny CNN + 2-layer AST targets; extractive summaries, Module B / C,
Module A with DB (TAB has no CLAP weights offline and must come out as not run; no ICL: too slow
for CI). Skipped when ``$AND_DATA_DIR/esc50`` (with the Qwen caption file) is missing.

The probe is the ``folder`` kind over the real ``$AND_DATA_DIR/esc50`` directory with a subset
CSV written to the test's tmp dir: ``probe.kind = "esc50"`` with ``per_class`` / ``max_clips``
takes the first clips in CSV order, which are all fold 1, so no target could be trained. The
test checks that the rows equal those of the ESC-50 loader for the same clips.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import polars as pl
import pytest
import torch

from and_toolkit.cache import Cache
from and_toolkit.config import parse_config
from and_toolkit.dissect.captions import read_caption_file
from and_toolkit.dissect.descriptors import combine
from and_toolkit.dissect.text import clean_repeated_substring
from and_toolkit.pipeline import fingerprints, run_pipeline
from and_toolkit.pipeline.inputs import input_stamps
from and_toolkit.records import (
    CalibratedSummary,
    Caption,
    ConceptSet,
    Extremes,
    ProbeClip,
    Summary,
)
from and_toolkit.run import Run
from and_toolkit.validation import validate_path

CAPTIONS = "esc50/captions/qwen2-audio-7b-instruct.csv"
CAPTIONER = "qwen2-audio-7b-instruct"
COMBINED = f"{CAPTIONER}+descriptors-v1"
CLASSES = range(8)
"""ESC-50 targets of the subset (dog, rooster, pig, cow, frog, cat, hen, insects)."""
FOLDS = (1, 2, 3, 4)
KEY = ["model", "layer", "unit"]
DESCRIPTOR_SENTENCE = re.compile(r"It is [a-z-]+(, [a-z-]+)*( and [a-z-]+)?\.")
"""What :func:`and_toolkit.dissect.descriptors.describe` writes ("It is loud and rhythmic.")."""
STAGES = ["probe", "targets", "record", "extremes", "captions", "summaries", "calibrate",
          "open", "closed"]


def esc50_root() -> Path | None:
    """``$AND_DATA_DIR/esc50`` if it holds the metadata, audio and Qwen captions, else None."""
    env = os.environ.get("AND_DATA_DIR", "").strip()
    if not env:
        return None
    root = Path(env) / "esc50"
    ok = (root / "meta" / "esc50.csv").is_file() and (root / "audio").is_dir() and (
        Path(env) / CAPTIONS).is_file()
    return root if ok else None


pytestmark = [
    pytest.mark.esc50,
    pytest.mark.slow,
    pytest.mark.skipif(esc50_root() is None, reason=(
        f"needs $AND_DATA_DIR/esc50 with meta/esc50.csv, audio/ and {CAPTIONS} "
        "(set AND_DATA_DIR=../shared/data)")),
]


def subset_csv(root: Path, out: Path) -> Path:
    """Write the subset's rows of ``meta/esc50.csv`` (first clip per class and fold) to ``out``."""
    meta = pl.read_csv(root / "meta" / "esc50.csv", infer_schema=False)
    rows = (meta.with_columns(pl.col("target").cast(pl.Int64), pl.col("fold").cast(pl.Int64))
            .filter(pl.col("target").is_in(list(CLASSES)) & pl.col("fold").is_in(list(FOLDS)))
            .group_by("target", "fold", maintain_order=True).first()
            .sort("target", "fold"))
    rows.write_csv(out)
    return out


def config(root: Path, labels: Path) -> dict[str, Any]:
    """The run configuration (plain dict, as a TOML file would give)."""
    return {
        "name": "esc50-tiny",
        "probe": {"kind": "folder", "folder": str(root), "labels_csv": str(labels),
                  "per_class": len(FOLDS),
                  "folder_options": {"audio_dir": "audio", "filename_col": "filename",
                                     "label_col": "category", "target_col": "target",
                                     "fold_col": "fold", "audio_ext": ".flac",
                                     "unlisted": "drop"}},  # the CSV: a subset of the files
        "features": {"num_mel_bins": 32, "max_length": 128},
        "targets": [
            {"id": "cnn", "arch": "cnn", "epochs": 2,
             "overrides": {"batch_size": 8, "schedule": "cosine", "cnn": {"channels": [4, 8]}}},
            {"id": "ast", "arch": "ast", "epochs": 1,
             "overrides": {"batch_size": 8, "schedule": "cosine",
                           "ast": {"num_layers": 2, "hidden_size": 24, "num_heads": 2,
                                   "intermediate_size": 48}}},
        ],
        "record": {"k": 5},
        "captions": {"source": "file", "file": CAPTIONS, "captioner_id": CAPTIONER,
                     "descriptors": True},
        "summaries": {"summarizer": "extractive"},
        "calibrate": {"encoder": "minilm"},
        "open": {"adjective_filter": "lexicon"},
        "closed": {"methods": ["DB", "TAB"], "encoder": "minilm"},
        "stages": STAGES,
    }


class Esc50Run(NamedTuple):
    """The finished run and what made it."""

    run: Path
    cache: Path
    cfg: dict[str, Any]
    root: Path
    seconds: dict[str, float]


@pytest.fixture(scope="module")
def esc50_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Esc50Run]:
    root = esc50_root()
    assert root is not None
    base = tmp_path_factory.mktemp("esc50")
    cache = base / "cache"
    cfg = config(root, subset_csv(root, base / "subset.csv"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AND_CACHE_DIR", str(cache))
        mp.setenv("HF_HUB_OFFLINE", "1")
        run_pipeline(parse_config(cfg), run_dir=base / "run", cache=Cache(cache), progress=False)
        stages = json.loads((base / "run" / "manifest.json").read_text())["stages"]
        yield Esc50Run(base / "run", cache, cfg, root,
                       {s: v["seconds"] for s, v in stages.items()})
    torch.set_num_threads(threads)


def _read(res: Esc50Run, record: Any) -> pl.DataFrame:
    return Run.at(res.run).read(record)


def test_every_record_validates(esc50_run: Esc50Run) -> None:
    assert validate_path(esc50_run.run) == []
    manifest = json.loads((esc50_run.run / "manifest.json").read_text())
    assert set(manifest["stages"]) == set(STAGES)


def test_probe_is_the_esc50_subset_on_real_files(esc50_run: Esc50Run) -> None:
    from and_toolkit.probe.esc50 import ESC50_CONFIG
    from and_toolkit.probe.folder import folder_probe

    probe = _read(esc50_run, ProbeClip).sort("index")
    assert probe.height == len(CLASSES) * len(FOLDS)
    assert probe["target"].unique().sort().to_list() == list(CLASSES)
    assert probe.group_by("target").agg(pl.col("fold").sort())["fold"].to_list() == [
        list(FOLDS)] * len(CLASSES)
    for path in probe["path"]:
        assert (esc50_run.root / path).is_file(), path
    # same rows as the ESC-50 loader gives for these clips (index aside)
    loader = folder_probe(esc50_run.root, ESC50_CONFIG.model_copy(
        update={"csv": esc50_run.cfg["probe"]["labels_csv"], "unlisted": "drop"}))
    cols = [c for c in probe.columns if c != "index"]
    assert probe.select(cols).sort("clip_id").equals(loader.select(cols).sort("clip_id"))
    assert set(probe["dataset"]) == {"esc50"}


def test_captions_carry_qwen_text_and_descriptor_sentence(esc50_run: Esc50Run) -> None:
    qwen = read_caption_file(esc50_run.root.parent / CAPTIONS)
    caps = _read(esc50_run, Caption)
    assert set(caps["captioner"]) == {CAPTIONER, COMBINED}
    base = {r["clip_id"]: r["text"] for r in caps.filter(
        pl.col("captioner") == CAPTIONER).iter_rows(named=True)}
    combined = {r["clip_id"]: r["text"] for r in caps.filter(
        pl.col("captioner") == COMBINED).iter_rows(named=True)}
    clips = set(_read(esc50_run, ProbeClip)["clip_id"])
    assert set(base) == set(combined) == clips
    described = 0
    for clip in clips:
        assert base[clip] == clean_repeated_substring(qwen[clip])
        if combined[clip] == combine(base[clip], ""):  # no descriptor is extreme for this clip
            continue
        head = combine(base[clip], "x")[:-1]  # the caption as combine() writes it, + " "
        assert combined[clip].startswith(head), (clip, combined[clip])
        assert DESCRIPTOR_SENTENCE.fullmatch(combined[clip][len(head):]), (clip, combined[clip])
        described += 1
    # most clips get a sentence, measured from the audio (so they differ between clips)
    assert described >= len(clips) // 2, described
    assert len({combined[c][len(base[c]):] for c in clips}) > 1


def test_dissection_covers_every_recorded_neuron(esc50_run: Esc50Run) -> None:
    neurons = set(_read_neurons(esc50_run))
    assert len(neurons) > 0
    assert {m for m, _, _ in neurons} == {"cnn", "ast"}
    ex = _read(esc50_run, Extremes)
    sm = _read(esc50_run, Summary)
    for side in ("high", "low"):
        assert set(ex.filter(pl.col("side") == side).select(KEY).rows()) == neurons
        assert set(sm.filter(pl.col("side") == side).select(KEY).rows()) == neurons
    assert set(_read(esc50_run, CalibratedSummary).select(KEY).rows()) == neurons
    concepts = _read(esc50_run, ConceptSet)
    db = concepts.filter((pl.col("kind") == "closed") & (pl.col("method") == "DB"))
    assert set(db.select(KEY).rows()) == neurons
    for sim, group in db.group_by("similarity"):
        assert set(group.select(KEY).rows()) == neurons, sim
    # Module C ran over both caption variants' calibrated points: with the descriptor sentences
    # some neuron got an acoustic adjective; the captions alone (this small subset's shared
    # adjectives are rare) gave every neuron its tagged nouns
    kept = concepts.filter(pl.col("verdict") == "kept")
    assert kept.filter(pl.col("method") == "OCP+descriptors").height > 0
    assert set(kept.filter(pl.col("method") == "POS:NOUN").select(KEY).rows()) <= neurons
    assert kept.filter(pl.col("method") == "POS:NOUN").height > 0
    assert set(kept.filter(pl.col("method") == "OCP+descriptors")["pos"]) == {"ADJ"}
    assert sm["summarizer"].unique().to_list() == ["extractive-v1"]


def _read_neurons(res: Esc50Run) -> list[tuple[str, str, int]]:
    acts = Run.at(res.run).scan_activations().select(KEY).collect()
    return [tuple(r) for r in acts.rows()]  # type: ignore[misc]


def test_db_on_classifier_neurons_names_classes_and_tab_is_not_run(esc50_run: Esc50Run) -> None:
    manifest = json.loads((esc50_run.run / "manifest.json").read_text())
    closed = manifest["stages"]["closed"]
    assert "TAB" in closed["not_run"] and "DB" not in closed["not_run"]
    assert "ICL" not in closed["not_run"]  # not configured, so not attempted
    concepts = _read(esc50_run, ConceptSet).filter(pl.col("kind") == "closed")
    assert set(concepts["method"]) == {"DB"}
    names = set(_read(esc50_run, ProbeClip)["label"])
    acts = Run.at(esc50_run.run).scan_activations().select(*KEY).collect()
    for model in ("cnn", "ast"):
        # the classifier: the one layer with a unit per class whose name says so
        layers = acts.filter(pl.col("model") == model).group_by("layer").len()
        heads = [lay for lay, n in layers.rows() if n == len(CLASSES) and (
            "classifier" in lay or "head" in lay or "fc" in lay)]
        assert len(heads) == 1, layers
        rows = concepts.filter((pl.col("model") == model) & (pl.col("layer") == heads[0]))
        assert rows["unit"].n_unique() == len(CLASSES)
        for (_, sim), top in rows.sort("rank").group_by("unit", "similarity"):
            assert top["rank"].to_list() == list(range(5)), sim
            assert set(top["concept"]) <= names and top["concept"].n_unique() == 5, sim


def test_rerun_with_warm_cache_rewrites_nothing(esc50_run: Esc50Run,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(esc50_run.run.rglob("*.parquet"))
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files}
    cfg = parse_config(esc50_run.cfg)
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AND_CACHE_DIR", str(esc50_run.cache))
        run_pipeline(cfg, run_dir=esc50_run.run, cache=Cache(esc50_run.cache), progress=False)
    out = capsys.readouterr().out
    for stage in STAGES:
        assert f"[{stage}] up to date" in out, out
    assert "running" not in out, out
    assert sorted(esc50_run.run.rglob("*.parquet")) == files
    for p, (mtime, data) in before.items():
        assert p.stat().st_mtime_ns == mtime and p.read_bytes() == data, p
    manifest = json.loads((esc50_run.run / "manifest.json").read_text())
    prints = fingerprints(cfg, input_stamps(cfg, exclude=esc50_run.run))
    assert {s: manifest["stages"][s]["fingerprint"] for s in STAGES} == {
        s: prints[s] for s in STAGES}
    assert set(manifest["stages"]["probe"]["inputs"]) == {"probe.folder", "probe.labels_csv"}


def test_stage_timings_fit_ci(esc50_run: Esc50Run) -> None:
    """The whole run stays well inside the CI budget (a regression guard, generous)."""
    assert sum(esc50_run.seconds.values()) < 150, esc50_run.seconds
