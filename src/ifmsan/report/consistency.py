"""Inputs that must belong together: IFMs and the network run on them, sweeps and their IFMs, sweeps in one table.

A stage that combines files made by earlier stages checks the provenance they carry (model, weights_sha,
config_hash, target, image) and refuses a mixture with a ValueError that names the files and the differing values,
so that no table or γ row silently describes another network, configuration or target.
`check_controller` checks the runtime γ controller's windows against n*(γ) of the sweeps it was run on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd
import xarray as xr

from ifmsan.steps.io import attr_text as text

VARIANT_KEYS: tuple[str, ...] = ("model", "weights", "config_hash", "target_source")
"""Keys every curve of one report must share (report --allow-mixed lets them differ and keeps them as columns)."""
IMAGE_KEYS: tuple[str, ...] = ("target", "image_sha256")
"""Keys the curves of one image must share, always: the same image id with another target is another experiment."""
_SHOWN = 3


def _shown(value: str) -> str:
    """A value as quoted in messages: '' reads as 'none'."""
    return repr(value) if value != "" else "none"


def _files(names: Iterable[str]) -> str:
    """The first few file names, and how many more."""
    names = list(dict.fromkeys(names))
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


def differing(items: Sequence[tuple[str, str]], *, key: str, what: str) -> str:
    """'the sweeps mix weights values: 'a' (x.nc, y.nc) and 'b' (z.nc)' from (value, file) pairs."""
    by_value: dict[str, list[str]] = {}
    for value, name in items:
        by_value.setdefault(value, []).append(name)
    parts = [f"{_shown(value)} ({_files(names)})" for value, names in by_value.items()]
    return f"{what} mix {key} values: " + " and ".join(parts)


def weights_id(attrs: Mapping[str, Any]) -> str:
    """What identifies the weights: their checksum, or for untrained weights the seeded source ('... (seed 0)')."""
    return text(attrs.get("weights_sha")) or text(attrs.get("weights_source"))


def check_same_network(attrs: Mapping[str, Any], net: Any, *, source: str = "the IFMs") -> None:
    """Refuse IFMs extracted with another model or other weights (or init seed) than the network run on them."""
    from ifmsan.steps.extract import provenance

    if text(attrs.get("model")) != net.name:
        raise ValueError(f"{source}: the IFMs were extracted with model {attrs.get('model')!r}, not {net.name!r}")
    mine, theirs = weights_id(provenance(net)), weights_id(attrs)
    if theirs != mine:
        raise ValueError(
            f"{source}: the IFMs were extracted with weights {theirs or 'unknown'!r}, but the network has {mine!r}: "
            "pass the same --weights (or --init-seed for random weights)"
        )


HASH_KEYS: tuple[str, ...] = ("config_hash", "extract_hash")
"""The workflow's provenance hashes (ifmsan.workflow.plan): IFM files record extract_hash (what extraction used),
sweeps carry it on beside their own config_hash; a hash recorded on both sides of a check must agree."""


P0_TOLERANCE = 1e-3
"""Relative difference allowed between an IFM file's p0 and p0 recomputed from one of its IFMs. With the thread count
of the extraction the two are bit-identical; another thread count rounds float32 sums differently (efficientnet_lite0,
1 vs 2 threads: 1.4e-6), another device more (CUDA convolutions may use TF32). 1e-3 moves the bound p0 / 2^γ by that
factor (γ by at most 0.0015); a zeroed IFM, or one of another image or network, moves p0 by far more."""


def check_p0_of_ifms(
    net: Any, ifms: Mapping[str, Any], *, layers: Sequence[str], target: int, p0: float, source: str
) -> dict[str, float]:
    """Refuse IFMs whose forward pass does not give the p0 their file records; return the recomputed p0 per layer.

    A sweep divides by the recorded p0, so an IFM edited (or replaced) after extraction would otherwise be judged
    against the original network output. Checks only: nothing the sweep writes depends on the recomputed values.
    A NaN p (weights that overflow) is returned, not refused: the sweep names that cause itself.
    """
    import math

    import torch

    recomputed: dict[str, float] = {}
    for layer in dict.fromkeys(layers):
        with torch.inference_mode():
            logits = net.forward_from(layer, ifms[layer].unsqueeze(0))
        p = float(torch.softmax(logits.double(), dim=1)[0, target])
        if math.isfinite(p) and not abs(p - p0) <= P0_TOLERANCE * p0:
            raise ValueError(
                f"{source}: p0 recomputed from the IFM of layer {layer!r} is {p!r}, but the file records p0 = {p0!r} "
                f"(relative tolerance {P0_TOLERANCE:g}): the IFM or p0 was edited, or they come from different images "
                "or networks; extract the IFMs again"
            )
        recomputed[layer] = p
    return recomputed


def attribute_value(attrs: Mapping[str, Any], key: str) -> str:
    """One provenance attribute as compared between files: weights is weights_id, the rest their text."""
    return weights_id(attrs) if key == "weights" else text(attrs.get(key))


RUN_KEYS: tuple[str, ...] = ("run", "config_hash", "extract_hash", "model", "weights", "target_source")
"""Attributes the files one stage combines must share: the run, its configuration, the network, the target rule."""


def check_same_attributes(
    files: Sequence[tuple[str, Mapping[str, Any]]], *, keys: Sequence[str] = RUN_KEYS, what: str = "files"
) -> None:
    """Refuse files (name, attrs) that differ in one of `keys`, naming two files and both values."""
    if not files:
        return
    first_name, first = files[0]
    for key in keys:
        expected = attribute_value(first, key)
        for name, attrs in files[1:]:
            found = attribute_value(attrs, key)
            if found != expected:
                raise ValueError(
                    f"{what} of different {key}: {first_name} has {_shown(expected)}, {name} has {_shown(found)}; "
                    "give the files of one run"
                )


def check_given_attributes(
    files: Sequence[tuple[str, Mapping[str, Any]]], given: Mapping[str, Any], *, keys: Sequence[str], option: str
) -> None:
    """Refuse files made under another run or configuration than the `option` values the command was given."""
    for key in keys:
        wanted = text(given.get(key))
        for name, attrs in files:
            found = text(attrs.get(key))
            if wanted and found != wanted:
                raise ValueError(f"{name} was made with {key} {_shown(found)}, but {option} {key}={wanted}")


def check_config_hash(attrs: Mapping[str, Any], extra: Mapping[str, Any], *, source: str = "the IFMs") -> None:
    """Refuse an --attr config_hash or extract_hash that differs from the one the IFMs were made under (when both
    are set)."""
    for key in HASH_KEYS:
        made, given = text(attrs.get(key)), text(extra.get(key))
        if made and given and made != given:
            raise ValueError(
                f"{source} was made under {key} {made!r}, but --attr {key}={given}: "
                f"re-extract the IFMs with this configuration or pass the same {key}"
            )


def check_sweeps_match_ifms(
    ifms: xr.Dataset, sweeps: Sequence[xr.Dataset], *, layers: Sequence[str], knob: str
) -> dict[str, xr.Dataset]:
    """The reference sweep of each layer, after checking every sweep is of these IFMs' image, network and target."""
    source = text(ifms.encoding.get("source")) or "the IFMs"
    references: dict[str, xr.Dataset] = {}
    for sweep in sweeps:
        name = text(sweep.encoding.get("source")) or "a sweep"
        if "image" in sweep["probability"].dims:
            raise ValueError(f"{name} holds several images; expected the sweep of the one image in {source}")
        for key in ("image_id", "image_sha256", "model", "weights", *HASH_KEYS, "target", "target_source"):
            pick = weights_id if key == "weights" else (lambda attrs, key=key: text(attrs.get(key)))
            mine, theirs = pick(ifms.attrs), pick(sweep.attrs)
            if mine != theirs and not (key in HASH_KEYS and "" in (mine, theirs)):  # hashes: when both record one
                raise ValueError(f"{name} was made with {key} {_shown(theirs)}, but {source} has {_shown(mine)}")
        mine_p0, their_p0 = (float(attrs.get("p0", math.nan)) for attrs in (ifms.attrs, sweep.attrs))
        if mine_p0 != their_p0:  # a sweep copies its IFMs' p0 bit for bit; n*(γ) is judged against it
            raise ValueError(f"{name} records p0 = {their_p0!r}, but {source} has p0 = {mine_p0!r}")
        layer, sweep_knob, chain = (text(sweep.attrs.get(k)) for k in ("layer", "knob", "chain"))
        if sweep_knob != knob or chain:
            what = f"knob {sweep_knob!r}" + (f" with chain {chain}" if chain else "")
            raise ValueError(f"{name} is a sweep of {what}; the controller runs knob {knob!r} without a chain")
        if layer not in layers:
            raise ValueError(f"{name} is a sweep of layer {layer!r}, which is not in --layers ({', '.join(layers)})")
        if layer in references:
            other = text(references[layer].encoding.get("source"))
            raise ValueError(f"{name} and {other} are both sweeps of layer {layer!r}; give one per layer")
        references[layer] = sweep
    return references


def varying(curves: Sequence[Any], keys: Sequence[str] = VARIANT_KEYS) -> list[str]:
    """The keys whose values differ between the curves (curves.Curve or anything with those attributes)."""
    return [key for key in keys if len({getattr(c, key) for c in curves}) > 1]


def after_model(columns: Sequence[str], keys: Sequence[str]) -> list[str]:
    """Table columns with the differing provenance keys inserted right after `model`."""
    at = list(columns).index("model") + 1
    return [*columns[:at], *keys, *columns[at:]]


ALLOW_HINT = "pass --allow-mixed to compare them on purpose (the differing keys then become columns)"


def check_mixture(curves: Sequence[Any], *, allow_mixed: bool = False, hint: str = ALLOW_HINT) -> tuple[str, ...]:
    """Refuse curves of different models/weights/config/target source unless allowed; return the keys that differ.

    Within each such group, the curves of one image must share its target and image checksum, always.
    """
    differ = varying(curves)
    if differ and not allow_mixed:
        key = differ[0]
        message = differing([(getattr(c, key), c.source) for c in curves], key=key, what="the sweeps")
        raise ValueError(f"{message}; refusing to put them together: {hint}")
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for curve in curves:
        groups.setdefault((*(getattr(curve, k) for k in VARIANT_KEYS), curve.image_id), []).append(curve)
    for group in groups.values():
        for key in IMAGE_KEYS:
            values = [(text(getattr(c, key)), c.source) for c in group]
            present = {value for value, _ in values if value != ""}
            if len(present) > 1:
                what = f"the sweeps of image {group[0].image_id!r}"
                raise ValueError(f"{differing(values, key=key, what=what)}; give each experiment its own image id")
    return tuple(differ)


CONTROLLER_COLUMNS = ("image_id", "model", "layer", "knob", "gamma", "window", "status")
"""Columns `ifmsan gamma` writes that the controller check reads."""


def check_controller(sweeps: Sequence[Any], controller: pd.DataFrame, *, source: str = "the controller") -> int:
    """Check every row of γ-controller results (ifmsan gamma's CSV) against n*(γ) of the matching unchained sweep.

    The controller's window must be the sweep's n*(γ), or both must say γ is not reached; a row without a sweep of
    its image, layer and knob, or any disagreement, is a ValueError listing the rows. Returns the rows checked.
    """
    from ifmsan.core.metrics import n_star_for_gamma
    from ifmsan.report.curves import as_curves  # curves imports this module
    from ifmsan.report.tabletext import missing

    absent = [column for column in CONTROLLER_COLUMNS if column not in controller.columns]
    if absent:
        raise ValueError(f"{source} lacks the columns {', '.join(absent)}; expected a CSV written by ifmsan gamma")
    curves = {
        (c.model, c.image_id, c.layer, c.knob): c for c in as_curves(sweeps) if not c.chain and c.parameter == "window"
    }
    problems = []
    for row in controller.itertuples(index=False):
        key = (str(row.model), str(row.image_id), str(row.layer), str(row.knob))
        curve = curves.get(key)
        if curve is None:
            problems.append(f"{'/'.join(key)} gamma={row.gamma}: no unchained sweep of this image, layer and knob")
            continue
        n_star = n_star_for_gamma(curve.values, curve.probabilities, p0=curve.p0, gamma=float(row.gamma))
        window = None if missing(row.window) else int(row.window)
        if window != n_star:
            problems.append(f"{'/'.join(key)} gamma={row.gamma}: controller window {window}, sweep n* {n_star}")
    if problems:
        listed = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise ValueError(f"{source} disagrees with the sweeps' n*(gamma) in {len(problems)} row(s):\n  {listed}")
    return len(controller)
