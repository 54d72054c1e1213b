"""The vectorized sanitizer against a deliberately naive transcription of Algorithm 1 and its baselines."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_examples import examples

import ifmsan
from ifmsan.core.knobs import get_knob
from ifmsan.testing import naive_algorithm1, naive_baseline


def c_order_stream(array: np.ndarray) -> list[float]:
    """Width fastest, then height, then channel: the paper's streamization, by explicit loops."""
    if array.ndim != 3:
        return [float(v) for v in array.reshape(-1)]
    channels, height, width = array.shape
    return [float(array[c, h, w]) for c in range(channels) for h in range(height) for w in range(width)]


# Dyadic values keep every sum exact, so ties are real ties and rounding cannot decide them.
dyadic = st.integers(min_value=-16, max_value=16).map(lambda k: k / 4)
sparse_value = st.one_of(st.just(0.0), st.just(0.0), dyadic)
shapes = st.one_of(
    st.tuples(st.integers(1, 40)),
    st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 6)),
    st.tuples(st.integers(1, 3), st.integers(1, 4)),
    st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)),
)


@st.composite
def sparse_arrays(draw: st.DrawFn) -> np.ndarray:
    shape = draw(shapes)
    size = int(np.prod(shape))
    values = draw(st.lists(sparse_value, min_size=size, max_size=size))
    return np.array(values, dtype=np.float32).reshape(shape)


@settings(max_examples=examples(200), deadline=None)
@given(array=sparse_arrays(), data=st.data())
def test_algorithm1_equals_naive_reference_for_every_window(array: np.ndarray, data: st.DataObject) -> None:
    n_samples = array.size
    window = data.draw(st.integers(1, n_samples + 1), label="window")
    expected = np.array(naive_algorithm1(c_order_stream(array), window), dtype=np.float32)
    got = ifmsan.sample_and_hold(torch.from_numpy(array), window)
    assert got.shape == array.shape and got.dtype == torch.float32
    np.testing.assert_array_equal(got.numpy().reshape(-1), expected)


@pytest.mark.parametrize("shape", [(7,), (3, 5, 4), (2, 3), (2, 3, 2, 5), (96, 5, 5)])
def test_every_window_from_1_to_n_plus_1_on_random_sparse_floats(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(sum(shape))
    array = rng.normal(size=shape).astype(np.float32)
    array[rng.random(shape) < 0.6] = 0.0
    array.reshape(-1)[: min(3, array.size)] = 0.0  # an all-zero leading window for small n
    stream = c_order_stream(array)
    windows = list(range(1, array.size + 2))
    swept = ifmsan.sample_and_hold_sweep(torch.from_numpy(array), windows)
    for row, window in enumerate(windows):
        expected = np.array(naive_algorithm1(stream, window), dtype=np.float32)
        np.testing.assert_array_equal(swept[row].numpy().reshape(-1), expected, err_msg=f"window {window}")


@pytest.mark.parametrize("select", ["first", "mean"])
@pytest.mark.parametrize("window", [1, 2, 3, 7, 60, 61])
def test_baselines_equal_naive_reference(select: str, window: int) -> None:
    rng = np.random.default_rng(window)
    array = rng.integers(-8, 8, size=(3, 4, 5)).astype(np.float64) / 4
    expected = np.array(naive_baseline(c_order_stream(array), window, select))
    got = ifmsan.sample_and_hold(torch.from_numpy(array), window, select=select)
    np.testing.assert_array_equal(got.numpy().reshape(-1), expected)


def test_hand_worked_examples_of_algorithm1() -> None:
    stream = torch.tensor([0.0, 1.0, 3.0, 0.0, 2.0, 0.0, 0.0, 0.0, 5.0, -1.0, 4.0])
    # n=4: [0,1,3,0] mean(1,3)=2, tie 1 vs 3 -> 1 (earliest); [2,0,0,0] -> 2; tail [5,-1,4] mean 8/3 -> 4
    expected4 = [1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 4.0, 4.0, 4.0]
    assert ifmsan.sample_and_hold(stream, 4).tolist() == expected4
    # n=3: [0,1,3] -> 1; [0,2,0] -> 2; [0,0,5] -> 5; tail [-1,4] mean 1.5, tie 2.5 each -> -1
    expected3 = [1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 5.0, 5.0, 5.0, -1.0, -1.0]
    assert ifmsan.sample_and_hold(stream, 3).tolist() == expected3
    # an all-zero window stays as it is
    zeros = torch.tensor([0.0, 0.0, 0.0, 7.0, 8.0, 9.0])
    assert ifmsan.sample_and_hold(zeros, 3).tolist() == [0.0, 0.0, 0.0, 8.0, 8.0, 8.0]
    # window 1 is the identity; a window longer than the stream holds one value everywhere
    assert ifmsan.sample_and_hold(stream, 1).tolist() == stream.tolist()
    assert ifmsan.sample_and_hold(stream, 100).tolist() == [2.0] * 11  # mean(1,3,2,5,-1,4)=14/6 -> 2


def test_stream_is_width_then_height_then_channel() -> None:
    ifm = torch.zeros(2, 2, 3)
    ifm[0, 0, 2] = 9.0  # stream index 2
    ifm[0, 1, 0] = 4.0  # stream index 3
    out = ifmsan.sample_and_hold(ifm, 3)
    assert out[0, 0].tolist() == [9.0, 9.0, 9.0]
    assert out[0, 1].tolist() == [4.0, 4.0, 4.0]
    assert out[1].abs().sum() == 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dtype_and_shape_preserved_and_values_come_from_the_window(dtype: torch.dtype) -> None:
    ifm = torch.randn(4, 6, 6).relu().to(dtype)
    out = ifmsan.sample_and_hold(ifm, 5)
    assert out.dtype == dtype and out.shape == ifm.shape
    flat_in, flat_out = ifm.reshape(-1), out.reshape(-1)
    for start in range(0, flat_in.numel(), 5):
        assert bool(torch.isin(flat_out[start], flat_in[start : start + 5]))


def test_numpy_in_numpy_out() -> None:
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = ifmsan.sample_and_hold(array, 4)
    assert isinstance(out, np.ndarray) and out.shape == (3, 4)
    assert out[0].tolist() == [2.0] * 4  # zero excluded: mean of 1, 2, 3 is 2
    assert out[1].tolist() == [5.0] * 4  # mean of 4..7 is 5.5: 5 and 6 tie, the earlier wins


@pytest.mark.parametrize("knob_name", ifmsan.KNOBS)
def test_sweep_equals_stacking_single_calls(knob_name: str) -> None:
    ifm = torch.randn(5, 7, 7).relu()
    knob = get_knob(knob_name, seed=3)
    values = [2, 3, 5, 11, 150] if knob.parameter == "window" else [0.0, 0.5, 2.0]
    swept = knob.apply_batch(ifm, values)
    assert swept.shape == (len(values), *ifm.shape)
    for row, value in enumerate(values):
        assert torch.equal(swept[row], knob.apply(ifm, value))
    # the same values in another order and batch give the same rows (no batch-dependent state)
    reversed_rows = knob.apply_batch(ifm, values[::-1])
    assert torch.equal(reversed_rows.flip(0), swept)


def test_random_selector_is_seeded_and_picks_inside_each_window() -> None:
    ifm = torch.arange(1, 101, dtype=torch.float32)
    a = ifmsan.sample_and_hold(ifm, 10, select="random", seed=1)
    b = ifmsan.sample_and_hold(ifm, 10, select="random", seed=1)
    c = ifmsan.sample_and_hold(ifm, 10, select="random", seed=2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    for start in range(0, 100, 10):
        window = a[start : start + 10]
        assert bool((window == window[0]).all())
        assert start + 1 <= window[0] <= start + 10
    picks = torch.stack([ifmsan.sample_and_hold(ifm, 10, select="random", seed=s)[::10] for s in range(200)])
    offsets = (picks - torch.arange(1, 101, 10)).long().reshape(-1)
    counts = torch.bincount(offsets, minlength=10)
    assert counts.min() > 120  # 2000 picks over 10 positions: uniform, not stuck on one place


@pytest.mark.parametrize("noise", ["laplace", "gaussian"])
def test_noise_knobs_scale_with_the_ifm_std(noise: str) -> None:
    ifm = torch.randn(64, 32, 32, dtype=torch.float64) * 3.0
    knob = get_knob(noise, seed=0)
    assert torch.equal(knob.apply(ifm, 0.0), ifm)
    added = knob.apply(ifm, 0.5) - ifm
    assert added.mean().abs() < 0.05
    assert float(added.std()) == pytest.approx(0.5 * float(ifm.std()), rel=0.03)
    assert torch.equal(knob.apply(ifm, 0.5), get_knob(noise, seed=0).apply(ifm, 0.5))
    assert not torch.equal(knob.apply(ifm, 0.5), get_knob(noise, seed=1).apply(ifm, 0.5))
    # Laplace noise has heavier tails: excess kurtosis about 3, Gaussian about 0
    z = (added - added.mean()) / added.std()
    kurtosis = float((z**4).mean() - 3)
    assert kurtosis == pytest.approx(3.0 if noise == "laplace" else 0.0, abs=0.4)


BAD_WINDOWS = [
    (0, "window must be an integer >= 1"),
    (-3, ">= 1"),
    (2.5, "integer"),
    (2.0, "integer"),
    (True, "integer"),
    ("4", "integer"),
]


@pytest.mark.parametrize(("window", "message"), BAD_WINDOWS)
def test_bad_window_is_a_clear_value_error(window: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ifmsan.sample_and_hold(torch.ones(4), window)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ifm", "message"),
    [
        (torch.empty(0), "ifm is empty"),
        (torch.empty(3, 0, 2), "ifm is empty"),
        (torch.tensor([1.0, float("nan")]), "NaN or infinite"),
        (torch.tensor([1.0, float("inf")]), "NaN or infinite"),
        (torch.tensor([1, 2, 3]), "floating-point"),
        ([1.0, 2.0], "torch.Tensor or numpy.ndarray"),
    ],
)
def test_bad_ifm_is_a_clear_value_error(ifm: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ifmsan.sample_and_hold(ifm, 2)  # type: ignore[arg-type]


def test_unknown_selector_lists_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match=r"select must be one of nonzero_mean, first, mean, random; got 'median'"):
        ifmsan.sample_and_hold(torch.ones(4), 2, select="median")
    with pytest.raises(ValueError, match="knob must be one of"):
        get_knob("median")


def test_bad_sweep_arguments() -> None:
    with pytest.raises(ValueError, match="windows is empty"):
        ifmsan.sample_and_hold_sweep(torch.ones(4), [])
    with pytest.raises(ValueError, match=r"windows\[1\] must be an integer >= 1, got 0"):
        ifmsan.sample_and_hold_sweep(torch.ones(4), [2, 0])
    with pytest.raises(ValueError, match=r"values\[0\] must be a finite number >= 0"):
        get_knob("gaussian").apply_batch(torch.ones(4), [-1.0])
