"""The architecture rules of docs/architecture.md that tests can check.

The layered import contract lives in ``pyproject.toml`` (``[tool.importlinter]``) and is run here
as well as by ``nox -s lint`` and the test session; the other rules are source scans.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "and_toolkit"
ROOT = PACKAGE.parent


def test_import_contract_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlinter.cli import lint_imports

    monkeypatch.chdir(ROOT)
    assert lint_imports(no_cache=True) == 0, "run `lint-imports` to see the broken contract"


PARQUET_IO = re.compile(r"\b(read_parquet|scan_parquet|read_parquet_schema|"
                        r"read_parquet_metadata|write_parquet)\s*\(")


def test_only_the_store_touches_parquet() -> None:
    offenders = [f"{p.relative_to(ROOT)}:{i}" for p in sorted(PACKAGE.rglob("*.py"))
                 if p.name != "store.py"
                 for i, line in enumerate(p.read_text("utf-8").splitlines(), start=1)
                 if PARQUET_IO.search(line)]
    assert not offenders, f"Parquet I/O outside and_toolkit/store.py: {offenders}"


def test_neutral_modules_import_only_errors() -> None:
    for name in ("interfaces.py", "signal.py", "records/fields.py", "errors.py"):
        text = (PACKAGE / name).read_text("utf-8")
        own = set(re.findall(r"^\s*(?:from|import) (and_toolkit[\w.]*)", text, re.M))
        assert own <= {"and_toolkit.errors"}, (name, own)


def test_targets_lazy_names_match_all() -> None:
    """``and_toolkit.targets`` loads its names on first use: every name in ``__all__`` has a
    home submodule and resolves, and no home is listed that ``__all__`` leaves out."""
    import and_toolkit.targets as targets

    assert set(targets.__all__) == set(targets._HOME)
    for name in targets.__all__:
        assert getattr(targets, name) is not None
