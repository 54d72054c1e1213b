"""Per-image ĝ maps and held norms: the costly, reusable half of a certificate (K forward-mode passes per image, layer
and parametrization); the σ grid is applied afterwards, for free (`ifmsan.certify.table`).

For one image and layer, in each parametrization z of the image (r x r pixels, or the full input): ĝ_i, the mean over K
probes of (J u_k)_i², unbiased for ‖∇_z h_i‖²; and for each selector and window, the estimate of ‖J_s‖²_F with its
standard error from the K probes, with the selector's choices made on the query's own IFM as the sanitizer makes them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr
from PIL import Image

from ifmsan.certify.pixels import local_release, space_dims, space_name
from ifmsan.core.hold import holding
from ifmsan.core.sanitize import check_select, check_window
from ifmsan.models.base import LayeredNet

DEFAULT_PROBES = 32


def check_probes(probes: object, *, name: str = "probes") -> int:
    """K, the number of random directions: an integer >= 2 (a standard error needs two)."""
    if isinstance(probes, bool) or not isinstance(probes, (int, np.integer)) or int(probes) < 2:
        raise ValueError(f"{name} must be an integer >= 2 (random directions per map), got {probes!r}")
    return int(probes)


def _mean_and_se(totals: torch.Tensor) -> tuple[float, float]:
    """The mean of per-probe totals and its standard error."""
    values = totals.to(torch.float64)
    return float(values.mean()), float(values.std(correction=1) / math.sqrt(len(values)))


def certify_maps(
    net: LayeredNet, image: Image.Image, *, layer: str, windows: Sequence[int], selects: Sequence[str] = ("nonzero_mean",),
    resolutions: Sequence[int | None] = (32, None), probes: int = DEFAULT_PROBES, seed: int = 0, source: str = "image",
    progress: bool | None = None,
) -> xr.Dataset:  # fmt: skip
    """ĝ maps and held norms of one image at one layer, for each parametrization, selector and window."""
    from tqdm import tqdm

    from ifmsan.certify.pixels import check_resolution
    from ifmsan.certify.probes import probe_products
    from ifmsan.models.fused import torch_form
    from ifmsan.steps.sweep import check_layer

    check_layer(net, layer)
    sizes = [check_window(w, name=f"windows[{i}]") for i, w in enumerate(windows)]
    selectors = [check_select(s) for s in selects]
    spaces = [check_resolution(r, name=f"resolutions[{i}]") for i, r in enumerate(resolutions)]
    if not sizes or not selectors or not spaces:
        raise ValueError("windows, selects and resolutions must each hold at least one entry")
    for what, items in (("windows", sizes), ("selects", selectors), ("resolutions", [space_name(r) for r in spaces])):
        if len(set(items)) != len(items):
            raise ValueError(f"{what} repeat an entry: {items}")
    k = check_probes(probes)
    x = net.preprocess(image, source=source)
    first = net.ifm_layers[0]
    with torch.no_grad(), torch_form():
        ifm = (x[None] if layer == first else net.forward_from(first, x[None], until=layer))[0]
    holdings = {(s, n): holding(ifm, n, select=s, seed=seed) for s in selectors for n in sizes}
    maps, held, held_se, full, full_se = [], [], [], [], []
    for resolution in tqdm(
        spaces, desc=f"certify {layer}", unit="space", disable=None if progress is None else not progress
    ):
        release = local_release(net, layer=layer, x=x, resolution=resolution)
        side = tuple(net.input_shape[1:]) if resolution is None else (resolution, resolution)
        with torch_form():
            products = probe_products(release, torch.zeros((3, *side)), probes=k, seed=seed)
        maps.append((products.to(torch.float64) ** 2).mean(dim=0).to(torch.float32).numpy())
        total, total_se = _mean_and_se((products.to(torch.float64) ** 2).sum(dim=1))
        full.append(total)
        full_se.append(total_se)
        rows = [[_mean_and_se((holdings[s, n].apply(products.to(torch.float64)) ** 2).sum(dim=1)) for n in sizes]
                for s in selectors]  # fmt: skip
        held.append([[est for est, _ in row] for row in rows])
        held_se.append([[se for _, se in row] for row in rows])
    names = [space_name(r) for r in spaces]
    return xr.Dataset(
        {
            "g_hat": (("space", "sample"), np.stack(maps)),
            "held_norm": (("space", "select", "window"), np.asarray(held, dtype=np.float64)),
            "held_norm_se": (("space", "select", "window"), np.asarray(held_se, dtype=np.float64)),
            "full_norm": (("space",), np.asarray(full, dtype=np.float64)),
            "full_norm_se": (("space",), np.asarray(full_se, dtype=np.float64)),
            "released": (
                ("select", "window"),
                np.asarray([[holdings[s, n].released for n in sizes] for s in selectors], dtype=np.int64),
            ),
        },
        coords={
            "space": names,
            "dims": ("space", np.asarray([space_dims(net, r) for r in spaces], dtype=np.int64)),
            "resolution": ("space", np.asarray([0 if r is None else r for r in spaces], dtype=np.int64)),
            "select": selectors,
            "window": np.asarray(sizes, dtype=np.int64),
            "sample": np.arange(ifm.numel(), dtype=np.int64),
        },
        attrs=_attrs(net, layer=layer, probes=k, seed=seed, ifm_shape=tuple(ifm.shape)),
    )


def _attrs(net: LayeredNet, *, layer: str, probes: int, seed: int, ifm_shape: tuple[int, ...]) -> dict[str, Any]:
    """Provenance of a map file: the network, the layer, the estimator."""
    import json

    from ifmsan.steps.extract import provenance

    return provenance(
        net, ifmsan_kind="certify_maps", layer=layer, probes=probes, probe_seed=seed, ifm_shape=json.dumps(list(ifm_shape)),
        estimator="g_hat = mean_k (J u_k)^2, u_k ~ N(0, I_d), forward-mode AD through the layers' torch form; "
        "held_norm = mean_k ||S J u_k||^2 (S: the selector's release map on this IFM), se = std_k / sqrt(K)",
        resolution_note="r<side>: the image at side x side RGB pixels in [0, 1], bilinearly upsampled to the input; "
        "full: the network's input in [0, 1] pixel units",
    )  # fmt: skip
