"""IFM extraction: every IFM of one image plus its original prediction, as a labelled Dataset (docs/netcdf.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import xarray as xr

import ifmsan
from ifmsan.models.base import LayeredNet
from ifmsan.steps.io import IMAGE_ATTRS, check_user_attrs


def ifm_dims(layer: str, shape: tuple[int, ...]) -> tuple[str, ...]:
    """Named dimensions of one layer's IFM: channel/height/width for maps, feature for vectors."""
    if len(shape) == 3:
        return (f"{layer}_channel", f"{layer}_height", f"{layer}_width")
    if len(shape) == 1:
        return (f"{layer}_feature",)
    return tuple(f"{layer}_dim{i}" for i in range(len(shape)))


def weights_sha(net: LayeredNet) -> str:
    """The checksum that identifies a network's weights ('' when untrained)."""
    info = getattr(net, "weights_info", {}) or {}
    return str(info.get("sha256") or info.get("sha1") or "")


def provenance(net: LayeredNet, **extra: Any) -> dict[str, Any]:
    """Attributes every output carries: model, weights, whether it is a stand-in, package version."""
    info = getattr(net, "weights_info", {}) or {}
    attrs: dict[str, Any] = {
        "model": getattr(net, "name", type(net).__name__),
        "weights_source": str(info.get("source") or "seeded random initialisation"),
        "weights_sha": weights_sha(net),
        "trained": int(bool(info.get("trained", False))),
        "stand_in": int(bool(info.get("stand_in", False))),
        "ifmsan_version": ifmsan.__version__,
    }
    if info.get("note"):
        attrs["note"] = str(info["note"])
    if info.get("preprocess"):  # bvlc_alexnet: which of Caffe's input pipelines made the IFMs
        attrs["preprocess"] = str(info["preprocess"])
    if info.get("content_xxh3"):  # bvlc_alexnet's converted weights: the content checksum verified when they were read
        attrs["weights_content_xxh3"] = str(info["content_xxh3"])
    attrs.update(extra)
    return attrs


@torch.inference_mode()
def extract_ifms(
    net: LayeredNet,
    x: torch.Tensor,
    *,
    target: int | None = None,
    attrs: Mapping[str, Any] | None = None,
    target_name: str = "target",
) -> xr.Dataset:
    """Run one preprocessed image (no batch dim) and keep every IFM, the softmax and the target class.

    target_name: how messages call the target (a CLI passes its option's name).

    `attrs` may set the image's attributes (io.IMAGE_ATTRS) and extra keys; keys computed here are a ValueError.
    """
    if x.dim() != 3:
        raise ValueError(f"x must be one preprocessed image (C, H, W), got shape {tuple(x.shape)}")
    extra = dict(attrs or {})
    image = {key: extra.pop(key) for key in IMAGE_ATTRS if key in extra}
    check_user_attrs(extra, option="attrs")
    ifms = net.ifms(x.unsqueeze(0).to(next(net.parameters()).device))
    logits = net.forward_from(net.ifm_layers[0], ifms[net.ifm_layers[0]])
    softmax = torch.softmax(logits[0].double(), dim=0).cpu().numpy()
    if not np.isfinite(softmax).all():
        raise ValueError(
            f"{getattr(net, 'name', 'the network')} gave NaN or infinite outputs for this image: its weights overflow"
        )
    n_classes = softmax.shape[0]
    if target is not None and not 0 <= int(target) < n_classes:
        raise ValueError(f"{target_name} must be a class index in [0, {n_classes}), got {target}")
    top1 = int(np.argmax(softmax))
    chosen = top1 if target is None else int(target)
    top5 = np.argsort(-softmax, kind="stable")[:5]
    data: dict[str, Any] = {}
    zero_ratio, sizes = [], []
    for layer in net.ifm_layers:
        ifm = ifms[layer][0].float().contiguous().cpu().numpy()
        data[layer] = (ifm_dims(layer, ifm.shape), ifm, {"long_name": f"input feature map of {layer}"})
        zero_ratio.append(float((ifm == 0).sum()) / ifm.size)
        sizes.append(ifm.size)
    data["softmax"] = (("class",), softmax, {"long_name": "softmax of the unsanitized network"})
    data["top5"] = (("rank",), top5.astype(np.int64))
    data["zero_ratio"] = (("layer",), np.array(zero_ratio), {"long_name": "ratio of zeros in the original IFM"})
    data["ifm_size"] = (("layer",), np.array(sizes, dtype=np.int64))
    names = getattr(net, "class_names", ())
    dataset = xr.Dataset(data, coords={"layer": list(net.ifm_layers), "class": np.arange(n_classes)})
    dataset.attrs = provenance(
        net,
        ifmsan_kind="ifms",
        target=chosen,
        target_source="original_top1" if target is None else "ground_truth",
        original_top1=top1,
        original_top1_name=str(names[top1]) if len(names) > top1 else "",
        p0=float(softmax[chosen]),
        ifm_layers=",".join(net.ifm_layers),
        **image,
        **extra,
    )
    return dataset


def ifms_of(dataset: xr.Dataset) -> dict[str, torch.Tensor]:
    """The IFMs of an extracted Dataset as tensors without batch dim, in network order.

    Layers that io.read_ifms(..., layers=...) left unread (encoding["skipped_variables"]) are left out.
    """
    skipped = set(dataset.encoding.get("skipped_variables", ()))
    layers = [str(layer) for layer in dataset["layer"].values if str(layer) not in skipped]
    missing = [layer for layer in layers if layer not in dataset]
    if missing:
        raise ValueError(f"IFM dataset lacks the variables {missing}; expected one per layer in {layers}")
    return {layer: torch.from_numpy(np.ascontiguousarray(dataset[layer].values)) for layer in layers}
