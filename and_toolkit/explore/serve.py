"""Serve the explorer with uvicorn (``and-toolkit explore RUN``)."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

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


def serve(run: str | Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
    """Load the run, then serve it until interrupted.

    Raises:
        DataError: not a run, or a run without neurons.
    """
    import uvicorn

    from and_toolkit.explore.app import create_app

    warning = loopback_warning(host)
    if warning:
        print(warning, file=sys.stderr)
    loopback_names = ["127.0.0.1", "localhost", host] if is_loopback(host) and ":" not in host \
        else None
    app = create_app(run, allowed_hosts=loopback_names)
    print(f"explorer: http://{host}:{port}/ (Ctrl-C stops)", file=sys.stderr)
    uvicorn.run(app, host=host, port=port, log_level="warning")
