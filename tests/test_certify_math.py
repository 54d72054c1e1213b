"""The certificate's math: probe estimates against exact Jacobians, held norms, dFIL and the bounds built on it.

Every tolerance on an estimate comes from its distribution, not a magic number: for a fixed Jacobian each probe's
(J u)_i is N(0, g_i), so K g_hat_i / g_i is exactly chi-square with K degrees of freedom for every i (a union bound
over the D rows gives an interval that all of them fall in with probability 1 - ALPHA, however correlated); held
norms are compared with the exact ||J_s||_F^2 within SE_LIMIT of their own standard errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_examples import examples
from scipy import stats

from ifmsan import models
from ifmsan.certify import bound as B
from ifmsan.certify import probes as P
from ifmsan.certify.pixels import release_function
from ifmsan.core.hold import holding
from ifmsan.core.sanitize import SELECTORS
from ifmsan.models.fused import torch_form

ALPHA = 1e-3
"""Chance that a correct estimator fails a chi-square check (union bound over the rows)."""
SE_LIMIT = 5.0
"""A held-norm estimate must lie within this many of its standard errors of the exact value."""
PROBES = 64
WINDOWS = (2, 8, 64)
INDEX_SELECTORS = tuple(s for s in SELECTORS if s != "mean")
NETS = {
    # (model, layer, resolution): one early IFM each of alexnet_mini (pool1's output) and a tiny timm net
    "alexnet_mini:conv2": ("alexnet_mini", "conv2", 8),
    "timm:test_efficientnet:blocks.1.0": ("timm:test_efficientnet", "blocks.1.0", 4),
}


def identity(z: torch.Tensor) -> torch.Tensor:
    """The input layer's release: z flattened, J = I."""
    return z.reshape(z.shape[0], -1)


def small_net(seed: int = 0) -> P.Release:
    """A tiny nonlinear release (conv, tanh, max pool) for checks that need many exact Jacobians."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(4, 3, 3, 3, generator=generator)

    def release(z: torch.Tensor) -> torch.Tensor:
        out = torch.nn.functional.max_pool2d(torch.tanh(torch.nn.functional.conv2d(z, weight, padding=1)), 2)
        return out.reshape(z.shape[0], -1)

    return release


def ifm_of(release: P.Release, z: torch.Tensor) -> torch.Tensor:
    """The released IFM h(z), on which a holding is decided."""
    with torch.no_grad(), torch_form():
        return release(z[None])[0]


def chi_square_interval(count: int, rows: int) -> tuple[float, float]:
    """Where K g_hat_i / g_i lies for all `rows` rows at once with probability >= 1 - ALPHA."""
    low, high = stats.chi2.ppf([ALPHA / (2 * rows), 1 - ALPHA / (2 * rows)], count)
    return float(low), float(high)


@dataclass(frozen=True)
class Case:
    """One release at one image: its probes and its exact Jacobian."""

    release: P.Release
    z: torch.Tensor
    ifm: torch.Tensor
    products: torch.Tensor
    jacobian: torch.Tensor


@pytest.fixture(scope="module", params=list(NETS))
def case(request: pytest.FixtureRequest) -> Case:
    name, layer, resolution = NETS[request.param]
    release = release_function(models.load(name), layer=layer, resolution=resolution)
    z = torch.rand(3, resolution, resolution, generator=torch.Generator().manual_seed(1))
    products = P.probe_products(release, z, probes=PROBES, seed=0)
    return Case(release, z, ifm_of(release, z), products, P.exact_jacobian(release, z))


def exact_held(jacobian: torch.Tensor, hold: object) -> float:
    """||J_s||_F^2 from the full Jacobian: the holding applied to its columns."""
    return float(hold.apply(jacobian.T).square().sum())  # type: ignore[attr-defined]


# --- probes against the exact Jacobian ---------------------------------------------------------------------------


def test_row_norm_estimates_follow_their_chi_square_law(case: Case) -> None:
    exact = case.jacobian.square().sum(dim=1)
    estimate = P.row_norms(case.products)
    assert estimate.dtype == torch.float64 and estimate.shape == exact.shape == (case.ifm.numel(),)
    assert torch.equal(estimate[exact == 0], torch.zeros_like(estimate[exact == 0]))  # dead units: exactly 0
    live = exact > 0
    low, high = chi_square_interval(PROBES, int(live.sum()))
    ratios = PROBES * estimate[live] / exact[live]
    assert low <= float(ratios.min()) and float(ratios.max()) <= high
    total, se = P.held_norm(case.products, holding(case.ifm, 1, select="first"))  # n = 1: J_s = J
    assert total == pytest.approx(float(estimate.sum()), rel=1e-12)
    assert abs(total - float(exact.sum())) <= SE_LIMIT * se


@pytest.mark.parametrize("window", WINDOWS)
def test_the_gather_of_row_norms_is_the_held_norm_for_index_selectors(case: Case, window: int) -> None:
    norms = P.row_norms(case.products)
    for select in INDEX_SELECTORS:
        hold = holding(case.ifm, window, select=select, seed=3)
        assert P.gathered_norm(norms, hold) == pytest.approx(P.held_norm(case.products, hold)[0], rel=1e-12)


@pytest.mark.parametrize("window", WINDOWS)
def test_held_norm_is_within_a_few_standard_errors_of_the_exact_one(case: Case, window: int) -> None:
    for select in SELECTORS:
        hold = holding(case.ifm, window, select=select, seed=3)
        estimate, se = P.held_norm(case.products, hold)
        exact = exact_held(case.jacobian, hold)
        assert se > 0 and abs(estimate - exact) <= SE_LIMIT * se, (select, estimate, se, exact)


def test_exact_jacobian_matches_autograd_and_both_exact_held_norms_agree() -> None:
    release = small_net()
    z = torch.rand(3, 6, 6, generator=torch.Generator().manual_seed(2))
    jacobian = P.exact_jacobian(release, z, chunk=7)
    reference = torch.autograd.functional.jacobian(lambda flat: release(flat.view(1, *z.shape))[0], z.reshape(-1))
    assert jacobian.shape == (4 * 3 * 3, z.numel())
    assert torch.allclose(jacobian, reference.to(torch.float64), rtol=1e-6, atol=1e-7)
    assert torch.allclose(P.exact_row_norms(release, z, chunk=5), jacobian.square().sum(dim=1), rtol=1e-12, atol=0)
    for select in SELECTORS:
        for window in (1, 3, 100):
            hold = holding(ifm_of(release, z), window, select=select, seed=1)
            expected = exact_held(jacobian, hold)
            assert P.exact_held_norm(release, z, hold, chunk=4) == pytest.approx(expected, rel=1e-12)
            assert P.exact_held_norm(release, z, hold, method="rows", chunk=4) == pytest.approx(expected, rel=1e-5)


def test_probes_are_seeded_and_chunking_changes_only_the_batching() -> None:
    release = small_net()
    z = torch.rand(3, 6, 6, generator=torch.Generator().manual_seed(2))
    first = P.probe_products(release, z, probes=10, seed=4, chunk=3)
    assert first.shape == (10, 36) and first.dtype == torch.float32
    assert torch.equal(first, P.probe_products(release, z, probes=10, seed=4, chunk=3))
    assert torch.allclose(first, P.probe_products(release, z, probes=10, seed=4, chunk=10), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(first, P.probe_products(release, z, probes=10, seed=5, chunk=3))
    fewer = P.probe_products(release, z, probes=4, seed=4, chunk=3)  # a prefix of the same draws
    assert torch.allclose(fewer, first[:4], rtol=1e-5, atol=1e-6)


def test_row_norm_errors_are_the_spread_of_the_squares() -> None:
    products = torch.tensor([[1.0, 0.0], [3.0, 2.0], [0.0, 2.0]])
    assert P.row_norms(products).tolist() == pytest.approx([10 / 3, 8 / 3])
    squares = products.double().square()
    assert P.row_norm_errors(products).tolist() == pytest.approx((squares.std(dim=0) / math.sqrt(3)).tolist())


# --- the input layer: J = I --------------------------------------------------------------------------------------


@pytest.mark.parametrize("select", SELECTORS)
def test_at_the_input_layer_with_window_1_dfil_is_one_over_sigma_squared(select: str) -> None:
    z = torch.rand(3, 5, 4, generator=torch.Generator().manual_seed(0))
    norm = P.exact_held_norm(identity, z, holding(z, 1, select=select))
    assert norm == z.numel()
    for sigma in (0.01, 0.5, 3.0):
        assert B.dfil(norm, sigma=sigma, dims=z.numel(), noise="hold_gaussian") == pytest.approx(
            1 / sigma**2, rel=1e-14
        )


@settings(max_examples=examples(100), deadline=None)
@given(
    height=st.integers(1, 6), width=st.integers(1, 6), window=st.integers(1, 120), select=st.sampled_from(SELECTORS),
    sigma=st.floats(1e-3, 1e3), seed=st.integers(0, 2**16), zeros=st.booleans(),
)  # fmt: skip
def test_at_the_input_layer_dfil_counts_the_released_windows(
    height: int, width: int, window: int, select: str, sigma: float, seed: int, zeros: bool
) -> None:
    generator = torch.Generator().manual_seed(seed)
    z = 0.1 + 0.9 * torch.rand(3, height, width, generator=generator, dtype=torch.float64)
    if zeros:  # post-ReLU-like: some all-zero windows, which nonzero_mean passes through sample by sample
        z = z * (torch.rand(z.shape, generator=generator, dtype=torch.float64) < 0.5)
    d = z.numel()
    hold = holding(z, window, select=select, seed=seed)
    norm = P.exact_held_norm(identity, z, hold, chunk=32)
    if select == "mean":  # a window mean has the row 1/len on its samples: norm 1/len per window
        assert norm == pytest.approx(float((1.0 / hold.lengths.double()).sum()), rel=1e-12)
    else:  # a gather keeps one row of I per released quantity
        assert norm == hold.released
        if not zeros:
            m = math.ceil(d / window)
            assert hold.released == m
            assert B.dfil(norm, sigma=sigma, dims=d, noise="hold_gaussian") == pytest.approx(
                (m / d) / sigma**2, rel=1e-12
            )


# --- dFIL and the bounds -----------------------------------------------------------------------------------------

norms_ = st.one_of(st.just(0.0), st.floats(1e-12, 1e12))  # no subnormal results: they lose relative precision
sigmas = st.floats(1e-4, 1e4)
dims_ = st.integers(1, 10**6)
families = st.sampled_from(("hold_gaussian", "gaussian", "laplace"))


@settings(max_examples=examples(200), deadline=None)
@given(norm=norms_, sigma=sigmas, dims=dims_, noise=families)
def test_doubling_sigma_divides_dfil_by_four(norm: float, sigma: float, dims: int, noise: str) -> None:
    once = B.dfil(norm, sigma=sigma, dims=dims, noise=noise)
    twice = B.dfil(norm, sigma=2 * sigma, dims=dims, noise=noise)
    assert once is not None and twice is not None
    assert twice == pytest.approx(once / 4, rel=1e-12, abs=0)


@settings(max_examples=examples(200), deadline=None)
@given(norm=norms_, sigma=sigmas, dims=dims_)
def test_laplace_gives_twice_the_gaussian_information_at_equal_std(norm: float, sigma: float, dims: int) -> None:
    gaussian = B.dfil(norm, sigma=sigma, dims=dims, noise="gaussian")
    assert gaussian is not None
    assert B.dfil(norm, sigma=sigma, dims=dims, noise="laplace") == pytest.approx(2 * gaussian, rel=1e-12, abs=0)
    assert B.dfil(norm, sigma=sigma, dims=dims, noise="hold_gaussian") == gaussian
    assert gaussian == pytest.approx(norm / (sigma**2 * dims), rel=1e-12, abs=0)


def test_a_deterministic_release_has_no_bound() -> None:
    for select in SELECTORS:
        assert B.noise_family(select) == "deterministic"
        assert B.dfil(10.0, sigma=None, dims=5, noise=B.noise_family(select)) is None
    assert B.dfil(10.0, sigma=0.0, dims=5, noise="hold_gaussian") is None  # no noise at all
    assert B.mse_floor(None) is None and B.psnr_ceiling(None) is None
    bound = B.Bound.from_held_norm(10.0, se=1.0, sigma=None, dims=5, noise="deterministic")
    assert not bound.certified and bound.text == B.NO_BOUND == "no bound (deterministic release)"
    assert (bound.dfil, bound.mse_floor, bound.psnr_ceiling, bound.psnr_ceiling_se) == (None, None, None, None)
    assert [B.noise_family(k) for k in ("hold_gaussian", "gaussian", "laplace")] == [
        "hold_gaussian",
        "gaussian",
        "laplace",
    ]


def test_floor_and_ceiling_by_hand() -> None:
    assert B.mse_floor(100.0) == pytest.approx(0.01) and B.psnr_ceiling(0.01) == pytest.approx(20.0)
    assert B.mse_floor(0.0) == math.inf and B.psnr_ceiling(math.inf) == -math.inf
    bound = B.Bound.from_held_norm(400.0, se=0.0, sigma=0.5, dims=16, noise="gaussian")  # dFIL = 400 / (0.25 * 16)
    assert bound.dfil == pytest.approx(100.0) and bound.mse_floor == pytest.approx(0.01)
    assert bound.psnr_ceiling == pytest.approx(20.0) and bound.certified
    assert (bound.dfil_se, bound.mse_floor_se, bound.psnr_ceiling_se) == (0.0, 0.0, 0.0)
    assert bound.text == "MSE per pixel >= 0.01, PSNR <= 20.00 dB (unbiased attacker)"


@settings(max_examples=examples(200), deadline=None)
@given(norm=st.floats(1e-6, 1e9), relative=st.floats(1e-6, 0.2), sigma=sigmas, dims=dims_, noise=families)
def test_standard_errors_follow_the_delta_method(
    norm: float, relative: float, sigma: float, dims: int, noise: str
) -> None:
    se = norm * relative
    bound = B.Bound.from_held_norm(norm, se=se, sigma=sigma, dims=dims, noise=noise)
    assert bound.dfil is not None and bound.mse_floor is not None and bound.psnr_ceiling is not None
    step = norm * 1e-6  # numerical derivatives of each quantity in the held norm, times its se
    after = B.Bound.from_held_norm(norm + step, sigma=sigma, dims=dims, noise=noise)
    before = B.Bound.from_held_norm(norm - step, sigma=sigma, dims=dims, noise=noise)
    for name in ("dfil", "mse_floor", "psnr_ceiling"):
        slope = (getattr(after, name) - getattr(before, name)) / (2 * step)
        assert getattr(bound, f"{name}_se") == pytest.approx(abs(slope) * se, rel=1e-4), name
    assert bound.psnr_ceiling == pytest.approx(10 * math.log10(bound.dfil), rel=1e-12, abs=1e-9)


@settings(max_examples=examples(200), deadline=None)
@given(information=st.floats(1e-6, 1e6), prior=st.floats(0, 1e6), dims=dims_)
def test_the_van_trees_floor_lies_below_the_cramer_rao_floor(information: float, prior: float, dims: int) -> None:
    floor = B.van_trees_floor(information * dims, prior_trace=prior, dims=dims)
    assert floor <= 1 / information * (1 + 1e-12)
    assert B.van_trees_floor(information * dims, prior_trace=0.0, dims=dims) == pytest.approx(
        1 / information, rel=1e-12
    )


def test_gaussian_prior_traces_agree_across_forms() -> None:
    variances = torch.tensor([0.5, 2.0, 4.0], dtype=torch.float64)
    assert B.gaussian_prior_trace(0.25, dims=3) == pytest.approx(12.0)
    assert B.gaussian_prior_trace(variances) == pytest.approx(2 + 0.5 + 0.25)
    rotation, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    covariance = rotation @ torch.diag(variances) @ rotation.T
    assert B.gaussian_prior_trace(covariance) == pytest.approx(2.75, rel=1e-10)
    assert B.van_trees_floor(0.0, prior_trace=B.gaussian_prior_trace(0.25, dims=3), dims=3) == pytest.approx(0.25)


# --- bad input -----------------------------------------------------------------------------------------------------


def refusing_release(z: torch.Tensor) -> torch.Tensor:
    """A release that must not be called: bad input is refused before any work."""
    raise AssertionError("the release ran although the input was bad")


Z = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(0))
HOLD = holding(Z, 2)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: P.probe_products(refusing_release, Z, probes=0, seed=0), "probes must be an integer >= 1, got 0"),
        (lambda: P.probe_products(refusing_release, Z, probes=2, seed=-1), "seed must be an integer >= 0, got -1"),
        (lambda: P.probe_products(refusing_release, Z, probes=2, seed=0, chunk=0), "chunk must be an integer >= 1"),
        (lambda: P.probe_products(refusing_release, Z[0], probes=2, seed=0), "z must be one non-empty image (C, H, W)"),
        (lambda: P.probe_products(refusing_release, Z * math.nan, probes=2, seed=0), "z contains NaN or infinite"),
        (lambda: P.probe_products(refusing_release, Z.long(), probes=2, seed=0), "z must have a floating-point dtype"),
        (lambda: P.probe_products("net", Z, probes=2, seed=0), "release must be a callable"),
        (lambda: P.probe_products(lambda z: z, Z, probes=2, seed=0), "release must map a batch of 2 images to (2, D)"),
        (lambda: P.held_norm(torch.ones(1, 48), HOLD), "products must hold at least 2 probe(s)"),
        (lambda: P.held_norm(torch.ones(3, 47), HOLD), "holding is over 48 samples, but the release has D = 47"),
        (lambda: P.held_norm(torch.ones(3, 48), "first"), "holding must be an ifmsan.core.hold.Holding"),
        (lambda: P.row_norms(torch.ones(48)), "products must be a floating-point tensor (probes, D)"),
        (lambda: P.gathered_norm(torch.ones(48), holding(Z, 2, select="mean")), "needs the probes: use held_norm"),
        (lambda: P.exact_held_norm(refusing_release, Z, HOLD, method="both"), "method must be one of columns, rows"),
        (lambda: B.dfil(1.0, sigma=1.0, dims=4, noise="uniform"), "noise must be one of hold_gaussian, gaussian"),
        (lambda: B.dfil(-1.0, sigma=1.0, dims=4, noise="gaussian"), "held_norm must be a finite number >= 0, got -1.0"),
        (lambda: B.dfil(1.0, sigma=None, dims=4, noise="gaussian"), "sigma must be given for noise 'gaussian'"),
        (lambda: B.dfil(1.0, sigma=1.0, dims=4, noise="deterministic"), "sigma must be None or 0 for a deterministic"),
        (lambda: B.dfil(1.0, sigma=math.inf, dims=4, noise="laplace"), "sigma must be a finite number >= 0, got inf"),
        (lambda: B.dfil(1.0, sigma=1.0, dims=0, noise="gaussian"), "dims must be an integer >= 1"),
        (lambda: B.Bound.from_held_norm(1.0, se=-1.0, sigma=1.0, dims=4, noise="gaussian"), "se must be a finite number >= 0"),
        (lambda: B.gaussian_prior_trace(torch.tensor([[1.0, 2.0], [2.0, 1.0]])), "symmetric positive definite"),
        (lambda: B.gaussian_prior_trace(0.5), "dims must be given with a scalar covariance"),
        (lambda: B.noise_family("blur"), "knob must be one of nonzero_mean"),
    ],
    ids=[
        "probes_zero", "seed_negative", "chunk_zero", "z_not_one_image", "z_nan", "z_integer_dtype",
        "release_not_callable", "release_wrong_output_shape", "held_norm_one_probe", "held_norm_wrong_d",
        "held_norm_holding_a_string", "row_norms_one_dimensional", "gathered_norm_mean_selector",
        "exact_held_norm_unknown_method", "dfil_unknown_noise", "dfil_negative_held_norm",
        "dfil_gaussian_without_sigma", "dfil_deterministic_with_sigma", "dfil_infinite_sigma", "dfil_zero_dims",
        "bound_negative_se", "prior_not_positive_definite", "prior_scalar_without_dims", "noise_family_unknown",
    ],
)  # fmt: skip
def test_bad_input_is_refused_with_a_message_that_says_what_was_expected(call, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        call()
    assert message in str(caught.value)


# --- slow: a deeper layer, both exact modes, and a timm ResNet -----------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("name", "layer"), [("alexnet_mini", "conv3"), ("timm:test_resnet", "conv1.3")])
def test_deeper_layers_rows_and_columns_agree_and_probes_cover_them(name: str, layer: str) -> None:
    release = release_function(models.load(name), layer=layer, resolution=8)
    z = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(5))
    ifm = ifm_of(release, z)
    hold = holding(ifm, 64, select="nonzero_mean")
    by_columns = P.exact_held_norm(release, z, hold)
    assert P.exact_held_norm(release, z, hold, method="rows", chunk=32) == pytest.approx(by_columns, rel=1e-4)
    products = P.probe_products(release, z, probes=128, seed=1)
    estimate, se = P.held_norm(products, hold)
    assert abs(estimate - by_columns) <= SE_LIMIT * se
    exact = P.exact_row_norms(release, z)
    live = exact > 0
    low, high = chi_square_interval(128, int(live.sum()))
    ratios = 128 * P.row_norms(products)[live] / exact[live]
    assert low <= float(ratios.min()) and float(ratios.max()) <= high
