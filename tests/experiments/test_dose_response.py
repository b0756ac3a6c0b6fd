"""Random-ablation dose-response: rows on a toy evaluator, and the 100 % endpoint on real tiny
models through the pruning hooks the experiments use (recording.prune.pruned)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import polars as pl
import pytest
import torch

from and_toolkit.experiments.dose_response import (
    PAPER_RELATIVE_LOSS_12,
    DoseConfig,
    chance_accuracy,
    dose_response,
    relative_loss,
)
from and_toolkit.recording.hooks import module_width, select_layers
from and_toolkit.recording.prune import pruned
from and_toolkit.records import ProbeClip, ResultRow
from and_toolkit.targets.ast import ASTArchConfig, build_ast
from and_toolkit.targets.cnn import CNNArchConfig, build_cnn
from and_toolkit.targets.train import logits_of

N_CLASSES = 4


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def clips(targets: list[int]) -> pl.DataFrame:
    return ProbeClip.frame([
        {"dataset": "toy", "clip_id": f"c{i}", "index": i, "path": "", "label": str(t),
         "target": t, "fold": 1, "sample_rate": 16000, "n_samples": 1}
        for i, t in enumerate(targets)])


def value(df: pl.DataFrame, series: str, metric: str, x: float | None) -> float:
    sel = df.filter((pl.col("series") == series) & (pl.col("metric") == metric))
    sel = sel.filter(pl.col("x").is_null() if x is None else pl.col("x") == x)
    return float(sel["value"].item())


def test_chance_is_the_best_constant_prediction() -> None:
    assert chance_accuracy(np.array([0, 1, 2, 3])) == 0.25
    assert chance_accuracy(np.array([0, 0, 0, 1])) == 0.75
    with pytest.raises(ValueError, match="no test clips"):
        chance_accuracy(np.array([], dtype=np.int64))


def test_rows_on_a_toy_evaluator() -> None:
    """Clip i is right while fewer than i + 1 of the 10 hidden neurons are pruned."""
    sizes = {"a": 6, "b": 4, "fc": 3}

    def evaluate(mask: Mapping[str, np.ndarray]) -> np.ndarray:
        assert set(mask) == {"a", "b"}  # the classifier is never in a mask
        n = int(sum(m.sum() for m in mask.values()))
        return np.array([[1.0, 0.0] if n <= i else [0.0, 1.0] for i in range(10)])

    cfg = DoseConfig(model="toy", classifier_layer="fc", percents=(100.0, 50.0), seeds=(1, 2))
    df = ResultRow.validate_frame(dose_response(sizes, clips([0] * 10), evaluate, cfg), "dose")
    assert df["key"].n_unique() == df.height
    assert value(df, "mean", "accuracy", 0.0) == 1.0
    assert value(df, "mean", "accuracy", 50.0) == 0.5  # 5 pruned: clips 5..9 right
    assert value(df, "mean", "accuracy", 100.0) == 0.0
    assert value(df, "mean", "accuracy_sd", 50.0) == 0.0
    assert value(df, "chance", "accuracy", 100.0) == 1.0  # every target is class 0
    assert value(df, "", "n_hidden", None) == 10.0
    assert value(df, "", "above_chance_at_100", None) == -1.0
    seeds = df.filter(pl.col("metric").str.starts_with("seed="))
    assert seeds["x"].is_null().all() and set(seeds["series"]) == {"50 %", "100 %"}
    assert not df.filter(pl.col("x").is_null()).select(
        "model", "group", "series", "metric").is_duplicated().any()


def test_relative_loss_at_12_beside_the_papers() -> None:
    """Any pruning drops the toy to 'always class 0' (0.5 = chance on alternating targets)."""
    assert relative_loss(0.95, 0.16, 0.02) == PAPER_RELATIVE_LOSS_12 == pytest.approx(
        0.79 / 0.93)
    assert relative_loss(0.3, 0.2, 0.3) is None
    targets = [i % 2 for i in range(10)]

    def evaluate(mask: Mapping[str, np.ndarray]) -> np.ndarray:
        pred = targets if not any(m.any() for m in mask.values()) else [0] * 10
        return np.eye(2)[pred]

    cfg = DoseConfig(model="toy", classifier_layer="fc", percents=(12.0,), seeds=(1,),
                     paper_model="AST")
    df = dose_response({"a": 10, "fc": 2}, clips(targets), evaluate, cfg)
    row = df.filter(pl.col("metric") == "relative_loss_at_12")
    assert row.select("value", "paper_value").row(0) == (1.0, PAPER_RELATIVE_LOSS_12)
    assert df.filter(pl.col("metric") == "accuracy_sd").height == 0  # one seed: no spread


def _endpoint(model: torch.nn.Module, feats: torch.Tensor) -> tuple[pl.DataFrame, np.ndarray]:
    """Dose-response of ``model`` through ``pruned``, and its logits at 100 %."""
    model.eval()
    layers = select_layers(model)  # the recording default: what the experiments may prune
    modules = dict(model.named_modules())
    sizes = {name: int(module_width(modules[name]) or 0) for name in layers}
    seen: list[np.ndarray] = []

    def evaluate(mask: Mapping[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode(), pruned(model, dict(mask)):
            out = logits_of(model, feats).numpy()
        seen.append(out)
        return out

    targets = [i % N_CLASSES for i in range(feats.shape[0])]  # balanced: chance = 1/C
    cfg = DoseConfig(model="m", classifier_layer=layers[-1], percents=(50.0, 100.0), seeds=(3,))
    return dose_response(sizes, clips(targets), evaluate, cfg), seen[-1]


@pytest.mark.parametrize("arch", ["ast", "cnn"])
def test_full_ablation_reaches_chance_on_tiny_models(arch: str) -> None:
    """Every prunable unit zeroed: the logits no longer depend on the input, so accuracy is
    exactly 1/C on a balanced set. A layer left out of the pool (e.g. an attention output) or
    a path around the pruned units (the CLS token reading patches) would fail here."""
    torch.manual_seed(0)
    if arch == "ast":
        model = build_ast(ASTArchConfig(num_layers=2, hidden_size=16, num_heads=2,
                                        intermediate_size=32, patch_size=4, frequency_stride=4,
                                        time_stride=4, num_mel_bins=8, max_length=16), N_CLASSES)
    else:
        model = build_cnn(CNNArchConfig(channels=(4, 8), num_mel_bins=8), N_CLASSES)
    feats = torch.randn(12, 16, 8)
    df, full = _endpoint(model, feats)
    spread = np.abs(full - full[0]).max()
    assert spread <= 1e-5 * max(1.0, float(np.abs(full).max()))  # input-independent logits
    assert value(df, "mean", "accuracy", 100.0) == pytest.approx(1 / N_CLASSES)
    assert value(df, "", "above_chance_at_100", None) == pytest.approx(0.0)
