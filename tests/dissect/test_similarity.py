"""Module A similarity functions: known answers, loop equivalence, edge cases, regression."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch

from and_toolkit.dissect import similarity as S
from and_toolkit.dissect import similarity_reference as R

ALL = S.SIMILARITY_NAMES


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def clustered(n_clips: int = 300, m: int = 6, seed: int = 0) -> torch.Tensor:
    """Evidence where clip i mostly belongs to concept i % m (continuous, no ties)."""
    g = torch.Generator().manual_seed(seed)
    onehot = torch.nn.functional.one_hot(torch.arange(n_clips) % m, m).float()
    return 0.7 * onehot + 0.3 * torch.rand(n_clips, m, generator=g)


def random_case(seed: int = 1, n_clips: int = 400, m: int = 9, n: int = 50
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random P / U with ties: rounded evidence columns, ReLU'd and constant neurons."""
    g = torch.Generator().manual_seed(seed)
    P = torch.softmax(3 * torch.randn(n_clips, m, generator=g), dim=1)
    P[:, :3] = torch.round(P[:, :3] * 20) / 20  # many equal evidence values
    U = torch.randn(n_clips, n, generator=g) + P @ torch.randn(m, n, generator=g)
    U[:, ::4] = U[:, ::4].clamp(min=0.5)  # ties at the bottom of the activations
    U[:, 7] = torch.round(U[:, 7])  # ties everywhere in one neuron
    U[:, 9] = 1.25  # constant neuron
    return P, U


def loops(pop: S.Population, rr: S.RankReorderConfig | None = None
          ) -> dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    return {
        "cos": lambda P, U: R.cos_loop(P, U),
        "cos_cubed": lambda P, U: R.cos_cubed_loop(P, U),
        "rank_reorder": lambda P, U: R.rank_reorder_loop(P, U, rr),
        "wpmi": lambda P, U: R.wpmi_loop(P, U, population=pop),
        "soft_wpmi": lambda P, U: R.soft_wpmi_loop(P, U, population=pop),
    }


def assert_close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> None:
    """|a - b| <= tol * max(1, |b|) elementwise, NaN where both are NaN."""
    assert a.shape == b.shape
    assert torch.equal(a.isnan(), b.isnan())
    ok = ~b.isnan()
    assert bool(((a - b).abs()[ok] <= tol * b.abs()[ok].clamp(min=1)).all()), \
        float((a - b).abs()[ok].max())


# ----- known answers --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["cos", "cos_cubed", "wpmi", "soft_wpmi"])
def test_neuron_equal_to_concept_column_ranks_it_first(name: str) -> None:
    P = clustered()
    U = P.clone()  # neuron j == concept column j, a layer of 6 neurons
    out = S.similarities(P, U, names=[name], population="per_layer")[name]
    assert out.argmax(dim=1).tolist() == list(range(6))


@pytest.mark.parametrize("variant", ["and", "clip_dissect"])
def test_rank_reorder_zero_error_at_optimum(variant: str) -> None:
    P = clustered()
    cfg = S.RankReorderConfig(variant=variant)  # type: ignore[arg-type]
    out = S.rank_reorder(P, P.clone(), cfg)
    assert torch.equal(out.diagonal(), torch.zeros(6))  # err = 0 exactly
    off = out[~torch.eye(6, dtype=torch.bool)]
    assert bool((off < 0).all())
    assert out.argmax(dim=1).tolist() == list(range(6))


def test_rank_reorder_variants_agree_at_optimum_and_diverge_elsewhere() -> None:
    P, U = random_case()
    U = torch.cat([P, U], dim=1)  # first 9 neurons are at the optimum of their concept
    a = S.rank_reorder(P, U, S.RankReorderConfig(variant="and"))
    cd = S.rank_reorder(P, U, S.RankReorderConfig(variant="clip_dissect"))
    tie_free = slice(3, 9)  # columns 0-2 of P are rounded (tied values)
    assert torch.equal(a[:9].diagonal()[tie_free], torch.zeros(6))
    assert torch.equal(cd[:9].diagonal(), torch.zeros(9))
    # With tied evidence the single argsort (a permutation inverse, not ranks) misplaces tied
    # clips, so the authors' variant has a non-zero error even at the optimum.
    assert bool((a[:9].diagonal()[:3] < 0).all())
    finite = torch.isfinite(a) & torch.isfinite(cd)
    assert not torch.allclose(a[finite], cd[finite])


# ----- population -----------------------------------------------------------------------------
def numpy_wpmi_likelihood(P: torch.Tensor, U: torch.Tensor, cfg: S.WpmiConfig) -> np.ndarray:
    """Independent numpy L[n, M] = sum over top-k clips of log(softmax(aP) + min_prob)."""
    p, u = P.double().numpy(), U.double().numpy()
    q = np.exp(cfg.a * p - (cfg.a * p).max(axis=1, keepdims=True))
    q /= q.sum(axis=1, keepdims=True)
    k = min(cfg.top_k, p.shape[0])
    tops = [np.argsort(-u[:, j], kind="stable")[:k] for j in range(u.shape[1])]
    return np.stack([np.log(q[t] + cfg.min_prob).sum(axis=0) for t in tops])


def test_per_neuron_soft_wpmi_is_exactly_zero() -> None:
    P, U = random_case()
    out = S.soft_wpmi(P, U, population="per_neuron")
    assert torch.equal(out, torch.zeros_like(out))


def test_per_neuron_wpmi_is_scaled_likelihood() -> None:
    P, U = random_case()
    cfg = S.WpmiConfig()
    L = numpy_wpmi_likelihood(P, U, cfg)
    out = S.wpmi(P, U, cfg, population="per_neuron").double().numpy()
    np.testing.assert_allclose(out, (1 - cfg.lam) * L, rtol=1e-6, atol=1e-5)


def test_per_layer_wpmi_matches_numpy() -> None:
    P, U = random_case()
    cfg = S.WpmiConfig(top_k=17, lam=0.3)
    L = numpy_wpmi_likelihood(P, U, cfg)
    log_p = np.logaddexp.reduce(L, axis=0) - np.log(L.shape[0])
    out = S.wpmi(P, U, cfg, population="per_layer").double().numpy()
    np.testing.assert_allclose(out, L - cfg.lam * log_p, rtol=1e-6, atol=1e-5)


def test_wpmi_requires_population() -> None:
    P, U = random_case()
    with pytest.raises(ValueError, match="population"):
        S.similarities(P, U, names=["wpmi"])
    with pytest.raises(ValueError, match="population"):
        S.wpmi(P, U, population="per_block")  # type: ignore[arg-type]


# ----- edge cases -----------------------------------------------------------------------------
def test_cos_zero_norm_column_and_neuron_give_nan() -> None:
    P, U = random_case()
    P[:, 4] = 0.0
    U[:, 2] = 0.0
    out = S.cos(P, U)
    assert bool(out[:, 4].isnan().all()) and bool(out[2].isnan().all())
    assert int(out.isnan().sum()) == out.shape[0] + out.shape[1] - 1


def test_cos_cubed_dead_neuron_gives_zero_row() -> None:
    P, U = random_case()
    out = S.cos_cubed(P, U)
    assert torch.equal(out[9], torch.zeros(P.shape[1]))  # neuron 9 is constant
    assert bool(torch.isfinite(out).all())


def test_rank_reorder_without_top_clips_is_nan() -> None:
    P, U = random_case(n_clips=19)  # int(19 * 0.05) = 0
    assert bool(S.rank_reorder(P, U).isnan().all())
    assert bool(R.rank_reorder_loop(P, U).isnan().all())


def test_top_k_is_clamped_to_the_number_of_clips() -> None:
    P, U = random_case(n_clips=30)  # soft-WPMI top_k 100 > N
    assert_close(S.soft_wpmi(P, U, population="per_layer"),
                 R.soft_wpmi_loop(P, U, population="per_layer"))


def test_top_sorted_breaks_ties_by_lower_clip_index() -> None:
    u = torch.tensor([[0.0, 2.0, 1.0, 2.0, 1.0, 1.0, 0.0]])
    vals, idx = S.top_sorted(u, 4)
    assert idx.tolist() == [[1, 3, 2, 4]]
    assert vals.tolist() == [[2.0, 2.0, 1.0, 1.0]]


def test_invalid_inputs_raise_naming_the_field() -> None:
    P, U = random_case()
    with pytest.raises(ValueError, match="P has 400 clips"):
        S.cos(P, U[:10])
    bad = U.clone()
    bad[3, 5] = float("nan")
    with pytest.raises(ValueError, match="neuron 5"):
        S.cos_cubed(P, bad, chunk_size=4)
    with pytest.raises(ValueError, match="P: concept evidence"):
        S.cos(P * float("inf"), U)
    with pytest.raises(ValueError, match="unknown similarity"):
        S.similarities(P, U, names=["cosine"])
    with pytest.raises(ValueError, match="chunk_size"):
        S.cos(P, U, chunk_size=0)
    with pytest.raises(ValueError, match="p_end"):
        S.SoftWpmiConfig(p_start=0.9, p_end=0.95)


# ----- vectorised == loop ---------------------------------------------------------------------
@pytest.mark.parametrize("chunk_size", [1, 7, 64])
@pytest.mark.parametrize("population", ["per_layer", "per_neuron"])
def test_chunked_equals_loop(chunk_size: int, population: S.Population) -> None:
    P, U = random_case()
    out = S.similarities(P, U, population=population, chunk_size=chunk_size)
    for name, loop in loops(population).items():
        assert_close(out[name], loop(P, U))


def test_clip_dissect_rank_reorder_equals_loop() -> None:
    P, U = random_case()
    cfg = S.RankReorderConfig(variant="clip_dissect", p=2.0, top_fraction=0.1, scale_p=1.0)
    assert_close(S.rank_reorder(P, U.abs(), cfg, chunk_size=13),
                 R.rank_reorder_loop(P, U.abs(), cfg))


def test_soft_wpmi_table_and_direct_paths_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    P, U = random_case(n_clips=60, n=70)  # more neurons than clips: the table path
    table = S.soft_wpmi(P, U, population="per_layer")
    assert_close(table, R.soft_wpmi_loop(P, U, population="per_layer"))
    monkeypatch.setattr(S, "SOFT_TABLE_MAX_BYTES", 0)
    assert_close(S.soft_wpmi(P, U, population="per_layer", chunk_size=11), table, 1e-6)


def test_numpy_inputs_and_neuron_major_views_are_accepted() -> None:
    P, U = random_case()
    ref = S.similarities(P, U, population="per_layer")
    as_np = S.similarities(P.numpy(), U.numpy(), population="per_layer")
    view = S.similarities(P, U.T.contiguous().T, population="per_layer")
    for name in ALL:
        assert_close(as_np[name], ref[name], 1e-6)
        assert_close(view[name], ref[name], 1e-6)


# ----- determinism and regression -------------------------------------------------------------
def test_rank_reorder_is_seeded() -> None:
    P, U = random_case()
    a = S.rank_reorder(P, U, S.RankReorderConfig(seed=3))
    again = S.rank_reorder(P, U, S.RankReorderConfig(seed=3))
    torch.testing.assert_close(a, again, rtol=0, atol=0, equal_nan=True)  # bitwise
    b = S.rank_reorder(P, U, S.RankReorderConfig(seed=4))
    ok = torch.isfinite(a).all(dim=1) & torch.isfinite(b).all(dim=1)
    assert not torch.equal(a[ok], b[ok])
    assert torch.equal(a[ok].argmax(dim=1), b[ok].argmax(dim=1))  # B only rescales a row


def test_regression_baseline(ndarrays_regression) -> None:  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(42)
    P = torch.softmax(4 * torch.randn(120, 5, generator=g), dim=1)
    U = torch.randn(120, 8, generator=g) + P @ torch.randn(5, 8, generator=g)
    out = S.similarities(P, U, population="per_layer")
    out_dbref = S.similarities(P, U, names=["wpmi"], population="per_neuron")
    arrays = {name: out[name].double().numpy() for name in ALL}
    arrays["wpmi_per_neuron"] = out_dbref["wpmi"].double().numpy()
    ndarrays_regression.check(arrays, default_tolerance={"atol": 1e-5, "rtol": 1e-5})
