"""The γ controller of the paper's Figure 3: per input, grow the window until p(n) ≤ p0 / 2^γ."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch.utils.hooks import RemovableHandle

from ifmsan.knobs import get_knob
from ifmsan.metrics import check_gamma
from ifmsan.sanitize import SELECTORS, check_window


class GammaNotReached(RuntimeError):
    """No window in the allowed range sanitizes this input enough; the unsanitized output must not be used."""

    def __init__(self, *, layer: str, gamma: float, p0: float, bound: float, max_window: int, min_probability: float) -> None:
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
        net: torch.nn.Module,
        layer: str,
        gamma: float,
        *,
        windows: Iterable[int] = range(2, 151),
        select: str = "nonzero_mean",
        target: int | None = None,
        batch_size: int = 16,
        seed: int = 0,
    ) -> None:
        if layer not in net.ifm_layers:
            raise ValueError(f"layer {layer!r} is not an IFM layer of {net.name}; expected one of {', '.join(net.ifm_layers)}")
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
        self.knob = get_knob(select, seed=seed)
        self.last_results: list[GammaResult] = []
        self._searching = False

    @torch.inference_mode()
    def sanitize_ifm(self, ifm: torch.Tensor, *, target: int | None = None) -> tuple[GammaResult, torch.Tensor]:
        """Search the windows in batches for one IFM (no batch dim); return the result and the sanitized IFM."""
        self._searching = True
        try:
            original = torch.softmax(self.net.forward_from(self.layer, ifm.unsqueeze(0)).double(), dim=1)[0]
            chosen = self.target if target is None else target
            chosen = int(original.argmax()) if chosen is None else int(chosen)
            if not 0 <= chosen < original.numel():
                raise ValueError(f"target must be a class index in [0, {original.numel()}), got {chosen}")
            p0 = float(original[chosen])
            bound = p0 / 2.0**self.gamma
            lowest, evaluated = math.inf, 0
            for start in range(0, len(self.windows), self.batch_size):
                chunk = self.windows[start : start + self.batch_size]
                batch = self.knob.apply_batch(ifm, chunk)
                probs = torch.softmax(self.net.forward_from(self.layer, batch).double(), dim=1)
                evaluated += len(chunk)
                p = probs[:, chosen]
                lowest = min(lowest, float(p.min()))
                meets = torch.nonzero(p <= bound)
                if meets.numel():
                    i = int(meets[0, 0])
                    probability = float(p[i])
                    result = GammaResult(
                        window=chunk[i],
                        epsilon=math.log(p0 / probability) if probability > 0 else math.inf,
                        probability=probability,
                        p0=p0,
                        bound=bound,
                        target=chosen,
                        prediction=int(probs[i].argmax()),
                        probabilities=probs[i].float(),
                        evaluated=evaluated,
                    )
                    return result, batch[i].clone()
            raise GammaNotReached(
                layer=self.layer, gamma=self.gamma, p0=p0, bound=bound, max_window=self.windows[-1], min_probability=lowest
            )
        finally:
            self._searching = False

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
