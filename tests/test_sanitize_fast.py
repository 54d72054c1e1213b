"""The fused (numba) sanitizer path against the naive Algorithm 1 and against the torch path, bit for bit."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_examples import examples

import ifmsan
import ifmsan.core.kernels as sanitize_kernels
import ifmsan.core.sanitize as sanitize
from ifmsan.testing import naive_algorithm1

pytest.importorskip("numba")
if os.environ.get("IFMSAN_NO_NUMBA"):
    pytest.skip("IFMSAN_NO_NUMBA switches the fused path off", allow_module_level=True)


def naive_rows(array: np.ndarray, windows: list[int], select: str = "nonzero_mean") -> np.ndarray:
    """The naive reference for each window, as float32 rows of the C-order stream."""
    stream = [float(v) for v in array.reshape(-1)]
    if select == "first":
        return np.array([[stream[(i // n) * n] for i in range(len(stream))] for n in windows], dtype=np.float32)
    return np.array([naive_algorithm1(stream, n) for n in windows], dtype=np.float32)


def torch_path(array: np.ndarray, windows: list[int], *, select: str = "nonzero_mean", seed: int = 0) -> np.ndarray:
    """The vectorized torch path (used for other dtypes, other devices, or without numba), forced here."""
    stream = torch.from_numpy(array).reshape(-1).to(torch.float64)
    out = torch.empty((len(windows), stream.numel()), dtype=torch.float32)
    for row, window in enumerate(windows):
        sanitize._sanitize_stream(stream, window, select=select, seed=seed, out=out[row])
    return out.numpy()


def fused(array: np.ndarray, windows: list[int], *, select: str = "nonzero_mean", seed: int = 0) -> np.ndarray:
    """The public sweep on a float32 CPU tensor, which takes the fused path; rows of the stream."""
    assert (
        sanitize_kernels.kernel_applies(torch.from_numpy(array), select)
        and sanitize_kernels.compiled_kernels() is not None
    )
    return (
        ifmsan.sample_and_hold_sweep(torch.from_numpy(array), windows, select=select, seed=seed)
        .reshape(len(windows), -1)
        .numpy()
    )


def assert_bitwise_equal(got: np.ndarray, expected: np.ndarray) -> None:
    """Equal bit patterns, so -0.0 against 0.0 counts as a difference."""
    np.testing.assert_array_equal(got.view(np.int32), expected.view(np.int32))


# Any finite float32: subnormals, both zeros, magnitudes from 1e-45 to 3e38, so window sums are often inexact in float64.
any_float32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
sparse_float32 = st.one_of(
    st.just(0.0), st.just(-0.0), st.just(0.0), any_float32, st.integers(-8, 8).map(lambda k: k / 4)
)


@settings(max_examples=examples(300), deadline=None)
@given(values=st.lists(sparse_float32, min_size=1, max_size=300), data=st.data())
def test_fused_path_equals_naive_algorithm1_on_any_float32(values: list[float], data: st.DataObject) -> None:
    array = np.array(values, dtype=np.float32)
    windows = data.draw(st.lists(st.integers(1, array.size + 2), min_size=1, max_size=4), label="windows")
    assert_bitwise_equal(fused(array, windows), naive_rows(array, windows))


def exact_choice(window: list[float]) -> float:
    """Algorithm 1 on one window with the mean computed exactly (fractions): what a reordered sum would tend to give."""
    from fractions import Fraction

    nonzero = [x for x in window if x != 0]
    mean = sum(Fraction(x) for x in nonzero) / len(nonzero)
    return min(nonzero, key=lambda x: abs(Fraction(x) - mean))  # min keeps the first of equal distances


# [big, c, -big, -c] with c carrying bits below float64's spacing at `big`: summed in stream order, big + c rounds,
# the mean moves off 0 and -c wins; with the exact mean 0, c and -c tie and c (the first) wins.
@pytest.mark.parametrize(
    ("big", "c"),
    [
        (2.0**29, 0.25 + 2.0**-25),  # 31 binades apart: exact lookups are on, but this window's sum is not exact
        (2.0**40, 2.0**-10 + 2.0**-20),  # 50 binades apart: no exact lookups for this stream at all
    ],
)
def test_rounded_window_sums_are_taken_in_stream_order(big: float, c: float) -> None:
    window = [big, c, -big, -c]
    array = np.array(window + [0.0, 1.0, 2.0, 0.0], dtype=np.float32)
    assert [float(v) for v in array[:4]] == window  # every value is a float32
    expected = naive_rows(array, [4, 8])
    assert expected[0, 0] == -c and exact_choice(window) == c  # the summation order decides this window
    assert_bitwise_equal(fused(array, [4, 8]), expected)


@pytest.mark.parametrize("select", ["nonzero_mean", "first", "random"])
@pytest.mark.parametrize("shape", [(96, 27, 27), (256, 6, 6), (4096,), (3, 227, 227)])
def test_fused_path_equals_torch_path_on_activation_like_ifms(select: str, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(sum(shape))
    array = (rng.standard_normal(shape) * rng.lognormal(0.0, 2.0, shape)).astype(np.float32)
    if shape[0] != 3:
        array = np.maximum(array, 0)  # ReLU outputs: mostly zeros and positives, as in the sweeps
    windows = [1, 2, 3, 7, 32, 64, 149, 150, 256, 1000]
    assert_bitwise_equal(
        fused(array, windows, select=select, seed=5), torch_path(array, windows, select=select, seed=5)
    )


def test_first_selector_matches_its_definition() -> None:
    array = np.arange(-5, 20, dtype=np.float32)
    windows = [1, 4, 7, 30]
    assert_bitwise_equal(fused(array, windows, select="first"), naive_rows(array, windows, "first"))


def test_thread_count_does_not_change_results() -> None:
    rng = np.random.default_rng(1)
    array = np.maximum(rng.standard_normal((96, 27, 27)), 0).astype(np.float32)  # enough samples to use threads
    windows = list(range(2, 40))
    assert array.size >= sanitize_kernels.PARALLEL_MIN_SAMPLES
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = fused(array, windows)
        torch.set_num_threads(2)
        two = fused(array, windows, select="random", seed=4)
        torch.set_num_threads(1)
        random_one = fused(array, windows, select="random", seed=4)
        torch.set_num_threads(2)
        assert_bitwise_equal(fused(array, windows), one)
    finally:
        torch.set_num_threads(threads)
    assert_bitwise_equal(two, random_one)
    assert_bitwise_equal(one, naive_rows(array, windows))


def test_fused_path_writes_into_out_and_keeps_signed_zeros() -> None:
    ifm = torch.tensor([[-0.0, 0.0, -0.0], [0.0, 5.0, 1.0]], dtype=torch.float32)
    out = torch.full((2, 2, 3), 7.0)
    result = ifmsan.sample_and_hold_sweep(ifm, [3, 2], out=out)
    assert result.data_ptr() == out.data_ptr()
    assert_bitwise_equal(out[0].reshape(-1).numpy(), np.array([-0.0, 0.0, -0.0, 5.0, 5.0, 5.0], dtype=np.float32))
    assert_bitwise_equal(
        out[1].reshape(-1).numpy(), np.array([-0.0, 0.0, -0.0, 0.0, 5.0, 5.0], dtype=np.float32)
    )  # 5, 1 tie: 5


def test_only_float32_cpu_and_the_sample_selectors_take_the_fused_path() -> None:
    x = torch.ones(4)
    assert sanitize_kernels.kernel_applies(x, "nonzero_mean") and sanitize_kernels.kernel_applies(x, "random")
    assert not sanitize_kernels.kernel_applies(
        x, "mean"
    )  # a computed mean, whose rounding follows torch's summation order
    assert not sanitize_kernels.kernel_applies(x.double(), "nonzero_mean")
    assert not sanitize_kernels.kernel_applies(x.half(), "first")


def test_stream_tables_are_reused_only_for_the_same_bits() -> None:
    rng = np.random.default_rng(11)
    a = np.maximum(rng.standard_normal(4096), 0).astype(np.float32)
    b = a.copy()
    b[17] = np.float32(123.5)  # one sample differs: the tables of `a` would give a wrong window sum
    windows = [3, 16, 100]
    tensor = torch.from_numpy(a)
    for array in (a, b, a, b):
        assert_bitwise_equal(fused(array, windows), naive_rows(array, windows))
    tensor[40] = 7.0  # the same tensor object modified in place is a new stream
    assert_bitwise_equal(fused(a, windows), naive_rows(a, windows))
    b[40] = -0.0  # a sign bit alone changes the stream's bits
    a[40] = 0.0
    assert_bitwise_equal(fused(b, windows), naive_rows(b, windows))


def test_kernel_false_always_takes_the_torch_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The public switch the benchmark uses: kernel=False never enters the fused path, and gives the same bits."""
    array = np.random.default_rng(3).standard_normal(4096).astype(np.float32)
    array[::4] = 0.0
    fast = fused(array, [2, 7, 50])

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the fused path ran")

    monkeypatch.setattr(sanitize_kernels, "sweep_with_kernels", refuse)
    plain = ifmsan.sample_and_hold_sweep(torch.from_numpy(array), [2, 7, 50], kernel=False).reshape(3, -1).numpy()
    assert_bitwise_equal(plain, fast)
    with pytest.raises(AssertionError, match="fused path ran"):
        ifmsan.sample_and_hold_sweep(torch.from_numpy(array), [2, 7, 50])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vector_distance_pass_keeps_the_first_of_equal_distances(seed: int) -> None:
    """Windows long enough for the vector pass (two chains of LANES lanes, then a merge of the lanes): with values from a
    handful of quarter steps the window mean is often halfway between two of them, so equal distances fall in every
    lane, chain and tail position; the first in stream order must win, as in the naive Algorithm 1."""
    rng = np.random.default_rng(seed)
    array = (rng.integers(-3, 4, 6001) / 4).astype(np.float32)
    array[rng.random(6001) < 0.3] = 0.0
    lanes = sanitize_kernels.LANES
    shortest = sanitize_kernels.VECTOR_MIN_WINDOW
    windows = [shortest - 1, shortest, lanes * 2, lanes * 2 + 1, lanes * 3 - 1, 33, 47, 64, 100, 149, 150, 1000, 6001]
    expected = naive_rows(array, windows)
    ties = sum(
        int(np.count_nonzero(np.isclose(np.abs(w - np.mean(w[w != 0])), np.abs(w - np.mean(w[w != 0])).min())) > 1)
        for n in windows
        for w in np.array_split(array.astype(np.float64), range(n, array.size, n))
        if np.any(w != 0)
    )
    assert ties > 100  # the case under test does occur, often
    assert_bitwise_equal(fused(array, windows), expected)


@pytest.mark.parametrize("length", [16, 37, 40])
def test_vector_distance_pass_breaks_a_tie_between_any_two_positions(length: int) -> None:
    """Windows of zeros but for two samples equally far from their mean (1 and 3 around 2), at every pair of positions
    (any lane of either chain, the tail) and in both orders: the first of the two is held."""
    windows = []
    for first in range(length):
        for second in range(first + 1, length):
            for low_first in (True, False):
                window = np.zeros(length, dtype=np.float32)
                window[first], window[second] = (1.0, 3.0) if low_first else (3.0, 1.0)
                windows.append(window)
    stream = np.concatenate(windows)
    held = fused(stream, [length]).reshape(len(windows), length)
    expected = np.array([w[np.flatnonzero(w)[0]] for w in windows], dtype=np.float32)
    np.testing.assert_array_equal(held, np.repeat(expected[:, None], length, axis=1))


def test_the_kernel_refuses_an_output_with_too_few_rows() -> None:
    """The compiled kernel checks no bounds per sample, so it checks its arguments' shapes once per call."""
    stream_tables, hold_windows = sanitize_kernels.compiled_kernels()
    x = np.arange(1, 65, dtype=np.float32)
    rows = np.zeros((3, 64), dtype=np.float32)
    with pytest.raises(ValueError, match="a row of the stream's length per window"):
        hold_windows(x, *stream_tables(x), np.array([2, 3, 4], np.int64), 0, np.zeros(1, np.int64), rows[:2])
