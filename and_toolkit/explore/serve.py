"""Serve the explorer with uvicorn (``and-toolkit explore RUN``)."""

from __future__ import annotations

import ipaddress
import socket
import sys
from pathlib import Path

from and_toolkit.errors import DataError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def loopback_warning(host: str) -> str | None:
    """The warning printed when the server would listen beyond this machine (else None)."""
    if is_loopback(host):
        return None
    return (f"warning: serving on {host}, not a loopback address: anyone who can reach this "
            "machine can read the run and write ratings (the explorer has no login). Use "
            f"--host {DEFAULT_HOST} unless that is intended.")


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (as uvicorn binds: IPv6 when the host holds ":",
    SO_REUSEADDR), checked before the explorer announces its address.

    Raises:
        DataError: the port is out of range, in use, or the host cannot be bound, naming both.
    """
    if not 1 <= port <= 65535:
        raise DataError(f"port {port}: out of range (1-65535)")
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    sock = socket.socket(family=family, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((bare, port))
    except OSError as exc:
        sock.close()
        why = exc.strerror or str(exc)
        raise DataError(f"cannot listen on {host} port {port}: {why}"
                        + (" (choose another with --port)" if "in use" in why else "")) from None
    sock.set_inheritable(True)
    return sock


def url(host: str, port: int) -> str:
    """The explorer's address (an IPv6 host in brackets)."""
    bare = host.strip("[]")
    return f"http://[{bare}]:{port}/" if ":" in bare else f"http://{host}:{port}/"


def serve(run: str | Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Bind the port, load the run, then serve it until interrupted. The address is printed
    only once the port is bound and the run loaded.

    Raises:
        DataError: the port cannot be bound (in use, out of range), not a run, or a run
            without neurons.
    """
    import uvicorn

    from and_toolkit.explore.app import create_app

    warning = loopback_warning(host)
    if warning:
        print(warning, file=sys.stderr)
    sock = listen_socket(host, port)
    try:
        loopback_names = (["127.0.0.1", "localhost", host] if is_loopback(host)
                          and ":" not in host else None)
        app = create_app(run, allowed_hosts=loopback_names)
        print(f"explorer: {url(host, port)} (Ctrl-C stops)", file=sys.stderr)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        server.run(sockets=[sock])
    finally:
        sock.close()
