"""Versions of the installed packages that determine a run's results (the manifest's
``versions``)."""

from __future__ import annotations

import platform
from importlib import metadata

__all__ = ["TRACKED_PACKAGES", "package_versions"]

TRACKED_PACKAGES = (
    "and-toolkit", "torch", "numpy", "polars", "pydantic", "transformers",
    "sentence-transformers", "spacy", "scikit-learn", "scipy", "matplotlib", "jinja2",
)


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that determine results (missing ones omitted)."""
    out = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
