"""The certificate: from ||J_s||_F^2 to a floor on any unbiased attacker's MSE per pixel and a ceiling on its PSNR.

A randomized release y = J_s-linearized IFM + noise of std sigma has Fisher information I = c J_s^T J_s / sigma^2 about
the image z (d values), with c = 1 for Gaussian noise (per element, or one draw per window of a randomized hold) and
c = 2 for Laplace noise of the same std. Its diagonal Fisher information per dimension is dFIL = tr I / d, and the
Cramer-Rao bound gives E||z_hat - z||^2 / d >= 1 / dFIL for every unbiased estimator z_hat; with pixels in [0, 1]
the PSNR of such an estimate is at most 10 log10(dFIL) dB. A deterministic release (pure sample-and-hold) has no
finite Fisher information: it has no bound, represented as None and the text NO_BOUND, never as a number.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch

from ifmsan.core.knobs import NOISES, RANDOMIZED
from ifmsan.core.sanitize import SELECTORS

FISHER_FACTORS: dict[str, float | None] = {"hold_gaussian": 1.0, "gaussian": 1.0, "laplace": 2.0, "deterministic": None}
"""c in I = c J_s^T J_s / sigma^2 per noise family at noise std sigma; None: no noise, no finite information."""
NOISE_FAMILIES: tuple[str, ...] = tuple(FISHER_FACTORS)
"""The noise families `dfil` takes: J_s is the held Jacobian for hold_gaussian, the plain Jacobian J for the others."""
NO_BOUND = "no bound (deterministic release)"
"""What a report shows instead of a number where the release adds no noise."""
VAN_TREES_NOTE = "approximation: van Trees (Bayesian Cramer-Rao) floor with a Gaussian prior, E tr I estimated"
"""The label a report puts beside `van_trees_floor`: the expectation over the prior is taken from the images at hand."""
DB_PER_NEPER = 10.0 / math.log(10.0)
"""d(10 log10 x) / d(ln x): turns a relative standard error into one in dB."""


def noise_family(knob: str) -> str:
    """The noise family of a knob name: a selector is deterministic, a noise or randomized knob is its own family."""
    if knob in SELECTORS:
        return "deterministic"
    if knob in NOISES or knob in RANDOMIZED:
        return knob
    raise ValueError(f"knob must be one of {', '.join(SELECTORS + NOISES + RANDOMIZED)}; got {knob!r}")


def _number(value: object, *, name: str, least: float = 0.0, finite: bool = True) -> float:
    """Return a real number >= least as float, or raise a ValueError naming it (NaN always refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a {'finite ' if finite else ''}number >= {least:g}, got {value!r}")
    number = float(value)
    if math.isnan(number) or number < least or (finite and math.isinf(number)):
        raise ValueError(f"{name} must be a {'finite ' if finite else ''}number >= {least:g}, got {number}")
    return number


def _dims(value: object) -> int:
    """Return the number of estimated dimensions d, or raise a ValueError: an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise ValueError(f"dims must be an integer >= 1 (the image's number of values), got {value!r}")
    return int(value)


def _noise_and_sigma(noise: object, sigma: object) -> tuple[str, float | None]:
    """The family and sigma checked together: None for sigma means no noise (a deterministic release)."""
    if noise not in FISHER_FACTORS:
        raise ValueError(f"noise must be one of {', '.join(NOISE_FAMILIES)}; got {noise!r}")
    family = str(noise)
    if family == "deterministic":
        if sigma is not None and sigma != 0:
            raise ValueError(f"sigma must be None or 0 for a deterministic release, got {sigma!r}")
        return family, None
    if sigma is None:
        raise ValueError(f"sigma must be given for noise {family!r}: the noise std, a finite number >= 0")
    value = _number(sigma, name="sigma")
    return family, (value if value > 0 else None)


def dfil(held_norm: float, *, sigma: float | None, dims: int, noise: str) -> float | None:
    """dFIL = c ||J_s||_F^2 / (sigma^2 d); None (no bound) for a deterministic release or sigma = 0."""
    norm = _number(held_norm, name="held_norm")
    family, std = _noise_and_sigma(noise, sigma)
    count = _dims(dims)
    factor = FISHER_FACTORS[family]
    if std is None or factor is None:
        return None
    return factor * norm / (std * std * count)


def mse_floor(information: float | None) -> float | None:
    """1 / dFIL, the Cramer-Rao floor on an unbiased estimate's MSE per dimension; inf at dFIL = 0, None without bound."""
    if information is None:
        return None
    value = _number(information, name="dfil", finite=False)
    return math.inf if value == 0 else 1.0 / value


def psnr_ceiling(mse: float | None) -> float | None:
    """10 log10(1 / mse) dB for pixels in [0, 1] (data range 1); None without bound."""
    if mse is None:
        return None
    value = _number(mse, name="mse", finite=False)
    if value == 0:
        return math.inf
    return -math.inf if math.isinf(value) else -10.0 * math.log10(value)


def van_trees_floor(fisher_trace: float, *, prior_trace: float, dims: int) -> float:
    """d / (E tr I + tr J(pi)): the Bayesian floor on E||z_hat - z||^2 / d for any estimator, biased ones too.

    fisher_trace is E_pi tr I = d x dFIL averaged over the prior; prior_trace is tr J(pi) (`gaussian_prior_trace`).
    Labelled an approximation (VAN_TREES_NOTE) where the expectation comes from a few images.
    """
    information = _number(fisher_trace, name="fisher_trace")
    prior = _number(prior_trace, name="prior_trace")
    count = _dims(dims)
    if information + prior == 0:
        return math.inf
    return count / (information + prior)


def gaussian_prior_trace(covariance: float | np.ndarray | torch.Tensor, *, dims: int | None = None) -> float:
    """tr J(pi) = tr Sigma_pi^-1 of a Gaussian prior: a variance (isotropic, needs dims), variances (d,) or Sigma (d, d)."""
    if isinstance(covariance, numbers.Real) and not isinstance(covariance, bool):
        variance = _number(covariance, name="covariance")
        if variance == 0:
            raise ValueError("covariance must be a variance > 0 (a prior of zero variance has no finite trace)")
        if dims is None:
            raise ValueError("dims must be given with a scalar covariance (an isotropic prior over dims values)")
        return _dims(dims) / variance
    if not isinstance(covariance, (np.ndarray, torch.Tensor)):
        raise ValueError(
            f"covariance must be a number, a (d,) vector or a (d, d) matrix, got {type(covariance).__name__}"
        )
    matrix = np.asarray(covariance.detach().cpu() if isinstance(covariance, torch.Tensor) else covariance, dtype=float)
    if matrix.ndim == 1 and matrix.size and np.all(np.isfinite(matrix)) and np.all(matrix > 0):
        return float(np.sum(1.0 / matrix))
    if matrix.ndim == 2 and matrix.shape[0] == matrix.shape[1] and matrix.size and np.all(np.isfinite(matrix)):
        symmetric = (matrix + matrix.T) / 2
        eigenvalues = np.linalg.eigvalsh(symmetric)
        if np.allclose(matrix, matrix.T) and eigenvalues.min() > 0:
            return float(np.sum(1.0 / eigenvalues))
    raise ValueError(
        f"covariance must be positive variances (d,) or a symmetric positive definite (d, d) matrix, got shape "
        f"{matrix.shape}"
    )


@dataclass(frozen=True)
class Bound:
    """One certificate with standard errors propagated from the held-norm estimate by the delta method (0 when exact)."""

    noise: str
    sigma: float | None
    dims: int
    held_norm: float
    held_norm_se: float
    dfil: float | None
    dfil_se: float | None
    mse_floor: float | None
    mse_floor_se: float | None
    psnr_ceiling: float | None
    """dB."""
    psnr_ceiling_se: float | None
    """dB."""

    @property
    def certified(self) -> bool:
        """Whether there is a finite bound (a randomized release with sigma > 0)."""
        return self.dfil is not None

    @property
    def text(self) -> str:
        """The bound in words for a report, or NO_BOUND."""
        if self.mse_floor is None or self.psnr_ceiling is None:
            return NO_BOUND
        spread = f" ± {self.psnr_ceiling_se:.2g}" if self.psnr_ceiling_se else ""
        return f"MSE per pixel >= {self.mse_floor:.4g}, PSNR <= {self.psnr_ceiling:.2f}{spread} dB (unbiased attacker)"

    @classmethod
    def from_held_norm(cls, held_norm: float, *, se: float = 0.0, sigma: float | None, dims: int, noise: str) -> Bound:
        """The bound of ||J_s||_F^2 = held_norm ± se (se 0: exact) at noise std sigma over d = dims values."""
        norm = _number(held_norm, name="held_norm")
        error = _number(se, name="se")
        information = dfil(norm, sigma=sigma, dims=dims, noise=noise)
        family, _ = _noise_and_sigma(noise, sigma)
        given = None if sigma is None else float(sigma)
        if information is None:
            return cls(family, given, int(dims), norm, error, None, None, None, None, None, None)
        information_se = dfil(error, sigma=sigma, dims=dims, noise=noise)  # dFIL is linear in the norm
        relative = 0.0 if error == 0 else (error / norm if norm > 0 else math.inf)
        floor = 1.0 / information if information > 0 else math.inf
        ceiling = psnr_ceiling(floor)
        assert ceiling is not None  # floor is a number
        floor_se = 0.0 if relative == 0 else floor * relative  # 1/dFIL carries dFIL's relative error
        ceiling_se = DB_PER_NEPER * relative  # 10 log10(dFIL): its relative error in dB
        return cls(
            family, given, int(dims), norm, error, information, information_se, floor, floor_se, ceiling, ceiling_se
        )
