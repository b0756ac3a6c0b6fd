"""GGUF de-quantisation, bit for bit ``gguf.dequantize``'s, for Q4_1 and Q8_0 about twice as fast.

``gguf.quants`` de-quantises a tensor in groups of 16 rows (thousands of small numpy calls for
SmolLM2). Here Q4_1 and Q8_0 tensors are done in one pass of the same numpy element-wise
operations, in the same order and precision (float16 scales widened to float32; Q4_1:
``d * q + m``, Q8_0: ``qs * d``), so every value, NaN or not, has the same bits. Other types are
left to ``gguf.quants.dequantize`` itself (the reference, not a fallback: it is what
transformers calls).
"""

from __future__ import annotations

from typing import Any

import numpy as np

Q4_1, Q8_0 = 3, 8
"""ggml type ids de-quantised here."""
BLOCK = 32
"""Values per block."""
Q4_1_BLOCK = np.dtype([("d", "<f2"), ("m", "<f2"), ("qs", "u1", (BLOCK // 2,))])
"""A Q4_1 block (20 bytes): float16 scale, float16 minimum, 32 nibbles."""
Q8_0_BLOCK = np.dtype([("d", "<f2"), ("qs", "i1", (BLOCK,))])
"""A Q8_0 block (34 bytes): float16 scale, 32 int8."""


def _blocks(data: np.ndarray, block: np.dtype) -> np.ndarray:
    """The rows of ``data`` (uint8 [..., row_bytes]) as a flat array of ``block`` records."""
    return data.reshape(-1, block.itemsize).view(block)[:, 0]


def dequantize_q4_1(data: np.ndarray) -> np.ndarray:
    """Q4_1 blocks to float32: value ``j`` of a block is ``d * q_j + m``, ``q_j`` the low
    nibble of byte ``j`` of ``qs`` for ``j < 16``, else the high nibble of byte ``j - 16``.

    Args:
        data: uint8 [..., row_bytes], ``row_bytes`` a multiple of 20.

    Returns:
        float32 [..., row_bytes // 20 * 32].
    """
    blocks = _blocks(data, Q4_1_BLOCK)
    q = np.empty((blocks.shape[0], BLOCK), dtype=np.uint8)
    np.bitwise_and(blocks["qs"], np.uint8(0x0F), out=q[:, :BLOCK // 2])
    np.right_shift(blocks["qs"], np.uint8(4), out=q[:, BLOCK // 2:])
    out = q.astype(np.float32)
    np.multiply(blocks["d"].astype(np.float32)[:, None], out, out=out)
    np.add(out, blocks["m"].astype(np.float32)[:, None], out=out)
    return out.reshape(*data.shape[:-1], data.shape[-1] // Q4_1_BLOCK.itemsize * BLOCK)


def dequantize_q8_0(data: np.ndarray) -> np.ndarray:
    """Q8_0 blocks to float32: value ``j`` of a block is ``qs_j * d``.

    Args:
        data: uint8 [..., row_bytes], ``row_bytes`` a multiple of 34.

    Returns:
        float32 [..., row_bytes // 34 * 32].
    """
    blocks = _blocks(data, Q8_0_BLOCK)
    out = blocks["qs"].astype(np.float32)
    np.multiply(out, blocks["d"].astype(np.float32)[:, None], out=out)
    return out.reshape(*data.shape[:-1], data.shape[-1] // Q8_0_BLOCK.itemsize * BLOCK)


def dequantize(data: np.ndarray, qtype: Any) -> np.ndarray:
    """``gguf.dequantize(data, qtype)``: the same array, Q4_1 and Q8_0 computed here.

    Args:
        data: a tensor's stored data as ``gguf.GGUFReader`` gives it (uint8 [..., row_bytes]
            for block types).
        qtype: its ``gguf.GGMLQuantizationType`` (or the int id).

    Returns:
        float32 values, [..., values per row].

    Raises:
        ValueError: if a Q4_1 / Q8_0 row is not whole blocks.
    """
    from gguf import GGMLQuantizationType, quants

    kind = int(qtype)
    if kind not in (Q4_1, Q8_0):
        return np.asarray(quants.dequantize(data, GGMLQuantizationType(kind)))
    size = (Q4_1_BLOCK if kind == Q4_1 else Q8_0_BLOCK).itemsize
    if data.dtype != np.uint8 or not data.ndim or data.shape[-1] % size:
        raise ValueError(f"ggml type {kind}: expected uint8 rows of whole {size}-byte blocks, "
                         f"got {data.dtype} {data.shape}")
    return dequantize_q4_1(data) if kind == Q4_1 else dequantize_q8_0(data)
