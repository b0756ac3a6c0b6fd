"""The neuron view's ConceptSet columns: adjectives, their descriptor variant and the POS lists
each in their own column (before, Module C's nouns / verbs / prepositions were mixed into
``open_concepts``)."""

from __future__ import annotations

import polars as pl

from and_toolkit.neuron_view import neuron_view
from and_toolkit.records.models import ConceptSet


def _row(method: str, concept: str, rank: int, pos: str | None, kind: str = "open",
         verdict: str | None = "kept", unit: int = 0) -> dict[str, object]:
    return {"model": "m", "layer": "fc", "unit": unit, "method": method,
            "similarity": "cos" if kind == "closed" else "", "concept": concept, "kind": kind,
            "rank": rank, "score": 0.5 if kind == "closed" else None, "pos": pos,
            "verdict": verdict}


def test_view_pins_the_concept_columns() -> None:
    concepts = ConceptSet.frame([
        _row("DB", "dog", 0, None, kind="closed", verdict=None),
        _row("OCP", "loud", 1, "ADJ"), _row("OCP", "harsh", 0, "ADJ"),
        _row("OCP", "quiet", 2, "ADJ", verdict="dropped:negation"),
        _row("OCP+descriptors", "brief", 0, "ADJ"),
        _row("POS:NOUN", "engine", 1, "NOUN"), _row("POS:NOUN", "dog", 0, "NOUN"),
        _row("POS:VERB", "burst", 0, "VERB"), _row("POS:ADP", "of", 0, "ADP"),
        _row("POS:NOUN", "bird", 0, "NOUN", unit=1),
    ])
    view = neuron_view(concepts=concepts.lazy())
    assert view is not None
    df = view.collect()
    assert df.columns == ["model", "layer", "unit", "closed_top1", "open_concepts",
                          "open_concepts_descriptors", "nouns", "verbs", "preps"]
    first = df.row(0, named=True)
    assert first["open_concepts"] == ["harsh", "loud"]  # kept adjectives, by rank
    assert first["open_concepts_descriptors"] == ["brief"]
    assert (first["nouns"], first["verbs"], first["preps"]) == (["dog", "engine"], ["burst"],
                                                                ["of"])
    second = df.row(1, named=True)
    assert second["open_concepts"] is None and second["nouns"] == ["bird"]
    assert df.schema["open_concepts"] == pl.List(pl.String)


def test_view_has_one_score_column_per_description_kind() -> None:
    from samples import sample_frame

    from and_toolkit.records.models import ExplanationScore

    scores = sample_frame(ExplanationScore)
    extra = scores.head(1).with_columns(pl.lit("audio").alias("source"), pl.lit(0.7).alias("auc"))
    view = neuron_view(scores=pl.concat([scores, extra]).lazy())
    assert view is not None
    df = view.collect()
    assert df.columns == ["model", "layer", "unit", "auc_DB_cos", "auc_SUM", "auc_DB_cos_audio"]
    row = df.row(0, named=True)
    assert (row["auc_DB_cos"], row["auc_SUM"], row["auc_DB_cos_audio"]) == (0.9, None, 0.7)
