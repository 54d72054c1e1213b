"""The benchmarks' instruments: wall-clock wrappers for a network and a knob, a peak-memory probe, FLOP counting.

`TimedNet` and `TimedKnob` wrap what `ifmsan.steps.sweep.sweep_ifm` calls (`net.forward_from`, `knob.apply_batch`)
and add up the time inside those calls; `IdentityKnob` lets the same sweep run its forward batches on the
unsanitized IFM. `PeakRss` measures the process's peak resident memory over a block. `useful_flops` counts a partial
forward pass's FLOPs with `machine_limits.OpClock`, the hooks that also time the layers inside the sweeps.
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import machine_limits as limits  # benchmarks/machine_limits.py, next to this module

RSS_SAMPLE_S = 0.02
"""Polling interval of PeakRss where the kernel's high-water mark cannot be reset."""


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Median, min and max of one figure over the repetitions (and the raw values)."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": list(values)}


def synchronize(device: str) -> None:
    """Wait for queued GPU work so wall-clock timers measure it."""
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def useful_flops(net: Any, layers: Sequence[str]) -> dict[str, float]:
    """FLOPs per image of forward_from(layer): 2 × multiply-accumulates of every Conv2d and Linear it runs (counted by
    the same hooks that time the layers inside the sweeps)."""
    import torch

    device = next(net.parameters()).device
    flops = {}
    with torch.inference_mode():
        for layer in layers:
            batch = torch.zeros((1, *net.ifm_shape(layer)), device=device)  # outside the hooks: it may probe the net
            clock = limits.OpClock(net, synchronize=lambda: None)
            with clock.watch():
                net.forward_from(layer, batch)
            flops[layer] = sum(clock.flops.values())
    return flops


class PeakRss:
    """Peak resident memory of this process over a block: Linux's VmHWM after resetting it, else sampled."""

    def __init__(self) -> None:
        """Start with no reading."""
        self.peak_mb = float("nan")
        self._stop = threading.Event()
        self._sampled = 0

    @staticmethod
    def _status(field: str) -> float:
        """A memory field of /proc/self/status in MiB (NaN where there is none)."""
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return float("nan")

    def _sample(self) -> None:
        """Poll the current RSS every RSS_SAMPLE_S until stopped."""
        while not self._stop.wait(RSS_SAMPLE_S):
            self._sampled = max(self._sampled, self._status("VmRSS"))

    @contextlib.contextmanager
    def watch(self) -> Iterator[PeakRss]:
        """Measure the peak over the with-block."""
        try:
            Path("/proc/self/clear_refs").write_text("5")
            reset = True
        except OSError:
            reset = False
        self._sampled = self._status("VmRSS")
        self._stop.clear()
        sampler = threading.Thread(target=self._sample, daemon=True)
        sampler.start()
        try:
            yield self
        finally:
            self._stop.set()
            sampler.join()
            high_water = self._status("VmHWM") if reset else float("nan")
            self.peak_mb = high_water if high_water == high_water else self._sampled


class TimedNet:
    """The network with its forward_from timed; everything else is the network's own (sweep_ifm sees no difference)."""

    def __init__(self, net: Any, *, device: str) -> None:
        """Wrap net; forward_s accumulates."""
        self._net = net
        self._device = device
        self.forward_s = 0.0

    def __getattr__(self, name: str) -> Any:
        """Delegate everything but forward_from."""
        return getattr(self._net, name)

    def forward_from(self, layer: str, batch: Any, **options: Any) -> Any:
        """The network's forward_from, timed."""
        synchronize(self._device)
        start = time.perf_counter()
        out = self._net.forward_from(layer, batch, **options)
        synchronize(self._device)
        self.forward_s += time.perf_counter() - start
        return out


class TimedKnob:
    """A knob whose apply_batch calls are timed; sweep_ifm takes it as its knob."""

    def __init__(self, knob: Any, *, device: str) -> None:
        """Wrap one knob."""
        self._knob, self._device, self.sanitize_s = knob, device, 0.0

    def __getattr__(self, name: str) -> Any:
        """Delegate everything but apply_batch."""
        return getattr(self._knob, name)

    def apply_batch(self, *args: Any, **kwargs: Any) -> Any:
        """The knob's apply_batch, timed."""
        synchronize(self._device)
        start = time.perf_counter()
        out = self._knob.apply_batch(*args, **kwargs)
        synchronize(self._device)
        self.sanitize_s += time.perf_counter() - start
        return out


class IdentityKnob:
    """A knob that holds every sample: the batch is the IFM repeated (the sweep's forwards without sanitizing)."""

    name, parameter = "identity", "window"

    def apply_batch(self, ifm: Any, values: Any, *, out: Any) -> Any:
        """out[i] = ifm for every value."""
        return out.copy_(ifm.expand(out.shape))
