"""Caffe's LRN and max pooling with fused CPU inference kernels (numba) that give the same bits as their torch form."""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from ifmsan._shared.jit import drain_in_threads, numba_compile

FUSED_MIN_ELEMENTS = 1 << 22
"""Once a process has sent this many values through a layer type, it loads that fused kernel (importing numba is a
start-up cost paid once per process); until then the bit-identical torch form runs, so short jobs on small nets never pay."""
_TORCH_WORK: dict[str, int] = {}
_TORCH_FORM: list[int] = [0]


@contextlib.contextmanager
def torch_form() -> Iterator[None]:
    """Run the layers in their torch form inside the block, so that forward-mode AD (dual tensors) goes through them."""
    _TORCH_FORM[0] += 1
    try:
        yield
    finally:
        _TORCH_FORM[0] -= 1


def _worth_fusing(x: torch.Tensor, loader: Any) -> bool:
    """Whether this call should use, and if need be load, a fused kernel (`loader` is its functools.cache)."""
    if loader.cache_info().currsize > 0:
        return True
    name = loader.__wrapped__.__name__
    _TORCH_WORK[name] = _TORCH_WORK.get(name, 0) + x.numel()
    return _TORCH_WORK[name] >= FUSED_MIN_ELEMENTS


def _cpu_inference(x: torch.Tensor) -> bool:
    """A 4-D CPU float32 batch that needs no gradient: the only case the fused kernels cover."""
    return (
        x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4
        and not (torch.is_grad_enabled() and x.requires_grad) and not _TORCH_FORM[0]
    )  # fmt: skip


def _per_image(task: Callable[[int], None], x: torch.Tensor) -> None:
    """task(b) for every image b of the batch, spread over torch's CPU threads (the kernels hold no GIL)."""
    drain_in_threads(task, x.shape[0], workers=min(torch.get_num_threads(), math.ceil(x.numel() / 2**16)))


def lrn_reference(x: torch.Tensor, *, size: int, alpha: float, k: float) -> torch.Tensor:
    """x * t^(-3/4), t = k + alpha/size * (sum of squares over the channels c - size//2 .. c + (size-1)//2).

    One definition, fixed rounding: squares summed in channel order from zero, t = sum * (alpha/size) + k, then
    r = rsqrt(t) and y = x * (r / rsqrt(r)), every step a correctly rounded IEEE op in x's dtype (torch.rsqrt is
    1/sqrt; torch.sqrt may go through a vector math library that is not). Works with autograd and on any device;
    the fused kernel computes the same ops in the same order.
    """
    channels = x.shape[1]
    squares = nn.functional.pad(x * x, (0, 0, 0, 0, size // 2, (size - 1) // 2))
    total = torch.zeros_like(x)
    for shift in range(size):
        total = total + squares[:, shift : shift + channels]
    t = total * (alpha / size) + k
    r = torch.rsqrt(t)
    return x * (r / torch.rsqrt(r))


def _lrn_planes(x: np.ndarray, out: np.ndarray, before: int, after: int, scale: np.float32, k: np.float32) -> None:
    """The reference's ops for (batch, channel, pixel) float32 arrays, one output plane at a time."""
    batch, channels, pixels = x.shape
    total = np.empty(pixels, dtype=np.float32)
    for b in range(batch):
        for c in range(channels):
            total[:] = np.float32(0.0)
            for j in range(max(0, c - before), min(channels, c + after + 1)):
                for p in range(pixels):
                    v = x[b, j, p]
                    total[p] += v * v
            for p in range(pixels):
                r = np.float32(1.0) / np.sqrt(total[p] * scale + k)
                out[b, c, p] = x[b, c, p] * (r / (np.float32(1.0) / np.sqrt(r)))


@functools.cache
def _compiled_lrn() -> Callable[..., Any] | None:
    """The fused kernel (numba, cached on disk), or None without numba or with IFMSAN_NO_NUMBA set."""
    kernels = numba_compile(_lrn_planes)
    return None if kernels is None else kernels[0]


class CaffeLRN(nn.Module):
    """LRN(size, alpha, beta=0.75, k) as in Caffe and nn.LocalResponseNorm; inference on CPU float32 runs fused.

    The fused kernel reads each input plane `size` times and writes the output once, about 5x faster than
    nn.LocalResponseNorm's padded 5-D average pool and pow; it is bit-identical to `lrn_reference`, which runs
    whenever gradients are needed, on other devices and dtypes, and without numba. Outputs differ from
    nn.LocalResponseNorm's by float rounding only (a few 1e-7 relative).
    """

    def __init__(self, size: int, *, alpha: float, beta: float, k: float) -> None:
        """Caffe's across-channel LRN; the sqrt formulation is exact for beta = 3/4 only, so other betas are refused."""
        super().__init__()
        if beta != 0.75:
            raise ValueError(f"CaffeLRN supports beta=0.75 (Caffe AlexNet's); got beta={beta!r}")
        if size < 1:
            raise ValueError(f"LRN size must be a positive integer, got {size!r}")
        self.size, self.alpha, self.beta, self.k = int(size), float(alpha), float(beta), float(k)

    def extra_repr(self) -> str:
        """Shown by print(model)."""
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The fused kernel for CPU float32 inference, the torch reference otherwise."""
        kernel = _compiled_lrn() if _cpu_inference(x) and _worth_fusing(x, _compiled_lrn) else None
        if kernel is None:
            return lrn_reference(x, size=self.size, alpha=self.alpha, k=self.k)
        return self._fused(kernel, x)

    def _fused(self, kernel: Callable[..., Any], x: torch.Tensor) -> torch.Tensor:
        """The kernel, one image at a time over torch's CPU threads."""
        batch, channels, height, width = x.shape
        source = x.detach().contiguous().reshape(batch, channels, height * width).numpy()
        out = torch.empty((batch, channels, height, width), dtype=torch.float32)
        target = out.numpy().reshape(batch, channels, height * width)
        scale, k = np.float32(self.alpha / self.size), np.float32(self.k)
        before, after = self.size // 2, (self.size - 1) // 2

        def one_image(b: int) -> None:
            """Normalise image b into its slot of the output."""
            kernel(source[b : b + 1], target[b : b + 1], before, after, scale, k)

        _per_image(one_image, x)
        return out


def _pool_planes(x: np.ndarray, out: np.ndarray, kernel: int, stride: int) -> None:
    """Max over each kernel x kernel window (clipped at the border, no padding); a NaN anywhere in a window wins."""
    batch, channels, height, width = x.shape
    out_height, out_width = out.shape[2], out.shape[3]
    for b in range(batch):
        for c in range(channels):
            for oh in range(out_height):
                h0 = oh * stride
                h1 = min(h0 + kernel, height)
                for ow in range(out_width):
                    w0 = ow * stride
                    w1 = min(w0 + kernel, width)
                    best = x[b, c, h0, w0]
                    for h in range(h0, h1):
                        for w in range(w0, w1):
                            v = x[b, c, h, w]
                            if v > best or v != v:
                                best = v
                    out[b, c, oh, ow] = best


@functools.cache
def _compiled_pool() -> Callable[..., Any] | None:
    """The fused max-pool kernel, or None without numba or with IFMSAN_NO_NUMBA set."""
    kernels = numba_compile(_pool_planes)
    return None if kernels is None else kernels[0]


def _pooled_size(size: int, *, kernel: int, stride: int, ceil_mode: bool) -> int:
    """torch's output length without padding: ceil or floor of (size - kernel) / stride, + 1; a last window starts inside."""
    steps = -(-(size - kernel) // stride) if ceil_mode else (size - kernel) // stride
    if ceil_mode and steps * stride >= size:
        steps -= 1
    return steps + 1


class CaffeMaxPool(nn.MaxPool2d):
    """nn.MaxPool2d whose CPU float32 inference without padding or dilation runs fused: same values, no index tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The fused kernel where it applies, torch's max pooling otherwise (autograd, padding, other devices)."""
        kernel, stride = self.kernel_size, self.stride
        if not (isinstance(kernel, int) and isinstance(stride, int)):
            return super().forward(x)
        fused = (
            self.padding == 0 and self.dilation == 1 and not self.return_indices
            and _cpu_inference(x) and min(x.shape[2:]) >= kernel
        )  # fmt: skip
        pool = _compiled_pool() if fused and _worth_fusing(x, _compiled_pool) else None
        if pool is None:
            return super().forward(x)
        batch, channels, height, width = x.shape
        ceil_mode = bool(self.ceil_mode)
        out = torch.empty(
            (
                batch,
                channels,
                _pooled_size(height, kernel=kernel, stride=stride, ceil_mode=ceil_mode),
                _pooled_size(width, kernel=kernel, stride=stride, ceil_mode=ceil_mode),
            ),
            dtype=torch.float32,
        )
        source, target = x.detach().contiguous().numpy(), out.numpy()

        def one_image(b: int) -> None:
            """Pool image b into its slot of the output."""
            pool(source[b : b + 1], target[b : b + 1], kernel, stride)

        _per_image(one_image, x)
        return out
