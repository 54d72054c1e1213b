"""The randomized hold, its release map, the calibration σ, the certificate table and CLI, and certified_summary's rules,
each against an independent expectation (the sanitizer itself, hand-built tables, hand-computed verdicts)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_examples import examples

from ifmsan.certify.summary import BROKEN, HOLDS, NONE_ON_GRID, NOT_CONVERGED, certified_summary, verdict
from ifmsan.cli import main
from ifmsan.core.hold import holding
from ifmsan.core.knobs import HoldNoiseKnob, NoiseKnob, get_knob
from ifmsan.core.sanitize import SELECTORS, sample_and_hold
from ifmsan.steps.io import CERTIFY_MAPS_ATTRS, read_certify_maps

MODEL = ["--model", "alexnet_mini"]


def _stream(size: int, zeros: float, seed: int) -> torch.Tensor:
    """A float32 stream with runs of exact zeros, as after a ReLU."""
    rng = np.random.default_rng(seed)
    values = rng.standard_normal(size).astype(np.float32)
    values[rng.random(size) < zeros] = 0.0
    return torch.from_numpy(values)


@settings(max_examples=examples(60), deadline=None)
@given(size=st.integers(1, 90), window=st.integers(1, 120), zeros=st.sampled_from([0.0, 0.5, 0.95]),
       select=st.sampled_from(SELECTORS), seed=st.integers(0, 5))  # fmt: skip
def test_the_release_map_gives_what_the_sanitizer_releases(size, window, zeros, select, seed) -> None:
    """Expanding Holding.apply(h) back over each window (held value on every copy, passed-through samples as they are)
    rebuilds sample_and_hold's output; for mean, up to the float32 rounding of the held mean."""
    ifm = _stream(size, zeros, seed)
    hold = holding(ifm, window, select=select, seed=seed)
    released = hold.apply(ifm.to(torch.float64))
    assert released.numel() == hold.released
    width = min(window, size)
    rebuilt, held_values, passed = (
        [],
        iter(released[: int(hold.held.sum())].tolist()),
        iter(released[int(hold.held.sum()) :].tolist()),
    )
    for row, length in enumerate(hold.lengths.tolist()):
        if bool(hold.held[row]):
            rebuilt += [next(held_values)] * length
        else:
            rebuilt += [next(passed) for _ in range(length)]
    expected = sample_and_hold(ifm, window, select=select, seed=seed)
    assert hold.rows == -(-size // width)
    np.testing.assert_allclose(np.asarray(rebuilt, dtype=np.float32), expected.numpy(), rtol=1e-6, atol=0)


def test_an_all_zero_window_is_passed_through_and_counted_sample_by_sample() -> None:
    ifm = torch.tensor([0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 0.0], dtype=torch.float32)
    hold = holding(ifm, 3, select="nonzero_mean")
    assert hold.index.tolist() == [-1, 1, -1]  # window 2 holds 2.0 (nearest its nonzero mean 2); the short last is zero
    assert hold.held.tolist() == [False, True, False]
    assert hold.released == 3 + 1 + 1
    assert hold.apply(torch.arange(7, dtype=torch.float64)).tolist() == [4.0, 0.0, 1.0, 2.0, 6.0]


@settings(max_examples=examples(30), deadline=None)
@given(size=st.integers(2, 200), window=st.integers(1, 50), sigma=st.floats(0.01, 10.0), seed=st.integers(0, 100))
def test_the_randomized_hold_adds_one_draw_per_window_shared_by_its_copies(size, window, sigma, seed) -> None:
    ifm = _stream(size, 0.0, seed).to(torch.float64)
    knob = get_knob("hold_gaussian", sigma=sigma, seed=seed)
    noise = (knob.apply(ifm, window) - sample_and_hold(ifm, window)).numpy()
    width = min(window, size)
    for start in range(0, size, width):
        block = noise[start : start + width]
        assert np.ptp(block) <= 1e-9 * sigma * 10
    again = (knob.apply(10.0 * ifm, window) - sample_and_hold(10.0 * ifm, window)).numpy()
    np.testing.assert_allclose(again, noise, atol=1e-9 * sigma * 100)  # absolute σ: the IFM's own scale plays no part


def test_the_randomized_hold_draws_have_std_sigma() -> None:
    ifm = torch.zeros(200_000, dtype=torch.float64) + 1.0
    noise = get_knob("hold_gaussian", sigma=0.7, seed=3).apply(ifm, 4).numpy() - 1.0
    per_window = noise[::4]
    assert abs(per_window.std() - 0.7) < 4 * 0.7 / math.sqrt(2 * len(per_window))


def test_a_calibrated_noise_knob_ignores_the_queries_own_std() -> None:
    ifm = _stream(1000, 0.0, 1)
    plain = NoiseKnob("gaussian", seed=2, calibration_std=0.5)
    a = plain.apply(ifm, 2.0) - ifm
    b = plain.apply(ifm * 100, 2.0) - ifm * 100
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-3)
    assert abs(float(a.double().std()) - 1.0) < 0.1  # 2.0 x 0.5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "hold_gaussian"}, "needs sigma"),
        ({"name": "hold_gaussian", "sigma": 0.0}, "sigma must be a finite number > 0"),
        ({"name": "hold_gaussian", "sigma": float("nan")}, "sigma must be a finite number"),
        ({"name": "nonzero_mean", "sigma": 1.0}, "sigma applies to the randomized knobs"),
        ({"name": "first", "calibration_std": 1.0}, "calibration_std applies to the noise knobs"),
        ({"name": "gaussian", "calibration_std": -1.0}, "calibration_std must be a finite number"),
        ({"name": "hold_gaussian", "sigma": 1.0, "calibration_std": 1.0}, "takes sigma, not calibration_std"),
    ],
)
def test_bad_knob_options_are_refused(kwargs, message) -> None:
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=message):
        get_knob(name, **kwargs)


def test_the_hold_knob_is_a_window_knob_with_the_papers_selector() -> None:
    knob = get_knob("hold_gaussian", sigma=1.0)
    assert isinstance(knob, HoldNoiseKnob) and knob.parameter == "window" and knob.select == "nonzero_mean"


def test_calibration_sigma_does_not_depend_on_the_query_image(tmp_path: Path) -> None:
    """`ifmsan calibrate` reads only the calibration split: the certificate's σ is scale x that std for every image."""
    cal = tmp_path / "cal.json"
    assert main(["calibrate", *MODEL, "--layer", "conv2", "--n-images", "4", "--out", str(cal)]) == 0
    std = json.loads(cal.read_text())["calibration_std"]
    sigmas = set()
    for index in (0, 5):
        out, table = tmp_path / f"m{index}.nc", tmp_path / f"t{index}.csv"
        args = ["certify", *MODEL, "--image", f"minidata:test:{index}", "--image-id", f"t{index}", "--layer", "conv2",
                "--windows", "4,16", "--resolutions", "8", "--probes", "4", "--out", str(out), "--calibration", str(cal),
                "--scales", "0.5,2", "--table", str(table)]  # fmt: skip
        assert main(args) == 0
        frame = pd.read_csv(table)
        sigmas |= set(frame["sigma"].round(12))
        assert set(read_certify_maps(out).attrs) == set(CERTIFY_MAPS_ATTRS) - {
            "preprocess",
            "weights_content_xxh3",
        }  # bvlc_alexnet only
        assert set(frame["knob"]) == {"hold_gaussian"} and set(frame["window"]) == {4, 16}
        # dFIL = ||J_s||^2 / (sigma^2 d) and the floor is its inverse, row by row
        np.testing.assert_allclose(
            frame["dfil"], frame["held_norm"] / (frame["sigma"] ** 2 * frame["dims"]), rtol=1e-12
        )
        np.testing.assert_allclose(frame["mse_floor"], 1 / frame["dfil"], rtol=1e-12)
        np.testing.assert_allclose(frame["psnr_ceiling"], 10 * np.log10(frame["dfil"]), rtol=1e-9)
    assert sigmas == {round(0.5 * std, 12), round(2 * std, 12)}


def test_certify_refuses_bad_options_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["certify", *MODEL, "--image", "minidata:test:0", "--image-id", "t0", "--layer", "conv2", "--windows", "4"]
    cases = [
        (["--out", str(tmp_path / "m.txt")], "--out must end in .nc"),
        (["--out", str(tmp_path / "m.nc"), "--resolutions", "abc"], "--resolutions entries must be integers >= 4"),
        (["--out", str(tmp_path / "m.nc"), "--probes", "1"], "--probes must be an integer >= 2"),
        (["--out", str(tmp_path / "m.nc"), "--table", str(tmp_path / "t.csv")], "needs --calibration and --scales"),
        (["--out", str(tmp_path / "m.nc"), "--layer", "nope"], "--layer 'nope' is not an IFM layer"),
    ]
    for extra, message in cases:
        assert main([*base, *extra]) == 2
        assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def _row(**values: float) -> pd.Series:
    base = {
        "epsilon_adaptive_b1": 1.0,
        "epsilon_adaptive_b2": 1.0,
        "adaptive_accuracy_b1": 0.5,
        "adaptive_accuracy_b2": 0.51,
    }
    return pd.Series({**base, **values})


def test_a_verdict_must_survive_the_doubled_budget() -> None:
    ln2 = math.log(2)
    assert verdict(_row(), 1.0) == HOLDS
    assert verdict(_row(epsilon_adaptive_b2=ln2 - 1e-9), 1.0) == BROKEN  # holds at B, broken at 2B: broken
    assert verdict(_row(epsilon_adaptive_b1=0.1), 1.0) == BROKEN
    assert verdict(_row(adaptive_accuracy_b2=0.52), 1.0) == NOT_CONVERGED  # a move of 0.02 is not converged
    assert verdict(_row(adaptive_accuracy_b2=0.5199), 1.0) == HOLDS
    assert verdict(_row(epsilon_adaptive_b2=float("nan")), 1.0) == BROKEN
    assert verdict(_row(), 1.5) == BROKEN  # 1.0 < 1.5 ln 2


def _table(rows: list[dict[str, float]]) -> pd.DataFrame:
    base = {"layer": "conv2", "knob": "hold_gaussian", "sigma": 0.1, "mean_image_mse_b1": 0.04,
            "epsilon_adaptive_b1": 1.0, "epsilon_adaptive_b2": 1.0, "adaptive_accuracy_b1": 0.3, "adaptive_accuracy_b2": 0.3}  # fmt: skip
    return pd.DataFrame([{**base, **row} for row in rows])


def test_certified_summary_picks_the_most_useful_setting_that_meets_everything() -> None:
    table = _table([
        {"window": 8, "scale": 0.25, "legit_accuracy_b1": 0.9, "mse_floor": 0.01, "decoder_mse": 0.05, "optimization_mse": 0.06},
        {"window": 32, "scale": 0.25, "legit_accuracy_b1": 0.7, "mse_floor": 0.05, "decoder_mse": 0.06, "optimization_mse": 0.07},
        {"window": 32, "scale": 1.0, "legit_accuracy_b1": 0.5, "mse_floor": 0.5, "decoder_mse": 0.06, "optimization_mse": 0.5},
    ])  # fmt: skip
    summary = certified_summary(table, gammas=[1.0], psnr_targets=[20.0]).set_index("target")
    # mean image (0.04): n=8's floor 0.01 is below it; n=32 at 0.25 meets all and is more useful than scale 1
    assert summary.loc["mean_image", "status"] == "certified"
    assert (summary.loc["mean_image", "window"], summary.loc["mean_image", "scale"]) == (32, 0.25)
    # PSNR 20 dB (MSE 0.01): n=8's floor 0.01 meets it exactly and it is the most useful
    assert summary.loc["psnr<=20dB", "window"] == 8


def test_no_setting_is_certified_where_a_measured_attacker_beats_the_target() -> None:
    table = _table([{"window": 32, "scale": 1.0, "legit_accuracy_b1": 0.5, "mse_floor": 0.5, "decoder_mse": 0.03,
                     "optimization_mse": 0.5}])  # fmt: skip
    summary = certified_summary(table, gammas=[1.0], psnr_targets=[]).iloc[0]
    assert summary["status"] == NONE_ON_GRID and "decoder" in summary["best_failed"]
    assert "certificate" not in summary["best_failed"]


@pytest.mark.slow
def test_the_optimization_attack_joins_the_attack_file_only_when_asked() -> None:
    """With optimize_images the file gains the optimization metrics, the decoder's MSE and the mean image's MSE; the
    randomized hold's σ is recorded; without it the metrics are the three adversaries' as before."""
    import ifmsan.models
    from ifmsan.attacks import METRICS, OPTIMIZE_METRICS, AttackOptions, run_attacks

    net = ifmsan.models.load("alexnet_mini")
    small = {"n_train": 6, "n_test": 4, "epochs_adaptive": 1, "epochs_inversion": 1, "epochs_attribute": 1,
             "resolution": 32, "batch_size": 4, "n_examples": 1}  # fmt: skip
    with_attack = run_attacks(net, layer="conv2", knob="hold_gaussian", values=[8], knob_options={"sigma": 0.2},
                              options=AttackOptions(**small, optimize_images=2, optimize_iterations=3))  # fmt: skip
    assert list(with_attack["metric"].values) == [*METRICS, *OPTIMIZE_METRICS]
    assert with_attack.attrs["knob_sigma"] == 0.2 and 0 < with_attack.attrs["mean_image_mse"] < 1
    scores = with_attack["scores"].to_pandas()
    assert (scores["optimization_mse"] > 0).all() and (scores["inversion_mse"] > 0).all()
    plain = run_attacks(net, layer="conv2", knob="nonzero_mean", values=[8], options=AttackOptions(**small))
    assert list(plain["metric"].values) == list(METRICS)
    assert not any(key.startswith("optimize_") or key == "mean_image_mse" for key in plain.attrs)


def test_the_near_miss_reported_is_the_one_that_fails_the_fewest_checks() -> None:
    table = _table([
        {"window": 8, "scale": 0.25, "legit_accuracy_b1": 0.9, "mse_floor": 0.01, "decoder_mse": 0.01, "optimization_mse": 0.5},
        {"window": 32, "scale": 1.0, "legit_accuracy_b1": 0.2, "mse_floor": 0.5, "decoder_mse": 0.01, "optimization_mse": 0.5},
    ])  # fmt: skip
    summary = certified_summary(table, gammas=[1.0], psnr_targets=[]).iloc[0]  # mean image 0.04: both fail the decoder
    assert summary["status"] == NONE_ON_GRID
    assert summary["best_failed"] == "hold_gaussian n=32 scale=1: fails decoder"


def test_sanitize_cli_applies_the_randomized_hold(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ifm = np.abs(np.random.default_rng(0).standard_normal((4, 6, 6))).astype(np.float32)
    np.save(tmp_path / "in.npy", ifm)
    out = tmp_path / "out.npy"
    assert main(["sanitize", "--knob", "hold_gaussian", "--sigma", "0.5", "--window", "4", "--seed", "2",
                 str(tmp_path / "in.npy"), str(out)]) == 0  # fmt: skip
    expected = get_knob("hold_gaussian", sigma=0.5, seed=2).apply(ifm, 4)
    np.testing.assert_array_equal(np.load(out), expected)
    assert main(["sanitize", "--knob", "hold_gaussian", "--window", "4", str(tmp_path / "in.npy"), str(out)]) == 2
    assert "needs sigma" in capsys.readouterr().err
    assert (
        main(["sanitize", "--knob", "first", "--sigma", "1", "--window", "4", str(tmp_path / "in.npy"), str(out)]) == 2
    )
    assert "sigma applies to the randomized knobs" in capsys.readouterr().err


def test_the_gamma_controller_runs_the_randomized_hold() -> None:
    import ifmsan.models
    from ifmsan.core.controller import GammaSanitizer

    net = ifmsan.models.load("alexnet_mini")
    plain = GammaSanitizer(net, "pool5", 0.5, windows=[2, 4, 8])
    noisy = GammaSanitizer(net, "pool5", 0.01, windows=[2, 16, 150], sigma=0.3, seed=1)
    assert isinstance(noisy.knob, HoldNoiseKnob) and noisy.knob.sigma == 0.3 and noisy.knob.select == "nonzero_mean"
    assert not isinstance(plain.knob, HoldNoiseKnob)
    ifm = torch.relu(torch.randn(net.ifm_shape("pool5"), generator=torch.Generator().manual_seed(0)))
    found, released = noisy.sanitize_ifm(ifm)
    expected = HoldNoiseKnob(sigma=0.3, seed=1).apply(ifm, found.window)
    torch.testing.assert_close(released, expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match="sigma must be a finite number > 0"):
        GammaSanitizer(net, "pool5", 0.5, sigma=0.0)
