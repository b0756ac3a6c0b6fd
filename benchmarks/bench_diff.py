"""Benchmark of ``and_toolkit.diff`` on two ESC-50-size runs (issue 11).

Two runs are synthesised with the record models (validated writes through ``Run``):
14,630 neurons in 35 layers of two targets, 2000 probe clips, activations (float32 [2000] per
neuron), Extremes K=5 per side, summaries (S_h, S_l), calibrated summaries, closed concepts
DB x 5 similarities x top-5 (365,750 rows) and open concepts (OCP: 4 kept + 2 dropped per
neuron), 20 result files of 200 rows. Run B is a copy of A with every score, extreme activation
and result value moved by a relative 1e-6 (below the default tolerance, so not a change) and a
few hundred planted changes of every kind. The diff (load + compare; text rendering timed
separately) runs in a fresh subprocess, three times: wall time (goal <= 10 s) and peak RSS
(goal <= 2 GiB; sampled every 5 ms, and the kernel's high-water mark VmHWM). A and B
identical, and A against an unrelated run C (another seed: everything differs, the worst case
of the per-group Python path), are measured once each. The found change counts must equal the
planted ones.

Usage: python benchmarks/bench_diff.py [--out benchmarks/results/diff.json] [--keep DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import psutil

from and_toolkit.records import (
    ActivationTable,
    CalibratedSummary,
    ConceptSet,
    Extremes,
    ProbeClip,
    ResultRow,
    Summary,
)
from and_toolkit.run import Run

GIB = 2**30
CLIPS = 2000
K = 5
SIMILARITIES = ("cos", "cos_cubed", "rank_reorder", "wpmi", "soft_wpmi")
CONCEPTS = [f"class_{i:02d}" for i in range(50)]
ADJECTIVES = [f"adj{i:03d}" for i in range(120)]
SENTENCES = [f"It is sound number {i}." for i in range(400)]
PLANTS = {"closed_top1": 100, "closed_rank": 60, "closed_score": 40, "top_clips": 60,
          "bottom_clips": 30, "summary_high": 50, "calibrated": 30, "open_concepts": 40,
          "result_value": 30, "result_removed": 3, "result_added": 2}
"""Planted changes in run B, by kind (disjoint neurons / groups / rows)."""
NEAR_TIE_SIMILARITY, NEAR_TIE_UNIT = "soft_wpmi", 7
"""Unit 7 of every layer (35 neurons): soft_wpmi ranks 3 and 4 are near-tied in A and swapped
in B, which the diff must excuse (``excused_near_ties.closed_rank`` = 35)."""


def layers() -> list[tuple[str, str, int, int | None]]:
    """(model, layer, units, block): 35 layers, 14,630 neurons."""
    out: list[tuple[str, str, int, int | None]] = []
    for b in range(8):
        for name, width in (("attention.o_proj", 192), ("mlp.fc1", 768), ("mlp.fc2", 192)):
            out.append(("ast", f"encoder.layers.{b}.{name}", width, b + 1))
    out.append(("ast", "classifier.dense", 50, None))
    for i, width in enumerate((64, 128, 256, 512, 512, 1024, 1024, 1024, 770)):
        out.append(("cnn", f"features.conv{i}", width, i + 1))
    out.append(("cnn", "classifier", 50, None))
    assert len(out) == 35 and sum(w for _, _, w, _ in out) == 14_630
    return out


def synthesise(root: Path, seed: int = 0) -> Run:
    """Write run A (all records, validated) under ``root``."""
    rng = np.random.default_rng(seed)
    run = Run.at(root)
    clip_ids = [f"{1 + i // 400}-{100000 + i}-A-{i % 50}" for i in range(CLIPS)]
    run.write(ProbeClip, pl.DataFrame({
        "dataset": ["esc50"] * CLIPS, "clip_id": clip_ids, "index": np.arange(CLIPS),
        "path": [f"audio/{c}.wav" for c in clip_ids], "label": [CONCEPTS[i % 50] for i in
                                                                 range(CLIPS)],
        "target": np.arange(CLIPS) % 50, "fold": 1 + np.arange(CLIPS) // 400,
        "sample_rate": [44100] * CLIPS, "n_samples": [220500] * CLIPS,
    }, schema=ProbeClip.polars_schema()))
    ids = np.array(clip_ids)
    ext, keys = [], []
    for model, layer, width, block in layers():
        values = rng.standard_normal((width, CLIPS), dtype=np.float32)
        units = np.arange(width, dtype=np.int32)
        run.write_activations(pl.DataFrame({
            "model": model, "layer": layer, "unit": units, "alias": layer.split(".", 1)[-1],
            "block": block, "pooling": "mean", "probe_sha256": "synthetic",
            "values": pl.Series(values, dtype=pl.Array(pl.Float32, CLIPS)),
        }, schema=ActivationTable.polars_schema(CLIPS)))
        order = np.argsort(-values, axis=1, kind="stable")
        for side, idx in (("high", order[:, :K]), ("low", order[:, ::-1][:, :K])):
            ext.append(pl.DataFrame({
                "model": model, "layer": layer, "unit": units, "side": side, "k": K,
                "clip_ids": ids[idx].tolist(),
                "values": np.take_along_axis(values, idx, axis=1).tolist()},
                schema=Extremes.polars_schema()))
        keys.append(pl.DataFrame({"model": model, "layer": layer, "unit": units},
                                 schema={"model": pl.String, "layer": pl.String,
                                         "unit": pl.Int32}))
    run.write_extremes(pl.concat(ext))
    neurons = pl.concat(keys)
    n = neurons.height
    sentences = np.array(SENTENCES)
    pts = {side: sentences[rng.integers(0, len(SENTENCES), (n, 4))] for side in ("high", "low")}
    run.write(Summary, pl.concat([neurons.with_columns(
        side=pl.lit(side), text=pl.Series([" ".join(p) for p in pts[side]]),
        points=pl.Series(pts[side].tolist()), summarizer=pl.lit("extractive-v1"),
        sampling=pl.lit("{}"), prompt_sha256=pl.lit(""), clip_ids=pl.lit([], pl.List(pl.String)))
        for side in ("high", "low")]).select(list(Summary.polars_schema())))
    run.write(CalibratedSummary, neurons.with_columns(
        kept=pl.Series(pts["high"][:, :3].tolist()), dropped=pl.Series(pts["high"][:, 3:].tolist()),
        dropped_match=pl.Series(pts["low"][:, :1].tolist()),
        dropped_cos=pl.Series([[0.9]] * n, dtype=pl.List(pl.Float32)), threshold=pl.lit(0.7),
        rule=pl.lit("paper"), encoder=pl.lit("minilm")))
    run.write(ConceptSet, concepts(neurons, rng))
    for e in range(20):
        m = 200
        run.write_result(f"exp{e:02d}", pl.DataFrame({
            "experiment": f"exp{e:02d}", "key": [f"row{i:04d}" for i in range(m)],
            "model": "ast", "group": "DB", "series": "cos", "x": None, "metric": "top1",
            "value": rng.random(m), "paper_value": None, "note": ""},
            schema=ResultRow.polars_schema()))
    run.write_manifest({"name": "bench-diff", "seed": seed, "stages": {}})
    return run


def concepts(neurons: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """Closed (DB x 5 similarities x top-5, decreasing scores) and open (OCP) concepts."""
    n = neurons.height
    parts = []
    scale = {"cos": 0.5, "cos_cubed": 0.02, "rank_reorder": -5000.0, "wpmi": -2.0,
             "soft_wpmi": -3.0}
    for sim in SIMILARITIES:
        top = np.argsort(rng.random((n, len(CONCEPTS))), axis=1)[:, :K]
        base = abs(scale[sim]) * (1 + rng.random((n, 1)))
        gaps = abs(scale[sim]) * (0.02 + 0.1 * rng.random((n, K)))  # >= 2 % apart: no ties
        scores = base - np.cumsum(gaps, axis=1) - (2 * abs(scale[sim]) if scale[sim] < 0 else 0)
        if sim == NEAR_TIE_SIMILARITY:  # near-ties: ranks 3 and 4 within 1e-5 relative
            tie = (neurons["unit"] == NEAR_TIE_UNIT).to_numpy()
            scores[tie, 4] = scores[tie, 3] - 1e-5 * np.abs(scores[tie, 3])
        parts.append(pl.DataFrame({
            "model": np.repeat(neurons["model"].to_numpy(), K),
            "layer": np.repeat(neurons["layer"].to_numpy(), K),
            "unit": np.repeat(neurons["unit"].to_numpy(), K), "method": "DB", "similarity": sim,
            "concept": np.array(CONCEPTS)[top].ravel(), "kind": "closed",
            "rank": np.tile(np.arange(K, dtype=np.int32), n), "score": scores.ravel(),
            "pos": None, "verdict": "kept"}, schema=ConceptSet.polars_schema()))
    adj = np.argsort(rng.random((n, len(ADJECTIVES))), axis=1)[:, :6]
    parts.append(pl.DataFrame({
        "model": np.repeat(neurons["model"].to_numpy(), 6),
        "layer": np.repeat(neurons["layer"].to_numpy(), 6),
        "unit": np.repeat(neurons["unit"].to_numpy(), 6), "method": "OCP", "similarity": "",
        "concept": np.array(ADJECTIVES)[adj].ravel(), "kind": "open",
        "rank": np.tile(np.arange(6, dtype=np.int32), n), "score": None, "pos": "ADJ",
        "verdict": np.tile(np.array(["kept"] * 4 + ["dropped:dummy"] * 2), n)},
        schema=ConceptSet.polars_schema()))
    return pl.concat(parts)


def plant(a: Run, root: Path, seed: int = 1) -> tuple[Run, dict[str, int]]:
    """Run B: a copy of A with sub-tolerance noise everywhere and the :data:`PLANTS`."""
    shutil.copytree(a.root, root)
    b = Run.at(root)
    rng = np.random.default_rng(seed)
    noise = 1 + 1e-6
    key = ["model", "layer", "unit"]
    neurons = a.read(CalibratedSummary).select(key)
    pick = rng.permutation(neurons.height)
    cursor = 0

    def take(count: int) -> pl.DataFrame:
        nonlocal cursor
        out = neurons[pick[cursor:cursor + count]]
        cursor += count
        return out.with_columns(hit=pl.lit(True))

    # closed concepts: top-1 swaps, rank 2/3 swaps, rank-0 score jumps, on disjoint neurons
    cs = b.read(ConceptSet).with_columns(
        score=pl.when(pl.col("kind") == "closed").then(pl.col("score") * noise)
        .otherwise(pl.col("score")))
    group = [*key, "method", "similarity"]
    cs = cs.sort([*group, "rank"])
    ties = neurons.filter(pl.col("unit") == NEAR_TIE_UNIT).with_columns(hit=pl.lit(True))
    for kind, (r0, r1) in (("closed_top1", (0, 1)), ("closed_rank", (2, 3)), ("tie", (3, 4))):
        # swap the concepts at ranks r0 and r1 (scores stay with their ranks)
        sim = NEAR_TIE_SIMILARITY if kind == "tie" else "cos"
        hit = (ties if kind == "tie" else take(PLANTS[kind])).with_columns(
            method=pl.lit("DB"), similarity=pl.lit(sim))
        cs = cs.join(hit, on=group, how="left", maintain_order="left").with_columns(
            concept=pl.when(pl.col("hit").fill_null(False) & (pl.col("rank") == r0))
            .then(pl.col("concept").shift(-1))
            .when(pl.col("hit").fill_null(False) & (pl.col("rank") == r1))
            .then(pl.col("concept").shift(1)).otherwise(pl.col("concept"))).drop("hit")
    hit = take(PLANTS["closed_score"]).with_columns(similarity=pl.lit("wpmi"))
    cs = cs.join(hit, on=[*key, "similarity"], how="left").with_columns(
        score=pl.when(pl.col("hit").fill_null(False) & (pl.col("rank") == 0))
        .then(pl.col("score") + 0.05 * pl.col("score").abs() + 0.01)
        .otherwise(pl.col("score"))).drop("hit")
    # open concepts: one kept word replaced
    hit = take(PLANTS["open_concepts"])
    cs = cs.join(hit, on=key, how="left").with_columns(
        concept=pl.when(pl.col("hit").fill_null(False) & (pl.col("method") == "OCP")
                        & (pl.col("rank") == 0)).then(pl.lit("planted-word"))
        .otherwise(pl.col("concept"))).drop("hit")
    b.write(ConceptSet, cs)

    ex = b.extremes().with_columns(pl.col("values").list.eval(pl.element() * noise))
    for kind, side in (("top_clips", "high"), ("bottom_clips", "low")):
        hit = take(PLANTS[kind]).with_columns(side=pl.lit(side))
        ex = ex.join(hit, on=[*key, "side"], how="left").with_columns(
            clip_ids=pl.when(pl.col("hit").fill_null(False))
            .then(pl.concat_list(pl.lit(["planted-clip"]), pl.col("clip_ids").list.slice(1)))
            .otherwise(pl.col("clip_ids"))).drop("hit")
    b.write_extremes(ex)

    su = b.read(Summary)
    hit = take(PLANTS["summary_high"]).with_columns(side=pl.lit("high"))
    su = su.join(hit, on=[*key, "side"], how="left").with_columns(
        points=pl.when(pl.col("hit").fill_null(False))
        .then(pl.concat_list(pl.lit(["A planted point."]), pl.col("points").list.slice(1)))
        .otherwise(pl.col("points"))).drop("hit")
    b.write(Summary, su)
    ca = b.read(CalibratedSummary)
    hit = take(PLANTS["calibrated"])
    ca = ca.join(hit, on=key, how="left").with_columns(
        kept=pl.when(pl.col("hit").fill_null(False)).then(pl.col("kept").list.slice(1))
        .otherwise(pl.col("kept"))).drop("hit")
    b.write(CalibratedSummary, ca)

    for i, (name, df) in enumerate(sorted(b.results().items())):
        df = df.with_columns(value=pl.col("value") * noise)
        if i == 0:
            rows = df["key"].to_list()[: PLANTS["result_value"]]
            df = df.with_columns(value=pl.when(pl.col("key").is_in(rows))
                                 .then(pl.col("value") + 0.05).otherwise(pl.col("value")))
        if i == 1:
            df = df.slice(PLANTS["result_removed"])
            extra = df.head(PLANTS["result_added"]).with_columns(
                key=pl.concat_str(pl.lit("new-"), pl.col("key")))
            df = pl.concat([df, extra])
        b.write_result(name, df)
    return b, dict(PLANTS)


MEASURE = """
import json, sys, threading, time
import psutil
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0
peak = [psutil.Process().memory_info().rss]
stop = threading.Event()
def sample():
    while not stop.is_set():
        peak[0] = max(peak[0], psutil.Process().memory_info().rss); time.sleep(0.005)
t = threading.Thread(target=sample, daemon=True); t.start()
t0 = time.perf_counter()
import and_toolkit
from and_toolkit.compare.render import render_text
t_import = time.perf_counter() - t0
t1 = time.perf_counter(); c1 = time.process_time()
report = and_toolkit.diff(sys.argv[1], sys.argv[2])
seconds, cpu = time.perf_counter() - t1, time.process_time() - c1
t2 = time.perf_counter(); text = render_text(report); t_render = time.perf_counter() - t2
stop.set(); t.join()
print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "import_seconds": t_import,
                  "render_text_seconds": t_render, "peak_rss": peak[0],
                  "vm_hwm": hwm(),
                  "kind_totals": report.kind_totals, "excused": report.excused,
                  "results": report.results.group_by("change").len().sort("change").rows(),
                  "changed": report.changed, "text_lines": text.count(chr(10))}))
"""


def measure(a: Path, b: Path) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", MEASURE, str(a), str(b)], check=True,
                         capture_output=True, text=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/diff.json"))
    ap.add_argument("--keep", type=Path, default=None, help="write the runs here and keep them")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    load0 = os.getloadavg()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-diff-"))
    try:
        t0 = time.perf_counter()
        a = synthesise(work / "a")
        t_a = time.perf_counter() - t0
        b, planted = plant(a, work / "b")
        t_b = time.perf_counter() - t0 - t_a
        same = measure(work / "a", work / "a")
        synthesise(work / "c", seed=2)
        unrelated = measure(work / "a", work / "c")
        runs = [measure(work / "a", work / "b") for _ in range(args.repeats)]
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    found = dict(runs[0]["kind_totals"])
    res = dict(runs[0]["results"])
    found_flat = {**found, "result_value": res.get("value", 0),
                  "result_removed": res.get("removed", 0), "result_added": res.get("added", 0)}
    secs = sorted(r["seconds"] for r in runs)
    result = {
        "goal": "diff of two ESC-50-size runs <= 10 s and <= 2 GiB peak RSS",
        "runs": {"neurons": 14_630, "layers": 35, "clips": CLIPS, "k": K,
                 "closed_rows": 14_630 * 5 * K, "open_rows": 14_630 * 6, "result_files": 20,
                 "result_rows": 4000, "synthesis_seconds_a": round(t_a, 1),
                 "synthesis_seconds_b": round(t_b, 1)},
        "diff_seconds_median": round(secs[len(secs) // 2], 3),
        "diff_seconds_all": [round(s, 3) for s in secs],
        "diff_cpu_seconds": [round(r["cpu_seconds"], 3) for r in runs],
        "render_text_seconds": round(runs[0]["render_text_seconds"], 3),
        "import_seconds": round(runs[0]["import_seconds"], 3),
        "peak_rss_gib": round(max(r["peak_rss"] for r in runs) / GIB, 3),
        "vm_hwm_gib": round(max(r["vm_hwm"] for r in runs) / GIB, 3),
        "identical_runs": {"seconds": round(same["seconds"], 3), "changed": same["changed"],
                           "peak_rss_gib": round(same["peak_rss"] / GIB, 3)},
        "unrelated_runs": {
            "what": "A vs a run synthesised with another seed: every clip set, summary and "
                    "concept list differs (the slow path examines every group in Python)",
            "seconds": round(unrelated["seconds"], 3),
            "peak_rss_gib": round(unrelated["peak_rss"] / GIB, 3),
            "vm_hwm_gib": round(unrelated["vm_hwm"] / GIB, 3),
            "kind_totals": unrelated["kind_totals"]},
        "planted": planted, "found": found_flat,
        "found_equals_planted": all(found_flat.get(k, 0) == v for k, v in planted.items())
        and set(found) <= set(planted),
        "excused_near_ties": runs[0]["excused"],
        "near_ties_planted": {"closed_rank": len(layers())},
        "near_ties_excused_as_planted": runs[0]["excused"] == {"closed_rank": len(layers())},
        "environment": {
            "cpu_model": cpu_model(), "cpus": os.cpu_count(),
            "physical_cores": psutil.cpu_count(logical=False),
            "python": platform.python_version(), "polars": pl.__version__,
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "load_average_before": [round(x, 2) for x in load0],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "ru_maxrss_synthesis_gib": round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB, 3),
            "note": "the machine is shared; a load average above the core count inflates times",
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
