"""Score functions of the adversaries, kept apart from training so tests can check them against hand-computed values."""

from __future__ import annotations

import math

import numpy as np


def _images(name: str, value: np.ndarray) -> np.ndarray:
    """A batch of float images (N, H, W, 3) in [0, 1], or a ValueError naming the argument."""
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != 4 or array.shape[-1] != 3 or array.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty batch of RGB images (N, H, W, 3), got shape {array.shape}")
    if not np.isfinite(array).all() or array.min() < 0.0 or array.max() > 1.0:
        raise ValueError(f"{name} must hold finite values in [0, 1]")
    return array


def psnr(reconstructed: np.ndarray, original: np.ndarray) -> float:
    """Mean over images of skimage's PSNR (data range 1); an exact copy scores +inf, as skimage says."""
    from skimage.metrics import peak_signal_noise_ratio

    rec, orig = _images("reconstructed", reconstructed), _images("original", original)
    if rec.shape != orig.shape:
        raise ValueError(f"reconstructed {rec.shape} and original {orig.shape} must have the same shape")
    with np.errstate(divide="ignore"):
        values = [peak_signal_noise_ratio(o, r, data_range=1.0) for r, o in zip(rec, orig, strict=True)]
    return float(np.mean(values))


def ssim(reconstructed: np.ndarray, original: np.ndarray) -> float:
    """Mean over images of skimage's SSIM (data range 1, colour channels last, 7x7 windows)."""
    from skimage.metrics import structural_similarity

    rec, orig = _images("reconstructed", reconstructed), _images("original", original)
    if rec.shape != orig.shape:
        raise ValueError(f"reconstructed {rec.shape} and original {orig.shape} must have the same shape")
    values = [structural_similarity(o, r, data_range=1.0, channel_axis=-1) for r, o in zip(rec, orig, strict=True)]
    return float(np.mean(values))


def accuracy(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of predictions equal to the truth."""
    pred, true = np.asarray(predicted), np.asarray(truth)
    if pred.shape != true.shape or pred.ndim != 1 or pred.size == 0:
        raise ValueError(f"predicted {pred.shape} and truth {true.shape} must be equal, non-empty 1-d arrays")
    return float(np.mean(pred == true))


def mean_target_probability(probabilities: np.ndarray, targets: np.ndarray) -> float:
    """Mean over images of the softmax probability at each image's target class."""
    probs, target = np.asarray(probabilities, dtype=np.float64), np.asarray(targets)
    if probs.ndim != 2 or target.shape != (probs.shape[0],) or probs.shape[0] == 0:
        raise ValueError(f"probabilities {probs.shape} must be (N, classes) with one target each, got {target.shape}")
    if not np.isfinite(probs).all() or probs.min() < 0.0 or probs.max() > 1.0:
        raise ValueError("probabilities must hold finite values in [0, 1]")
    if not np.issubdtype(target.dtype, np.integer) or target.min() < 0 or target.max() >= probs.shape[1]:
        raise ValueError(f"targets must be integer class indices in [0, {probs.shape[1]}), got {target.tolist()[:8]}")
    return float(probs[np.arange(len(target)), target].mean())


def epsilon(p0: float, p: float) -> float:
    """Privacy loss ln(p0 / p) of mean target probabilities (inf when p is 0)."""
    if not 0.0 < p0 <= 1.0 or not 0.0 <= p <= 1.0:
        raise ValueError(f"p0 must lie in (0, 1] and p in [0, 1], got p0={p0}, p={p}")
    return math.inf if p == 0.0 else math.log(p0 / p)


def majority_rate(labels: np.ndarray) -> float:
    """Accuracy of always guessing the most frequent label: what a probe that learned nothing can reach."""
    values = np.asarray(labels)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"labels must be a non-empty 1-d array, got shape {values.shape}")
    return float(np.bincount(values).max() / values.size)
