"""Benchmark: what each pretrained target adds to a cold ESC-50 reproduction (issue 17's goal:
<= 15 min per target on this kind of machine), from one finished run's manifest.

Per target, from figures the run measured itself (``and-toolkit info RUN`` shows the same):

- **train**: ``stages.targets.<id>.train_seconds``, the cold training time recorded with the
  cached weights (for frozen targets it includes the embedding pass over the 2,000 clips);
- **record**: ``stages.record.<id>.resources`` (wall and CPU seconds of recording that target);
- **pruning**: ``stages.experiments.pruning.<id>``: the pruned fold-1 passes run in that stage
  plus what producing those read from the cache cost when they ran (each pass stores its cost
  beside its logits); passes cached before costs were stored are counted as
  ``pruning_passes_without_cost`` and make the figure a lower bound;
- **shared**: the stages that work neuron by neuron (extremes, summaries, calibrate, open, closed,
  score) are shared by neuron count: the target's neurons / all neurons x the stage's time. This
  is an apportioning, not a separate measurement, and is labelled so in the results file.

The CPU model, core count and the 1-minute load average at reading time are recorded; the run's
own stage times were measured under whatever load it had (see the run's manifest).

Usage::

    python benchmarks/bench_pretrained_added.py --run runs/esc50 \\
        --out benchmarks/results/pretrained_added.json

``--targets ID ...`` re-measures only those targets (a run that re-trained and re-recorded just
them, e.g. after a change to one head); the results file keeps the other targets' entries with
their own run and date. ``--shared-from-earlier`` then takes a re-measured target's per-neuron
share from the file's earlier entry: right when the per-neuron stages of the new run read their
results from the cache (a forced re-run), which makes them no measure of computing them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cold_run import machine  # noqa: E402

from and_toolkit.run import Run  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 15 * 60.0
PRETRAINED = ("yamnet-frozen", "yamnet", "whisper-frozen")
PER_NEURON = ("extremes", "summaries", "calibrate", "open", "closed", "score")


def added(run: Path, only: tuple[str, ...] = PRETRAINED) -> dict[str, Any]:
    """Per pretrained target of ``run`` (those in ``only``): train, record, pruning and shared
    seconds (wall, CPU)."""
    handle = Run.at(run)
    stages = handle.manifest()["stages"]
    counts = handle.neuron_index().group_by("model").len()
    neurons = dict(zip(counts["model"].to_list(), counts["len"].to_list(), strict=True))
    total = sum(neurons.values())
    out: dict[str, Any] = {}
    for target in only:
        if target not in neurons:
            continue
        share = neurons[target] / total
        trained = stages["targets"][target]
        rec = stages["record"][target].get("resources")
        if rec is None:
            raise SystemExit(f"{run}: the record stage kept {target}'s files from an earlier "
                             "run; point --run at a run that recorded it")
        prune = stages["experiments"].get("pruning", {}).get(target, {})
        shared = {s: round(stages[s]["resources"]["wall_s"] * share, 1) for s in PER_NEURON}
        prune_wall = float(prune.get("wall_s", 0.0)) + float(prune.get("cached_cost_wall_s", 0.0))
        prune_cpu = float(prune.get("cpu_s", 0.0)) + float(prune.get("cached_cost_cpu_s", 0.0))
        parts_wall = {"train": float(trained["train_seconds"]), "record": rec["wall_s"],
                      "pruning": round(prune_wall, 1),
                      "shared_by_neurons": round(sum(shared.values()), 1)}
        wall = round(sum(parts_wall.values()), 1)
        out[target] = {
            "neurons": neurons[target], "neuron_share": round(share, 4),
            "wall_s": parts_wall, "shared_wall_s_by_stage": shared,
            "record_cpu_s": rec["cpu_s"], "pruning_cpu_s": round(prune_cpu, 1),
            "pruning_passes": int(prune.get("forward_passes", 0)) + int(prune.get("cached", 0)),
            "pruning_passes_without_cost": prune.get("cached_without_cost", 0),
            "total_wall_s": wall, "total_wall_min": round(wall / 60, 1),
            "meets_15_min": wall <= GOAL_S}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/esc50")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/pretrained_added.json"))
    parser.add_argument("--note", default="", help="how the run's figures were measured (load)")
    parser.add_argument("--targets", nargs="*", default=list(PRETRAINED), choices=PRETRAINED)
    parser.add_argument("--shared-from-earlier", action="store_true",
                        help="keep each re-measured target's per-neuron share from the file")
    args = parser.parse_args()
    run = Path(args.run)
    date = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    earlier = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
    targets = {t: {**v, "run": v.get("run", earlier.get("run")),
                   "date": v.get("date", earlier.get("date"))}
               for t, v in (earlier.get("targets") or {}).items()}
    for target, entry in added(run, tuple(args.targets)).items():
        entry |= {"run": str(run), "date": date, "measurement_note": args.note}
        if args.shared_from_earlier:
            old = targets.get(target)
            if old is None:
                raise SystemExit(f"--shared-from-earlier: {args.out} has no entry for {target}")
            entry["wall_s"]["shared_by_neurons"] = old["wall_s"]["shared_by_neurons"]
            entry["shared_wall_s_by_stage"] = old["shared_wall_s_by_stage"]
            entry["shared_from"] = f"{old['run']} ({old['date']})"
            wall = round(sum(entry["wall_s"].values()), 1)
            entry |= {"total_wall_s": wall, "total_wall_min": round(wall / 60, 1),
                      "meets_15_min": wall <= GOAL_S}
        targets[target] = entry
    result = {"benchmark": "pretrained_added", "goal_s_per_target": GOAL_S, "date": date,
              "machine": machine(), "load1_at_reading": os.getloadavg()[0],
              "targets": targets,
              "note": "train, record and pruning are the run's own per-target measurements; "
                      "'shared_by_neurons' apportions the per-neuron stages' wall time by "
                      "neuron count (not measured per target). Each target names the run and "
                      "date it was read from."}
    Path(args.out).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(json.dumps({t: v["total_wall_min"] for t, v in result["targets"].items()}))


if __name__ == "__main__":
    main()
