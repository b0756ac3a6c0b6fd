"""Fixtures of the explorer tests: the hand-made run of ``tests/explore_run.py``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from explore_run import build_run

from and_toolkit.run import Run


@pytest.fixture(scope="session")
def explore_run_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The hand-made run, built once per session (copy it before writing ratings)."""
    return build_run(tmp_path_factory.mktemp("explore") / "run").root


@pytest.fixture
def explore_run(explore_run_template: Path, tmp_path: Path) -> Run:
    """A fresh copy of the hand-made run (tests may write ratings into it)."""
    dest = tmp_path / "run"
    shutil.copytree(explore_run_template, dest)
    return Run.at(dest)
