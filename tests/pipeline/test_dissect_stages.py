"""The dissection stages on a hand-built run: which backends they pass, which caption variants
they read and what each variant writes (no model is trained or loaded)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl
import pytest

from and_toolkit.cache import Cache
from and_toolkit.config import parse_config
from and_toolkit.interfaces import TaggedToken
from and_toolkit.pipeline.context import Context
from and_toolkit.pipeline.dissect_stages import stage_calibrate, stage_open, stage_summaries
from and_toolkit.records.models import CalibratedSummary, Caption, ConceptSet, Extremes, Summary
from and_toolkit.run import Run

NOUNS = {"dog", "dogs", "engine", "bird", "birds"}
ADJECTIVES = {"loud", "quiet", "small", "distant", "high-pitched", "brief"}
HIGH = ["A dog barks near a loud engine.", "Two dogs and an engine in the street.",
        "An engine idles while a dog growls."]
LOW = ["A bird sings quietly.", "Small birds chirp in a distant tree.", "A bird calls once."]
DESCRIPTOR = {**{f"h{i}": "It is loud and brief." for i in range(3)},
              **{f"l{i}": "It is quiet." for i in range(3)}}


class WordListTagger:
    """A deterministic stand-in for spaCy: NN / JJ from fixed word lists, counting calls."""

    id = "word-list-tagger"

    def __init__(self) -> None:
        self.calls = 0

    def tag(self, texts: Sequence[str]) -> list[list[TaggedToken]]:
        self.calls += 1
        out = []
        for text in texts:
            words = [w.strip(".,").lower() for w in text.split()]
            out.append([TaggedToken(w, "NN" if w in NOUNS else "JJ" if w in ADJECTIVES
                                    else "DT") for w in words if w])
        return out


def _context(tmp_path: Path, descriptors: bool) -> tuple[Context, WordListTagger]:
    cfg = parse_config({
        "name": "stages", "probe": {"kind": "synthetic", "per_class": 1},
        "targets": [{"id": "m", "arch": "cnn"}],
        "captions": {"source": "synthetic", "captioner_id": "base",
                     "descriptors": descriptors},
        "calibrate": {"encoder": "hashing"}, "open": {"adjective_filter": "lexicon"}})
    run = Run.at(tmp_path / "run")
    clips = {**{f"h{i}": c for i, c in enumerate(HIGH)}, **{f"l{i}": c for i, c in enumerate(LOW)}}
    caps = [{"dataset": "d", "clip_id": c, "captioner": "base", "text": t, "prompt": "",
             "provenance": "{}"} for c, t in clips.items()]
    caps += [{"dataset": "d", "clip_id": c, "captioner": "base+descriptors-v1",
              "text": f"{t} {DESCRIPTOR[c]}", "prompt": "", "provenance": "{}"}
             for c, t in clips.items()]
    run.write(Caption, Caption.frame(caps))
    run.write_extremes(Extremes.frame([
        {"model": "m", "layer": "fc", "unit": 0, "side": "high", "k": 3,
         "clip_ids": ["h0", "h1", "h2"], "values": [3.0, 2.0, 1.0]},
        {"model": "m", "layer": "fc", "unit": 0, "side": "low", "k": 3,
         "clip_ids": ["l0", "l1", "l2"], "values": [-3.0, -2.0, -1.0]}]))
    ctx = Context(cfg=cfg, run=run, cache=Cache(tmp_path / "cache"), progress=False)
    tagger = WordListTagger()
    ctx.backend("tagger", lambda: tagger)
    return ctx, tagger


def test_summaries_stage_passes_the_tagger_so_nouns_become_points(tmp_path: Path) -> None:
    ctx, tagger = _context(tmp_path, descriptors=False)
    stage_summaries(ctx)
    assert tagger.calls >= 1, "the summaries stage did not pass the tagger to the summariser"
    high = ctx.run.read(Summary).filter(pl.col("side") == "high")["points"].to_list()[0]
    # "dog" and "engine" are in all three top captions: a shared-noun word point
    assert "Dog and engine." in high


def test_every_stage_runs_each_caption_variant(tmp_path: Path) -> None:
    ctx, _ = _context(tmp_path, descriptors=True)
    info = stage_summaries(ctx)
    assert set(info["variants"]) == {"captions", "descriptors"}
    plain = ctx.run.read(Summary)["points"].explode().to_list()
    with_desc = ctx.run.read(Summary, "descriptors")["points"].explode().to_list()
    assert not any("brief" in p for p in plain)
    assert "It is loud and brief." in with_desc
    stage_calibrate(ctx)
    kept = ctx.run.read(CalibratedSummary, "descriptors")["kept"].to_list()[0]
    assert "It is loud and brief." in kept  # no word of it occurs in S_l
    stage_open(ctx)
    concepts = ctx.run.read(ConceptSet)
    by_method = {m: set(g["concept"].to_list()) for (m,), g in concepts.group_by("method")}
    assert by_method["OCP+descriptors"] >= {"loud", "brief"}
    assert "brief" not in by_method.get("OCP", set())
    assert set(concepts.filter(pl.col("method") == "OCP+descriptors")["pos"]) == {"ADJ"}
    assert "dog" in by_method["POS:NOUN"]
    # switching the variant off removes its files and rows
    ctx.cfg = ctx.cfg.model_copy(update={"captions": ctx.cfg.captions.model_copy(
        update={"descriptors": False})})
    stage_summaries(ctx)
    stage_calibrate(ctx)
    stage_open(ctx)
    assert not ctx.run.has(Summary, "descriptors")
    assert not ctx.run.has(CalibratedSummary, "descriptors")
    assert "OCP+descriptors" not in ctx.run.read(ConceptSet)["method"].to_list()


@pytest.mark.parametrize("descriptors", [False, True])
def test_unknown_variant_file_is_refused(tmp_path: Path, descriptors: bool) -> None:
    ctx, _ = _context(tmp_path, descriptors)
    with pytest.raises(ValueError, match="no file for caption variant 'x'"):
        ctx.run.path(Summary, "x")


def test_experiments_read_each_variant_as_ocp(tmp_path: Path) -> None:
    from and_toolkit.pipeline.experiment_inputs import (
        adjective_source,
        variant_concepts,
        variant_reason,
        variant_suffix,
    )

    ctx, _ = _context(tmp_path, descriptors=True)
    stage_summaries(ctx)
    stage_calibrate(ctx)
    stage_open(ctx)
    concepts = ctx.run.read(ConceptSet)
    plain = variant_concepts(concepts, "")
    assert "OCP+descriptors" not in plain["method"].to_list()
    assert plain.equals(concepts.filter(pl.col("method") != "OCP+descriptors"))
    desc = variant_concepts(concepts, "descriptors")
    assert set(desc["method"]) == {"OCP"}  # only its adjectives, relabelled
    assert set(desc["concept"]) == set(concepts.filter(
        pl.col("method") == "OCP+descriptors")["concept"])
    assert (variant_suffix(""), variant_suffix("descriptors")) == ("", "_descriptors")
    assert variant_reason(ctx, concepts, "") is None
    assert variant_reason(ctx, concepts, "descriptors") is None
    assert "not a finding" in adjective_source(ctx, "descriptors")
    assert "not independent" in adjective_source(ctx, "")  # synthetic captions
    off = ctx.cfg.model_copy(update={"captions": ctx.cfg.captions.model_copy(
        update={"descriptors": False})})
    ctx.cfg = off
    assert "captions.descriptors is off" in str(variant_reason(ctx, concepts, "descriptors"))
