"""The γ controller of the paper's Figure 3: per input, grow the window until p(n) ≤ p0 / 2^γ."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.hooks import RemovableHandle

from ifmsan.core.knobs import HoldNoiseKnob, check_sigma, get_knob
from ifmsan.core.metrics import check_gamma, n_star_for_gamma
from ifmsan.core.sanitize import SELECTORS, check_seed, check_window

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr

    from ifmsan.models.base import LayeredNet


class GammaNotReached(RuntimeError):
    """No window in the allowed range sanitizes this input enough; the unsanitized output must not be used."""

    def __init__(
        self, *, layer: str, gamma: float, p0: float, bound: float, max_window: int, min_probability: float
    ) -> None:
        self.layer, self.gamma, self.p0, self.bound = layer, gamma, p0, bound
        self.max_window, self.min_probability = max_window, min_probability
        super().__init__(
            f"gamma={gamma} is not reachable at layer {layer!r} with windows up to {max_window}: "
            f"the lowest p(n) was {min_probability:.6g} > bound p0/2^gamma = {bound:.6g}"
        )


@dataclass(frozen=True)
class GammaResult:
    """What the controller chose for one input and what that bought."""

    window: int
    epsilon: float
    probability: float
    p0: float
    bound: float
    target: int
    prediction: int
    probabilities: torch.Tensor
    evaluated: int


class GammaSanitizer:
    """Wraps a LayeredNet and one IFM layer; sanitizes each input with the smallest window that meets γ."""

    def __init__(
        self,
        net: LayeredNet,
        layer: str,
        gamma: float,
        *,
        windows: Iterable[int] = range(2, 151),
        select: str = "nonzero_mean",
        target: int | None = None,
        batch_size: int = 16,
        seed: int = 0,
        sigma: float | None = None,
    ) -> None:
        """sigma: with it, the randomized hold (`HoldNoiseKnob`: the selector plus one N(0, sigma²) draw per window)."""
        if layer not in net.ifm_layers:
            raise ValueError(
                f"layer {layer!r} is not an IFM layer of {net.name}; expected one of {', '.join(net.ifm_layers)}"
            )
        gamma = check_gamma(gamma)
        sizes = [check_window(w, name="windows") for w in windows]
        if not sizes or sizes != sorted(set(sizes)):
            raise ValueError(f"windows must be a non-empty increasing sequence of integers >= 1, got {sizes[:5]}...")
        if select not in SELECTORS:
            raise ValueError(f"select must be one of {', '.join(SELECTORS)}; got {select!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.net, self.layer, self.gamma = net, layer, float(gamma)
        self.windows, self.target, self.batch_size = sizes, target, batch_size
        self.knob = (
            get_knob(select, seed=seed)
            if sigma is None
            else HoldNoiseKnob(select=select, sigma=check_sigma(sigma), seed=check_seed(seed))
        )
        self.last_results: list[GammaResult] = []
        self._searching = False

    @torch.inference_mode()
    def sanitize_ifm(self, ifm: torch.Tensor, *, target: int | None = None) -> tuple[GammaResult, torch.Tensor]:
        """Search the windows in batches for one IFM (no batch dim); return the result and the sanitized IFM."""
        self._searching = True
        try:
            found = search_gammas(
                self.net, self.layer, ifm, gammas=[self.gamma], windows=self.windows, knob=self.knob,
                target=self.target if target is None else target, batch_size=self.batch_size, keep_sanitized=True,
            )  # fmt: skip
        finally:
            self._searching = False
        result = found[self.gamma]
        if isinstance(result, GammaNotReached):
            raise result
        return result

    def __call__(self, x: torch.Tensor) -> GammaResult:
        """Sanitize one preprocessed image, (C, H, W) or a batch of one, and report the chosen window."""
        if x.dim() == len(self.net.input_shape):
            x = x.unsqueeze(0)
        if x.shape[0] != 1:
            raise ValueError(f"x must hold one image, got a batch of {x.shape[0]}; call once per image")
        with torch.inference_mode():
            ifm = self.net.ifms(x)[self.layer][0]
        result, _ = self.sanitize_ifm(ifm)
        self.last_results = [result]
        return result

    def _pre_hook(self, module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...] | None:
        """Replace the layer's input batch by its γ-sanitized version, image by image."""
        if self._searching:
            return None
        results, sanitized = [], []
        for ifm in args[0]:
            result, clean = self.sanitize_ifm(ifm)
            results.append(result)
            sanitized.append(clean)
        self.last_results = results
        return (torch.stack(sanitized), *args[1:])

    def register(self) -> RemovableHandle:
        """Install the controller as a forward pre-hook so that plain net(x) calls are sanitized."""
        return self.net.layer_module(self.layer).register_forward_pre_hook(self._pre_hook)


@torch.inference_mode()
def search_gammas(
    net: LayeredNet,
    layer: str,
    ifm: torch.Tensor,
    *,
    gammas: Sequence[float],
    windows: Sequence[int],
    knob: Any,
    target: int | None,
    batch_size: int,
    keep_sanitized: bool = False,
) -> dict[float, Any]:
    """The controller's search for every γ at once: one growing pass over `windows` in batches of `batch_size`.

    Each γ gets what a controller for that γ alone finds (the same batches, so the same p(n) bit for bit): a
    (GammaResult, sanitized IFM or None) pair at its first window with p(n) <= p0/2^γ, else a GammaNotReached. The
    pass stops once every γ is met, so it evaluates max over γ of n*(γ)'s batches, never more than a sweep's windows.
    """
    original = torch.softmax(net.forward_from(layer, ifm.unsqueeze(0)).double(), dim=1)[0]
    chosen = int(original.argmax()) if target is None else int(target)
    if not 0 <= chosen < original.numel():
        raise ValueError(f"target must be a class index in [0, {original.numel()}), got {chosen}")
    p0 = float(original[chosen])
    bounds = {check_gamma(gamma): p0 / 2.0 ** check_gamma(gamma) for gamma in gammas}
    found: dict[float, Any] = {}
    lowest, evaluated = math.inf, 0
    for start in range(0, len(windows), batch_size):
        pending = [gamma for gamma in bounds if gamma not in found]
        if not pending:
            break
        chunk = list(windows[start : start + batch_size])
        batch = knob.apply_batch(ifm, chunk)
        probs = torch.softmax(net.forward_from(layer, batch).double(), dim=1)
        evaluated += len(chunk)
        p = probs[:, chosen]
        lowest = min(lowest, float(p.min()))
        for gamma in pending:
            meets = torch.nonzero(p <= bounds[gamma])
            if meets.numel():
                i = int(meets[0, 0])
                probability = float(p[i])
                result = GammaResult(
                    window=chunk[i],
                    epsilon=math.log(p0 / probability) if probability > 0 else math.inf,
                    probability=probability,
                    p0=p0,
                    bound=bounds[gamma],
                    target=chosen,
                    prediction=int(probs[i].argmax()),
                    probabilities=probs[i].float(),
                    evaluated=evaluated,
                )
                found[gamma] = (result, batch[i].clone() if keep_sanitized else None)
    for gamma, bound in bounds.items():
        if gamma not in found:
            found[gamma] = GammaNotReached(
                layer=layer, gamma=gamma, p0=p0, bound=bound, max_window=int(windows[-1]), min_probability=lowest
            )
    return found


def controller_searches(
    net: LayeredNet,
    ifms: Mapping[str, torch.Tensor],
    *,
    layers: Sequence[str],
    gammas: Sequence[float],
    windows: Sequence[int],
    target: int,
    knob: str = "nonzero_mean",
    batch_size: int = 16,
) -> dict[str, Callable[[], dict[float, Any]]]:
    """Every layer's search for all γ (search_gammas), built and checked but not run: a caller may run them on threads."""
    controllers = _controllers(net, layers=layers, gammas=gammas, windows=windows, knob=knob, batch_size=batch_size)
    missing = [layer for layer in layers if layer not in ifms]
    if missing:
        raise ValueError(f"the IFMs hold no layer {', '.join(map(repr, missing))}; expected one per layer of layers")
    device = next(net.parameters()).device
    return {
        layer: functools.partial(
            search_gammas,
            net,
            layer,
            ifms[layer].to(device),
            gammas=[controllers[layer, g].gamma for g in gammas],
            windows=controllers[layer, gammas[0]].windows,
            knob=controllers[layer, gammas[0]].knob,
            target=target,
            batch_size=batch_size,
        )  # fmt: skip
        for layer in dict.fromkeys(layers)
    }


def _controllers(
    net: LayeredNet,
    *,
    layers: Sequence[str],
    gammas: Sequence[float],
    windows: Sequence[int],
    knob: str,
    batch_size: int,
) -> dict[tuple[str, float], GammaSanitizer]:
    """One controller per (layer, γ), which checks every argument."""
    return {
        (layer, gamma): GammaSanitizer(net, layer, gamma, windows=windows, select=knob, batch_size=batch_size)
        for layer in layers
        for gamma in gammas
    }


def controller_table(
    net: LayeredNet,
    ifms: Mapping[str, torch.Tensor],
    *,
    layers: Sequence[str],
    gammas: Sequence[float],
    windows: Sequence[int],
    target: int,
    knob: str = "nonzero_mean",
    batch_size: int = 16,
    references: Mapping[str, xr.Dataset] | None = None,
    image_id: str = "",
    searched: Mapping[str, Mapping[float, Any]] | None = None,
) -> pd.DataFrame:
    """One row per (layer, γ): the window the controller chose, or 'not reached'; checked against reference sweeps.

    references maps a layer to its unchained sweep of `knob` (checked by the caller to belong to these IFMs); where one
    is given the row gets the sweep's n*(γ), and any disagreement is a ValueError listing the rows, before any output.
    Every controller is built (so every argument checked) before the first search; each layer is then searched for all
    γ in one pass (search_gammas), which finds what each controller would, at the cost of the largest n*(γ) alone.
    searched: the results of controller_searches with these arguments, run by the caller (e.g. on threads).
    """
    import pandas as pd

    references = dict(references or {})
    controllers = _controllers(net, layers=layers, gammas=gammas, windows=windows, knob=knob, batch_size=batch_size)
    if searched is None:
        searches = controller_searches(
            net, ifms, layers=layers, gammas=gammas, windows=windows, target=target, knob=knob, batch_size=batch_size
        )
        searched = {layer: search() for layer, search in searches.items()}
    rows: list[dict[str, Any]] = []
    for (layer, gamma), controller in controllers.items():
        row: dict[str, Any] = {"image_id": image_id, "model": net.name, "layer": layer, "knob": knob}
        row["gamma"] = controller.gamma
        outcome = searched[layer][controller.gamma]
        if isinstance(outcome, GammaNotReached):
            row.update(
                window=None, epsilon=None, probability=outcome.min_probability, p0=outcome.p0, bound=outcome.bound,
                prediction=None, evaluated=len(controller.windows), status="not reached",
            )  # fmt: skip
        else:
            result, _ = outcome
            row.update(
                window=result.window, epsilon=result.epsilon, probability=result.probability, p0=result.p0,
                bound=result.bound, prediction=result.prediction, evaluated=result.evaluated, status="met",
            )  # fmt: skip
        if layer in references:
            sweep = references[layer]
            p0 = float(sweep.attrs["p0"])
            n_star = n_star_for_gamma(sweep["window"].values, sweep["probability"].values, p0=p0, gamma=gamma)
            row["sweep_n_star"] = n_star
            row["matches_sweep"] = n_star == row["window"]
        rows.append(row)
    frame = pd.DataFrame(rows).astype({"window": "Int64", "prediction": "Int64"})
    if "sweep_n_star" in frame:
        frame["sweep_n_star"] = frame["sweep_n_star"].astype("Int64")
    if "matches_sweep" in frame and not frame["matches_sweep"].all():
        bad = frame.loc[~frame["matches_sweep"], ["layer", "gamma", "window", "sweep_n_star"]]
        raise ValueError(f"the controller disagrees with the sweep's n*(gamma):\n{bad.to_string(index=False)}")
    return frame
