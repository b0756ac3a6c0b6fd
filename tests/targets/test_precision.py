"""Training precision / thread resolution: precedence, decision rules, the probe, the key."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest
import torch

from and_toolkit.targets import (
    DEFAULT_TARGETS,
    evaluate,
    resolve_precision,
    resolve_train_config,
    timing,
    train_target,
    weights_key,
)
from and_toolkit.targets.precision import (
    ENV_PRECISION,
    MEMO_NAMESPACE,
    MIN_BF16_SPEEDUP,
    SCREEN_SLOWDOWN,
    PrecisionDecision,
    autocast,
    choose_precision,
    choose_threads,
    machine_key,
)
from and_toolkit.targets.pretrain import PretrainConfig, pretrain_encoder

from .conftest import TINY_AST, tiny_cfg

Data = tuple[np.ndarray, np.ndarray, np.ndarray]


@pytest.fixture
def no_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything is measured."""

    def boom(*_: object) -> None:
        raise AssertionError("probed although nothing needed measuring")

    monkeypatch.setattr(timing, "probe_precision", boom)
    monkeypatch.setattr(timing, "probe_threads", boom)


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_PRECISION, raising=False)


# ----- precedence -------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["fp32", "bf16"])
def test_explicit_config_wins_without_probing(
    value: str, no_probe: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_PRECISION, "bf16" if value == "fp32" else "fp32")
    cfg = tiny_cfg("cnn", precision=value, threads=3)
    resolved, decision = resolve_train_config(cfg)
    assert resolved == cfg  # nothing to change
    assert (decision.precision, decision.precision_source) == (value, "config")
    assert (decision.threads, decision.threads_source) == (3, "config")
    assert decision.fp32_s is None and decision.bf16_s is None and decision.workload == ""
    assert decision.probe_seconds == 0.0 and decision.thread_seconds == ()


@pytest.mark.parametrize("value", ["fp32", "BF16 "])
def test_env_pins_auto(value: str, no_probe: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_PRECISION, value)
    resolved, decision = resolve_train_config(tiny_cfg("ast", precision="auto", threads=1))
    want = value.strip().lower()
    assert resolved.precision == want and resolved.threads == 1
    assert (decision.precision, decision.precision_source) == (want, "env")


def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_PRECISION, "fp16")
    with pytest.raises(ValueError, match=ENV_PRECISION):
        resolve_precision("auto", threads=1)
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16", threads=1)
    with pytest.raises(ValueError, match="threads"):
        resolve_precision("fp32", threads=0)


def test_auto_uses_the_probe(no_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = timing.PrecisionProbe("step", fp32_s=1.0, bf16_s=0.5, screen_ratio=0.9, wall_s=0.1)
    monkeypatch.setattr(timing, "probe_precision", lambda: fake)
    resolved, decision = resolve_train_config(tiny_cfg("cnn", precision="auto", threads=2))
    assert resolved.precision == "bf16" and decision.precision_source == "probe"
    assert decision.bf16_over_fp32 == 0.5 and decision.workload == "step"
    slow = timing.PrecisionProbe("screen", fp32_s=1.0, bf16_s=9.0, screen_ratio=9.0, wall_s=0.1)
    monkeypatch.setattr(timing, "probe_precision", lambda: slow)
    resolved, decision = resolve_train_config(tiny_cfg("cnn", precision="auto", threads=2))
    assert resolved.precision == "fp32" and decision.workload == "screen"


def test_default_targets_are_auto() -> None:
    """Every default is "auto", except frozen pretrained targets: their head is trained on
    float32 embeddings, so they evaluate in fp32 too."""
    from and_toolkit.targets.config import FROZEN_PRETRAINED_ARCHS

    assert all(c.threads is None for c in DEFAULT_TARGETS.values())
    assert all(c.precision == ("fp32" if a in FROZEN_PRETRAINED_ARCHS else "auto")
               for a, c in DEFAULT_TARGETS.items())


# ----- the pure rules ---------------------------------------------------------------------------
def test_choose_precision_rule() -> None:
    assert MIN_BF16_SPEEDUP == 1.25
    assert choose_precision(1.0, 0.8) == "bf16"  # exactly 1.25x
    assert choose_precision(1.0, 0.81) == "fp32"  # faster, but not by the margin
    assert choose_precision(0.84, 17.5) == "fp32"  # emulated bf16 (the AVX2 laptop)
    assert choose_precision(1.0, 0.5) == "bf16"
    assert choose_precision(1.0, 0.9, min_speedup=1.1) == "bf16"
    with pytest.raises(ValueError, match="positive"):
        choose_precision(0.0, 1.0)


def test_choose_threads_rule() -> None:
    assert choose_threads({1: 1.0}) == 1
    assert choose_threads({1: 1.0, 2: 0.95}) == 1  # not faster by the margin
    assert choose_threads({1: 1.0, 2: 0.5}) == 2
    assert choose_threads({1: 1.0, 2: 2.0}) == 1  # oversubscribed
    assert choose_threads({8: 0.3, 1: 1.0, 4: 0.31}) == 4  # 8 is not 1.1x faster than 4
    assert choose_threads({1: 1.0, 4: 0.5, 8: 0.4}) == 8
    with pytest.raises(ValueError):
        choose_threads({})
    with pytest.raises(ValueError):
        choose_threads({0: 1.0})


def test_interleaved_medians_and_drop() -> None:
    now = [0.0]
    calls: dict[str, int] = {"a": 0, "b": 0, "slow": 0}

    def fn(name: str, cost: float) -> Callable[[], None]:
        def run() -> None:
            calls[name] += 1
            now[0] += cost

        return run

    fns = {"a": fn("a", 1.0), "b": fn("b", 2.0), "slow": fn("slow", 10.0)}
    med = timing.interleaved_medians(fns, lambda: now[0], min_reps=3, max_reps=3, budget_s=0.0,
                            drop_factor=4.0)
    assert med == {"a": 1.0, "b": 2.0, "slow": 10.0}
    assert calls == {"a": 4, "b": 4, "slow": 1}  # warm-up + 3 rounds; slow only warmed up


# ----- the real probe (no assertions about which precision is faster) ---------------------------
def test_probe_decision_is_consistent(no_env: None) -> None:
    rng, threads = torch.get_rng_state(), torch.get_num_threads()
    d = resolve_precision("auto")
    assert torch.equal(torch.get_rng_state(), rng) and torch.get_num_threads() == threads
    assert d.precision_source == "probe" and d.precision in ("fp32", "bf16")
    assert d.fp32_s is not None and d.bf16_s is not None and d.bf16_over_fp32 is not None
    assert d.fp32_s > 0 and d.bf16_s > 0
    assert d.bf16_over_fp32 == pytest.approx(d.bf16_s / d.fp32_s)
    assert d.screen_bf16_over_fp32 is not None and d.screen_bf16_over_fp32 > 0
    if d.workload == "step":
        assert d.precision == choose_precision(d.fp32_s, d.bf16_s)
    else:
        assert d.workload == "screen" and d.precision == "fp32"
        assert d.bf16_over_fp32 >= SCREEN_SLOWDOWN
    assert d.threads >= 1 and d.cpu_count >= 1 and d.cpu_model and d.torch_version
    if d.threads_source == "probe":
        assert dict(d.thread_seconds)[d.threads] > 0
        assert d.threads == choose_threads(dict(d.thread_seconds))
    assert d.probe_seconds > 0
    assert resolve_precision("auto") == d  # memoised per process
    json.dumps(d.as_dict())


# ----- the key and the consumers refuse "auto" ---------------------------------------------------
def test_weights_key_refuses_auto_and_covers_precision() -> None:
    with pytest.raises(ValueError, match="auto"):
        weights_key(tiny_cfg("cnn", precision="auto"), "f" * 64)
    fp32 = weights_key(tiny_cfg("cnn", precision="fp32"), "f" * 64)
    bf16 = weights_key(tiny_cfg("cnn", precision="bf16"), "f" * 64)
    assert fp32 != bf16
    # threads are provenance, not part of the key
    assert fp32 == weights_key(tiny_cfg("cnn", precision="fp32", threads=2), "f" * 64)


def test_resolved_configs_key_by_chosen_precision(
    no_probe: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = {}
    for value in ("fp32", "bf16"):
        monkeypatch.setenv(ENV_PRECISION, value)
        resolved, _ = resolve_train_config(tiny_cfg("ast", precision="auto", threads=1))
        keys[value] = weights_key(resolved, "f" * 64)
    assert keys["fp32"] != keys["bf16"]
    assert keys["fp32"] == weights_key(tiny_cfg("ast", precision="fp32"), "f" * 64)


def test_consumers_refuse_auto(tiny_data: Data) -> None:
    features, targets, _ = tiny_data
    with pytest.raises(ValueError, match="resolve_train_config"):
        train_target(tiny_cfg("cnn", precision="auto"), *tiny_data, progress=False)
    with pytest.raises(ValueError, match="precision"):
        evaluate(torch.nn.Flatten(), features, targets, precision="auto")
    with pytest.raises(ValueError, match="precision"):
        pretrain_encoder(None, PretrainConfig(), TINY_AST, features, 0, "auto")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="precision"):
        autocast("auto")


def test_train_target_runs_with_config_threads(tiny_data: Data) -> None:
    seen: list[int] = []
    before = torch.get_num_threads()
    train_target(tiny_cfg("cnn", threads=2), *tiny_data, progress=False,
                 on_epoch=lambda _: seen.append(torch.get_num_threads()))
    assert seen == [2] and torch.get_num_threads() == before


def test_decision_record_is_frozen() -> None:
    d = PrecisionDecision(precision="fp32", precision_source="config", threads=1,
                          threads_source="config")
    with pytest.raises(AttributeError):
        d.precision = "bf16"  # type: ignore[misc]
    assert d.as_dict()["thread_seconds"] == {}


# ----- per-machine memory -----------------------------------------------------------------------
class DictMemo:
    """A :class:`DecisionMemo` in a dict (the pipeline passes its on-disk cache)."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], object] = {}

    def get_json(self, namespace: str, key: str) -> object | None:
        return self.data.get((namespace, key))

    def put_json(self, namespace: str, key: str, value: object) -> None:
        self.data[(namespace, key)] = json.loads(json.dumps(value))


def _fake_probes(monkeypatch: pytest.MonkeyPatch, bf16_s: float,
                 threads: tuple[tuple[int, float], ...]) -> None:
    """Measurements of a 2-core machine: fp32 1.0 s against ``bf16_s``, ``threads`` times."""
    fast = timing.PrecisionProbe("step", fp32_s=1.0, bf16_s=bf16_s, screen_ratio=0.9, wall_s=0.1)
    monkeypatch.setattr(timing, "probe_precision", lambda: fast)
    monkeypatch.setattr(timing, "probe_threads", lambda cores, p: timing.ThreadProbe(threads, 0.1))
    monkeypatch.setattr("and_toolkit.targets.precision.usable_cores", lambda: 2)


def test_a_machine_remembers_its_measured_choice(no_env: None,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    memo = DictMemo()
    _fake_probes(monkeypatch, 0.5, ((1, 1.0), (2, 0.5)))
    first, d1 = resolve_train_config(tiny_cfg("cnn", precision="auto"), memo)
    assert (first.precision, first.threads, d1.remembered) == ("bf16", 2, False)
    assert list(memo.data) == [(MEMO_NAMESPACE, machine_key())]

    def boom(*_: object) -> None:
        raise AssertionError("measured again although this machine's choice is remembered")

    # a loaded machine would now measure otherwise: the remembered choice wins, unmeasured
    monkeypatch.setattr(timing, "probe_precision", boom)
    monkeypatch.setattr(timing, "probe_threads", boom)
    again, d2 = resolve_train_config(tiny_cfg("cnn", precision="auto"), memo)
    assert (again.precision, again.threads, d2.remembered) == ("bf16", 2, True)
    assert d2.bf16_over_fp32 == d1.bf16_over_fp32 and d2.precision_source == "probe"
    # explicit values still win over the memory
    pinned, d3 = resolve_train_config(tiny_cfg("cnn", precision="fp32", threads=1), memo)
    assert (pinned.precision, pinned.threads, d3.precision_source) == ("fp32", 1, "config")


def test_a_corrupt_memory_is_measured_again(no_env: None,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    memo = DictMemo()
    memo.put_json(MEMO_NAMESPACE, machine_key(), {"precision": "fp16", "threads": 0})
    slow = timing.PrecisionProbe("screen", fp32_s=1.0, bf16_s=9.0, screen_ratio=9.0, wall_s=0.1)
    monkeypatch.setattr(timing, "probe_precision", lambda: slow)
    resolved, decision = resolve_train_config(tiny_cfg("cnn", precision="auto", threads=1), memo)
    assert resolved.precision == "fp32" and not decision.remembered


def test_the_thread_count_is_chosen_on_the_targets_own_step(no_env: None,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    """With the clip shape, the target's own step decides the threads (the generic step said 1,
    the target's says 2), once per machine, config and shape; other archs and explicit counts
    keep their way."""
    from and_toolkit.targets import precision

    memo = DictMemo()
    _fake_probes(monkeypatch, 0.9, ((1, 1.0), (2, 1.2)))
    seen: list[tuple[int, ...]] = []

    def target_probe(model: torch.nn.Module, batch: torch.Tensor, p: str, cores: int
                     ) -> timing.ThreadProbe:
        seen.append(tuple(batch.shape))
        return timing.ThreadProbe(((1, 2.0), (2, 1.0)), 0.5)

    monkeypatch.setattr(timing, "probe_model_threads", target_probe)
    monkeypatch.setattr(precision, "_MODEL_PROBES", {})
    generic, _ = resolve_train_config(tiny_cfg("cnn", precision="auto"), memo)
    assert generic.threads == 1 and seen == []
    cfg, d = resolve_train_config(tiny_cfg("cnn", precision="auto"), memo, clip_shape=(32, 8))
    assert (cfg.precision, cfg.threads, d.threads_source) == ("fp32", 2, "target")
    assert d.thread_workload == "target step [8, 32, 8]" and seen == [(8, 32, 8)]
    assert dict(d.thread_seconds) == {1: 2.0, 2: 1.0} and not d.threads_remembered
    # another process: the memo answers, nothing is measured
    monkeypatch.setattr(precision, "_MODEL_PROBES", {})
    again, d2 = resolve_train_config(tiny_cfg("cnn", precision="auto", epochs=3), memo,
                                     clip_shape=(32, 8))
    assert again.threads == 2 and d2.threads_remembered and seen == [(8, 32, 8)]
    # another shape is measured anew; an explicit count is never overridden
    resolve_train_config(tiny_cfg("cnn", precision="auto"), memo, clip_shape=(16, 8))
    assert seen[-1] == (8, 16, 8)
    pinned, d3 = resolve_train_config(tiny_cfg("cnn", precision="auto", threads=1), memo,
                                      clip_shape=(32, 8))
    assert pinned.threads == 1 and d3.threads_source == "config"


def test_the_target_step_probe_leaves_the_model_as_it_was() -> None:
    from and_toolkit.targets import build_model

    model = build_model(tiny_cfg("cnn")).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = torch.randn(8, 32, 8)
    rng = torch.get_rng_state()
    probe = timing.probe_model_threads(model, batch, "fp32", cores=2, cap_s=0.5)
    assert [n for n, _ in probe.seconds] == [1, 2] and all(s > 0 for _, s in probe.seconds)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # batch-norm stats too
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)
