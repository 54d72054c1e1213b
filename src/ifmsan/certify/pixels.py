"""The image an attacker estimates: RGB pixels in [0, 1] at r x r, mapped affinely onto the network's input.

The certificate is per dimension of what is estimated, so it is stated for a parametrization z of the image:
x = preprocess(upsample(z)). `pixel_map` reads the colour part of a network's preprocessing (x = M p + b per pixel,
for an image already at the network's input size) from five constant images; `release_function` composes it with a
bilinear upsampling from r x r and the layers up to L, in their torch form, so forward-mode AD runs through them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ifmsan.models.base import LayeredNet


@dataclass(frozen=True)
class PixelMap:
    """x[c'] = sum_c matrix[c', c] p[c] + offset[c'] for RGB pixels p in [0, 1] at the network's input size."""

    matrix: torch.Tensor
    """(3, 3) float32."""
    offset: torch.Tensor
    """(3, H, W) float32: the input of an all-black image."""

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        """Network inputs (B, 3, H, W) of pixel batches (B, 3, H, W)."""
        return torch.einsum("dc,bchw->bdhw", self.matrix, pixels) + self.offset

    def pixels(self, x: torch.Tensor) -> torch.Tensor:
        """The pixels (B, 3, H, W) of network inputs (B, 3, H, W): the inverse map."""
        return torch.einsum("cd,bdhw->bchw", torch.linalg.inv(self.matrix), x - self.offset)


def pixel_map(net: LayeredNet) -> PixelMap:
    """The colour part of `net.preprocess` on images at its input size, read from a black and three primary images."""
    _, height, width = net.input_shape
    black = net.preprocess(Image.new("RGB", (width, height), (0, 0, 0)), source="pixel map (black)")
    columns = []
    for channel in range(3):
        colour = [0, 0, 0]
        colour[channel] = 255
        primary = net.preprocess(Image.new("RGB", (width, height), tuple(colour)), source="pixel map (primary)")
        columns.append((primary - black).mean(dim=(1, 2)))
    matrix = torch.stack(columns, dim=1).to(torch.float32)
    if not bool(torch.isfinite(matrix).all()) or abs(float(torch.linalg.det(matrix.double()))) < 1e-12:
        raise ValueError(f"{net.name}: its preprocessing is not an invertible colour map of the pixels; cannot certify")
    return PixelMap(matrix=matrix, offset=black.to(torch.float32))


def check_resolution(resolution: object, *, name: str = "resolution") -> int | None:
    """None (the full input) or an integer r >= 4, the side of the estimated image."""
    if resolution is None:
        return None
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or int(resolution) < 4:
        raise ValueError(
            f"{name} must be an integer >= 4 (pixels per side) or null for the full input, got {resolution!r}"
        )
    return int(resolution)


def _upsampled_colour_map(
    matrix: torch.Tensor, *, size: tuple[int, ...], resolution: int | None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """z (B, 3, r, r) -> matrix applied to its bilinear upsampling to `size` (none for the full input)."""

    def linear(z: torch.Tensor) -> torch.Tensor:
        pixels = (
            z
            if resolution is None
            else torch.nn.functional.interpolate(z, size=size, mode="bilinear", align_corners=False)
        )
        return torch.einsum("dc,bchw->bdhw", matrix, pixels)

    return linear


def parametrization(net: LayeredNet, *, resolution: int | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """z (B, 3, r, r) -> network input (B, 3, H, W): bilinear upsampling (none for the full input), then `pixel_map`."""
    mapping = pixel_map(net)
    linear = _upsampled_colour_map(
        mapping.matrix, size=tuple(net.input_shape[1:]), resolution=check_resolution(resolution)
    )
    return lambda z: linear(z) + mapping.offset


def release_function(net: LayeredNet, *, layer: str, resolution: int | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """z (B, 3, r, r) -> the IFM of `layer`, flattened in stream order (B, D); call it inside `fused.torch_form()`."""
    to_input = parametrization(net, resolution=resolution)
    first = net.ifm_layers[0]
    net.ifm_shape(layer)  # an unknown layer is refused now, naming the valid ones

    def release(z: torch.Tensor) -> torch.Tensor:
        x = to_input(z)
        ifm = x if layer == first else net.forward_from(first, x, until=layer)
        return ifm.reshape(ifm.shape[0], -1)

    return release


def image_pixels(image: Image.Image, *, net: LayeredNet, resolution: int | None) -> torch.Tensor:
    """One image as z (3, r, r) in [0, 1]: PIL bilinear (antialiased) to r x r as the decoders' targets; the network's
    own input read back to pixels when resolution is None."""
    resolution = check_resolution(resolution)
    if resolution is None:
        x = net.preprocess(image, source="certified image")
        return pixel_map(net).pixels(x[None])[0]
    resized = image.convert("RGB").resize((resolution, resolution), Image.Resampling.BILINEAR, reducing_gap=None)
    return torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def tangent_map(net: LayeredNet, *, resolution: int | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """dz (B, 3, r, r) -> dx (B, 3, H, W): the linear part of `parametrization`, i.e. its Jacobian everywhere."""
    return _upsampled_colour_map(
        pixel_map(net).matrix, size=tuple(net.input_shape[1:]), resolution=check_resolution(resolution)
    )


def local_release(
    net: LayeredNet, *, layer: str, x: torch.Tensor, resolution: int | None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """dz (B, 3, r, r) -> the IFM of `layer` at x + tangent(dz), flattened (B, D): at dz = 0 its Jacobian is J_x(x) dx/dz.

    The Jacobian is taken at the query's own input x, not at a blurred copy of it; call it inside `fused.torch_form()`.
    """
    tangent = tangent_map(net, resolution=resolution)
    first = net.ifm_layers[0]
    net.ifm_shape(layer)
    base = x.detach()[None]

    def release(dz: torch.Tensor) -> torch.Tensor:
        inputs = base + tangent(dz)
        ifm = inputs if layer == first else net.forward_from(first, inputs, until=layer)
        return ifm.reshape(ifm.shape[0], -1)

    return release


def space_name(resolution: int | None) -> str:
    """The name of a parametrization in files and tables: "r32" for 32 x 32 pixels, "full" for the network's input."""
    return "full" if resolution is None else f"r{resolution}"


def space_dims(net: LayeredNet, resolution: int | None) -> int:
    """d, the number of estimated dimensions: 3 r² or the network input's size."""
    return 3 * resolution * resolution if resolution is not None else int(np.prod(net.input_shape))
