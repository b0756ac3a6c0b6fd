"""``and-toolkit explore``: arguments, defaults and the non-loopback warning."""

from __future__ import annotations

from pathlib import Path

import pytest

from and_toolkit.cli import build_parser, main
from and_toolkit.explore.serve import is_loopback, loopback_warning


def test_explore_arguments_and_defaults() -> None:
    args = build_parser().parse_args(["explore", "runs/x"])
    assert (args.run, args.host, args.port) == ("runs/x", "127.0.0.1", 8765)
    args = build_parser().parse_args(["explore", "runs/x", "--host", "0.0.0.0", "--port", "9"])
    assert (args.host, args.port) == ("0.0.0.0", 9)


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.8.0.2", True), ("localhost", True), ("::1", True),
    ("[::1]", True), ("0.0.0.0", False), ("192.168.1.5", False), ("::", False),
    ("example.org", False)])
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    warning = loopback_warning(host)
    assert (warning is None) is loopback
    if warning:
        assert host in warning and "127.0.0.1" in warning


def test_explore_of_a_missing_run_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          ) -> None:
    assert main(["explore", str(tmp_path / "nope"), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "warning: serving on 0.0.0.0" in err and "does not exist" in err
