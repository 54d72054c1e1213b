"""Metrics on hand-made curves whose answers are worked out by hand, plus naive loop references under hypothesis."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_examples import examples

import ifmsan
from ifmsan.core import metrics

# A curve over windows 2..8 with binary-fraction probabilities, so every comparison with p0/2^γ is exact.
#   n:  2     3    4      5    6      7     8
#   p:  0.75  0.5  0.375  0.5  0.125  0.25  0.0625      p0 = 0.75
VALUES = np.arange(2, 9)
PROBS = np.array([0.75, 0.5, 0.375, 0.5, 0.125, 0.25, 0.0625])
P0 = 0.75


def test_eff_san_is_reexported_and_counts_distinct_rounded_values() -> None:
    assert ifmsan.eff_san is metrics.eff_san
    assert ifmsan.eff_san([0.5, 0.5, 0.25, 0.1249999], decimals=4) == 3 / 4  # 0.1249999 -> 0.125
    assert metrics.eff_san([0.5, 0.5, 0.25, 0.125, 0.1249999]) == 3 / 5  # default decimals = 4
    assert metrics.eff_san([0.5, 0.5, 0.25, 0.125, 0.1249999], decimals=7) == 4 / 5
    assert metrics.eff_san([0.3]) == 1.0
    assert ifmsan.eff_san(torch.tensor([0.5, 0.5, 0.25, 0.1249999], dtype=torch.float64)) == 3 / 4


def test_rounding_is_numpy_half_even_on_the_scaled_value() -> None:
    # 0.25*10 = 2.5 -> 2 (half to even); 0.45*10 == 4.5 -> 4 (Python's round(0.45, 1) gives 0.5);
    # 0.35*10 == 3.5 -> 4
    assert metrics.round_probabilities([0.25, 0.45, 0.35], decimals=1).tolist() == [0.2, 0.4, 0.4]
    assert metrics.eff_san([0.25, 0.45, 0.35], decimals=1) == 2 / 3
    assert metrics.round_probabilities([0.5, 0.49, 1.0], decimals=0).tolist() == [0.0, 0.0, 1.0]


def test_eff_san_of_the_papers_pool5_size() -> None:
    # 149 windows (2..150), 120 distinct values -> 120/149 = 0.805..., shown as 0.81 in Table 1
    distinct = np.linspace(0.999, 0.001, 120)
    probs = np.concatenate([distinct, np.full(29, distinct[-1])])
    assert probs.size == 149
    assert metrics.eff_san(probs) == pytest.approx(120 / 149)
    assert f"{metrics.eff_san(probs):.2f}" == "0.81"


def test_distinct_summary_bins_the_rounded_distinct_values() -> None:
    probs = [0.0, 0.0, 0.19994, 0.19996, 0.5, 0.79996, 0.8, 1.0, 0.99999]
    # rounded to 4: 0, 0, 0.1999, 0.2, 0.5, 0.8, 0.8, 1.0, 1.0 -> distinct {0, 0.1999 | 0.2, 0.5 | 0.8, 1.0}
    summary = metrics.distinct_summary(probs, decimals=4)
    assert (summary.n_distinct, summary.n_range, summary.bins) == (6, 9, (2, 2, 2))
    assert summary.eff_san == 6 / 9
    # at 6 decimals: 0.19996 stays low, 0.79996 mid, 0.99999 high
    assert metrics.distinct_summary(probs, decimals=6).bins == (3, 2, 3)


def test_table1_row_fields() -> None:
    probs = [0.5, 0.501, 0.5001, 0.50001, 0.500001]
    row = metrics.table1_row(probs, zero_ratio=38128 / 43264, ifm_size=43264)
    assert row["n_zeros"] == 38128 and row["ifm_size"] == 43264
    assert (row["eff_san_2"], row["eff_san_3"], row["eff_san_4"], row["eff_san_6"]) == (1 / 5, 2 / 5, 3 / 5, 5 / 5)
    assert (row["distinct_0.0_0.2"], row["distinct_0.2_0.8"], row["distinct_0.8_1.0"]) == (0, 3, 0)
    assert metrics.table1_row(probs)["n_zeros"] is None


def test_privacy_loss_is_ln_ratio_and_inf_at_zero() -> None:
    eps = metrics.privacy_loss([0.8, 0.4, 0.1, 0.0], p0=0.8)
    assert eps[:3] == pytest.approx([0.0, math.log(2), math.log(8)])
    assert math.isinf(eps[3]) and eps[3] > 0


@pytest.mark.parametrize(
    ("gamma", "expected"),
    [(0.25, 3), (1.0, 4), (2.0, 6), (3.0, 8), (4.0, None)],
)
def test_n_star_for_gamma_on_the_hand_curve(gamma: float, expected: int | None) -> None:
    # bounds 0.75 / 2^γ: 0.75, 0.6307, 0.375 (met with equality at n=4), 0.1875, 0.09375, 0.046875 (below min p)
    assert metrics.n_star_for_gamma(VALUES, PROBS, p0=P0, gamma=gamma) == expected
    shuffled = np.random.default_rng(1).permutation(VALUES.size)
    assert metrics.n_star_for_gamma(VALUES[shuffled], PROBS[shuffled], p0=P0, gamma=gamma) == expected


def test_trend_inversions_on_the_hand_curve() -> None:
    inversions = metrics.trend_inversions(VALUES, PROBS)
    assert inversions.count == 2  # 0.375 -> 0.5 at n=5, 0.125 -> 0.25 at n=7
    assert inversions.total_rise == pytest.approx(0.25)
    assert inversions.at == (5, 7)
    assert metrics.trend_inversions([2, 3, 4], [0.5, 0.5, 0.4]).count == 0  # a flat step is not an inversion


def test_unsafe_windows_past_the_knob() -> None:
    assert metrics.unsafe_past_knob(VALUES, PROBS, p0=P0, gamma=1.0) == (5,)  # n*=4; p(5)=0.5 > 0.375
    assert metrics.unsafe_past_knob(VALUES, PROBS, p0=P0, gamma=2.0) == (7,)  # n*=6; p(7)=0.25 > 0.1875
    assert metrics.unsafe_past_knob(VALUES, PROBS, p0=P0, gamma=0.25) == ()
    assert metrics.unsafe_past_knob(VALUES, PROBS, p0=P0, gamma=4.0) == ()  # no n*, nothing "past" it


def test_gamma_max() -> None:
    assert metrics.gamma_max(PROBS, p0=P0) == pytest.approx(math.log2(12.0))  # 0.75 / 0.0625
    assert metrics.gamma_max([0.5, 0.0], p0=0.5) == math.inf
    assert metrics.gamma_max([0.9], p0=0.45) == pytest.approx(-1.0)


def test_gamma_check_verdicts() -> None:
    met = metrics.gamma_check(VALUES, PROBS, p0=P0, gamma=1.0)
    assert met.reachable and met.n_star == 4 and met.bound == 0.375
    assert met.p_at_n_star == 0.375 and met.epsilon_at_n_star == pytest.approx(math.log(2))
    assert met.unsafe == (5,) and met.inversions.count == 2
    assert met.verdict == "met at n*=4; UNSAFE past n*: 1 value(s) with p > bound"
    assert metrics.gamma_check(VALUES, PROBS, p0=P0, gamma=3.0).verdict == "met at n*=8"
    missed = metrics.gamma_check(VALUES, PROBS, p0=P0, gamma=4.0)
    assert not missed.reachable and missed.epsilon_at_n_star is None
    assert missed.verdict == "not reachable in range 2..8 (gamma_max=3.585)"
    scales = metrics.gamma_check([0.0, 0.5, 1.0], [0.8, 0.3, 0.5], p0=0.8, gamma=1.0, parameter="scale")
    assert scales.n_star == 0.5 and isinstance(scales.n_star, float)
    assert scales.verdict == "met at scale*=0.5; UNSAFE past scale*: 1 value(s) with p > bound"
    zero = metrics.gamma_check([2, 3], [0.6, 0.0], p0=0.6, gamma=2.0)
    assert zero.n_star == 3 and zero.epsilon_at_n_star == math.inf


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: metrics.eff_san([0.5, float("nan")]), "probabilities"),
        (lambda: metrics.eff_san([0.5, 1.2]), "probabilities"),
        (lambda: metrics.eff_san([]), "non-empty"),
        (lambda: metrics.eff_san([[0.5]]), "1-D"),
        (lambda: metrics.eff_san([0.5], decimals=-1), "decimals"),
        (lambda: metrics.eff_san([0.5], decimals=True), "decimals"),
        (lambda: metrics.eff_san([0.5], decimals=2.0), "decimals"),
        (lambda: metrics.n_star_for_gamma([2, 3], [0.5, 0.4], p0=0.5, gamma=-1), "gamma"),
        (lambda: metrics.n_star_for_gamma([2, 3], [0.5, 0.4], p0=0.5, gamma=0.0), "gamma must be a finite number > 0"),
        (lambda: metrics.eff_san([0.5], decimals=13), "decimals must be an integer in 0..12"),
        (lambda: metrics.n_star_for_gamma([2, 3], [0.5, 0.4], p0=0.5, gamma=math.inf), "gamma"),
        (lambda: metrics.n_star_for_gamma([2, 3], [0.5, 0.4], p0=0.0, gamma=1), "p0"),
        (lambda: metrics.n_star_for_gamma([2, 3, 4], [0.5, 0.4], p0=0.5, gamma=1), "as long as"),
        (lambda: metrics.trend_inversions([2, 2], [0.5, 0.4]), "repeat"),
        (lambda: metrics.table1_row([0.5], zero_ratio=1.5), "zero_ratio"),
    ],
)
def test_bad_input_is_a_clear_value_error(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


# Naive references: straight loops over the definitions in docs/definitions.md.
def naive_n_star(values, probs, p0, gamma):
    for n, p in sorted(zip(values, probs, strict=False)):
        if p <= p0 / 2**gamma:
            return n
    return None


def naive_inversions(values, probs):
    pairs = sorted(zip(values, probs, strict=False))
    rises = [b[1] - a[1] for a, b in zip(pairs, pairs[1:], strict=False) if b[1] > a[1]]
    return len(rises), sum(rises)


def naive_unsafe(values, probs, p0, gamma):
    star = naive_n_star(values, probs, p0, gamma)
    if star is None:
        return ()
    return tuple(n for n, p in sorted(zip(values, probs, strict=False)) if n > star and p > p0 / 2**gamma)


curves = st.lists(st.floats(0.0, 1.0), min_size=1, max_size=40)


@settings(max_examples=examples(150), deadline=None)
@given(probs=curves, p0=st.floats(0.01, 1.0), gamma=st.sampled_from([0.25, 0.5, 1.0, 2.0, 3.0, 4.0]))
def test_metrics_agree_with_naive_loops(probs: list[float], p0: float, gamma: float) -> None:
    values = list(range(2, 2 + len(probs)))[::-1]  # reversed: the metrics must sort by window
    star = metrics.n_star_for_gamma(values, probs, p0=p0, gamma=gamma)
    assert star == naive_n_star(values, probs, p0, gamma)
    inversions = metrics.trend_inversions(values, probs)
    count, rise = naive_inversions(values, probs)
    assert inversions.count == count and inversions.total_rise == pytest.approx(rise)
    assert metrics.unsafe_past_knob(values, probs, p0=p0, gamma=gamma) == naive_unsafe(values, probs, p0, gamma)
    top = metrics.gamma_max(probs, p0=p0)
    if abs(gamma - top) > 1e-9:  # away from the float boundary, γ is reachable exactly when γ <= γ_max
        assert (star is not None) == (gamma <= top)
    assert metrics.eff_san(probs) == len({round(float(np.round(p, 4)), 12) for p in probs}) / len(probs)
