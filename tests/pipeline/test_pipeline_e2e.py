"""End to end on the built-in synthetic set: every stage, records valid, resumable, deterministic."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from and_toolkit import neurons
from and_toolkit.cache import Cache
from and_toolkit.config import parse_config
from and_toolkit.pipeline import fingerprints, run_pipeline
from and_toolkit.validation import validate_path

TINY: dict[str, Any] = {
    "name": "tiny",
    "probe": {"kind": "synthetic", "per_class": 4},
    "features": {"num_mel_bins": 32, "max_length": 64},
    "targets": [
        {"id": "cnn", "arch": "cnn", "epochs": 2,
         "overrides": {"batch_size": 8, "schedule": "cosine", "cnn": {"channels": [4, 8]}}},
        {"id": "ast", "arch": "ast", "epochs": 1,
         "overrides": {"batch_size": 8, "schedule": "cosine", "ast": {"num_layers": 2, "hidden_size": 24,
                                                "num_heads": 2, "intermediate_size": 48}}},
    ],
    "record": {"k": 3, "extra_k": [4]},
    "captions": {"source": "synthetic", "captioner_id": "synthetic-params"},
    "closed": {"methods": ["DB", "TAB"], "encoder": "hashing"},
    "calibrate": {"encoder": "hashing"},
    "score": {"encoder": "hashing"},
    "stages": ["probe", "targets", "record", "extremes", "captions", "summaries", "calibrate",
               "open", "closed", "score"],
}


def _run(tmp: Path, cache: Path, **over: Any) -> Path:
    cfg = parse_config({**TINY, **over})
    run_pipeline(cfg, run_dir=tmp, cache=Cache(cache), progress=False)
    return tmp


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("e2e")
    return _run(base / "run", base / "cache"), base / "cache"


def test_every_record_validates_and_neuron_view_joins(tiny_run: tuple[Path, Path]) -> None:
    run, _ = tiny_run
    assert validate_path(run) == []
    view = neurons(run).collect()
    manifest = json.loads((run / "manifest.json").read_text())
    assert set(manifest["stages"]) == set(TINY["stages"])
    assert view.height == sum(1 for _ in view.iter_rows())
    assert {"activations", "top_clips", "summary_high", "calibrated", "closed_top1"} <= set(
        view.columns)
    assert view["top_clips"].list.len().unique().to_list() == [3]
    # TAB has no CLAP weights offline: recorded as not run, never faked
    assert "TAB" in manifest["stages"]["closed"]["not_run"]
    closed = pl.read_parquet(run / "concepts.parquet").filter(pl.col("kind") == "closed")
    assert set(closed["method"].unique()) == {"DB"}
    assert set(closed["similarity"].unique()) == {
        "cos", "cos_cubed", "rank_reorder", "wpmi", "soft_wpmi"}
    # every described neuron scored on held-out clips; audio side not run without CLAP
    scores = pl.read_parquet(run / "scores.parquet")
    assert {"auc_DB_cos", "auc_SUM", "auc_DB_cos_descriptors"} <= set(view.columns)
    n_clips = pl.read_parquet(run / "probe.parquet").height
    assert set(scores["source"]) == {"caption"}
    # no clip a description came from (top / bottom K of K = 3 and the extra K = 4) is scored
    used = (pl.concat([pl.read_parquet(run / f).select("model", "layer", "unit", "clip_ids")
                       for f in ("extremes.parquet", "extremes_k4.parquet")])
            .explode("clip_ids").unique().group_by("model", "layer", "unit").len())
    held = scores.join(used, on=["model", "layer", "unit"], how="left")
    assert (held["n_heldout"] == n_clips - held["len"]).all()
    assert "audio" in manifest["stages"]["score"]["not_run"]
    assert (run / "results" / "explanation_scores.parquet").is_file()


def test_rerun_is_a_no_op_and_identical(tiny_run: tuple[Path, Path], tmp_path: Path) -> None:
    run, cache = tiny_run
    before = {p: p.read_bytes() for p in run.rglob("*.parquet")}
    out = subprocess.run(
        [sys.executable, "-c", "from and_toolkit.cli import main; raise SystemExit(main())",
         "info", str(run)], capture_output=True, text=True, check=True)
    assert "(tiny)" in out.stdout and "precision" in out.stdout
    again = _run(tmp_path / "again", cache)  # fresh run dir, warm cache: same bytes
    for p, data in before.items():
        assert (again / p.relative_to(run)).read_bytes() == data, p


def test_changed_section_reruns_downstream_only(tiny_run: tuple[Path, Path]) -> None:
    a = fingerprints(parse_config(TINY))
    b = fingerprints(parse_config({**TINY, "calibrate": {"encoder": "hashing", "threshold": 0.9}}))
    changed = [s for s in a if a[s] != b[s]]
    assert changed == ["calibrate", "open", "closed", "score", "experiments", "report"]


KILLER = """
import sys
from pathlib import Path
from and_toolkit.cache import Cache
from and_toolkit.config import parse_config
from and_toolkit.pipeline import run_pipeline
import and_toolkit.pipeline.dissect_stages as ds
cfg = parse_config({cfg})
real = ds.stage_calibrate
def stalled(ctx):
    real(ctx)
    print("CALIBRATED", flush=True)
    import time; time.sleep(60)
ds.stage_calibrate = stalled
run_pipeline(cfg, run_dir=Path(sys.argv[1]), cache=Cache(Path(sys.argv[2])), progress=False)
"""


def test_killed_run_resumes_to_the_same_records(tiny_run: tuple[Path, Path],
                                                tmp_path: Path) -> None:
    run, cache = tiny_run
    target = tmp_path / "killed"
    code = KILLER.replace("{cfg}", repr(TINY))
    proc = subprocess.Popen([sys.executable, "-c", code, str(target), str(cache)],
                            stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == "CALIBRATED":
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    manifest = json.loads((target / "manifest.json").read_text())
    assert "calibrate" not in manifest["stages"] and "summaries" in manifest["stages"]
    _run(target, cache)
    for p in run.rglob("*.parquet"):
        assert (target / p.relative_to(run)).read_bytes() == p.read_bytes(), p


def test_info_and_later_stages_use_the_recorded_training_choice(
        tiny_run: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from and_toolkit.pipeline.context import Context
    from and_toolkit.pipeline.targets import resolved_train_config
    from and_toolkit.run import Run
    from and_toolkit.validation import info_text, run_info

    run, cache = tiny_run
    info = run_info(run)["targets"]
    assert set(info) == {"cnn", "ast"}
    assert all(t["precision"] == "fp32" and t["threads"] >= 1 for t in info.values())
    # each training was estimated beforehand from its own measured step
    assert all(t["estimated_train_s"] >= 0 for t in info.values())
    # every stage and every target's training is timed: wall, CPU, sampled peak memory
    timings = run_info(run)["timings"]
    assert list(timings) == TINY["stages"]
    for usage in [*timings.values(), *(t["resources"] for t in info.values())]:
        assert usage["wall_s"] >= 0 and usage["cpu_s"] >= 0
        assert usage["peak_rss_mib"] >= usage["start_rss_mib"] > 0
    # and each target's recording (this run has no experiments stage: no pruning figures)
    per = run_info(run)["per_target"]
    assert set(per) == {"cnn", "ast"}
    assert all(p["record"]["cpu_s"] >= 0 and p["pruning"] is None for p in per.values())
    assert "pruned passes" in info_text(run_info(run))
    # and each Module A method the closed stage ran (TAB is not run here: no CLAP offline)
    methods = run_info(run)["closed_methods"]["seconds"]
    assert list(methods) == ["DB"] and methods["DB"] >= 0
    assert f"(closed: DB {methods['DB']:.1f} s)" in info_text(run_info(run))
    # the record stage wrote each model's layer order: nothing loads a model to learn it
    handle = Run.at(run)
    for model in ("cnn", "ast"):
        layers = handle.recorded_layers(model)
        assert sorted(layers) == sorted(lay for m, lay in handle.activation_layers() if m == model)
    # a later stage keeps the run's choice even where a new measurement would differ
    monkeypatch.setenv("AND_TRAIN_PRECISION", "bf16")
    ctx = Context(cfg=parse_config(TINY), run=handle, cache=Cache(cache), progress=False)
    target = ctx.cfg.targets[0]
    cfg, choice = resolved_train_config(ctx, target)
    assert cfg.precision == "fp32" and "reused_from" in choice
    fresh, choice = resolved_train_config(ctx, target, fresh=True)
    assert fresh.precision == "bf16" and choice["precision_source"] == "env"


def test_record_stage_keeps_files_recorded_under_the_same_key(
        tiny_run: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Adding a target re-runs the record stage, which records only the new target: the others'
    files match their weights, probe, layers and pooling. Another pooling records all again."""
    import shutil

    from and_toolkit.pipeline.engine import LocalEngine
    from and_toolkit.run import Run

    run, cache = tiny_run
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    files = sorted((copy / "activations").rglob("*.parquet"))
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files}
    extra = {**TINY["targets"][0], "id": "cnn2", "seed": 1}
    targets = [*TINY["targets"], extra]
    real = LocalEngine.record

    def only_the_new_one(self: LocalEngine, job: Any) -> Any:
        assert job.model_id == "cnn2", f"{job.model_id} recorded again"
        return real(self, job)

    with monkeypatch.context() as m:
        m.setattr(LocalEngine, "record", only_the_new_one)
        _run(copy, cache, targets=targets)
    record = json.loads((copy / "manifest.json").read_text())["stages"]["record"]
    assert all(isinstance(record[t].get("reused"), str) for t in ("cnn", "ast"))
    assert "reused" not in record["cnn2"] and (copy / "activations" / "model=cnn2").is_dir()
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files} == before
    _run(copy, cache, targets=targets, record={**TINY["record"], "pooling": "max"})
    record = json.loads((copy / "manifest.json").read_text())["stages"]["record"]
    assert all("reused" not in record[t] for t in ("cnn", "ast", "cnn2"))
    assert all(p.read_bytes() != before[p][1] for p in files)
    # a target dropped from the config: its files go, the others are kept as recorded
    kept = {p: p.read_bytes() for p in (copy / "activations" / "model=cnn").rglob("*.parquet")}
    _run(copy, cache, targets=[TINY["targets"][0]], record={**TINY["record"], "pooling": "max"},
         stages=["probe", "targets", "record", "extremes"])
    record = json.loads((copy / "manifest.json").read_text())["stages"]["record"]
    assert isinstance(record["cnn"].get("reused"), str)
    assert {m for m, _ in Run.at(copy).activation_layers()} == {"cnn"}
    assert not (copy / "activations" / "model=ast").exists()
    assert len(record["_removed"]) == len(files)  # ast's layers and cnn2's (as many as cnn's)
    assert all(p.startswith(("activations/model=ast/", "activations/model=cnn2/"))
               for p in record["_removed"])
    assert {p: p.read_bytes() for p in kept} == kept
    extremes = pl.read_parquet(copy / "extremes.parquet")
    assert set(extremes["model"].to_list()) == {"cnn"}


def test_a_new_run_directory_copies_recorded_activations_from_the_cache(
        tiny_run: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same targets and probe in another run directory: the record stage copies each layer's
    file from the cache (byte for byte) instead of recording; the manifest says so."""
    from and_toolkit.pipeline.engine import LocalEngine

    run, cache = tiny_run

    def never(self: LocalEngine, job: Any) -> Any:
        raise AssertionError(f"{job.model_id} recorded although its files are cached")

    with monkeypatch.context() as m:
        m.setattr(LocalEngine, "record", never)
        second = _run(tmp_path / "second", cache, stages=["probe", "targets", "record"])
    record = json.loads((second / "manifest.json").read_text())["stages"]["record"]
    for tid in ("cnn", "ast"):
        assert isinstance(record[tid].get("from_cache"), str) and "reused" not in record[tid]
        assert record[tid]["resources"]["wall_s"] >= 0
    files = sorted(p.relative_to(run) for p in (run / "activations").rglob("*.parquet"))
    assert files == sorted(p.relative_to(second)
                           for p in (second / "activations").rglob("*.parquet"))
    assert all((run / f).read_bytes() == (second / f).read_bytes() for f in files)
    from and_toolkit.validation import info_text, run_info

    assert " (cache)" in info_text(run_info(second))
    # a damaged or missing entry: that target is recorded again, nothing half-written
    import shutil

    shutil.rmtree(cache / "activations")
    third = _run(tmp_path / "third", cache, stages=["probe", "targets", "record"])
    record = json.loads((third / "manifest.json").read_text())["stages"]["record"]
    assert all("from_cache" not in record[t] for t in ("cnn", "ast"))
    assert all((run / f).read_bytes() == (third / f).read_bytes() for f in files)


def test_early_stopping_is_recorded_in_the_curve_and_the_provenance(tmp_path: Path) -> None:
    """A target with ``patience``: the held-out accuracy per epoch and the kept epoch in the
    manifest, and the target's accuracy read from the kept epoch's row."""
    cnn = {**TINY["targets"][0], "epochs": 4,
           "overrides": {**TINY["targets"][0]["overrides"], "patience": 1,
                         "val_fraction": 0.25}}
    run = _run(tmp_path / "run", tmp_path / "cache", targets=[cnn],
               stages=["probe", "targets"])
    curve = pl.read_parquet(run / "training.parquet")
    record = json.loads((run / "manifest.json").read_text())["stages"]["targets"]["cnn"]
    stop = record["early_stopping"]
    assert stop["patience"] == 1 and stop["max_epochs"] == 4
    assert stop["epochs_run"] == curve.height == len(stop["val_accuracy"])
    assert stop["val_accuracy"][stop["kept_epoch"] - 1] == max(stop["val_accuracy"])
    kept = curve.filter(pl.col("epoch") == stop["kept_epoch"])
    assert record["test_accuracy"] == kept["test_accuracy"][0]
    from and_toolkit.validation import info_text, run_info

    text = info_text(run_info(run))
    assert f"{stop['kept_epoch']}/{stop['epochs_run']} of 4" in text


def test_cached_weights_report_the_threads_they_were_trained_with(tmp_path: Path) -> None:
    """The thread count is not in the weights key, so a run choosing another one reads weights
    trained at the first: the manifest's (and ``info``'s) ``threads`` is the training's, stored
    beside the weights; this run's choice stays in ``training_choice``. Weights cached before
    the facts were stored show an unknown count, never this run's."""
    import shutil

    from and_toolkit.run import Run
    from and_toolkit.validation import info_text, run_info

    def cnn(threads: int) -> dict[str, Any]:
        t = TINY["targets"][0]
        return {**t, "overrides": {**t["overrides"], "threads": threads}}

    cache = tmp_path / "cache"
    first = _run(tmp_path / "one", cache, targets=[cnn(1)], stages=["probe", "targets"])
    second = _run(tmp_path / "two", cache, targets=[cnn(2)], stages=["probe", "targets"])
    made, read = (Run.at(r).stage_info("targets")["cnn"] for r in (first, second))
    assert made["trained_here"] and not read["trained_here"]
    # the training was estimated beforehand from its own measured step (threads pinned here:
    # no step measured, no estimate); a cache read has nothing to estimate
    assert "estimated_train_s" not in made and "estimated_train_s" not in read
    assert read["weights_key"] == made["weights_key"]
    assert made["threads"] == read["threads"] == 1
    assert read["training_choice"]["threads"] == 2
    assert read["trained_with"] == made["trained_with"]
    assert made["trained_with"]["capability"] and made["trained_with"]["torch"]
    shutil.rmtree(cache / "trainings")  # a cache written before the facts were stored
    third = _run(tmp_path / "three", cache, targets=[cnn(2)], stages=["probe", "targets"])
    old = Run.at(third).stage_info("targets")["cnn"]
    assert not old["trained_here"] and old["threads"] is None and old["trained_with"] is None
    row = next(line for line in info_text(run_info(third)).splitlines()
               if line.startswith("cnn "))
    assert row.split()[3] == "?"


def test_targets_trained_in_worker_processes_equal_those_trained_here(tmp_path: Path) -> None:
    """``execution.train_workers = 2`` trains both targets side by side in worker processes:
    the same weights keys, weights bytes and curves as one after another in this process."""
    from and_toolkit.run import Run

    runs = {}
    for workers in (1, 2):
        cache = tmp_path / f"cache{workers}"
        runs[workers] = (_run(tmp_path / f"run{workers}", cache, stages=["probe", "targets"],
                              execution={"train_workers": workers}), Cache(cache))
    here, there = (Run.at(runs[w][0]).stage_info("targets") for w in (1, 2))
    for tid in ("cnn", "ast"):
        assert here[tid]["weights_key"] == there[tid]["weights_key"]
        key = here[tid]["weights_key"]
        assert runs[2][1].get_bytes("weights", key) == runs[1][1].get_bytes("weights", key)
        assert here[tid]["trained_here"] and "trained_alongside" not in here[tid]
        assert there[tid]["trained_here"] and there[tid]["training_workers"] == 2
        assert there[tid]["trained_alongside"] == [{"cnn": "ast", "ast": "cnn"}[tid]]
        assert there[tid]["worker_resources"]["wall_s"] > 0
    curves = [pl.read_parquet(runs[w][0] / "training.parquet").drop("seconds") for w in (1, 2)]
    assert curves[0].equals(curves[1])
    # warm: nothing left to train, nothing goes to a worker, the weights are read
    again = Run.at(_run(tmp_path / "run3", tmp_path / "cache2", stages=["probe", "targets"],
                        execution={"train_workers": 2})).stage_info("targets")
    assert not again["cnn"]["trained_here"] and "training_workers" not in again["cnn"]
