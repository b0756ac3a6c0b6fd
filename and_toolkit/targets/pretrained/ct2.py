"""Reading a CTranslate2 ``model.bin`` (binary version 6): named tensors, no CTranslate2 needed.

Layout (``ctranslate2/specs/model_spec.py``, ``_serialize``), little-endian: uint32 binary
version, string spec name, uint32 revision, uint32 variable count, then per variable: string
name, uint8 rank, rank x uint32 dims, uint8 dtype id, uint32 byte count, raw bytes; then uint32
alias count and (alias, target) string pairs. A string is uint16 length (with the NUL) + UTF-8 +
NUL.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

__all__ = ["CT2Model", "parse_ct2"]

_DTYPES = (np.float32, np.int8, np.int16, np.int32, np.float16, None)  # None: bfloat16
SUPPORTED_VERSION = 6


@dataclass(frozen=True)
class CT2Model:
    """The contents of a ``model.bin``.

    Attributes:
        spec: spec name (``WhisperSpec``); revision: spec revision.
        variables: name -> array (read-only views into the file bytes; scalars have shape ()).
        aliases: alias name -> variable name.
    """

    spec: str
    revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str]


def parse_ct2(data: bytes, source: str = "model.bin") -> CT2Model:
    """Parse the bytes of a CTranslate2 ``model.bin``.

    Raises:
        ValueError: another binary version, an unknown dtype, or a truncated file (naming
            ``source`` and the variable).
    """
    pos = 0

    def take(fmt: str) -> int:
        nonlocal pos
        size = struct.calcsize("<" + fmt)
        if pos + size > len(data):
            raise ValueError(f"{source}: truncated at byte {pos}")
        (value,) = struct.unpack_from("<" + fmt, data, pos)
        pos += size
        return int(value)

    def string() -> str:
        nonlocal pos
        n = take("H")
        if n < 1 or pos + n > len(data):
            raise ValueError(f"{source}: truncated string at byte {pos}")
        text = data[pos:pos + n - 1].decode("utf-8")
        pos += n
        return text

    version = take("I")
    if version != SUPPORTED_VERSION:
        raise ValueError(f"{source}: CTranslate2 binary version {version}, expected "
                         f"{SUPPORTED_VERSION}")
    spec, revision = string(), take("I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(take("I")):
        name = string()
        dims = tuple(take("I") for _ in range(take("B")))
        type_id, nbytes = take("B"), take("I")
        dtype = _DTYPES[type_id] if type_id < len(_DTYPES) else None
        if dtype is None:
            raise ValueError(f"{source}: variable {name!r} has unsupported dtype id {type_id}")
        if pos + nbytes > len(data) or nbytes != int(np.prod(dims)) * np.dtype(dtype).itemsize:
            raise ValueError(f"{source}: variable {name!r}: {nbytes} bytes do not fit shape "
                             f"{dims} of {np.dtype(dtype).name} (or the file is truncated)")
        variables[name] = np.frombuffer(data, dtype=dtype, count=int(np.prod(dims)),
                                        offset=pos).reshape(dims)
        pos += nbytes
    aliases = {string(): string() for _ in range(take("I"))}
    if pos != len(data):
        raise ValueError(f"{source}: {len(data) - pos} trailing bytes after the aliases")
    return CT2Model(spec, revision, variables, aliases)
