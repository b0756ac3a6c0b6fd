"""A stage marked done is done only while its files exist; stale extra-K files are removed and
refused; unknown stage names are errors. Runs of a tiny factory model on a folder of clips,
through the command line."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from and_toolkit.cli import main
from and_toolkit.config import load_config, parse_config
from and_toolkit.errors import DataError
from and_toolkit.pipeline import run_pipeline
from and_toolkit.run import Run
from and_toolkit.validation import validate_path
from tests.tone_clips import write_tones

STAGES = ["probe", "targets", "record", "extremes", "captions", "summaries", "calibrate"]


def _config(root: Path, folder: Path, extra_k: list[int]) -> Path:
    path = root / f"cfg{len(extra_k)}.toml"
    path.write_text(f"""
name = "outputs"
stages = {STAGES!r}
[probe]
kind = "folder"
folder = "{folder}"
[[targets]]
id = "m"
factory = "tests.external.factories:cnn"
[record]
k = 2
extra_k = {extra_k!r}
batch_size = 4
[captions]
source = "file"
file = "{folder / 'captions.csv'}"
captioner_id = "imported"
[calibrate]
encoder = "hashing"
""")
    return path


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(config, run) of a finished run with extra_k = [3, 4]."""
    root = tmp_path_factory.mktemp("outputs")
    folder = root / "clips"
    folder.mkdir()
    rows, caps = write_tones(folder, 6, ("dog", "rain", "bell"), rate=8000, base_s=0.5,
                             step_s=0.1, f0=200, df=150, caption="a {label} sound number {i}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    (folder / "captions.csv").write_text("\n".join(caps) + "\n")
    cfg = _config(root, folder, [3, 4])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AND_CACHE_DIR", str(root / "cache"))
        assert main(["run", str(cfg), "--run-dir", str(root / "run"), "--no-progress"]) == 0
    return cfg, root / "run"


@pytest.fixture
def run_copy(made: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AND_CACHE_DIR", str(made[1].parent / "cache"))
    return Path(shutil.copytree(made[1], tmp_path / "run"))


def test_missing_record_file_fails_validate_and_reruns_its_stage(
        made: tuple[Path, Path], run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, _ = made
    assert validate_path(run_copy) == []
    (run_copy / "calibrated.parquet").unlink()
    capsys.readouterr()
    assert main(["validate", str(run_copy)]) == 1
    err = capsys.readouterr().err
    assert (f"ERROR {run_copy / 'calibrated.parquet'}: missing; the manifest marks stage "
            "'calibrate' done") in err
    assert main(["run", str(cfg), "--run-dir", str(run_copy), "--stage", "calibrate",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "[calibrate] running (outputs missing: calibrated.parquet)" in out
    assert validate_path(run_copy) == []


def test_missing_activation_file_reruns_record_and_what_follows(
        made: tuple[Path, Path], run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, _ = made
    gone = Run.at(run_copy).activation_files("m")[0]
    gone.unlink()
    problems = validate_path(run_copy)
    assert problems == [f"{gone}: missing; the manifest marks stage 'record' done and it writes "
                        "this file (re-run the stage)"]
    capsys.readouterr()
    assert main(["run", str(cfg), "--run-dir", str(run_copy), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"[record] running (outputs missing: {gone.relative_to(run_copy)})" in out
    assert "[probe] up to date" in out and "[targets] up to date" in out
    assert "[calibrate] running (after [record] re-ran)" in out
    assert gone.is_file() and validate_path(run_copy) == []


def test_dropped_extra_k_file_is_removed_and_refused(
        made: tuple[Path, Path], run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, run_dir = made
    fewer = _config(cfg.parent, Path(load_config(cfg).probe.folder or ""), [3])
    capsys.readouterr()
    assert main(["run", str(fewer), "--run-dir", str(run_copy), "--no-progress"]) == 0
    assert "[extremes] running (configuration changed" in capsys.readouterr().out
    run = Run.at(run_copy)
    assert run.extremes_ks() == [3] and run.extremes(3).height
    assert run.stage_info("extremes")["removed"] == ["extremes_k4.parquet"]
    assert validate_path(run_copy) == []
    # a stale file (e.g. from a run made before files were removed) is refused and reported
    shutil.copyfile(run_dir / "extremes_k4.parquet", run_copy / "extremes_k4.parquet")
    with pytest.raises(DataError, match=r"extremes_k4.parquet: K = 4 is not in stages.extremes"):
        run.extremes(4)
    assert validate_path(run_copy) == [
        f"{run_copy / 'extremes_k4.parquet'}: Extremes of K = 4, which stages.extremes.extra_k "
        f"[3] in {run_copy / 'manifest.json'} does not list (left by an earlier configuration)"]


def test_config_run_reruns_when_a_clip_is_rewritten(
        made: tuple[Path, Path], run_copy: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    cfg, _ = made
    folder = Path(shutil.copytree(Path(load_config(cfg).probe.folder or ""), tmp_path / "clips"))
    moved = _config(tmp_path, folder, [3, 4])
    capsys.readouterr()
    assert main(["run", str(moved), "--run-dir", str(run_copy), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"[probe] running (inputs changed: probe.folder: {cfg.parent / 'clips'} -> " \
        f"{folder}; probe.labels_csv: " in out  # the same clips elsewhere: read again
    assert main(["run", str(moved), "--run-dir", str(run_copy), "--no-progress"]) == 0
    assert "running" not in capsys.readouterr().out
    run = Run.at(run_copy)
    model, layer = run.activation_layers()[0]
    before = run.activation_matrix(model, layer).values
    wave, rate = sf.read(folder / "c0.wav", dtype="float32")
    sf.write(folder / "c0.wav", wave[::-1].copy(), rate)  # same size, other audio
    assert main(["run", str(moved), "--run-dir", str(run_copy), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert (f"[probe] running (inputs changed: probe.folder: files changed under {folder} "
            "(size or modification time))") in out
    assert "[record] running (after [probe] re-ran)" in out
    after = run.activation_matrix(model, layer).values
    assert not np.array_equal(after[0], before[0]) and np.array_equal(after[1:], before[1:])


def test_unknown_stage_is_refused_before_anything_is_written(
        made: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, _ = made
    with pytest.raises(SystemExit) as exc:
        main(["run", str(cfg), "--run-dir", str(tmp_path / "r"), "--stage", "bogus"])
    assert exc.value.code == 2
    assert "invalid choice: 'bogus'" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"unknown stage\(s\) \['bogus'\]: the stages are probe"):
        run_pipeline(parse_config({"name": "x"}), run_dir=tmp_path / "r", only=["bogus"])
    assert not (tmp_path / "r").exists()


def test_a_stage_that_writes_nothing_is_not_marked_done(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import and_toolkit.pipeline.data_stages as data_stages

    monkeypatch.setattr(data_stages, "stage_probe", lambda ctx: {"clips": 0})
    with pytest.raises(RuntimeError, match=r"\[probe\] finished without writing .*probe.parquet"):
        run_pipeline(parse_config({"name": "x", "stages": ["probe"]}), run_dir=tmp_path / "r",
                     progress=False)
    assert "probe" not in Run.at(tmp_path / "r").manifest().get("stages", {})
