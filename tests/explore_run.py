"""A small hand-made run for the explorer tests (``from explore_run import build_run``): the synthetic probe set (2 clips per class,
24 clips, rendered on the fly), 10 neurons of one model over two blocks and a head, with
extremes, summaries, a calibration with a dropped point, closed and open concepts, and a
caption holding ``<script>``. Values are deterministic (one seeded generator)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from and_toolkit.probe.synthetic import SyntheticConfig, synthetic_probe
from and_toolkit.records import (
    ActivationTable,
    CalibratedSummary,
    Caption,
    ConceptSet,
    Extremes,
    ProbeClip,
    Summary,
)
from and_toolkit.run import Run

XSS = "<script>alert(1)</script>"
MODEL = "toy"
LAYERS = {"blocks.0.fc1": ("block1.fc1", 1), "blocks.1.fc1": ("block2.fc1", 2),
          "head": ("head", None)}
UNITS = {"blocks.0.fc1": 4, "blocks.1.fc1": 4, "head": 2}
K = 3
DB_WORDS = ["siren", "rumble", "beeps", "blips"]
"""DB's rank-0 concept (cos_cubed) of unit u is DB_WORDS[u % 4]."""


def _neurons() -> list[tuple[str, int]]:
    return [(layer, u) for layer, n in UNITS.items() for u in range(n)]


def build_run(root: Path) -> Run:
    """Write the run into ``root`` and return it."""
    run = Run.at(root)
    probe = synthetic_probe(SyntheticConfig(n_per_class=2, seed=0))
    clips = probe.probe["clip_id"].to_list()
    run.write(ProbeClip, probe.probe)
    caps = [{"dataset": "synthetic", "clip_id": c, "captioner": "imported",
             "text": (f"A loud siren {XSS}" if i == 0 else probe.captions[c]), "prompt": "",
             "provenance": "{}"} for i, c in enumerate(clips)]
    run.write(Caption, Caption.frame(caps))
    rng = np.random.default_rng(0)
    extremes, summaries, calibrated, concepts = [], [], [], []
    for layer, (alias, block) in LAYERS.items():
        rows = []
        for u in range(UNITS[layer]):
            values = rng.normal(size=len(clips)).astype(np.float32)
            values[u] = 10.0  # clip u is the neuron's top clip
            rows.append({"model": MODEL, "layer": layer, "unit": u, "alias": alias,
                         "block": block, "pooling": "mean", "probe_sha256": "test",
                         "values": values.tolist()})
            order = np.argsort(-values, kind="stable")
            key = {"model": MODEL, "layer": layer, "unit": u}
            for side, idx in (("high", order[:K]), ("low", order[::-1][:K])):
                extremes.append({**key, "side": side, "k": K,
                                 "clip_ids": [clips[i] for i in idx],
                                 "values": [float(values[i]) for i in idx]})
                points = ([f"Unit {u} of {alias}: high sirens.", "It is loud."] if side == "high"
                          else ["It is quiet.", "Soft rumble."])
                summaries.append({**key, "side": side, "text": " ".join(points),
                                  "points": points, "summarizer": "extractive-v1",
                                  "sampling": "{}", "prompt_sha256": "",
                                  "clip_ids": [clips[i] for i in idx]})
            calibrated.append({**key, "kept": [f"Unit {u} of {alias}: high sirens."],
                               "dropped": ["It is loud."], "dropped_match": ["It is quiet."],
                               "dropped_cos": [0.875], "threshold": 0.7, "rule": "paper",
                               "encoder": "minilm"})
            concepts += _concepts(key, u)
        run.write_activations(ActivationTable.frame(rows))
    run.write_extremes(Extremes.frame(extremes))
    run.write(Summary, Summary.frame(summaries))
    run.write(CalibratedSummary, CalibratedSummary.frame(calibrated))
    run.write(ConceptSet, ConceptSet.frame(concepts))
    run.write_manifest({"config": {"name": "explore-test", "seed": 0,
                                   "probe": {"kind": "synthetic", "per_class": 2}}})
    return run


def _concepts(key: dict[str, Any], u: int) -> list[dict[str, Any]]:
    out = []
    for sim, base in (("cos_cubed", 0.5), ("wpmi", -3.0)):
        for rank in range(3):
            out.append({**key, "method": "DB", "similarity": sim,
                        "concept": DB_WORDS[(u + rank) % 4], "kind": "closed", "rank": rank,
                        "score": base + 0.1 * u - 0.01 * rank, "pos": None, "verdict": "kept"})
    out.append({**key, "method": "TAB", "similarity": "wpmi", "concept": "pure_tone",
                "kind": "closed", "rank": 0, "score": 1.0 + u, "pos": None, "verdict": "kept"})
    for rank, (word, verdict) in enumerate((("loud", "kept"), ("not", "dropped:negation"),
                                            ("shrill" if u % 2 else "deep", "kept"))):
        out.append({**key, "method": "OCP", "similarity": "", "concept": word, "kind": "open",
                    "rank": rank, "score": None, "pos": "ADJ", "verdict": verdict})
    return out


def n_neurons() -> int:
    """Neurons of the hand-made run."""
    return sum(UNITS.values())
