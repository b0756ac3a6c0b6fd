"""``nox -s reproduce`` regenerates the committed reports: every ``and-toolkit run`` it makes
publishes to the checkout's ``reports/`` (``and-toolkit run`` alone writes inside the run only).

The session runs against a recording stand-in for nox's session: nothing is installed or run.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


class FakeSession:
    """Records ``session.run`` calls; ``create_tmp`` is a temporary folder."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.runs: list[tuple[str, ...]] = []
        self.posargs: list[str] = []

    def install(self, *args: Any, **kwargs: Any) -> None:
        pass

    def log(self, *args: Any, **kwargs: Any) -> None:
        pass

    def create_tmp(self) -> str:
        return str(self.tmp)

    def run(self, *args: str, **kwargs: Any) -> None:
        self.runs.append(args)


def test_reproduce_publishes_every_run_to_the_checkouts_reports(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("nox")
    data = tmp_path / "data"
    (data / "esc50" / "meta").mkdir(parents=True)
    (data / "esc50" / "meta" / "esc50.csv").write_text("filename\n")
    monkeypatch.setenv("AND_DATA_DIR", str(data))
    spec = importlib.util.spec_from_file_location("noxfile_under_test", ROOT / "noxfile.py")
    assert spec is not None and spec.loader is not None
    noxfile = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(noxfile)
    session = FakeSession(tmp_path / "nox-tmp")
    noxfile.reproduce(session)
    runs = [args for args in session.runs if args[:2] == ("and-toolkit", "run")]
    assert [args[2] for args in runs] == ["configs/demo.toml", "configs/esc50.toml"]
    for args in runs:
        assert args[args.index("--publish") + 1] == str(ROOT / "reports"), args
