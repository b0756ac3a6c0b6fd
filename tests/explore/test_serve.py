"""``and-toolkit explore``: arguments, defaults, the non-loopback warning and start-up errors
(port out of range or in use: exit 2, before the address is announced)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from and_toolkit.cli import build_parser, main
from and_toolkit.errors import DataError
from and_toolkit.explore.serve import is_loopback, loopback_warning
from and_toolkit.run import Run


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_explore_of_a_missing_run_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          ) -> None:
    assert main(["explore", str(tmp_path / "nope"), "--host", "0.0.0.0",
                 "--port", str(_free_port())]) == 2
    err = capsys.readouterr().err
    assert "warning: serving on 0.0.0.0" in err and "does not exist" in err
    assert "explorer: http" not in err


@pytest.mark.parametrize("port", ["99999", "0", "-1", "http"])
def test_a_port_out_of_range_is_an_argument_error(port: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["explore", "runs/x", "--port", port])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--port" in err and port in err and "Traceback" not in err
    from and_toolkit.explore.serve import listen_socket

    with pytest.raises(DataError, match="port 99999: out of range"):
        listen_socket("127.0.0.1", 99999)


def test_a_port_in_use_exits_2_before_the_address_is_announced(
        explore_run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["explore", str(explore_run.root), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1 port {port}: Address already in use" in err
    assert "--port" in err and "explorer: http" not in err and len(err.splitlines()) == 1


def test_the_address_is_announced_once_bound(explore_run: Run, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    import uvicorn

    port = _free_port()
    served: list[socket.socket] = []

    def run(self: uvicorn.Server, sockets: list[socket.socket]) -> None:
        served.extend(sockets)
        assert f"explorer: http://127.0.0.1:{port}/" in capsys.readouterr().err
        assert sockets[0].getsockname() == ("127.0.0.1", port)

    monkeypatch.setattr(uvicorn.Server, "run", run)
    assert main(["explore", str(explore_run.root), "--port", str(port)]) == 0
    assert len(served) == 1 and served[0].fileno() == -1  # closed after serving
