"""The sweep engine: p(value) of the target class for one IFM, one knob and a range of knob values."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from ifmsan.core.knobs import Knob, check_knob_values, get_knob
from ifmsan.core.metrics import check_p0
from ifmsan.core.sanitize import check_ifm

if TYPE_CHECKING:
    from ifmsan.models.base import LayeredNet

DEFAULT_BATCH_SIZE = 32
"""Sanitized IFMs per forward batch: a few hundred MB at most for BVLC AlexNet's largest IFM."""
HEAD_MAX_ELEMENTS = 16_384
"""An IFM at most this large per image (BVLC fc6: 9216) starts the head, which runs on many values at once."""
HEAD_BATCH_SIZE = 256
"""Values gathered per forward through the head: its large weights are read once per 256 values, not per batch."""

CHAIN_STEP = re.compile(r"^(?P<layer>[A-Za-z0-9_.]+)@(?P<window>[0-9]+)$")


@dataclass(frozen=True)
class ChainStep:
    """Pre-sanitize one layer's IFM with Algorithm 1 at a fixed window before the swept layer."""

    layer: str
    window: int

    def __str__(self) -> str:
        return f"{self.layer}@{self.window}"


def parse_chain(text: str | Sequence[str] | None) -> tuple[ChainStep, ...]:
    """Parse 'norm2@3' or 'norm2@3+pool2@4' (or a list of steps) into chain steps."""
    if not text:
        return ()
    parts = text.split("+") if isinstance(text, str) else list(text)
    steps = []
    for part in parts:
        match = CHAIN_STEP.match(part.strip())
        if not match:
            raise ValueError(f"chain step {part!r} must look like LAYER@WINDOW with WINDOW >= 1, e.g. norm2@3")
        if int(match["window"]) < 1:
            raise ValueError(f"chain step {part!r}: window {match['window']} must be >= 1 (LAYER@WINDOW, e.g. norm2@3)")
        steps.append(ChainStep(match["layer"], int(match["window"])))
    return tuple(steps)


def chain_label(chain: Sequence[ChainStep]) -> str:
    """The chain as stored in sweep attributes: '' for none, else 'norm2@3+pool2@4'."""
    return "+".join(str(step) for step in chain)


def check_layer(net: LayeredNet, layer: str, *, name: str = "layer") -> str:
    """Reject a layer the network does not expose, listing the ones it does."""
    if layer not in net.ifm_layers:
        raise ValueError(
            f"{name} {layer!r} is not an IFM layer of {net.name}; expected one of {', '.join(net.ifm_layers)}"
        )
    return layer


def check_chain(net: LayeredNet, chain: Sequence[ChainStep], *, layer: str) -> None:
    """Reject a swept layer or chain layer the network lacks, or chain layers out of network order or not before it."""
    check_layer(net, layer)
    order = {name: i for i, name in enumerate(net.ifm_layers)}
    previous = -1
    for step in chain:
        check_layer(net, step.layer, name="chain layer")
        if order[step.layer] <= previous or order[step.layer] >= order[layer]:
            raise ValueError(
                f"chain {chain_label(chain)} must list layers in network order, all before the swept layer {layer!r}"
            )
        previous = order[step.layer]


@torch.inference_mode()
def apply_chain(
    net: LayeredNet, ifms: Mapping[str, torch.Tensor], chain: Sequence[ChainStep], *, layer: str
) -> torch.Tensor:
    """The IFM of `layer` after each chain step's IFM was sanitized (Algorithm 1) and run on, in network order."""
    check_chain(net, chain, layer=layer)
    current = dict(ifms)
    knob = get_knob("nonzero_mean")
    for step in chain:
        sanitized = knob.apply(current[step.layer], step.window)
        current.update({name: value[0] for name, value in net.ifms_from(step.layer, sanitized.unsqueeze(0)).items()})
    return current[layer]


def head_layer(net: LayeredNet, layer: str) -> str | None:
    """The first IFM layer from `layer` on that is small enough to gather for many values (the classifier head)."""
    layers = tuple(net.ifm_layers)
    for name in layers[layers.index(layer) :]:
        if math.prod(net.ifm_shape(name)) <= HEAD_MAX_ELEMENTS:
            return name
    return None


def even_chunks(count: int, batch_size: int) -> list[tuple[int, int]]:
    """(start, stop) of ceil(count / batch_size) batches whose sizes differ by at most one: 149 at 32 gives 30,30,30,30,29."""
    batches = -(-count // batch_size)
    if batches == 0:
        return []
    base, extra = divmod(count, batches)
    bounds = [0]
    for index in range(batches):
        bounds.append(bounds[-1] + base + (index < extra))
    return list(zip(bounds[:-1], bounds[1:], strict=False))


def fault_in(buffer: torch.Tensor) -> torch.Tensor:
    """Touch every page of a fresh CPU buffer now: its first batch would otherwise pay the page faults
    inside the knob, which is then timed as sanitizing. The values stay whatever the knob writes."""
    if buffer.device.type == "cpu" and buffer.numel():
        buffer.view(-1)[:: max(1, 4096 // buffer.element_size())].zero_()
    return buffer


@torch.inference_mode()
def sweep_ifm(
    net: LayeredNet,
    ifm: torch.Tensor,
    *,
    layer: str,
    knob: str | Knob,
    values: Sequence[float],
    target: int,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool | None = None,
    head: bool = True,
) -> dict[str, np.ndarray]:
    """Sanitize `ifm` at every knob value in batches and return p(target), top-1 and its probability per value.

    At most `batch_size` sanitized IFMs exist at a time; they run to the head (`head_layer`), whose small IFMs are
    gathered for up to HEAD_BATCH_SIZE values and run through the rest of the network together. head=False runs
    every batch to the logits instead (the plain schedule, for benchmarks and tests; p differs only by float rounding).
    knob is a knob name, or a Knob object (e.g. one that wraps a knob to time or replace its apply_batch).
    """
    check_layer(net, layer)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    sanitizer = get_knob(knob, seed=seed) if isinstance(knob, str) else knob
    values = list(values)
    ifm = ifm.to(next(net.parameters(), ifm).device)  # sanitize where the network runs: no batch crosses devices
    head_name = head_layer(net, layer) if head else None
    group_size = HEAD_BATCH_SIZE if head_name is not None else batch_size
    buffer = fault_in(torch.empty((min(batch_size, len(values)), *ifm.shape), dtype=ifm.dtype, device=ifm.device))
    if head_name is not None:
        gathered = torch.empty(
            (min(group_size, len(values)), *net.ifm_shape(head_name)), dtype=ifm.dtype, device=ifm.device
        )
    probability = np.empty(len(values), dtype=np.float64)
    top1 = np.empty(len(values), dtype=np.int64)
    top1_probability = np.empty(len(values), dtype=np.float64)
    groups = [
        (start, even_chunks(len(values[start : start + group_size]), batch_size))
        for start in range(0, len(values), group_size)
    ]
    bar = tqdm(total=sum(len(chunks) for _, chunks in groups), desc=f"{layer} {sanitizer.name}", unit="batch",
               disable=None if progress is None else not progress, leave=False)  # fmt: skip
    with bar:
        for start, chunks in groups:
            logits = []
            for first, stop in chunks:
                chunk = values[start + first : start + stop]
                if head_name is None:
                    logits.append(net.forward_from(layer, sanitizer.apply_batch(ifm, chunk, out=buffer[: len(chunk)])))
                elif head_name == layer:
                    sanitizer.apply_batch(ifm, chunk, out=gathered[first:stop])
                else:
                    batch = sanitizer.apply_batch(ifm, chunk, out=buffer[: len(chunk)])
                    gathered[first:stop] = net.forward_from(layer, batch, until=head_name)
                bar.update()
            if head_name is not None:
                logits.append(net.forward_from(head_name, gathered[: chunks[-1][1]]))
            probs = torch.softmax(torch.cat(logits).double(), dim=1)
            best = probs.max(dim=1)
            stop = start + probs.shape[0]
            probability[start:stop] = probs[:, target].cpu().numpy()
            top1[start:stop] = best.indices.cpu().numpy()
            top1_probability[start:stop] = best.values.cpu().numpy()
    return {"probability": probability, "top1": top1, "top1_probability": top1_probability}


def _shown(value: object) -> str:
    """A recorded number as a user wrote it: nan, not np.float64(nan)."""
    return repr(value.item()) if isinstance(value, np.generic) else repr(value)


@torch.inference_mode()
def sweep_dataset(
    net: LayeredNet,
    ifms_dataset: xr.Dataset,
    *,
    layer: str,
    knob: str,
    values: Sequence[float] | None = None,
    chain: Sequence[ChainStep] = (),
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    attrs: Mapping[str, Any] | None = None,
    progress: bool | None = None,
    head: bool = True,
) -> xr.Dataset:
    """One sweep of an extracted image as a Dataset over `window` (or `scale`) with provenance attributes.

    head=False: no gathered head (see `sweep_ifm`).
    """
    from ifmsan.report.consistency import check_config_hash, check_p0_of_ifms, check_same_network
    from ifmsan.steps.extract import ifms_of, provenance
    from ifmsan.steps.io import check_user_attrs

    check_layer(net, layer)
    sanitizer = get_knob(knob, seed=seed)
    values = check_knob_values(sanitizer, sanitizer.default_values if values is None else values)
    source = ifms_dataset.attrs
    image = source.get("image_id", "?")
    where = str(ifms_dataset.encoding.get("source") or "the IFMs")
    try:
        check_p0(source.get("p0"))
    except ValueError:
        raise ValueError(
            f"{where}: the IFMs of image {image!r} record p0 = {_shown(source.get('p0'))}; expected a probability "
            "in (0, 1]"
        ) from None
    check_same_network(source, net, source=where)
    extra = check_user_attrs(dict(attrs or {}), option="attrs")
    check_config_hash(source, extra, source=where)
    device = next(net.parameters()).device
    ifms = {name: value.to(device) for name, value in ifms_of(ifms_dataset).items()}
    for name in (layer, *(step.layer for step in chain)):
        if name in ifms:
            check_ifm(ifms[name], name=f"{where}: the IFM of {name!r} (image {image!r})")
    target = int(source["target"])
    read = [name for name in (layer, *(step.layer for step in chain)) if name in ifms]
    unsanitized = check_p0_of_ifms(net, ifms, layers=read, target=target, p0=float(source["p0"]), source=where)
    ifm = apply_chain(net, ifms, chain, layer=layer) if chain else ifms[layer]
    curves = sweep_ifm(
        net,
        ifm,
        layer=layer,
        knob=knob,
        values=values,
        target=target,
        seed=seed,
        batch_size=batch_size,
        progress=progress,
        head=head,
    )
    bad = ~np.isfinite(curves["probability"])
    if bad.any():
        if not all(math.isfinite(p) for p in unsanitized.values()):
            cause = "the weights overflow (the unsanitized IFM gives NaN or infinite outputs too)"
        elif sanitizer.parameter == "scale":
            cause = "the noise overflows the network: choose smaller --scales"
        else:
            cause = "the sanitized IFM overflows the network"
        raise ValueError(
            f"{net.name} gave NaN or infinite probabilities at layer {layer!r}, {knob} {sanitizer.parameter} "
            f"{values[int(np.argmax(bad))]} ({int(bad.sum())} of {bad.size} values): {cause}; nothing written"
        )
    dim = sanitizer.parameter
    coord = np.asarray(values, dtype=np.int64 if dim == "window" else np.float64)
    dataset = xr.Dataset(
        {
            "probability": (
                (dim,),
                curves["probability"],
                {"long_name": "probabilistic accuracy p of the target class"},
            ),
            "top1": ((dim,), curves["top1"]),
            "top1_probability": ((dim,), curves["top1_probability"]),
        },
        coords={dim: coord},
    )
    original = ifms[layer]
    chained_p = float("nan")
    if chain:
        chained_p = float(torch.softmax(net.forward_from(layer, ifm.unsqueeze(0)).double(), dim=1)[0, target])
    attributes: dict[str, Any] = dict(
        ifmsan_kind="sweep",
        image_id=str(source.get("image_id", "")),
        image_sha256=str(source.get("image_sha256", "")),
        p0=float(source["p0"]),
        target=target,
        target_source=str(source.get("target_source", "")),
        original_top1=int(source.get("original_top1", -1)),
        layer=layer,
        knob=knob,
        parameter=dim,
        chain=chain_label(chain),
        chain_p=chained_p,
        seed=seed,
        ifm_size=int(original.numel()),
        zero_ratio=float((original == 0).sum()) / original.numel(),
        n_zeros=int((original == 0).sum()),
        config_hash=str(source.get("config_hash", "")),
    )
    attributes.update(extra)
    dataset.attrs = provenance(net, **attributes)
    return dataset
