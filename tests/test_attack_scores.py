"""The pieces of ifmsan.attacks that need no trained network: score functions against hand-computed values, the
adversaries' data (disjoint splits, labels, private attribute, per-image seeds), the options' checks and the shapes of
the decoder and the probe."""

from __future__ import annotations

import hashlib
import math
import re

import numpy as np
import pytest
import torch

from ifmsan.attacks import AttackOptions, scores
from ifmsan.attacks.data import N_ATTRIBUTES, attack_images, downsample, image_seed
from ifmsan.attacks.nets import GRID, Decoder, Probe, check_resolution
from ifmsan.steps.minidata import BACKGROUNDS, CLASS_NAMES, IMAGE_SIZE, sample_spec

RNG = np.random.default_rng(0)


def images(n: int = 3, size: int = 16, low: float = 0.1, high: float = 0.9) -> np.ndarray:
    """A random batch (n, size, size, 3) of floats in [low, high]."""
    return np.random.default_rng(n * 1000 + size).uniform(low, high, size=(n, size, size, 3))


# --- scores ----------------------------------------------------------------------------------------------------


def test_psnr_of_a_constant_difference_is_ten_log10_one_over_mse() -> None:
    original = images(low=0.2, high=0.8)
    assert scores.psnr(original + 0.1, original) == pytest.approx(20.0, abs=1e-9)  # MSE 0.01
    assert scores.psnr(original - 0.01, original) == pytest.approx(40.0, abs=1e-9)  # MSE 1e-4
    both = np.concatenate([original[:1] + 0.1, original[1:2] + 0.01])
    assert scores.psnr(both, original[:2]) == pytest.approx(30.0, abs=1e-9)  # mean over images of 20 and 40 dB


def test_psnr_of_an_exact_copy_is_inf_and_otherwise_the_mean_of_ten_log10_one_over_mse() -> None:
    original = images()
    assert scores.psnr(original, original) == math.inf
    noisy = np.clip(original + RNG.normal(0, 0.05, original.shape), 0, 1)
    mse = ((noisy - original) ** 2).reshape(len(original), -1).mean(axis=1)
    assert scores.psnr(noisy, original) == pytest.approx(float(np.mean(10 * np.log10(1 / mse))), rel=1e-12)
    assert scores.psnr(noisy, original) == pytest.approx(scores.psnr(original, noisy), rel=1e-12)


def test_ssim_of_identical_images_is_one_and_drops_with_noise() -> None:
    original = images(n=2, size=32)
    assert scores.ssim(original, original) == pytest.approx(1.0, abs=1e-12)
    noisy = np.clip(original + RNG.normal(0, 0.2, original.shape), 0, 1)
    assert scores.ssim(noisy, original) < 0.9
    flat = np.full_like(original, 0.5)
    assert scores.ssim(flat, flat) == pytest.approx(1.0, abs=1e-12)


def test_accuracy_mean_target_probability_epsilon_majority_rate_by_hand() -> None:
    assert scores.accuracy(np.array([1, 2, 3, 4]), np.array([1, 2, 0, 0])) == 0.5
    assert scores.accuracy(np.array([7]), np.array([7])) == 1.0
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.25, 0.5, 0.25]])
    assert scores.mean_target_probability(probabilities, np.array([0, 2, 1])) == pytest.approx((0.7 + 0.6 + 0.5) / 3)
    assert scores.mean_target_probability(probabilities, np.array([2, 0, 0])) == pytest.approx((0.1 + 0.1 + 0.25) / 3)
    assert scores.epsilon(0.8, 0.2) == pytest.approx(math.log(4.0))
    assert scores.epsilon(0.5, 0.5) == 0.0
    assert scores.epsilon(0.25, 0.5) == pytest.approx(-math.log(2.0))  # an adaptive server may beat the original
    assert scores.epsilon(0.9, 0.0) == math.inf
    assert scores.epsilon(1.0, 1.0) == 0.0
    assert scores.majority_rate(np.array([3, 3, 1, 3, 0, 1])) == 0.5
    assert scores.majority_rate(np.arange(10)) == 0.1
    assert scores.majority_rate(np.array([4])) == 1.0


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: scores.psnr(np.zeros((2, 8, 8)), np.zeros((2, 8, 8))), "reconstructed"),
        (lambda: scores.psnr(np.zeros((2, 8, 8, 3)), np.zeros((2, 8, 8, 1))), "original"),
        (lambda: scores.psnr(np.zeros((0, 8, 8, 3)), np.zeros((0, 8, 8, 3))), "reconstructed"),
        (lambda: scores.psnr(np.full((1, 8, 8, 3), 1.5), np.zeros((1, 8, 8, 3))), "reconstructed"),
        (lambda: scores.psnr(np.zeros((1, 8, 8, 3)), np.full((1, 8, 8, 3), -0.1)), "original"),
        (lambda: scores.psnr(np.full((1, 8, 8, 3), np.nan), np.zeros((1, 8, 8, 3))), "reconstructed"),
        (lambda: scores.psnr(np.zeros((2, 8, 8, 3)), np.zeros((3, 8, 8, 3))), "reconstructed"),
        (lambda: scores.ssim(np.zeros((2, 8, 8, 3)), np.zeros((2, 9, 9, 3))), "reconstructed"),
        (lambda: scores.ssim(np.zeros((8, 8, 3)), np.zeros((8, 8, 3))), "reconstructed"),
        (lambda: scores.ssim(np.zeros((1, 8, 8, 3)), np.full((1, 8, 8, 3), np.inf)), "original"),
        (lambda: scores.accuracy(np.array([1, 2]), np.array([1, 2, 3])), "predicted"),
        (lambda: scores.accuracy(np.zeros((2, 2)), np.zeros((2, 2))), "truth"),
        (lambda: scores.accuracy(np.array([]), np.array([])), "predicted"),
        (lambda: scores.mean_target_probability(np.ones(3), np.zeros(3, dtype=int)), "probabilities"),
        (lambda: scores.mean_target_probability(np.ones((3, 2)), np.zeros(2, dtype=int)), "probabilities"),
        (lambda: scores.mean_target_probability(np.ones((0, 2)), np.zeros(0, dtype=int)), "probabilities"),
        (lambda: scores.epsilon(0.0, 0.5), "p0"),
        (lambda: scores.epsilon(1.5, 0.5), "p0"),
        (lambda: scores.epsilon(math.nan, 0.5), "p0"),
        (lambda: scores.epsilon(0.5, -0.1), "p in [0, 1]"),
        (lambda: scores.epsilon(0.5, 1.1), "p in [0, 1]"),
        (lambda: scores.majority_rate(np.array([])), "labels"),
        (lambda: scores.majority_rate(np.zeros((2, 2), dtype=int)), "labels"),
    ],
)
def test_scores_refuse_bad_inputs_naming_the_argument(call, name: str) -> None:
    with pytest.raises(ValueError, match=re.escape(name)):
        call()


@pytest.mark.parametrize("targets", [[-1, 0], [3, 0]])
def test_mean_target_probability_refuses_targets_outside_the_classes(targets: list[int]) -> None:
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    with pytest.raises(ValueError, match="targets"):
        scores.mean_target_probability(probabilities, np.array(targets))


# --- data ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def splits():
    return attack_images(split="train", n=40, seed=0, progress=False), attack_images(
        split="test", n=30, seed=0, progress=False
    )


def digest(image: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()


def test_attack_images_train_and_test_share_no_image(splits) -> None:
    train, test = splits
    assert train.split == "train" and test.split == "test" and len(train) == 40 and len(test) == 30
    assert train.images.shape == (40, IMAGE_SIZE, IMAGE_SIZE, 3) and train.images.dtype == np.uint8
    train_digests, test_digests = {digest(i) for i in train.images}, {digest(i) for i in test.images}
    assert len(train_digests) == 40 and len(test_digests) == 30  # no duplicate inside a split either
    assert not train_digests & test_digests


def test_attack_images_labels_attributes_and_indices_follow_minidata(splits) -> None:
    for data in splits:
        n = len(data)
        assert np.array_equal(data.indices, np.arange(n))
        assert np.array_equal(data.shape_labels, np.arange(n) % len(CLASS_NAMES)) and len(CLASS_NAMES) == 10
        assert data.attributes.dtype == np.int64 and set(data.attributes.tolist()) <= set(range(15))
        assert N_ATTRIBUTES == len(BACKGROUNDS) == 15
        expected = [BACKGROUNDS.index(sample_spec(i, seed=0, split=data.split).background) for i in range(n)]
        assert data.attributes.tolist() == expected
    assert len(set(splits[0].attributes.tolist())) > 5  # the attribute varies: a probe has something to learn


def test_attack_images_are_reproducible_and_depend_on_the_seed(splits) -> None:
    again = attack_images(split="test", n=4, seed=0, progress=False)
    other = attack_images(split="test", n=4, seed=1, progress=False)
    assert np.array_equal(again.images, splits[1].images[:4])
    assert not any(np.array_equal(a, b) for a, b in zip(other.images, again.images, strict=True))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"split": "val", "n": 4}, "split"),
        ({"split": "train", "n": 1}, "train images"),
        ({"split": "test", "n": 2.0}, "test images"),
        ({"split": "test", "n": True}, "test images"),
    ],
)
def test_attack_images_refuse_bad_split_or_count(kwargs, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        attack_images(seed=0, progress=False, **kwargs)


def test_image_seed_is_fresh_per_image_split_and_seed() -> None:
    seeds = [image_seed(s, split, i) for s in (0, 1) for split in ("train", "test") for i in range(200)]
    assert len(set(seeds)) == len(seeds)
    assert image_seed(3, "test", 7) == image_seed(3, "test", 7)
    assert all(isinstance(s, int) and 0 <= s < 2**32 for s in seeds)


@pytest.mark.slow
def test_downsample_shape_dtype_and_range() -> None:
    batch = np.random.default_rng(1).integers(0, 256, size=(3, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    small = downsample(batch, size=32)
    assert small.shape == (3, 32, 32, 3) and small.dtype == np.float32
    assert small.min() >= 0.0 and small.max() <= 1.0
    constant = np.stack([np.full((IMAGE_SIZE, IMAGE_SIZE, 3), v, dtype=np.uint8) for v in (0, 51, 255)])
    flat = downsample(constant, size=64)
    assert flat.shape == (3, 64, 64, 3)
    for image, value in zip(flat, (0.0, 0.2, 1.0), strict=True):
        assert np.allclose(image, value, atol=1e-6)
    assert downsample(batch[:1], size=IMAGE_SIZE)[0] == pytest.approx(batch[0] / 255.0, abs=1e-6)


# --- options ---------------------------------------------------------------------------------------------------


def test_default_options_pass_their_check() -> None:
    options = AttackOptions()
    assert options.check() is options
    assert AttackOptions(epochs_adaptive=0, n_examples=0, n_train=2, n_test=2, resolution=128).check()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("n_train", 1), ("n_train", 2.0), ("n_train", True), ("n_test", 1), ("n_test", None),
        ("epochs_adaptive", -1), ("epochs_inversion", 0), ("epochs_attribute", 0), ("batch_size", 0),
        ("n_examples", -1), ("seed", -1), ("threads", 0), ("threads", 1.5),
        ("lr_adaptive", 0.0), ("lr_adaptive", -1e-3), ("lr_adaptive", math.nan), ("lr_attack", math.inf),
        ("lr_attack", True), ("lr_attack", "0.1"), ("resolution", 16), ("resolution", 48), ("resolution", 32.0),
        ("resolution", False),
    ],
)  # fmt: skip
def test_options_check_names_the_bad_option(name: str, value: object) -> None:
    with pytest.raises(ValueError, match=name):
        AttackOptions(**{name: value}).check()


def test_options_check_n_examples_against_n_test() -> None:
    with pytest.raises(ValueError, match=r"n_examples \(5\) must not exceed n_test \(4\)"):
        AttackOptions(n_test=4, n_examples=5).check()
    assert AttackOptions(n_test=4, n_examples=4).check()


# --- nets ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("resolution", [32, 64])
@pytest.mark.parametrize("shape", [(3, 40, 40), (8, 5, 7), (4, 1, 1), (50,), (6, 10)])
def test_decoder_maps_any_ifm_shape_to_images_in_unit_range(shape: tuple[int, ...], resolution: int) -> None:
    torch.manual_seed(0)
    decoder = Decoder(shape, resolution=resolution)
    with torch.no_grad():
        out = decoder(torch.randn(2, *shape) * 10)
    assert out.shape == (2, 3, resolution, resolution) and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


@pytest.mark.parametrize("shape", [(3, 40, 40), (8, 5, 7), (4, 1, 1), (50,)])
def test_probe_gives_one_logit_per_class(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    probe = Probe(shape, classes=N_ATTRIBUTES)
    with torch.no_grad():
        logits = probe(torch.randn(5, *shape))
    assert logits.shape == (5, N_ATTRIBUTES) and torch.isfinite(logits).all()


def test_check_resolution_accepts_grid_times_powers_of_two() -> None:
    assert GRID == 16
    for resolution in (32, 64, 128, 256, 1024):
        assert check_resolution(resolution) == resolution


@pytest.mark.parametrize("resolution", [0, -32, 16, 24, 33, 48, 96, 100, 32.0, "32", True, None])
def test_check_resolution_refusals(resolution: object) -> None:
    with pytest.raises(ValueError, match="resolution must be"):
        check_resolution(resolution)
