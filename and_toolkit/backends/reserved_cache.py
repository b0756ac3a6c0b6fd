"""Key/value cache layers that write new tokens into reserved room instead of re-concatenating.

transformers' ``DynamicLayer`` appends each step's keys and values with ``torch.cat``, copying
the whole cache of every row on every decode step; with a shared prefix repeated per row
(:mod:`~and_toolkit.backends.prefix_cache`) that is [B, kv_heads, ~750, head_dim] per layer and
step, a large part of a batched decode step on a CPU. :class:`ReservedLayer` keeps one buffer
with spare columns, writes new tokens in place and hands attention the view of the filled
columns, the same values in the same shape, so outputs do not change
(tests/backends/test_reserved_cache.py compares logits bit for bit).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import DynamicLayer

MIN_ROOM = 256
"""Fewest spare columns added when a buffer grows."""


class ReservedLayer(DynamicLayer):
    """A ``DynamicLayer`` whose keys / values [B, H, T, D] are views of larger buffers.

    Build with :meth:`from_layer`; ``keys`` and ``values`` always hold exactly the filled
    columns, so every reader of a ``DynamicLayer`` sees the same tensors' values and shapes.
    """

    key_buffer: torch.Tensor
    value_buffer: torch.Tensor
    filled: int

    @classmethod
    def from_layer(cls, layer: DynamicLayer, room: int) -> ReservedLayer:
        """Copy an initialised layer into buffers with ``room`` spare columns.

        Raises:
            ValueError: if ``layer`` holds no keys yet.
        """
        keys, values = layer.keys, layer.values
        if keys is None or values is None or not layer.is_initialized:
            raise ValueError("cannot reserve an uninitialised cache layer")
        new = cls()
        new.device = keys.device
        new.is_initialized = True
        new._reserve(keys, values, room)
        return new

    def _reserve(self, keys: torch.Tensor, values: torch.Tensor, room: int) -> None:
        b, h, t, d = keys.shape
        self.key_buffer = keys.new_empty((b, h, t + room, d))
        self.value_buffer = values.new_empty((b, h, t + room, values.shape[-1]))
        self.key_buffer[:, :, :t] = keys
        self.value_buffer[:, :, :t] = values
        self.filled = t
        self._views()

    def _views(self) -> tuple[torch.Tensor, torch.Tensor]:
        keys = self.key_buffer[:, :, :self.filled]
        values = self.value_buffer[:, :, :self.filled]
        self.keys, self.values = keys, values
        return keys, values

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Write [B, H, n, D] new keys / values after the filled columns; return all filled."""
        n = key_states.shape[-2]
        if self.filled + n > self.key_buffer.shape[-2]:
            self._reserve(*self._views(), max(MIN_ROOM, n, self.filled))
        self.key_buffer[:, :, self.filled:self.filled + n] = key_states
        self.value_buffer[:, :, self.filled:self.filled + n] = value_states
        self.filled += n
        return self._views()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep only the rows ``indices`` (buffers keep their spare room)."""
        self.key_buffer = self.key_buffer[indices]
        self.value_buffer = self.value_buffer[indices]
        self._views()

    def batch_repeat_interleave(self, repeats: int) -> None:
        """Repeat every row ``repeats`` times."""
        self.key_buffer = self.key_buffer.repeat_interleave(repeats, dim=0)
        self.value_buffer = self.value_buffer.repeat_interleave(repeats, dim=0)
        self._views()

    def crop(self, tokens_to_remove: int) -> None:
        """Drop the last ``-tokens_to_remove`` columns (negative counts, as ``DynamicLayer``)."""
        if tokens_to_remove > 0:
            raise ValueError(f"crop takes a negative count, got {tokens_to_remove}")
        self.filled += tokens_to_remove
        self._views()


def reserve(cache: Any, room: int) -> Any:
    """Turn every ``DynamicLayer`` of ``cache`` into a :class:`ReservedLayer` (in place).

    Args:
        cache: a transformers ``DynamicCache`` with initialised layers.
        room: spare columns to reserve per layer (tokens still to come).

    Returns:
        The same cache object.

    Raises:
        TypeError: naming the layer class, for layers other than plain ``DynamicLayer``.
    """
    for i, layer in enumerate(cache.layers):
        if type(layer) is not DynamicLayer:
            raise TypeError(f"cache layer {i} is a {type(layer).__name__}; only DynamicLayer "
                            "can be reserved")
        cache.layers[i] = ReservedLayer.from_layer(layer, room)
    return cache
