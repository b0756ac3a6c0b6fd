"""The and-toolkit command: validate, info, schemas, run errors."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest
from samples import sample_frame

from and_toolkit import neurons
from and_toolkit.cli import main
from and_toolkit.records import (
    ActivationTable,
    CalibratedSummary,
    ConceptSet,
    Extremes,
    ProbeClip,
    Summary,
)
from and_toolkit.run import Run


def _run(tmp_path: Path) -> Run:
    run = Run.at(tmp_path / "run")
    for record in (ProbeClip, Extremes, Summary, CalibratedSummary, ConceptSet):
        run.write(record, sample_frame(record), stage="test")
    run.write_activations(sample_frame(ActivationTable), stage="test")
    run.update_manifest(config={"name": "toy"})
    return run


def test_validate_good_run_and_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(tmp_path)
    assert main(["validate", str(run.root)]) == 0
    assert main(["validate", str(run.path(ProbeClip))]) == 0
    assert "ok" in capsys.readouterr().out


def test_validate_reports_every_problem(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(tmp_path)
    run.path(Summary).write_text("garbage")
    # an extremes file pointing at clips the probe set does not have
    ex = sample_frame(Extremes).with_columns(pl.lit(["zz", "c1"]).alias("clip_ids"))
    run.write(Extremes, ex)
    assert main(["validate", str(run.root)]) == 1
    err = capsys.readouterr().err
    assert "summaries.parquet" in err and "not a readable Parquet file" in err
    assert "field 'clip_ids'" in err and "'zz'" in err
    assert "2 problem(s) found" in err


def test_info_lists_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(tmp_path)
    assert main(["info", "--json", str(run.root)]) == 0
    out = capsys.readouterr().out
    assert '"ProbeClip"' in out and '"neurons": 3' in out and '"name": "toy"' in out
    assert main(["info", str(run.root)]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"run {run.root} (toy)") and "ActivationTable" in text


def test_info_refuses_what_is_not_a_run(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    audio = tmp_path / "clips"
    audio.mkdir()
    (audio / "a.wav").write_bytes(b"RIFF")
    assert main(["info", str(audio)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {audio}: not a run (no manifest.json)"
    assert main(["info", str(tmp_path / "nope")]) == 2
    assert f"{tmp_path / 'nope'}: no such run directory" in capsys.readouterr().err


def test_index_refuses_a_missing_directory(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nonexistent"
    assert main(["index", str(missing)]) == 2
    assert f"{missing}: no such reports directory" in capsys.readouterr().err
    assert not missing.exists()
    (tmp_path / "file").write_text("")
    assert main(["index", str(tmp_path / "file")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_info_tells_user_models_from_archs(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A user's model has no arch and no training precision: its family is labelled as such
    and its precision is "as loaded", never a literal None."""
    run = _run(tmp_path)
    run.mark_stage("targets", ast={"arch": "ast", "precision": "fp32", "threads": 2,
                                   "test_accuracy": 0.5},
                   old={"arch": "cnn", "precision": None},
                   mine={"family": "clap", "pretrained": "models/clap", "sample_rate": 48000})
    assert main(["info", str(run.root)]) == 0
    text = capsys.readouterr().out
    assert "None" not in text
    header = next(line for line in text.splitlines() if line.startswith("target"))
    assert header.split()[:3] == ["target", "model", "precision"]
    rows = {line.split()[0]: line.split() for line in text.splitlines()
            if line.split() and line.split()[0] in ("ast", "old", "mine")}
    assert rows["ast"][1:3] == ["ast", "fp32"] and rows["old"][1:3] == ["cnn", "?"]
    assert rows["mine"][1:5] == ["user", "clap", "as", "loaded"]


def test_schemas_check_and_write(tmp_path: Path) -> None:
    assert main(["schemas", "--out", str(tmp_path), "--check"]) == 1
    assert main(["schemas", "--out", str(tmp_path)]) == 0
    assert main(["schemas", "--out", str(tmp_path), "--check"]) == 0


def test_run_with_bad_config_exits_2_with_message(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('name = "x"\n[record]\nkk = 3\n')
    assert main(["run", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert str(cfg) in err and "record.kk: unknown key" in err


def test_missing_data_dir_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AND_DATA_DIR", str(tmp_path / "nowhere"))
    cfg = tmp_path / "esc.toml"
    cfg.write_text('name = "x"\nstages = ["probe"]\n[probe]\nkind = "esc50"\n')
    assert main(["run", str(cfg), "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "AND_DATA_DIR" in err and "nowhere" in err


def test_neuron_view_one_row_per_neuron(tmp_path: Path) -> None:
    view = neurons(_run(tmp_path)).collect()
    assert view.height == 3
    first = view.row(0, named=True)
    assert first["top_clips"] == ["c3", "c2"] and first["calibrated"] == ["a dog barks loudly"]
    assert first["open_concepts"] == ["loud"]
    assert first["closed_top1"][0]["concept"] == "dog"
    assert view.filter(pl.col("unit") == 2)["top_clips"][0] is None


def test_library_progress_bars_follow_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub.utils import are_progress_bars_disabled, enable_progress_bars
    from transformers.utils import logging as hf_logging

    from and_toolkit.cli import library_bars

    for var in ("HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE"):
        monkeypatch.delenv(var, raising=False)
    # huggingface_hub reads its variable once, when first imported: an earlier test's
    # `run` without a terminal may have imported it with the variable set
    import importlib

    hub_tqdm = importlib.import_module("huggingface_hub.utils.tqdm")  # the module, not the class
    monkeypatch.setattr(hub_tqdm, "HF_HUB_DISABLE_PROGRESS_BARS", None)
    hf_logging.enable_progress_bar()  # an earlier `run --no-progress` in this process
    enable_progress_bars()
    try:
        library_bars(True)  # a terminal: the libraries keep their bars
        assert hf_logging.is_progress_bar_enabled() and not are_progress_bars_disabled()
        library_bars(False)  # logs: one line per stage, no library bars either
        assert not hf_logging.is_progress_bar_enabled() and are_progress_bars_disabled()
        assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == os.environ["TQDM_DISABLE"] == "1"
    finally:
        for var in ("HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE"):
            os.environ.pop(var, None)  # monkeypatch restores a set one
        hf_logging.enable_progress_bar()
        enable_progress_bars()


def test_library_bars_reach_plain_tqdm_imported_afterwards() -> None:
    """transformers' GGUF conversion uses plain tqdm, which reads TQDM_DISABLE on import, as the
    pipeline's imports do after ``run`` calls ``library_bars``."""
    import subprocess
    import sys

    code = ("from and_toolkit.cli import library_bars; library_bars({}); "
            "from tqdm.auto import tqdm; print(tqdm([1], file=open('/dev/null', 'w')).disable)")
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    out = [subprocess.run([sys.executable, "-c", code.format(flag)], env=env, check=True,
                          capture_output=True, text=True).stdout.strip() for flag in (False, True)]
    assert out == ["True", "False"]


HEAVY = ("torch", "transformers", "onnxruntime", "scipy")
"""Packages that cost a second or more to import."""


def _heavy_imports_after(code: str) -> list[str]:
    """The :data:`HEAVY` modules a fresh interpreter has imported after running ``code``."""
    import subprocess
    import sys

    code += f"\nimport sys\nprint(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True, timeout=120)
    return eval(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_read_only_commands_import_no_torch(tmp_path: Path) -> None:
    """``info``, ``validate``, ``diff`` and ``index`` read runs and reports without importing
    torch, transformers, ONNX Runtime or SciPy (seconds of start-up each)."""
    run = _run(tmp_path)
    reports = tmp_path / "reports"
    reports.mkdir()
    code = ("from and_toolkit.cli import main\n"
            f"for argv in (['info', {str(run.root)!r}], ['validate', {str(run.root)!r}],\n"
            f"             ['diff', {str(run.root)!r}, {str(run.root)!r}],\n"
            f"             ['index', {str(reports)!r}]):\n"
            "    assert main(argv) == 0, argv")
    assert _heavy_imports_after(code) == []


def test_config_imports_no_torch() -> None:
    """Parsing a run config (``and-toolkit run`` refusing a bad one, the explorer reading a
    run's) imports no torch, transformers or ONNX Runtime, also when it validates targets'
    overrides (against TrainConfig) and folder options (against FolderProbeConfig)."""
    code = ("import and_toolkit.config as c\n"
            "c.parse_config({'name': 'x', 'probe': {'kind': 'synthetic'}})\n"
            "c.parse_config({'name': 'x', 'probe': {'kind': 'folder', 'folder': '/c', "
            "'labels_csv': 'l.csv', 'folder_options': {'fold_col': 'fold'}}, 'targets': ["
            "{'id': a, 'arch': a, 'overrides': {'batch_size': 8}} for a in "
            "('ast', 'cnn', 'yamnet', 'whisper-frozen')]})")
    assert _heavy_imports_after(code) == []


def test_explorer_starts_without_torch() -> None:
    """The explorer's app and server import none of :data:`HEAVY` (its spectrograms import torch
    when first drawn)."""
    assert _heavy_imports_after("import and_toolkit.explore.app, and_toolkit.explore.serve") == []


def test_library_bars_switch_off_the_hub_without_transformers() -> None:
    """``library_bars(False)`` switches off huggingface_hub's own bars when transformers is not
    imported (in the test above, transformers' switch also reaches the hub's)."""
    import subprocess
    import sys

    code = ("import sys\n"
            "import huggingface_hub.utils as hub\n"
            "from and_toolkit.cli import library_bars\n"
            "before = hub.are_progress_bars_disabled()\n"
            "library_bars(False)\n"
            "print(before, hub.are_progress_bars_disabled(), 'transformers' in sys.modules)")
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE")}
    env["PYTHONPATH"] = str(Path(__file__).parents[1])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True, timeout=120)
    assert out.stdout.split() == ["False", "True", "False"]
