"""Publishing is explicit: ``and-toolkit run`` writes the report inside the run only, and
``--publish DIR`` copies it to ``DIR/<name>/`` and rewrites ``DIR/index.html``.

Runs a two-stage config (synthetic probe, report: no training) through the command line, in a
temporary working directory that holds a ``reports/`` folder like the repository's.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from and_toolkit.cli import main
from and_toolkit.errors import DataError
from and_toolkit.report.publish import publish_report, report_summary_path
from and_toolkit.run import Run

CONFIG = """name = "tiny-pub"
stages = ["probe", "report"]
[probe]
kind = "synthetic"
per_class = 2
"""


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with a config and committed-looking reports (one of the same name)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AND_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "tiny.toml").write_text(CONFIG)
    committed = tmp_path / "reports" / "tiny-pub"
    (committed / "data").mkdir(parents=True)
    (committed / "index.html").write_text("<html>committed</html>")
    (committed / "summary.json").write_text('{"name": "tiny-pub", "summary": "old", '
                                            '"models": []}\n')
    (committed / "data" / "table2.parquet").write_bytes(b"committed frame")
    (tmp_path / "reports" / "index.html").write_text("<html>committed index</html>")
    return tmp_path


def test_run_without_publish_leaves_reports_untouched(cwd: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    before = _snapshot(cwd / "reports")
    assert main(["run", "tiny.toml", "--run-dir", str(cwd / "x"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert _snapshot(cwd / "reports") == before
    assert f"report: {cwd / 'x' / 'report' / 'index.html'}" in out
    assert "published" not in out
    run = Run.at(cwd / "x")
    assert run.report_path.is_file()
    assert json.loads(report_summary_path(run).read_text())["name"] == "tiny-pub"


def test_publish_writes_the_report_and_the_index(cwd: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "tiny.toml", "--run-dir", "x", "--no-progress",
                 "--publish", "reports"]) == 0
    out = capsys.readouterr().out
    page = cwd / "reports" / "tiny-pub" / "index.html"
    assert f"published: {Path('reports') / 'tiny-pub' / 'index.html'}" in out
    assert page.read_bytes() == Run.at(cwd / "x").report_path.read_bytes()
    summary = json.loads((page.parent / "summary.json").read_text())
    assert summary["name"] == "tiny-pub" and summary["summary"] != "old"
    # the run has no result frames: the committed one is removed, as a result the run lacks
    assert not (page.parent / "data" / "table2.parquet").exists()
    index = (cwd / "reports" / "index.html").read_text()
    assert 'href="tiny-pub/index.html"' in index and summary["summary"] in index
    # a second run is up to date and publishes the same bytes to another folder
    assert main(["run", "tiny.toml", "--run-dir", "x", "--no-progress",
                 "--publish", str(cwd / "elsewhere")]) == 0
    assert "[report] up to date" in capsys.readouterr().out
    assert (cwd / "elsewhere" / "tiny-pub" / "index.html").read_bytes() == page.read_bytes()


def test_publish_refuses_before_any_work(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _snapshot(cwd / "reports")
    assert main(["run", "tiny.toml", "--run-dir", "x", "--stage", "probe",
                 "--publish", "reports"]) == 2
    assert "add --stage report" in capsys.readouterr().err
    (cwd / "no-report.toml").write_text(CONFIG.replace('"probe", "report"', '"probe"'))
    assert main(["run", "no-report.toml", "--run-dir", "x", "--publish", "reports"]) == 2
    assert "leave out 'report'" in capsys.readouterr().err
    assert not (cwd / "x").exists() and _snapshot(cwd / "reports") == before
    (cwd / "a-file").write_text("")
    assert main(["run", "tiny.toml", "--run-dir", "x", "--no-progress",
                 "--publish", "a-file"]) == 2
    assert "a-file: cannot publish there: not a directory" in capsys.readouterr().err


def test_publish_report_refuses_runs_without_a_rendered_report(tmp_path: Path) -> None:
    run = Run.at(tmp_path / "run")
    with pytest.raises(DataError, match="no rendered report to publish"):
        publish_report(run, tmp_path / "reports")
    run.report_path.parent.mkdir(parents=True)
    run.report_path.write_text("<html></html>")
    report_summary_path(run).write_text('{"name": "../escape", "summary": "", "models": []}')
    with pytest.raises(DataError, match="field 'name' = '../escape' cannot name"):
        publish_report(run, tmp_path / "reports")
    assert not (tmp_path / "reports").exists() and not (tmp_path / "escape").exists()


def test_publish_refuses_a_stale_report(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "tiny.toml", "--run-dir", "x", "--no-progress"]) == 0
    manifest = json.loads((cwd / "x" / "manifest.json").read_text())
    manifest["stages"]["report"]["fingerprint"] = "0" * 16
    (cwd / "x" / "manifest.json").write_text(json.dumps(manifest))
    from and_toolkit.config import load_config
    from and_toolkit.pipeline import publish_run

    with pytest.raises(DataError, match="report is stale"):
        publish_run(load_config(cwd / "tiny.toml"), Run.at(cwd / "x"), cwd / "reports")


def test_publish_a_run_whose_probe_is_a_folder(cwd: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """The report's fingerprint covers the stamps of the folder's files: publishing checks it
    with the same stamps the run used, so a current report of a folder probe is published."""
    import numpy as np
    import soundfile as sf

    clips = cwd / "clips"
    clips.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        sf.write(clips / f"c{i}.wav", rng.normal(0, 0.1, 16000).astype(np.float32), 16000)
    (cwd / "folder.toml").write_text(f'name = "tiny-folder"\nstages = ["probe", "report"]\n'
                                     f'[probe]\nkind = "folder"\nfolder = "{clips}"\n')
    assert main(["run", "folder.toml", "--run-dir", "f", "--no-progress",
                 "--publish", "reports"]) == 0
    assert "published" in capsys.readouterr().out
    assert (cwd / "reports" / "tiny-folder" / "index.html").is_file()
