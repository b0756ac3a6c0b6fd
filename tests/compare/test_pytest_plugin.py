"""The ``dissection_regression`` fixture (``and_toolkit.compare.pytest_plugin``) in inner pytest
sessions: baseline written on first use, passing on the second, failing on a planted change."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from compare import plants

pytest_plugins = ["pytester"]
PLUGIN = "and_toolkit.compare.pytest_plugin"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("diff-plugin")
    return plants.build_run(base / "run", base / "cache")


def test_plugin_module_imports_nothing_heavy() -> None:
    code = ("import sys, and_toolkit.compare.pytest_plugin as p; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('polars', 'torch', 'numpy', 'pydantic', 'yaml', 'pytest_regressions') "
            "or m in ('and_toolkit.run', 'and_toolkit.store', 'and_toolkit.compare.api')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_plugin_is_registered_as_a_pytest11_entry_point() -> None:
    eps = {ep.name: ep.value for ep in metadata.entry_points(group="pytest11")}
    assert eps.get(PLUGIN) == PLUGIN, (
        "the installed metadata predates the entry point: pip install -e . (or nox) again")


def test_baseline_lifecycle(pytester: pytest.Pytester, tiny_run: Path) -> None:
    run = plants.copy_run(tiny_run, pytester.path / "run")
    pytester.makepyfile(test_dissect=f"""
        def test_run(dissection_regression):
            dissection_regression.check({str(run)!r})

        def test_named(dissection_regression):
            dissection_regression.check({str(run)!r}, basename="named", tolerance="meaning")
        """)
    data = pytester.path / "test_dissect"

    first = pytester.runpytest("-p", PLUGIN)
    first.assert_outcomes(failed=2)
    first.stdout.fnmatch_lines(["*File not found in data directory, created:*",
                                f"*{data / 'test_run.yml'}*", "*Auxiliary:*",
                                f"*{data / 'test_run.npz'}*"])
    assert {p.name for p in data.iterdir()} == {"test_run.yml", "test_run.npz", "named.yml",
                                                "named.npz"}
    assert "closed:" in (data / "test_run.yml").read_text("utf-8")

    pytester.runpytest("-p", PLUGIN).assert_outcomes(passed=2)

    planted = plants.swap_top1(run)
    third = pytester.runpytest("-p", PLUGIN)
    third.assert_outcomes(failed=2)  # a top-1 change is a change of meaning too
    out = third.stdout.str()
    assert "the dissection changed beyond tolerance" in out and "--force-regen" in out
    assert plants.neuron_text(planted) in out
    assert f"closed_top1 DB/cos: {planted['before']}" in out
    assert f"-> {planted['after']}" in out

    regen = pytester.runpytest("-p", PLUGIN, "--force-regen")
    regen.assert_outcomes(failed=2)
    regen.stdout.fnmatch_lines(["*Files differ and --force-regen set, regenerating file at:*"])
    pytester.runpytest("-p", PLUGIN).assert_outcomes(passed=2)


def test_scores_below_tolerance_pass_and_scores_above_fail(pytester: pytest.Pytester,
                                                           tiny_run: Path) -> None:
    run = plants.copy_run(tiny_run, pytester.path / "run")
    pytester.makepyfile(test_scores=f"""
        def test_scores(dissection_regression):
            dissection_regression.check({str(run)!r})
        """)
    pytester.runpytest("-p", PLUGIN).assert_outcomes(failed=1)
    plants.perturb(run, 1e-6)
    pytester.runpytest("-p", PLUGIN).assert_outcomes(passed=1)
    plants.perturb(run, 1e-2)
    result = pytester.runpytest("-p", PLUGIN)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*closed_score*", "*Result changes*"])


def test_the_plugin_never_breaks_a_session(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_other="""
        def test_plain():
            assert True

        def test_uses_it_without_regressions(dissection_regression):
            dissection_regression.check("somewhere")
        """)
    result = pytester.runpytest("-p", PLUGIN, "-p", "no:regressions")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*needs the pytest-regressions plugin*"])
    missing = pytester.runpytest("-p", PLUGIN, "-k", "uses_it")
    missing.assert_outcomes(failed=1)
    missing.stdout.fnmatch_lines(["*no such run directory*"])
