"""The content-addressed cache: keys, hits/misses, damaged and interrupted entries."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from and_toolkit.cache import Cache, cache_key, sha256_file


def test_key_depends_on_every_part_and_not_on_order() -> None:
    a = cache_key(backend="x", prompt="p", sampling={"t": 0, "top_p": 1})
    assert a == cache_key(sampling={"top_p": 1, "t": 0}, prompt="p", backend="x")
    assert a != cache_key(backend="x", prompt="p", sampling={"t": 1, "top_p": 1})
    assert len(a) == 64


def test_sha256_file_any_chunk_size(tmp_path: Path) -> None:
    data = os.urandom(10_000)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    want = hashlib.sha256(data).hexdigest()
    assert sha256_file(path) == want == sha256_file(str(path), chunk=7)
    (tmp_path / "empty").write_bytes(b"")
    assert sha256_file(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()


def test_hits_misses_and_get_or_compute(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    calls = []

    def compute() -> bytes:
        calls.append(1)
        return b"value"

    key = cache_key(x=1)
    assert cache.get_or_compute("llm", key, compute) == b"value"
    assert cache.get_or_compute("llm", key, compute) == b"value"
    assert len(calls) == 1
    assert (cache.stats["llm"].hits, cache.stats["llm"].misses, cache.stats["llm"].writes) == (
        1, 1, 1)
    cache.put_json("emb", key, {"a": [1, 2]})
    assert Cache(tmp_path).get_json("emb", key) == {"a": [1, 2]}


def test_damaged_entry_reads_as_miss_and_is_removed(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    key = cache_key(x=2)
    cache.put_bytes("ns", key, b"0123456789" * 100)
    entry = tmp_path / "ns" / key[:2] / key
    entry.write_bytes(entry.read_bytes()[:-10])  # truncated payload
    assert cache.get_bytes("ns", key) is None
    assert cache.stats["ns"].corrupt == 1
    assert not entry.exists()


def test_disabled_cache_never_hits(tmp_path: Path) -> None:
    cache = Cache(tmp_path, enabled=False)
    cache.put_bytes("ns", cache_key(a=1), b"x")
    assert cache.get_bytes("ns", cache_key(a=1)) is None
    assert not tmp_path.joinpath("ns").exists()


KILLED_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import and_toolkit.cache as cmod
    from and_toolkit.cache import Cache
    real = cmod.atomic_write_bytes
    def stalled(path, write):
        def inner(tmp):
            write(tmp)
            print("WRITTEN", flush=True)
            time.sleep(60)
        real(path, inner)
    cmod.atomic_write_bytes = stalled
    Cache(Path(sys.argv[1])).put_bytes("ns", sys.argv[2], b"x" * 100000)
""")


def test_interrupted_entry_is_never_read_as_valid(tmp_path: Path) -> None:
    key = cache_key(killed=True)
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path), key],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "WRITTEN"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    cache = Cache(tmp_path)
    assert cache.get_bytes("ns", key) is None
    cache.put_bytes("ns", key, b"fresh")
    assert cache.get_bytes("ns", key) == b"fresh"


def test_npy_rows_reads_part_of_a_verified_array_entry(tmp_path: Path) -> None:
    import io

    import numpy as np

    from and_toolkit.cache import npy_rows

    cache = Cache(tmp_path)
    arr = np.arange(5 * 3 * 2, dtype=np.float32).reshape(5, 3, 2)
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    cache.put_bytes("features", "k" * 64, buf.getvalue())
    path = cache.verified_path("features", "k" * 64)
    assert path is not None
    np.testing.assert_array_equal(npy_rows(path, 1, 4), arr[1:4])
    assert npy_rows(path, 4, 5).flags.writeable
    with pytest.raises(ValueError, match="rows"):
        npy_rows(path, 3, 6)
    assert cache.verified_path("features", "x" * 64) is None
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1  # a damaged payload is a miss (and removed), like get_bytes
    path.write_bytes(bytes(raw))
    assert cache.verified_path("features", "k" * 64) is None and not path.exists()
