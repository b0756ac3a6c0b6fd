"""Shared fixtures: sample records, an isolated cache, and the offline environment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Tests check behaviour, not this machine's bf16 speed: "auto" training precision is fp32 here
# (tests of the probe itself clear it). nox sets the same.
os.environ.setdefault("AND_TRAIN_PRECISION", "fp32")


@pytest.fixture(autouse=True)
def _bar_switches_restored() -> Iterator[None]:
    """``and-toolkit run`` without a terminal (``cli.library_bars``) sets TQDM_DISABLE and
    HF_HUB_DISABLE_PROGRESS_BARS for its process; a test that calls ``main(["run", ...])`` must
    not leave them to later tests (huggingface_hub reads its variable once, when imported)."""
    names = ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS")
    before = {name: os.environ.get(name) for name in names}
    yield
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def tmp_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache directory, set as $AND_CACHE_DIR."""
    root = tmp_path / "cache"
    monkeypatch.setenv("AND_CACHE_DIR", str(root))
    return root


def data_dir() -> Path | None:
    """$AND_DATA_DIR if it holds esc50/, else None."""
    env = os.environ.get("AND_DATA_DIR")
    if env and (Path(env) / "esc50" / "meta" / "esc50.csv").is_file():
        return Path(env)
    return None


needs_esc50 = pytest.mark.skipif(
    data_dir() is None, reason="needs $AND_DATA_DIR/esc50 (set AND_DATA_DIR=../shared/data)"
)
