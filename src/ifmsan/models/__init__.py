"""The CNNs ifmsan sanitizes, as LayeredNets: BVLC AlexNet, its offline stand-in alexnet_mini, torchvision models."""

from __future__ import annotations

import os
from typing import Any

from ifmsan.models.base import LayeredNet
from ifmsan.sanitize import check_seed

CAFFE_MODELS: tuple[str, ...] = ("bvlc_alexnet", "alexnet_mini")
_OPTIONS: dict[str, tuple[str, ...]] = {
    "bvlc_alexnet": ("seed", "mean_file"),
    "alexnet_mini": ("seed",),
    "torchvision": ("seed",),
}

__all__ = ["CAFFE_MODELS", "LayeredNet", "available", "check_finite_weights", "load"]


def available() -> list[str]:
    """Every model name load() accepts; torchvision's classifiers as "torchvision:<name>"."""
    from ifmsan.models.tv import PREFIX, classification_models

    return [*CAFFE_MODELS, *(f"{PREFIX}{arch}" for arch in classification_models())]


def load(name: str, *, weights: str | os.PathLike[str] | None = None, **options: Any) -> LayeredNet:
    """Build a model by name, in eval mode, with the given weights (None: seeded, untrained initialisation).

    bvlc_alexnet: weights = a .caffemodel; options seed=0, mean_file=path to ilsvrc_2012_mean.npy (None: channel means).
    alexnet_mini: weights = a state-dict .pt written by `ifmsan train-mini`; option seed=0.
    torchvision:<arch>: weights = None | "DEFAULT" | a weights enum name such as "IMAGENET1K_V1" (downloaded and
    hash-checked by torchvision) | a local state-dict path; option seed=0.
    """
    from ifmsan.models.tv import PREFIX, classification_models

    if not isinstance(name, str):
        raise ValueError(f"model name must be a string, got {type(name).__name__}")
    family = "torchvision" if name.startswith(PREFIX) else name
    if family not in _OPTIONS or (family == "torchvision" and name[len(PREFIX) :] not in classification_models()):
        raise ValueError(f"unknown model {name!r}; available: {', '.join(available())}")
    unknown = sorted(set(options) - set(_OPTIONS[family]))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} for model {name!r}; allowed: {', '.join(_OPTIONS[family])}"
        )
    seed = check_seed(options.get("seed", 0), name="option seed")
    if weights is not None and not isinstance(weights, (str, os.PathLike)):
        raise ValueError(f"weights must be None, a path or (torchvision) a weights name, got {type(weights).__name__}")
    if family == "bvlc_alexnet":
        from ifmsan.models.caffe_alexnet import build_bvlc_alexnet

        mean_file = options.get("mean_file")
        if mean_file is not None and not isinstance(mean_file, (str, os.PathLike)):
            raise ValueError(f"option mean_file must be a path or None, got {type(mean_file).__name__}")
        net: LayeredNet = build_bvlc_alexnet(weights=weights, seed=seed, mean_file=mean_file)
    elif family == "alexnet_mini":
        from ifmsan.models.caffe_alexnet import build_alexnet_mini

        net = build_alexnet_mini(weights=weights, seed=seed)
    else:
        from ifmsan.models.tv import build_torchvision

        net = build_torchvision(name[len(PREFIX) :], weights=weights, seed=seed)
    return net if weights is None else check_finite_weights(net)


def check_finite_weights(net: LayeredNet) -> LayeredNet:
    """The net, or a ValueError naming the weights and the first tensor with NaN or infinity: such a net outputs NaN."""
    import numpy as np
    import torch

    for key, tensor in net.state_dict().items():
        if not tensor.dtype.is_floating_point:
            continue
        values = tensor.detach().cpu()
        finite = (
            np.isfinite(values.numpy())
            if values.dtype in (torch.float32, torch.float64)
            else torch.isfinite(values).numpy()
        )
        if not finite.all():
            source = net.weights_info.get("source") or "the loaded weights"
            raise ValueError(
                f"weights {source} of {net.name}: tensor {key!r} holds {int(finite.size - finite.sum())} NaN or infinite "
                "value(s); expected finite weights (a corrupt file, or saved from a diverged training)"
            )
    return net
