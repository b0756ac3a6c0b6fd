"""Hand-made valid rows of every record kind, shared by tests (``from samples import ...``)."""

from __future__ import annotations

from typing import Any

import polars as pl

from and_toolkit.records import (
    ActivationTable,
    CalibratedSummary,
    Caption,
    ConceptSet,
    ExplanationScore,
    Extremes,
    ProbeClip,
    Rating,
    Record,
    ResultRow,
    Summary,
    TrainingCurve,
)

N_CLIPS = 4


def sample_rows(record: type[Record]) -> list[dict[str, Any]]:
    """Two or three valid rows of each record kind (hand-made, deterministic)."""
    neuron = {"model": "toy", "layer": "blocks.0.fc1"}
    rows: dict[type[Record], list[dict[str, Any]]] = {
        ProbeClip: [
            {"dataset": "toy", "clip_id": f"c{i}", "index": i, "path": f"audio/c{i}.flac",
             "label": "dog" if i % 2 else "cat", "target": i % 2, "fold": 1 + i % 2,
             "sample_rate": 16000, "n_samples": 16000}
            for i in range(N_CLIPS)
        ],
        Caption: [
            {"dataset": "toy", "clip_id": f"c{i}", "captioner": "file", "text": f"A dog barks {i}.",
             "prompt": "", "provenance": "{}"}
            for i in range(N_CLIPS)
        ],
        ActivationTable: [
            {**neuron, "unit": u, "alias": "block1.fc1", "block": 1, "pooling": "mean",
             "probe_sha256": "abc", "values": [float(u + i) for i in range(N_CLIPS)]}
            for u in range(3)
        ],
        Extremes: [
            {**neuron, "unit": 0, "side": s, "k": 2, "clip_ids": ["c3", "c2"] if s == "high"
             else ["c0", "c1"], "values": [3.0, 2.0] if s == "high" else [0.0, 1.0]}
            for s in ("high", "low")
        ],
        Summary: [
            {**neuron, "unit": 0, "side": s, "text": "2/2 clips: a dog barks.",
             "points": ["2/2 clips: a dog barks."], "summarizer": "extractive-v1",
             "sampling": "{}", "prompt_sha256": "", "clip_ids": ["c3", "c2"]}
            for s in ("high", "low")
        ],
        CalibratedSummary: [
            {**neuron, "unit": 0, "kept": ["a dog barks loudly"], "dropped": ["it is quiet"],
             "dropped_match": ["it is quiet too"], "dropped_cos": [0.93], "threshold": 0.7,
             "rule": "paper", "encoder": "minilm"}
        ],
        ConceptSet: [
            {**neuron, "unit": 0, "method": "DB", "similarity": "cos", "concept": c,
             "kind": "closed", "rank": r, "score": 1.0 - r, "pos": None, "verdict": "kept"}
            for r, c in enumerate(["dog", "cat"])
        ] + [
            {**neuron, "unit": 0, "method": "OCP", "similarity": "", "concept": "loud",
             "kind": "open", "rank": 0, "score": None, "pos": "ADJ", "verdict": "kept"}
        ],
        TrainingCurve: [
            {"model": "toy", "epoch": e, "train_loss": 1.0 / e, "test_accuracy": 0.1 * e,
             "seconds": 2.0}
            for e in (1, 2)
        ],
        ResultRow: [
            {"experiment": "table7", "key": f"DB/cos/{m}", "model": "toy", "group": "DB",
             "series": "cos", "x": None, "metric": m, "value": 80.0, "paper_value": 82.0,
             "note": ""}
            for m in ("top1", "top5")
        ],
        Rating: [
            {**neuron, "unit": 0, "rating_id": f"{i:032x}", "method": m, "description": "dog",
             "rating": 1 + i, "rater": "r1", "comment": None if i else "<b>ok</b>",
             "created": "2026-01-01T00:00:00Z"}
            for i, m in enumerate(("TAB", "DB", "SUM"))
        ],
        ExplanationScore: [
            {**neuron, "unit": 0, "kind": k, "method": m, "similarity": sim, "variant": "",
             "source": "caption", "description": d, "encoder": "minilm", "q": 0.05,
             "n_heldout": 96, "n_positive": 5, "auc": auc, "spearman": 0.1, "null_auc": 0.5,
             "null_spearman": 0.0, "null_unit": 1}
            for k, m, sim, d, auc in [("closed", "DB", "cos", "dog", 0.9),
                                      ("summary", "SUM", "", "a dog barks loudly", None)]
        ],
    }
    return rows[record]


def sample_frame(record: type[Record]) -> pl.DataFrame:
    """A valid frame of ``record``."""
    return record.frame(sample_rows(record))
