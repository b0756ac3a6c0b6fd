"""Actor bodies of the Ray engine (plain classes; :mod:`and_toolkit.pipeline.ray_engine` wraps
them with ``ray.remote``, so this module never imports Ray).

- :class:`Recorder`: a record actor: one target network and its input feed, partitions recorded
  to scratch files, layer files written from them;
- :class:`Worker`: a function made once per actor by a loader (:meth:`RayEngine.actor_map`,
  e.g. the audio captioner);
- :class:`Generator`: one LLM backend with its generation cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from and_toolkit.errors import StageNotRun
from and_toolkit.pipeline.engine import InputFeed, LLMLoader, WorkerLoader
from and_toolkit.recording.partition import ScratchPartition


class Recorder:
    """Actor body: holds one target network and its input feed for the whole record stage."""

    def __init__(self, threads: int, gpu: bool) -> None:
        torch.set_num_threads(threads)
        self.gpu = gpu
        self.model: nn.Module | None = None
        self.feed: InputFeed | None = None

    def load(self, held: tuple[nn.Module | None, InputFeed]) -> None:
        """Hold the model and its feed for the following partitions (one deserialisation per
        actor); a user's model (no model sent) is loaded here from its feed's spec."""
        model, self.feed = held
        if model is None:
            model = self.feed.model().module  # type: ignore[attr-defined]
        self.model = model.to("cuda") if self.gpu else model

    def run(self, start: int, stop: int, batch_size: int, layers: list[str], pooling: str,
            scratch: str, block_units: int) -> ScratchPartition:
        """Load and record clips ``[start, stop)`` into ``scratch``; metadata only comes back."""
        from and_toolkit.recording.partition import record_partition

        if self.model is None or self.feed is None:
            raise RuntimeError("record actor: run() before load()")
        batches = self.feed.batches(start, stop, batch_size)
        return record_partition(self.model, batches, layers, pooling, start=start,
                                n_clips=stop - start, scratch=Path(scratch),
                                block_units=block_units)

    def write(self, parts: list[ScratchPartition], index: int, layer: str,
              fields: dict[str, Any], block_units: int) -> str:
        """Write one layer's file from the partitions' scratch blocks (the local engine's
        writer and row groups); returns the path."""
        from and_toolkit.recording.partition import layer_blocks
        from and_toolkit.recording.write import write_layer_blocks

        blocks = layer_blocks(parts, index, parts[0].widths[layer], block_units)
        return str(write_layer_blocks(fields.pop("run"), blocks, layer=layer, **fields))


class Worker:
    """Actor body: a function made once per actor by a loader (:meth:`RayEngine.actor_map`)."""

    def __init__(self, source: WorkerLoader, threads: int) -> None:
        torch.set_num_threads(threads)
        self.fn = source.load()

    def run(self, item: Any) -> Any:
        return self.fn(item)


class Generator:
    """Actor body: one LLM backend (with its generation cache), loaded once per actor."""

    def __init__(self, source: LLMLoader, threads: int) -> None:
        torch.set_num_threads(threads)
        self.model: Any = None
        self.error: str | None = None
        try:
            self.model = source.load()
        except StageNotRun as exc:  # reported by ready(): the stage records it as not run
            self.error = str(exc)

    def ready(self) -> tuple[str | None, str]:
        """(load error or None, backend id)."""
        return self.error, "" if self.model is None else str(self.model.id)

    def run(self, prompts: list[Any], sampling: Any) -> tuple[list[str], int]:
        """One backend ``generate`` call: (completions, distinct prompts generated)."""
        texts = self.model.generate(prompts, sampling)
        return list(texts), int(self.model.last.generated)
