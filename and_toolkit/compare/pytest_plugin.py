"""pytest plugin of and-toolkit: the ``dissection_regression`` fixture.

Registered through the ``pytest11`` entry point ``and_toolkit.compare.pytest_plugin`` (named like
the module, so ``pytest_plugins = ["and_toolkit.compare.pytest_plugin"]`` in a conftest is
harmless), it is loaded by every pytest session of an environment where and-toolkit is
installed. It therefore imports only the standard library and pytest at import time, defines
no hooks and no options, and can only fail the tests that use its fixture::

    def test_my_dissection(dissection_regression, tmp_path):
        run = run_pipeline(cfg, run_dir=tmp_path / "run")
        dissection_regression.check(run.root)                 # or check(run, tolerance="meaning")

The first call writes a baseline beside the test, in pytest-regressions' data-directory
conventions (``<test module without .py>/<test name or basename>.yml`` + ``.npz``: labels
and concepts as YAML, numbers as NPZ; see :mod:`and_toolkit.compare.baseline`) and fails with
"File not found in data directory, created: ..."; later calls compare the run with the baseline
through :func:`and_toolkit.compare.compare.diff_snapshots` (what ``and-toolkit diff`` runs) and fail
with its text report when something changed beyond tolerance. ``pytest --force-regen``
rewrites baselines that differ (the options come from pytest-regressions).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


class DissectionRegression:
    """The ``dissection_regression`` fixture's value: call :meth:`check` with a run."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._request = request

    def _fixture(self, *names: str) -> Any:
        for name in names:
            try:
                return self._request.getfixturevalue(name)
            except pytest.FixtureLookupError:
                continue
        pytest.fail(f"dissection_regression needs pytest-regressions (fixture {names[0]!r} is "
                    "missing): pip install 'pytest-regressions>=2.5'", pytrace=False)

    def check(self, run: Any, *, basename: str | None = None, tolerance: Any = None,
              top: int = 20) -> None:
        """Compare ``run`` with the baseline of this test (write it on first use).

        Args:
            run: a run directory (str / Path) or :class:`and_toolkit.run.Run`.
            basename: baseline file name without extension (default: the test's name).
            tolerance: a preset name ('strict', 'default', 'meaning'), a TOML / JSON file, a
                :class:`and_toolkit.compare.tolerance.Tolerance`, or None (default).
            top: most-changed neurons listed in a failure message.
        """
        __tracebackhide__ = True
        try:
            from pytest_regressions.common import perform_regression_check
        except ImportError:
            pytest.fail("dissection_regression needs pytest-regressions: "
                        "pip install 'pytest-regressions>=2.5'", pytrace=False)
        try:
            self._request.config.getoption("force_regen")
        except ValueError:
            pytest.fail("dissection_regression needs the pytest-regressions plugin, which is "
                        "disabled in this session (-p no:regressions?)", pytrace=False)
        from dataclasses import replace

        from and_toolkit.compare.api import snapshot_of
        from and_toolkit.compare.baseline import npz_path, read_baseline, write_baseline
        from and_toolkit.compare.compare import diff_snapshots
        from and_toolkit.compare.render import render_text
        from and_toolkit.compare.tolerance import load_tolerance
        from and_toolkit.errors import AndToolkitError

        tol = load_tolerance(tolerance)
        snapshot = snapshot_of(run)
        datadir = self._fixture("lazy_datadir", "datadir")
        original: Path = self._fixture("original_datadir")

        def dump(path: Path) -> None:
            write_baseline(snapshot, path)

        def aux(path: Path) -> list[str]:
            return [str(npz_path(path))]

        def compare(obtained: Path, expected: Path) -> None:
            __tracebackhide__ = True
            expected_npz = datadir / npz_path(expected).name  # copies it beside `expected`
            try:
                stored = read_baseline(expected, expected_npz)
            except AndToolkitError as exc:  # e.g. an old format: --force-regen rewrites it
                raise AssertionError(str(exc)) from None
            base = replace(stored, label=f"baseline {original / Path(expected).name}")
            now = replace(read_baseline(obtained), label=f"this run {snapshot.label}")
            report = diff_snapshots(base, now, tol)
            if report.changed:
                raise AssertionError(
                    "the dissection changed beyond tolerance; if intended, update the baseline "
                    "with pytest --force-regen\n" + render_text(report, top))

        perform_regression_check(
            datadir=datadir, original_datadir=original, request=self._request,
            check_fn=compare, dump_fn=dump, dump_aux_fn=aux, extension=".yml",
            basename=basename)


@pytest.fixture
def dissection_regression(request: pytest.FixtureRequest) -> DissectionRegression:
    """Compare a dissection run with a baseline stored beside the test (see module doc)."""
    return DissectionRegression(request)
