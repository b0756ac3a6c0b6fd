"""Table 6, the annotation sheet and Table 3 from a tiny annotation file."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest

from and_toolkit.backends.encoders import LookupEncoder
from and_toolkit.errors import DataError
from and_toolkit.experiments.qualitative import (
    BERTSCORE_NOTE,
    SHEET_COLUMNS,
    AnnotationConfig,
    HumanEvalConfig,
    QualitativeConfig,
    annotation_sheet,
    human_evaluation,
    load_annotations,
    qualitative_table,
)
from and_toolkit.records import (
    CalibratedSummary,
    ConceptSet,
    Extremes,
    ProbeClip,
    ResultRow,
    Summary,
)

LABELS = ["dog", "rooster", "rain", "siren"]


def records(n_blocks: int = 3, per_block: int = 4) -> dict[str, pl.DataFrame]:
    """Neurons blocks 1..n_blocks (fc1 units 0..per_block-1) + one head neuron; 4 probe clips;
    every neuron's top-2 clips are (c<u%4>, c<(u+1)%4>)."""
    probe = ProbeClip.frame([{"dataset": "toy", "clip_id": f"c{i}", "index": i,
                              "path": f"audio/c{i}.flac", "label": LABELS[i], "target": i,
                              "fold": 1, "sample_rate": 16000, "n_samples": 16000}
                             for i in range(4)])
    keys = [(f"blocks.{b - 1}.fc1", u, b) for b in range(1, n_blocks + 1)
            for u in range(per_block)] + [("head", 0, None)]
    neurons = pl.DataFrame(
        [("toy", layer, u, b, f"block{b}.fc1" if b else "head") for layer, u, b in keys],
        schema={"model": pl.String, "layer": pl.String, "unit": pl.Int32, "block": pl.Int32,
                "alias": pl.String}, orient="row")
    ex, sm, cal, cs = [], [], [], []
    for layer, u, _ in keys:
        nk = {"model": "toy", "layer": layer, "unit": u}
        clips = [f"c{u % 4}", f"c{(u + 1) % 4}"]
        ex.append({**nk, "side": "high", "k": 2, "clip_ids": clips, "values": [2.0, 1.0]})
        ex.append({**nk, "side": "low", "k": 2, "clip_ids": ["c3", "c2"], "values": [0.0, 0.1]})
        sm.append({**nk, "side": "high", "text": "t", "points": [f"point {layer} {u}", "loud"],
                   "summarizer": "x", "sampling": "{}", "prompt_sha256": "", "clip_ids": clips})
        cal.append({**nk, "kept": [f"kept {u}.", "Loud."], "dropped": [], "dropped_match": [],
                    "dropped_cos": [], "threshold": 0.7, "rule": "paper", "encoder": "e"})
        for method, sim in (("DB", "cos_cubed"), ("DB", "wpmi"), ("TAB", "wpmi"), ("ICL", "")):
            cs.append({**nk, "method": method, "similarity": sim, "concept": f"{method}-{sim}",
                       "kind": "closed", "rank": 0, "score": 1.0, "pos": None,
                       "verdict": "kept"})
        cs.append({**nk, "method": "OCP", "similarity": "", "concept": "loud", "kind": "open",
                   "rank": 0, "score": None, "pos": "ADJ", "verdict": "kept"})
    return {"neurons": neurons, "extremes": Extremes.frame(ex), "probe": probe,
            "summaries": Summary.frame(sm), "calibrated": CalibratedSummary.frame(cal),
            "concepts": ConceptSet.frame(cs)}


def test_annotation_sheet_has_n_neurons_per_block() -> None:
    r = records()
    cfg = AnnotationConfig(n_per_block=2, seed=1)
    sheet = annotation_sheet(r["neurons"], r["extremes"], r["probe"], r["calibrated"],
                             r["concepts"], cfg)
    assert tuple(sheet.columns) == SHEET_COLUMNS
    assert sheet.height == 3 * 2 * 3  # blocks x neurons x methods; head skipped
    per_block = sheet.select("block", "layer", "unit").unique().group_by("block").len()
    assert sorted(per_block.rows()) == [(1, 2), (2, 2), (3, 2)]
    assert sheet["rating"].null_count() == sheet.height
    row = sheet.filter(pl.col("method") == "DB").row(0, named=True)
    assert row["description"] == "DB-cos_cubed"
    u = row["unit"]
    assert row["clip_ids"] == f"c{u % 4};c{(u + 1) % 4}"
    assert row["clip_paths"] == f"audio/c{u % 4}.flac;audio/c{(u + 1) % 4}.flac"
    summ = sheet.filter((pl.col("method") == "SUM") & (pl.col("unit") == u)
                        & (pl.col("layer") == row["layer"]))
    assert summ["description"][0] == f"kept {u}. Loud."
    again = annotation_sheet(r["neurons"], r["extremes"], r["probe"], r["calibrated"],
                             r["concepts"], cfg)
    assert again.equals(sheet)
    labelled = annotation_sheet(r["neurons"], r["extremes"], r["probe"], r["calibrated"],
                                r["concepts"], AnnotationConfig(n_per_block=9,
                                                                include_labels=True,
                                                                shuffle_methods=False))
    assert labelled.height == 3 * 4 * 3  # fewer neurons than asked: all of them
    assert labelled["method"].head(3).to_list() == ["TAB", "DB", "SUM"]
    assert "clip_labels" in labelled.columns


def test_qualitative_table_contents() -> None:
    r = records(n_blocks=1, per_block=2)
    rows, table = qualitative_table(r["neurons"], r["extremes"], r["probe"], r["summaries"],
                                    r["calibrated"], r["concepts"],
                                    QualitativeConfig(n_per_model=3))
    ResultRow.validate_frame(rows)
    assert table.height == 3
    t = table.filter((pl.col("layer") == "blocks.0.fc1") & (pl.col("unit") == 1)).row(
        0, named=True)
    assert t["clip_labels"] == ["rooster", "rain"]
    assert t["s_h"] == ["point blocks.0.fc1 1", "loud"]
    assert t["s_h_c"] == ["kept 1.", "Loud."]
    assert (t["DB"], t["TAB"], t["ICL"]) == ("DB-cos_cubed", "TAB-wpmi", "ICL-")
    assert t["open_concepts"] == ["loud"]
    one = rows.filter(pl.col("key") == "toy/blocks.0.fc1#1/n_s_h_c_points")
    assert one["value"][0] == 2.0
    assert rows.filter(pl.col("key") == "toy/blocks.0.fc1#1/n_top_label_majority")[
        "value"][0] == 1.0


def test_unknown_similarity_is_an_error() -> None:
    r = records(n_blocks=1, per_block=1)
    cfg = QualitativeConfig(similarity={"DB": "soft_wpmi", "TAB": "wpmi", "ICL": ""})
    with pytest.raises(ValueError, match="no similarity 'soft_wpmi'"):
        qualitative_table(r["neurons"], r["extremes"], r["probe"], r["summaries"],
                          r["calibrated"], r["concepts"], cfg)


ANNOTATIONS = """model,layer,unit,block,clip_ids,clip_paths,method,description,rating,human_summary
toy,L,0,1,c0;c1,a;b,DB,dog barking,3,
toy,L,0,1,c0;c1,a;b,SUM,loud sounds,4,a dog barks
toy,L,1,1,c1;c2,a;b,DB,dog barking,5,rain falls
toy,L,1,1,c1;c2,a;b,SUM,loud sounds,2,rain falls
toy,L,2,1,c2;c3,a;b,DB,dog barking,,
"""


def test_table3_metrics_on_a_tiny_annotation_file(tmp_path: Path) -> None:
    path = tmp_path / "ann.csv"
    path.write_text(ANNOTATIONS)
    ann = load_annotations(path)
    assert ann["rating"].to_list() == [3, 4, 5, 2, None]
    enc = LookupEncoder({"dog barking": [1.0, 0.0], "loud sounds": [0.0, 1.0],
                         "a dog barks": [1.0, 1.0], "rain falls": [0.0, 1.0]}, "lookup")
    rows = human_evaluation(ann, enc, HumanEvalConfig())
    ResultRow.validate_frame(rows)

    def val(key: str) -> float | None:
        return rows.filter(pl.col("key") == key)["value"][0]

    assert val("DB/rating") == 4.0 and val("DB/n_rating") == 2.0  # unrated row left out
    assert val("SUM/rating") == 3.0
    # DB: neuron 0 gets its summary from the SUM row; cos(dog, dog+loud) = 1/√2, cos(dog, rain)=0
    assert val("DB/cos") == pytest.approx((1 / math.sqrt(2) + 0.0) / 2)
    assert val("SUM/cos") == pytest.approx((1 / math.sqrt(2) + 1.0) / 2)
    assert val("DB/n_cos") == 2.0
    bert = rows.filter(pl.col("key") == "SUM/bertscore")
    assert bert["value"][0] is None and bert["note"][0] == BERTSCORE_NOTE
    assert bert["paper_value"][0] == 0.46
    assert rows.filter(pl.col("key") == "SUM/cos")["note"][0] == "encoder: lookup"
    assert not rows.select("group", "series", "metric").is_duplicated().any()
    assert val("TAB/rating") is None  # no TAB rows


@pytest.mark.parametrize(("bad", "field"), [("6", "rating"), ("x", "rating"), ("2.5", "rating")])
def test_load_annotations_rejects_bad_ratings(tmp_path: Path, bad: str, field: str) -> None:
    path = tmp_path / "ann.csv"
    path.write_text(ANNOTATIONS.replace(",3,\n", f",{bad},\n"))
    with pytest.raises(DataError, match=f"field '{field}', row 2"):
        load_annotations(path)


def test_load_annotations_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "ann.csv"
    path.write_text("model,layer,unit\ntoy,L,0\n")
    with pytest.raises(DataError, match="miss columns"):
        load_annotations(path)


def test_sheet_round_trips_through_csv(tmp_path: Path) -> None:
    r = records(n_blocks=1, per_block=1)
    sheet = annotation_sheet(r["neurons"], r["extremes"], r["probe"], r["calibrated"],
                             r["concepts"], AnnotationConfig(n_per_block=1))
    path = tmp_path / "sheet.csv"
    sheet.write_csv(path)
    back = load_annotations(path)
    assert back.height == sheet.height and back["rating"].null_count() == back.height
    rows = human_evaluation(back, LookupEncoder({"x": [1.0]}), HumanEvalConfig())
    assert rows.filter(pl.col("key") == "DB/rating")["note"][0] == "no annotations"


def test_two_raters_average_per_neuron_first(tmp_path: Path) -> None:
    path = tmp_path / "ann.csv"
    path.write_text("model,layer,unit,method,description,rating,human_summary,rater\n"
                    "toy,L,0,DB,dog barking,2,a dog barks,r1\n"
                    "toy,L,0,DB,dog barking,4,rain falls,r2\n"
                    "toy,L,1,DB,dog barking,5,,r1\n")
    enc = LookupEncoder({"dog barking": [1.0, 0.0], "a dog barks": [1.0, 1.0],
                         "rain falls": [0.0, 1.0]})
    rows = human_evaluation(load_annotations(path), enc, HumanEvalConfig(methods=("DB",)))
    vals = dict(rows.select("key", "value").iter_rows())
    assert vals["DB/rating"] == pytest.approx((3.0 + 5.0) / 2)  # neuron 0: mean of 2 and 4
    # neuron 0: mean(1/√2, 0); neuron 1 has no summary from its rater -> no cosine
    assert vals["DB/cos"] == pytest.approx(1 / math.sqrt(2) / 2)
    assert vals["DB/n_cos"] == 1.0
