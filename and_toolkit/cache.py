"""A content-addressed cache for expensive deterministic work.

An entry's key is the sha256 of a canonical JSON of *everything* that determines the value
(backend id, weights hash, prompt, sampling, schema version, ...), so a changed input can never
reuse a stale entry. Entries are written atomically (temp file + rename) and carry a sha256 of
their payload that is checked on every read: a write killed half-way leaves only a temp file,
and a damaged entry reads as a miss (and is removed). Readers never lock: rename is atomic.

Layout: ``<root>/<namespace>/<key[:2]>/<key>`` (+ ``.tmp`` files while writing).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from and_toolkit.atomic import atomic_write_bytes

_MAGIC = b"ANDC1"
_HEADER_LEN = len(_MAGIC) + 64
"""Bytes before the newline that ends an entry's header: the magic and the payload's sha256 (hex)."""


def default_cache_dir() -> Path:
    """``$AND_CACHE_DIR`` or ``~/.cache/and-toolkit``."""
    env = os.environ.get("AND_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "and-toolkit"


def array_bytes(arr: np.ndarray) -> bytes:
    """``np.save`` bytes of an array (for the cache)."""
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def bytes_array(raw: bytes) -> np.ndarray:
    """Inverse of :func:`array_bytes` (no pickles)."""
    return np.load(io.BytesIO(raw), allow_pickle=False)


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """sha256 hex digest of a file's bytes, read in chunks.

    Args:
        path: the file.
        chunk: bytes read per step (4 MiB; does not change the digest).

    Returns:
        64 lower-case hex characters.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def cache_key(**parts: Any) -> str:
    """sha256 hex of the canonical JSON of ``parts`` (sorted keys, no whitespace)."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass
class CacheStats:
    """Hit / miss counters of one namespace (or of the whole cache)."""

    hits: int = 0
    misses: int = 0
    writes: int = 0
    corrupt: int = 0


def _header_digest(head: bytes) -> str | None:
    """The payload sha256 (hex) an entry's header records, from its first
    :data:`_HEADER_LEN` bytes or more; None when they are not a header."""
    if not head.startswith(_MAGIC) or len(head) < _HEADER_LEN:
        return None
    return head[len(_MAGIC):_HEADER_LEN].decode("ascii", "replace")


@dataclass
class Cache:
    """Content-addressed byte cache under ``root``.

    Args:
        root: cache directory (created on first write).
        enabled: when False every lookup misses and nothing is written.
    """

    root: Path = field(default_factory=default_cache_dir)
    enabled: bool = True
    stats: dict[str, CacheStats] = field(default_factory=dict)
    _verified: set[tuple[Any, ...]] = field(default_factory=set, repr=False, compare=False)

    def _path(self, namespace: str, key: str) -> Path:
        if not namespace or "/" in namespace or namespace.startswith("."):
            raise ValueError(f"invalid cache namespace {namespace!r}")
        return self.root / namespace / key[:2] / key

    def _stat(self, namespace: str) -> CacheStats:
        return self.stats.setdefault(namespace, CacheStats())

    def get_bytes(self, namespace: str, key: str) -> bytes | None:
        """The payload stored under ``key``, or None (miss, disabled, or damaged entry)."""
        stat = self._stat(namespace)
        path = self._path(namespace, key)
        if not self.enabled or not path.is_file():
            stat.misses += 1
            return None
        blob = path.read_bytes()
        digest = _header_digest(blob)
        payload = blob[_HEADER_LEN + 1:]
        if digest is None or hashlib.sha256(payload).hexdigest() != digest:
            stat.corrupt += 1
            stat.misses += 1
            path.unlink(missing_ok=True)
            return None
        stat.hits += 1
        return payload

    def payload_digest(self, namespace: str, key: str) -> str | None:
        """The sha256 an entry's header records for its payload (the header only is read; the
        payload is not checked), or None when there is no such entry or the cache is
        disabled."""
        path = self._path(namespace, key)
        if not self.enabled or not path.is_file():
            return None
        with open(path, "rb") as fh:
            return _header_digest(fh.read(_HEADER_LEN))

    def verified_path(self, namespace: str, key: str, chunk: int = 1 << 22) -> Path | None:
        """The file of an entry whose payload matches its recorded sha256, checked by
        streaming (memory: one ``chunk``), or None (miss, disabled; a damaged entry is
        removed, as :meth:`get_bytes` does). For readers of part of a large payload
        (:func:`npy_rows`)."""
        stat = self._stat(namespace)
        digest = self.payload_digest(namespace, key)
        path = self._path(namespace, key)
        if digest is None:
            stat.misses += 1
            return None
        st = path.stat()
        seen = (namespace, key, digest, st.st_mtime_ns, st.st_size)
        if seen in self._verified:  # this file, unchanged since this object checked it
            stat.hits += 1
            return path
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            fh.seek(_HEADER_LEN + 1)
            while block := fh.read(chunk):
                h.update(block)
        if h.hexdigest() != digest:
            stat.corrupt += 1
            stat.misses += 1
            path.unlink(missing_ok=True)
            return None
        stat.hits += 1
        self._verified.add(seen)
        return path

    def put_bytes(self, namespace: str, key: str, payload: bytes) -> None:
        """Store ``payload`` under ``key`` atomically (last writer wins; values are equal)."""
        if not self.enabled:
            return
        digest = hashlib.sha256(payload).hexdigest().encode("ascii")
        blob = _MAGIC + digest + b"\n" + payload
        atomic_write_bytes(self._path(namespace, key), lambda tmp: tmp.write_bytes(blob))
        self._stat(namespace).writes += 1

    def get_json(self, namespace: str, key: str) -> Any | None:
        """A JSON value stored under ``key``, or None."""
        raw = self.get_bytes(namespace, key)
        return None if raw is None else json.loads(raw.decode("utf-8"))

    def put_json(self, namespace: str, key: str, value: Any) -> None:
        """Store a JSON-serialisable value."""
        self.put_bytes(namespace, key, json.dumps(value, sort_keys=True).encode("utf-8"))

    def get_or_compute(self, namespace: str, key: str, compute: Callable[[], bytes]) -> bytes:
        """Return the cached payload, or compute, store and return it."""
        cached = self.get_bytes(namespace, key)
        if cached is not None:
            return cached
        value = compute()
        self.put_bytes(namespace, key, value)
        return value

    def total(self) -> CacheStats:
        """Counters summed over namespaces."""
        out = CacheStats()
        for s in self.stats.values():
            out.hits += s.hits
            out.misses += s.misses
            out.writes += s.writes
            out.corrupt += s.corrupt
        return out


def npy_rows(entry: str | Path, start: int, stop: int) -> np.ndarray:
    """Rows ``[start, stop)`` of an array stored with ``np.save`` as a cache entry's payload
    (:meth:`Cache.verified_path`), read without loading the rest: a writable array, equal to
    ``np.load(payload)[start:stop]``.

    Raises:
        ValueError: the entry is not a C-ordered ``.npy`` payload, or the rows are out of range.
    """
    with open(entry, "rb") as fh:
        if not fh.read(len(_MAGIC)) == _MAGIC:
            raise ValueError(f"{entry}: not a cache entry")
        fh.seek(_HEADER_LEN + 1)
        version = np.lib.format.read_magic(fh)
        shape, fortran, dtype = (np.lib.format.read_array_header_1_0(fh) if version == (1, 0)
                                 else np.lib.format.read_array_header_2_0(fh))
        if fortran or dtype.hasobject or not shape or not 0 <= start <= stop <= shape[0]:
            raise ValueError(f"{entry}: rows [{start}, {stop}) of a {'F' if fortran else 'C'}"
                             f"-ordered {dtype} array of shape {shape}")
        row = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        fh.seek(start * row, 1)
        data = fh.read((stop - start) * row)
    return np.frombuffer(data, dtype=dtype).reshape((stop - start, *shape[1:])).copy()

