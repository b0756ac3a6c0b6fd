"""Pipeline test fixtures: one local Ray cluster for the session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """One local 2-CPU Ray cluster for the session (skips when Ray is not importable)."""
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install "
                              "'and-toolkit[ray]'; CI installs it)")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()
