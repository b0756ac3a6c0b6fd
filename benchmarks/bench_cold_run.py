"""Benchmark: a whole run cold (empty cache) and warm (fresh run directory, warm cache), per stage.

Runs ``and-toolkit run CONFIG`` twice as a new user would, in subprocesses: first with
``$AND_CACHE_DIR`` pointing at an empty directory (nothing trained, embedded, generated or
probed yet: the precision / thread probes run again), then into a second fresh run directory with
that now-warm cache. Each run's manifest gives every stage's wall time, CPU time and peak memory
(``resources.measured``) and each target's training time; the whole process's wall time is
measured around it. The CPU model, core count, ISA flags that decide bf16 (avx2, avx512f,
avx512_bf16, amx_bf16) and the 1-minute load average before and after each run are recorded beside
the figures, because the machine is shared and noisy.

Goals (issue 18, on a 2-core AVX2 laptop): demo cold <= 90 s; ESC-50 cold <= 30 min, warm <= 5 min.
A run on another kind of CPU is recorded, not compared against these goals as if it were one.
``--emulate-avx2`` runs both subprocesses with torch's, oneDNN's and MKL's kernels capped at AVX2
(``ATEN_CPU_CAPABILITY=avx2``, ``ONEDNN_MAX_CPU_ISA=AVX2``, ``MKL_ENABLE_INSTRUCTIONS=AVX2``): bf16 is then emulated as on an AVX2
laptop (the precision probe sees it), though clock, caches and the LLM runtime's own kernels are
still this machine's, so it approximates such a laptop rather than being one (the results file
says which it was).

Usage::

    export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
    python benchmarks/bench_cold_run.py                       # configs/demo.toml -> results/cold_demo.json
    AND_DATA_DIR=../shared/data python benchmarks/bench_cold_run.py --config configs/esc50.toml \\
        --out benchmarks/results/cold_esc50.json               # about an hour or more cold
    python benchmarks/bench_cold_run.py --emulate-avx2 --out benchmarks/results/cold_demo_avx2.json
    # ESC-50 with the three targets trained here only, warm: the machine's own cache (targets,
    # features, generations already there), a fresh run directory
    python benchmarks/bench_cold_run.py --config configs/esc50.toml --targets ast ast-frozen cnn \
        --warm-only --out benchmarks/results/warm_esc50_trained.json

``--targets`` runs a copy of the config with only the named ``[[targets]]`` (written to the
temporary directory). ``--warm-only`` skips the cold run and measures one run into a fresh run
directory with the cache ``and-toolkit`` uses anyway (``$AND_CACHE_DIR`` or its default).
``--seed-weights`` makes the cold run cold in everything but training: the empty cache first
receives the machine cache's trained weights, their training curves and the machine's
precision / thread memo (namespaces :data:`SEED_NAMESPACES`), so the targets stage reads the
weights a finished training left (its manifest keeps that training's seconds) and every other
stage starts from nothing. For ESC-50, whose training alone takes hours on 2 cores, that gives
the per-stage table of a cold run with the training times of the run that trained the weights::

    python benchmarks/bench_cold_run.py --config configs/esc50.toml --targets ast ast-frozen cnn \
        --seed-weights --no-warm --out benchmarks/results/cold_esc50_trained.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GOALS_S = {"demo": {"cold": 90.0}, "esc50": {"cold": 1800.0, "warm": 300.0}}
FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
SEED_NAMESPACES = ("weights", "curves", "machine")
"""Cache namespaces ``--seed-weights`` copies into the cold run's empty cache."""
AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
            "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
"""Environment that caps torch's (ATen), oneDNN's and MKL's kernels at AVX2 (torch's float32
matrix products go to MKL; on the AMD EPYC these figures come from MKL reports its generic
code path whether capped or not, so its cap matters on Intel CPUs with AVX-512)."""


def machine() -> dict[str, Any]:
    """CPU model, usable cores and the ISA flags that decide bf16 speed (Linux /proc/cpuinfo)."""
    model, flags = platform.processor() or "unknown", set()
    info = Path("/proc/cpuinfo")
    if info.is_file():
        for line in info.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    return {"platform": platform.platform(), "cpu_model": model,
            "cores": len(os.sched_getaffinity(0)), "flags": {f: f in flags for f in FLAGS}}


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def subset_config(config: Path, targets: list[str], out: Path) -> Path:
    """Write ``config`` with only the ``[[targets]]`` named in ``targets`` to ``out``.

    Raises:
        SystemExit: naming the ids the config does not have.
    """
    data = tomllib.loads(config.read_text())
    known = [t["id"] for t in data.get("targets", [])]
    unknown = sorted(set(targets) - set(known))
    if unknown:
        raise SystemExit(f"{config}: no [[targets]] with id {unknown} (it has {known})")
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items()
             if not isinstance(v, (dict, list)) or (isinstance(v, list) and k != "targets")]
    for key, value in data.items():
        if key == "targets":
            for t in value:
                if t["id"] in targets:
                    lines += ["", "[[targets]]"] + [f"{k} = {_toml_value(x)}" for k, x in t.items()]
        elif isinstance(value, dict):
            lines += ["", f"[{key}]"] + [f"{k} = {_toml_value(x)}" for k, x in value.items()]
    out.write_text("\n".join(lines) + "\n")
    return out


def seed_cache(cache: Path) -> dict[str, Any]:
    """Copy :data:`SEED_NAMESPACES` of the machine's cache into the empty ``cache``.

    Raises:
        SystemExit: the machine's cache has no trained weights.
    """
    import shutil

    from and_toolkit.cache import default_cache_dir

    source = default_cache_dir()
    if not (source / "weights").is_dir():
        raise SystemExit(f"--seed-weights: {source}/weights does not exist (train the targets "
                         "once with `and-toolkit run CONFIG` first)")
    copied = {}
    for ns in SEED_NAMESPACES:
        if (source / ns).is_dir():
            shutil.copytree(source / ns, cache / ns)
            copied[ns] = sum(1 for f in (cache / ns).rglob("*") if f.is_file())
    return {"seeded_from": str(source), "files_per_namespace": copied}


def one_run(config: Path, run_dir: Path, cache: Path | None,
            extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    """``and-toolkit run`` in a subprocess; wall seconds, load and the manifest's stage figures.

    The subprocess runs in ``run_dir``'s parent and publishes nothing (no ``--publish``): the
    report stays in the run directory, never in the checkout's ``reports/``."""
    env = {**os.environ, **({"AND_CACHE_DIR": str(cache)} if cache else {}), **(extra_env or {})}
    load = os.getloadavg()[0]
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "and_toolkit.cli", "run", str(config), "--run-dir",
                    str(run_dir), "--no-progress"], check=True, env=env, cwd=run_dir.parent)
    wall = time.perf_counter() - start
    manifest = json.loads((run_dir / "manifest.json").read_text())
    stages = manifest.get("stages") or {}
    per_stage = {s: e.get("resources") for s, e in stages.items()
                 if isinstance(e, dict) and isinstance(e.get("resources"), dict)}
    training = {t: {**{k: e.get(k) for k in ("arch", "precision", "threads", "train_seconds",
                                             "test_accuracy", "trained_here", "training_workers",
                                             "trained_alongside", "trained_with",
                                             "estimated_train_s")},
                    "threads_source": (e.get("training_choice") or {}).get("threads_source")}
                for t, e in (stages.get("targets") or {}).items()
                if isinstance(e, dict) and "arch" in e}
    return {"wall_s": round(wall, 2), "load1_before": load, "load1_after": os.getloadavg()[0],
            "stages": per_stage, "training": training, "parts": parts(stages)}


def parts(stages: dict[str, Any]) -> dict[str, Any]:
    """Where the long stages' time went, from a manifest's ``stages``: the closed stage's
    seconds per Module A method (whether TAB trained its audio-text model, ICL's answers and
    LLM load), the score stage's text encoding, the experiments' seconds per result and each
    target's pruned passes (count, wall and CPU seconds, passes read from the cache)."""
    closed, score = stages.get("closed") or {}, stages.get("score") or {}
    experiments = stages.get("experiments") or {}
    asked = closed.get("icl_requests") or {}
    return {
        "closed": {"method_seconds": closed.get("method_seconds"),
                   "tab_trained_here": closed.get("tab_trained_here"),
                   "tab_train_seconds": (closed.get("tab_model") or {}).get("train_seconds"),
                   "icl_generated": asked.get("generated"),
                   "icl_llm_load_s": asked.get("llm_load_s")},
        "score": {"texts": score.get("texts")},
        "experiments": {"seconds": {e: v.get("seconds") for e, v in
                                    (experiments.get("experiments") or {}).items()
                                    if isinstance(v, dict)},
                        "pruning": {t: {k: p.get(k) for k in ("forward_passes", "wall_s",
                                                              "cpu_s", "cached")}
                                    for t, p in (experiments.get("pruning") or {}).items()
                                    if isinstance(p, dict)}},
    }


def commit() -> dict[str, Any]:
    """The checkout's commit and whether its tracked files differ from it (git; "unknown"
    outside a git checkout)."""
    def git(*cmd: str) -> str:
        done = subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else "unknown"

    return {"commit": git("rev-parse", "HEAD"),
            "dirty": git("status", "--porcelain", "--untracked-files=no") not in ("", "unknown")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.toml")
    parser.add_argument("--out", default=None, help="results file (default: results/cold_<name>.json)")
    parser.add_argument("--no-warm", action="store_true", help="skip the warm run")
    parser.add_argument("--emulate-avx2", action="store_true",
                        help="cap torch / oneDNN kernels at AVX2 (see the module docstring)")
    parser.add_argument("--targets", nargs="+", default=None,
                        help="run only these target ids of the config")
    parser.add_argument("--warm-only", action="store_true",
                        help="one run with the existing cache (no cold run)")
    parser.add_argument("--seed-weights", action="store_true",
                        help="cold run with the machine's trained weights copied in (see above)")
    args = parser.parse_args()
    extra = AVX2_ENV if args.emulate_avx2 else {}
    config = (ROOT / args.config).resolve()
    name = config.stem
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"cold_{name}.json"
    with tempfile.TemporaryDirectory(prefix="and-cold-") as tmp:
        if args.targets:
            config = subset_config(config, args.targets, Path(tmp) / f"{name}.toml")
        result: dict[str, Any] = {
            "benchmark": "cold_run", "config": args.config, "targets": args.targets or "all",
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": machine(), "code": commit(), "goals_s": GOALS_S.get(name, {}), "emulated_avx2": extra}
        if args.warm_only:
            result["cache"] = "the machine's existing cache (not emptied)"
            result["warm"] = one_run(config, Path(tmp) / "warm", None, extra)
        else:
            cache = Path(tmp) / "cache"
            if args.seed_weights:
                cache.mkdir()
                result["cache"] = {"cold_except": list(SEED_NAMESPACES), **seed_cache(cache)}
            result["cold"] = one_run(config, Path(tmp) / "cold", cache, extra)
            if not args.no_warm:
                result["warm"] = one_run(config, Path(tmp) / "warm", cache, extra)
    for kind, goal in result["goals_s"].items():
        if kind in result:
            result[f"{kind}_meets_goal"] = result[kind]["wall_s"] <= goal
    result["note"] = ("Goals are for a 2-core AVX2-only laptop CPU; compare them only on such a "
                      "machine. load1_* is the 1-minute load average (other jobs share the CPU).")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(json.dumps({k: result[k]["wall_s"] for k in ("cold", "warm") if k in result}))


if __name__ == "__main__":
    main()
