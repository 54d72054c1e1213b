"""ifmsan.attacks.optimize, the white-box optimization attack: tight where the Cramér–Rao bound is, useful deeper in,
deterministic, strict about its inputs, and its loss is the full-stream ‖S(f_L(z)) − y‖² of the library's own knobs.

The network is alexnet_mini untrained (seeded): the attack inverts f_L, which needs no trained weights.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from ifmsan import models
from ifmsan.attacks.data import attack_images
from ifmsan.attacks.optimize import (
    OptimizeOptions,
    image_pixels,
    optimize_attack,
    reconstruction_scores,
    release_loss,
    release_rule,
)
from ifmsan.attacks.run import layer_ifms
from ifmsan.certify.pixels import pixel_map, release_function
from ifmsan.core.knobs import get_knob
from ifmsan.models.fused import torch_form

SMALL = OptimizeOptions(iterations=4, lr=0.03, resolution=8)


@pytest.fixture(scope="module")
def net():
    # torch.use_deterministic_algorithms (the attack's reproducible torch) imports torch._inductor once per process,
    # about 1.5 s on 2 cores: paid here, in setup, rather than by whichever test happens to run first
    torch.use_deterministic_algorithms(torch.are_deterministic_algorithms_enabled())
    return models.load("alexnet_mini")


@pytest.fixture(scope="module")
def conv2_case(net):
    """Two held-out minidata images, their conv2 IFMs (pool1's output) and the mean of six training images at 16 x 16."""
    test = attack_images(split="test", n=2, seed=0)
    train = attack_images(split="train", n=6, seed=0)
    ifms = layer_ifms(net, test.images, layer="conv2", batch_size=8)
    return {
        "ifms": ifms,
        "truth": image_pixels(net, test.images, resolution=16),
        "z0": image_pixels(net, train.images, resolution=16).mean(dim=0),
    }


def naive_loss(ifm: torch.Tensor, release: torch.Tensor, *, knob: str, value: int | float, seed: int) -> float:
    """‖S(h) − y‖² over the full stream with S = the library knob itself (its deterministic part)."""
    sanitized = get_knob(knob, seed=seed).apply(ifm, value)
    return float(((sanitized.to(torch.float64) - release.to(torch.float64)) ** 2).sum())


def test_at_the_input_the_attack_meets_the_cramer_rao_bound(net) -> None:
    # conv1's IFM is the network input x = M p + b (alexnet_mini: x = 2p - 1). At n = 1 the randomized hold adds
    # N(0, sigma^2) to each sample, so the MLE is z = M^-1 (y - b), unbiased with per-pixel MSE sigma^2 tr(M^-1 M^-T)/3
    # (sigma^2/4 here): the Cramér–Rao bound, reached. One image of 3 x 227 x 227 = 154587 pixels puts the sampling
    # error of the MSE at sqrt(2/154587) = 0.4 %, 10 % is 28 of those; pixels in [0.3, 0.7] lie 15 pixel-sigmas
    # inside the box, so the clamp never acts (checked).
    sigma = 0.04
    truth = torch.from_numpy(np.random.default_rng(0).uniform(0.3, 0.7, (1, 3, 227, 227)).astype(np.float32))
    with torch.no_grad():
        ifm = release_function(net, layer="conv1", resolution=None)(truth)[0]
    y = get_knob("hold_gaussian", sigma=sigma, seed=7).apply(ifm, 1)[None]
    inverse = torch.linalg.inv(pixel_map(net).matrix.to(torch.float64))
    expected = sigma**2 * float(torch.trace(inverse @ inverse.T)) / 3
    assert expected == pytest.approx(sigma**2 / 4)  # alexnet_mini's x = 2p - 1, read from its preprocessing

    options = OptimizeOptions(iterations=150, lr=0.01, resolution=None)
    result = optimize_attack(
        net, y, layer="conv1", knob="hold_gaussian", value=1, z0=torch.full((3, 227, 227), 0.5), release_seeds=[7],
        options=options,
    )  # fmt: skip
    estimate = result.reconstructions
    assert estimate.shape == (1, 3, 227, 227) and estimate.dtype == np.float32
    assert estimate.min() > 0.0 and estimate.max() < 1.0  # no clamping effect
    mse = reconstruction_scores(estimate, truth.numpy()).mse
    assert mse[0] == pytest.approx(expected, rel=0.10)
    assert result.loss[0] < 1e-3 * result.initial_loss[0]  # converged onto y itself


def test_deeper_in_without_noise_the_attack_beats_the_mean_image(net, conv2_case) -> None:
    y = torch.stack([get_knob("nonzero_mean").apply(ifm, 3) for ifm in conv2_case["ifms"]])
    options = OptimizeOptions(iterations=40, lr=0.03, resolution=16)
    result = optimize_attack(net, y, layer="conv2", knob="nonzero_mean", value=3, z0=conv2_case["z0"], options=options)
    truth = conv2_case["truth"].numpy()
    start = np.broadcast_to(conv2_case["z0"].numpy(), truth.shape)
    assert result.reconstructions.shape == (2, 3, 16, 16)
    assert np.all(result.loss < 0.5 * result.initial_loss)  # measured: 0.09 and 0.08 of the start's
    found, mean_image = reconstruction_scores(result.reconstructions, truth), reconstruction_scores(start, truth)
    assert np.all(found.psnr > mean_image.psnr)  # measured: 18.4 and 19.2 dB against 10.6 and 14.3
    assert np.all(found.ssim > mean_image.ssim)
    assert np.all(found.mse < mean_image.mse)

    # the reported loss is the naive full-stream ‖S(f_L(ẑ)) − y‖² of the library's knob
    with torch_form(), torch.no_grad():
        ifms = release_function(net, layer="conv2", resolution=16)(torch.from_numpy(result.reconstructions))
    naive = [naive_loss(ifms[b], y[b].reshape(-1), knob="nonzero_mean", value=3, seed=0) for b in range(2)]
    np.testing.assert_allclose(result.loss, naive, rtol=1e-9)


def test_same_inputs_give_bit_identical_outputs(net, conv2_case) -> None:
    seeds = [11, 12]
    y = torch.stack(
        [get_knob("random", seed=s).apply(ifm, 5) for s, ifm in zip(seeds, conv2_case["ifms"], strict=True)]
    )
    z0 = torch.from_numpy(image_pixels(net, attack_images(split="train", n=2, seed=0).images, resolution=8).numpy())
    options = replace(SMALL, tv_weight=0.01, n_images=1)
    runs = [
        optimize_attack(
            net, y, layer="conv2", knob="random", value=5, z0=z0.mean(0), release_seeds=seeds, options=options
        )
        for _ in range(2)
    ]
    assert runs[0].reconstructions.shape == (1, 3, 8, 8) and runs[0].loss.shape == (1,)
    for name in ("reconstructions", "loss", "initial_loss"):
        first, second = getattr(runs[0], name), getattr(runs[1], name)
        assert first.tobytes() == second.tobytes(), name
    assert not np.array_equal(runs[0].reconstructions[0], z0.mean(0).numpy())  # it did move
    assert runs[0].reconstructions.min() >= 0.0 and runs[0].reconstructions.max() <= 1.0


@pytest.mark.parametrize("knob", ["nonzero_mean", "first", "mean", "random", "hold_gaussian", "gaussian", "laplace"])
@pytest.mark.parametrize("window", [1, 3, 7, 50, 64])
def test_release_loss_is_the_naive_full_stream_error(knob: str, window: int) -> None:
    # h has all-zero windows (passed through by nonzero_mean); y is a genuine release of another IFM in the first
    # image, an arbitrary stream (not constant per window) in the others: the identity holds for any y.
    rng = np.random.default_rng(window)
    h = torch.from_numpy(rng.normal(size=(3, 50)))
    h[:, 7:21] = 0.0
    h[1, 30:] = 0.0
    other = torch.from_numpy(rng.normal(size=50))
    other[:10] = 0.0
    seeds = [3, 4, 5]
    deterministic = "nonzero_mean" if knob == "hold_gaussian" else knob  # S: the hold without its noise
    y = torch.from_numpy(rng.normal(size=(3, 50)))
    if knob not in ("gaussian", "laplace"):
        y[0] = get_knob(deterministic, seed=seeds[0]).apply(other, window)
    value = window if knob not in ("gaussian", "laplace") else 0.5
    got = release_loss(h.clone().requires_grad_(True), y, knob=knob, value=value, release_seeds=seeds)
    if knob in ("gaussian", "laplace"):
        expected = [float(((h[b] - y[b]) ** 2).sum()) for b in range(3)]  # S is the identity
    else:
        expected = [naive_loss(h[b], y[b], knob=deterministic, value=window, seed=seeds[b]) for b in range(3)]
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-12, atol=1e-12)
    assert got.requires_grad


@pytest.mark.parametrize("knob", ["nonzero_mean", "first", "mean", "random"])
def test_release_loss_gradient_is_that_of_the_held_map(knob: str) -> None:
    # the choices are locally constant away from ties and zeros, so finite differences see the same linear map
    h = torch.from_numpy(np.random.default_rng(1).normal(size=(2, 23))).requires_grad_(True)
    y = torch.from_numpy(np.random.default_rng(2).normal(size=(2, 23)))
    assert torch.autograd.gradcheck(lambda x: release_loss(x, y, knob=knob, value=4, release_seeds=[1, 2]), (h,))


BAD_OPTIONS = [
    ({"iterations": -1}, "optimization option iterations must be an integer >= 0, got -1"),
    ({"iterations": 2.0}, "optimization option iterations must be an integer >= 0, got 2.0"),
    ({"lr": 0.0}, "optimization option lr must be a finite number > 0, got 0.0"),
    ({"lr": float("nan")}, "optimization option lr must be a finite number > 0, got nan"),
    ({"tv_weight": -0.1}, "optimization option tv_weight must be a finite number >= 0, got -0.1"),
    ({"tv_weight": True}, "optimization option tv_weight must be a finite number >= 0, got True"),
    ({"resolution": 2}, "optimization option resolution must be an integer >= 4"),
    ({"n_images": 0}, "optimization option n_images must be an integer >= 1 or None (all), got 0"),
    ({"seed": -1}, "optimization option seed must be an integer >= 0, got -1"),
    ({"threads": 0}, "optimization option threads must be an integer >= 1, got 0"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    BAD_OPTIONS,
    ids=["iterations_negative", "iterations_float", "lr_zero", "lr_nan", "tv_weight_negative", "tv_weight_bool",
         "resolution_2", "n_images_zero", "seed_negative", "threads_zero"],
)  # fmt: skip
def test_bad_options_are_refused(change: dict, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        replace(SMALL, **change).check()
    assert message in str(raised.value)


BAD_INPUTS = [
    ({"knob": "blur"}, "knob must be one of nonzero_mean, first, mean, random, laplace, gaussian, hold_gaussian; got 'blur'"),
    ({"value": 0}, "value must be an integer >= 1, got 0"),
    ({"value": 2.0}, "value must be an integer >= 1, got 2.0"),
    ({"knob": "gaussian", "value": -1.0}, "value must be a finite number >= 0, got -1.0"),
    ({"layer": "conv9"}, "layer 'conv9' is not an IFM layer of alexnet_mini; expected one of conv1, norm1"),
    ({"releases": torch.zeros(2, 24, 27)}, "releases must be (N, 24, 27, 27) or (N, 17496) for layer 'conv2', got shape (2, 24, 27)"),
    ({"releases": torch.full((2, 17496), float("nan"))}, "releases must be non-empty and hold finite values only"),
    ({"releases": np.zeros((2, 17496), dtype=np.int64)}, "releases must have a floating-point dtype, got int64"),
    ({"z0": torch.full((3, 8, 8), 1.5)}, "z0 must hold pixels in [0, 1], got values in [1.5, 1.5]"),
    ({"z0": torch.full((3, 16, 16), 0.5)}, "z0 must be one image (3, 8, 8) or one per release (N, 3, 8, 8) at the option resolution, got shape (3, 16, 16)"),
    ({"release_seeds": [1]}, "release_seeds has 1 entries for 2 releases; expected one per release"),
    ({"release_seeds": [1, -2]}, "release_seeds[1] must be an integer >= 0, got -2"),
    ({"options": replace(SMALL, n_images=3)}, "optimization option n_images (3) exceeds the 2 releases given"),
    ({"options": replace(SMALL, lr=-1.0)}, "optimization option lr must be a finite number > 0, got -1.0"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    BAD_INPUTS,
    ids=["knob_unknown", "value_zero", "value_float", "noise_value_negative", "layer_unknown", "releases_wrong_shape",
         "releases_nan", "releases_integer_dtype", "z0_outside_0_1", "z0_wrong_resolution", "release_seeds_too_few",
         "release_seeds_negative", "options_n_images_past_releases", "options_lr_negative"],
)  # fmt: skip
def test_bad_inputs_are_refused_before_any_work(net, change: dict, message: str, monkeypatch) -> None:
    from ifmsan.certify import pixels

    def no_work(*args, **kwargs):
        raise AssertionError("the attack started before refusing its input")

    monkeypatch.setattr(pixels, "release_function", no_work)
    arguments = {"releases": torch.zeros(2, 24, 27, 27), "layer": "conv2", "knob": "nonzero_mean", "value": 3,
                 "z0": torch.full((3, 8, 8), 0.5), "options": SMALL}  # fmt: skip
    with pytest.raises(ValueError) as raised:
        optimize_attack(net, **{**arguments, **change})
    assert message in str(raised.value)


def test_a_net_in_training_mode_is_refused(net) -> None:
    net.train()
    try:
        with pytest.raises(ValueError, match="net alexnet_mini is in training mode; call net.eval()"):
            optimize_attack(net, torch.zeros(1, 17496), layer="conv2", knob="mean", value=2, z0=torch.zeros(3, 8, 8))
    finally:
        net.eval()


def test_release_rule_is_the_knobs_deterministic_part() -> None:
    assert release_rule("hold_gaussian", 4).select == "nonzero_mean"
    assert release_rule("random", 4).window == 4
    assert release_rule("laplace", 2.5).select is None


def test_scores_take_either_layout_and_match_the_decoders_conventions() -> None:
    from ifmsan.attacks import scores

    rng = np.random.default_rng(0)
    original = rng.uniform(size=(3, 8, 8, 3))
    reconstructed = np.clip(original + rng.normal(scale=0.05, size=original.shape), 0, 1)
    last = reconstruction_scores(reconstructed, original)
    first = reconstruction_scores(reconstructed.transpose(0, 3, 1, 2), original.transpose(0, 3, 1, 2))
    for name in ("mse", "psnr", "ssim"):
        np.testing.assert_array_equal(getattr(last, name), getattr(first, name))
    assert last.psnr.mean() == pytest.approx(scores.psnr(reconstructed, original))
    assert last.ssim.mean() == pytest.approx(scores.ssim(reconstructed, original))
    np.testing.assert_allclose(last.psnr, -10 * np.log10(last.mse))
    with pytest.raises(
        ValueError, match=r"reconstructed must be a non-empty batch of RGB images \(N, r, r, 3\) or \(N, 3, r, r\)"
    ):
        reconstruction_scores(np.zeros((2, 8, 8)), original)
    with pytest.raises(ValueError, match="must have the same shape"):
        reconstruction_scores(reconstructed[:2], original)
    with pytest.raises(ValueError, match=r"finite values in \[0, 1\]"):
        reconstruction_scores(reconstructed + 1, original)
