"""and-toolkit: Audio Network Dissection (AND) as typed, persisted, testable transforms."""

from and_toolkit.neurons import neurons
from and_toolkit.store import read_records, scan_records, write_records

__version__ = "0.1.0"
__all__ = ["__version__", "neurons", "read_records", "scan_records", "write_records"]
