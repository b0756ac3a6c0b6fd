"""A fast GGUF reader: metadata parsed once with ``struct``, tensors as views of one memory map.

``gguf.GGUFReader`` builds a numpy view for every component of every metadata value (SmolLM2's
tokenizer has ~49k token strings and ~49k merges: millions of memory-map slices, seconds per
parse). Here the file is memory-mapped once and each value is decoded straight to Python
(strings with ``bytes.decode``, numeric arrays with one ``numpy.frombuffer``), giving the values
``gguf.GGUFReader`` + transformers' ``_gguf_parse_value`` give, in a fraction of the time.

Format (GGUF v2 and v3, little-endian; https://github.com/ggml-org/ggml/blob/master/docs/gguf.md):
``b"GGUF"``, version (u32), tensor count (u64), key/value count (u64); the key/value pairs (key:
string, value type: u32, value); the tensor infos (name: string, n_dims: u32, dims: u64[n_dims]
fastest-moving first, ggml type: u32, offset: u64 from the data section); padding to
``general.alignment`` (u32, default 32); the tensor data. A string is a u64 byte length and UTF-8
bytes; an array is an element type (u32), a count (u64) and the elements.

Anything else (big-endian or v1 files, arrays of arrays, unknown value or tensor types,
truncated data) raises :class:`GGUFFormatError` naming the file and the field.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from and_toolkit.errors import AndToolkitError

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
STRING, ARRAY = 8, 9
SCALAR_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
                  10: "<Q", 11: "<q", 12: "<d"}
"""struct format of each fixed-size value type (u8, i8, u16, i16, u32, i32, f32, bool, u64, i64,
f64); 8 (string) and 9 (array) have variable size."""
ARRAY_DTYPES = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "?",
                10: "<u8", 11: "<i8", 12: "<f8"}
"""numpy dtype of each fixed-size type, for arrays decoded in one ``frombuffer``."""
PLAIN_TENSOR_DTYPES = {0: np.float32, 1: np.float16, 24: np.int8, 25: np.int16, 26: np.int32,
                       27: np.int64, 28: np.float64}
"""ggml types stored as plain values (F32, F16, I8, I16, I32, I64, F64); every other type is
blocks of bytes, sized by ``gguf.GGML_QUANT_SIZES``."""
_U32, _U64 = struct.Struct("<I"), struct.Struct("<Q")


class GGUFFormatError(AndToolkitError, ValueError):
    """A GGUF file is malformed or uses a feature the fast reader does not support.

    Attributes:
        path: the file.
        field: the metadata key, tensor name or header field at fault.
    """

    def __init__(self, path: Path | str, field: str, problem: str) -> None:
        self.path = str(path)
        self.field = field
        super().__init__(f"{path}: GGUF field {field!r}: {problem}")


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of the file.

    Attributes:
        name: GGUF tensor name (e.g. ``"blk.0.attn_q.weight"``).
        ggml_type: ggml type id (0: F32, 3: Q4_1, 8: Q8_0, ...).
        dims: sizes as the file lists them, fastest-moving first (numpy shape reversed).
        data: the stored bytes as ``gguf.GGUFReader`` exposes them: plain types as their dtype,
            shape ``dims[::-1]``; block types as ``uint8`` of shape ``(*dims[:0:-1],
            bytes per row)``. A read-only view of the file's memory map.
    """

    name: str
    ggml_type: int
    dims: tuple[int, ...]
    data: np.ndarray


@dataclass
class GGUFContents:
    """A parsed GGUF file.

    Attributes:
        path: the file.
        version: GGUF version (2 or 3).
        values: metadata key -> its values as a list, in file order: one element for a scalar
            or a string, the elements for an array (ints, floats, bools as Python objects of
            the declared type's value; strings decoded as UTF-8).
        types: metadata key -> value type ids: ``(t,)`` for a scalar or string, ``(9, t)`` for
            an array of ``t`` (empty or not).
        tensors: tensor infos in file order.
        alignment: data alignment in bytes.
        data_offset: byte offset of the tensor data section.
    """

    path: Path
    version: int
    values: dict[str, list[Any]] = field(default_factory=dict)
    types: dict[str, tuple[int, ...]] = field(default_factory=dict)
    tensors: list[TensorInfo] = field(default_factory=list)
    alignment: int = DEFAULT_ALIGNMENT
    data_offset: int = 0

    def value(self, key: str) -> Any:
        """A scalar or string value (raises naming the key if missing or an array)."""
        if key not in self.values:
            raise GGUFFormatError(self.path, key, "missing")
        if self.types[key][0] == ARRAY:
            raise GGUFFormatError(self.path, key, "is an array, expected a single value")
        return self.values[key][0]


class _Cursor:
    """Reads little-endian values from ``buf`` at ``pos``, checking bounds (errors name
    ``path`` and the field being read)."""

    def __init__(self, buf: Any, path: Path) -> None:
        self.buf, self.path, self.pos, self.size = buf, path, 0, len(buf)

    def need(self, n: int, what: str) -> None:
        if self.pos + n > self.size:
            raise GGUFFormatError(self.path, what, f"needs {n} bytes at offset {self.pos}, past "
                                  f"the end of the file ({self.size} bytes)")

    def u32(self, what: str) -> int:
        self.need(4, what)
        (v,) = _U32.unpack_from(self.buf, self.pos)
        self.pos += 4
        return int(v)

    def u64(self, what: str) -> int:
        self.need(8, what)
        (v,) = _U64.unpack_from(self.buf, self.pos)
        self.pos += 8
        return int(v)

    def string(self, what: str) -> str:
        n = self.u64(what)
        self.need(n, what)
        raw = self.buf[self.pos:self.pos + n]
        self.pos += n
        try:
            return bytes(raw).decode("utf-8")
        except UnicodeDecodeError as err:
            raise GGUFFormatError(self.path, what, f"string is not valid UTF-8 ({err})") from err

    def strings(self, count: int, what: str) -> list[str]:
        """``count`` consecutive strings (the hot loop: tokens and merges)."""
        buf, pos, size, unpack = self.buf, self.pos, self.size, _U64.unpack_from
        out: list[str] = []
        append = out.append
        try:
            for _ in range(count):
                (n,) = unpack(buf, pos)
                end = pos + 8 + n
                if end > size:
                    break
                append(buf[pos + 8:end].decode("utf-8"))
                pos = end
        except struct.error:
            pass  # the length itself runs past the end: reported below
        except UnicodeDecodeError as err:
            raise GGUFFormatError(self.path, what, f"element {len(out)} is not valid UTF-8 "
                                  f"({err})") from err
        self.pos = pos
        if len(out) < count:
            raise GGUFFormatError(self.path, what, f"element {len(out)} of {count} runs past "
                                  f"the end of the file ({size} bytes)")
        return out

    def scalar(self, vtype: int, what: str) -> Any:
        fmt = SCALAR_FORMATS[vtype]
        n = struct.calcsize(fmt)
        self.need(n, what)
        (v,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return v

    def array(self, etype: int, count: int, what: str) -> list[Any]:
        dtype = np.dtype(ARRAY_DTYPES[etype])
        self.need(count * dtype.itemsize, what)
        arr = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.pos)
        self.pos += count * dtype.itemsize
        values: list[Any] = arr.tolist()
        return values


def _read_value(cur: _Cursor, key: str) -> tuple[list[Any], tuple[int, ...]]:
    """(values, types) of the value of ``key`` at the cursor (see :class:`GGUFContents`)."""
    vtype = cur.u32(key)
    if vtype in SCALAR_FORMATS:
        return [cur.scalar(vtype, key)], (vtype,)
    if vtype == STRING:
        return [cur.string(key)], (vtype,)
    if vtype != ARRAY:
        raise GGUFFormatError(cur.path, key, f"unknown value type {vtype}")
    etype, count = cur.u32(key), cur.u64(key)
    if etype == STRING:
        values = cur.strings(count, key)
    elif etype in SCALAR_FORMATS:
        values = cur.array(etype, count, key)
    elif etype == ARRAY:
        raise GGUFFormatError(cur.path, key, "arrays of arrays are not supported")
    else:
        raise GGUFFormatError(cur.path, key, f"unknown array element type {etype}")
    return values, (ARRAY, etype)


def _read_header(cur: _Cursor) -> tuple[int, int, int]:
    """(version, tensor count, key/value count), checking magic and version."""
    cur.need(4, "magic")
    magic = bytes(cur.buf[:4])
    if magic != GGUF_MAGIC:
        raise GGUFFormatError(cur.path, "magic", f"expected {GGUF_MAGIC!r}, found {magic!r}: "
                              "not a GGUF file")
    cur.pos = 4
    version = cur.u32("version")
    if version not in SUPPORTED_VERSIONS:
        swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
        hint = " (a big-endian file?)" if swapped in SUPPORTED_VERSIONS else ""
        raise GGUFFormatError(cur.path, "version", f"version {version}{hint} is not supported "
                              f"(supported: {', '.join(map(str, SUPPORTED_VERSIONS))})")
    return version, cur.u64("tensor_count"), cur.u64("kv_count")


def _tensor_data(buf: Any, contents: GGUFContents, name: str, ggml_type: int,
                 dims: tuple[int, ...], offset: int) -> np.ndarray:
    """The tensor's bytes as ``gguf.GGUFReader`` shapes them (see :class:`TensorInfo`)."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    shape = tuple(reversed(dims))
    n_elements = int(np.prod(dims, dtype=np.int64)) if dims else 1
    if ggml_type in PLAIN_TENSOR_DTYPES:
        dtype = np.dtype(PLAIN_TENSOR_DTYPES[ggml_type])
        count, n_bytes = n_elements, n_elements * dtype.itemsize
    else:
        try:
            block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
        except (ValueError, KeyError):
            raise GGUFFormatError(contents.path, name, f"unknown ggml type {ggml_type}") from None
        if not shape or shape[-1] % block:
            raise GGUFFormatError(contents.path, name, f"row size {shape[-1:]} is not a multiple "
                                  f"of the block size {block} of ggml type {ggml_type}")
        dtype, n_bytes = np.dtype(np.uint8), n_elements // block * type_size
        count, shape = n_bytes, (*shape[:-1], shape[-1] // block * type_size)
    start = contents.data_offset + offset
    if start + n_bytes > len(buf):
        raise GGUFFormatError(contents.path, name, f"data ({n_bytes} bytes at offset {start}) "
                              f"runs past the end of the file ({len(buf)} bytes)")
    return np.frombuffer(buf, dtype=dtype, count=count, offset=start).reshape(shape)


def read_gguf(path: Path | str) -> GGUFContents:
    """Parse a GGUF file: all metadata values decoded, tensors as views of its memory map.

    Args:
        path: the ``.gguf`` file.

    Returns:
        The contents; its tensors' ``data`` keep the (read-only) memory map open.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        GGUFFormatError: naming the file and field, on a malformed or unsupported file.
    """
    path = Path(path)
    with path.open("rb") as f:
        if path.stat().st_size < 24:
            raise GGUFFormatError(path, "magic", "file too short to be GGUF "
                                  f"({path.stat().st_size} bytes)")
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    cur = _Cursor(buf, path)
    version, n_tensors, n_kv = _read_header(cur)
    contents = GGUFContents(path=path, version=version)
    for i in range(n_kv):
        key = cur.string(f"key of metadata pair {i}")
        if key in contents.values:
            raise GGUFFormatError(path, key, "duplicate key")
        contents.values[key], contents.types[key] = _read_value(cur, key)
    infos = []
    for i in range(n_tensors):
        name = cur.string(f"name of tensor {i}")
        n_dims = cur.u32(name)
        cur.need(8 * n_dims, name)
        dims = struct.unpack_from(f"<{n_dims}Q", buf, cur.pos)
        cur.pos += 8 * n_dims
        infos.append((name, cur.u32(name), dims, cur.u64(name)))
    if "general.alignment" in contents.values:
        if contents.types["general.alignment"] != (4,):
            raise GGUFFormatError(path, "general.alignment", "must be a u32")
        contents.alignment = contents.values["general.alignment"][0]
        if contents.alignment <= 0 or contents.alignment & (contents.alignment - 1):
            raise GGUFFormatError(path, "general.alignment",
                                  f"{contents.alignment} is not a power of two")
    contents.data_offset = -(-cur.pos // contents.alignment) * contents.alignment
    seen: set[str] = set()
    for name, ggml_type, dims, offset in infos:
        if name in seen:
            raise GGUFFormatError(path, name, "duplicate tensor name")
        seen.add(name)
        data = _tensor_data(buf, contents, name, ggml_type, dims, offset)
        contents.tensors.append(TensorInfo(name, ggml_type, dims, data))
    return contents
