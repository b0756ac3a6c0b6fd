"""record_to_run spills pooled outputs to scratch blocks and writes neuron-major row groups."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from torch import nn

from and_toolkit.recording.record import record_activations, record_to_run, units_per_chunk
from and_toolkit.run import Run


def test_units_per_chunk_bounds_the_block() -> None:
    assert units_per_chunk(2000) == 524 and units_per_chunk(8000) == 131
    assert units_per_chunk(100) == 1024 and units_per_chunk(10**7) == 16
    for n in (2000, 8000):  # one block is the same size whatever N
        assert 4 * n * units_per_chunk(n) <= 4 << 20


def test_blocks_are_row_groups_with_the_same_values(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 40), nn.ReLU(), nn.Linear(40, 3))
    x = torch.randn(600, 8)  # N = 600 clips
    batches = [x[i:i + 64] for i in range(0, len(x), 64)]
    run = Run.at(tmp_path / "run")
    n = len(x)
    # force several blocks: 40 units in blocks of 16
    import and_toolkit.recording.record as rec

    old = rec.CHUNK_BYTES
    rec.CHUNK_BYTES = 16 * 4 * n
    try:
        paths = record_to_run(model, batches, ["0", "2"], "mean", run, "m", "sha", n_clips=n,
                              progress=False)
    finally:
        rec.CHUNK_BYTES = old
    assert pq.ParquetFile(paths["0"]).num_row_groups == 3  # 16 + 16 + 8 units
    want = record_activations(model, batches, ["0", "2"], "mean", progress=False, n_clips=n)
    for layer in ("0", "2"):
        got = run.activation_matrix("m", layer)
        assert got.units.tolist() == list(range(want[layer].shape[1]))
        np.testing.assert_array_equal(got.values, want[layer])
    assert not list((tmp_path / "run").glob(".record-*"))  # scratch removed


def test_scratch_partitions_written_by_layer_blocks_give_record_to_run_bytes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Ray engine's path (partitions recorded to scratch files with the whole probe's
    block size, a layer assembled block by block by ``layer_blocks``) writes the bytes of the
    local scratch path, several blocks; each block read holds [N, <= 16] values only."""
    import and_toolkit.recording.record as rec
    from and_toolkit.recording.hooks import block_index, layer_aliases
    from and_toolkit.recording.partition import layer_blocks, record_partition
    from and_toolkit.recording.write import write_layer_blocks

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 40), nn.ReLU(), nn.Linear(40, 3))
    x = torch.randn(96, 8)
    batches = [x[i:i + 16] for i in range(0, len(x), 16)]
    n = len(x)
    monkeypatch.setattr(rec, "CHUNK_BYTES", 16 * 4 * n)
    local = record_to_run(model, batches, ["0", "2"], "mean", Run.at(tmp_path / "a"), "m",
                          "sha", n_clips=n, progress=False, provenance={"k": 1})
    units = units_per_chunk(n)
    assert units == 16
    parts = [record_partition(model, batches[i:i + 2], ["0", "2"], "mean", start=16 * i,
                              n_clips=32, scratch=tmp_path / "scratch" / str(i),
                              block_units=units)
             for i in range(0, len(batches), 2)]
    assert [p.start for p in parts] == [0, 32, 64]
    names = layer_aliases(["0", "2"])
    for j, layer in enumerate(("0", "2")):
        blocks = list(layer_blocks(parts, j, parts[0].widths[layer], units))
        assert all(v.shape[0] == n and v.shape[1] <= 16 for _, v in blocks)
        path = write_layer_blocks(
            Run.at(tmp_path / "b"), iter(blocks), model_id="m", layer=layer,
            alias=names[layer], block=block_index(layer), pooling=parts[0].labels[layer],
            probe_sha256="sha", n_clips=n, provenance={"k": 1})
        assert path.read_bytes() == local[layer].read_bytes()
    assert pq.ParquetFile(local["0"]).num_row_groups == 3
