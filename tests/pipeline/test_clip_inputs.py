"""Inputs made per clip range by record workers equal the driver's; the weights key's feature
hash is memoised without changing any key (no Ray needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from and_toolkit.cache import Cache
from and_toolkit.config import parse_config
from and_toolkit.pipeline import run_pipeline
from and_toolkit.pipeline.context import Context, array_bytes
from and_toolkit.run import Run
from tests.pipeline.test_ray_engine import _demo


@pytest.fixture()
def ctx(tmp_path: Path) -> Context:
    """A context over the shrunk demo's probe (48 synthetic clips), with its own cache."""
    cfg = parse_config({**_demo(), "stages": ["probe"]})
    run_pipeline(cfg, run_dir=tmp_path / "run", cache=Cache(tmp_path / "cache"), progress=False)
    return Context(cfg, Run.at(tmp_path / "run"), Cache(tmp_path / "cache"), progress=False)


def _fresh(ctx: Context) -> Context:
    return Context(ctx.cfg, ctx.run, Cache(ctx.cache.root), progress=False)


def test_features_sha_is_the_old_hash_and_is_reused_without_the_features(ctx: Context) -> None:
    from and_toolkit.pipeline.targets import train_config, weights_key_of
    from and_toolkit.targets import features_sha, labels_sha, weights_key

    sha = ctx.features_sha()
    assert sha == features_sha(ctx.features())
    # the weights key is the one computed from the features' bytes (cached targets stay valid)
    cfg = train_config(ctx, ctx.cfg.targets[0]).model_copy(update={"precision": "fp32"})
    probe = ctx.probe()
    old = weights_key(cfg, features_sha(ctx.features()), labels_sha(
        probe["target"].to_numpy().astype(np.int64), probe["fold"].to_numpy().astype(np.int64)))
    assert weights_key_of(ctx, cfg) == old
    again = _fresh(ctx)
    assert again.features_sha() == sha
    assert again._features is None  # answered from the memo, [N, T, F] never loaded
    assert weights_key_of(again, cfg) == old and again._features is None


def test_features_sha_memo_follows_the_cached_features(ctx: Context) -> None:
    """Other bytes under the features' key (e.g. recomputed by changed code): the memo is not
    used, the hash is that of the features the run would read."""
    from and_toolkit.targets import features_sha

    ctx.features_sha()
    other = ctx.features().copy()
    other[0, 0, 0] += 1.0
    ctx.cache.put_bytes("features", ctx.features_key(), array_bytes(other))
    again = _fresh(ctx)
    assert again.features_sha() == features_sha(other) != features_sha(ctx.features())


def test_clip_inputs_equal_the_drivers_rows(ctx: Context) -> None:
    """A partition's log-mel features and padded 16 kHz waveforms (with the Whisper target's
    valid frames) equal the matching rows of the driver's arrays, bit for bit."""
    from and_toolkit.pipeline.model_stages import clip_inputs
    from and_toolkit.pipeline.targets import train_config
    from and_toolkit.targets.pretrained.whisper import valid_frames

    cfg = train_config(ctx, ctx.cfg.targets[0])
    feed = clip_inputs(ctx, cfg)  # nothing cached yet: the feed featurizes
    assert feed.kind == "logmel" and feed.n_clips == ctx.probe().height
    assert feed.cached is None
    np.testing.assert_array_equal(feed.inputs(8, 16), ctx.features()[8:16])
    feed = clip_inputs(ctx, cfg)  # ctx.features() cached them: rows read from the entry
    assert feed.cached is not None
    np.testing.assert_array_equal(feed.inputs(8, 16), ctx.features()[8:16])
    batches = list(feed.batches(8, 20, 8))
    assert [b.shape[0] for b in batches] == [8, 4]
    np.testing.assert_array_equal(batches[1].numpy(), ctx.features()[16:20])

    wave_cfg = cfg.model_copy(update={"arch": "whisper-frozen"})
    assert wave_cfg.takes_waveforms
    feed = clip_inputs(ctx, wave_cfg)
    matrix = ctx.waveform_matrix()
    assert feed.kind == "waveform" and feed.width == matrix.shape[1]
    (x, frames), = list(feed.batches(40, 48, 8))
    np.testing.assert_array_equal(x.numpy(), matrix[40:48])
    lengths = np.array([len(w) for w in ctx.waveforms()[40:48]])
    want = valid_frames(lengths, wave_cfg.whisper_window_seconds)
    assert frames.keys() == want.keys()
    assert all(np.array_equal(frames[t], want[t]) for t in want)
