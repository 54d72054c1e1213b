"""The white-box optimization attack (rMLE, He et al., ACSAC 2019): the image whose own release best explains y.

The attacker knows f_L (the network up to layer L), the knob, its value and its selection rule. From a release y of
one image it estimates ẑ = argmin_z ‖S(f_L(z)) − y‖² + tv_weight·TV(z), where z is the image at r x r pixels in
[0, 1] (`ifmsan.certify.pixels.release_function`) and S is the knob's deterministic part applied to the candidate's
own IFM h = f_L(z):

- window knobs (nonzero_mean, first, mean, random, and hold_gaussian, whose hold is nonzero_mean): sample-and-hold
  with the window's choices made on h (`ifmsan.core.hold.holding`), recomputed at every step and held fixed within
  it (the release is locally a fixed linear map of h; the gradient goes through the held samples);
- per-element noise knobs (gaussian, laplace): S is the identity.

How y is read per window. The loss is the full-stream ‖S(h) − y‖², each held value counted once per copy. For a
window w of length l_w that the candidate holds at a_w (`Holding.apply(h)`), Σ_{i∈w} (a_w − y_i)² =
l_w (a_w − ȳ_w)² + Σ_{i∈w} (y_i − ȳ_w)², with ȳ_w the window's mean of y: so each held window is compared with ȳ_w,
weighted by its length, plus its spread, which does not depend on z. A window the candidate passes through (all
zero, nonzero_mean) is compared sample by sample. For a genuine release every window of y is constant (n equal
copies plus one shared draw; an all-zero window stays zero plus that draw), so ȳ_w is also the value at whatever
position the candidate's holding reads; the mean is the reading that keeps the identity exact for any y.

The search: Adam on z from the caller's start z0 (e.g. the mean training image), a fixed number of iterations at a
fixed learning rate, z clamped to [0, 1] after each step (projected Adam: the moments are kept; the true image lies
in the box, so the estimate is the constrained MLE and may sit on its boundary). The layers run in their torch form;
the run draws nothing, so the same inputs give the same bits (deterministic torch, a fixed thread count).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from ifmsan.attacks import scores
from ifmsan.core.hold import holding
from ifmsan.models.base import LayeredNet


@dataclass(frozen=True)
class OptimizeOptions:
    """The search's budget and prior; the same options and inputs give bit-identical reconstructions."""

    iterations: int = 200
    lr: float = 0.02
    tv_weight: float = 0.0
    resolution: int | None = 32
    """Side r of the estimated image; None: the network's full input, pixel for pixel."""
    n_images: int | None = None
    """Attack only the first n_images releases (the attack is costly); None: all of them."""
    seed: int = 0
    """torch's seed during the run (nothing is drawn today: the start is the caller's z0)."""
    threads: int = 1

    def check(self) -> OptimizeOptions:
        """Return self, or raise a ValueError naming the first option out of range."""
        from ifmsan.certify.pixels import check_resolution

        for name, low in {"iterations": 0, "seed": 0, "threads": 1}.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"optimization option {name} must be an integer >= {low}, got {value!r}")
        for name, positive in (("lr", True), ("tv_weight", False)):
            value = getattr(self, name)
            bad = isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            if bad or value < 0 or (positive and value == 0):
                raise ValueError(f"optimization option {name} must be a finite number {'>' if positive else '>='} 0, "
                                 f"got {value!r}")  # fmt: skip
        check_resolution(self.resolution, name="optimization option resolution")
        n = self.n_images
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"optimization option n_images must be an integer >= 1 or None (all), got {n!r}")
        return self


@dataclass(frozen=True)
class OptimizeResult:
    """The estimates and the data term ‖S(f_L(z)) − y‖² of each image at the start and at the estimate."""

    reconstructions: np.ndarray
    """(n, 3, r, r) float32 in [0, 1]."""
    loss: np.ndarray
    """(n,) float64: the full-stream squared error of each estimate's release (no prior term)."""
    initial_loss: np.ndarray
    """(n,) float64: the same at the start z0."""


@dataclass(frozen=True)
class ReleaseRule:
    """S, the deterministic part of a knob at one value: hold with `select` at `window`, or (select None) identity."""

    select: str | None
    window: int = 1


def release_rule(knob: str, value: int | float) -> ReleaseRule:
    """The S an attacker who knows `knob` at `value` applies to a candidate's IFM; a ValueError for a bad knob or value."""
    from ifmsan.core.knobs import KNOBS, NOISES, RANDOMIZED, HoldNoiseKnob, check_scale
    from ifmsan.core.sanitize import check_window

    if knob in NOISES:
        check_scale(value, name="value")
        return ReleaseRule(select=None)
    if knob in RANDOMIZED:
        return ReleaseRule(select=HoldNoiseKnob.select, window=check_window(value, name="value"))
    if knob in KNOBS:
        return ReleaseRule(select=knob, window=check_window(value, name="value"))
    raise ValueError(f"knob must be one of {', '.join(KNOBS + RANDOMIZED)}; got {knob!r}")


@dataclass(frozen=True)
class _Windows:
    """One release y read per window: the stream, each window's mean and its spread Σ (y_i − ȳ_w)²."""

    stream: torch.Tensor
    means: torch.Tensor
    spread: torch.Tensor


def _windows(y: torch.Tensor, window: int) -> _Windows:
    """y (D,) float64 cut into the sanitizer's windows (the last one may be short)."""
    size = y.numel()
    width = min(window, size)
    rows = -(-size // width)
    lengths = torch.full((rows,), width, dtype=torch.float64)
    lengths[-1] = size - (rows - 1) * width
    padded = torch.nn.functional.pad(y, (0, rows * width - size)).reshape(rows, width)
    means = padded.sum(dim=1) / lengths
    inside = torch.arange(width)[None, :] < lengths[:, None]
    spread = ((padded - means[:, None]) ** 2).masked_fill(~inside, 0.0).sum(dim=1)
    return _Windows(stream=y, means=means, spread=spread)


def _held_error(h: torch.Tensor, target: _Windows, rule: ReleaseRule, seed: int) -> torch.Tensor:
    """‖S(h) − y‖² of one candidate IFM h (D,) float64, with S's choices made on h itself."""
    if rule.select is None:
        return ((h - target.stream) ** 2).sum()
    hold = holding(h.detach(), rule.window, select=rule.select, seed=seed)
    # Holding.apply over every window: its linear combinations; the passed-through samples are read directly below
    # (apply's own pass-through branch is a Python loop over windows).
    chosen = replace(hold, held=torch.ones_like(hold.held)).apply(h)
    held = hold.held
    weights = hold.lengths.to(torch.float64) * held  # a passed-through window's chosen value is not released
    error = (weights * (chosen - target.means) ** 2).sum() + (target.spread * held).sum()
    if bool(held.all()):
        return error
    passed = (~held).repeat_interleave(hold.lengths)
    return error + ((h[passed] - target.stream[passed]) ** 2).sum()


def release_loss(
    ifms: torch.Tensor,
    releases: torch.Tensor,
    *,
    knob: str,
    value: int | float,
    release_seeds: Sequence[int] | None = None,
) -> torch.Tensor:
    """Per-image ‖S(h) − y‖² (B,) float64 of candidate IFMs h (B, D) against releases y (B, D), differentiable in h.

    release_seeds: each release's sanitizer seed (it fixes the `random` picks); None: 0 for every image.
    """
    rule = release_rule(knob, value)
    if ifms.dim() != 2 or tuple(releases.shape) != tuple(ifms.shape) or ifms.shape[0] == 0:
        raise ValueError(f"ifms {tuple(ifms.shape)} and releases {tuple(releases.shape)} must both be (B, D), B >= 1")
    seeds = _seeds(release_seeds, len(ifms))
    ys = releases.detach().to(torch.float64)
    return _batch_error(ifms.to(torch.float64), [_windows(y, rule.window) for y in ys], rule, seeds)


def _batch_error(h: torch.Tensor, targets: Sequence[_Windows], rule: ReleaseRule, seeds: Sequence[int]) -> torch.Tensor:
    """_held_error of each image of a batch (B, D) float64."""
    return torch.stack([_held_error(h[b], targets[b], rule, seeds[b]) for b in range(len(targets))])


def _seeds(seeds: Sequence[int] | None, n: int) -> list[int]:
    """One sanitizer seed per release (0 each when None), or a ValueError."""
    from ifmsan.core.sanitize import check_seed

    if seeds is None:
        return [0] * n
    values = list(seeds)
    if len(values) != n:
        raise ValueError(f"release_seeds has {len(values)} entries for {n} releases; expected one per release")
    return [check_seed(s, name=f"release_seeds[{i}]") for i, s in enumerate(values)]


def total_variation(z: torch.Tensor) -> torch.Tensor:
    """Anisotropic TV of images (B, 3, r, r): Σ |vertical| + |horizontal| neighbour differences, per image (B,)."""
    vertical = (z[:, :, 1:, :] - z[:, :, :-1, :]).abs().sum(dim=(1, 2, 3))
    return vertical + (z[:, :, :, 1:] - z[:, :, :, :-1]).abs().sum(dim=(1, 2, 3))


def _as_float_tensor(value: object, name: str) -> torch.Tensor:
    """A finite floating tensor from a tensor or numpy array, or a ValueError naming it."""
    if isinstance(value, np.ndarray):
        if not np.issubdtype(value.dtype, np.floating):
            raise ValueError(f"{name} must have a floating-point dtype, got {value.dtype}")
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor) or not value.dtype.is_floating_point:
        raise ValueError(f"{name} must be a floating-point torch.Tensor or numpy array, got {type(value).__name__}")
    if value.numel() == 0 or not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} must be non-empty and hold finite values only")
    return value.detach()


def _checked_releases(releases: object, net: LayeredNet, layer: str) -> torch.Tensor:
    """Releases as (N, D) float64: (N, *ifm_shape) or already flat (N, D)."""
    shape = tuple(net.ifm_shape(layer))
    size = math.prod(shape)
    y = _as_float_tensor(releases, "releases")
    if y.dim() < 2 or tuple(y.shape[1:]) not in (shape, (size,)):
        raise ValueError(f"releases must be (N, {', '.join(map(str, shape))}) or (N, {size}) for layer {layer!r}, "
                         f"got shape {tuple(y.shape)}")  # fmt: skip
    return y.reshape(len(y), size).to(torch.float64)


def _checked_start(z0: object, side: tuple[int, int], n: int) -> torch.Tensor:
    """The start (n, 3, *side) float32 from one image (3, *side) or one per release, in [0, 1]."""
    z = _as_float_tensor(z0, "z0")
    if tuple(z.shape) == (3, *side):
        z = z.expand(n, 3, *side)
    elif z.dim() != 4 or tuple(z.shape[1:]) != (3, *side) or len(z) < n:
        raise ValueError(f"z0 must be one image (3, {side[0]}, {side[1]}) or one per release (N, 3, {side[0]}, "
                         f"{side[1]}) at the option resolution, got shape {tuple(z.shape)}")  # fmt: skip
    if float(z.min()) < 0.0 or float(z.max()) > 1.0:
        raise ValueError(f"z0 must hold pixels in [0, 1], got values in [{float(z.min())}, {float(z.max())}]")
    return z[:n].to(torch.float32).clone()


def optimize_attack(
    net: LayeredNet, releases: torch.Tensor | np.ndarray, *, layer: str, knob: str, value: int | float,
    z0: torch.Tensor | np.ndarray, release_seeds: Sequence[int] | None = None, options: OptimizeOptions | None = None,
) -> OptimizeResult:  # fmt: skip
    """Estimate each image from its release y at `layer` by fitting z so the candidate's own release matches y.

    releases: (N, *ifm_shape) or (N, D), as the knob left them; z0: the start, one image (3, r, r) or one per release,
    in [0, 1] (r = options.resolution, or the network's input size when it is None); release_seeds: each release's
    sanitizer seed (the `random` picks depend on it; None: 0). The net must be in eval mode; it is not changed.
    """
    from ifmsan._shared.torchrepro import reproducible_torch
    from ifmsan.certify.pixels import release_function
    from ifmsan.models.fused import torch_form
    from ifmsan.steps.sweep import check_layer

    o = (options or OptimizeOptions()).check()
    check_layer(net, layer)
    if net.training:
        raise ValueError(f"net {net.name} is in training mode; call net.eval() before the attack (batch norm, dropout)")
    rule = release_rule(knob, value)
    ys = _checked_releases(releases, net, layer)
    if o.n_images is not None and o.n_images > len(ys):
        raise ValueError(f"optimization option n_images ({o.n_images}) exceeds the {len(ys)} releases given")
    n = len(ys) if o.n_images is None else o.n_images
    seeds = _seeds(release_seeds, len(ys))[:n]
    side = (o.resolution, o.resolution) if o.resolution is not None else tuple(net.input_shape[1:3])
    start = _checked_start(z0, (int(side[0]), int(side[1])), n)
    release = release_function(net, layer=layer, resolution=o.resolution)
    targets = [_windows(y, rule.window) for y in ys[:n]]

    def data_term(z: torch.Tensor) -> torch.Tensor:
        """‖S(f_L(z)) − y‖² of each candidate, in float64."""
        return _batch_error(release(z).to(torch.float64), targets, rule, seeds)

    with reproducible_torch(seed=o.seed, threads=o.threads), torch_form():
        z = start.requires_grad_(True)
        with torch.no_grad():
            initial = data_term(z)
        adam = torch.optim.Adam([z], lr=o.lr)
        for _ in range(o.iterations):
            objective = data_term(z).sum()
            if o.tv_weight:
                objective = objective + o.tv_weight * total_variation(z).sum()
            (z.grad,) = torch.autograd.grad(objective, [z])  # z only: the net's weights get no gradients
            adam.step()
            with torch.no_grad():
                z.clamp_(0.0, 1.0)
        with torch.no_grad():
            final = data_term(z)
    return OptimizeResult(
        reconstructions=z.detach().numpy().astype(np.float32, copy=True),
        loss=final.numpy().astype(np.float64), initial_loss=initial.numpy().astype(np.float64),
    )  # fmt: skip


@dataclass(frozen=True)
class ReconstructionScores:
    """Per-image scores of reconstructions against their originals, each (N,) float64."""

    mse: np.ndarray
    psnr: np.ndarray
    ssim: np.ndarray


def _channels_last(name: str, images: object) -> np.ndarray:
    """(N, r, r, 3) float64 from (N, r, r, 3) or (N, 3, r, r); the range is checked by attacks.scores."""
    array = np.asarray(images, dtype=np.float64)
    given = array.shape
    if array.ndim == 4 and array.shape[1] == 3 and array.shape[-1] != 3:
        array = array.transpose(0, 2, 3, 1)
    if array.ndim != 4 or array.shape[-1] != 3 or array.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty batch of RGB images (N, r, r, 3) or (N, 3, r, r), "
                         f"got shape {given}")  # fmt: skip
    return array


def reconstruction_scores(reconstructed: object, original: object) -> ReconstructionScores:
    """Per-image MSE, PSNR and SSIM in [0, 1] pixels, by the same skimage calls as the decoder's scores (data range 1)."""
    rec, orig = _channels_last("reconstructed", reconstructed), _channels_last("original", original)
    if rec.shape != orig.shape:
        raise ValueError(f"reconstructed {rec.shape} and original {orig.shape} must have the same shape")
    psnr = [scores.psnr(rec[i : i + 1], orig[i : i + 1]) for i in range(len(rec))]  # also checks finite and [0, 1]
    ssim = [scores.ssim(rec[i : i + 1], orig[i : i + 1]) for i in range(len(rec))]
    mse = ((rec - orig) ** 2).mean(axis=(1, 2, 3))
    return ReconstructionScores(mse=mse, psnr=np.asarray(psnr, dtype=np.float64), ssim=np.asarray(ssim))


def image_pixels(net: LayeredNet, images: np.ndarray, *, resolution: int | None) -> torch.Tensor:
    """uint8 images (N, H, W, 3) as z (N, 3, r, r) in [0, 1]: the attack's targets, and their mean its start."""
    from PIL import Image

    from ifmsan.certify import pixels

    array = np.asarray(images)
    if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8 or len(array) == 0:
        raise ValueError(f"images must be a non-empty uint8 batch (N, H, W, 3), got {array.dtype} {array.shape}")
    return torch.stack(
        [pixels.image_pixels(Image.fromarray(image), net=net, resolution=resolution) for image in array]
    ).clamp(0.0, 1.0)
