"""Jacobian norms of a release by random probes: what the Fisher-information certificate needs, without the Jacobian.

h = release(z) is a layer's IFM flattened (D values) as a function of the image z (d values); J = dh/dz is D x d and
too large to form for real layers. With K Gaussian probes u_k ~ N(0, I_d), forward-mode AD gives v_k = J u_k, and

- g_i = ||grad_z h_i||^2 (the squared row norms of J) is estimated without bias by mean_k v_{k,i}^2 (`row_norms`);
- ||J_s||_F^2 of a sample-and-hold release J_s = Holding o J by mean_k ||Holding.apply(v_k)||^2 (`held_norm`), with
  its standard error; for index selectors this is the gather sum_w g_{s(w)} (`gathered_norm`).

The exact counterparts (`exact_jacobian`, `exact_row_norms`, `exact_held_norm`) use one forward-mode product per
input dimension (columns of J) or one vector-Jacobian product per released row: for small cases and the tests.
Every pass runs the layers in their torch form (`ifmsan.models.fused.torch_form`) without building an autograd graph.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator

import torch

from ifmsan.core.hold import Holding
from ifmsan.core.sanitize import check_seed
from ifmsan.models.fused import torch_form

Release = Callable[[torch.Tensor], torch.Tensor]
"""z batch (B, *z.shape) -> flattened IFMs (B, D), e.g. `ifmsan.certify.pixels.release_function(...)`."""

METHODS: tuple[str, ...] = ("columns", "rows")
"""How `exact_held_norm` builds ||J_s||_F^2: one JVP per input dimension, or one VJP per released row."""


def check_count(value: object, *, name: str, least: int = 1) -> int:
    """Return a count as int, or raise a ValueError: an integer >= least."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < least:
        raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    return int(value)


def check_image(z: object, *, name: str = "z") -> torch.Tensor:
    """Return z as given, or raise a ValueError: one image, a finite floating-point tensor (C, H, W)."""
    if not isinstance(z, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor (C, H, W) of pixels, got {type(z).__name__}")
    if z.dim() != 3 or z.numel() == 0:
        raise ValueError(f"{name} must be one non-empty image (C, H, W), got shape {tuple(z.shape)}")
    if not z.dtype.is_floating_point:
        raise ValueError(f"{name} must have a floating-point dtype, got {z.dtype}")
    if not bool(torch.isfinite(z).all()):
        raise ValueError(f"{name} contains NaN or infinite values; expected finite pixels")
    return z


def check_release(release: object) -> Release:
    """Return the release, or raise a ValueError: a callable z batch -> (B, D)."""
    if not callable(release):
        raise ValueError(f"release must be a callable z (B, C, H, W) -> (B, D), got {type(release).__name__}")
    return release


def check_products(products: object, *, least: int = 1) -> torch.Tensor:
    """Return probe products as given, or raise a ValueError: a finite floating-point (K, D) tensor, K >= least."""
    if not isinstance(products, torch.Tensor) or not products.dtype.is_floating_point or products.dim() != 2:
        what = tuple(products.shape) if isinstance(products, torch.Tensor) else type(products).__name__
        raise ValueError(f"products must be a floating-point tensor (probes, D) from probe_products, got {what}")
    if products.shape[0] < least or products.shape[1] == 0:
        raise ValueError(
            f"products must hold at least {least} probe(s) of at least one value, got {tuple(products.shape)}"
        )
    if not bool(torch.isfinite(products).all()):
        raise ValueError("products contains NaN or infinite values; expected the finite JVPs of probe_products")
    return products


def _check_holding(holding: object, size: int) -> Holding:
    """Return the holding, or raise a ValueError: a Holding over `size` samples."""
    if not isinstance(holding, Holding):
        raise ValueError(f"holding must be an ifmsan.core.hold.Holding, got {type(holding).__name__}")
    if holding.size != size:
        raise ValueError(f"holding is over {holding.size} samples, but the release has D = {size}")
    return holding


def _flat_output(out: torch.Tensor, batch: int) -> torch.Tensor:
    """The release's output checked to be (batch, D), so a wrong callable fails with a clear message."""
    if out.dim() != 2 or out.shape[0] != batch:
        raise ValueError(f"release must map a batch of {batch} images to ({batch}, D), got shape {tuple(out.shape)}")
    return out


def _jvps(release: Release, z: torch.Tensor, tangents: torch.Tensor) -> torch.Tensor:
    """J t for a batch of tangents (B, *z.shape): one forward-mode pass over B copies of z -> (B, D)."""
    primal = z.unsqueeze(0).expand_as(tangents).contiguous()
    with torch.no_grad(), torch_form():
        out = torch.func.jvp(release, (primal,), (tangents,))[1]
    return _flat_output(out, tangents.shape[0]).detach()


def _basis_columns(release: Release, z: torch.Tensor, chunk: int) -> Iterator[torch.Tensor]:
    """The columns of J, `chunk` at a time as (B, D) blocks, in the order of z's flattened dimensions."""
    dims = z.numel()
    for start in range(0, dims, chunk):
        count = min(chunk, dims - start)
        tangents = torch.zeros((count, dims), dtype=z.dtype, device=z.device)
        tangents[torch.arange(count), torch.arange(start, start + count)] = 1
        yield _jvps(release, z, tangents.view(count, *z.shape))


def probe_products(release: Release, z: torch.Tensor, *, probes: int, seed: int, chunk: int = 16) -> torch.Tensor:
    """v_k = J u_k for K seeded Gaussian probes u_k ~ N(0, I_d): (K, D) in the release's dtype, chunk probes per pass.

    The probes are drawn one after another from a torch.Generator seeded with `seed`: fewer probes are a prefix of
    more, and the chunk size changes only the batching (so at most the last bits of v), never which probes are used.
    """
    release = check_release(release)
    z = check_image(z)
    probes = check_count(probes, name="probes")
    seed = check_seed(seed)
    chunk = check_count(chunk, name="chunk")
    generator = torch.Generator().manual_seed(seed)
    draws = [torch.randn(z.shape, generator=generator, dtype=z.dtype) for _ in range(probes)]  # K' < K: a prefix
    directions = torch.stack(draws).to(z.device)
    blocks = [_jvps(release, z, directions[start : start + chunk]) for start in range(0, probes, chunk)]
    return torch.cat(blocks)


def row_norms(products: torch.Tensor) -> torch.Tensor:
    """g_hat_i = mean_k v_{k,i}^2, unbiased for ||grad_z h_i||^2: (D,) float64."""
    products = check_products(products)
    return products.to(torch.float64).square().mean(dim=0)


def row_norm_errors(products: torch.Tensor) -> torch.Tensor:
    """The standard error of each g_hat_i, std_k(v_{k,i}^2) / sqrt(K) with ddof 1: (D,) float64; needs K >= 2."""
    products = check_products(products, least=2)
    squares = products.to(torch.float64).square()
    return squares.std(dim=0, correction=1) / math.sqrt(products.shape[0])


def held_terms(products: torch.Tensor, holding: Holding) -> torch.Tensor:
    """T_k = ||Holding.apply(v_k)||^2 per probe: (K,) float64, each unbiased for ||J_s||_F^2."""
    products = check_products(products)
    holding = _check_holding(holding, products.shape[1])
    return holding.apply(products.to(torch.float64)).square().sum(dim=-1)


def held_norm(products: torch.Tensor, holding: Holding) -> tuple[float, float]:
    """The estimate of ||J_s||_F^2 (mean_k T_k) and its standard error (std_k T_k, ddof 1, / sqrt(K)); needs K >= 2."""
    terms = held_terms(check_products(products, least=2), holding)
    return float(terms.mean()), float(terms.std(correction=1)) / math.sqrt(terms.numel())


def gathered_norm(norms: torch.Tensor, holding: Holding) -> float:
    """sum over released samples of g_i: ||J_s||_F^2 of an index-selecting holding from row norms alone (no probes).

    Equals `held_norm`'s estimate when `norms` is `row_norms` of the same products. A `mean` holding releases window
    means, whose norms need the probes themselves: it is refused.
    """
    if not isinstance(norms, torch.Tensor) or norms.dim() != 1 or not norms.dtype.is_floating_point:
        what = tuple(norms.shape) if isinstance(norms, torch.Tensor) else type(norms).__name__
        raise ValueError(f"norms must be a floating-point (D,) tensor of row norms, got {what}")
    holding = _check_holding(holding, norms.numel())
    if holding.select == "mean" and holding.window > 1:
        raise ValueError("holding selects window means (select='mean'); its norm needs the probes: use held_norm")
    return float(holding.apply(norms.to(torch.float64)).sum())  # an index holding selects; summing the selection


def exact_jacobian(release: Release, z: torch.Tensor, *, chunk: int = 16) -> torch.Tensor:
    """The full Jacobian dh/dz, (D, d) float64 with d = z.numel() in C order, from d basis JVPs: for small cases only."""
    release = check_release(release)
    z = check_image(z)
    chunk = check_count(chunk, name="chunk")
    return torch.cat([block.to(torch.float64) for block in _basis_columns(release, z, chunk)]).T


def exact_row_norms(release: Release, z: torch.Tensor, *, chunk: int = 16) -> torch.Tensor:
    """g_i = ||grad_z h_i||^2 exactly: (D,) float64, summed over d basis JVPs without storing the Jacobian."""
    release = check_release(release)
    z = check_image(z)
    chunk = check_count(chunk, name="chunk")
    total: torch.Tensor | None = None
    for block in _basis_columns(release, z, chunk):
        part = block.to(torch.float64).square().sum(dim=0)
        total = part if total is None else total + part
    assert total is not None  # z has at least one dimension
    return total


def exact_held_norm(
    release: Release, z: torch.Tensor, holding: Holding, *, method: str = "columns", chunk: int = 16
) -> float:
    """||J_s||_F^2 exactly: by d basis JVPs ("columns", cheap when d is small) or one VJP per released row ("rows")."""
    release = check_release(release)
    z = check_image(z)
    if not isinstance(holding, Holding):
        raise ValueError(f"holding must be an ifmsan.core.hold.Holding, got {type(holding).__name__}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    chunk = check_count(chunk, name="chunk")
    if method == "rows":
        return _held_norm_by_rows(release, z, holding, chunk)
    total = 0.0
    for block in _basis_columns(release, z, chunk):
        _check_holding(holding, block.shape[1])
        total += float(holding.apply(block.to(torch.float64)).square().sum())
    return total


def _held_norm_by_rows(release: Release, z: torch.Tensor, holding: Holding, chunk: int) -> float:
    """sum over released rows r of ||grad_z (J_s)_r||^2, one VJP per row, `chunk` rows per pass over copies of z."""
    with torch.no_grad(), torch_form():
        _check_holding(holding, _flat_output(release(z.unsqueeze(0)), 1).shape[1])

    def released(batch: torch.Tensor) -> torch.Tensor:
        return holding.apply(_flat_output(release(batch), batch.shape[0]))

    total = 0.0
    rows = holding.released
    for start in range(0, rows, chunk):
        count = min(chunk, rows - start)
        primal = z.unsqueeze(0).expand(count, *z.shape).contiguous()
        with torch_form():
            pulled = torch.func.vjp(released, primal)
            out, pullback = pulled[0], pulled[1]
            cotangents = torch.zeros_like(out)
            cotangents[torch.arange(count), torch.arange(start, start + count)] = 1
            (grads,) = pullback(cotangents)
        total += float(grads.detach().to(torch.float64).square().sum())
    return total
